"""UDP sockets of the virtual network: datagrams handed from socket to socket.

A send looks up the receiver the way Linux's ``__udp4_lib_lookup`` does (sockets bound
to the destination address before wildcard ones; within them the best score: an AF_INET
socket over a dual-stack one, a socket connected to the sender over an unconnected
one; an SO_REUSEPORT group picks a member from the sender's address) and queues the
datagram there, or drops it when the receiver's queue is full.  A ``bytes`` payload is
queued as it is, never copied.

Numbers and errnos were checked against Linux 6.18 on loopback:

* A receive queue is charged each datagram's ``skb->truesize`` (``truesize`` below,
  measured on x86-64: 832 bytes for a small datagram) and takes a datagram when it is
  empty or the charge stays within SO_RCVBUF.  Reading releases the charge in batches
  (a quarter of SO_RCVBUF, or when the datagrams the reader took over are all read),
  as ``udp_rmem_release`` does, so a full queue does not take one more datagram per
  datagram read.
* A connected socket that sends to its peer's port where nobody receives gets
  ECONNREFUSED from its next send or receive (ICMP port unreachable on loopback), and
  poll shows POLLERR until then; a pending error comes before queued datagrams.
* shutdown() sets the bits even when it fails with ENOTCONN (unconnected socket):
  SHUT_RD makes poll report POLLIN|POLLRDNORM|POLLRDHUP and an empty blocking receive
  return b"" at once (a non-blocking one gets EAGAIN: here only with MSG_DONTWAIT,
  since an op cannot tell an O_NONBLOCK descriptor), datagrams still arrive and are
  read; SHUT_WR makes sends fail with EPIPE; both add POLLHUP.
* Broadcast (255.255.255.255 and loopback's 127.255.255.255) needs SO_BROADCAST on the
  sender (EACCES, also for connect) and reaches every socket bound to the port on a
  wildcard or the broadcast address, SO_REUSEPORT or not.
* MSG_MORE and UDP_CORK build one datagram from several sends, as Linux does: the
  first send is checked as any and fixes the destination (an address given later is
  ignored, not even checked: only the family's path matters, see ``sendto``); each
  one returns its length; a send without MSG_MORE while UDP_CORK is off, or turning
  UDP_CORK off (even when it was off), sends the datagram; going past the size limit
  throws the whole datagram away (EMSGSIZE); an IPv4 connect re-aims it (see
  ``_reaim_pending``); close discards it.
* Drops are counted per socket (``drops``, Linux's sk_drops) and per network
  (``udp_drops``); with SO_RXQ_OVFL on, each queued datagram is stamped with the
  socket's drop count, which ``recv_drops`` shows after a receive (Linux attaches it to
  recvmsg as a SOL_SOCKET/SO_RXQ_OVFL cmsg only when non-zero, MSG_CTRUNC without room).

* Multicast (the options and their errnos: ``multicast.py``): a datagram for a group
  needs no SO_BROADCAST and, as Linux's __udp4_lib_mcast_deliver and
  __udp6_lib_mcast_deliver, reaches every socket bound to the port on a wildcard that
  covers the group's family or on the group address (not connected to someone else,
  not bound to another device) while the network's interface is in the group: while
  any socket of the network joined it, and always for 224.0.0.1, ff01::1 and ff02::1,
  which every Linux interface joins by itself.  A socket that did not join takes it
  too while IP_MULTICAST_ALL (IPV6_MULTICAST_ALL for IPv6 groups) is on, as sockets
  start, except that AF_INET6 ones start with the IPv4 option off.  IPv6 groups reach
  AF_INET6 sockets only.  With the sender's IP_MULTICAST_LOOP off (for an AF_INET6
  sender IPV6_MULTICAST_LOOP, whatever the group's family: sk_mc_loop) no socket of
  the network gets a copy, as a host sending out a multicast interface (Linux's lo,
  a loopback device, ignores the options, and carries no IPv6 multicast at all).
  TTL and hop limits are stored only (0 still loops back).  A wildcard-bound sender's
  multicast comes from the IP_MULTICAST_IF address or 127.0.0.1, and from ::1 for
  IPv6 groups (Linux takes its interface's address).  Sockets may bind group
  addresses (AF_INET6 ones IPv4-mapped ones too), and send from the interface's
  address then.

* Hosts: a socket lives on the host owning the address it is bound to, else on the
  host current when it was made.  Unbound or bound to a wildcard, it speaks to
  another host from its host's address of the family (``net.source_for``, Linux's
  source selection; ENETUNREACH when the host has none), to a group or a broadcast
  from that address too (the first host: from loopback, as above).  The hosts share
  one port table (two wildcard binds of one port need SO_REUSEADDR, as on one host).

* Conditions: a datagram to a unicast address takes the path from the sender's
  host to the host owning the address; each copy of a group or broadcast datagram
  the path to its receiver's host.  A perfect path delivers at once, as above; any
  other goes through ``udp_path`` (loss, duplication, reordering, latency and
  jitter, the link queue, fragments: netem's behaviour) and the network's scheduler,
  and at arrival the receiver is looked up then, as the kernel does (nobody there:
  ICMP port unreachable comes back over the reverse path, meeting its conditions).
  With IP_MTU_DISCOVER (IPV6_MTU_DISCOVER for IPv6) at DO, PROBE or INTERFACE a send
  larger than the path's MTU fails with EMSGSIZE (ip_sk_ignore_df is false: Linux
  knows the route's MTU); at DONT, WANT (the default) or OMIT it leaves in fragments.
  IPv6 over a path below 1280 bytes fails (Linux takes IPv6 off such a device:
  EADDRNOTAVAIL unbound, ENETUNREACH bound to an address).  IP_MTU and IPV6_MTU
  read the connected route's MTU.

Left out: source-specific multicast (IP_ADD_SOURCE_MEMBERSHIP, MCAST_JOIN_GROUP ...),
IP_MULTICAST_IF on TCP sockets, SIOCOUTQ's count of a pending datagram, UDP_SEGMENT,
UDP_GRO and the other IPPROTO_UDP options, MSG_ERRQUEUE/IP_RECVERR (so no EMSGSIZE
report of a path MTU learnt from ICMP: a link's MTU is known to the sender at once),
setting IPV6_MTU, connect(AF_UNSPEC) to dissolve an association, a reassembled
datagram's larger truesize, and directed broadcast to hosts added with ``add_host``.

Every mutating method runs under the network's lock and appends the sockets whose
readiness may have changed to ``touched``; the driver notifies them after the lock is
released (also when the method raised).
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import itertools
import select
import socket
import struct

from ...errors import oserror
from . import udp_path
from .addresses import ANY, ANY4, BROADCAST, Endpoint, is_v4, is_wildcard, mapped, to_tuple
from .links import Path
from .multicast import (
    Memberships,
    interface_address4,
    interface_index6,
    is_group,
    is_group4,
    is_group6,
    needs_scope,
)
from .network import INTERFACE_INDEX, Binding, VirtualNetwork
from .options import (
    IP_MTU_DISCOVER,
    IP_MULTICAST_ALL,
    IPV6_MTU_DISCOVER,
    IPV6_MULTICAST_ALL,
    PMTUDISC_DO,
    PMTUDISC_OMIT,
    UDP_CORK,
    Options,
)

__all__ = ["UdpSocket", "truesize"]

RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
SHUTDOWN_MASK = RCV_SHUTDOWN | SEND_SHUTDOWN
POLLIN_SET = select.POLLIN | select.POLLRDNORM
POLLOUT_SET = select.POLLOUT | select.POLLWRNORM | select.POLLWRBAND
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
MSG_PEEK, MSG_TRUNC = int(socket.MSG_PEEK), int(socket.MSG_TRUNC)  # ints, as recvmsg
MSG_OOB, MSG_DONTWAIT = int(socket.MSG_OOB), int(socket.MSG_DONTWAIT)
MSG_MORE = int(getattr(socket, "MSG_MORE", 0x8000))

IPV4_MAX_PAYLOAD = 65535 - 20 - 8  # 65507: the IPv4 total length holds the headers
IPV6_MAX_PAYLOAD = 65535 - 8  # 65527: the IPv6 payload length holds the UDP header
_LOOPBACK4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK4_ADDRESS = mapped(ipaddress.IPv4Address("127.0.0.1"))
_LOOPBACK6 = ipaddress.IPv6Address("::1")
# Limited broadcast and loopback's directed broadcast (Linux's local routing table).
BROADCASTS = frozenset({BROADCAST, mapped(ipaddress.IPv4Address("127.255.255.255"))})

# Order in which sockets entered their lookup slot: Linux adds a socket at the head of
# the chain (at the tail for AF_INET6 with SO_REUSEPORT) and takes the first best score.
_entered = itertools.count()

SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
IPPROTO_IP, IPPROTO_IPV6, IPPROTO_UDP = socket.IPPROTO_IP, socket.IPPROTO_IPV6, socket.IPPROTO_UDP
IP_MTU, IPV6_MTU = getattr(socket, "IP_MTU", 14), getattr(socket, "IPV6_MTU", 24)
_IPV4_GROUP_CHANGES = {(IPPROTO_IP, socket.IP_ADD_MEMBERSHIP),
                       (IPPROTO_IP, socket.IP_DROP_MEMBERSHIP)}
_IPV6_GROUP_CHANGES = {(IPPROTO_IPV6, socket.IPV6_JOIN_GROUP),
                       (IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP)}

Datagram = tuple  # (payload: bytes, source: Endpoint, charge: int, drops stamped: int)


def truesize(length: int, v6: bool) -> int:
    """What a datagram of ``length`` payload bytes costs its receiver's SO_RCVBUF on
    Linux's loopback (skb->truesize: the buffer's slab size plus the sk_buff, measured
    on Linux 6.18 x86-64): 832 bytes up to 197 (IPv4) / 184 (IPv6) payload bytes, then
    the next kmalloc size, and past 16 KiB the payload in pages plus 832."""
    if v6 and length > 65488:  # fragmented on loopback's 65536-byte MTU, reassembled
        return 67144
    head = length + (72 if v6 else 59)  # headers, link-layer reserve and alignment
    if head <= 256:
        return 832
    if head < 16064:  # linear: 320 bytes of skb_shared_info, kmalloc'ed as a power of 2
        return (1 << (head + 319).bit_length()) + 256
    return length + 832


class Pending:
    """The datagram corked sends build (Linux's up->pending and its cork): the first
    send fixes its destination and source; ``lost`` when a connect scrambled them."""

    __slots__ = ("parts", "size", "source", "destination", "lost")

    def __init__(self, payload: bytes, size: int, source: Endpoint,
                 destination: Endpoint) -> None:
        self.parts = [payload]
        self.size = size
        self.source = source
        self.destination = destination
        self.lost = False


class UdpSocket:
    __slots__ = ("net", "family", "opts", "binding", "local", "remote", "rx", "taken",
                 "charged", "deficit", "shutdown", "error", "entered", "drops", "recv_drops",
                 "pending", "groups", "mc_addr", "bound_device", "host", "via_ip", "via",
                 "__weakref__")

    def __init__(self, net: VirtualNetwork, family: int) -> None:
        self.net = net
        self.family = family
        self.opts = Options(family, tcp=False)
        self.binding: Binding | None = None
        self.local: Endpoint | None = None
        self.remote: Endpoint | None = None  # the default peer, once connected
        self.rx: collections.deque[Datagram] | None = None  # made on first datagram
        self.taken = 0  # datagrams at the head the reader took over (Linux's reader_queue)
        self.charged = 0  # sk_rmem_alloc: truesizes queued, plus read but unreleased
        self.deficit = 0  # read but not yet released (udp_sk->forward_deficit)
        self.shutdown = 0
        self.error = 0
        self.entered = 0
        self.drops = 0  # datagrams dropped at this full queue (Linux's sk_drops)
        self.recv_drops = 0  # SO_RXQ_OVFL's count on the datagram last received, or 0
        self.pending: Pending | None = None  # the datagram MSG_MORE / UDP_CORK builds
        self.groups: Memberships | None = None  # made on the first join
        self.mc_addr = ANY4  # IP_MULTICAST_IF's address
        self.bound_device = 0  # Linux's sk_bound_dev_if: set by a link-local scope id
        self.host = net.current_host()  # where it lives: its bound address's host
        # The path of the last unicast destination and that address (compared by
        # identity: addresses come from the parse cache), so a send reads one attribute
        # to learn that the path is perfect.  None for a group or broadcast address.
        self.via_ip: ipaddress.IPv6Address | None = None
        self.via: Path | None = None

    # -- names ---------------------------------------------------------------------

    def _any(self) -> Endpoint:
        return Endpoint(ANY4 if self.family == socket.AF_INET else ANY, 0)

    def getsockname(self) -> tuple:
        return self._named(self.local or self._any())

    def getpeername(self) -> tuple:
        # Linux: "not connected" also after connecting to port 0 (inet_dport is 0).
        if self.remote is None or not self.remote.port:
            raise oserror(errno.ENOTCONN)
        return self._named(self.remote)

    def _named(self, endpoint: Endpoint) -> tuple:
        """The stdlib's form of one of the socket's own ends: a link-local address
        carries the device the socket is bound to as its scope id."""
        if self.family == socket.AF_INET6 and needs_scope(endpoint.ip):
            endpoint = Endpoint(endpoint.ip, endpoint.port, 0, self.bound_device)
        return to_tuple(self.family, endpoint)

    def _v6only(self) -> bool:
        return self.family == socket.AF_INET6 and bool(
            self.opts.flag(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))

    def bind(self, where: Endpoint) -> None:
        if self.family == socket.AF_INET and not self._bindable(where.ip):
            raise oserror(errno.EADDRNOTAVAIL)  # before the state, as __inet_bind
        if self.binding is not None:
            raise oserror(errno.EINVAL)
        if self.family == socket.AF_INET6:
            if is_v4(where.ip):
                if self._v6only():
                    raise oserror(errno.EINVAL)
            elif where.ip != ANY:
                self._bind_device(where)
        if not self._bindable(where.ip):
            raise oserror(errno.EADDRNOTAVAIL)
        v6only_before = self.opts.bound_to(where.ip)
        if self.opts.bind_without_port(where.port):
            self.local = Endpoint(where.ip, 0)  # no port until it connects or sends
            return
        try:
            self._claim(where.ip, where.port)
        except OSError:
            self.opts.unbound(v6only_before)
            raise

    def _bindable(self, ip: ipaddress.IPv6Address) -> bool:
        return self.net.is_local(ip) or ip in BROADCASTS or is_group(ip)

    def _bind_device(self, where: Endpoint) -> None:
        """__inet6_bind's interface checks for a specific IPv6 address: a link-local
        one takes the device from its scope id (kept even if the bind fails) and
        needs one; a device that does not exist is ENODEV."""
        if needs_scope(where.ip):
            if where.scope_id:
                self.bound_device = where.scope_id
            if not self.bound_device:
                raise oserror(errno.EINVAL)
        if self.bound_device and self.bound_device != INTERFACE_INDEX:
            raise oserror(errno.ENODEV)

    def _claim(self, ip: ipaddress.IPv6Address, port: int) -> None:
        opts = self.opts
        binding = Binding(self, ip, self._v6only(),
                          bool(opts.flag(socket.SOL_SOCKET, socket.SO_REUSEADDR)),
                          bool(opts.flag(socket.SOL_SOCKET, socket.SO_REUSEPORT)),
                          self.net.host_of(ip) or self.host)
        port = self.net.udp.bind(binding, port)
        self.binding = binding
        self.local = Endpoint(ip, port)
        self.entered = next(_entered)
        self.host = self.net.host_of(ip) or self.host
        self.via_ip = self.via = None  # the paths start from its host

    def _autobind(self) -> None:
        """Linux binds an unbound socket to the wildcard (or the address a bind()
        under IP_BIND_ADDRESS_NO_PORT named) and an ephemeral port before it connects
        or sends, even when the call then fails."""
        if self.binding is None:
            self._claim((self.local or self._any()).ip, 0)

    def _settle_local(self, source: ipaddress.IPv6Address) -> None:
        """connect() on a wildcard-bound socket fixes its address to the route's
        source; the socket then only receives datagrams sent to that address."""
        if self.binding is not None and is_wildcard(self.binding.ip):
            self.binding.ip = source
            self.local = Endpoint(source, self.local.port)
            self.entered = next(_entered)  # rehashed: at the head of its new slot

    # -- routing -----------------------------------------------------------------------

    def _route(self, target: ipaddress.IPv6Address, scope_id: int = 0) -> tuple[
            ipaddress.IPv6Address, ipaddress.IPv6Address]:
        """(destination, source address) of a datagram for ``target``, with the
        errnos of Linux's route and address checks.  A route through a device the
        network does not have (the socket's, or a link-local target's scope id)
        does not exist."""
        local = self.local.ip
        v4 = is_v4(target)
        device = scope_id if scope_id and needs_scope(target) else self.bound_device
        if device and device != INTERFACE_INDEX:
            raise oserror(errno.ENETUNREACH)
        if self.family == socket.AF_INET6:
            if v4 and (self._v6only() or not (is_wildcard(local) or is_v4(local))):
                raise oserror(errno.ENETUNREACH)
            if not v4 and is_v4(local):
                raise oserror(errno.EAFNOSUPPORT)
        # A socket bound to a group address sends from the device's address (Linux
        # leaves inet_saddr 0 for such a bind).
        specific = not (is_wildcard(local) or is_group(local))
        if target == ANY4:  # 0.0.0.0 means this host: the bound address or loopback
            target = local if specific else _LOOPBACK4_ADDRESS
        elif target == ANY:  # :: means loopback (a BSD'ism Linux keeps)
            target = _LOOPBACK6
        if target in BROADCASTS:
            if not self.opts.flag(socket.SOL_SOCKET, socket.SO_BROADCAST):
                raise oserror(errno.EACCES)
            return target, (local if specific else self._host_address(True))
        if is_group4(target):
            if specific:
                return target, local
            return target, (self.mc_addr if self.mc_addr != ANY4 else self._host_address(True))
        if is_group6(target):
            return target, (local if specific else self._host_address(False))
        net = self.net
        route = net.route(target)
        if not route.local:
            raise oserror(errno.ENETUNREACH)
        if specific:
            return target, local
        if route.host is self.host:  # lo's routes: 127.0.0.1 for 127/8, else the address
            return target, route.source
        source = net.source_for(self.host, route)  # Linux's source selection
        if source is None:  # the host has no address of that family
            raise oserror(errno.ENETUNREACH)
        return target, source

    def _host_address(self, v4: bool) -> ipaddress.IPv6Address:
        """Where the socket's host speaks from to a group or a broadcast: the first
        host from loopback (Linux's lo), another host from its address of the family
        (ENETUNREACH without one)."""
        host = self.host
        if host.index == 0:
            return _LOOPBACK4_ADDRESS if v4 else _LOOPBACK6
        source = host.address_of(v4)
        if source is None:
            raise oserror(errno.ENETUNREACH)
        return source

    # -- association ---------------------------------------------------------------------

    def connect(self, where: Endpoint, touched: list) -> None:
        self._autobind()
        if self.family == socket.AF_INET6 and needs_scope(where.ip):
            self._connect_device(where)
        target, source = self._route(where.ip)
        if not is_v4(target):
            path = self._path_to(target)
            if path is not None and (path.mtu or udp_path.LOOPBACK_MTU) < udp_path.IPV6_MIN_MTU:
                raise oserror(self._without_ipv6())
        self.remote = Endpoint(target, where.port)
        self._settle_local(source)
        self._reaim_pending(is_v4(target), source)

    def _connect_device(self, where: Endpoint) -> None:
        """__ip6_datagram_connect to a link-local address: its scope id binds the
        socket to that device (EINVAL if bound to another); without one, a group
        takes IPV6_MULTICAST_IF; with neither, EINVAL."""
        if where.scope_id:
            if self.bound_device and self.bound_device != where.scope_id:
                raise oserror(errno.EINVAL)
            self.bound_device = where.scope_id
        if not self.bound_device and is_group6(where.ip):
            self.bound_device = self.opts.flag(IPPROTO_IPV6, socket.IPV6_MULTICAST_IF)
        if not self.bound_device:
            raise oserror(errno.EINVAL)

    # -- sending -------------------------------------------------------------------------

    def sendto(self, data, flags: int, where: Endpoint | None, touched: list) -> int:
        """udp_sendmsg / udpv6_sendmsg: their checks in their order, then a datagram
        sent, or started and kept pending (MSG_MORE, UDP_CORK), or one more piece of
        the pending one, whose destination stays the first send's."""
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        self._autobind()
        pending = self.pending
        if self._takes_ipv4_path(where, pending):
            if size > 0xFFFF:
                raise oserror(errno.EMSGSIZE)
            if flags & MSG_OOB:  # udp_sendmsg's check; udpv6_sendmsg has none
                raise oserror(errno.EOPNOTSUPP)
            if pending is not None and not is_v4(pending.destination.ip):
                raise oserror(errno.EINVAL)  # an IPv6 datagram is pending
        elif where is None and pending is None and self.remote is None:
            raise oserror(errno.EDESTADDRREQ)
        if pending is not None:
            return self._append(data, size, flags, touched)
        destination, source = self._destination(where)
        if size > (IPV4_MAX_PAYLOAD if is_v4(destination.ip) else IPV6_MAX_PAYLOAD):
            raise oserror(errno.EMSGSIZE)
        ip = destination.ip
        path = self.via if ip is self.via_ip else self._path_to(ip)
        if path is not None and not path.perfect and path.conditions.mtu is not None:
            self._check_path_mtu(path, size, ip)
        self._check_sendable(touched)
        payload = data if type(data) is bytes else bytes(data)
        source_endpoint = Endpoint(source, self.local.port)
        if flags & MSG_MORE or self.opts.flag(IPPROTO_UDP, UDP_CORK):
            self.pending = Pending(payload, size, source_endpoint, destination)
            return size
        self._deliver(payload, source_endpoint, destination, touched)
        return size

    def _takes_ipv4_path(self, where: Endpoint | None, pending: Pending | None) -> bool:
        """Does this send go through udp_sendmsg?  An AF_INET6 socket's does for an
        IPv4-mapped address (ENETUNREACH if the socket cannot send IPv4), and, when
        a datagram is pending, for any address if it is an IPv4 one; without an
        address, when an IPv4 datagram is pending or (none pending) the peer is
        IPv4."""
        if self.family == socket.AF_INET:
            return True
        if where is not None and is_v4(where.ip):
            local = self.local.ip
            if self._v6only() or not (is_wildcard(local) or is_v4(local)):
                raise oserror(errno.ENETUNREACH)
            return True
        if pending is not None:
            return is_v4(pending.destination.ip)
        return where is None and self.remote is not None and is_v4(self.remote.ip)

    def _destination(self, where: Endpoint | None) -> tuple[Endpoint, ipaddress.IPv6Address]:
        """(destination, source address) of a new datagram: to ``where``, else to
        the peer."""
        if where is None:
            if self.remote is None:
                raise oserror(errno.EDESTADDRREQ)
            destination, source = self.remote, self.local.ip
            if not destination.port and self.family == socket.AF_INET6 and is_v4(
                    destination.ip):
                # udpv6_sendmsg hands udp_sendmsg the peer as an address: port 0 there
                # is EINVAL (an AF_INET socket sends to port 0 of its peer)
                raise oserror(errno.EINVAL)
            if is_wildcard(source):
                ip, source = self._route(destination.ip)
                destination = Endpoint(ip, destination.port)
            return destination, source
        if not where.port:
            raise oserror(errno.EINVAL)
        ip, source = self._route(where.ip, where.scope_id)
        return Endpoint(ip, where.port), source

    def _check_sendable(self, touched: list) -> None:
        """What allocating the datagram checks: a pending error, then SHUT_WR."""
        if self.error:
            code, self.error = self.error, 0
            touched.append(self)
            raise oserror(code)
        if self.shutdown & SEND_SHUTDOWN:
            raise oserror(errno.EPIPE)

    def _append(self, data, size: int, flags: int, touched: list) -> int:
        """A send while a datagram is pending: its address is ignored, and neither a
        pending error nor SHUT_WR stops it (the datagram is allocated already); past
        the size limit the whole datagram is thrown away (EMSGSIZE).  Without
        MSG_MORE and UDP_CORK the datagram then goes."""
        pending = self.pending
        ip = pending.destination.ip
        limit = IPV4_MAX_PAYLOAD if is_v4(ip) else IPV6_MAX_PAYLOAD
        path = self.via if ip is self.via_ip else self._path_to(ip)
        if path is not None and not path.perfect and path.conditions.mtu is not None:
            limit = min(limit, self._path_limit(path, ip))
        if pending.size + size > limit:
            self.pending = None
            raise oserror(errno.EMSGSIZE)
        pending.parts.append(data if type(data) is bytes else bytes(data))
        pending.size += size
        if not (flags & MSG_MORE or self.opts.flag(IPPROTO_UDP, UDP_CORK)):
            self._release_cork(touched)
        return size

    def _release_cork(self, touched: list) -> None:
        """Send the pending datagram, if any (udp_push_pending_frames)."""
        pending, self.pending = self.pending, None
        if pending is not None and not pending.lost:
            self._deliver(b"".join(pending.parts), pending.source, pending.destination,
                          touched)

    def _reaim_pending(self, ipv4_connect: bool, source: ipaddress.IPv6Address) -> None:
        """A connect while a datagram is pending.  Linux's IPv4 connect routes into
        the socket's cork (inet->cork.fl), so an IPv4 datagram then goes to the new
        peer, from the new route's source, and an IPv6 one (whose flow shares that
        memory) goes nowhere; an IPv6 connect leaves the cork alone."""
        pending = self.pending
        if pending is None or not ipv4_connect:
            return
        if is_v4(pending.destination.ip):
            pending.destination = self.remote
            pending.source = Endpoint(source, self.local.port)
        else:
            pending.lost = True

    # -- the path ------------------------------------------------------------------------

    def _path_to(self, ip: ipaddress.IPv6Address) -> Path | None:
        """The path from this socket's host to the host owning unicast address ``ip``
        (None for a group or broadcast address: each receiver has its own), kept
        for the next send to the same address.  Under the lock."""
        path = None
        if not (is_group(ip) or ip in BROADCASTS):
            net = self.net
            host = net.route(ip).host
            if host is not None:
                path = net.path(self.host, host)
        self.via_ip, self.via = ip, path
        return path

    def _path_limit(self, path: Path, ip: ipaddress.IPv6Address) -> int:
        """The largest payload a send may have on ``path``: the MTU's, when the socket
        forbids fragments (IP_MTU_DISCOVER / IPV6_MTU_DISCOVER at DO, PROBE or
        INTERFACE: ip_sk_ignore_df is false), else the protocol's."""
        v4 = is_v4(ip)
        if v4:
            mode, limit = self.opts.flag(IPPROTO_IP, IP_MTU_DISCOVER), IPV4_MAX_PAYLOAD
            headers = udp_path.IPV4_HEADER + udp_path.UDP_HEADER
        else:
            mode, limit = self.opts.flag(IPPROTO_IPV6, IPV6_MTU_DISCOVER), IPV6_MAX_PAYLOAD
            headers = udp_path.IPV6_HEADER + udp_path.UDP_HEADER
        if PMTUDISC_DO <= mode < PMTUDISC_OMIT:
            return min(limit, path.conditions.mtu - headers)
        return limit

    def _without_ipv6(self) -> int:
        """The errno of an IPv6 send or connect over a device Linux took IPv6 off (an
        MTU below 1280: its addresses and routes are gone), as measured on lo: an
        unbound or wildcard-bound socket finds no source address (EADDRNOTAVAIL), a
        socket bound to an address finds no route (ENETUNREACH)."""
        return errno.EADDRNOTAVAIL if is_wildcard(self.local.ip) else errno.ENETUNREACH

    def _check_path_mtu(self, path: Path, size: int, ip: ipaddress.IPv6Address) -> None:
        """A send over a path with an MTU: ENETUNREACH for IPv6 below IPv6's minimum
        MTU (Linux takes IPv6 off such a device), EMSGSIZE past the MTU when the
        socket forbids fragments (__ip_append_data, __ip6_append_data)."""
        if not is_v4(ip) and path.conditions.mtu < udp_path.IPV6_MIN_MTU:
            raise oserror(self._without_ipv6())
        if size > self._path_limit(path, ip):
            raise oserror(errno.EMSGSIZE)

    # -- delivery ------------------------------------------------------------------------

    def _deliver(self, payload: bytes, source: Endpoint, destination: Endpoint,
                 touched: list) -> None:
        ip = destination.ip
        tap = self.net.tap
        if tap is not None:  # on the sender's interface, whatever becomes of it
            tap.udp(source, destination, payload, self._mtu_to(ip))
        if is_group(ip):
            self._deliver_copies(self._multicast_receivers(destination, source),
                                 payload, source, destination, touched)
            return
        if ip in BROADCASTS:
            self._deliver_copies(self._broadcast_receivers(destination, source),
                                 payload, source, destination, touched)
            return
        path = self.via if ip is self.via_ip else self._path_to(ip)
        if not path.perfect:
            v6 = not is_v4(ip)
            udp_path.carry(self.net, path, udp_path.packets_on(path, len(payload), v6),
                           touched, self._arrive, payload, source, destination, path)
            return
        receiver = self._receiver(destination, source)
        if receiver is None:
            # ICMP port unreachable; only a socket connected there takes it as an error.
            self._capture_refusal(source, destination, payload)
            if self._takes_refusal(destination):
                self.error = errno.ECONNREFUSED
                touched.append(self)
            return
        receiver._enqueue(payload, source, truesize(len(payload), not is_v4(ip)), touched)

    def _deliver_copies(self, receivers: list, payload: bytes, source: Endpoint,
                        destination: Endpoint, touched: list) -> None:
        """A group's or a broadcast's copies: each over the path to its receiver's host
        (the receivers are those of the moment it is sent)."""
        v6 = not is_v4(destination.ip)
        net, host = self.net, self.host
        for receiver in receivers:
            path = net.path(host, receiver.host)
            if path.perfect:
                receiver._enqueue(payload, source, truesize(len(payload), v6), touched)
            else:
                udp_path.carry(net, path, udp_path.packets_on(path, len(payload), v6),
                               touched, _arrive_at, receiver, payload, source, v6, path)

    def _arrive(self, touched: list, payload: bytes, source: Endpoint,
                destination: Endpoint, path: Path) -> None:
        """A unicast datagram reaches its destination's host (the scheduler calls this
        at its time), unless a partition or a link gone down cut the path while it was
        in flight: the receiver is looked up now, as the kernel does on arrival.
        Nobody there: ICMP port unreachable travels back over the reverse path."""
        if path.blocked:
            return
        receiver = self._receiver(destination, source)
        if receiver is not None:
            receiver._enqueue(payload, source, truesize(len(payload), not is_v4(
                destination.ip)), touched)
            return
        self._capture_refusal(source, destination, payload)
        back = self.net.path(path.destination, path.source)
        if back.perfect:
            self._refused(touched, destination)
        elif not back.lost():
            delay = back.delay()
            if delay > 0:
                self.net.scheduler.call_later(delay, self._refused, destination, back)
            else:
                self._refused(touched, destination)

    def _mtu_to(self, ip: ipaddress.IPv6Address) -> int | None:
        """The MTU of the path to ``ip`` (None: loopback's), for a capture's fragments."""
        if is_group(ip) or ip in BROADCASTS:
            return None
        return (self.via if ip is self.via_ip else self._path_to(ip)).mtu

    def _capture_refusal(self, source: Endpoint, destination: Endpoint,
                         payload: bytes) -> None:
        """The ICMP port unreachable a capture shows for a datagram nobody takes."""
        tap = self.net.tap
        if tap is not None:
            tap.port_unreachable_for(source, destination, payload)

    def _refused(self, touched: list, destination: Endpoint, back: Path | None = None) -> None:
        """ICMP port unreachable for a datagram to ``destination`` (arriving over
        ``back``, unless it was cut meanwhile): only a socket connected there takes it,
        as an error for its next call (ECONNREFUSED)."""
        if back is not None and back.blocked:
            return
        if self._takes_refusal(destination):
            self.error = errno.ECONNREFUSED
            touched.append(self)

    def _takes_refusal(self, destination: Endpoint) -> bool:
        """Does the ICMP error for a datagram to ``destination`` reach this socket?
        Linux looks the sender up by the datagram's addresses and reports to a
        connected socket only: one connected there, or to port 0 of that address (its
        lookup takes any port then)."""
        remote = self.remote
        return remote is not None and (remote == destination or (
            not remote.port and remote.ip == destination.ip))

    def _receiver(self, destination: Endpoint, source: Endpoint) -> UdpSocket | None:
        """The socket a unicast datagram reaches (Linux's udp4/udp6 lookup)."""
        bindings = self.net.udp.ports.get(destination.port)
        if not bindings:
            return None
        ip = destination.ip
        host = self.net.host_of(ip)
        for exact in (True, False):  # the slot of the address, then the wildcard slot
            slot = [b for b in bindings
                    if (b.ip == ip if exact else b.ip != ip and b.covers(ip) and (
                        b.host is host or host is None))]
            if not slot:
                continue
            if len(slot) > 1:
                slot.sort(key=_chain_order)
            best, best_score = None, -1
            for binding in slot:
                owner = binding.owner
                score = owner._score(ip, source)
                if score <= best_score:
                    continue
                best, best_score = owner, score
                if binding.reuseport and owner.remote is None:
                    group = [b for b in bindings if b.reuseport and b.ip == binding.ip
                             and b.host is binding.host and b.owner.family == owner.family
                             and b.v6only == binding.v6only]
                    if len(group) > 1 and all(b.owner.remote is None for b in group):
                        group.sort(key=lambda b: b.owner.entered)
                        pick = hash((int(source.ip), source.port)) % len(group)
                        return group[pick].owner
            if best is not None:
                return best
        return None

    def _score(self, ip: ipaddress.IPv6Address, source: Endpoint) -> int:
        """Linux's compute_score: -1 when this socket cannot take the datagram."""
        score = (2 if self.family == socket.AF_INET else 1) if is_v4(ip) else 0
        if not is_wildcard(self.binding.ip):
            score += 4
        remote = self.remote
        if remote is not None:
            if remote.ip != source.ip:
                return -1
            score += 4
            if remote.port:
                if remote.port != source.port:
                    return -1
                score += 4
        return score

    def _broadcast_receivers(self, destination: Endpoint, source: Endpoint) -> list:
        """Every socket bound to the port on the broadcast address or a wildcard that
        covers IPv4, and not connected to someone else (__udp_is_mcast_sock)."""
        receivers = []
        for binding in self.net.udp.ports.get(destination.port, ()):
            if binding.ip != destination.ip and not (
                    is_wildcard(binding.ip) and binding.covers(destination.ip)):
                continue
            if not binding.owner._on_the_interface():
                continue
            remote = binding.owner.remote
            if remote is not None and (remote.ip != source.ip or (
                    remote.port and remote.port != source.port)):
                continue
            receivers.append(binding.owner)
        return receivers

    def _multicast_receivers(self, destination: Endpoint, source: Endpoint) -> list:
        """Who takes a datagram for a group: nobody unless the network's interface
        is in the group and the sender loops copies back; then each socket that
        broadcast would reach (for an IPv6 group: AF_INET6 sockets on :: or on the
        group) and that joined the group or keeps IP(V6)_MULTICAST_ALL on."""
        group = destination.ip
        if group not in self.net.multicast_groups or not self._loops_multicast():
            return []
        take_all = (IPPROTO_IP, IP_MULTICAST_ALL) if is_v4(group) else (
            IPPROTO_IPV6, IPV6_MULTICAST_ALL)
        return [owner for owner in self._broadcast_receivers(destination, source)
                if (owner.groups is not None and group in owner.groups)
                or owner.opts.flag(*take_all)]

    def _loops_multicast(self) -> bool:
        """sk_mc_loop: the option of the socket's family, whatever the group's (an
        AF_INET6 socket's IPv4 multicast follows IPV6_MULTICAST_LOOP)."""
        if self.family == socket.AF_INET6:
            return bool(self.opts.flag(IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP))
        return bool(self.opts.flag(IPPROTO_IP, socket.IP_MULTICAST_LOOP))

    def _on_the_interface(self) -> bool:
        """Can datagrams reach this socket (not bound to a device the network lacks)?"""
        return not self.bound_device or self.bound_device == INTERFACE_INDEX

    # -- options -----------------------------------------------------------------------

    def setsockopt(self, level: int, name: int, value: int | bytes, touched: list) -> None:
        """The options a UDP socket answers itself (group memberships, multicast
        interfaces, UDP_CORK's release); every other one is a plain value of ``opts``."""
        key = (level, name)
        if key in _IPV4_GROUP_CHANGES:
            self._memberships().change4(name == socket.IP_ADD_MEMBERSHIP, value)
        elif key == (IPPROTO_IP, socket.IP_MULTICAST_IF):
            self.mc_addr = interface_address4(self.net, value)
        elif key in _IPV6_GROUP_CHANGES and self.family == socket.AF_INET6:
            self._memberships().change6(name == socket.IPV6_JOIN_GROUP, value)
        elif key == (IPPROTO_IPV6, socket.IPV6_MULTICAST_IF) and (
                self.family == socket.AF_INET6):
            self.opts.set(level, name, interface_index6(value, self.bound_device))
        else:
            self.opts.set(level, name, value)
            if key == (IPPROTO_UDP, UDP_CORK) and not self.opts.flag(*key):
                self._release_cork(touched)  # turning it off, even if it was off

    def getsockopt(self, level: int, name: int, buflen: int) -> int | bytes:
        if (level, name) == (IPPROTO_IP, socket.IP_MULTICAST_IF):
            raw = self.mc_addr.ipv4_mapped.packed
            return raw[:buflen] if buflen else struct.unpack("@i", raw)[0]
        if (level, name) == (IPPROTO_IP, IP_MTU) or (
                (level, name) == (IPPROTO_IPV6, IPV6_MTU) and self.family == socket.AF_INET6):
            mtu = self._route_mtu()
            return struct.pack("@i", mtu)[:buflen] if buflen else mtu
        return self.opts.get(level, name, buflen)

    def _route_mtu(self) -> int:
        """IP_MTU / IPV6_MTU: the MTU of the connected route (ENOTCONN without one):
        the path's, else loopback's 65536; IPv4 routes say at most 65535 (IP_MAX_MTU)."""
        remote = self.remote
        if remote is None:
            raise oserror(errno.ENOTCONN)
        path = self.via if remote.ip is self.via_ip else self._path_to(remote.ip)
        mtu = (path.mtu if path is not None else None) or udp_path.LOOPBACK_MTU
        return min(mtu, 0xFFFF) if is_v4(remote.ip) else mtu

    def _memberships(self) -> Memberships:
        if self.groups is None:
            self.groups = Memberships(self.net)
        return self.groups

    def _enqueue(self, payload: bytes, source: Endpoint, charge: int, touched: list) -> None:
        charged = self.charged
        if charged and charged + charge > self.opts.rcvbuf:
            self.drops += 1
            self.net.udp_drops += 1
            return
        self.charged = charged + charge
        if self.rx is None:
            self.rx = collections.deque()
        # SO_RXQ_OVFL: Linux stamps the drop count on each datagram queued while it is on.
        self.rx.append((payload, source, charge, self.drops if self._counts_drops() else 0))
        touched.append(self)

    def _counts_drops(self) -> bool:
        try:
            return bool(self.opts.flag(socket.SOL_SOCKET, SO_RXQ_OVFL))
        except KeyError:  # an options table without SO_RXQ_OVFL
            return False

    # -- receiving -----------------------------------------------------------------------

    def recvfrom(self, bufsize: int, flags: int, touched: list) -> tuple[bytes, tuple | None, int]:
        """(data, source address, msg_flags).  A datagram longer than ``bufsize`` is
        cut to it and flagged MSG_TRUNC in msg_flags.  With MSG_TRUNC in ``flags``
        Linux returns the datagram's full length: the stdlib's recv/recvfrom then give
        a bytes object of that length whose tail past ``bufsize`` is uninitialised
        memory, recv_into the length, recvmsg only ``bufsize`` bytes.  So here the
        whole datagram comes back (its real bytes where the kernel leaves garbage);
        recvmsg must cut it to ``bufsize``.  ``recv_drops`` is then the SO_RXQ_OVFL
        count for recvmsg's ancillary data (Linux sends it only when non-zero)."""
        if self.error:
            code, self.error = self.error, 0
            touched.append(self)
            raise oserror(code)
        rx = self.rx
        if not rx:
            if self.shutdown & RCV_SHUTDOWN and not flags & MSG_DONTWAIT:
                self.recv_drops = 0
                return b"", None, 0  # a blocking receive returns at once after SHUT_RD
            raise oserror(errno.EAGAIN)
        if not self.taken:
            self.taken = len(rx)
        payload, source, charge, self.recv_drops = rx[0]
        if len(payload) > bufsize:
            data = payload if flags & MSG_TRUNC else payload[:bufsize]
            msg_flags = MSG_TRUNC
        else:
            data, msg_flags = payload, 0
        if not flags & MSG_PEEK:
            rx.popleft()
            self.taken -= 1
            self._release(charge)
            if not rx:
                touched.append(self)
        return data, to_tuple(self.family, source), msg_flags

    def _release(self, charge: int) -> None:
        """udp_rmem_release: the charge goes back in batches of a quarter of SO_RCVBUF,
        or when the datagrams the reader took over are all read."""
        self.deficit += charge
        if self.deficit >= self.opts.rcvbuf >> 2 or not self.taken:
            self.charged -= self.deficit
            self.deficit = 0

    def nread(self) -> int:
        """FIONREAD: the length of the first datagram (Linux's first_packet_length)."""
        rx = self.rx
        if not rx:
            return 0
        if not self.taken:
            self.taken = len(rx)
        return len(rx[0][0])

    # -- teardown ------------------------------------------------------------------------

    def shut(self, how: int, touched: list) -> None:
        """shutdown(2): the bits are set even on an unconnected socket, which then
        gets ENOTCONN (Linux, so that poll can wake its waiters with POLLHUP)."""
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self.shutdown |= RCV_SHUTDOWN
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            self.shutdown |= SEND_SHUTDOWN
        touched.append(self)
        if self.remote is None:
            raise oserror(errno.ENOTCONN)

    def close(self, touched: list) -> None:
        if self.binding is not None and self.local is not None:
            self.net.udp.unbind(self.binding, self.local.port)
        self.binding = None
        self.local = self.remote = None
        self.rx = None
        self.taken = self.charged = self.deficit = 0
        self.pending = None
        if self.groups is not None:
            self.groups.leave_all()
        self.groups = None

    # -- readiness -----------------------------------------------------------------------

    def poll(self) -> int:
        """Linux's udp_poll (datagram_poll): always writable here."""
        mask = POLLOUT_SET
        if self.error:
            mask |= select.POLLERR
        shutdown = self.shutdown
        if shutdown:
            if shutdown & RCV_SHUTDOWN:
                mask |= POLLIN_SET | POLLRDHUP
            if shutdown == SHUTDOWN_MASK:
                mask |= select.POLLHUP
        if self.rx:
            mask |= POLLIN_SET
        return mask

    def take_error(self) -> int:
        code, self.error = self.error, 0
        return code


def _arrive_at(touched: list, receiver: UdpSocket, payload: bytes, source: Endpoint,
               v6: bool, path: Path) -> None:
    """A group's or a broadcast's copy reaches its receiver, if it is still open and
    the path was not cut while the copy was in flight."""
    if receiver.binding is not None and not path.blocked:
        receiver._enqueue(payload, source, truesize(len(payload), v6), touched)


def _chain_order(binding: Binding) -> tuple[int, int]:
    """Linux's hash-chain order: head-inserted sockets newest first, then the AF_INET6
    SO_REUSEPORT ones (inserted at the tail) oldest first."""
    owner = binding.owner
    if binding.reuseport and owner.family == socket.AF_INET6:
        return (1, owner.entered)
    return (0, -owner.entered)
