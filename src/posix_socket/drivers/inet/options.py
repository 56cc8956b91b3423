"""Socket options of virtual IP sockets, stored and read back as Linux does.

Boolean options read back as 0/1, integer options need at least an int's worth of
bytes (EINVAL), SO_RCVBUF/SO_SNDBUF are doubled and clamped like the kernel, and
unknown options are ENOPROTOOPT (before any length check, except at the socket's and
the transport's own levels, where a short value is EINVAL first).  IPPROTO_IP integers
also take a 1-3 byte buffer (its first byte) and read back as one byte into a buffer
shorter than an int, as do_ip_setsockopt / ip_getsockopt do; -1 sets an option whose
range starts at -1 to its default (IP_MULTICAST_TTL, IPV6_UNICAST_HOPS, IPV6_TCLASS,
IPV6_MULTICAST_HOPS).  Group memberships (kept by UDP sockets) are EPROTO on TCP
sockets, which also cannot set IPV6_MULTICAST_HOPS or IPV6_MULTICAST_IF (ENOPROTOOPT)
but read them.  Defaults come from this
machine's kernel settings where Linux takes them from sysctls, so a program sees the
numbers it would see on the kernel's loopback.
"""

from __future__ import annotations

import errno
import socket
import struct

from ...errors import oserror

__all__ = ["Options", "kernel_setting", "IP_MULTICAST_ALL", "IPV6_MULTICAST_ALL", "UDP_CORK",
           "IP_BIND_ADDRESS_NO_PORT", "IP_MTU_DISCOVER", "IPV6_MTU_DISCOVER"]

_INT = struct.Struct("@i")
_LINGER = struct.Struct("@ii")
SOL_SOCKET, IPPROTO_TCP, IPPROTO_IP = socket.SOL_SOCKET, socket.IPPROTO_TCP, socket.IPPROTO_IP
IPPROTO_IPV6, IPPROTO_UDP = socket.IPPROTO_IPV6, socket.IPPROTO_UDP
SOCK_MIN_RCVBUF, SOCK_MIN_SNDBUF = 2304, 4608
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # Linux's number; Python may not name it
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IPV6_MULTICAST_ALL = getattr(socket, "IPV6_MULTICAST_ALL", 29)
UDP_CORK = getattr(socket, "UDP_CORK", 1)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
# IP_PMTUDISC_DONT, _WANT (the default while net.ipv4.ip_no_pmtu_disc is 0), _DO,
# _PROBE, _INTERFACE, _OMIT: the same numbers for IPv6's IPV6_PMTUDISC_*.
PMTUDISC_DONT, PMTUDISC_WANT, PMTUDISC_DO, PMTUDISC_OMIT = 0, 1, 2, 5
# IPPROTO_IP options that take an empty buffer (as 0): do_ip_setsockopt checks the
# length only for the others.
_EMPTY_IS_ZERO = frozenset({socket.IP_TOS, IP_BIND_ADDRESS_NO_PORT})
_TOS = (socket.IPPROTO_IP, socket.IP_TOS)
_PRIORITY = (socket.SOL_SOCKET, socket.SO_PRIORITY)
_ECN_MASK = 3
# Linux's ip_tos2prio, by IPTOS_TOS(tos) >> 1: best effort, bulk, interactive,
# interactive bulk (TC_PRIO_*), each twice over (ECN_OR_COST is the same class).
_TOS_PRIORITY = (0, 0, 0, 0, 2, 2, 2, 2, 6, 6, 6, 6, 4, 4, 4, 4)
# Group memberships: a UDP socket keeps them; a TCP socket has none (EPROTO).
GROUP_OPTIONS = frozenset({(IPPROTO_IP, socket.IP_ADD_MEMBERSHIP),
                           (IPPROTO_IP, socket.IP_DROP_MEMBERSHIP),
                           (IPPROTO_IPV6, socket.IPV6_JOIN_GROUP),
                           (IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP)})
_DEVICE = (SOL_SOCKET, getattr(socket, "SO_BINDTODEVICE", 25))  # kept in ``changed``
_IPV6_MREQ_SIZE = 20  # struct ipv6_mreq: a 16-byte group and an int interface index


def _congestion_control() -> str:
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as file:
            return file.read().strip()
    except OSError:
        return "cubic"


def established_sndbuf(mtu: int | None = None, v6: bool = False) -> int:
    """SO_SNDBUF Linux gives a TCP socket once its connection is established
    (tcp_sndbuf_expand, unless the program set SO_SNDBUF): room for twice the initial
    window of 10 segments (three times with BBR), each counted as its MSS plus headers
    rounded up to a power of two (the x86-64 sizes), at most tcp_wmem's maximum.  On
    loopback (``mtu`` None) that is 3939840 with BBR."""
    mss = (mtu or 65536) - (60 if v6 else 40) - 12  # TCP timestamps on
    per_mss = (1 << (mss + 640 - 1).bit_length()) + 256
    factor = 3 if _congestion_control() == "bbr" else 2
    return min(factor * 10 * per_mss, TCP_WMEM_MAX)


def kernel_setting(path: str, default: list[int]) -> list[int]:
    """A sysctl of the running kernel (e.g. net/ipv4/tcp_rmem), or Linux's default."""
    try:
        with open(f"/proc/sys/{path}") as file:
            return [int(word) for word in file.read().split()]
    except (OSError, ValueError):
        return default


RMEM_MAX = kernel_setting("net/core/rmem_max", [212992])[0]
WMEM_MAX = kernel_setting("net/core/wmem_max", [212992])[0]
TCP_RMEM = kernel_setting("net/ipv4/tcp_rmem", [4096, 131072, 6291456])[1]
TCP_WMEM = kernel_setting("net/ipv4/tcp_wmem", [4096, 16384, 4194304])[1]
TCP_WMEM_MAX = kernel_setting("net/ipv4/tcp_wmem", [4096, 16384, 4194304])[2]
LOOPBACK_SNDBUF = established_sndbuf()
UDP_RMEM = kernel_setting("net/core/rmem_default", [212992])[0]
UDP_WMEM = kernel_setting("net/core/wmem_default", [212992])[0]

_BOOL = "bool"
_INTEGER = "int"
_READ_ONLY = "read-only"  # reads its default; setting it is ENOPROTOOPT
_NOT_ON_STREAM = "not on a stream"  # reads its default; setting it is EINVAL
# Linux 6.x: credentials and security labels pass only over AF_UNIX (and netlink);
# an IP socket answers EOPNOTSUPP to reading or setting them.
_PASS_OPTIONS = frozenset({(SOL_SOCKET, getattr(socket, "SO_PASSCRED", 16)),
                           (SOL_SOCKET, getattr(socket, "SO_PASSSEC", 34)),
                           (SOL_SOCKET, getattr(socket, "SO_PASSPIDFD", 76))})

# (level, name) -> (kind, default, lowest accepted, highest accepted)
_COMMON = {
    (SOL_SOCKET, socket.SO_REUSEADDR): (_BOOL, 0, None, None),
    (SOL_SOCKET, socket.SO_REUSEPORT): (_BOOL, 0, None, None),
    (SOL_SOCKET, socket.SO_KEEPALIVE): (_BOOL, 0, None, None),
    (SOL_SOCKET, socket.SO_BROADCAST): (_BOOL, 0, None, None),
    (SOL_SOCKET, socket.SO_OOBINLINE): (_BOOL, 0, None, None),
    (SOL_SOCKET, socket.SO_DONTROUTE): (_BOOL, 0, None, None),
    (SOL_SOCKET, socket.SO_PRIORITY): (_INTEGER, 0, 0, 6),
    (SOL_SOCKET, socket.SO_RCVLOWAT): (_INTEGER, 1, None, None),
    (SOL_SOCKET, SO_RXQ_OVFL): (_BOOL, 0, None, None),
    (SOL_SOCKET, socket.SO_SNDLOWAT): (_INTEGER, 1, None, None),
    (IPPROTO_IP, socket.IP_TOS): (_INTEGER, 0, None, None),
    (IPPROTO_IP, socket.IP_TTL): (_INTEGER, 64, 1, 255),
    (IPPROTO_IP, socket.IP_MULTICAST_TTL): (_INTEGER, 1, -1, 255),  # -1: the default
    (IPPROTO_IP, socket.IP_MULTICAST_LOOP): (_BOOL, 1, None, None),
    (IPPROTO_IP, IP_MULTICAST_ALL): (_INTEGER, 1, 0, 1),  # 0 or 1, else EINVAL
    # bind() to port 0 leaves the port to connect() or listen() (see tcp.py, udp.py)
    (IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT): (_BOOL, 0, None, None),
    (IPPROTO_IP, IP_MTU_DISCOVER): (_INTEGER, PMTUDISC_WANT, PMTUDISC_DONT, PMTUDISC_OMIT),
}
_TCP = {
    (IPPROTO_TCP, socket.TCP_NODELAY): (_BOOL, 0, None, None),
    (IPPROTO_TCP, socket.TCP_CORK): (_BOOL, 0, None, None),
    (IPPROTO_TCP, socket.TCP_QUICKACK): (_BOOL, 1, None, None),
    (IPPROTO_TCP, socket.TCP_KEEPIDLE): (_INTEGER, 7200, 1, 32767),
    (IPPROTO_TCP, socket.TCP_KEEPINTVL): (_INTEGER, 75, 1, 32767),
    (IPPROTO_TCP, socket.TCP_KEEPCNT): (_INTEGER, 9, 1, 127),
    (IPPROTO_TCP, socket.TCP_USER_TIMEOUT): (_INTEGER, 0, 0, None),
    (IPPROTO_TCP, socket.TCP_SYNCNT): (_INTEGER, 6, 1, 127),
    (IPPROTO_TCP, socket.TCP_LINGER2): (_INTEGER, 60, None, None),
    (IPPROTO_TCP, socket.TCP_DEFER_ACCEPT): (_INTEGER, 0, None, None),
    (IPPROTO_TCP, socket.TCP_WINDOW_CLAMP): (_INTEGER, 0, None, None),
    (IPPROTO_TCP, socket.TCP_FASTOPEN): (_INTEGER, 0, None, None),
    (IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT): (_INTEGER, 0, None, None),
    (IPPROTO_TCP, socket.TCP_MAXSEG): (_INTEGER, 536, 88, 32767),
    # do_ip_setsockopt: EINVAL for the multicast TTL and interface of a stream socket
    (IPPROTO_IP, socket.IP_MULTICAST_TTL): (_NOT_ON_STREAM, 1, None, None),
    (IPPROTO_IP, socket.IP_MULTICAST_IF): (_NOT_ON_STREAM, 0, None, None),
}
_V6 = {
    (IPPROTO_IPV6, socket.IPV6_V6ONLY): (_BOOL, 0, None, None),
    (IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS): (_INTEGER, 64, -1, 255),
    (IPPROTO_IPV6, socket.IPV6_TCLASS): (_INTEGER, 0, -1, 255),
    (IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS): (_INTEGER, 1, -1, 255),  # -1: the default
    (IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP): (_INTEGER, 1, 0, 1),  # 0 or 1, else EINVAL
    (IPPROTO_IPV6, socket.IPV6_MULTICAST_IF): (_INTEGER, 0, None, None),  # checked by UDP
    (IPPROTO_IPV6, IPV6_MULTICAST_ALL): (_BOOL, 1, None, None),
    (IPPROTO_IPV6, IPV6_MTU_DISCOVER): (_INTEGER, PMTUDISC_WANT, PMTUDISC_DONT, PMTUDISC_OMIT),
}
# do_ipv6_setsockopt refuses the multicast interface and hops on a stream socket
# (ENOPROTOOPT, whatever the value) but ipv6_getsockopt reads them all the same.
_V6_TCP = {
    (IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS): (_READ_ONLY, 1, None, None),
    (IPPROTO_IPV6, socket.IPV6_MULTICAST_IF): (_READ_ONLY, 0, None, None),
}
_UDP = {
    (IPPROTO_UDP, UDP_CORK): (_BOOL, 0, None, None),
}


def _table(family: int, tcp: bool) -> dict:
    table = dict(_COMMON)
    table.update(_TCP if tcp else _UDP)
    if family == socket.AF_INET6:
        table.update(_V6)
        if tcp:
            table.update(_V6_TCP)
        # inet6_create leaves IPv4's mc_all off: a dual-stack socket takes an IPv4
        # group's datagrams only for groups it joined, unless it turns the option on.
        table[(IPPROTO_IP, IP_MULTICAST_ALL)] = (_INTEGER, 0, 0, 1)
    return table


_TABLES = {(family, tcp): _table(family, tcp)
           for family in (socket.AF_INET, socket.AF_INET6) for tcp in (True, False)}


class Options:
    """The option values of one socket: the shared defaults plus what was changed
    (an idle socket carries no dictionary of its own)."""

    __slots__ = ("table", "changed", "rcvbuf", "sndbuf", "sndbuf_locked", "linger")

    def __init__(self, family: int, tcp: bool) -> None:
        self.table = _TABLES[(family, tcp)]
        self.changed: dict[tuple[int, int], int] | None = None
        self.rcvbuf = TCP_RMEM if tcp else UDP_RMEM
        self.sndbuf = TCP_WMEM if tcp else UDP_WMEM
        # Set by the program (Linux's SOCK_SNDBUF_LOCK): the send queue stops growing there.
        self.sndbuf_locked = False
        self.linger: tuple[int, int] = (0, 0)

    def inherit(self, parent: Options) -> None:
        """An accepted socket starts with its listener's options, as on Linux."""
        self.changed = dict(parent.changed) if parent.changed else None
        self.rcvbuf, self.sndbuf, self.linger = parent.rcvbuf, parent.sndbuf, parent.linger
        self.sndbuf_locked = parent.sndbuf_locked

    def copy(self) -> Options:
        """A new socket's options, starting as these (``inherit`` without first
        making the defaults): what every accepted connection is given.  All but
        SO_PRIORITY, which Linux's accepted socket has at 0 whatever its listener's
        (set, or derived from IP_TOS) and its peer's."""
        options = Options.__new__(Options)
        options.table = self.table
        changed = self.changed
        if changed:
            changed = dict(changed)
            changed.pop(_PRIORITY, None)
        options.changed = changed or None
        options.rcvbuf, options.sndbuf, options.linger = self.rcvbuf, self.sndbuf, self.linger
        options.sndbuf_locked = self.sndbuf_locked
        return options

    def flag(self, level: int, name: int) -> int:
        changed = self.changed
        if changed and (level, name) in changed:
            return changed[(level, name)]
        return self.table[(level, name)][1]

    def get(self, level: int, name: int, buflen: int) -> int | bytes:
        if (level, name) == (SOL_SOCKET, socket.SO_RCVBUF):
            value = self.rcvbuf
        elif (level, name) == (SOL_SOCKET, socket.SO_SNDBUF):
            value = self.sndbuf
        elif (level, name) == (SOL_SOCKET, socket.SO_LINGER):
            raw = _LINGER.pack(*self.linger)
            return raw[:buflen] if buflen else _INT.unpack(raw[:4])[0]
        elif (level, name) in self.table:
            value = self.flag(level, name)
            if level == IPPROTO_IP and 0 < buflen < _INT.size and 0 <= value <= 255:
                return bytes((value,))  # ip_getsockopt answers a short buffer with a byte
        elif (level, name) in _PASS_OPTIONS:
            raise oserror(errno.EOPNOTSUPP)
        else:
            raise self._unknown_to_get(level)
        return _INT.pack(value)[:buflen] if buflen else value

    def set(self, level: int, name: int, value: int | bytes) -> None:
        if (level, name) in GROUP_OPTIONS and self._serves(level):
            self._refuse_groups(level, value)
        spec = self.table.get((level, name))
        if (level, name) == (IPPROTO_IP, socket.IP_MULTICAST_IF) and self._transport() == (
                IPPROTO_TCP):
            raise oserror(errno.EINVAL)  # do_ip_setsockopt: never on a stream socket
        if (spec is None and level not in (SOL_SOCKET, self._transport())) or (
                spec is not None and spec[0] == _READ_ONLY):
            raise oserror(errno.ENOPROTOOPT)  # before any length check, as ip_setsockopt
        if (level, name) in _PASS_OPTIONS:
            _int_value(value)  # a short value is EINVAL first, as sk_setsockopt
            raise oserror(errno.EOPNOTSUPP)
        if (level, name) == (SOL_SOCKET, socket.SO_LINGER):
            if isinstance(value, int) or len(value) < _LINGER.size:
                raise oserror(errno.EINVAL)
            onoff, seconds = _LINGER.unpack(value[:_LINGER.size])
            # l_onoff 0 clears the flag only: the time stays (sk_lingertime)
            self.linger = (1, seconds) if onoff else (0, self.linger[1])
            return
        if level == IPPROTO_IP and not isinstance(value, int) and len(value) < _INT.size:
            if value:
                number = value[0]  # do_ip_setsockopt takes one byte from a short buffer
            elif name in _EMPTY_IS_ZERO:
                number = 0  # and reads nothing from an empty one, which some take
            else:
                raise oserror(errno.EINVAL)
        else:
            number = _int_value(value, level)
        if spec is not None and spec[0] == _NOT_ON_STREAM:
            raise oserror(errno.EINVAL)  # after reading the value, as do_ip_setsockopt
        if (level, name) == (SOL_SOCKET, socket.SO_RCVBUF):
            self.rcvbuf = max(min(number, RMEM_MAX) * 2, SOCK_MIN_RCVBUF)
            return
        if (level, name) == (SOL_SOCKET, socket.SO_SNDBUF):
            self.sndbuf = max(min(number, WMEM_MAX) * 2, SOCK_MIN_SNDBUF)
            self.sndbuf_locked = True
            return
        if spec is None:
            raise oserror(errno.ENOPROTOOPT)  # whatever the level, as ip_setsockopt
        kind, default, lowest, highest = spec
        if kind == _BOOL:
            number = 1 if number else 0
        elif number == -1 and lowest == -1:
            number = default  # -1 asks for the default (IP_MULTICAST_TTL, hop limits)
        elif (lowest is not None and number < lowest) or (
                highest is not None and number > highest):
            raise oserror(errno.EINVAL)
        if self.changed is None:
            self.changed = {}
        if (level, name) == _TOS:
            number = self._new_tos(number)
        self.changed[(level, name)] = number

    def _new_tos(self, tos: int) -> int:
        """__ip_sock_set_tos: a stream socket keeps its own ECN bits, and a TOS that
        changes sets SO_PRIORITY from its bits (rt_tos2priority)."""
        old = self.flag(IPPROTO_IP, socket.IP_TOS)
        if self._transport() == IPPROTO_TCP:
            tos = (tos & ~_ECN_MASK) | (old & _ECN_MASK)
        if tos != old:
            self.changed[_PRIORITY] = _TOS_PRIORITY[(tos & 0x1E) >> 1]
        return tos

    def established(self, mtu: int | None = None, v6: bool = False) -> None:
        """The connection is established: SO_SNDBUF grows (see established_sndbuf)."""
        if not self.sndbuf_locked:
            size = LOOPBACK_SNDBUF if mtu is None else established_sndbuf(mtu, v6)
            if self.sndbuf < size:
                self.sndbuf = size

    def bind_without_port(self, port: int) -> bool:
        """Does bind() to ``port`` leave the port for later (IP_BIND_ADDRESS_NO_PORT)?"""
        return not port and bool(self.changed) and bool(
            self.changed.get((IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT)))

    def device(self) -> int:
        """SO_BINDTODEVICE's index (a TCP socket's; UDP keeps its own bound_device)."""
        return self.changed.get(_DEVICE, 0) if self.changed else 0

    def set_device(self, index: int) -> None:
        if self.changed is None:
            self.changed = {}
        self.changed[_DEVICE] = index

    def _serves(self, level: int) -> bool:
        """Does this socket's family have options of ``level`` (IPv6 ones only an
        AF_INET6 socket; IPv4 ones both)?"""
        return level != IPPROTO_IPV6 or (IPPROTO_IPV6, socket.IPV6_V6ONLY) in self.table

    @staticmethod
    def _refuse_groups(level: int, value: int | bytes) -> None:
        """A group membership asked of a socket that keeps none (TCP): EPROTO, after
        do_ipv6_setsockopt's length check for IPv6 (ip_setsockopt has none first)."""
        if level == IPPROTO_IPV6 and (isinstance(value, int) or len(value) < _IPV6_MREQ_SIZE):
            raise oserror(errno.EINVAL)
        raise oserror(errno.EPROTO)

    def _unknown_to_get(self, level: int) -> OSError:
        """An option this socket does not have.  A level none of its protocols serves
        ends, on an IPv4 socket, in ip_getsockopt's "not my level" (EOPNOTSUPP: TCP
        options on UDP, IPv6 options on IPv4); IPv6 sockets and unknown names of a
        known level say ENOPROTOOPT."""
        v6 = (IPPROTO_IPV6, socket.IPV6_V6ONLY) in self.table
        if not v6 and level not in (SOL_SOCKET, IPPROTO_IP, self._transport()):
            return oserror(errno.EOPNOTSUPP)
        return oserror(errno.ENOPROTOOPT)

    def _transport(self) -> int:
        return IPPROTO_TCP if (IPPROTO_TCP, socket.TCP_NODELAY) in self.table else IPPROTO_UDP

    def bound_to(self, ip) -> int | None:
        """bind() to a specific IPv6 address (not :: nor an IPv4-mapped one) turns
        IPV6_V6ONLY on, as Linux's __inet6_bind does: such a socket cannot take IPv4.
        Returns the value before, for ``unbound`` when the bind fails after all."""
        key = (IPPROTO_IPV6, socket.IPV6_V6ONLY)
        if key not in self.table or ip.is_unspecified or ip.ipv4_mapped is not None:
            return None
        before = self.flag(*key)
        if self.changed is None:
            self.changed = {}
        self.changed[key] = 1
        return before

    def unbound(self, before: int | None) -> None:
        """Undo ``bound_to`` (Linux restores sk_ipv6only when the port is taken)."""
        if before is not None:
            self.changed[(IPPROTO_IPV6, socket.IPV6_V6ONLY)] = before


def _int_value(value: int | bytes, level: int = SOL_SOCKET) -> int:
    if isinstance(value, int):
        return value
    if len(value) < _INT.size:
        raise oserror(errno.EINVAL)
    if level == IPPROTO_IPV6 and not isinstance(value, bytes):
        return 0  # do_ipv6_setsockopt reads a NULL buffer (the four-argument form) as 0
    return _INT.unpack(bytes(value[:_INT.size]))[0]
