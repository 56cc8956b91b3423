"""How the trace writes arguments and results: names, not numbers.

strace prints ``SOL_SOCKET, SO_REUSEADDR`` and ``MSG_DONTWAIT|MSG_PEEK``; a Python
programmer also wants addresses as the stdlib prints them and payloads short enough
to read.  Everything here is pure formatting, used by ``tracing``.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from typing import Any

__all__ = ["family", "kind", "proto", "msg_flags", "level", "option", "how", "payload",
           "address", "error", "poll_events", "epoll_events", "accept_flags", "option_value"]

PAYLOAD_SHOWN = 32  # bytes of a payload the line shows before its length


def _names(prefix: str, module: Any = socket, skip: tuple[str, ...] = ()) -> dict[int, str]:
    """value -> name for the module's constants starting with ``prefix`` (the first
    name in alphabetical order wins where two names share a value)."""
    found: dict[int, str] = {}
    for name in sorted(dir(module)):
        value = getattr(module, name)
        if (name.startswith(prefix) and name not in skip and isinstance(value, int)
                and not name.startswith(_NOT_OPTIONS)):
            found.setdefault(int(value), name)
    return found


# Not options of the levels they seem to be, though the names start alike (CAN J1939,
# vsock, the IP defaults).
_NOT_OPTIONS = ("SO_J1939_", "SO_VM_", "IP_DEFAULT_")
_FAMILIES = _names("AF_")
_KINDS = {int(k): k.name for k in socket.SocketKind}
_PROTOCOLS = _names("IPPROTO_", skip=("IPPROTO_IP", "IPPROTO_HOPOPTS"))
_MSG = sorted(_names("MSG_").items())
_POLL = sorted(_names("POLL", select, skip=("POLLRDNORM", "POLLWRNORM", "POLLMSG")).items())
_EPOLL = sorted(_names("EPOLL", select, skip=("EPOLL_CLOEXEC", "EPOLLRDNORM",
                                              "EPOLLWRNORM", "EPOLLMSG")).items())
_SOCK_NONBLOCK, _SOCK_CLOEXEC = int(socket.SOCK_NONBLOCK), int(socket.SOCK_CLOEXEC)
_IPPROTO_IPV6 = getattr(socket, "IPPROTO_IPV6", 41)
# Levels as strace names them, each with the prefix of its options.
_LEVELS = {
    int(socket.SOL_SOCKET): ("SOL_SOCKET", "SO_"),
    int(socket.IPPROTO_IP): ("SOL_IP", "IP_"),
    int(socket.IPPROTO_TCP): ("SOL_TCP", "TCP_"),
    int(socket.IPPROTO_UDP): ("SOL_UDP", "UDP_"),
    _IPPROTO_IPV6: ("SOL_IPV6", "IPV6_"),
}
_OPTIONS = {value: _names(prefix) for value, (_name, prefix) in _LEVELS.items()}
_HOW = {int(socket.SHUT_RD): "SHUT_RD", int(socket.SHUT_WR): "SHUT_WR",
        int(socket.SHUT_RDWR): "SHUT_RDWR"}


def _bits(value: int, names: list[tuple[int, str]]) -> str:
    if not value:
        return "0"
    parts = []
    rest = value
    for bit, name in names:
        if bit and value & bit == bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts)


def family(value: int) -> str:
    return _FAMILIES.get(value, str(value))


def kind(value: int, nonblocking: bool = False, cloexec: bool = False) -> str:
    text = _KINDS.get(value, str(value))
    if nonblocking:
        text += "|SOCK_NONBLOCK"
    if cloexec:
        text += "|SOCK_CLOEXEC"
    return text


def accept_flags(value: int) -> str:
    names = [(_SOCK_NONBLOCK, "SOCK_NONBLOCK"), (_SOCK_CLOEXEC, "SOCK_CLOEXEC")]
    return _bits(value, names)


def proto(value: int) -> str:
    return _PROTOCOLS.get(value, str(value)) if value else "0"


def msg_flags(value: int) -> str:
    return _bits(value, _MSG)


def poll_events(value: int) -> str:
    return _bits(value, _POLL)


def epoll_events(value: int) -> str:
    return _bits(value, _EPOLL)


def level(value: int) -> str:
    return _LEVELS[value][0] if value in _LEVELS else str(value)


def option(level_value: int, value: int) -> str:
    return _OPTIONS.get(level_value, {}).get(value, str(value))


def option_value(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return payload(value)
    return repr(value)


def how(value: int) -> str:
    return _HOW.get(value, str(value))


def payload(data: Any) -> str:
    """The first bytes as Python writes bytes, then the length: readable at a glance,
    exact about the size."""
    try:
        view = memoryview(data)
    except TypeError:
        return repr(data)
    size = view.nbytes
    head = bytes(view.cast("B")[:PAYLOAD_SHOWN]) if size else b""
    more = "..." if size > PAYLOAD_SHOWN else ""
    return f"{head!r}{more} ({size} byte{'' if size == 1 else 's'})"


def buffers(items: Any) -> str:
    try:
        parts = list(items)
    except TypeError:
        return repr(items)
    return "[" + ", ".join(payload(part) for part in parts) + "]"


def address(addr: Any) -> str:
    return repr(addr)


def error(exc: BaseException) -> str:
    """``-1 ECONNREFUSED (Connection refused)`` for an OSError, as strace writes it;
    ``? TypeError(...)`` for anything else."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and isinstance(code, int):
        name = errno.errorcode.get(code, str(code))
        return f"-1 {name} ({os.strerror(code)})"
    return f"? {type(exc).__name__}({', '.join(repr(a) for a in exc.args)})"
