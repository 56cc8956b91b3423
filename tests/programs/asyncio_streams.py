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
    assert tcp == unix
    return tcp


digest = asyncio.run(main())
print(f"ok asyncio streams: {CLIENTS} concurrent clients x {LINES} lines over TCP and "
      f"AF_UNIX (sha256 {digest[:16]})")
