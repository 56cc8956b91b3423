"""asyncio streams: one server, hundreds of concurrent clients, over TCP and AF_UNIX.

An ordinary stdlib program: it prints "ok asyncio streams ..." when every check passed.
"""

import asyncio
import hashlib
import os
import tempfile

CLIENTS = 300
LINES = 10


async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(line[::-1][1:] + b"\n")  # reversed, newline kept at the end
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def client(n, connect):
    reader, writer = await connect()
    digest = hashlib.sha256()
    for i in range(LINES):
        line = f"{n}:{i}:".encode() + b"z" * ((n * 31 + i) % 2000)
        writer.write(line + b"\n")
        await writer.drain()
        answer = await reader.readline()
        assert answer == line[::-1] + b"\n", (n, i)
        digest.update(answer)
    writer.write_eof()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    return digest.hexdigest()


async def exercise(start, connect):
    server = await start()
    async with server:
        digests = await asyncio.gather(*(client(n, connect) for n in range(CLIENTS)))
    return hashlib.sha256("".join(digests).encode()).hexdigest()


async def send_a_file(directory):
    """loop.sendfile: a file of 1 MiB from the server's transport (os.sendfile on Linux)."""
    path = os.path.join(directory, "payload")
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * 4096)

    async def serve(reader, writer):
        with open(path, "rb") as f:
            await asyncio.get_running_loop().sendfile(writer.transport, f)
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        received = await reader.read()
        writer.close()
        await writer.wait_closed()
    with open(path, "rb") as f:
        assert received == f.read(), len(received)
    return len(received)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    # A backlog for every client: a full AF_UNIX backlog makes Linux refuse a
    # non-blocking connect with EAGAIN, which asyncio does not retry.
    tcp = await exercise(
        lambda: asyncio.start_server(handle, "127.0.0.1", port, backlog=CLIENTS),
        lambda: asyncio.open_connection("127.0.0.1", port))
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "server.sock")
        unix = await exercise(
            lambda: asyncio.start_unix_server(handle, path, backlog=CLIENTS),
            lambda: asyncio.open_unix_connection(path))
        sent = await send_a_file(directory)
    assert tcp == unix
    return tcp, sent


digest, sent = asyncio.run(main())
print(f"ok asyncio streams: {CLIENTS} concurrent clients x {LINES} lines over TCP and "
      f"AF_UNIX (sha256 {digest[:16]}), loop.sendfile of {sent} bytes")
