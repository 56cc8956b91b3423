"""Multicast on the virtual network: group addresses, the structs Linux's multicast
socket options take, and the groups one UDP socket joined.

The network is one multicast interface, numbered 1 like Linux's lo and holding every
local address; the route to any group leads there, so an interface given as 0 (or as
an address of the network, for IPv4) is that one too.  Errnos were checked against
Linux 6.18 in a network namespace (``unshare -n``) whose interface routes the groups:

* IP_ADD_MEMBERSHIP / IP_DROP_MEMBERSHIP take an ip_mreq (8 bytes) or an ip_mreqn (12
  or more); fewer bytes are EINVAL, a group outside 224.0.0.0/4 EINVAL on join
  (EADDRNOTAVAIL on drop), joining twice EADDRINUSE, dropping a group not joined
  EADDRNOTAVAIL, an unknown interface ENODEV, more than igmp_max_memberships (20)
  groups ENOBUFS.
* IPV6_JOIN_GROUP / IPV6_LEAVE_GROUP (alias IPV6_ADD/DROP_MEMBERSHIP) take an
  ipv6_mreq (20 bytes or more, else EINVAL); a group outside ff00::/8 is EINVAL both
  ways, joining twice EADDRINUSE, an unknown interface ENODEV on join and
  EADDRNOTAVAIL on leave, as is leaving a group not joined.  There is no count limit:
  each membership costs 56 bytes of the socket's option memory (net.core.optmem_max),
  and a join past it is ENOMEM.
* IP_MULTICAST_IF takes an in_addr, an ip_mreq (its interface address) or an ip_mreqn:
  a local IPv4 address or 0.0.0.0 (EADDRNOTAVAIL otherwise).  IPV6_MULTICAST_IF takes
  an interface index: 0, or 1 (ENODEV for any other; EINVAL for a different one than
  the socket is bound to).
* Link-local and interface-local addresses (fe80::/10, ff01::/16, ff02::/16) name an
  interface: binding one needs a scope id (EINVAL without, ENODEV for an unknown one),
  and so does connecting, unless the socket is bound to a device or has an
  IPV6_MULTICAST_IF.  The scope id binds the socket to that device (Linux's
  sk_bound_dev_if) for good, even when the call then fails.
"""

from __future__ import annotations

import errno
import ipaddress
import struct

from ...errors import oserror
from .addresses import ANY4, BROADCAST, mapped
from .network import INTERFACE_INDEX, VirtualNetwork
from .options import kernel_setting

__all__ = ["Memberships", "is_group", "is_group4", "is_group6", "needs_scope",
           "interface_address4", "interface_index6"]

_MULTICAST4 = ipaddress.IPv4Network("224.0.0.0/4")
_LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")
_DIRECTED_BROADCAST = mapped(ipaddress.IPv4Address("127.255.255.255"))
_MREQN = struct.Struct("@4s4si")  # struct ip_mreqn: group, interface address, ifindex
_MREQ6 = struct.Struct("@16si")  # struct ipv6_mreq: group, interface index
_INT = struct.Struct("@i")
MAX_MEMBERSHIPS4 = kernel_setting("net/ipv4/igmp_max_memberships", [20])[0]
OPTION_MEMORY = kernel_setting("net/core/optmem_max", [131072])[0]
MEMBERSHIP6_COST = 56  # sizeof(struct ipv6_mc_socklist) on x86-64, from option memory


def is_group4(ip: ipaddress.IPv6Address) -> bool:
    """An IPv4 multicast group (kept IPv4-mapped, as every IPv4 address here)."""
    v4 = ip.ipv4_mapped
    return v4 is not None and v4 in _MULTICAST4


def is_group6(ip: ipaddress.IPv6Address) -> bool:
    return ip.packed[0] == 0xFF


def is_group(ip: ipaddress.IPv6Address) -> bool:
    return is_group6(ip) or is_group4(ip)


def needs_scope(ip: ipaddress.IPv6Address) -> bool:
    """Does ``ip`` only mean something on one interface (Linux's
    __ipv6_addr_needs_scope_id: link-local unicast, interface- and link-local
    multicast)?"""
    if is_group6(ip):
        return ip.packed[1] & 0x0F in (1, 2)
    return ip in _LINK_LOCAL


def names_interface4(net: VirtualNetwork, address: bytes, ifindex: int) -> bool:
    """Does (interface address, ifindex) of an IPv4 option name the network's
    interface?  Both 0: the route to the group, which always leads there."""
    if ifindex:
        return ifindex == INTERFACE_INDEX
    ip = mapped(ipaddress.IPv4Address(address))
    return ip == ANY4 or (not is_group4(ip) and ip not in (BROADCAST, _DIRECTED_BROADCAST)
                          and net.is_local(ip))


def interface_address4(net: VirtualNetwork, value: int | bytes) -> ipaddress.IPv6Address:
    """IP_MULTICAST_IF's value (an in_addr, an ip_mreq or an ip_mreqn) -> the address
    multicast is sent from (0.0.0.0: the interface's own)."""
    if isinstance(value, int):
        value = _INT.pack(value)
    if len(value) < 4:
        raise oserror(errno.EINVAL)
    if len(value) >= _MREQN.size:
        _group, address, ifindex = _MREQN.unpack(bytes(value[:_MREQN.size]))
    elif len(value) >= 8:
        address, ifindex = bytes(value[4:8]), 0
    else:
        address, ifindex = bytes(value[:4]), 0
    if not names_interface4(net, address, ifindex):
        raise oserror(errno.EADDRNOTAVAIL)
    return mapped(ipaddress.IPv4Address(address))


def interface_index6(value: int | bytes, bound_device: int) -> int:
    """IPV6_MULTICAST_IF's value -> the interface index (0: by the route)."""
    if not isinstance(value, (int, bytes)) and len(value) >= _INT.size:
        value = 0  # do_ipv6_setsockopt reads a NULL buffer (the four-argument form) as 0
    if not isinstance(value, int):
        if len(value) < _INT.size:
            raise oserror(errno.EINVAL)
        value = _INT.unpack(bytes(value[:_INT.size]))[0]
    if value and value != INTERFACE_INDEX:
        raise oserror(errno.ENODEV)
    if value and bound_device and bound_device != value:
        raise oserror(errno.EINVAL)  # not the device the socket is bound to
    return value


class Memberships:
    """The groups one socket joined, IPv4 and IPv6 apart (each family has its own
    limit); every join and leave is also counted by the network, whose interface is
    in a group while any socket is."""

    __slots__ = ("net", "v4", "v6")

    def __init__(self, net: VirtualNetwork) -> None:
        self.net = net
        self.v4: set[ipaddress.IPv6Address] = set()
        self.v6: set[ipaddress.IPv6Address] = set()

    def __contains__(self, group: object) -> bool:
        return group in self.v4 or group in self.v6

    def change4(self, join: bool, value: int | bytes) -> None:
        """IP_ADD_MEMBERSHIP (join) or IP_DROP_MEMBERSHIP with an ip_mreq/ip_mreqn."""
        if isinstance(value, int) or len(value) < 8:
            raise oserror(errno.EINVAL)
        raw = bytes(value[:_MREQN.size]) if len(value) >= _MREQN.size else (
            bytes(value[:8]) + bytes(4))
        group_bytes, address, ifindex = _MREQN.unpack(raw)
        group = mapped(ipaddress.IPv4Address(group_bytes))
        ours = names_interface4(self.net, address, ifindex)
        if not join:
            if group not in self.v4 or not ours:
                raise oserror(errno.EADDRNOTAVAIL)
            self._leave(self.v4, group)
            return
        if not is_group4(group):
            raise oserror(errno.EINVAL)
        if not ours:
            raise oserror(errno.ENODEV)
        if group in self.v4:
            raise oserror(errno.EADDRINUSE)
        if len(self.v4) >= MAX_MEMBERSHIPS4:
            raise oserror(errno.ENOBUFS)
        self._join(self.v4, group)

    def change6(self, join: bool, value: int | bytes) -> None:
        """IPV6_JOIN_GROUP (join) or IPV6_LEAVE_GROUP with an ipv6_mreq."""
        if isinstance(value, int) or len(value) < _MREQ6.size:
            raise oserror(errno.EINVAL)
        group_bytes, ifindex = _MREQ6.unpack(bytes(value[:_MREQ6.size]))
        group = ipaddress.IPv6Address(group_bytes)
        if not is_group6(group):
            raise oserror(errno.EINVAL)
        ours = ifindex in (0, INTERFACE_INDEX)
        if not join:
            if group not in self.v6 or not ours:
                raise oserror(errno.EADDRNOTAVAIL)
            self._leave(self.v6, group)
            return
        if group in self.v6 and ours:
            raise oserror(errno.EADDRINUSE)
        if not ours:
            raise oserror(errno.ENODEV)
        if (len(self.v6) + 1) * MEMBERSHIP6_COST >= OPTION_MEMORY:
            raise oserror(errno.ENOMEM)  # sock_kmalloc past optmem_max
        self._join(self.v6, group)

    def _join(self, groups: set, group: ipaddress.IPv6Address) -> None:
        groups.add(group)
        self.net.multicast_groups.join(group)

    def _leave(self, groups: set, group: ipaddress.IPv6Address) -> None:
        groups.discard(group)
        self.net.multicast_groups.leave(group)

    def leave_all(self) -> None:
        """What closing the socket does."""
        for group in (*self.v4, *self.v6):
            self.net.multicast_groups.leave(group)
        self.v4.clear()
        self.v6.clear()
