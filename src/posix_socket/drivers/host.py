"""The host driver: sockets are the kernel's own.

It is the reference every other driver is compared against, so it adds nothing: each op
is the stdlib's method on a private ``socket.socket``.  The kernel blocks, times out
(SO_RCVTIMEO) and reports readiness for these sockets itself.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
from typing import Any, Iterable

from ..driver import Address, AncData, SocketDriver

__all__ = ["HostDriver"]


class HostDriver(SocketDriver):
    name = "host"

    def fileno(self, sock: socket.socket) -> int:
        return sock.fileno()

    def create(self, family: int, type: int, proto: int) -> socket.socket:
        return socket.socket(family, type, proto)

    def socketpair(self, family: int, type: int, proto: int) -> tuple[Any, Any]:
        return socket.socketpair(family, type, proto)

    def accept(self, sock: socket.socket, flags: int) -> tuple[socket.socket, Address]:
        fd, addr = sock._accept()
        return socket.socket(sock.family, sock.type, sock.proto, fileno=fd), addr

    def bind(self, sock: socket.socket, addr: Address) -> None:
        sock.bind(addr)

    def listen(self, sock: socket.socket, backlog: int) -> None:
        sock.listen(backlog)

    def connect(self, sock: socket.socket, addr: Address) -> None:
        sock.connect(addr)

    def shutdown(self, sock: socket.socket, how: int) -> None:
        sock.shutdown(how)

    def getsockname(self, sock: socket.socket) -> Address:
        return sock.getsockname()

    def getpeername(self, sock: socket.socket) -> Address:
        return sock.getpeername()

    def getsockopt(self, sock: socket.socket, level: int, optname: int,
                   buflen: int) -> int | bytes:
        if buflen:
            return sock.getsockopt(level, optname, buflen)
        return sock.getsockopt(level, optname)

    def setsockopt(self, sock: socket.socket, level: int, optname: int,
                   value: int | bytes) -> None:
        sock.setsockopt(level, optname, value)

    def send(self, sock: socket.socket, data: bytes, flags: int) -> int:
        return sock.send(data, flags)

    def sendto(self, sock: socket.socket, data: bytes, flags: int, addr: Address) -> int:
        if addr is None:
            return sock.send(data, flags)
        return sock.sendto(data, flags, addr)

    def sendmsg(self, sock: socket.socket, buffers: Iterable[bytes], ancdata: AncData,
                flags: int, addr: Address | None) -> int:
        if addr is None:
            return sock.sendmsg(buffers, ancdata, flags)
        return sock.sendmsg(buffers, ancdata, flags, addr)

    def recv(self, sock: socket.socket, bufsize: int, flags: int) -> bytes:
        return sock.recv(bufsize, flags)

    def recvfrom(self, sock: socket.socket, bufsize: int, flags: int) -> tuple[bytes, Address]:
        return sock.recvfrom(bufsize, flags)

    def recvmsg(self, sock: socket.socket, bufsize: int, ancbufsize: int, flags: int):
        return sock.recvmsg(bufsize, ancbufsize, flags)

    def read(self, sock: socket.socket, n: int) -> bytes:
        return os.read(sock.fileno(), n)

    def write(self, sock: socket.socket, data: bytes) -> int:
        return os.write(sock.fileno(), data)

    def ioctl(self, sock: socket.socket, request: int, arg: int | bytes) -> int | bytes:
        return fcntl.ioctl(sock.fileno(), request, arg)

    def poll(self, sock: socket.socket) -> int:
        poller = select.poll()
        poller.register(sock.fileno(), 0xFFFF)
        ready = poller.poll(0)
        return ready[0][1] if ready else 0

    def close(self, sock: socket.socket) -> None:
        sock.close()
