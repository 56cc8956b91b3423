"""A small AF_UNIX daemon for tests: a plain Python process serving a kernel socket.

    python unix_daemon.py ADDRESS TYPE [BACKLOG] [accept|hold]

ADDRESS is a path, or ``@name`` for the abstract name "\\0name".  TYPE is stream,
seqpacket or dgram.  It prints ``ready`` once its socket is bound (and listening), then
serves until stdin closes.  ``hold`` never accepts (connections wait in the backlog).

Each message it receives is a command, answered on the same connection (or, for
datagrams, to the sender's address):

    echo:DATA   DATA back                  cred   "parent" if SO_PEERCRED names the
    peer        the peer's name, repr'd           process that started it, else "other"
    bulk:N      N bytes b"x"              sink:N\\n  reads N more bytes, answers "sunk N"
    rights      b"file" and, in SCM_RIGHTS, a pipe holding b"from the daemon"
    read        reads the descriptor that came with the command; answers its bytes
    shut        shutdown(SHUT_WR) of the connection     close  closes it
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator

UCRED = struct.Struct("@iII")
TYPES = {"stream": socket.SOCK_STREAM, "seqpacket": socket.SOCK_SEQPACKET,
         "dgram": socket.SOCK_DGRAM}


@contextlib.contextmanager
def running(address: str | bytes, type: int, backlog: int = 8,
            mode: str = "accept") -> Iterator[subprocess.Popen]:
    """The daemon serving ``address`` (a path, or an abstract name as bytes) in a
    process of its own, until the block ends."""
    where = "@" + address[1:].decode() if isinstance(address, bytes) else address
    kind = {value: key for key, value in TYPES.items()}[type]
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", __file__, where, kind, str(backlog), mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdin is not None
        if process.stdout.readline() != b"ready\n":
            raise RuntimeError("the AF_UNIX test daemon did not start")
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def answer(command: bytes, fds: list[int], peer_cred: bytes | None,
           peer_name: object) -> tuple[bytes, list] | None:
    """The reply to one command: (data, ancillary items), or None for none."""
    if command.startswith(b"echo:"):
        return command[5:], []
    if command == b"peer":
        return repr(peer_name).encode(), []
    if command == b"cred":
        pid = UCRED.unpack(peer_cred)[0] if peer_cred else -1
        return (b"parent" if pid == os.getppid() else b"other"), []
    if command == b"rights":
        r, w = os.pipe()
        os.write(w, b"from the daemon")
        os.close(w)
        return b"file", [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]).tobytes()),
                         r]
    if command == b"read":
        if not fds:
            return b"no descriptor", []
        data = os.read(fds[0], 100)
        return data, []
    return b"unknown:" + command, []


def received_fds(ancdata: list) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", data[:len(data) - len(data) % 4])
    return fds


def send(sock: socket.socket, reply: tuple[bytes, list], addr: object = None) -> None:
    data, extra = reply
    ancdata = [item for item in extra if isinstance(item, tuple)]
    if addr is None:
        sock.sendmsg([data], ancdata)
    else:
        sock.sendmsg([data], ancdata, 0, addr)
    for fd in extra:
        if isinstance(fd, int):
            os.close(fd)


def serve_connection(conn: socket.socket) -> None:
    cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size)
    peer = conn.getpeername()
    with conn:
        while True:
            try:
                data, ancdata, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(16))
            except OSError:
                return
            if not data:
                return
            fds = received_fds(ancdata)
            if data == b"close":
                return
            if data == b"shut":
                conn.shutdown(socket.SHUT_WR)
                continue
            if data.startswith(b"sink:"):  # b"sink:N\n", the N bytes may follow at once
                count, _newline, first = data[5:].partition(b"\n")
                want = int(count) - len(first)
                while want > 0:
                    chunk = conn.recv(min(want, 65536))
                    if not chunk:
                        return
                    want -= len(chunk)
                conn.sendall(b"sunk " + count)
                continue
            if data.startswith(b"bulk:"):
                conn.sendall(b"x" * int(data[5:]))
                continue
            reply = answer(data, fds, cred, peer)
            for fd in fds:
                os.close(fd)
            if reply is not None:
                try:
                    send(conn, reply)
                except OSError:
                    return


def serve_datagrams(sock: socket.socket) -> None:
    while True:
        data, ancdata, _flags, addr = sock.recvmsg(4096, socket.CMSG_SPACE(16))
        fds = received_fds(ancdata)
        reply = answer(data, fds, None, addr)
        for fd in fds:
            os.close(fd)
        if reply is not None and addr:
            try:
                send(sock, reply, addr)
            except OSError:
                pass


def main() -> None:
    where, kind = sys.argv[1], TYPES[sys.argv[2]]
    backlog = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    mode = sys.argv[4] if len(sys.argv) > 4 else "accept"
    address = b"\0" + where[1:].encode() if where.startswith("@") else where
    sock = socket.socket(socket.AF_UNIX, kind)
    sock.bind(address)
    if kind == socket.SOCK_DGRAM:
        threading.Thread(target=serve_datagrams, args=(sock,), daemon=True).start()
    else:
        sock.listen(backlog)
        if mode == "accept":
            def accept_forever() -> None:
                while True:
                    conn, _ = sock.accept()
                    threading.Thread(target=serve_connection, args=(conn,),
                                     daemon=True).start()
            threading.Thread(target=accept_forever, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or goes away)


if __name__ == "__main__":
    main()
