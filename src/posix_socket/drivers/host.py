"""The host driver: sockets are the kernel's own.

It is the reference every other driver is compared against, so it adds nothing: where
an op means exactly what a stdlib method means, the op *is* that method (called with
the private ``socket.socket`` as its first argument), so the call costs no Python frame
of its own.  The kernel blocks, times out (SO_RCVTIMEO) and reports readiness for these
sockets itself.  The private object holds no descriptor of its own: it is on one of the
numbers the program holds (see ``descriptors``), so a socket costs one descriptor.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import select
import socket
import sys
from typing import Any

from ..driver import Address, NullBuffer, SocketDriver

_KERNEL_POLL = select.poll  # the kernel's: patch() puts the drop-in in the select module

__all__ = ["HostDriver"]

_stdlib = socket.socket
# The kernel's own constructors, captured at import: once ``patch()`` routes the
# stdlib's names through the registry, ``socket.socket`` is no longer the kernel's.
KernelSocket = socket.socket


class TableSocket(socket.socket):
    """A kernel socket the layer keeps behind a program's number.

    The number is the program's.  One it never closes (a ``detach()``-ed socket left
    open, say) the kernel closes at the process's exit without a word; this object,
    collected only when the interpreter finalizes, must not then warn "unclosed
    socket.socket" in the program's name (the program made no such object).  At any
    other time it finalizes as the stdlib's does.
    """

    __slots__ = ()

    def __del__(self) -> None:
        if sys.is_finalizing():
            self.detach()
        else:
            _socket.socket.__del__(self)


def kernel_socket(family: int = -1, type: int = -1, proto: int = -1,
                  fileno: int | None = None) -> socket.socket:
    """A stdlib socket object for the layer's own use, untouched by
    ``socket.setdefaulttimeout``: the layer does the waiting, so the object must not
    wait on its own (a default timeout would make every blocking call last that long,
    whatever the program's socket asked for).  Its number stays as blocking as it was
    (a new socket: blocking); the layer sets O_NONBLOCK itself where asked."""
    if _socket.getdefaulttimeout() is None:  # the usual case: nothing to undo
        return TableSocket(family, type, proto, fileno)
    blocking = fileno is None or os.get_blocking(fileno)
    sock = TableSocket(family, type, proto, fileno)
    sock.settimeout(None)  # back to blocking mode, O_NONBLOCK cleared
    if not blocking:
        os.set_blocking(sock.fileno(), False)
    return sock


def kernel_socketpair(family: int, type: int, proto: int) -> tuple[socket.socket, socket.socket]:
    a, b = _socket.socketpair(family, type, proto)
    if a.gettimeout() is not None:  # a default timeout made them non-blocking
        a.settimeout(None)
        b.settimeout(None)
    return (kernel_socket(family, type, proto, a.detach()),
            kernel_socket(family, type, proto, b.detach()))


_reinit = _socket.socket.__init__  # points a C socket object at another descriptor
_SOCK_NONBLOCK = socket.SOCK_NONBLOCK


class HostDriver(SocketDriver):
    name = "host"
    kernel_sockets = True

    def fileno(self, sock: socket.socket) -> int:
        return sock.fileno()

    def renumber(self, sock: socket.socket, fd: int | None) -> None:
        """The same object, now on ``fd``: a call running in another thread, or one
        about to start, finds the new descriptor (the C object reads its number when
        it calls the kernel), and whoever traces it keeps knowing it."""
        if fd is None:
            sock.detach()
            return
        kind = sock.type
        if _socket.getdefaulttimeout() is not None:
            # SOCK_NONBLOCK keeps the default timeout from being put on the object,
            # which would set O_NONBLOCK on the open file every number shares; the
            # object's zero timeout only differs from none in a connect interrupted
            # by a signal (InterruptedError instead of waiting on).
            kind |= _SOCK_NONBLOCK
        _reinit(sock, sock.family, kind, sock.proto, fd)

    def create(self, family: int, type: int, proto: int) -> socket.socket:
        return kernel_socket(family, type, proto)

    def socketpair(self, family: int, type: int, proto: int) -> tuple[Any, Any]:
        return kernel_socketpair(family, type, proto)

    def accept(self, sock: socket.socket, flags: int) -> tuple[socket.socket, Address]:
        fd, addr = sock._accept()
        return kernel_socket(sock.family, sock.type, sock.proto, fileno=fd), addr

    # The same signatures as the ops table, the stdlib's behaviour and errors.
    bind = staticmethod(_stdlib.bind)
    listen = staticmethod(_stdlib.listen)
    connect = staticmethod(_stdlib.connect)
    shutdown = staticmethod(_stdlib.shutdown)
    getsockname = staticmethod(_stdlib.getsockname)
    getpeername = staticmethod(_stdlib.getpeername)
    getsockopt = staticmethod(_stdlib.getsockopt)  # buflen 0 means "an int", as the op
    send = staticmethod(_stdlib.send)
    sendmsg = staticmethod(_stdlib.sendmsg)  # addr None means "connected peer", as the op
    recv = staticmethod(_stdlib.recv)
    recvfrom = staticmethod(_stdlib.recvfrom)
    recvmsg = staticmethod(_stdlib.recvmsg)
    close = staticmethod(_stdlib.close)

    def sendto(self, sock: socket.socket, data: bytes, flags: int, addr: Address) -> int:
        if addr is None:
            return sock.send(data, flags)
        return sock.sendto(data, flags, addr)

    def setsockopt(self, sock: socket.socket, level: int, optname: int,
                   value: int | bytes | NullBuffer) -> None:
        if type(value) is NullBuffer:  # the four-argument form: the kernel's NULL pointer
            sock.setsockopt(level, optname, None, len(value))
        else:
            sock.setsockopt(level, optname, value)

    def read(self, sock: socket.socket, n: int) -> bytes:
        return os.read(sock.fileno(), n)

    def write(self, sock: socket.socket, data: bytes) -> int:
        return os.write(sock.fileno(), data)

    def ioctl(self, sock: socket.socket, request: int, arg: int | bytes) -> int | bytes:
        return fcntl.ioctl(sock.fileno(), request, arg)

    def poll(self, sock: socket.socket) -> int:
        poller = _KERNEL_POLL()
        poller.register(sock.fileno(), 0xFFFF)
        ready = poller.poll(0)
        return ready[0][1] if ready else 0
