"""Socket options the layer answers itself, for sockets that live in Python.

SO_TYPE, SO_DOMAIN and SO_PROTOCOL describe the socket, not the transport, so every
driver gets them for free.  SO_RCVTIMEO and SO_SNDTIMEO steer the layer's own waiting.
Kernel sockets answer all of these in the kernel.  Encodings and errors follow Linux:
a ``struct timeval``; EINVAL for a short buffer; EDOM for tv_usec outside [0, 1e6);
a negative tv_sec means "do not wait"; values are kept in kernel ticks (jiffies), so
they read back rounded exactly as the kernel rounds them.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import TYPE_CHECKING

from .errors import oserror

_KERNEL_SOCKET = socket.socket  # captured before any patch() can replace it

if TYPE_CHECKING:
    from .descriptors import OpenSocket

__all__ = ["answers", "check_socket_level", "get", "set", "timeval", "device_index",
           "device_answer"]

SOL_SOCKET = socket.SOL_SOCKET
SO_TYPE = socket.SO_TYPE
SO_DOMAIN = getattr(socket, "SO_DOMAIN", 39)
SO_PROTOCOL = getattr(socket, "SO_PROTOCOL", 38)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_RCVTIMEO = socket.SO_RCVTIMEO
SO_SNDTIMEO = socket.SO_SNDTIMEO
_DESCRIPTIVE = (SO_TYPE, SO_DOMAIN, SO_PROTOCOL)
_TIMEOUTS = (SO_RCVTIMEO, SO_SNDTIMEO)
_TIMEVAL = struct.Struct("@ll")
_INT = struct.Struct("@i")

IFNAMSIZ = 16

_hz: int | None = None


def _kernel_hz() -> int:
    """Ticks per second of the running kernel, read off its own rounding of 1 µs."""
    global _hz
    if _hz is None:
        with _KERNEL_SOCKET(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            probe.setsockopt(SOL_SOCKET, SO_RCVTIMEO, _TIMEVAL.pack(0, 1))
            _sec, usec = _TIMEVAL.unpack(probe.getsockopt(SOL_SOCKET, SO_RCVTIMEO,
                                                          _TIMEVAL.size))
        _hz = round(1_000_000 / usec) if usec else 1000
    return _hz


def answers(level: int, optname: int) -> bool:
    return level == SOL_SOCKET and (optname in _DESCRIPTIVE or optname in _TIMEOUTS)


def check_socket_level(optname: int, value: int | bytes) -> None:
    """What Linux's sk_setsockopt checks before it looks at any SOL_SOCKET option but
    SO_BINDTODEVICE, for every family: an int's worth of bytes (EINVAL), which it then
    reads (EFAULT from a NULL buffer).  Unknown options are ENOPROTOOPT only after."""
    if isinstance(value, int) or optname == SO_BINDTODEVICE:
        return
    if len(value) < _INT.size:
        raise oserror(errno.EINVAL)
    if not isinstance(value, bytes):
        value[0]  # a NullBuffer: EFAULT


def get(f: OpenSocket, optname: int, buflen: int) -> int | bytes:
    if optname in _TIMEOUTS:
        raw = timeval(f.rcvtimeo if optname == SO_RCVTIMEO else f.sndtimeo)
    else:
        value = {SO_TYPE: f.type, SO_DOMAIN: f.family, SO_PROTOCOL: f.proto}[optname]
        if not buflen:
            return value
        raw = _INT.pack(value)
    if not buflen:
        return _INT.unpack(raw[:_INT.size])[0]
    return raw[:buflen]


def set(f: OpenSocket, optname: int, value: int | bytes) -> None:
    if optname in _DESCRIPTIVE:
        raise oserror(errno.ENOPROTOOPT)
    if isinstance(value, int) or len(value) < _TIMEVAL.size:
        raise oserror(errno.EINVAL)
    sec, usec = _TIMEVAL.unpack(bytes(value[:_TIMEVAL.size]))
    if not 0 <= usec < 1_000_000:
        raise oserror(errno.EDOM)
    if sec < 0:
        timeout: float | None = 0.0
    elif sec == 0 and usec == 0:
        timeout = None
    else:
        hz = _kernel_hz()
        ticks = sec * hz + -(-usec // (1_000_000 // hz))
        timeout = ticks / hz
    if optname == SO_RCVTIMEO:
        f.rcvtimeo = timeout
    else:
        f.sndtimeo = timeout


def timeval(timeout: float | None) -> bytes:
    """The struct timeval the kernel reports for a stored timeout."""
    if not timeout:
        return _TIMEVAL.pack(0, 0)
    hz = _kernel_hz()
    ticks = round(timeout * hz)
    return _TIMEVAL.pack(ticks // hz, (ticks % hz) * (1_000_000 // hz))


def device_index(value: int | bytes, devices: dict[bytes, int]) -> int:
    """SO_BINDTODEVICE's value -> the index of the device in ``devices`` (0: unbind).

    Read as sock_setbindtodevice reads it, for any family: at most IFNAMSIZ - 1 bytes
    (an int is its four bytes), the name ending at the first NUL; an empty name
    unbinds; a name the driver's network lacks is ENODEV."""
    raw = _INT.pack(value) if isinstance(value, int) else value
    name = bytes(raw[:IFNAMSIZ - 1]).split(b"\0", 1)[0] if len(raw) else b""
    if not name:
        return 0
    try:
        return devices[name]
    except KeyError:
        raise oserror(errno.ENODEV) from None


def device_answer(index: int, devices: dict[bytes, int], buflen: int) -> int | bytes:
    """getsockopt(SO_BINDTODEVICE) as sock_getbindtodevice answers: nothing when
    unbound; else the name and its NUL, which needs IFNAMSIZ bytes (EINVAL)."""
    if not index:
        return b"" if buflen else 0
    if buflen < IFNAMSIZ:
        raise oserror(errno.EINVAL)
    name = next(name for name, number in devices.items() if number == index)
    return name + b"\0"
