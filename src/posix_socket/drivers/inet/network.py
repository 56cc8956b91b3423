"""One isolated virtual IP network: its hosts, their names, and who is bound where.

Several networks can live in one process; sockets of one never see another's.  All
hosts are in this process, so every address of the network is local: 127.0.0.0/8 and
::1 belong to the first host, ``add_host`` adds more.  Ports are allocated per protocol
with Linux's rules (see ``Binding.conflicts``) from Linux's default ephemeral range.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import random
import socket
import threading
from collections.abc import Iterable
from typing import Any

from ...errors import oserror
from .addresses import ANY, ANY4, is_v4, is_wildcard, mapped

__all__ = ["VirtualNetwork", "Binding"]

EPHEMERAL_PORTS = range(32768, 61000)  # net.ipv4.ip_local_port_range default
_LOOPBACK4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK6 = ipaddress.IPv6Address("::1")
_LOOPBACK4_ADDRESS = mapped(ipaddress.IPv4Address("127.0.0.1"))


ALL, NONE = object(), object()


class Binding:
    """What a bound socket claims in a port table (Linux's bind-conflict inputs)."""

    __slots__ = ("owner", "ip", "v6only", "reuseaddr", "reuseport", "listening")

    def __init__(self, owner: Any, ip: ipaddress.IPv6Address, v6only: bool,
                 reuseaddr: bool, reuseport: bool) -> None:
        self.owner = owner
        self.ip = ip
        self.v6only = v6only
        self.reuseaddr = reuseaddr
        self.reuseport = reuseport
        self.listening = False

    def _reach(self, v4: bool) -> object:
        """What this binding claims of the IPv4 (or IPv6) space: ALL, NONE or one ip."""
        if self.ip == ANY:
            return NONE if (v4 and self.v6only) else ALL
        if self.ip == ANY4:
            return ALL if v4 else NONE
        return self.ip if is_v4(self.ip) == v4 else NONE

    def covers(self, ip: ipaddress.IPv6Address) -> bool:
        """Would a packet for ``ip`` reach this binding?"""
        reach = self._reach(is_v4(ip))
        return reach is ALL or reach == ip

    def overlaps(self, other: Binding) -> bool:
        for v4 in (True, False):
            mine, theirs = self._reach(v4), other._reach(v4)
            if mine is NONE or theirs is NONE:
                continue
            if mine is ALL or theirs is ALL or mine == theirs:
                return True
        return False

    def conflicts(self, other: Binding, *, tcp: bool) -> bool:
        """Linux's bind conflict test for two bindings of one port."""
        if not self.overlaps(other):
            return False
        if self.reuseport and other.reuseport:
            return False
        return not (self.reuseaddr and other.reuseaddr and not (tcp and other.listening))


class PortTable:
    def __init__(self, tcp: bool) -> None:
        self.tcp = tcp
        self.ports: dict[int, list[Binding]] = {}
        self._next = random.randrange(len(EPHEMERAL_PORTS))

    def bind(self, binding: Binding, port: int, parity: int | None = None) -> int:
        """Claim ``port`` (0: an ephemeral one, of ``parity`` when given: Linux gives
        bind/listen odd ports and connect even ones, keeping each half for one use)."""
        if port == 0:
            return self._ephemeral(binding, parity)
        taken = self.ports.get(port, ())
        if any(binding.conflicts(other, tcp=self.tcp) for other in taken):
            raise oserror(errno.EADDRINUSE)
        self.ports.setdefault(port, []).append(binding)
        return port

    def _ephemeral(self, binding: Binding, parity: int | None) -> int:
        span = len(EPHEMERAL_PORTS)
        for step in range(span):
            port = EPHEMERAL_PORTS[(self._next + step) % span]
            if port not in self.ports and (parity is None or port % 2 == parity):
                self._next = (self._next + step + 1) % span
                self.ports[port] = [binding]
                return port
        raise oserror(errno.EADDRINUSE)

    def unbind(self, binding: Binding, port: int) -> None:
        bindings = self.ports.get(port)
        if bindings and binding in bindings:
            bindings.remove(binding)
            if not bindings:
                del self.ports[port]

    def check(self, binding: Binding, port: int) -> None:
        """EADDRINUSE if ``binding`` (already in the table) now conflicts, as listen()
        re-checks."""
        if any(other is not binding and binding.conflicts(other, tcp=self.tcp)
               for other in self.ports.get(port, ())):
            raise oserror(errno.EADDRINUSE)

    def find(self, ip: ipaddress.IPv6Address, port: int) -> Iterable[Binding]:
        """Bindings a packet for (ip, port) may reach: exact address first."""
        bindings = self.ports.get(port, ())
        exact = [b for b in bindings if b.ip == ip]
        wild = [b for b in bindings if b.ip != ip and b.covers(ip)]
        return itertools.chain(exact, wild)


class Host:
    def __init__(self, addresses: list[ipaddress.IPv6Address], names: list[str]) -> None:
        self.addresses = addresses
        self.names = names


class VirtualNetwork:
    """An isolated IPv4/IPv6 network living in this process.

    ``add_host("10.0.0.2", names=["db.internal"])`` adds a host; sockets bound to its
    address speak from it.  ``lookup`` answers names from the network only.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tcp = PortTable(tcp=True)
        self.udp = PortTable(tcp=False)
        self.udp_drops = 0  # datagrams dropped at a full receive queue
        self.hosts: list[Host] = [Host([_LOOPBACK4_ADDRESS, _LOOPBACK6], ["localhost"])]
        self._local: set[ipaddress.IPv6Address] = {_LOOPBACK6}

    def add_host(self, *addresses: str, names: Iterable[str] = ()) -> None:
        ips = [_internal(ipaddress.ip_address(text)) for text in addresses]
        with self.lock:
            self.hosts.append(Host(ips, list(names)))
            self._local.update(ips)

    def is_local(self, ip: ipaddress.IPv6Address) -> bool:
        if is_wildcard(ip):
            return True
        v4 = ip.ipv4_mapped
        if v4 is not None and v4 in _LOOPBACK4:
            return True
        return ip in self._local

    def lookup(self, name: str, family: int) -> ipaddress.IPv6Address:
        """The first address of ``name`` usable by ``family``; gaierror if unknown."""
        for address in self.addresses_of(name):
            if family == socket.AF_INET6 or is_v4(address):
                return address
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def addresses_of(self, name: str) -> list[ipaddress.IPv6Address]:
        key = name.lower().rstrip(".")
        with self.lock:
            for host in self.hosts:
                if key in host.names:
                    return list(host.addresses)
        return []

    def loopback(self, v4: bool) -> ipaddress.IPv6Address:
        """Where a connect to the wildcard address goes, as on Linux."""
        return _LOOPBACK4_ADDRESS if v4 else _LOOPBACK6


def _internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return mapped(ip) if isinstance(ip, ipaddress.IPv4Address) else ip
