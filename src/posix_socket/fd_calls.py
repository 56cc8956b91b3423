"""Drop-ins for the ``os`` and ``fcntl`` calls that programs make on a socket's number.

Programs use a socket's ``fileno()`` with these modules directly:
multiprocessing.connection wraps ``socket.detach()`` in a Connection that reads,
writes and closes it with ``os.read``/``os.write``/``os.close``; asyncio's
``loop.sock_sendfile`` calls ``os.sendfile``; code reads O_NONBLOCK with
``fcntl.fcntl`` or ``os.get_blocking`` (and sets it with ``os.set_blocking``) and
FIONREAD with ``fcntl.ioctl``.  A virtual socket's number names a
kernel object that carries none of its bytes or flags, so on a virtual number these
calls go to ``posix``; on every other number (the layer's kernel sockets included) they
are the kernel's own.  ``os.close`` goes to ``posix`` for every layer number, so the
table never names a number the kernel has given back.

Not routed: ``os.dup``/``os.dup2`` (the layer arms mirrors with the kernel's dup2 on
its own numbers; ``socket.dup()`` and ``posix.dup`` are the way to share a socket).

``patch()`` puts these in the ``os`` and ``fcntl`` modules; the originals are
captured here at import, and the layer's own kernel calls reach them through these.
"""

from __future__ import annotations

import fcntl as _fcntl
import os as _os

from . import posix as _posix
from .descriptors import _files

__all__ = ["read", "write", "close", "sendfile", "get_blocking", "set_blocking", "fcntl",
           "ioctl", "OS_NAMES", "FCNTL_NAMES"]

OS_NAMES = ("read", "write", "close", "sendfile", "get_blocking", "set_blocking")
FCNTL_NAMES = ("fcntl", "ioctl")

_read, _write, _close, _sendfile = _os.read, _os.write, _os.close, _os.sendfile
_get_blocking, _set_blocking = _os.get_blocking, _os.set_blocking
_kernel_fcntl, _kernel_ioctl = _fcntl.fcntl, _fcntl.ioctl


def _virtual(fd: object) -> bool:
    f = _files.get(fd) if type(fd) is int else None  # 5.0 == 5: only ints are numbers
    return f is not None and f.kernel is None


def read(fd: int, length: int, /) -> bytes:
    return _posix.read(fd, length) if _virtual(fd) else _read(fd, length)


def write(fd: int, data: bytes, /) -> int:
    return _posix.write(fd, data) if _virtual(fd) else _write(fd, data)


def close(fd: int) -> None:
    if type(fd) is int and fd in _files:
        _posix.close(fd)
    else:
        _close(fd)


def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
    if _virtual(out_fd):
        return _posix.sendfile(out_fd, in_fd, offset, count)
    return _sendfile(out_fd, in_fd, offset, count)


def get_blocking(fd: int, /) -> bool:
    """O_NONBLOCK of the number's description: for a virtual number, its socket's (the
    kernel object behind an unarmed number is shared by many sockets)."""
    if _virtual(fd):
        return not _posix.fcntl(fd, _fcntl.F_GETFL) & _os.O_NONBLOCK
    return _get_blocking(fd)


def set_blocking(fd: int, blocking: bool, /) -> None:
    if _virtual(fd):
        flags = _posix.fcntl(fd, _fcntl.F_GETFL)
        _posix.fcntl(fd, _fcntl.F_SETFL, flags & ~_os.O_NONBLOCK if blocking
                     else flags | _os.O_NONBLOCK)
    else:
        _set_blocking(fd, blocking)


def _number(fd: object) -> object:
    """``fcntl``'s descriptor argument: an int, or an object with ``fileno()``."""
    if type(fd) is int or not hasattr(fd, "fileno"):
        return fd
    return fd.fileno()


# What the layer answers for a virtual number: O_NONBLOCK lives in its description,
# and a duplicate must be a layer number.  The rest (FD_CLOEXEC, locks) is the kernel
# number's own.
_LAYER_FCNTL = frozenset((_fcntl.F_GETFL, _fcntl.F_SETFL, _fcntl.F_DUPFD,
                          _fcntl.F_DUPFD_CLOEXEC))


def fcntl(fd: object, cmd: int, arg: int | bytes = 0, /) -> int | bytes:
    number = _number(fd)
    if cmd in _LAYER_FCNTL and _virtual(number):
        return _posix.fcntl(number, cmd, arg)
    return _kernel_fcntl(fd, cmd, arg)


def ioctl(fd: object, request: int, arg: int | bytes = 0, mutate_flag: bool = True,
          /) -> int | bytes:
    number = _number(fd)
    if _virtual(number):
        return _posix.ioctl(number, request, arg)
    return _kernel_ioctl(fd, request, arg, mutate_flag)
