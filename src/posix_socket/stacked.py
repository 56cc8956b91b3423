"""Drivers stacked over other drivers: one ops table composed over another.

A ``StackedDriver`` wraps an inner driver and sends every op to it; a subclass
overrides the ops it wants to observe or change (the trace writes a line around
each, a policy could refuse some).  The inner driver's sockets pass through
untouched, so the inner driver's ``notify(sock)`` still names what the layer's
watches are keyed by, and the layer needs no state of its own per socket.

``Stack`` puts one layer over every driver the registry serves and over the
descriptions already open, and on ``close`` puts back exactly what was there
(see ``registry.stack``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .driver import Address, AncData, NullBuffer, SocketDriver

__all__ = ["StackedDriver", "innermost"]


class StackedDriver(SocketDriver):
    """A driver over ``inner``: every op, and every attribute it does not define
    (a virtual driver's ``network``, its resolver), is the inner driver's."""

    def __init__(self, inner: SocketDriver, name: str | None = None) -> None:
        super().__init__(name or f"{type(self).__name__}({inner.name})", budget=inner.budget)
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def init(self) -> None:
        """Nothing: the inner driver was initialised when it was registered."""

    @property
    def kernel_sockets(self) -> bool:  # type: ignore[override]
        return self.inner.kernel_sockets

    @property
    def accept_inherits_timeouts(self) -> bool:  # type: ignore[override]
        return self.inner.accept_inherits_timeouts

    @property
    def empty_stream_receive_waits_once(self) -> bool:  # type: ignore[override]
        return self.inner.empty_stream_receive_waits_once

    def fileno(self, sock: Any) -> int | None:
        return self.inner.fileno(sock)

    def renumber(self, sock: Any, fd: int | None) -> None:
        self.inner.renumber(sock, fd)

    def kernel_number(self, sock: Any) -> int | None:
        return self.inner.kernel_number(sock)

    def create(self, family: int, type: int, proto: int) -> Any:
        return self.inner.create(family, type, proto)

    def socketpair(self, family: int, type: int, proto: int) -> tuple[Any, Any]:
        return self.inner.socketpair(family, type, proto)

    def accept(self, sock: Any, flags: int) -> tuple[Any, Address]:
        return self.inner.accept(sock, flags)

    def accept_blocking(self, sock: Any, flags: int) -> tuple[Any, Address]:
        return self.inner.accept_blocking(sock, flags)

    def bind(self, sock: Any, addr: Address) -> None:
        return self.inner.bind(sock, addr)

    def listen(self, sock: Any, backlog: int) -> None:
        return self.inner.listen(sock, backlog)

    def connect(self, sock: Any, addr: Address) -> None:
        return self.inner.connect(sock, addr)

    def connect_blocking(self, sock: Any, addr: Address) -> None:
        return self.inner.connect_blocking(sock, addr)

    def shutdown(self, sock: Any, how: int) -> None:
        return self.inner.shutdown(sock, how)

    def getsockname(self, sock: Any) -> Address:
        return self.inner.getsockname(sock)

    def getpeername(self, sock: Any) -> Address:
        return self.inner.getpeername(sock)

    def getsockopt(self, sock: Any, level: int, optname: int, buflen: int) -> int | bytes:
        return self.inner.getsockopt(sock, level, optname, buflen)

    def setsockopt(self, sock: Any, level: int, optname: int,
                   value: int | bytes | NullBuffer) -> None:
        return self.inner.setsockopt(sock, level, optname, value)

    def send(self, sock: Any, data: bytes, flags: int) -> int:
        return self.inner.send(sock, data, flags)

    def sendto(self, sock: Any, data: bytes, flags: int, addr: Address | None) -> int:
        return self.inner.sendto(sock, data, flags, addr)

    def sendmsg(self, sock: Any, buffers: Iterable[bytes], ancdata: AncData, flags: int,
                addr: Address | None) -> int:
        return self.inner.sendmsg(sock, buffers, ancdata, flags, addr)

    def recv(self, sock: Any, bufsize: int, flags: int) -> bytes:
        return self.inner.recv(sock, bufsize, flags)

    def recvfrom(self, sock: Any, bufsize: int, flags: int) -> tuple[bytes, Address]:
        return self.inner.recvfrom(sock, bufsize, flags)

    def recvmsg(self, sock: Any, bufsize: int, ancbufsize: int,
                flags: int) -> tuple[bytes, list[tuple[int, int, bytes]], int, Address]:
        return self.inner.recvmsg(sock, bufsize, ancbufsize, flags)

    def read(self, sock: Any, n: int) -> bytes:
        return self.inner.read(sock, n)

    def write(self, sock: Any, data: bytes) -> int:
        return self.inner.write(sock, data)

    def ioctl(self, sock: Any, request: int, arg: int | bytes) -> int | bytes:
        return self.inner.ioctl(sock, request, arg)

    def poll(self, sock: Any) -> int:
        return self.inner.poll(sock)

    def close(self, sock: Any) -> None:
        return self.inner.close(sock)


def innermost(driver: SocketDriver) -> SocketDriver:
    """The driver at the bottom of a stack (``driver`` itself if it wraps none)."""
    while isinstance(driver, StackedDriver):
        driver = driver.inner
    return driver


MakeLayer = Callable[[SocketDriver], StackedDriver]
