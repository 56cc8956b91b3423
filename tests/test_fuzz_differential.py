"""A differential fuzzer: random sequences of socket calls, on the kernel and on the
layer, in lockstep.

The hand-written oracle scenarios (``scenarios.py``) find what their authors thought
of.  Here hypothesis's ``RuleBasedStateMachine`` makes up the sequences: sockets of
every family and type the presets serve (TCP and UDP over IPv4 and IPv6; AF_UNIX
stream, datagram and seqpacket) are created, bound, connected, accepted, written,
read with flags, shut down, closed, duplicated and asked for their options and names,
in any order.  Every step runs in three *worlds*:

- ``kernel``: the stdlib on the real kernel (``scenarios.KernelCalls``): the oracle;
- ``host``: ``posix_socket.posix`` over the host preset's drivers (kernel sockets
  through the layer's core);
- ``virtual``: ``posix_socket.posix`` over the virtual preset's drivers (a fresh
  virtual IPv4/IPv6 network and AF_UNIX namespace per example).

Each world's calls go through a ``scenarios.Recorder``, which normalises what differs
between worlds by nature (descriptor numbers, ephemeral ports, socket paths, autobind
names); after every step the new log entries of each layer world must equal the
kernel's, and then a poll of every open socket must give the same masks.

The worlds are kept deterministic, so that any difference is the layer's:

- every socket has SO_RCVTIMEO and SO_SNDTIMEO of ``BLOCK_US``, so a blocking call
  that finds nothing to do ends with EAGAIN instead of hanging (an accepted socket's
  inherited timeouts are read back and compared first, then set again);
- payloads are small, so no buffer fills unless an option shrank it;
- a TCP connect is only made while no TCP listener's accept queue is full on the
  kernel (``TCP_INFO`` says), since a full queue makes Linux drop the SYN and retry it
  on a timer;
- poll masks are compared again after short pauses while they differ, because the
  kernel delivers a few events (a connection's last ACK, a FIN) a moment later.

Known differences the layer keeps on purpose, or that another item of the same issue
fixes, are listed in ``KNOWN_DIFFERENCES`` with the reason; the machine avoids them
(or, when one shows up anyway, ends the example there and records it as an event).

CI runs ``CI_EXAMPLES`` derandomized examples (the same ones every run);
``POSIX_SOCKET_FUZZ_EXAMPLES=N`` runs N random ones instead, e.g.::

    POSIX_SOCKET_FUZZ_EXAMPLES=3000 PYTHONPATH=src python -m pytest -q \\
        -p no:cacheprovider tests/test_fuzz_differential.py --hypothesis-show-statistics
"""

from __future__ import annotations

import fcntl as _fcntl
import json
import os
import socket as _socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from scenarios import (
    INT,
    POLL_ALL,
    TIMEVAL,
    Env,
    Failure,
    KernelAPI,
    LayerAPI,
    Recorder,
    first_difference,
    make_env,
)

import posix_socket as ps

AF_INET, AF_INET6, AF_UNIX = _socket.AF_INET, _socket.AF_INET6, _socket.AF_UNIX
STREAM, DGRAM, SEQPACKET = _socket.SOCK_STREAM, _socket.SOCK_DGRAM, _socket.SOCK_SEQPACKET
SOCK_NONBLOCK, SOCK_CLOEXEC = _socket.SOCK_NONBLOCK, _socket.SOCK_CLOEXEC
SOL_SOCKET, IPPROTO_TCP = _socket.SOL_SOCKET, _socket.IPPROTO_TCP
IPPROTO_IP, IPPROTO_IPV6 = _socket.IPPROTO_IP, _socket.IPPROTO_IPV6
MSG_PEEK, MSG_DONTWAIT, MSG_WAITALL = _socket.MSG_PEEK, _socket.MSG_DONTWAIT, _socket.MSG_WAITALL
MSG_TRUNC, MSG_NOSIGNAL, MSG_OOB = _socket.MSG_TRUNC, _socket.MSG_NOSIGNAL, _socket.MSG_OOB
TCP_INFO = getattr(_socket, "TCP_INFO", 11)
FIONREAD = 0x541B
SIOCATMARK = 0x8905

MAX_SOCKETS = 4  # open descriptors per example: small state, fast examples
BLOCK_US = 10_000  # SO_RCVTIMEO / SO_SNDTIMEO of every socket: how long "blocking" lasts
SETTLE_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)  # seconds, before a re-poll

CI_EXAMPLES = 200
EXAMPLES = int(os.environ.get("POSIX_SOCKET_FUZZ_EXAMPLES", "0") or 0)
# A file to collect differences in instead of failing at the first (for exploring).
SURVEY = os.environ.get("POSIX_SOCKET_FUZZ_SURVEY", "")

# (family, type) of every socket kind the presets serve.
KINDS = [(AF_INET, STREAM), (AF_INET, DGRAM), (AF_INET6, STREAM), (AF_INET6, DGRAM),
         (AF_UNIX, STREAM), (AF_UNIX, DGRAM), (AF_UNIX, SEQPACKET)]
LOOPBACK = {AF_INET: "127.0.0.1", AF_INET6: "::1"}
WILDCARD = {AF_INET: "0.0.0.0", AF_INET6: "::"}
FOREIGN = {AF_INET: "203.0.113.7", AF_INET6: "2001:db8::7"}  # documentation ranges
CLOSED_PORT = 1  # tcpmux: nothing listens on it on a test machine, nor on a virtual one
MISSING_PATH = "/nonexistent-posix-socket-fuzz/s"


# -- options --------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """A socket option the machine reads and writes on any socket (the kernel decides
    which levels apply to which socket: ENOPROTOOPT, EOPNOTSUPP ... are results too).

    ``values`` are what setsockopt may be given (none: read-only here); ``buflen``
    reads it as raw bytes of that length instead of an int.
    """

    name: str
    level: int
    optname: int
    values: tuple[int | bytes, ...] = ()
    buflen: int = 0


LINGER = struct.Struct("@ii")
BOOL = (0, 1)

OPTIONS = [
    Option("SO_REUSEADDR", SOL_SOCKET, _socket.SO_REUSEADDR, BOOL),
    Option("SO_REUSEPORT", SOL_SOCKET, _socket.SO_REUSEPORT, BOOL),
    Option("SO_KEEPALIVE", SOL_SOCKET, _socket.SO_KEEPALIVE, BOOL),
    Option("SO_BROADCAST", SOL_SOCKET, _socket.SO_BROADCAST, BOOL),
    Option("SO_OOBINLINE", SOL_SOCKET, _socket.SO_OOBINLINE, BOOL),
    # Linux doubles what is set and clamps it between a floor and net.core.[rw]mem_max;
    # the values stay below this machine's maximum and above the floor, and the read
    # back (after the kernel's doubling) is compared.
    Option("SO_RCVBUF", SOL_SOCKET, _socket.SO_RCVBUF, (65536, 131072)),
    Option("SO_SNDBUF", SOL_SOCKET, _socket.SO_SNDBUF, (65536, 131072)),
    Option("SO_LINGER", SOL_SOCKET, _socket.SO_LINGER,
           (LINGER.pack(0, 0), LINGER.pack(1, 0), LINGER.pack(1, 1)), LINGER.size),
    Option("SO_RCVLOWAT", SOL_SOCKET, _socket.SO_RCVLOWAT, (1,)),
    Option("SO_PRIORITY", SOL_SOCKET, _socket.SO_PRIORITY, (0, 3, 6)),
    Option("SO_PASSCRED", SOL_SOCKET, _socket.SO_PASSCRED, BOOL),
    Option("SO_ERROR", SOL_SOCKET, _socket.SO_ERROR),
    Option("SO_TYPE", SOL_SOCKET, _socket.SO_TYPE),
    Option("SO_ACCEPTCONN", SOL_SOCKET, _socket.SO_ACCEPTCONN),
    Option("SO_DOMAIN", SOL_SOCKET, _socket.SO_DOMAIN),
    Option("SO_PROTOCOL", SOL_SOCKET, _socket.SO_PROTOCOL),
    Option("SO_RCVTIMEO", SOL_SOCKET, _socket.SO_RCVTIMEO, (), TIMEVAL.size),
    Option("SO_SNDTIMEO", SOL_SOCKET, _socket.SO_SNDTIMEO, (), TIMEVAL.size),
    Option("TCP_NODELAY", IPPROTO_TCP, _socket.TCP_NODELAY, BOOL),
    Option("TCP_KEEPIDLE", IPPROTO_TCP, _socket.TCP_KEEPIDLE, (1, 60, 7200)),
    Option("TCP_KEEPINTVL", IPPROTO_TCP, _socket.TCP_KEEPINTVL, (1, 75)),
    Option("TCP_KEEPCNT", IPPROTO_TCP, _socket.TCP_KEEPCNT, (1, 9)),
    Option("TCP_USER_TIMEOUT", IPPROTO_TCP, _socket.TCP_USER_TIMEOUT, (0, 5000)),
    Option("IP_TTL", IPPROTO_IP, _socket.IP_TTL, (1, 64, 255)),
    Option("IP_TOS", IPPROTO_IP, _socket.IP_TOS, (0, 0x10)),
    Option("IP_MULTICAST_TTL", IPPROTO_IP, _socket.IP_MULTICAST_TTL, (0, 1, 8)),
    Option("IP_MULTICAST_LOOP", IPPROTO_IP, _socket.IP_MULTICAST_LOOP, BOOL),
    Option("IPV6_V6ONLY", IPPROTO_IPV6, _socket.IPV6_V6ONLY, BOOL),
    Option("IPV6_UNICAST_HOPS", IPPROTO_IPV6, _socket.IPV6_UNICAST_HOPS, (-1, 1, 64)),
    Option("IPV6_MULTICAST_HOPS", IPPROTO_IPV6, _socket.IPV6_MULTICAST_HOPS, (-1, 1)),
    Option("IPV6_MULTICAST_LOOP", IPPROTO_IPV6, _socket.IPV6_MULTICAST_LOOP, BOOL),
    Option("IPV6_TCLASS", IPPROTO_IPV6, _socket.IPV6_TCLASS, (0, 0x10)),
]


# -- known differences ------------------------------------------------------------------

ANY = object()  # any outcome, in a Known pattern
OK = None  # what the log holds for a call that returned nothing


@dataclass(frozen=True)
class Known:
    """A difference between a layer world and the kernel, with the reason it stays.

    It is recognised by the first call where the logs part: the call's name, the
    kernel's outcome and the layer's (an errno name such as ``"EINVAL"``, ``OK`` for
    a call that returned None, ``ANY``, or a logged value), and the kind of socket
    the step acted on (``kinds``: ``(family, type)`` pairs; empty: any).  When one
    shows up the example ends there, recorded as a hypothesis event.  ``avoided``
    says how the machine steers around it, so that it rarely shows up at all.
    """

    name: str
    reason: str
    call: str | tuple[str, ...] | None  # the call(s); None: only avoided, never recognised
    kernel: Any
    layer: Any
    kinds: frozenset[tuple[int, int]] = frozenset()
    worlds: frozenset[str] = frozenset({"virtual"})
    avoided: str = ""

    def matches(self, world: str, want: Any, got: Any, acting: Description | None) -> bool:
        if self.call is None or world not in self.worlds or (self.kinds and (
                acting is None or (acting.family, acting.type) not in self.kinds)):
            return False
        calls = (self.call,) if isinstance(self.call, str) else self.call
        return any(_outcome_is(want, call, self.kernel) and _outcome_is(got, call, self.layer)
                   for call in calls)


def _outcome_is(entry: Any, call: str, pattern: Any) -> bool:
    if not isinstance(entry, tuple) or entry[0] != call:
        return False
    if pattern is ANY:
        return True
    outcome = entry[1]
    if isinstance(pattern, tuple) and all(isinstance(p, str) for p in pattern):
        return any(_outcome_is(entry, call, one) for one in pattern)
    if isinstance(pattern, str) and pattern.isupper():
        return isinstance(outcome, tuple) and outcome[:1] == ("error",) and (
            outcome[2] == pattern)
    return outcome == pattern


TCP_KINDS = frozenset({(AF_INET, STREAM), (AF_INET6, STREAM)})

KNOWN_DIFFERENCES: list[Known] = [
    Known("IPv6 UDP mixing IPv4 and IPv6 addresses",
          "Linux keeps an IPv6 and an IPv4 source for an AF_INET6 UDP socket: one whose "
          "::1 came from connect() (not from bind) can still connect or send to a "
          "v4-mapped address (from 127.0.0.1; its IPv4 receive address is 127.0.0.6, "
          "so replies cannot reach it), one whose ::ffff:127.0.0.1 came from connect() "
          "can still connect to ::1, and :: as a destination means ::ffff:127.0.0.1 for "
          "a socket bound to a v4-mapped address; the virtual UDP socket has one "
          "address and answers ENETUNREACH or EAFNOSUPPORT",
          ("connect", "sendto", "sendmsg"), ANY, ("ENETUNREACH", "EAFNOSUPPORT"),
          frozenset({(AF_INET6, DGRAM)})),
    Known("AF_UNIX zero-byte stream receive with an out-of-band byte queued",
          "found once TCP's MSG_OOB sends changed the derandomized examples: Linux 6.18 "
          "answers recvfrom/recvmsg of 0 bytes on an AF_UNIX stream with EAGAIN when the "
          "queue holds data and an out-of-band byte (b'abcd' + OOB b'e'), but b'' with "
          "data alone; the virtual AF_UNIX driver answers b'' (not yet looked into)",
          ("recvfrom", "recvmsg"), "EAGAIN", ANY, frozenset({(AF_UNIX, STREAM)})),
]


# -- worlds --------------------------------------------------------------------------

@contextmanager
def serving(drivers: dict[int, ps.SocketDriver]) -> Iterator[None]:
    """Make ``drivers`` serve their families for the duration (new sockets remember
    their driver, so only creation needs it), then restore the registry exactly."""
    before = ps.registered_families()
    for family, driver in drivers.items():
        ps.register_family(family, driver, replace=True)
    try:
        yield
    finally:
        for family in drivers:
            if family in before:
                ps.register_family(family, before[family], replace=True)
            else:
                ps.unregister_family(family)


class LayerWorldAPI(LayerAPI):
    """``posix_socket.posix`` with the world's own drivers serving new sockets."""

    def __init__(self, env: Env, drivers: dict[int, ps.SocketDriver]) -> None:
        super().__init__(env)
        self.drivers = drivers

    def _call(self, name: str, normalise: Callable[[Any], Any], *args: Any) -> Any:
        if name in ("socket", "socketpair"):
            with serving(self.drivers):
                return super()._call(name, normalise, *args)
        return super()._call(name, normalise, *args)


def preset_drivers(name: str) -> dict[int, ps.SocketDriver]:
    """A fresh set of the preset's drivers, without leaving them registered."""
    with ps.use(name) as preset:
        return dict(preset.drivers)


class World:
    """One place the calls run: a recorder over its implementation, and its paths."""

    def __init__(self, name: str, api: Recorder) -> None:
        self.name = name
        self.api = api
        self.env = api.env
        self._names = 0

    def new_path(self) -> str:
        return self.env.address()

    def new_abstract(self) -> bytes:
        """An abstract AF_UNIX name of this world's own (the kernel's abstract names are
        shared by the whole machine, so the worlds must not pick the same ones)."""
        self._names += 1
        name = f"\0fuzz-{os.getpid()}-{id(self)}-{self._names}".encode()
        self.env.addresses.append(name)
        return name

    def close(self) -> None:
        self.api.close_all()
        self.env.close()


# -- the model -----------------------------------------------------------------------

@dataclass
class Description:
    """What the machine needs to know of an open socket (shared by its dups): enough to
    pick sensible calls, never an expectation of their results."""

    family: int
    type: int
    nonblocking: bool
    owns_port: bool = False  # bound by bind() or listen(), not by connect() or sendto()


@dataclass
class Slot:
    """One open descriptor, by its number in each world."""

    fds: dict[str, int]
    socket: Description


@dataclass
class Ghost:
    """The name a closed socket had, by world: a place nothing may listen any more."""

    family: int
    type: int
    names: dict[str, Any] = field(default_factory=dict)


def _payload(counter: int, size: int) -> bytes:
    """Bytes that tell sends apart, so a reordered or mixed-up stream shows."""
    stamp = f"<{counter}>".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


def _reaches(desc: Description, family: int, type: int) -> bool:
    """May a socket like ``desc`` be aimed at the name of a (family, type) socket?

    AF_UNIX names only for AF_UNIX sockets (any type: EPROTOTYPE is a result too);
    IP names of the same transport only, since a TCP port number taken from a UDP
    socket (or the reverse) may belong to anything on this machine in the kernel's
    worlds, and to nothing in the virtual one.
    """
    if desc.family == AF_UNIX or family == AF_UNIX:
        return desc.family == family
    return desc.type == type


def _is_tcp(desc: Description) -> bool:
    return desc.family in (AF_INET, AF_INET6) and desc.type == STREAM


class DifferentialMachine(RuleBasedStateMachine):
    """Random socket calls in three worlds at once; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.worlds: list[World] = [
            World("kernel", KernelAPI(make_env(AF_UNIX, STREAM))),
            World("host", LayerWorldAPI(make_env(AF_UNIX, STREAM), preset_drivers("host"))),
            World("virtual", LayerWorldAPI(make_env(AF_UNIX, STREAM),
                                           preset_drivers("virtual"))),
        ]
        self.slots: list[Slot] = []
        self.ghosts: list[Ghost] = []
        self.counter = 0
        self.acting: Description | None = None  # the socket the current rule acts on
        self.history: list[str] = []  # the steps so far, for the survey's report
        self.stopped = False  # a known difference showed up: the rest would only echo it

    def teardown(self) -> None:
        for world in self.worlds:
            world.close()

    # -- running a step in every world ---------------------------------------------

    def step(self, call: Callable[[World], Any]) -> dict[str, Any] | None:
        """Run ``call`` in every world and compare the calls each logged.

        Returns each world's result by world name, or None when the worlds went
        different ways over a known difference (the example stops there).
        """
        if SURVEY:
            self.history.append(_describe_step(sys._getframe(1), self.slots))
        marks = [len(world.api.log) for world in self.worlds]
        results = {world.name: call(world) for world in self.worlds}
        self.compare([world.api.log[mark:] for world, mark in zip(self.worlds, marks,
                                                                   strict=True)])
        return None if self.stopped else results

    def compare(self, logs: list[list]) -> None:
        expected = logs[0]
        for world, actual in zip(self.worlds[1:], logs[1:], strict=True):
            difference = first_difference(expected, actual)
            if difference is None:
                continue
            want, got = _first_pair(expected, actual)
            for known in KNOWN_DIFFERENCES:
                if known.matches(world.name, want, got, self.acting):
                    event(f"known difference: {known.name}")
                    self.stopped = True
                    return
            if SURVEY:
                self.survey(world, expected, actual, difference)
                return
            raise AssertionError(f"{world.name} differs from the kernel: {difference}")

    def survey(self, world: World, expected: list, actual: list, difference: str) -> None:
        """Survey mode: write the difference down and end the example, to collect many
        distinct differences in one run instead of stopping at the first."""
        want, got = _first_pair(expected, actual)
        kind = self.acting and (FAMILY_NAMES[self.acting.family], TYPE_NAMES[self.acting.type])
        key = repr((world.name, kind, want, got))
        with open(SURVEY, "a") as out:
            out.write(json.dumps({"key": key, "difference": difference,
                                  "steps": self.history}) + "\n")
        self.stopped = True

    def quiet(self, world: World, name: str, *args: Any) -> Any:
        """A call made for the machine's bookkeeping, not compared."""
        return getattr(world.api.impl, name)(*args)

    def pick(self, index: int) -> Slot:
        """The slot a rule acts on (``acting`` tells known differences which kind)."""
        slot = self.slots[index % len(self.slots)]
        self.acting = slot.socket
        return slot

    def adopt(self, fds: dict[str, int], desc: Description) -> Slot:
        """A new descriptor joins the model, with the short blocking timeouts set."""
        slot = Slot(fds, desc)
        self.slots.append(slot)
        for world in self.worlds:
            for option in (_socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO):
                self.quiet(world, "setsockopt", fds[world.name], SOL_SOCKET, option,
                           TIMEVAL.pack(0, BLOCK_US))
        return slot

    def forget(self, slot: Slot) -> None:
        self.slots.remove(slot)

    # -- where to bind and connect -------------------------------------------------------

    def name_of(self, world: World, slot: Slot) -> Any:
        try:
            return self.quiet(world, "getsockname", slot.fds[world.name])
        except OSError:
            return None

    def ghost_of(self, slot: Slot) -> Ghost:
        ghost = Ghost(slot.socket.family, slot.socket.type)
        for world in self.worlds:
            ghost.names[world.name] = self.name_of(world, slot)
        return ghost

    @staticmethod
    def convert(name: Any, family: int) -> Any:
        """``name`` (of a socket of another IP family) as ``family`` would reach it:
        IPv4 from IPv6 through a mapped address; IPv6 from IPv4 not at all (None)."""
        if name is None or not isinstance(name, tuple):
            return name
        if family == AF_INET6 and len(name) == 2:
            return (f"::ffff:{name[0]}", name[1], 0, 0)
        if family == AF_INET and len(name) == 4:
            return None
        return name

    def target(self, world: World, desc: Description, choice: int, where: str,
               binding: bool = False) -> Any:
        """The address ``where`` says, for a socket like ``desc``, in ``world``.

        To bind, only names of open sockets that own their port are taken: a TCP port
        picked by connect() is shared with other connections (of other processes
        too, in the kernel's worlds), and a closed socket's port is anyone's.
        """
        family = desc.family
        if where == "missing":
            return MISSING_PATH if family == AF_UNIX else (LOOPBACK[family], CLOSED_PORT)
        if where == "foreign":
            return MISSING_PATH if family == AF_UNIX else (FOREIGN[family], 0)
        candidates: list[Any] = []
        for slot in self.slots:
            if _reaches(desc, slot.socket.family, slot.socket.type) and (
                    not binding or slot.socket.owns_port or family == AF_UNIX):
                candidates.append(self.name_of(world, slot))
        for ghost in self.ghosts if not binding or family == AF_UNIX else ():
            if _reaches(desc, ghost.family, ghost.type):
                candidates.append(ghost.names[world.name])
        # Nothing to aim at: a name nothing has (to bind: a fresh port, since the
        # worlds of the kernel share its ports and only one of them could take a
        # fixed one).
        nowhere = MISSING_PATH if family == AF_UNIX else (
            LOOPBACK[family], 0 if binding else CLOSED_PORT)
        if not candidates:
            return nowhere
        name = candidates[choice % len(candidates)]
        if family == AF_UNIX:
            return name if name not in (None, "", b"") else MISSING_PATH
        name = self.convert(name, family)
        if name is None:
            return nowhere
        if where == "port":  # the same port on the wildcard address
            return (WILDCARD[family], name[1])
        return name

    def tcp_queue_full(self) -> bool:
        """Is some TCP listener's accept queue full on the kernel?  A SYN to it would be
        dropped and retried on a timer, which no lockstep can follow."""
        kernel = self.worlds[0]
        for slot in self.slots:
            if not _is_tcp(slot.socket):
                continue
            try:
                info = self.quiet(kernel, "getsockopt", slot.fds["kernel"], IPPROTO_TCP,
                                  TCP_INFO, 32)
            except OSError:
                continue
            if info[0] != 10:  # TCP_LISTEN
                continue
            queued, limit = struct.unpack_from("@II", info, 24)  # tcpi_unacked, _sacked
            if queued > limit:
                return True
        return False

    # -- rules ---------------------------------------------------------------------------

    def runs(self) -> bool:
        return not self.stopped

    def has_room(self) -> bool:
        return not self.stopped and len(self.slots) < MAX_SOCKETS

    def has_sockets(self) -> bool:
        return not self.stopped and bool(self.slots)

    @precondition(lambda self: self.stopped)
    @rule()
    def stay_stopped(self) -> None:
        """After a known difference nothing else runs (hypothesis needs some rule)."""

    @precondition(has_room)
    @rule(kind=st.sampled_from(KINDS),
          flags=st.sampled_from([0, 0, SOCK_NONBLOCK, SOCK_CLOEXEC]))
    def socket(self, kind: tuple[int, int], flags: int) -> None:
        family, type = kind
        self.acting = Description(family, type, bool(flags & SOCK_NONBLOCK))
        results = self.step(lambda w: w.api.socket(family, type | flags))
        if _succeeded(results):
            self.adopt(results, self.acting)

    @precondition(lambda self: not self.stopped and len(self.slots) <= MAX_SOCKETS - 2)
    @rule(kind=st.sampled_from(KINDS), flags=st.sampled_from([0, SOCK_NONBLOCK]))
    def socketpair(self, kind: tuple[int, int], flags: int) -> None:
        family, type = kind
        self.acting = Description(family, type, bool(flags & SOCK_NONBLOCK))
        results = self.step(lambda w: w.api.socketpair(family, type | flags))
        if _succeeded(results):
            for end in (0, 1):
                self.adopt({name: pair[end] for name, pair in results.items()},
                           Description(family, type, bool(flags & SOCK_NONBLOCK)))

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1),
          where=st.sampled_from(["fresh", "fresh", "any", "same", "port", "foreign",
                                 "abstract"]),
          choice=st.integers(0, 7))
    def bind(self, index: int, where: str, choice: int) -> None:
        slot = self.pick(index)
        desc = slot.socket

        def address(world: World) -> Any:
            unix = desc.family == AF_UNIX
            if where in ("fresh", "abstract") and not unix:
                return (LOOPBACK[desc.family], 0)
            if where == "fresh":
                return world.new_path()
            if where == "abstract":
                return world.new_abstract()
            if where == "any":
                return "" if unix else (WILDCARD[desc.family], 0)
            return self.target(world, desc, choice, where, binding=True)

        if _succeeded(self.step(lambda w: w.api.bind(slot.fds[w.name], address(w)))):
            desc.owns_port = True

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1), backlog=st.sampled_from([0, 1, 2, 5, 128]))
    def listen(self, index: int, backlog: int) -> None:
        slot = self.pick(index)
        if _succeeded(self.step(lambda w: w.api.listen(slot.fds[w.name], backlog))):
            slot.socket.owns_port = True  # bound now, by bind() or by listen's own pick

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1), choice=st.integers(0, 7),
          where=st.sampled_from(["same", "same", "same", "port", "missing"]))
    def connect(self, index: int, choice: int, where: str) -> None:
        slot = self.pick(index)
        if _is_tcp(slot.socket) and self.tcp_queue_full():
            return
        self.step(lambda w: w.api.connect(slot.fds[w.name],
                                          self.target(w, slot.socket, choice, where)))

    @precondition(lambda self: self.has_room() and self.has_sockets())
    @rule(index=st.integers(0, MAX_SOCKETS - 1),
          flags=st.sampled_from([0, 0, SOCK_NONBLOCK, SOCK_CLOEXEC]))
    def accept(self, index: int, flags: int) -> None:
        slot = self.pick(index)
        results = self.step(lambda w: w.api.accept4(slot.fds[w.name], flags))
        if not _succeeded(results):
            return
        fds = {name: result[0] for name, result in results.items()}
        # What an accepted socket inherits from its listener is part of the comparison.
        self.step(lambda w: [w.api.getsockopt(fds[w.name], SOL_SOCKET, option, TIMEVAL.size)
                             for option in (_socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO)])
        self.adopt(fds, Description(slot.socket.family, slot.socket.type,
                                    bool(flags & SOCK_NONBLOCK)))

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1),
          size=st.sampled_from([0, 1, 5, 100, 1500]),
          flags=st.sampled_from([0, 0, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_OOB]),
          how=st.sampled_from(["send", "send", "sendto", "sendmsg", "sendmsg-to"]),
          choice=st.integers(0, 7))
    def send(self, index: int, size: int, flags: int, how: str, choice: int) -> None:
        slot = self.pick(index)
        self.counter += 1
        data = _payload(self.counter, size)
        half = size // 2

        def call(world: World) -> Any:
            fd = slot.fds[world.name]
            if how == "send":
                return world.api.send(fd, data, flags)
            if how == "sendmsg":
                return world.api.sendmsg(fd, [data[:half], data[half:]], (), flags)
            to = self.target(world, slot.socket, choice, "same")
            if how == "sendto":
                return world.api.sendto(fd, data, flags, to)
            return world.api.sendmsg(fd, [data[:half], data[half:]], (), flags, to)

        self.step(call)

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1),
          size=st.sampled_from([0, 1, 4, 64, 4096]),
          flags=st.sampled_from([0, MSG_DONTWAIT, MSG_DONTWAIT, MSG_PEEK | MSG_DONTWAIT,
                                 MSG_PEEK, MSG_WAITALL, MSG_TRUNC | MSG_DONTWAIT,
                                 MSG_OOB | MSG_DONTWAIT]),
          how=st.sampled_from(["recv", "recv", "recvfrom", "recvmsg"]))
    def recv(self, index: int, size: int, flags: int, how: str) -> None:
        slot = self.pick(index)
        if flags & MSG_OOB and how == "recvfrom" and slot.socket.family == AF_UNIX:
            # Linux copies an AF_UNIX out-of-band byte whatever the buffer's size, and
            # CPython's recvfrom(0) then returns a byte of its own empty buffer's memory
            size = max(size, 1)
        tcp = _is_tcp(slot.socket)

        def data(raw: bytes) -> Any:
            if flags & MSG_TRUNC:
                # The stdlib sizes the result to the length the kernel returns, past
                # what it copied: only the copied part is data (none at all for TCP,
                # which discards).
                return ("length", len(raw), None if tcp else raw[:size])
            return Recorder._data(raw)

        def call(world: World) -> Any:
            api, fd = world.api, slot.fds[world.name]
            if how == "recv":
                return api._call("recv", data, fd, size, flags)
            if how == "recvfrom":
                return api._call("recvfrom", lambda r: (data(r[0]), api._addr(r[1])),
                                 fd, size, flags)
            return api._call("recvmsg",
                             lambda r: (data(r[0]), r[1], r[2], api._addr(r[3])),
                             fd, size, 0, flags)

        self.step(call)

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1), how=st.sampled_from([0, 1, 2]))
    def shutdown(self, index: int, how: int) -> None:
        slot = self.pick(index)
        self.step(lambda w: w.api.shutdown(slot.fds[w.name], how))

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1))
    def close(self, index: int) -> None:
        slot = self.pick(index)
        self.ghosts = [*self.ghosts[-2:], self.ghost_of(slot)]
        self.step(lambda w: w.api.close(slot.fds[w.name]))
        self.forget(slot)

    @precondition(lambda self: self.has_room() and self.has_sockets())
    @rule(index=st.integers(0, MAX_SOCKETS - 1))
    def dup(self, index: int) -> None:
        slot = self.pick(index)
        results = self.step(lambda w: w.api.dup(slot.fds[w.name]))
        if _succeeded(results):
            self.slots.append(Slot(results, slot.socket))  # same description, same timeouts

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1), on=st.booleans())
    def set_blocking(self, index: int, on: bool) -> None:
        slot = self.pick(index)

        def call(world: World) -> Any:
            fd = slot.fds[world.name]
            flags = world.api.fcntl(fd, _fcntl.F_GETFL)
            if isinstance(flags, Failure):
                return flags
            flags = flags & ~os.O_NONBLOCK if on else flags | os.O_NONBLOCK
            return world.api.fcntl(fd, _fcntl.F_SETFL, flags)

        if _succeeded(self.step(call)):
            slot.socket.nonblocking = not on

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1), option=st.sampled_from(OPTIONS))
    def getsockopt(self, index: int, option: Option) -> None:
        slot = self.pick(index)
        self.step(lambda w: w.api.getsockopt(slot.fds[w.name], option.level, option.optname,
                                             option.buflen))

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1),
          option=st.sampled_from([option for option in OPTIONS if option.values]),
          choice=st.integers(0, 7))
    def setsockopt(self, index: int, option: Option, choice: int) -> None:
        slot = self.pick(index)
        value = option.values[choice % len(option.values)]
        self.step(lambda w: (w.api.setsockopt(slot.fds[w.name], option.level, option.optname,
                                              value),
                             w.api.getsockopt(slot.fds[w.name], option.level, option.optname,
                                              option.buflen)))

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1))
    def names(self, index: int) -> None:
        slot = self.pick(index)
        self.step(lambda w: (w.api.getsockname(slot.fds[w.name]),
                             w.api.getpeername(slot.fds[w.name])))

    @precondition(has_sockets)
    @rule(index=st.integers(0, MAX_SOCKETS - 1))
    def bytes_queued(self, index: int) -> None:
        slot = self.pick(index)
        # and whether the out-of-band (urgent) mark is next
        self.step(lambda w: (w.api.ioctl(slot.fds[w.name], FIONREAD, INT.pack(0)),
                             w.api.ioctl(slot.fds[w.name], SIOCATMARK, INT.pack(0))))

    # -- after every step -----------------------------------------------------------------

    @invariant()
    def same_readiness(self) -> None:
        """Every open socket polls the same in every world (after a moment for the
        kernel's events still under way)."""
        if self.stopped or not self.slots:
            return
        self.acting = None
        for pause in (0, *SETTLE_PAUSES):
            time.sleep(pause)
            for world in self.worlds:
                world.api.poll([(slot.fds[world.name], POLL_ALL) for slot in self.slots], 0)
            last = [world.api.log[-1] for world in self.worlds]
            if all(entry == last[0] for entry in last):
                return
        self.compare([[entry] for entry in last])


FAMILY_NAMES = {AF_INET: "inet", AF_INET6: "inet6", AF_UNIX: "unix"}
TYPE_NAMES = {STREAM: "stream", DGRAM: "dgram", SEQPACKET: "seqpacket"}


def _describe_step(frame: Any, slots: list[Slot]) -> str:
    """The rule calling ``step`` and its arguments, with the socket it acts on (the
    survey's report)."""
    args = {k: v for k, v in frame.f_locals.items()
            if k in ("index", "kind", "flags", "where", "choice", "backlog", "size", "how",
                     "on", "option", "value")}
    if "option" in args:
        args["option"] = args["option"].name
    text = f"{frame.f_code.co_name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
    slot = frame.f_locals.get("slot")
    if slot is not None:
        position = slots.index(slot) if slot in slots else "?"
        text += (f" on #{position} {FAMILY_NAMES[slot.socket.family]}-"
                 f"{TYPE_NAMES[slot.socket.type]}")
    return text


def _first_pair(expected: list, actual: list) -> tuple[Any, Any]:
    """The first entries where two logs part (None past the end of one)."""
    for index in range(max(len(expected), len(actual))):
        want = expected[index] if index < len(expected) else None
        got = actual[index] if index < len(actual) else None
        if want != got:
            return want, got
    return None, None


def _succeeded(results: dict[str, Any] | None) -> bool:
    return results is not None and not isinstance(results["kernel"], Failure)


def _settings() -> settings:
    if EXAMPLES:
        return settings(max_examples=EXAMPLES, deadline=None, database=None,
                        stateful_step_count=40,
                        suppress_health_check=list(HealthCheck))
    return settings(max_examples=CI_EXAMPLES, deadline=None, database=None,
                    derandomize=True, stateful_step_count=40,
                    suppress_health_check=list(HealthCheck))


DifferentialMachine.TestCase.settings = _settings()
TestKernelAndLayerInLockstep = DifferentialMachine.TestCase
TestKernelAndLayerInLockstep = pytest.mark.timeout(600)(TestKernelAndLayerInLockstep)
