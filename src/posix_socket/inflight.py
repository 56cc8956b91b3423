"""Descriptors in flight: what an SCM_RIGHTS message carries from sendmsg to recvmsg.

On Linux a passed descriptor travels as a reference to its open file, holding no
number in any process until a receiver installs it.  Here ``posix.sendmsg`` turns each
passed number into an ``InFlight`` reference and hands the driver ancillary items
``(SOL_SOCKET, SCM_RIGHTS, [refs])``; the driver queues them with the message and
calls ``ref.close()`` on every path that drops the message unread, or ``ref.clone()``
for MSG_PEEK, which on Linux installs new numbers each time.  ``posix.recvmsg`` turns
the references a driver returns back into new numbers (``install``).

* A layer socket (virtual or kernel) travels as its ``OpenSocket``: the receiver gets
  the same description, so O_NONBLOCK and everything else stays shared.
* Any other descriptor (a pipe, a file, a kernel socket made outside the layer)
  travels as a duplicate of its open file, parked out of the way of the lowest-free
  allocation (see ``parking``), so holding it does not shift the program's numbers.
"""

from __future__ import annotations

import fcntl
import os
import threading

from . import descriptors
from .descriptors import OpenSocket
from .parking import park

__all__ = ["InFlight", "SocketInFlight", "FileInFlight", "send", "install"]


class InFlight:
    """One descriptor in an SCM_RIGHTS message.  Closing it twice is harmless."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def clone(self) -> InFlight:
        """A second reference to the same open description (MSG_PEEK's copies)."""
        raise NotImplementedError

    def install(self, cloexec: bool) -> int:
        """A new lowest-free number for the description; the reference is used up."""
        raise NotImplementedError

    def kernel_number(self) -> int | None:
        """A kernel descriptor for the same open description, for a driver that passes
        it on over a kernel socket (to another process); None if it has none."""
        raise NotImplementedError


class SocketInFlight(InFlight):
    __slots__ = ("_socket", "_lock")

    def __init__(self, f: OpenSocket) -> None:
        descriptors.hold(f)
        self._socket: OpenSocket | None = f
        self._lock = threading.Lock()

    def _take(self) -> OpenSocket | None:
        with self._lock:
            f, self._socket = self._socket, None
        return f

    def close(self) -> None:
        f = self._take()
        if f is not None:
            descriptors.drop(f)

    def clone(self) -> SocketInFlight:
        f = self._socket
        if f is None:
            raise ValueError("reference already used")
        return SocketInFlight(f)

    def install(self, cloexec: bool) -> int:
        f = self._take()
        if f is None:
            raise ValueError("reference already used")
        try:
            return descriptors.give_number(f, cloexec)
        finally:
            descriptors.drop(f)

    def kernel_number(self) -> int | None:
        f = self._socket
        if f is None:
            raise ValueError("reference already used")
        return f.kernel if f.kernel is not None else f.driver.kernel_number(f.sock)

    def __repr__(self) -> str:
        return f"<SocketInFlight {self._socket!r}>"


class FileInFlight(InFlight):
    __slots__ = ("_fd", "_lock")

    def __init__(self, fd: int) -> None:
        self._fd = park(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0))
        self._lock = threading.Lock()

    def _take(self) -> int:
        with self._lock:
            fd, self._fd = self._fd, -1
        return fd

    def close(self) -> None:
        fd = self._take()
        if fd >= 0:
            os.close(fd)

    def clone(self) -> FileInFlight:
        if self._fd < 0:
            raise ValueError("reference already used")
        return FileInFlight(self._fd)

    def install(self, cloexec: bool) -> int:
        fd = self._take()
        if fd < 0:
            raise ValueError("reference already used")
        try:
            return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC if cloexec else fcntl.F_DUPFD, 0)
        finally:
            os.close(fd)

    def kernel_number(self) -> int | None:
        if self._fd < 0:
            raise ValueError("reference already used")
        return self._fd

    def __repr__(self) -> str:
        return f"<FileInFlight parked at {self._fd}>"


def send(fd: int) -> InFlight:
    """The in-flight reference for descriptor ``fd`` (EBADF if it is not open)."""
    f = descriptors.lookup(fd)
    if f is not None:
        return SocketInFlight(f)
    return FileInFlight(fd)


def install(refs: list[InFlight], cloexec: bool) -> tuple[list[int], bool]:
    """New numbers for ``refs``, in order.  Like Linux's scm_detach_fds, a number that
    cannot be had (EMFILE) ends the list: the rest are closed and the second result,
    "truncated", is True."""
    numbers: list[int] = []
    for index, ref in enumerate(refs):
        try:
            numbers.append(ref.install(cloexec))
        except OSError:
            ref.close()
            for rest in refs[index + 1:]:
                rest.close()
            return numbers, True
    return numbers, False
