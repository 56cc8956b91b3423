"""A client of another process's AF_UNIX socket, written as any program would be.

    python unix_kernel_client.py STREAM_PATH DGRAM_PATH DAEMON_PID

The daemons (unix_daemon.py) run in other processes.  It prints one line per step;
under plain python and under ``posix-socket run`` the lines must be the same.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import selectors
import socket
import struct
import sys
import tempfile


def step(name: str, call) -> None:
    try:
        result = call()
    except OSError as exc:
        result = f"{type(exc).__name__} {errno.errorcode.get(exc.errno)}"
    print(f"{name}: {result!r}", flush=True)


def blocking(path: str, daemon_pid: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        step("peer", lambda: sock.getpeername() == path)
        step("name", sock.getsockname)
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        step("peercred pid", lambda: struct.unpack("@iII", raw)[0] == daemon_pid)
        sock.sendall(b"bulk:1000000")
        got = b""
        while len(got) < 1000000:
            got += sock.recv(65536)
        step("1 MB from the daemon", lambda: got == b"x" * 1000000)
        sock.sendall(b"sink:1000000\n")
        sock.sendall(b"y" * 1000000)
        step("1 MB to the daemon", lambda: sock.recv(100))
        sock.sendall(b"cred")
        step("daemon sees us", lambda: sock.recv(100))
        sock.sendall(b"rights")
        step("recv_fds", lambda: _read_passed(socket.recv_fds(sock, 100, 1)))
        r, w = os.pipe()
        os.write(w, b"a pipe of ours")
        socket.send_fds(sock, [b"read"], [r])
        os.close(r)
        os.close(w)
        step("the daemon read our pipe", lambda: sock.recv(100))
        a, b = socket.socketpair()  # kernel sockets, as the stdlib's pair always is
        a.sendall(b"a kernel socket of ours")
        socket.send_fds(sock, [b"read"], [b.fileno()])
        step("the daemon read our socket", lambda: sock.recv(100))
        a.close()
        b.close()
        sock.settimeout(0.2)
        step("timeout", lambda: sock.recv(100))
        sock.settimeout(10)
        with sock.makefile("rwb") as stream:
            stream.write(b"echo:line one\n")
            stream.flush()
            step("makefile readline", stream.readline)
        sock.sendall(b"shut")
        step("eof", lambda: sock.recv(100))


def _read_passed(result: tuple) -> tuple:
    data, fds, _flags, _addr = result
    contents = [os.read(fd, 100) for fd in fds]
    for fd in fds:
        os.close(fd)
    return data, contents


def readiness(path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.setblocking(False)
        step("select before", lambda: select.select([sock], [], [], 0)[0] == [])
        sock.send(b"echo:ready?")
        step("select", lambda: select.select([sock], [], [], 10)[0] == [sock])
        step("recv", lambda: sock.recv(100))
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        step("poll nothing", lambda: poller.poll(0))
        sock.send(b"echo:again")
        step("poll", lambda: [bits for _fd, bits in poller.poll(10000)])
        step("recv", lambda: sock.recv(100))
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            sock.send(b"echo:selector")
            step("selector", lambda: [mask for _key, mask in selector.select(10)])
            step("recv", lambda: sock.recv(100))
            sock.send(b"shut")
            step("selector at eof", lambda: [mask for _key, mask in selector.select(10)])
            step("recv at eof", lambda: sock.recv(100))


async def streams(path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b"echo:hello asyncio\n")
    await writer.drain()
    print("asyncio readline:", await asyncio.wait_for(reader.readline(), 10), flush=True)
    writer.write(b"shut")
    await writer.drain()
    print("asyncio read at eof:", await asyncio.wait_for(reader.read(), 10), flush=True)
    writer.close()
    await writer.wait_closed()


def datagrams(path: str) -> None:
    directory = tempfile.mkdtemp()
    mine = os.path.join(directory, "client")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(mine)
        sock.settimeout(10)
        sock.sendto(b"echo:datagram", path)
        step("recvfrom", lambda: sock.recvfrom(100) == (b"datagram", path))
        sock.connect(path)
        sock.send(b"peer")
        step("daemon sees our name", lambda: sock.recv(300) == repr(mine).encode())
    os.unlink(mine)
    os.rmdir(directory)


def refusals(path: str) -> None:
    directory = tempfile.mkdtemp()
    plain = os.path.join(directory, "plain")
    with open(plain, "w"):
        pass
    for name, target in (("missing", os.path.join(directory, "missing")),
                         ("regular file", plain),
                         ("abstract nobody", b"\0posix-socket-test-nobody"),
                         ("dgram daemon from a stream", path)):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            step(f"connect {name}", lambda sock=sock, target=target: sock.connect(target))
    os.unlink(plain)
    os.rmdir(directory)


def main() -> None:
    stream_path, dgram_path, daemon_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    blocking(stream_path, daemon_pid)
    readiness(stream_path)
    asyncio.run(streams(stream_path))
    datagrams(dgram_path)
    refusals(dgram_path)
    print("done")


if __name__ == "__main__":
    main()
