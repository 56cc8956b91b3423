"""The virtual IP network under load and in isolation (the scenario suite compares
single calls with the kernel; these check what only many threads or networks show)."""

from __future__ import annotations

import errno
import fcntl
import gc
import hashlib
import ipaddress
import os
import select
import shutil
import socket
import subprocess
import sys
import threading

import pytest

import posix_socket as ps
from posix_socket import descriptors, posix
from posix_socket.drivers.inet import InetDriver, VirtualNetwork
from posix_socket.drivers.inet import network as netmod
from posix_socket.drivers.inet.addresses import mapped

AF_INET, SOCK_STREAM = socket.AF_INET, socket.SOCK_STREAM


@pytest.fixture
def network():
    """A fresh virtual network serving AF_INET/AF_INET6 for one test; checks leaks."""
    descriptors.placeholder_fd()  # made once per process, on first use
    before_fds = set(os.listdir("/proc/self/fd"))
    before_table = set(descriptors.open_numbers())
    with ps.use("virtual") as preset:
        yield preset.drivers[AF_INET].network
    assert set(descriptors.open_numbers()) == before_table
    assert set(os.listdir("/proc/self/fd")) == before_fds


def _serve(listener: int, clients: int) -> tuple[threading.Thread, list[threading.Thread]]:
    """Accept ``clients`` connections; a thread per connection echoes the sha256 of
    everything received back once the client shuts down its side."""
    workers = []

    def handle(conn: int) -> None:
        digest = hashlib.sha256()
        try:
            while chunk := posix.recv(conn, 65536):
                digest.update(chunk)
            posix.send(conn, digest.digest())
        finally:
            posix.close(conn)

    def accept_all() -> None:
        for _ in range(clients):
            conn, _ = posix.accept(listener)
            worker = threading.Thread(target=handle, args=(conn,))
            worker.start()
            workers.append(worker)

    acceptor = threading.Thread(target=accept_all)
    acceptor.start()
    return acceptor, workers


def test_hundreds_of_threaded_clients_lose_duplicate_and_reorder_nothing(network):
    clients = 200
    listener = posix.socket(AF_INET, SOCK_STREAM)
    posix.bind(listener, ("127.0.0.1", 0))
    posix.listen(listener, 64)
    address = posix.getsockname(listener)
    acceptor, workers = _serve(listener, clients)
    failures: list[str] = []

    def client(index: int) -> None:
        payload = os.urandom(1000 + index * 97)
        fd = posix.socket(AF_INET, SOCK_STREAM)
        try:
            posix.connect(fd, address)
            for start in range(0, len(payload), 3000):
                sent = posix.send(fd, payload[start:start + 3000])
                assert sent == len(payload[start:start + 3000])
            posix.shutdown(fd, socket.SHUT_WR)
            answer = posix.recv(fd, 32, socket.MSG_WAITALL)
            if answer != hashlib.sha256(payload).digest():
                failures.append(f"client {index}: checksum mismatch")
        except Exception as exc:  # collected and reported below
            failures.append(f"client {index}: {exc!r}")
        finally:
            posix.close(fd)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    acceptor.join(60)
    for worker in workers:
        worker.join(60)
    posix.close(listener)
    assert not any(t.is_alive() for t in (*threads, acceptor, *workers))
    assert failures == []


def test_a_bulk_stream_through_a_small_buffer_arrives_whole_and_in_order(network):
    listener = posix.socket(AF_INET, SOCK_STREAM)
    posix.bind(listener, ("127.0.0.1", 0))
    posix.listen(listener, 1)
    client = posix.socket(AF_INET, SOCK_STREAM)
    posix.setsockopt(client, socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    posix.connect(client, posix.getsockname(listener))
    server, _ = posix.accept(listener)
    posix.setsockopt(server, socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload = os.urandom(2 * 1024 * 1024)
    received = bytearray()

    def reader() -> None:
        while chunk := posix.recv(server, 7777):
            received.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    assert posix.send(client, payload) == len(payload)  # blocking: waits for room
    posix.shutdown(client, socket.SHUT_WR)
    thread.join(60)
    assert not thread.is_alive()
    assert bytes(received) == payload
    for fd in (client, server, listener):
        posix.close(fd)


def test_two_networks_with_the_same_addresses_and_ports_never_cross():
    first, second = InetDriver(VirtualNetwork()), InetDriver(VirtualNetwork())
    sockets = []

    def listen_on(driver: InetDriver) -> int:
        ps.register_family(AF_INET, driver, replace=True)
        fd = posix.socket(AF_INET, SOCK_STREAM)
        sockets.append(fd)
        posix.bind(fd, ("127.0.0.1", 8080))
        posix.listen(fd, 4)
        return fd

    with ps.use("host"):
        one = listen_on(first)
        two = listen_on(second)  # same address and port: no EADDRINUSE across networks
        for driver, listener, greeting in ((first, one, b"one"), (second, two, b"two")):
            ps.register_family(AF_INET, driver, replace=True)
            client = posix.socket(AF_INET, SOCK_STREAM)
            sockets.append(client)
            posix.connect(client, ("127.0.0.1", 8080))
            posix.send(client, greeting)
            conn, _ = posix.accept(listener)
            sockets.append(conn)
            assert posix.recv(conn, 10) == greeting
        assert posix.poll([(one, select.POLLIN), (two, select.POLLIN)], 0) == []
        ps.register_family(AF_INET, InetDriver(VirtualNetwork()), replace=True)
        stranger = posix.socket(AF_INET, SOCK_STREAM)
        sockets.append(stranger)
        with pytest.raises(ConnectionRefusedError):
            posix.connect(stranger, ("127.0.0.1", 8080))
    for fd in sockets:
        posix.close(fd)


def test_hosts_answer_by_name_and_a_client_speaks_from_its_own_host(network):
    network.add_host("10.0.0.2", names=["db.internal"])
    listener = posix.socket(AF_INET, SOCK_STREAM)
    posix.bind(listener, ("db.internal", 5432))
    posix.listen(listener, 1)
    client = posix.socket(AF_INET, SOCK_STREAM)
    posix.connect(client, ("10.0.0.2", 5432))
    conn, peer = posix.accept(listener)
    assert posix.getsockname(listener) == ("10.0.0.2", 5432)
    assert posix.getpeername(client) == ("10.0.0.2", 5432)
    assert peer[0] == "127.0.0.1"  # the client lives on the first host (the machine)
    unnamed = posix.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(socket.gaierror):
        posix.connect(unnamed, ("nowhere.invalid", 1))
    for fd in (client, conn, listener, unnamed):
        posix.close(fd)


OFFLINE_PROGRAM = """
import socket
import posix_socket as ps
from posix_socket import posix

try:
    socket.create_connection(("127.0.0.1", 9), timeout=1)
except OSError as exc:
    print("kernel:", exc.errno)
with ps.use("virtual"):
    server = posix.socket(socket.AF_INET6, socket.SOCK_STREAM)
    posix.bind(server, ("::", 80))
    posix.listen(server, 1)
    client = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    posix.connect(client, ("127.0.0.1", 80))
    conn, _ = posix.accept(server)
    posix.send(client, b"tcp")
    udp_in = posix.socket(socket.AF_INET, socket.SOCK_DGRAM)
    posix.bind(udp_in, ("127.0.0.1", 53))
    udp_out = posix.socket(socket.AF_INET, socket.SOCK_DGRAM)
    posix.sendto(udp_out, b"udp", 0, ("127.0.0.1", 53))
    print("virtual:", posix.recv(conn, 10), posix.recv(udp_in, 10))
"""


def test_the_virtual_network_works_where_the_kernel_has_no_network():
    """Inside a network namespace without even loopback up, the kernel's TCP/IP
    cannot carry a byte; the virtual network does not need it."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to make a namespace without network")
    result = subprocess.run(["unshare", "-n", sys.executable, "-c", OFFLINE_PROGRAM],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["kernel: 101", "virtual: b'tcp' b'udp'"]


# -- the connect path: what the fast paths must not change --------------------------------

@pytest.mark.parametrize("visible", [False, True])
def test_connections_leave_no_reference_cycles(network, visible):
    """A connection's objects are freed when its descriptors close, not left for the
    garbage collector (each cycle would cost a collection's time on busy servers)."""
    server = posix.socket(AF_INET, SOCK_STREAM, visible=visible)
    posix.bind(server, ("127.0.0.1", 0))
    posix.listen(server, 8)
    address = posix.getsockname(server)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(20):
            client = posix.socket(AF_INET, SOCK_STREAM, visible=visible)
            posix.connect(client, address)
            accepted, _ = posix.accept(server, visible=visible)
            posix.close(client)
            posix.close(accepted)
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
        posix.close(server)


def test_cached_addresses_keep_the_stdlib_errors(network):
    """Parsed addresses are remembered, but only for exactly (str, int): a float port
    equal to a cached int one is still the stdlib's TypeError."""
    server = posix.socket(AF_INET, SOCK_STREAM)
    posix.bind(server, ("127.0.0.1", 0))
    posix.listen(server, 8)
    host, port = posix.getsockname(server)
    client = posix.socket(AF_INET, SOCK_STREAM)
    try:
        posix.connect(client, (host, port))  # now cached
        other = posix.socket(AF_INET, SOCK_STREAM)
        try:
            with pytest.raises(TypeError, match="'float' object cannot be interpreted"):
                posix.connect(other, (host, float(port)))
            with pytest.raises(TypeError, match="str, bytes or bytearray expected"):
                posix.connect(other, ([host], port))
        finally:
            posix.close(other)
    finally:
        posix.close(client)
        posix.close(posix.accept(server)[0])
        posix.close(server)


def test_listeners_are_found_by_port_among_many_accepted_connections(network):
    """A connect finds the listener of a port that also holds every accepted
    connection; after the listener closes, the port refuses."""
    server = posix.socket(AF_INET, SOCK_STREAM)
    posix.bind(server, ("0.0.0.0", 0))
    posix.listen(server, 64)
    port = posix.getsockname(server)[1]
    opened = []
    for _ in range(50):
        client = posix.socket(AF_INET, SOCK_STREAM)
        posix.connect(client, ("127.0.0.1", port))
        opened += [client, posix.accept(server)[0]]
    posix.close(server)
    late = posix.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        posix.connect(late, ("127.0.0.1", port))
    for fd in [late, *opened]:
        posix.close(fd)


@pytest.mark.parametrize("flags", [0, socket.SOCK_NONBLOCK, socket.SOCK_CLOEXEC,
                                   socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC])
def test_a_visible_number_shows_the_kernel_its_flags_and_readiness(network, flags):
    """The kernel mirror is made with the socket's O_NONBLOCK and the number keeps its
    close-on-exec flag (neither is asked of the kernel first); it turns unwritable when
    the peer's window fills and writable again when it drains."""
    server = posix.socket(AF_INET, SOCK_STREAM)
    posix.bind(server, ("127.0.0.1", 0))
    posix.listen(server, 8)
    client = posix.socket(AF_INET, SOCK_STREAM | flags)
    nonblocking = bool(flags & socket.SOCK_NONBLOCK)
    try:
        posix.connect(client, posix.getsockname(server))
    except BlockingIOError:
        assert nonblocking
    accepted, _ = posix.accept4(server, flags & socket.SOCK_CLOEXEC)
    try:
        for fd in (client, accepted):
            assert bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK) == (
                nonblocking and fd == client)
            assert os.get_inheritable(fd) == (not flags & socket.SOCK_CLOEXEC)
        poller = select.poll()
        poller.register(client, select.POLLOUT)
        assert poller.poll(0)
        posix.setsockopt(accepted, socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sent = 0
        while True:
            try:
                sent += posix.send(client, bytes(4096), socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
        assert poller.poll(0) == []
        while sent:
            sent -= len(posix.recv(accepted, 65536))
        assert poller.poll(0) == [(client, select.POLLOUT)]
    finally:
        for fd in (client, accepted, server):
            posix.close(fd)


def test_time_wait_entries_hold_a_port_for_binds_until_they_expire():
    """The end that closed first leaves a TIME_WAIT entry: binds of its port fail
    until it expires; one whose socket keeps the port is a copy."""
    now = [1000.0]
    table = netmod.PortTable(tcp=True, time_wait=60.0, now=lambda: now[0])
    ip = mapped(ipaddress.IPv4Address("127.0.0.1"))

    def binding() -> netmod.Binding:
        return netmod.Binding(object(), ip, False, False, False)

    closing = binding()
    table.bind(closing, 40000)
    assert table.hold_time_wait(closing, 40000, leaving=True)
    assert 40000 not in table.ports and closing.owner is None
    with pytest.raises(OSError) as info:
        table.bind(binding(), 40000)
    assert info.value.errno == errno.EADDRINUSE
    kept = binding()
    table.bind(kept, 40002)
    assert not table.hold_time_wait(kept, 40002)  # a copy: the socket keeps its port
    assert kept in table.ports[40002] and table.waits[40002][0] is not kept
    now[0] += 59.0
    with pytest.raises(OSError):
        table.bind(binding(), 40000)
    now[0] += 1.0
    assert table.bind(binding(), 40000) == 40000  # expired
    assert 40002 not in table.waits


def test_blocking_connect_ends_inside_the_call_as_after_a_wait(network):
    """A blocking connect the handshake completes at once (connect_blocking) leaves
    what the wait and the second connect would: connected, no error pending, no
    watch made; a non-blocking one still reports EINPROGRESS, then success."""
    server = posix.socket(AF_INET, SOCK_STREAM)
    posix.bind(server, ("127.0.0.1", 0))
    posix.listen(server, 8)
    address = posix.getsockname(server)
    client = posix.socket(AF_INET, SOCK_STREAM, visible=False)
    eager = posix.socket(AF_INET, SOCK_STREAM | socket.SOCK_NONBLOCK, visible=False)
    try:
        assert posix.connect(client, address) is None
        assert descriptors.lookup(client)._watch is None  # nobody waited on it
        assert posix.getsockopt(client, socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert posix.getpeername(client) == address
        with pytest.raises(OSError) as again:
            posix.connect(client, address)
        assert again.value.errno == errno.EISCONN
        with pytest.raises(BlockingIOError) as pending:
            posix.connect(eager, address)
        assert pending.value.errno == errno.EINPROGRESS
        assert posix.connect(eager, address) is None
        with pytest.raises(OSError) as connected:
            posix.connect(eager, address)
        assert connected.value.errno == errno.EISCONN
        for _ in range(2):
            posix.close(posix.accept(server)[0])
    finally:
        for fd in (client, eager, server):
            posix.close(fd)


def test_refused_blocking_connect_is_unchanged(network):
    """No listener: the blocking connect fails with ECONNREFUSED and leaves no error."""
    probe = posix.socket(AF_INET, SOCK_STREAM)
    posix.bind(probe, ("127.0.0.1", 0))
    address = posix.getsockname(probe)
    posix.close(probe)
    client = posix.socket(AF_INET, SOCK_STREAM)
    try:
        with pytest.raises(ConnectionRefusedError):
            posix.connect(client, address)
        assert posix.getsockopt(client, socket.SOL_SOCKET, socket.SO_ERROR) == 0
    finally:
        posix.close(client)
