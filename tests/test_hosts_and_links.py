"""Hosts, links, conditions and partitions: the network's configuration API.

What conditions do to traffic is pinned down by the TCP and UDP tests; here: where
sockets live, what each call accepts and refuses (nothing half-applied), and how a path
sees the configuration change under it.
"""

from __future__ import annotations

import math
import socket
import threading
import time

import pytest

import posix_socket as ps
from posix_socket import posix


@pytest.fixture
def net():
    with ps.use("virtual", seed=7) as preset:
        yield preset.network


def test_use_virtual_gives_its_network_and_ps_network_finds_it():
    with ps.use("virtual") as preset:
        assert ps.network() is preset.network
        assert preset.network is preset.drivers[socket.AF_INET].network
    with ps.use("host") as preset:
        assert preset.network is None
        with pytest.raises(LookupError):
            ps.network()


def test_use_rejects_unknown_options_and_clocks():
    with pytest.raises(TypeError, match="no option 'seed'"):
        ps.use("host", seed=1)
    with pytest.raises(ValueError, match="'real'"):
        ps.use("virtual", clock="bogus")
    with pytest.raises(TypeError):
        ps.use("virtual", seed="one")


def test_the_seed_fixes_the_ephemeral_ports():
    def ports(seed):
        with ps.use("virtual", seed=seed):
            fds = [posix.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
            for fd in fds:
                posix.bind(fd, ("127.0.0.1", 0))
            found = [posix.getsockname(fd)[1] for fd in fds]
            for fd in fds:
                posix.close(fd)
            return found
    assert ports(1) == ports(1)
    assert ports(1) != ports(2)


def test_add_host_returns_the_host_and_names_find_it(net):
    host = net.add_host("10.0.0.2", "fd00::2", names=["db.test"])
    assert host.addresses == ("10.0.0.2", "fd00::2")
    assert host.names == ["db.test"]
    assert net.find_host("db.test") is host
    assert net.find_host("DB.TEST.") is host
    assert net.find_host("fd00::2") is host
    assert net.find_host("localhost") is net.first_host
    assert net.find_host("127.0.0.9") is net.first_host
    with pytest.raises(LookupError):
        net.find_host("nowhere.test")
    with pytest.raises(LookupError):
        net.find_host("10.9.9.9")


@pytest.mark.parametrize("addresses", [("10.0.0.2", "10.0.0.2"), ("127.0.0.2",), ("0.0.0.0",),
                                       ("224.0.0.1",), ("not an address",), ()])
def test_add_host_refuses_addresses_a_host_cannot_have(net, addresses):
    with pytest.raises(ValueError):
        net.add_host(*addresses)
    assert len(net.hosts) == 1


def test_add_host_refuses_an_address_another_host_owns(net):
    net.add_host("10.0.0.2")
    with pytest.raises(ValueError, match="already"):
        net.add_host("10.0.0.2")


def test_a_bound_socket_lives_on_the_host_owning_its_address(net):
    db = net.add_host("10.0.0.2", names=["db.test"])
    listener = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    posix.bind(listener, ("db.test", 5432))
    posix.listen(listener, 1)
    with net.host("db.test"):
        client = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    posix.connect(client, ("10.0.0.2", 5432))  # db.test to itself
    conn, peer = posix.accept(listener)
    assert peer[0] == "10.0.0.2"
    app = net.add_host("10.0.0.3", names=["app.test"])
    with net.host(app):
        other = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    posix.connect(other, ("db.test", 5432))
    conn2, peer2 = posix.accept(listener)
    assert peer2[0] == "10.0.0.3"  # Linux's source selection: the host's own address
    assert posix.getsockname(other)[0] == "10.0.0.3"
    assert db is net.find_host("10.0.0.2")
    for fd in (listener, client, conn, other, conn2):
        posix.close(fd)


def test_a_host_without_an_address_of_the_family_cannot_connect_to_it(net):
    net.add_host("10.0.0.2", names=["v4only.test"])
    net.add_host("fd00::3", names=["v6only.test"])
    with net.host("v4only.test"):
        sock = posix.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with pytest.raises(OSError) as raised:
        posix.connect(sock, ("fd00::3", 80))
    assert raised.value.errno == 101  # ENETUNREACH
    posix.close(sock)


def test_the_current_host_is_per_thread(net):
    net.add_host("10.0.0.2", names=["db.test"])
    seen = []
    with net.host("db.test"):
        thread = threading.Thread(target=lambda: seen.append(net.current_host()))
        thread.start()
        thread.join()
        assert net.current_host().names == ["db.test"]
    assert seen == [net.first_host]
    assert net.current_host() is net.first_host


BAD_CONDITIONS = [
    ({"latency": -0.1}, ValueError), ({"latency": math.nan}, ValueError),
    ({"jitter": math.inf}, ValueError), ({"loss": 1.5}, ValueError),
    ({"loss": -0.01}, ValueError), ({"duplicate": 2}, ValueError),
    ({"reorder": math.nan}, ValueError), ({"bandwidth": 0}, ValueError),
    ({"bandwidth": -5}, ValueError), ({"mtu": 20}, ValueError), ({"mtu": 1500.0}, TypeError),
    ({"latency": "1s"}, TypeError), ({"down": 1}, TypeError), ({"speed": 1}, TypeError),
]


@pytest.mark.parametrize(("conditions", "error"), BAD_CONDITIONS)
def test_bad_conditions_are_refused_and_nothing_half_applied(net, conditions, error):
    net.add_host("10.0.0.2")
    link = net.link("localhost", "10.0.0.2", latency=0.01)
    with pytest.raises(error):
        net.link("localhost", "10.0.0.2", **{"jitter": 0.5, **conditions})
    assert net.links() == [link] and link.jitter == 0.0
    with pytest.raises(error):
        net.conditions(**{"jitter": 0.5, **conditions})
    assert net.conditions().jitter == 0.0
    name, value = next(iter(conditions.items()))
    if name != "speed":
        with pytest.raises(error):
            setattr(link, name, value)
        assert link.latency == 0.01


def test_a_path_follows_links_defaults_and_partitions_as_they_change(net):
    db = net.add_host("10.0.0.2", names=["db.test"])
    here = net.first_host
    with net.lock:
        out, back, loop = net.path(here, db), net.path(db, here), net.path(here, here)
    assert out.perfect and back.perfect and loop.perfect
    link = net.link(here, "db.test", latency=0.05, both_ways=False)
    assert not out.perfect and back.perfect and out.conditions.latency == 0.05
    link.latency = 0.0
    assert out.perfect
    net.partition(["db.test"])
    assert out.blocked and back.blocked and not out.perfect and loop.perfect
    net.heal()
    assert out.perfect and not out.blocked
    net.conditions(loss=0.1)
    assert not loop.perfect and not back.perfect and out.perfect  # out has its own link
    net.conditions()
    assert loop.perfect and back.perfect
    net.unlink(link)
    net.link(db, db, down=True)
    assert net.path(db, db).blocked and out.perfect


def test_partition_refuses_unknown_hosts_and_overlapping_groups(net):
    net.add_host("10.0.0.2", names=["a.test"])
    net.add_host("10.0.0.3", names=["b.test"])
    with pytest.raises(LookupError):
        net.partition(["a.test"], ["nowhere.test"])
    with pytest.raises(ValueError):
        net.partition(["a.test"], ["a.test", "b.test"])
    with pytest.raises(TypeError):
        net.partition()
    with net.lock:
        path = net.path(net.find_host("a.test"), net.find_host("b.test"))
    assert not path.blocked  # nothing applied
    net.partition("a.test", "b.test")
    assert path.blocked


def test_the_scheduler_runs_events_in_time_order_and_wakes_their_sockets(net):
    ran = []
    start = net.scheduler.now()
    done = threading.Event()
    net.scheduler.call_later(0.04, lambda touched: (ran.append("second"), done.set()))
    net.scheduler.call_later(0.02, lambda touched: ran.append("first"))
    cancelled = net.scheduler.call_later(0.01, lambda touched: ran.append("never"))
    cancelled.cancel()
    assert done.wait(5)
    assert ran == ["first", "second"]
    assert net.scheduler.now() - start >= 0.04
    time.sleep(0.05)
    assert net.scheduler._thread is None  # an idle network holds no thread


def test_reset_resets_every_connection_of_a_host_with_the_errors_of_their_states(net):
    net.add_host("10.0.0.2", names=["db.test"])
    listener = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    posix.bind(listener, ("db.test", 5432))
    posix.listen(listener, 4)
    clients = [posix.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(2)]
    for client in clients:
        posix.connect(client, ("db.test", 5432))
    accepted = [posix.accept(listener)[0] for _ in clients]
    posix.shutdown(accepted[1], socket.SHUT_WR)  # clients[1] in CLOSE_WAIT: EPIPE
    assert net.reset("db.test", port=80) == 0
    assert net.reset("db.test") == 2
    with pytest.raises(ConnectionResetError):
        posix.recv(clients[0], 10)
    assert posix.recv(clients[1], 10) == b""  # the FIN came first
    with pytest.raises(ConnectionResetError):
        posix.recv(accepted[0], 10)
    assert posix.poll([(listener, 1)], 0) == []  # the listener is no connection
    with pytest.raises(LookupError):
        net.reset("nowhere.test")
    with pytest.raises(ValueError):
        net.reset("db.test", port=70000)
    for fd in (listener, *clients, *accepted):
        posix.close(fd)


def test_each_host_has_its_own_ports(net):
    """Hosts are separate machines: each may bind the wildcard on the same port, and a
    wildcard listener answers only for its own host's addresses."""
    net.add_host("10.0.0.2", names=["a.test"])
    net.add_host("10.0.0.3", names=["b.test"])
    net.add_host("10.0.0.4", names=["c.test"])
    sockets = []
    for name in ("a.test", "b.test"):
        with net.host(name):
            tcp = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
            udp = posix.socket(socket.AF_INET, socket.SOCK_DGRAM)
        posix.bind(tcp, ("0.0.0.0", 80))  # no EADDRINUSE: another host's port
        posix.listen(tcp, 4)
        posix.bind(udp, ("0.0.0.0", 53))
        sockets += [tcp, udp]
    a_tcp, a_udp, b_tcp, b_udp = sockets
    client = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    posix.connect(client, ("10.0.0.3", 80))
    assert posix.poll([(b_tcp, 1), (a_tcp, 1)], 1000) == [(b_tcp, 1)]
    conn, _ = posix.accept(b_tcp)
    stranger = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):  # c.test listens on nothing
        posix.connect(stranger, ("10.0.0.4", 80))
    sender = posix.socket(socket.AF_INET, socket.SOCK_DGRAM)
    posix.sendto(sender, b"to a", 0, ("10.0.0.2", 53))
    assert posix.recvfrom(a_udp, 10)[0] == b"to a"
    assert posix.poll([(b_udp, 1)], 0) == []
    with net.host("a.test"):
        again = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError) as raised:  # on its own host the port is taken
        posix.bind(again, ("0.0.0.0", 80))
    assert raised.value.errno == 98
    for fd in (*sockets, client, conn, stranger, sender, again):
        posix.close(fd)
