"""UDP over imperfect paths: hosts' source addresses, latency, jitter, loss,
duplication, reordering, bandwidth and its queue, partitions, MTU and fragments.

What is compared with is Linux with netem on the path (its documented behaviour: see
``udp_path``).  Times are measured on the real clock with a stated tolerance: a
datagram never arrives early, and at most ``LATE`` seconds late (the scheduler's
thread and the GIL on a loaded two-core machine).  Counting tests run with a seed, so
their numbers are fixed; their bounds are still the statistical ones (five standard
deviations), so that any seed would pass.  Tests that count queued packets stop the
network's clock (``FrozenClock``) so that nothing leaves the queue while they send.
"""

from __future__ import annotations

import asyncio
import errno
import math
import select
import socket
import threading
import time

import pytest

import posix_socket as ps
from posix_socket.drivers.inet import udp_path
from posix_socket.patching import patch

LATE = 0.1  # how late a datagram may arrive here (scheduling on a busy shared machine)
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
MSG_MORE = getattr(socket, "MSG_MORE", 0x8000)


class FrozenClock:
    """A network clock that stands still until the test moves it."""

    name = "frozen"

    def __init__(self) -> None:
        self.time = 1000.0

    def now(self) -> float:
        return self.time

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(0.002)  # look at the time again soon: the test may move it


def settle(net, deadline: float = 5.0) -> None:
    """Wait until the network's scheduler has run every event that is due."""
    scheduler = net.scheduler

    def due() -> bool:
        when = scheduler.next_time()
        return when is not None and when <= scheduler.now()

    end = time.monotonic() + deadline
    while due() and time.monotonic() < end:
        time.sleep(0.002)
    assert not due()  # popped and run under the lock: their datagrams are queued


@pytest.fixture
def net():
    with ps.use("virtual", seed=7) as preset, patch():
        network = preset.network
        network.add_host("10.0.0.2", "fd00::2", names=["db.test"])
        network.add_host("10.0.0.3", "fd00::3", names=["app.test"])
        yield network


def udp(net, host: str | None = None, bind=None, family=socket.AF_INET) -> socket.socket:
    """A UDP socket made on ``host`` (the first host when None), bound to ``bind``."""
    if host is None:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    else:
        with net.host(host):
            sock = socket.socket(family, socket.SOCK_DGRAM)
    if bind is not None:
        sock.bind(bind)
    return sock


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram queued now, without waiting."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    got = []
    try:
        while True:
            got.append(sock.recv(65536))
    except BlockingIOError:
        return got
    finally:
        sock.settimeout(timeout)


def numbered(count: int, size: int = 8) -> list[bytes]:
    return [index.to_bytes(4, "big") + bytes(size - 4) for index in range(count)]


def indices(datagrams: list[bytes]) -> list[int]:
    return [int.from_bytes(datagram[:4], "big") for datagram in datagrams]


def within(value: float, expected: float, sigma: float) -> bool:
    return abs(value - expected) <= 5 * sigma


# -- hosts and source addresses ----------------------------------------------------------


@pytest.mark.parametrize(("family", "db", "app"), [(socket.AF_INET, "10.0.0.2", "10.0.0.3"),
                                                    (socket.AF_INET6, "fd00::2", "fd00::3")])
def test_an_unbound_socket_on_another_host_speaks_from_that_hosts_address(
        net, family, db, app):
    receiver = udp(net, bind=(db, 9000), family=family)
    sender = udp(net, "app.test", family=family)
    sender.sendto(b"hello", (db, 9000))
    data, source = receiver.recvfrom(100)
    assert data == b"hello" and source[0] == app
    assert source[1] == sender.getsockname()[1]
    assert sender.getsockname()[0] in ("0.0.0.0", "::")  # sendto leaves it unbound
    sender.connect((db, 9000))
    assert sender.getsockname()[0] == app  # connect fixes the route's source
    sender.send(b"again")
    assert receiver.recvfrom(100) == (b"again", source)
    receiver.sendto(b"back", source)
    assert sender.recvfrom(100) == (b"back", receiver.getsockname())


def test_a_socket_bound_to_a_hosts_address_lives_there_and_speaks_from_it(net):
    receiver = udp(net, bind=("127.0.0.1", 0))
    sender = udp(net, bind=("10.0.0.2", 0))  # made on the first host, bound on db.test
    net.link("db.test", "localhost", loss=1.0)
    sender.sendto(b"lost", receiver.getsockname())
    assert drain(receiver) == []  # db.test's path to the first host is the lossy one
    net.link("db.test", "localhost")
    sender.sendto(b"kept", receiver.getsockname())
    assert receiver.recvfrom(100) == (b"kept", sender.getsockname())


def test_a_host_without_an_address_of_the_family_gets_enetunreach(net):
    net.add_host("10.0.0.4", names=["v4only.test"])
    net.add_host("fd00::5", names=["v6only.test"])
    v6 = udp(net, "v4only.test", family=socket.AF_INET6)
    for call in (lambda: v6.sendto(b"x", ("fd00::5", 9)), lambda: v6.connect(("fd00::5", 9))):
        with pytest.raises(OSError) as raised:
            call()
        assert raised.value.errno == errno.ENETUNREACH
    v4 = udp(net, "v6only.test")
    with pytest.raises(OSError) as raised:
        v4.sendto(b"x", ("10.0.0.4", 9))
    assert raised.value.errno == errno.ENETUNREACH


def test_the_first_hosts_loopback_traffic_keeps_its_sources(net):
    receiver = udp(net, bind=("127.0.0.1", 0))
    sender = udp(net)
    sender.sendto(b"x", receiver.getsockname())
    assert receiver.recvfrom(10)[1][0] == "127.0.0.1"
    six = udp(net, bind=("::1", 0), family=socket.AF_INET6)
    sender6 = udp(net, family=socket.AF_INET6)
    sender6.sendto(b"x", six.getsockname()[:2])
    assert six.recvfrom(10)[1][0] == "::1"


def test_a_broadcast_from_another_host_comes_from_its_address_over_its_link(net):
    receiver = udp(net, bind=("0.0.0.0", 9100))
    sender = udp(net, "app.test")
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    net.link("app.test", "localhost", latency=0.03)
    start = time.monotonic()
    sender.sendto(b"all", ("255.255.255.255", 9100))
    assert drain(receiver) == []
    receiver.settimeout(2)
    data, source = receiver.recvfrom(10)
    elapsed = time.monotonic() - start
    assert data == b"all" and source[0] == "10.0.0.3"
    assert 0.03 <= elapsed < 0.03 + LATE


# -- latency, jitter and the waits that wake for them --------------------------------------


def test_latency_delays_each_datagram_and_a_round_trip_takes_twice_it(net):
    server = udp(net, bind=("10.0.0.2", 9000))
    client = udp(net, "app.test")
    net.link("app.test", "db.test", latency=0.03)
    client.settimeout(2)
    server.settimeout(2)
    start = time.monotonic()
    client.sendto(b"ping", ("10.0.0.2", 9000))
    data, source = server.recvfrom(10)  # a blocking receive wakes at the arrival
    one_way = time.monotonic() - start
    assert data == b"ping" and source[0] == "10.0.0.3"
    server.sendto(b"pong", source)
    assert client.recvfrom(10)[0] == b"pong"
    round_trip = time.monotonic() - start
    assert 0.03 <= one_way < 0.03 + LATE
    assert 0.06 <= round_trip < 0.06 + LATE


def test_select_and_poll_wake_when_a_delayed_datagram_arrives(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", latency=0.03)
    for wait in (lambda: select.select([receiver], [], [], 2)[0], lambda: _poll(receiver),
                 lambda: _epoll(receiver)):
        start = time.monotonic()
        sender.sendto(b"x", ("10.0.0.2", 9000))
        assert wait()
        assert 0.03 <= time.monotonic() - start < 0.03 + LATE
        assert receiver.recv(10) == b"x"


def _poll(sock: socket.socket) -> list:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return poller.poll(2000)


def _epoll(sock: socket.socket) -> list:
    with select.epoll() as poller:
        poller.register(sock, select.EPOLLIN)
        return poller.poll(2)


def test_asyncio_datagram_endpoints_receive_at_the_arrival(net):
    net.link("localhost", "db.test", latency=0.03)

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self, done):
            self.done = done

        def datagram_received(self, data, addr):
            self.done.set_result((data, addr))

    async def main():
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("10.0.0.2", 9200))
        done = loop.create_future()
        client, _ = await loop.create_datagram_endpoint(lambda: Client(done),
                                                        remote_addr=("10.0.0.2", 9200))
        start = time.monotonic()
        client.sendto(b"hi")
        result = await asyncio.wait_for(done, 5)
        elapsed = time.monotonic() - start
        client.close()
        server.close()
        return result, elapsed

    (data, addr), elapsed = asyncio.run(main())
    assert data == b"hi" and addr == ("10.0.0.2", 9200)
    assert 0.06 <= elapsed < 0.06 + LATE


def test_jitter_spreads_the_delays_within_its_bounds_and_reorders(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", latency=0.03, jitter=0.02)
    receiver.settimeout(2)
    sent = numbered(40)
    start = time.monotonic()
    for datagram in sent:
        sender.sendto(datagram, ("10.0.0.2", 9000))
    last_sent = time.monotonic()
    got, first = [], None
    while len(got) < len(sent):
        got.append(receiver.recv(100))
        first = first or time.monotonic()
    end = time.monotonic()
    assert sorted(indices(got)) == list(range(40))  # each once
    assert indices(got) != list(range(40))  # netem's jitter reorders
    assert first - start >= 0.01  # never before latency - jitter
    assert end - last_sent < 0.05 + LATE  # all by latency + jitter


# -- loss, duplication, reordering, seeds ------------------------------------------------


def test_loss_drops_a_share_within_statistical_bounds_and_the_sender_sees_nothing(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sender = udp(net, "app.test")
    sender.connect(("10.0.0.2", 9000))
    net.link("app.test", "db.test", loss=0.2)
    count, got = 2000, 0
    for index in range(count):
        assert sender.send(b"%d" % index) == len(b"%d" % index)
        got += len(drain(receiver))
    assert within(got, count * 0.8, math.sqrt(count * 0.2 * 0.8))
    assert got < count
    assert sender.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert net.link_drops == 0  # loss is not a queue drop


def received_with_seed(seed: int, **conditions) -> list[int]:
    with ps.use("virtual", seed=seed) as preset, patch():
        network = preset.network
        network.add_host("10.0.0.2", names=["db.test"])
        receiver = udp(network, bind=("10.0.0.2", 9000))
        sender = udp(network)
        network.link("localhost", "db.test", **conditions)
        got = []
        for datagram in numbered(200):
            sender.sendto(datagram, ("10.0.0.2", 9000))
            got += drain(receiver)
        receiver.close()
        sender.close()
        return indices(got)


def test_the_same_seed_drops_the_same_datagrams_and_another_seed_others():
    first = received_with_seed(11, loss=0.3, duplicate=0.2)
    assert first == received_with_seed(11, loss=0.3, duplicate=0.2)
    assert first != received_with_seed(12, loss=0.3, duplicate=0.2)
    assert len(set(first)) < 200 and len(first) > len(set(first))  # lost some, doubled some


def test_duplicate_delivers_a_second_copy(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", duplicate=0.25)
    count, got = 1000, []
    for datagram in numbered(count):
        sender.sendto(datagram, ("10.0.0.2", 9000))
        got += indices(drain(receiver))
    assert set(got) == set(range(count))  # nothing lost
    assert max(got.count(index) for index in set(got)) == 2  # a copy, never more
    assert within(len(got) - count, count * 0.25, math.sqrt(count * 0.25 * 0.75))


def test_duplicates_and_losses_follow_netems_order(net):
    """netem: a duplicate draw, then one loss draw; a duplicated datagram that meets
    the loss still arrives once; its clone meets loss on its own.  So the share that
    arrives is (1 - loss) + duplicate * loss + duplicate * (1 - loss) ** 2."""
    receiver = udp(net, bind=("10.0.0.2", 9000))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", duplicate=0.5, loss=0.5)
    count, got = 2000, 0
    for datagram in numbered(count):
        sender.sendto(datagram, ("10.0.0.2", 9000))
        got += len(drain(receiver))
    mean = 0.5 + 0.5 * 0.5 + 0.5 * 0.25  # 0.875 copies per datagram sent
    assert abs(got / count - mean) < 0.05


def test_reorder_lets_a_share_of_datagrams_skip_the_latency(net):
    clock = net.scheduler.clock = FrozenClock()  # the latency does not pass meanwhile
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", latency=0.05, reorder=0.3)
    count = 100
    for datagram in numbered(count):
        sender.sendto(datagram, ("10.0.0.2", 9000))
    early = indices(drain(receiver))  # those that skipped the latency are here at once
    assert net.scheduler.pending() == count - len(early)
    clock.time += 0.05
    settle(net)
    late = indices(drain(receiver))
    assert early == sorted(early) and late == sorted(late)
    assert sorted(early + late) == list(range(count))
    assert within(len(early), count * 0.3, math.sqrt(count * 0.3 * 0.7))
    assert drain(receiver) == []


# -- bandwidth and the link queue --------------------------------------------------------


def test_bandwidth_paces_datagrams(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", bandwidth=200_000)  # bytes per second
    receiver.settimeout(2)
    payload = bytes(1000 - 28)  # 1000 bytes on the wire with the IPv4 and UDP headers
    start = time.monotonic()
    for _ in range(20):
        sender.sendto(payload, ("10.0.0.2", 9000))
    receiver.recv(2000)
    first = time.monotonic() - start
    for _ in range(19):
        receiver.recv(2000)
    last = time.monotonic() - start
    assert 0.005 <= first < 0.005 + LATE  # one packet's time on the wire
    assert 0.1 <= last < 0.1 + LATE  # 20 000 bytes at 200 000 bytes/s


def test_behind_a_bandwidth_jitter_keeps_the_order_as_netems_rate(net):
    clock = net.scheduler.clock = FrozenClock()
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", latency=0.03, jitter=0.02, bandwidth=1_000_000)
    for datagram in numbered(50, 100):
        sender.sendto(datagram, ("10.0.0.2", 9000))
    got = []
    for _ in range(60):  # 5 ms of 50 * 128 bytes at 1 MB/s plus up to 50 ms of latency
        clock.time += 0.001
        settle(net)
        got += indices(drain(receiver))
    assert got == list(range(50))


def test_a_full_link_queue_drops_and_counts(net):
    clock = net.scheduler.clock = FrozenClock()
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    link = net.link("app.test", "db.test", bandwidth=1000)
    for _ in range(udp_path.QUEUE_LIMIT + 50):
        assert sender.sendto(b"x" * 10, ("10.0.0.2", 9000)) == 10  # no error either
    with net.lock:
        path = net.path(net.find_host("app.test"), net.find_host("db.test"))
    assert net.link_drops == 50 and path.drops == 50 and link.drops == 50
    assert drain(receiver) == []
    clock.time += 38 / 1000  # one packet of 38 bytes has left, so one more fits
    settle(net)
    assert drain(receiver) == [b"x" * 10]
    sender.sendto(b"y", ("10.0.0.2", 9000))
    assert net.link_drops == 50
    sender.sendto(b"z", ("10.0.0.2", 9000))
    assert net.link_drops == 51
    clock.time += 100  # everything has left: the queue is empty again
    settle(net)
    assert len(drain(receiver)) + net.udp_drops == udp_path.QUEUE_LIMIT


# -- partitions, links changing, refusals ------------------------------------------------


def test_a_partition_drops_silently_and_heal_restores(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    sender.connect(("10.0.0.2", 9000))
    net.partition(["db.test"])
    assert sender.send(b"lost") == 4
    receiver.settimeout(0.05)
    with pytest.raises(TimeoutError):
        receiver.recv(10)
    assert sender.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    receiver.close()  # nobody there, yet no refusal comes through the partition
    sender.send(b"lost too")
    assert sender.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    receiver = udp(net, bind=("10.0.0.2", 9000))
    net.heal()
    sender.send(b"through")
    assert receiver.recv(10) == b"through"
    net.link("app.test", "db.test", down=True)
    sender.send(b"down")
    assert drain(receiver) == []


def test_a_partition_also_swallows_the_datagrams_in_flight(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", latency=0.03)
    sender.sendto(b"cut", ("10.0.0.2", 9000))  # on the wire for 30 ms
    net.partition(["db.test"])
    time.sleep(0.03 + LATE)
    assert drain(receiver) == []
    net.heal()
    sender.sendto(b"whole", ("10.0.0.2", 9000))
    receiver.settimeout(2)
    assert receiver.recv(10) == b"whole"


def test_changing_a_link_takes_effect_for_later_datagrams(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    link = net.link("app.test", "db.test")
    where = ("10.0.0.2", 9000)
    sender.sendto(b"1", where)
    assert drain(receiver) == [b"1"]
    link.loss = 1.0
    sender.sendto(b"2", where)
    assert drain(receiver) == []
    link.update(loss=0.0, latency=0.05)
    sender.sendto(b"3", where)  # in flight with 50 ms to go
    link.latency = 0.0
    sender.sendto(b"4", where)  # overtakes it
    assert drain(receiver) == [b"4"]
    receiver.settimeout(2)
    assert receiver.recv(10) == b"3"


def test_a_receiver_closed_before_arrival_refuses_the_connected_sender(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    sender.connect(("10.0.0.2", 9000))
    net.link("app.test", "db.test", latency=0.03)
    start = time.monotonic()
    sender.send(b"x")
    receiver.close()  # the datagram finds nobody: ICMP port unreachable comes back
    assert sender.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    sender.settimeout(2)
    with pytest.raises(ConnectionRefusedError):
        sender.recv(10)  # the blocking receive wakes for the error
    assert 0.06 <= time.monotonic() - start < 0.06 + LATE


def test_default_conditions_apply_to_the_first_hosts_loopback(net):
    receiver = udp(net, bind=("127.0.0.1", 0))
    sender = udp(net)
    net.conditions(latency=0.03)
    start = time.monotonic()
    sender.sendto(b"x", receiver.getsockname())
    assert drain(receiver) == []
    receiver.settimeout(2)
    assert receiver.recv(10) == b"x"
    assert 0.03 <= time.monotonic() - start < 0.03 + LATE
    net.conditions()
    sender.sendto(b"y", receiver.getsockname())
    assert drain(receiver) == [b"y"]


# -- MTU and fragments ---------------------------------------------------------------------


def test_packet_sizes_are_linuxs_fragments():
    assert udp_path.packet_sizes(1472, False, 1500) == [1500]
    assert udp_path.packet_sizes(1473, False, 1500) == [1500, 21]
    assert udp_path.packet_sizes(8000, False, 1500) == [1500] * 5 + [628]
    assert udp_path.packet_sizes(1452, True, 1500) == [1500]
    assert udp_path.packet_sizes(8000, True, 1500) == [1496] * 5 + [816]
    assert udp_path.packet_sizes(8000, False, None) == [8028]
    # A path without an MTU of its own has lo's 65536: only IPv6's largest datagrams
    # need two fragments there (as ``truesize`` knows).
    assert udp_path.packet_sizes(65507, False, 65536) == [65535]
    assert udp_path.packet_sizes(65488, True, 65536) == [65536]
    assert udp_path.packet_sizes(65489, True, 65536) == [65536, 57]


def test_a_datagram_past_the_mtu_travels_as_fragments_each_meeting_loss(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", mtu=1500, loss=0.1)
    count = 1000
    small = large = 0
    for _ in range(count):
        sender.sendto(b"s" * 100, ("10.0.0.2", 9000))
        sender.sendto(b"L" * 8000, ("10.0.0.2", 9000))  # 6 fragments
        for datagram in drain(receiver):
            if len(datagram) == 100:
                small += 1
            else:
                assert datagram == b"L" * 8000  # reassembled whole
                large += 1
    assert within(small, count * 0.9, math.sqrt(count * 0.9 * 0.1))
    survives = 0.9 ** 6
    assert within(large, count * survives, math.sqrt(count * survives * (1 - survives)))


@pytest.mark.parametrize(("family", "where", "level", "option", "fits"), [
    (socket.AF_INET, "10.0.0.2", socket.IPPROTO_IP, IP_MTU_DISCOVER, 1500 - 28),
    (socket.AF_INET6, "fd00::2", socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, 1500 - 48)])
def test_pmtudisc_do_makes_a_send_past_the_mtu_emsgsize(net, family, where, level, option,
                                                         fits):
    receiver = udp(net, bind=(where, 9000), family=family)
    sender = udp(net, "app.test", family=family)
    net.link("app.test", "db.test", mtu=1500)
    assert sender.getsockopt(level, option) == 1  # IP_PMTUDISC_WANT: fragments
    assert sender.sendto(bytes(fits + 1), (where, 9000)) == fits + 1
    assert receiver.recv(65536) == bytes(fits + 1)
    sender.setsockopt(level, option, IP_PMTUDISC_DO)
    assert sender.sendto(bytes(fits), (where, 9000)) == fits
    with pytest.raises(OSError) as raised:
        sender.sendto(bytes(fits + 1), (where, 9000))
    assert raised.value.errno == errno.EMSGSIZE
    sender.sendto(bytes(1000), MSG_MORE, (where, 9000))  # a corked datagram grows past it
    with pytest.raises(OSError) as raised:
        sender.sendto(bytes(fits - 999), (where, 9000))
    assert raised.value.errno == errno.EMSGSIZE
    assert drain(receiver) == [bytes(fits)]  # the corked one was thrown away
    for bad in (-1, 6):
        with pytest.raises(OSError) as raised:
            sender.setsockopt(level, option, bad)
        assert raised.value.errno == errno.EINVAL


def test_ipv6_over_a_path_below_its_minimum_mtu_fails_as_linux_without_ipv6(net):
    """Linux takes IPv6 off a device whose MTU drops below 1280 (measured on lo at
    MTU 1000 in a namespace): unbound, no source address (EADDRNOTAVAIL); bound to an
    address, no route (ENETUNREACH); for sends and connects alike."""
    udp(net, bind=("fd00::2", 9000), family=socket.AF_INET6)
    sender = udp(net, "app.test", family=socket.AF_INET6)
    bound = udp(net, bind=("fd00::3", 0), family=socket.AF_INET6)
    net.link("app.test", "db.test", mtu=1000)
    for sock, code in ((sender, errno.EADDRNOTAVAIL), (bound, errno.ENETUNREACH)):
        for call, args in ((sock.sendto, (b"x", ("fd00::2", 9000))),
                           (sock.connect, (("fd00::2", 9000),))):
            with pytest.raises(OSError) as raised:
                call(*args)
            assert raised.value.errno == code
    four = udp(net, "app.test")
    four.sendto(b"x", ("10.0.0.2", 9000))  # IPv4 is fine down to 68 bytes


def test_ip_mtu_reads_the_connected_routes_mtu(net):
    """Linux: ENOTCONN before connect; lo's 65536 (65535 through IPv4: IP_MAX_MTU);
    the path's MTU once it has one; a short buffer gets the int's first bytes."""
    ip_mtu, ipv6_mtu = getattr(socket, "IP_MTU", 14), getattr(socket, "IPV6_MTU", 24)
    four = udp(net, "app.test")
    with pytest.raises(OSError) as raised:
        four.getsockopt(socket.IPPROTO_IP, ip_mtu)
    assert raised.value.errno == errno.ENOTCONN
    four.connect(("10.0.0.2", 9))
    assert four.getsockopt(socket.IPPROTO_IP, ip_mtu) == 65535
    assert four.getsockopt(socket.IPPROTO_IP, ip_mtu, 2) == b"\xff\xff"
    six = udp(net, "app.test", family=socket.AF_INET6)
    six.connect(("fd00::2", 9))
    assert six.getsockopt(socket.IPPROTO_IPV6, ipv6_mtu) == 65536
    assert six.getsockopt(socket.IPPROTO_IP, ip_mtu) == 65536
    net.link("app.test", "db.test", mtu=1400)
    assert four.getsockopt(socket.IPPROTO_IP, ip_mtu) == 1400
    assert six.getsockopt(socket.IPPROTO_IPV6, ipv6_mtu) == 1400
    with pytest.raises(OSError) as raised:
        four.getsockopt(socket.IPPROTO_IPV6, ipv6_mtu)
    assert raised.value.errno == errno.EOPNOTSUPP


def test_a_group_copy_to_another_host_meets_that_hosts_path(net):
    group = "239.1.2.3"
    # The network's hosts share one port table: two wildcard binds need SO_REUSEADDR.
    member, here = udp(net, "db.test"), udp(net)  # here: the first host, takes it too
    for sock in (member, here):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 9300))
    member.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton(group) + socket.inet_aton("0.0.0.0"))
    sender = udp(net)
    net.link("localhost", "db.test", latency=0.03)
    start = time.monotonic()
    sender.sendto(b"news", (group, 9300))
    assert drain(here) == [b"news"]  # the first host's own copy: a perfect path
    assert drain(member) == []
    member.settimeout(2)
    assert member.recvfrom(10) == (b"news", ("127.0.0.1", sender.getsockname()[1]))
    assert 0.03 <= time.monotonic() - start < 0.03 + LATE
    net.partition(["db.test"])
    sender.sendto(b"cut", (group, 9300))
    time.sleep(0.05)
    assert drain(here) == [b"cut"] and drain(member) == []


def test_a_blocking_receive_without_a_timeout_wakes_at_the_arrival(net):
    receiver = udp(net, bind=("10.0.0.2", 9000))
    sender = udp(net, "app.test")
    net.link("app.test", "db.test", latency=0.03)
    rescue = threading.Timer(5, lambda: udp(net, "db.test").sendto(b"rescue", ("10.0.0.2", 9000)))
    rescue.start()  # should the wake-up never come, unblock the receive anyway
    try:
        start = time.monotonic()
        sender.sendto(b"late", ("10.0.0.2", 9000))
        assert receiver.gettimeout() is None
        assert receiver.recv(10) == b"late"
        assert 0.03 <= time.monotonic() - start < 0.03 + LATE
    finally:
        rescue.cancel()


def test_senders_in_many_threads_over_a_lossy_slow_link(net):
    """The scheduler's thread delivers while four threads send: every datagram
    arrives at most once per copy sent, the counts add up, nothing is left behind."""
    receiver = udp(net, bind=("10.0.0.2", 9000))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    net.link("app.test", "db.test", latency=0.005, jitter=0.004, loss=0.1)
    senders = [udp(net, "app.test") for _ in range(4)]

    def send(sock, first):
        for index in range(first, first + 200):
            sock.sendto(index.to_bytes(4, "big"), ("10.0.0.2", 9000))

    threads = [threading.Thread(target=send, args=(sock, number * 200))
               for number, sock in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.01 + LATE)
    settle(net)
    got = indices(drain(receiver))
    assert len(got) == len(set(got)) and set(got) <= set(range(800))
    assert within(len(got), 800 * 0.9, math.sqrt(800 * 0.9 * 0.1))
    assert net.scheduler.pending() == 0
