"""Imperfect-network scenarios, written once, run on the kernel and on the virtual network.

Each scenario is a flat list of socket calls (through the oracle suite's recording
adapters, so errnos are logged as names and descriptors and ports are normalised) plus
changes to the network made through ``Conditions``: a partition between the two hosts,
its healing, random loss, a sysctl, a reset of one end.  Two implementations:

- ``KernelConditions`` (run inside a fresh network namespace by ``kernel_netns``): the
  hosts are two addresses on the namespace's lo, a partition is a pair of nftables drop
  rules, loss is ``numgen random mod 100 < N drop``, a sysctl is written under the
  namespace's /proc/sys/net/ipv4, and a reset is the reference Linux gives for it: the
  other end closes with SO_LINGER {1, 0} (an RST, and that descriptor is gone).
- ``VirtualConditions``: the same through the virtual network's public API
  (``net.partition``, ``net.heal``, ``net.link(..., loss=)``, ``net.sysctl[...]``,
  ``net.reset(host, port)``).

Every call's outcome, poll mask and SO_ERROR goes in the log with its elapsed time;
``test_imperfect_oracle`` compares the logs call by call and the times of the calls that
waited.  The scenarios shorten Linux's timers with sysctls and socket options so that
the slowest takes about 8 s.

Where a step waits for a timer to fire, the comment gives Linux's arithmetic; the
kernel run is what the comparison trusts, not the comment.

What Linux 6.18 gave here (the reference numbers, seconds from the call that starts it;
a partition drops at the receiver's input, so the sender sees no local error):

- SYN across a partition: SYN at 0, retries at 1, 3, 7, 15... (1 s doubling);
  tcp_syn_retries 2: ETIMEDOUT at 7.12; 1 (or TCP_SYNCNT 1): 3.06-3.08; TCP_USER_TIMEOUT
  1500 ms with tcp_syn_retries 6: 1.51.  SO_SNDTIMEO 1.2 s: EINPROGRESS at 1.22, a
  second connect EALREADY after another 1.22, a third ETIMEDOUT at 3.0 in all.
  settimeout(1.5) + connect: TimeoutError('timed out') at 1.50.
- Data across a partition: a tail-loss probe at 0.21, RTOs at 0.41, 0.85, 1.68, 3.35,
  6.61 (0.204 s doubling); tcp_retries2 2: ETIMEDOUT at 3.35; 3: 6.63-6.73; 4: 6.6-6.8
  (the 6.61 firing, within ms of the limit); 5: 13.46.  TCP_USER_TIMEOUT 1500 ms: 1.92
  (the RTO after 1.68 is cut to the user timeout's remainder).  The end that timed out
  sends nothing; the other end, healed, gets an RST for its next segment.
- Keepalive TCP_KEEPIDLE 1, TCP_KEEPINTVL 1, TCP_KEEPCNT 2 (or the sysctls
  tcp_keepalive_time/intvl/probes 1/1/2): ETIMEDOUT at 2.99-3.04.  With TCP_KEEPCNT 9
  and TCP_USER_TIMEOUT 2500 ms: 3.05 (the first probe past the user timeout).
- Client-to-server direction down only, tcp_retries2 2: the server's data arrives, no
  ACK returns; both ends ETIMEDOUT at 3.36.
- A partition of 1.0 s: the data arrives with the RTO at 1.66-1.68.
- 1 MB over 7 % loss each way, 1500-byte segments: 0.07-2.7 s (median 0.8).
- UDP, 30 % loss: 100-180 of 200 datagrams arrive, every send succeeds.
- IPv6 (fd00::1, fd00::2): the same times as IPv4.
- An RST (SO_LINGER {1, 0} close at the other end) wakes a blocked recv, poll or send
  at once.
"""

from __future__ import annotations

import errno
import hashlib
import json
import random
import socket as _socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from scenarios import Env, KernelAPI, LayerAPI, Recorder

CLIENT_HOST, SERVER_HOST = "10.0.0.1", "10.0.0.2"
CLIENT_HOST6, SERVER_HOST6 = "fd00::1", "fd00::2"  # the same two hosts' IPv6 addresses
HOSTS = (CLIENT_HOST, SERVER_HOST, CLIENT_HOST6, SERVER_HOST6)
AF_INET, STREAM, DGRAM = _socket.AF_INET, _socket.SOCK_STREAM, _socket.SOCK_DGRAM
AF_INET6 = _socket.AF_INET6
OVER_IPV6 = "_over_ipv6"  # a scenario's name with this suffix: the same over IPv6
SOCK_NONBLOCK = _socket.SOCK_NONBLOCK
SOL_SOCKET, SO_ERROR = _socket.SOL_SOCKET, _socket.SO_ERROR
IPPROTO_TCP = _socket.IPPROTO_TCP
TCP_USER_TIMEOUT = getattr(_socket, "TCP_USER_TIMEOUT", 18)
TCP_SYNCNT = getattr(_socket, "TCP_SYNCNT", 7)
MSG_DONTWAIT = _socket.MSG_DONTWAIT
POLL_NAMES = [(0x001, "POLLIN"), (0x002, "POLLPRI"), (0x004, "POLLOUT"), (0x008, "POLLERR"),
              (0x010, "POLLHUP"), (0x020, "POLLNVAL"), (0x2000, "POLLRDHUP")]
POLLIN, POLLOUT, POLLRDHUP = 0x001, 0x004, 0x2000
POLL_ASKED = POLLIN | POLLOUT | POLLRDHUP  # POLLERR and POLLHUP are always reported
GUARD = 10.0  # SO_RCVTIMEO/SO_SNDTIMEO on every socket and the longest poll: longer than
#               any timer here, so the kernel never meets it; a call that lasts that long
#               ends the scenario (StuckAtGuard), as the rest could only wait out guards
GUARD_MS = int(GUARD * 1000)


class StuckAtGuard(Exception):
    """A call waited out the guard: the kernel never does, so the run has diverged."""
TIMEVAL = struct.Struct("@ll")


def poll_names(mask: int) -> str:
    names = [name for bit, name in POLL_NAMES if mask & bit]
    unknown = mask & ~sum(bit for bit, _ in POLL_NAMES)
    return "|".join(names + ([hex(unknown)] if unknown else [])) or "0"


# -- recording with times ----------------------------------------------------------------

class Timed:
    """Mixin for the oracle's recorders: every logged call also records how long it
    took, and SO_ERROR values and poll masks are logged by name for readable reports.

    ``family``, ``client_host`` and ``server_host`` are what the scenario's sockets
    use (IPv4 unless it runs as its ``_over_ipv6`` variant)."""

    log: list
    times: list
    family = AF_INET
    client_host, server_host = CLIENT_HOST, SERVER_HOST

    def over_ipv6(self) -> None:
        self.family = AF_INET6
        self.client_host, self.server_host = CLIENT_HOST6, SERVER_HOST6

    def _call(self, name: str, normalise: Callable[[Any], Any], *args: Any) -> Any:
        started = time.monotonic()
        try:
            return super()._call(name, normalise, *args)  # type: ignore[misc]
        finally:
            elapsed = time.monotonic() - started
            self.times.append(round(elapsed, 3))
            if elapsed >= GUARD - 0.5:
                raise StuckAtGuard(f"{name} waited {elapsed:.1f} s")

    def note(self, what: str, value: Any) -> None:
        super().note(what, value)  # type: ignore[misc]
        self.times.append(0.0)

    def so_error(self, fd: int) -> Any:
        """SO_ERROR, as an errno name (reading it clears it, as on Linux)."""
        return self._call("getsockopt(SO_ERROR)",
                          lambda value: errno.errorcode.get(value, value) if value else 0,
                          fd, SOL_SOCKET, SO_ERROR, 0)

    def poll(self, fds: list[tuple[int, int]], timeout_ms: int = -1) -> Any:
        return self._call("poll", lambda r: [(self._fd(fd), poll_names(bits))  # type: ignore
                                             for fd, bits in r], fds, timeout_ms)

    def mask(self, fd: int, timeout_ms: int = 0) -> Any:
        """poll one descriptor for everything a stream reports."""
        return self.poll([(fd, POLL_ASKED)], timeout_ms)

    def connect_with_socket_timeout(self, address: tuple[str, int], timeout: float) -> Any:
        """What a program sees through the socket module: ``settimeout`` then connect
        (CPython's own timeout, a non-blocking connect and a poll, not SO_SNDTIMEO)."""
        def attempt() -> None:
            with self.socket_module.socket(self.family, STREAM) as sock:  # type: ignore
                sock.bind((self.client_host, 0))
                sock.settimeout(timeout)
                sock.connect(address)
        return self._call("socket.settimeout+connect", lambda result: result, attempt)


class _Calling:
    """``impl`` for ``connect_with_socket_timeout``: calls the function it is given."""

    def __init__(self, impl: Any) -> None:
        self._impl = impl

    def __getattr__(self, name: str) -> Any:
        if name.startswith("socket.settimeout"):
            return lambda function: function()
        if name.startswith("getsockopt("):
            return self._impl.getsockopt
        return getattr(self._impl, name)


class TimedKernel(Timed, KernelAPI):
    socket_module = _socket

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self.times = []
        self.impl = _Calling(self.impl)


class TimedLayer(Timed, LayerAPI):
    def __init__(self, env: Env) -> None:
        super().__init__(env)
        from posix_socket import posix
        from posix_socket import socket as layer_socket
        self.socket_module = layer_socket
        self.times = []
        self.impl = _Calling(posix)


# -- the network's conditions ----------------------------------------------------------

class Conditions:
    """What a scenario changes about the network (the hosts: CLIENT_HOST, SERVER_HOST)."""

    def sysctl(self, name: str, value: int) -> None:
        raise NotImplementedError

    def partition(self) -> None:
        """The two hosts cannot reach each other, either way; packets vanish silently."""
        raise NotImplementedError

    def heal(self) -> None:
        """Undo every partition, down link and loss."""
        raise NotImplementedError

    def link_down(self, a: str, b: str, both_ways: bool = True) -> None:
        """The path between hosts ``a`` and ``b`` (``a == b``: a host's own loopback
        path) is down, both ways or from ``a`` to ``b`` only; packets vanish silently."""
        raise NotImplementedError

    def loss(self, share: float, mtu: int = 1500) -> None:
        """Drop ``share`` of the packets between the two hosts, both ways, at random, on
        a path of ``mtu`` (one packet: one segment of at most that size)."""
        raise NotImplementedError

    def reset(self, api: Recorder, fd: int, whole_host: bool = False) -> None:
        """The connection of ``fd`` (on SERVER_HOST) is reset and ``fd`` is closed: the
        other end sees an RST.  ``whole_host``: the virtual network resets every
        connection of SERVER_HOST (``net.reset(host)``), not only those of ``fd``'s port;
        the scenarios have no other connection there, so the kernel's reference is
        the same."""
        raise NotImplementedError


class KernelConditions(Conditions):
    def __init__(self, namespace: Any) -> None:
        self.namespace = namespace

    def sysctl(self, name: str, value: int) -> None:
        self.namespace.sysctl(name, value)

    def partition(self) -> None:
        for client, server in ((CLIENT_HOST, SERVER_HOST), (CLIENT_HOST6, SERVER_HOST6)):
            self.link_down(client, server)

    def heal(self) -> None:
        self.namespace.flush()

    def link_down(self, a: str, b: str, both_ways: bool = True) -> None:
        ip = "ip6" if ":" in a else "ip"
        for source, destination in {(a, b), (b, a)} if both_ways else {(a, b)}:
            self.namespace.add(f"{ip} saddr {source} {ip} daddr {destination} drop")

    def loss(self, share: float, mtu: int = 1500) -> None:
        self.namespace.wire(mtu)
        for ip, hosts in (("ip", (CLIENT_HOST, SERVER_HOST)),
                          ("ip6", (CLIENT_HOST6, SERVER_HOST6))):
            both = "{ " + ", ".join(hosts) + " }"
            self.namespace.add(f"{ip} saddr {both} {ip} daddr {both} "
                               f"numgen random mod 100 < {round(share * 100)} drop")

    def reset(self, api: Recorder, fd: int, whole_host: bool = False) -> None:
        api.quietly("setsockopt", fd, SOL_SOCKET, _socket.SO_LINGER, struct.pack("ii", 1, 0))
        api.quietly("close", fd)
        api.open.discard(fd)


class VirtualConditions(Conditions):
    def __init__(self, network: Any) -> None:
        self.network = network
        self._links: list = []

    def sysctl(self, name: str, value: int) -> None:
        self.network.sysctl[name] = value

    def partition(self) -> None:
        self.network.partition([CLIENT_HOST], [SERVER_HOST])

    def heal(self) -> None:
        self.network.heal()
        for link in self._links:
            link.loss = 0.0
            link.down = False

    def link_down(self, a: str, b: str, both_ways: bool = True) -> None:
        self._links.append(self.network.link(a, b, down=True, both_ways=both_ways))

    def loss(self, share: float, mtu: int = 1500) -> None:
        self._links.append(self.network.link(CLIENT_HOST, SERVER_HOST, loss=share, mtu=mtu))

    def reset(self, api: Recorder, fd: int, whole_host: bool = False) -> None:
        port = None if whole_host else api.quietly("getsockname", fd)[1]
        self.network.reset(SERVER_HOST, port=port)
        api.quietly("close", fd)
        api.open.discard(fd)


# -- helpers the scenarios share -------------------------------------------------------

def guarded(api: Timed, fd: Any) -> Any:
    """Give ``fd`` receive and send timeouts longer than any timer of the scenarios."""
    value = TIMEVAL.pack(int(GUARD), 0)
    api.quietly("setsockopt", fd, SOL_SOCKET, _socket.SO_RCVTIMEO, value)
    api.quietly("setsockopt", fd, SOL_SOCKET, _socket.SO_SNDTIMEO, value)
    return fd


def listening(api: Timed) -> tuple[int, Any]:
    listener = api.socket(api.family, STREAM)
    api.bind(listener, (api.server_host, 0))
    api.listen(listener, 8)
    return listener, api.quietly("getsockname", listener)


def client(api: Timed, flags: int = 0) -> int:
    fd = guarded(api, api.socket(api.family, STREAM | flags))
    api.bind(fd, (api.client_host, 0))
    return fd


def established(api: Timed) -> tuple[int, int]:
    """A connected client (on CLIENT_HOST) and server (on SERVER_HOST) end."""
    listener, address = listening(api)
    fd = client(api)
    api.connect(fd, address)
    server, _ = api.accept(listener)
    api.close(listener)
    return fd, guarded(api, server)


def receive_all(api: Timed, fd: int, size: int, wait_ms: int = 5000) -> bytes:
    """Read ``size`` bytes however the network cuts them (quietly: reads vary)."""
    data = b""
    while len(data) < size:
        if not api.quietly("poll", [(fd, POLLIN)], wait_ms):
            break
        chunk = api.quietly("recv", fd, size - len(data), MSG_DONTWAIT)
        if not chunk:
            break
        data += chunk
    return data


def set_int(api: Timed, fd: int, level: int, name: int, value: int) -> None:
    api.setsockopt(fd, level, name, value)


# -- the scenarios ---------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Timed, Conditions], None]] = {}


def imperfect(function: Callable[[Timed, Conditions], None]) -> Callable:
    SCENARIOS[function.__name__] = function
    return function


# (a) SYN retries across a partition

@imperfect
def syn_retries_end_a_blocking_connect(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_syn_retries", 2)
    _, address = listening(api)
    net.partition()
    fd = client(api)
    api.connect(fd, address)  # SYN at 0, retries at 1 and 3, gives up at 7 s: ETIMEDOUT
    api.so_error(fd)
    api.mask(fd)
    api.send(fd, b"x")
    api.recv(fd, 10)
    net.heal()
    api.connect(fd, address)  # the same socket may try again: connects now
    api.mask(fd)


@imperfect
def syn_retries_end_a_nonblocking_connect(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_syn_retries", 2)
    _, address = listening(api)
    net.partition()
    fd = client(api, SOCK_NONBLOCK)
    api.connect(fd, address)  # EINPROGRESS
    api.mask(fd)
    api.so_error(fd)
    api.send(fd, b"x")
    api.recv(fd, 10)
    api.connect(fd, address)  # EALREADY
    api.mask(fd, GUARD_MS)  # wakes when the SYN retries run out, at 7 s
    api.so_error(fd)  # ETIMEDOUT, once
    api.so_error(fd)
    api.mask(fd)
    api.connect(fd, address)  # the error was read: what a connect reports then
    net.heal()
    api.connect(fd, address)
    api.mask(fd, 5000)
    api.so_error(fd)


@imperfect
def syn_count_of_the_socket_overrides_the_sysctl(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_syn_retries", 6)
    _, address = listening(api)
    net.partition()
    fd = client(api)
    set_int(api, fd, IPPROTO_TCP, TCP_SYNCNT, 1)
    api.getsockopt(fd, IPPROTO_TCP, TCP_SYNCNT)
    api.connect(fd, address)  # SYN at 0, one retry at 1, gives up at 3 s
    api.so_error(fd)


@imperfect
def a_down_link_ends_a_connect_like_a_partition(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_syn_retries", 1)
    _, address = listening(api)
    net.link_down(api.client_host, api.server_host)
    fd = client(api)
    api.connect(fd, address)  # SYN at 0, one retry at 1, gives up at 3 s
    net.heal()
    api.connect(fd, address)
    api.mask(fd)


@imperfect
def a_host_whose_loopback_path_is_down_cannot_reach_itself(api: Timed, net: Conditions
                                                           ) -> None:
    net.sysctl("tcp_syn_retries", 1)
    _, address = listening(api)
    net.link_down(api.server_host, api.server_host)
    fd = guarded(api, api.socket(api.family, STREAM))
    api.bind(fd, (api.server_host, 0))
    api.connect(fd, address)  # ETIMEDOUT at 3 s
    other = client(api)
    api.connect(other, address)  # another host's path is up
    api.mask(other)


@imperfect
def send_timeout_ends_a_connect_early(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_syn_retries", 1)  # the connection itself fails at 3 s
    _, address = listening(api)
    net.partition()
    fd = api.socket(api.family, STREAM)
    api.bind(fd, (api.client_host, 0))
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_SNDTIMEO, TIMEVAL.pack(1, 200000))
    api.connect(fd, address)  # SO_SNDTIMEO 1.2 s ends the wait: EINPROGRESS
    api.mask(fd)
    api.so_error(fd)
    api.connect(fd, address)  # waits another 1.2 s: EALREADY
    api.connect(fd, address)  # the SYN retries run out at 3 s while it waits
    api.mask(fd)
    api.so_error(fd)


@imperfect
def socket_timeout_ends_a_connect_early(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_syn_retries", 2)
    _, address = listening(api)
    net.partition()
    api.connect_with_socket_timeout(address, 1.5)  # TimeoutError("timed out") at 1.5 s


@imperfect
def user_timeout_ends_a_connect_early(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_syn_retries", 6)
    _, address = listening(api)
    net.partition()
    fd = client(api)
    set_int(api, fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 1500)
    api.connect(fd, address)
    api.so_error(fd)


# (b) data retries across a partition

def _data_retries(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    net.partition()
    api.send(fd, b"hello")
    api.recv(fd, 100)  # the retransmissions run out: ETIMEDOUT
    api.so_error(fd)
    api.mask(fd)
    api.send(fd, b"x")
    api.recv(fd, 100)
    api.so_error(fd)
    # the server end heard nothing of it
    api.mask(server)
    api.recv(server, 100, MSG_DONTWAIT)
    api.so_error(server)
    net.heal()
    api.send(server, b"late")  # reaches a host with no such connection: an RST back
    api.mask(server, 5000)
    api.recv(server, 100)
    api.send(server, b"x")
    api.so_error(server)
    api.mask(server)


# Linux 6.18 here: a tail-loss probe at ~0.2 s, then RTOs of 0.204 s doubling (0.41,
# 0.85, 1.68, 3.35, 6.61 s after the send); at each RTO it gives up once the time since
# the first RTO retransmission reaches (2 ** (tcp_retries2 + 1) - 1) * 200 ms: 1.4 s for
# 2 (ETIMEDOUT at 3.35 s), 3.0 s for 3 (6.6 s).  4 (6.2 s) sits within milliseconds of
# the 6.61 s firing, so it is not used.

@imperfect
def data_retries_2_end_a_connection(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_retries2", 2)
    _data_retries(api, net)


@imperfect
def data_retries_3_end_a_connection(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_retries2", 3)
    _data_retries(api, net)


@imperfect
def user_timeout_ends_a_connection(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_retries2", 15)
    fd, server = established(api)
    set_int(api, fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 1500)
    api.getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT)
    net.partition()
    api.send(fd, b"hello")
    api.poll([(fd, POLLIN | POLLRDHUP)], GUARD_MS)  # TCP_USER_TIMEOUT: 1.5 s after the send
    api.so_error(fd)
    api.recv(fd, 100)
    api.send(fd, b"x")
    api.mask(server)


@imperfect
def a_one_way_partition_times_out_both_ends(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_retries2", 2)
    fd, server = established(api)
    net.link_down(api.client_host, api.server_host, both_ways=False)
    api.send(fd, b"hello")  # lost, and so is every ACK the client sends
    api.send(server, b"pong")  # arrives
    api.recv(fd, 100)
    api.recv(fd, 100)  # the client's "hello" is never acknowledged: ETIMEDOUT
    api.recv(server, 100)  # nor the server's "pong": ETIMEDOUT too
    api.mask(fd)
    api.mask(server)


# (c) keepalive

@imperfect
def keepalive_finds_a_partitioned_peer(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
    set_int(api, fd, IPPROTO_TCP, _socket.TCP_KEEPIDLE, 1)
    set_int(api, fd, IPPROTO_TCP, _socket.TCP_KEEPINTVL, 1)
    set_int(api, fd, IPPROTO_TCP, _socket.TCP_KEEPCNT, 2)
    net.partition()
    api.recv(fd, 100)  # probes at 1 and 2 s unanswered: ETIMEDOUT at 3 s
    api.so_error(fd)
    api.mask(fd)
    api.send(fd, b"x")
    api.mask(server)


@imperfect
def keepalive_defaults_come_from_the_sysctls(api: Timed, net: Conditions) -> None:
    net.sysctl("tcp_keepalive_time", 1)
    net.sysctl("tcp_keepalive_intvl", 1)
    net.sysctl("tcp_keepalive_probes", 2)
    fd, _ = established(api)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
    api.getsockopt(fd, IPPROTO_TCP, _socket.TCP_KEEPIDLE)
    api.getsockopt(fd, IPPROTO_TCP, _socket.TCP_KEEPINTVL)
    api.getsockopt(fd, IPPROTO_TCP, _socket.TCP_KEEPCNT)
    net.partition()
    api.poll([(fd, POLLIN | POLLRDHUP)], GUARD_MS)  # ETIMEDOUT at 3 s
    api.so_error(fd)
    api.recv(fd, 100)


@imperfect
def user_timeout_cuts_keepalive_probes_short(api: Timed, net: Conditions) -> None:
    fd, _ = established(api)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
    set_int(api, fd, IPPROTO_TCP, _socket.TCP_KEEPIDLE, 1)
    set_int(api, fd, IPPROTO_TCP, _socket.TCP_KEEPINTVL, 1)
    set_int(api, fd, IPPROTO_TCP, _socket.TCP_KEEPCNT, 9)
    set_int(api, fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 2500)
    net.partition()
    api.recv(fd, 100)  # not after 9 probes (10 s): the first probe past 2.5 s idle, at 3 s
    api.so_error(fd)


@imperfect
def keepalive_keeps_a_healthy_idle_connection(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
    set_int(api, fd, IPPROTO_TCP, _socket.TCP_KEEPIDLE, 1)
    set_int(api, fd, IPPROTO_TCP, _socket.TCP_KEEPINTVL, 1)
    set_int(api, fd, IPPROTO_TCP, _socket.TCP_KEEPCNT, 2)
    api.poll([(fd, POLLIN | POLLRDHUP)], 3500)  # probes answered: nothing to report
    api.so_error(fd)
    api.send(fd, b"ping")
    api.recv(server, 100)
    api.send(server, b"pong")
    api.recv(fd, 100)


# (d) a partition that heals in time

@imperfect
def partition_healed_in_time_loses_nothing(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    payload = random.Random(4).randbytes(20000)
    net.partition()
    api.send(fd, payload)
    api.poll([(server, POLLIN)], 1000)  # nothing gets through
    net.heal()
    api.poll([(server, POLLIN)], 5000)  # the next retransmission (RTO 0.2 s doubling)
    data = receive_all(api, server, len(payload))
    api.note("received intact", (len(data), data == payload))
    api.so_error(fd)
    api.so_error(server)
    api.send(server, b"ack")
    api.recv(fd, 100)


# (e) random loss

TRANSFER = 1 << 20


@imperfect
def lossy_link_delivers_a_megabyte_intact(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    payload = random.Random(5).randbytes(TRANSFER)
    net.loss(0.07)
    started = time.monotonic()
    sent, received = 0, []
    while True:
        wanted = [(server, POLLIN)] + ([(fd, POLLOUT)] if sent < len(payload) else [])
        ready = dict(api.quietly("poll", wanted, GUARD_MS))
        if not ready:
            break
        if ready.get(fd, 0) & POLLOUT:
            sent += api.quietly("send", fd, payload[sent:sent + 65536], MSG_DONTWAIT)
            if sent == len(payload):
                api.quietly("shutdown", fd, _socket.SHUT_WR)
        if ready.get(server, 0) & POLLIN:
            chunk = api.quietly("recv", server, 65536, MSG_DONTWAIT)
            if not chunk:
                break
            received.append(chunk)
    data = b"".join(received)
    api.note("transfer seconds", "compared roughly")
    api.extra["transfer_seconds"] = round(time.monotonic() - started, 3)
    api.note("received", (len(data), hashlib.sha256(data).hexdigest()[:16]))
    api.note("intact, in order", data == payload)
    net.heal()
    api.so_error(fd)
    api.so_error(server)


# (f) UDP

@imperfect
def datagrams_vanish_across_a_partition_without_error(api: Timed, net: Conditions) -> None:
    sender = guarded(api, api.socket(api.family, DGRAM))
    api.bind(sender, (api.client_host, 0))
    receiver = guarded(api, api.socket(api.family, DGRAM))
    api.bind(receiver, (api.server_host, 0))
    api.connect(sender, api.quietly("getsockname", receiver))
    net.partition()
    api.send(sender, b"one")
    api.send(sender, b"two")
    api.poll([(receiver, POLLIN)], 500)
    api.recv(receiver, 100, MSG_DONTWAIT)
    api.so_error(sender)
    api.mask(sender)
    net.heal()
    api.send(sender, b"three")
    api.poll([(receiver, POLLIN)], 5000)
    api.recv(receiver, 100)
    api.recv(receiver, 100, MSG_DONTWAIT)


@imperfect
def no_port_unreachable_comes_back_across_a_partition(api: Timed, net: Conditions) -> None:
    closed = api.socket(api.family, DGRAM)
    api.bind(closed, (api.server_host, 0))
    address = api.quietly("getsockname", closed)
    api.close(closed)  # nobody has that port now
    sender = guarded(api, api.socket(api.family, DGRAM))
    api.bind(sender, (api.client_host, 0))
    api.connect(sender, address)
    net.partition()
    api.send(sender, b"lost")
    api.poll([(sender, POLLIN)], 300)
    api.send(sender, b"lost too")
    api.so_error(sender)
    net.heal()
    api.send(sender, b"refused")
    api.poll([(sender, POLLIN)], 2000)  # the port unreachable comes back now
    api.recv(sender, 100, MSG_DONTWAIT)
    api.send(sender, b"again")


@imperfect
def lossy_link_drops_a_share_of_datagrams_silently(api: Timed, net: Conditions) -> None:
    sender = guarded(api, api.socket(api.family, DGRAM))
    api.bind(sender, (api.client_host, 0))
    receiver = guarded(api, api.socket(api.family, DGRAM))
    api.bind(receiver, (api.server_host, 0))
    api.setsockopt(receiver, SOL_SOCKET, _socket.SO_RCVBUF, 1 << 20)
    api.connect(sender, api.quietly("getsockname", receiver))
    net.loss(0.3)
    sent = [api.quietly("send", sender, b"%03d" % index) for index in range(200)]
    api.note("every send returned its length", sent == [3] * 200)
    api.so_error(sender)
    arrived = []
    while api.quietly("poll", [(receiver, POLLIN)], 300):
        arrived.append(int(api.quietly("recv", receiver, 100)))
    # 200 datagrams, 30 % lost: 140 arrive on average, sd 6.5; 100-180 is 6 sd each way
    api.note("arrived, 100-180 of 200", 100 <= len(arrived) <= 180)
    api.note("none twice, none invented", len(set(arrived)) == len(arrived) and
             set(arrived) <= set(range(200)))


# (g) resets

@imperfect
def reset_gives_econnreset_then_epipe(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    net.reset(api, server)
    api.mask(fd, 2000)
    api.recv(fd, 100)
    api.recv(fd, 100)
    api.send(fd, b"x")
    api.so_error(fd)
    api.mask(fd)
    api.getpeername(fd)


@imperfect
def reset_with_data_unread(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    api.send(server, b"hello")
    api.poll([(fd, POLLIN)], 2000)
    net.reset(api, server)
    api.mask(fd, 2000)
    api.so_error(fd)
    api.recv(fd, 100)
    api.recv(fd, 100)
    api.send(fd, b"x")
    api.send(fd, b"x")


def _reset_later(api: Timed, net: Conditions, fd: int, delay: float,
                 whole_host: bool = False) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay),
                                              net.reset(api, fd, whole_host)))
    thread.start()
    return thread


@imperfect
def reset_wakes_a_blocked_reader(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    api.send(fd, b"request")
    api.recv(server, 100)
    resetting = _reset_later(api, net, server, 0.5)
    api.recv(fd, 100)  # blocked until the RST, 0.5 s later
    resetting.join()
    api.mask(fd)
    api.recv(fd, 100)


@imperfect
def reset_wakes_a_blocked_poller(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    resetting = _reset_later(api, net, server, 0.5, whole_host=True)
    api.poll([(fd, POLLIN)], 5000)
    resetting.join()
    api.so_error(fd)
    api.so_error(fd)
    api.recv(fd, 100)


@imperfect
def reset_wakes_a_blocked_sender(api: Timed, net: Conditions) -> None:
    fd, server = established(api)
    resetting = _reset_later(api, net, server, 0.5)
    # more than both buffers hold: blocks until the RST, then returns what it copied
    api._call("send", lambda sent: "some bytes" if sent > 0 else sent,
              fd, bytes(32 << 20), 0)
    resetting.join()
    api.send(fd, b"x")
    api.mask(fd)
    api.so_error(fd)
    api.recv(fd, 100)


# -- the same over IPv6 ------------------------------------------------------------------

def _over_ipv6(function: Callable[[Timed, Conditions], None]) -> None:
    def over_ipv6(api: Timed, net: Conditions) -> None:
        api.over_ipv6()
        function(api, net)
    SCENARIOS[function.__name__ + OVER_IPV6] = over_ipv6


for _scenario in (syn_count_of_the_socket_overrides_the_sysctl,
                  data_retries_2_end_a_connection, user_timeout_ends_a_connection,
                  keepalive_finds_a_partitioned_peer, partition_healed_in_time_loses_nothing,
                  datagrams_vanish_across_a_partition_without_error,
                  no_port_unreachable_comes_back_across_a_partition,
                  reset_gives_econnreset_then_epipe):
    _over_ipv6(_scenario)


# -- running one ------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _run(name: str, api: Timed, net: Conditions) -> dict:
    api.extra = {}
    started = time.monotonic()
    try:
        SCENARIOS[name](api, net)
    except Exception as exc:
        api.log.append(("scenario raised", f"{type(exc).__name__}: {exc}"))
        api.times.append(0.0)
    finally:
        api.close_all()
    result = {"log": _jsonable(api.log), "times": api.times,
              "seconds": round(time.monotonic() - started, 3), **api.extra}
    json.dumps(result)
    return result


def _env() -> Env:
    return Env(AF_INET, STREAM, lambda: (CLIENT_HOST, 0))


def on_kernel(namespace: Any, name: str) -> dict:
    """Run scenario ``name`` on the kernel (called by kernel_netns in a namespace)."""
    _socket.socket(AF_INET, STREAM).close()  # as on_virtual does
    return _run(name, TimedKernel(_env()), KernelConditions(namespace))


def on_virtual(_: Any, name: str, seed: int = 1) -> dict:
    """Run scenario ``name`` on a fresh virtual network (in a plain child process)."""
    import posix_socket as ps
    with ps.use("virtual", seed=seed) as preset:
        network = preset.network
        for host in zip(HOSTS[:2], HOSTS[2:], strict=True):
            network.add_host(*host)
        from posix_socket import posix
        posix.close(posix.socket(AF_INET, STREAM))  # first-use work out of the timings
        return _run(name, TimedLayer(_env()), VirtualConditions(network))
