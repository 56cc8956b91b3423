"""One isolated virtual IP network: its hosts, their names, and who is bound where.

Several networks can live in one process; sockets of one never see another's.  All
hosts are in this process, so every address of the network is local: 127.0.0.0/8 and
::1 belong to the first host, ``add_host`` adds more.  Ports are allocated per protocol
with Linux's rules (see ``Binding.conflicts``) from Linux's default ephemeral range.

A TCP port is held not only by bound and listening sockets but, as on Linux, by the
connections accepted on it (they share the listener's port) and, for ``time_wait``
seconds (Linux's TCP_TIMEWAIT_LEN, 60 s), by the end of a connection that closed first
(TIME_WAIT).  A TIME_WAIT entry only stops binds: a connect may take its port again, as
Linux's default tcp_tw_reuse=2 allows on loopback.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import ipaddress
import itertools
import random
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from ... import readiness
from ...errors import oserror
from . import hostnames
from .addresses import ANY, ANY4, is_v4, is_wildcard, mapped
from .capture import Capture, Tap
from .hosts import Host
from .links import Conditions, Link, Path
from .scheduler import Scheduler
from .settings import tcp_sysctls

__all__ = ["VirtualNetwork", "Binding", "GroupMemberships", "Host", "Link", "Conditions",
           "INTERFACE_INDEX", "INTERFACE_NAME"]

EPHEMERAL_PORTS = range(32768, 61000)  # net.ipv4.ip_local_port_range default
TIME_WAIT_SECONDS = 60.0  # Linux's TCP_TIMEWAIT_LEN
MAX_TIME_WAIT = 65536  # like tcp_max_tw_buckets: past it a closing end leaves no entry
_LOOPBACK4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK6 = ipaddress.IPv6Address("::1")
_LOOPBACK4_ADDRESS = mapped(ipaddress.IPv4Address("127.0.0.1"))


ALL, NONE = object(), object()


class _CurrentHost(threading.local):
    """Per thread: the host sockets made now live on (None: the first host).  A class
    default, so that reading it where no block set it raises (and formats) no
    AttributeError: every new socket asks."""

    host: Host | None = None


class Binding:
    """What a bound socket claims in a port table (Linux's bind-conflict inputs)."""

    __slots__ = ("owner", "ip", "v6only", "reuseaddr", "reuseport", "listening", "expires",
                 "port", "wildcard", "host")

    def __init__(self, owner: Any, ip: ipaddress.IPv6Address, v6only: bool,
                 reuseaddr: bool, reuseport: bool, host: Any = None) -> None:
        self.owner = owner
        # The host whose port it is: hosts have port spaces of their own, so two
        # hosts' wildcard bindings never meet (None: any host's, for tables used alone).
        self.host = host
        self.ip = ip
        self.v6only = v6only
        self.reuseaddr = reuseaddr
        self.reuseport = reuseport
        self.listening = False
        self.expires: float | None = None  # set while it stands for a TIME_WAIT end
        self.port = 0  # the port of a TIME_WAIT entry (live bindings are filed by port)
        # While listening: (reaches all of IPv4, reaches all of IPv6), worked out once
        # in ``PortTable.listen`` so that each connect's lookup compares no addresses.
        self.wildcard: tuple[bool, bool] = (False, False)

    def time_wait(self, expires: float) -> Binding:
        """A copy standing for the TIME_WAIT end a closing connection leaves behind."""
        copy = Binding(None, self.ip, self.v6only, self.reuseaddr, self.reuseport,
                       self.host)
        copy.expires = expires
        return copy

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
        if self.host is not other.host and self.host is not None and other.host is not None:
            return False  # another host's port space
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
    """Who holds which port of one protocol.  ``ports`` has the live bindings (bound,
    listening and accepted sockets); TIME_WAIT entries are kept apart in ``waits`` so
    the many a busy server leaves behind cost only the binds of their own port."""

    def __init__(self, tcp: bool, time_wait: float = TIME_WAIT_SECONDS,
                 rng: random.Random | None = None, now: Any = time.monotonic) -> None:
        self.tcp = tcp
        self._now = now  # the network's clock
        # port -> its bindings, an insertion-ordered set: a server's port holds one
        # entry per live accepted connection, and each close must find its own at once.
        self.ports: dict[int, dict[Binding, None]] = {}
        # port -> its listening bindings (TCP): what a connect looks for, without
        # walking past the accepted connections that share the port.
        self.listeners: dict[int, list[Binding]] = {}
        self._next = (rng or random).randrange(len(EPHEMERAL_PORTS))
        self.time_wait = time_wait
        self.waits: dict[int, list[Binding]] = {}  # oldest first; rarely more than one
        self._expiry: collections.deque[Binding] = collections.deque()  # oldest first

    def hold_time_wait(self, binding: Binding, port: int, leaving: bool = False) -> bool:
        """Leave a TIME_WAIT entry like ``binding`` on ``port`` (the end that closed
        first), expiring ``time_wait`` seconds from now.

        ``leaving`` says the socket gives the port back right now: then ``binding``
        itself leaves the table and becomes the entry (one object fewer for every
        connection a program closes first).  Returns whether it did so.
        """
        now = self._now()
        expiry = self._expiry
        if expiry and expiry[0].expires <= now:  # the oldest entry is due: some expire
            self._expire(now)
        if self.time_wait <= 0 or len(expiry) >= MAX_TIME_WAIT:
            return False
        expires = now + self.time_wait
        if leaving:
            self.unbind(binding, port)
            binding.owner = None
            binding.expires = expires
            entry = binding
        else:
            entry = binding.time_wait(expires)
        entry.port = port
        waits = self.waits.get(port)
        if waits is None:
            self.waits[port] = [entry]
        else:
            waits.append(entry)
        self._expiry.append(entry)
        return leaving

    def _expire(self, now: float | None = None) -> None:
        """Drop TIME_WAIT entries whose time is up (oldest first: they expire in order,
        so each is also the oldest of its port)."""
        expiry = self._expiry
        if not expiry:
            return
        if now is None:
            now = self._now()
        while expiry and expiry[0].expires <= now:
            entry = expiry.popleft()
            port = entry.port
            waits = self.waits.get(port)
            if waits and waits[0] is entry:  # else a connect took the port meanwhile
                del waits[0]
                if not waits:
                    del self.waits[port]

    def _holders(self, port: int) -> Iterable[Binding]:
        return itertools.chain(self.ports.get(port, ()), self.waits.get(port, ()))

    def bind(self, binding: Binding, port: int, parity: int | None = None) -> int:
        """Claim ``port`` (0: an ephemeral one, of ``parity`` when given: Linux gives
        bind/listen odd ports and connect even ones, keeping each half for one use)."""
        expiry = self._expiry
        if expiry and expiry[0].expires <= self._now():  # the oldest is due
            self._expire()
        if port == 0:
            return self._ephemeral(binding, parity)
        if any(binding.conflicts(other, tcp=self.tcp) for other in self._holders(port)):
            raise oserror(errno.EADDRINUSE)
        self.ports.setdefault(port, {})[binding] = None
        return port

    def _ephemeral(self, binding: Binding, parity: int | None) -> int:
        ports, waits = self.ports, self.waits
        low, span = EPHEMERAL_PORTS.start, len(EPHEMERAL_PORTS)
        for_connect = parity == 0
        index = self._next  # where the last search stopped: the next port is usually free
        for _ in range(span):
            port = low + index
            index = index + 1 if index + 1 < span else 0
            if (parity is None or port % 2 == parity) and port not in ports and (
                    for_connect or port not in waits):
                # A connect may reuse a port only TIME_WAIT ends hold (tcp_tw_reuse).
                if port in waits:
                    del waits[port]
                self._next = index
                ports[port] = {binding: None}
                return port
        raise oserror(errno.EADDRINUSE)

    def inherit(self, binding: Binding, port: int) -> None:
        """Add an accepted socket's entry to its listener's port, unchecked (Linux's
        __inet_inherit_port): the connection holds the port as long as it lives."""
        self.ports.setdefault(port, {})[binding] = None

    def unbind(self, binding: Binding, port: int) -> None:
        if binding.listening:
            self.unlisten(binding, port)
        bindings = self.ports.get(port)
        if bindings and binding in bindings:
            del bindings[binding]
            if not bindings:
                del self.ports[port]

    def listen(self, binding: Binding, port: int) -> None:
        """``binding`` (in the table) starts listening: connects to ``port`` find it."""
        binding.listening = True
        binding.wildcard = (binding._reach(True) is ALL, binding._reach(False) is ALL)
        listeners = self.listeners.setdefault(port, [])
        if binding not in listeners:
            listeners.append(binding)

    def unlisten(self, binding: Binding, port: int) -> None:
        binding.listening = False
        listeners = self.listeners.get(port)
        if listeners and binding in listeners:
            listeners.remove(binding)
            if not listeners:
                del self.listeners[port]

    def check(self, binding: Binding, port: int) -> None:
        """EADDRINUSE if ``binding`` (already in the table) now conflicts, as listen()
        re-checks."""
        self._expire()
        if any(other is not binding and binding.conflicts(other, tcp=self.tcp)
               for other in self._holders(port)):
            raise oserror(errno.EADDRINUSE)

    def find(self, ip: ipaddress.IPv6Address, port: int, v4: bool,
             host: Any = None) -> list[Binding]:
        """Listening bindings a packet for (ip, port) may reach: exact address first.
        ``v4``: whether ``ip`` is an IPv4 (mapped) address; ``host``: the host owning
        it (a wildcard binding reaches only its own host's addresses)."""
        listeners = self.listeners.get(port)
        if not listeners:
            return []
        exact, wild = [], []
        reach = 0 if v4 else 1
        for binding in listeners:
            if binding.ip is ip or binding.ip == ip:
                exact.append(binding)
            elif binding.wildcard[reach] and (  # a specific other address never covers ip
                    binding.host is host or binding.host is None or host is None):
                wild.append(binding)
        return exact + wild if wild else exact


INTERFACE_INDEX = 1  # the network's one interface, numbered like Linux's lo
INTERFACE_NAME = "lo"


# Groups every Linux interface joins by itself when it comes up: IPv4's all-hosts group
# (ip_mc_up) and IPv6's interface- and link-local all-nodes groups (ipv6_add_dev).
ALWAYS_JOINED = frozenset({mapped(ipaddress.IPv4Address("224.0.0.1")),
                           ipaddress.IPv6Address("ff01::1"), ipaddress.IPv6Address("ff02::1")})


class GroupMemberships:
    """The multicast groups of the network's one interface: how many sockets joined
    each, plus ``ALWAYS_JOINED``.  A datagram for a group reaches the network's
    sockets only while the interface belongs to it, as Linux loops a multicast copy
    back only for groups its interface joined.  Kept per network, so two networks
    never see each other's groups."""

    def __init__(self) -> None:
        self._sockets: collections.Counter[ipaddress.IPv6Address] = collections.Counter()

    def join(self, group: ipaddress.IPv6Address) -> None:
        self._sockets[group] += 1

    def leave(self, group: ipaddress.IPv6Address) -> None:
        count = self._sockets[group] - 1
        if count > 0:
            self._sockets[group] = count
        else:
            del self._sockets[group]

    def __contains__(self, group: object) -> bool:
        return group in self._sockets or group in ALWAYS_JOINED

    def joined(self) -> dict[ipaddress.IPv6Address, int]:
        """How many sockets joined each group (IPv4 groups IPv4-mapped)."""
        return dict(self._sockets)


class Route(NamedTuple):
    """See ``VirtualNetwork.route``."""

    v4: bool  # an IPv4 (mapped) address
    wildcard: bool  # 0.0.0.0 or ::
    local: bool  # this network's (the wildcard counts)
    source: ipaddress.IPv6Address  # where a socket of the same host connecting speaks from
    host: Host | None  # the host owning the address (None: the wildcard)


class VirtualNetwork:
    """An isolated IPv4/IPv6 network living in this process.

    ``add_host("10.0.0.2", names=["db.internal"])`` adds a host; sockets bound to its
    address, or made inside ``with net.host("db.internal"):``, live on it.  ``resolve``
    answers names from the network only: its added hosts, and ``localhost`` and the
    machine's name as /etc/hosts gives them (see ``hostnames``); the addresses
    /etc/hosts gives the machine are the first host's.

    The paths between hosts are perfect until ``link``, ``conditions`` or
    ``partition`` says otherwise; then the scheduler delivers packets at their time.
    ``seed`` fixes every random choice (ephemeral ports, each link's fates).
    """

    def __init__(self, seed: int | None = None, clock: Any = None) -> None:
        if seed is None:
            seed = random.SystemRandom().randrange(2**63)
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, not {type(seed).__name__}")
        self.seed = seed
        # Re-entrant: a finalizer run by the garbage collector inside an op may read
        # (``repr`` asks getsockname); a close is deferred (see ``InetDriver.close``).
        self.lock = threading.RLock()
        self.notify = readiness.changed  # how events of the scheduler wake sockets
        self.scheduler = Scheduler(self.lock, self._notify_changed, clock)
        self.clock = self.scheduler.clock
        self.sysctl: dict[str, int] = tcp_sysctls()
        self.tcp = PortTable(tcp=True, rng=self.random_stream("tcp ports"),
                             now=self.clock.now)
        self.udp = PortTable(tcp=False, rng=self.random_stream("udp ports"),
                             now=self.clock.now)
        self.udp_drops = 0  # datagrams dropped at a full receive queue
        self.link_drops = 0  # packets dropped at a full link queue (see udp_path)
        self.multicast_groups = GroupMemberships()
        # The first host is the machine; its names are /etc/hosts' (``_machine_names``).
        self.hosts: list[Host] = [Host([_LOOPBACK4_ADDRESS, _LOOPBACK6], [], 0)]
        self._owners: dict[ipaddress.IPv6Address, Host] = {}  # added hosts' addresses
        self._current = _CurrentHost()  # .host: where sockets made now live
        self._local: set[ipaddress.IPv6Address] = {_LOOPBACK6}
        self._added_lines: list[hostnames.Line] = []
        self.names_version = 0  # changes whenever a name may answer differently
        self._machine: hostnames.MachineNames | None = None
        self._routes: dict[ipaddress.IPv6Address, Route] = {}
        # The last address routed and its route, matched by identity: ``ipaddress``
        # hashes in Python, and a program's connects mostly repeat one address (the
        # same object, from the parse cache).
        self._last_route: tuple[object, Route | None] = (None, None)
        # Conditions: links by direction, the defaults, the partition's groups.
        self._links: dict[tuple[Host, Host], Link] = {}
        self._defaults = Conditions(self._reconfigure)
        self._groups: dict[Host, int] | None = None
        self._paths: dict[tuple[Host, Host], Path] = {}
        self._pair_randoms: dict[tuple[int, int], random.Random] = {}
        self.tap: Tap | None = None  # while a capture is open: what TCP and UDP tell
        self._machine_names()

    def random_stream(self, label: str) -> random.Random:
        """A random stream of its own for ``label``, fixed by the seed (str seeds are
        hashed with SHA-512 by ``random``, the same in every process)."""
        return random.Random(f"{self.seed}/{label}")

    def _notify_changed(self, sock: Any) -> None:
        self.notify(sock)

    # -- hosts -----------------------------------------------------------------------

    @property
    def first_host(self) -> Host:
        return self.hosts[0]

    def add_host(self, *addresses: str, names: Iterable[str] = ()) -> Host:
        """A new host owning ``addresses`` and answering ``names`` (ValueError when an
        address is not one a host can have or another host owns it)."""
        if isinstance(names, str):
            raise TypeError("names must be a list of names, not a str")
        ips = [_internal(_host_address(text)) for text in addresses]
        names = list(names)
        for name in names:
            if not isinstance(name, str) or not name or any(c.isspace() for c in name):
                raise ValueError(f"{name!r} is not a host name")
        if not ips:
            raise ValueError("a host needs at least one address")
        with self.lock:
            for ip in ips:
                if ip in self._owners or self.is_local(ip) or ips.count(ip) > 1:
                    raise ValueError(f"{ip.ipv4_mapped or ip} belongs to a host already")
            host = Host(ips, names, len(self.hosts))
            self.hosts.append(host)
            for ip in ips:
                self._owners[ip] = host
            self._added_lines += hostnames.lines_of_host(ips, names)
            self._local.update(ips)
            self._routes.clear()
            self._last_route = (None, None)
            self.names_version += 1
            self._reconfigure()
        return host

    def host_of(self, ip: ipaddress.IPv6Address) -> Host | None:
        """The host owning ``ip`` (None for the wildcard or a foreign address)."""
        host = self._owners.get(ip)
        if host is not None:
            return host
        if is_wildcard(ip) or not self.is_local(ip):
            return None
        return self.hosts[0]

    def find_host(self, which: Host | str) -> Host:
        """The host ``which`` names: a Host of this network, an address it owns, or a
        name it answers (the machine's names and ``localhost`` for the first host).
        LookupError if none."""
        if isinstance(which, Host):
            if which.index < len(self.hosts) and self.hosts[which.index] is which:
                return which
            raise LookupError(f"{which!r} is not a host of this network")
        if not isinstance(which, str):
            raise TypeError(f"a host is a Host, an address or a name, not "
                            f"{type(which).__name__}")
        try:
            ip = ipaddress.ip_address(which)
        except ValueError:
            key = which.lower().rstrip(".")
            with self.lock:
                for host in self.hosts[1:]:
                    if key in (name.lower().rstrip(".") for name in host.names):
                        return host
            try:
                found = self.resolve(which)[1]
            except OSError:
                raise LookupError(f"no host named {which!r} on this network") from None
            ip = found[0][1]
        host = self.host_of(_internal(ip))
        if host is None:
            raise LookupError(f"no host of this network has the address {which!r}")
        return host

    def current_host(self) -> Host:
        """Where a socket made now in this thread lives (see ``host``)."""
        return self._current.host or self.hosts[0]

    @contextlib.contextmanager
    def host(self, which: Host | str) -> Iterator[Host]:
        """Sockets this thread makes inside the block live on host ``which``."""
        host = self.find_host(which)
        saved = self._current.host
        self._current.host = host
        try:
            yield host
        finally:
            self._current.host = saved

    def source_for(self, host: Host, route: Route) -> ipaddress.IPv6Address | None:
        """The address an unbound socket of ``host`` speaks from to ``route``'s
        address: the address itself (or 127.0.0.1 for 127/8) on its own host, as
        Linux's local routes give; else the host's address of that family (None: it
        has none, the destination is unreachable from it)."""
        if route.host is host or route.host is None:
            return route.source
        source = host.address_of(route.v4)
        if source is None and host.index == 0:  # the machine speaks from loopback
            source = _LOOPBACK4_ADDRESS if route.v4 else _LOOPBACK6
        return source

    # -- conditions ------------------------------------------------------------------

    def link(self, a: Host | str, b: Host | str, *, both_ways: bool = True,
             **conditions: Any) -> Link:
        """Set the conditions of the path between hosts ``a`` and ``b`` (``a == b``:
        that host's loopback path), replacing a link they had.  Conditions: latency,
        jitter (seconds), bandwidth (bytes per second, None: unlimited), loss,
        duplicate, reorder (probabilities), mtu (bytes), down."""
        first, second = self.find_host(a), self.find_host(b)
        if not isinstance(both_ways, bool):
            raise TypeError("both_ways must be a bool")
        ends = sorted((first, second), key=lambda host: host.index)
        label = f"link {ends[0].index}-{ends[1].index}" + ("" if both_ways else
                                                          f" {first.index}>{second.index}")
        link = Link(first, second, both_ways, self.random_stream(label), self._reconfigure,
                    **conditions)  # checked before anything changes
        with self.lock:
            self._links[(first, second)] = link
            if both_ways:
                self._links[(second, first)] = link
            self._reconfigure()
        return link

    def links(self) -> list[Link]:
        with self.lock:
            return list(dict.fromkeys(self._links.values()))

    def unlink(self, link: Link) -> None:
        """Remove ``link``: its path takes the defaults again."""
        with self.lock:
            for key, value in list(self._links.items()):
                if value is link:
                    del self._links[key]
            self._reconfigure()

    def conditions(self, **conditions: Any) -> Conditions:
        """Set the defaults of every path without a link of its own, loopback paths
        included (the conditions not named go back to perfect); returns them, live."""
        checked = Conditions(None, **conditions)  # every value checked first
        with self.lock:
            self._defaults.update(**checked.values())
        return self._defaults

    def partition(self, *groups: Any) -> None:
        """Cut the network: hosts in different groups cannot reach each other (packets
        vanish).  A group is a host (Host, address or name) or an iterable of them;
        one group stands against all other hosts.  Replaces an earlier partition."""
        if not groups:
            raise TypeError("partition() needs at least one group of hosts")
        members: dict[Host, int] = {}
        for number, group in enumerate(groups, 1):
            hosts = [group] if isinstance(group, (str, Host)) else list(group)
            if not hosts:
                raise ValueError(f"group {number} of the partition is empty")
            for which in hosts:
                host = self.find_host(which)
                if members.setdefault(host, number) != number:
                    raise ValueError(f"{host.label} is in two groups of the partition")
        with self.lock:
            self._groups = members
            self._reconfigure()

    def heal(self) -> None:
        """End the partition: every host reaches every other again."""
        with self.lock:
            self._groups = None
            self._reconfigure()

    def partitioned(self, a: Host, b: Host) -> bool:
        groups = self._groups
        return groups is not None and a is not b and groups.get(a, 0) != groups.get(b, 0)

    def reset(self, host: Host | str, port: int | None = None) -> int:
        """Reset every TCP connection with an end on ``host`` (on its ``port`` when
        given), as a RST reaching both ends would; returns how many."""
        target = self.find_host(host)
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 0 < port < 65536):
            raise ValueError(f"port must be in 1..65535 or None, not {port!r}")
        touched: list = []
        with self.lock:
            ends = [binding.owner for bindings in self.tcp.ports.values()
                    for binding in bindings if binding.owner is not None]
            connections = set()
            for sock in ends:
                if sock.host is target and (port is None or sock.local.port == port):
                    connection = sock.connection()
                    if connection is not None:
                        connections.add(connection)
            for connection in connections:
                for sock in connection:
                    if sock is not None:
                        sock.abort(touched)
        for sock in touched:
            self.notify(sock)
        return len(connections)

    def capture(self, target: Any) -> Capture:
        """Write every packet of the network from now on to a pcap file (a path, or a
        binary file object), until the Capture is closed (it is a context manager)."""
        with self.lock:
            capture = Capture(target, self._stop_capture)
            if self.tap is None:
                self.tap = Tap(self.scheduler.clock, self.random_stream("isn"))
            self.tap.captures.append(capture)
        return capture

    def _stop_capture(self, capture: Capture) -> None:
        with self.lock:
            tap = self.tap
            if tap is not None and capture in tap.captures:
                tap.captures.remove(capture)
                if not tap.captures:
                    self.tap = None

    def path(self, source: Host, destination: Host) -> Path:
        """One direction between two hosts (the same object for the pair, kept up to
        date as the configuration changes).  Called under the lock."""
        path = self._paths.get((source, destination))
        if path is None:
            path = self._paths[(source, destination)] = Path(source, destination)
            self._configure(path)
        return path

    def _reconfigure(self) -> None:
        with self.lock:
            for path in self._paths.values():
                self._configure(path)

    def _configure(self, path: Path) -> None:
        source, destination = path.source, path.destination
        link = self._links.get((source, destination))
        path.link = link
        path.defaults = self._defaults
        conditions = link if link is not None else self._defaults
        path.blocked = conditions.down or self.partitioned(source, destination)
        path.perfect = conditions.perfect and not path.blocked
        if link is not None:
            path.random = link.random
        else:
            pair = (min(source.index, destination.index),
                    max(source.index, destination.index))
            rng = self._pair_randoms.get(pair)
            if rng is None:
                rng = self._pair_randoms[pair] = self.random_stream(f"path {pair[0]}-{pair[1]}")
            path.random = rng

    def _machine_names(self) -> hostnames.MachineNames:
        """/etc/hosts' lines for this machine now; the addresses they give become the
        first host's (local) when they change."""
        machine = hostnames.machine_names()
        if machine is not self._machine:
            with self.lock:
                if machine is not self._machine:
                    first = self.hosts[0]
                    first.ips = [_LOOPBACK4_ADDRESS, _LOOPBACK6, *sorted(
                        machine.addresses - {_LOOPBACK4_ADDRESS, _LOOPBACK6})]
                    if self._machine is not None:
                        self._local -= self._machine.addresses - {_LOOPBACK6}
                    self._local.update(machine.addresses)
                    for host in self.hosts[1:]:
                        self._local.update(host.ips)
                    self._machine = machine
                    self._routes.clear()
                    self._last_route = (None, None)
                    self.names_version += 1
        return machine

    def name_lines(self, name: str) -> list[hostnames.Line]:
        """The hosts-table lines a lookup of ``name`` reads: the added hosts' when one of
        them has the name (they stand for the network's own DNS), else the machine's."""
        machine = self._machine_names()
        key = name.lower().rstrip(".")
        with self.lock:
            added = [line for line in self._added_lines if key in line.keys]
        return added if added else list(machine.lines)

    def interface_index(self, name: str) -> int:
        """The index of the network's interface called ``name``, 0 if none."""
        return INTERFACE_INDEX if name == INTERFACE_NAME else 0

    def resolve(self, name: str, family: int = 0, flags: int = 0
                ) -> tuple[str, list[tuple[int, ipaddress.IPv6Address, int]]]:
        """getaddrinfo's answer for host ``name`` (numeric forms included):
        (canonical name, [(family, address, scope id)]) in glibc's order; gaierror as
        glibc's when nothing answers."""
        return hostnames.resolve_host(name, family, flags, self.name_lines(name),
                                      self.interface_index)

    def host_entry(self, name: str) -> tuple[str, list[str], list[str]]:
        """gethostbyname_ex's answer for ``name`` (see ``hostnames.host_entry``)."""
        if name == "":
            return "0.0.0.0", [], ["0.0.0.0"]
        if name in ("<broadcast>", "255.255.255.255"):
            return "255.255.255.255", [], ["255.255.255.255"]
        return hostnames.host_entry(self.name_lines(name), name)

    def current_names_version(self) -> int:
        """``names_version`` after reading /etc/hosts again if it changed."""
        self._machine_names()
        return self.names_version

    def names_of(self, ip: ipaddress.IPv6Address, v4: bool) -> tuple[str, ...]:
        """The names a reverse lookup of ``ip`` finds: the added host that has it, else
        the first line of /etc/hosts with it (v4: as an AF_INET lookup reads them)."""
        machine = self._machine_names()
        with self.lock:
            for host in self.hosts[1:]:
                if ip in host.ips:
                    return tuple(host.names)
        return hostnames.reverse(machine.lines, ip, v4)

    def route(self, ip: ipaddress.IPv6Address) -> Route:
        """What a connect to ``ip`` needs to know about it, worked out once per address
        (``ipaddress`` answers each question in Python; programs connect to a few
        addresses many times).  Called under the lock."""
        last_ip, route = self._last_route
        if last_ip is ip:
            return route
        route = self._routes.get(ip)
        if route is None:
            v4 = ip.ipv4_mapped
            # lo's routes say 127.0.0.1 for all of 127/8; any other address of this
            # network is reached from itself.
            source = _LOOPBACK4_ADDRESS if v4 is not None and v4.is_loopback else ip
            if source == ip:
                source = ip  # the caller's own object: later lookups by it match by identity
            route = Route(v4 is not None, is_wildcard(ip), self.is_local(ip), source,
                          self.host_of(ip))
            if len(self._routes) >= 4096:
                self._routes.clear()
            self._routes[ip] = route
        self._last_route = (ip, route)
        return route

    def is_local(self, ip: ipaddress.IPv6Address) -> bool:
        if is_wildcard(ip):
            return True
        v4 = ip.ipv4_mapped
        if v4 is not None and v4 in _LOOPBACK4:
            return True
        return ip in self._local

    def lookup(self, name: str, family: int) -> ipaddress.IPv6Address:
        """The address a socket of ``family`` given host ``name`` uses: the first
        getaddrinfo answers for that family (as CPython resolves a socket address)."""
        return self.resolve(name, family)[1][0][1]

    def loopback(self, v4: bool) -> ipaddress.IPv6Address:
        """Where a connect to the wildcard address goes, as on Linux."""
        return _LOOPBACK4_ADDRESS if v4 else _LOOPBACK6


def _host_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(text, str):
        raise TypeError(f"an address is a str, not {type(text).__name__}")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address(
            "255.255.255.255") or ip.is_loopback:
        raise ValueError(f"{text!r} is not an address a host can have")
    return ip


def _internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return mapped(ip) if isinstance(ip, ipaddress.IPv4Address) else ip
