"""The interest list (``readiness.Interest``): epoll for virtual sockets.

The kernel is the oracle here too: each scenario runs once with the kernel's epoll over
kernel TCP connections on loopback and once with an ``Interest`` over virtual TCP
connections, and the two logs of what each wait reported must be equal.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

import posix_socket as ps
from posix_socket import descriptors, posix, readiness
from posix_socket.drivers.inet import InetDriver, VirtualNetwork

IN, OUT = select.EPOLLIN, select.EPOLLOUT
RDHUP = select.EPOLLRDHUP
JOIN = 10.0


class KernelSide:
    """Kernel TCP connections and the kernel's epoll."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.epoll = select.epoll()
        self.socks: dict[int, socket.socket] = {}

    def pair(self) -> tuple[int, int]:
        client = socket.create_connection(self.server.getsockname())
        accepted, _ = self.server.accept()
        for sock in (client, accepted):
            self.socks[sock.fileno()] = sock
        return client.fileno(), accepted.fileno()

    def send(self, fd: int, data: bytes) -> None:
        self.socks[fd].sendall(data)

    def recv(self, fd: int, size: int) -> bytes:
        return self.socks[fd].recv(size)

    def shutdown(self, fd: int, how: int) -> None:
        self.socks[fd].shutdown(how)

    def close(self, fd: int) -> None:
        self.socks.pop(fd).close()

    def register(self, fd: int, events: int, edge: bool = False,
                 oneshot: bool = False) -> None:
        self.epoll.register(fd, events | (select.EPOLLET * edge)
                            | (select.EPOLLONESHOT * oneshot))

    def modify(self, fd: int, events: int) -> None:
        self.epoll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self.epoll.unregister(fd)

    def wait(self, maxevents: int = -1) -> list[tuple[int, int]]:
        # Loopback delivery is synchronous: what was sent before is already there.
        return self.epoll.poll(0, maxevents)

    def finish(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.server.close()
        self.epoll.close()


class VirtualSide:
    """Virtual TCP connections and an ``Interest``."""

    def __init__(self) -> None:
        self.preset = ps.use("virtual")
        driver = InetDriver(VirtualNetwork())
        ps.register_family(socket.AF_INET, driver, replace=True)
        self.server = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        posix.bind(self.server, ("127.0.0.1", 0))
        posix.listen(self.server, 8)
        self.interest = readiness.Interest()
        self.fds: list[int] = []

    def pair(self) -> tuple[int, int]:
        client = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        posix.connect(client, posix.getsockname(self.server))
        accepted, _ = posix.accept(self.server)
        self.fds += [client, accepted]
        return client, accepted

    def send(self, fd: int, data: bytes) -> None:
        posix.send(fd, data)

    def recv(self, fd: int, size: int) -> bytes:
        return posix.recv(fd, size)

    def shutdown(self, fd: int, how: int) -> None:
        posix.shutdown(fd, how)

    def close(self, fd: int) -> None:
        self.fds.remove(fd)
        posix.close(fd)

    def _watch(self, fd: int) -> readiness.Watch:
        return descriptors.lookup(fd).watch

    def register(self, fd: int, events: int, edge: bool = False,
                 oneshot: bool = False) -> None:
        self.interest.register(self._watch(fd), events, fd, edge=edge, oneshot=oneshot)

    def modify(self, fd: int, events: int) -> None:
        self.interest.modify(self._watch(fd), events, fd)

    def unregister(self, fd: int) -> None:
        self.interest.unregister(self._watch(fd))

    def wait(self, maxevents: int = -1) -> list[tuple[int, int]]:
        return self.interest.ready(maxevents)

    def finish(self) -> None:
        for fd in self.fds:
            posix.close(fd)
        posix.close(self.server)
        self.interest.close()
        self.preset.__exit__(None, None, None)


def _run(scenario, side) -> list:
    log: list = []
    try:
        names: dict[int, str] = {}

        def wait(maxevents: int = -1) -> None:
            found = side.wait(maxevents)
            log.append(sorted((names[fd], revents) for fd, revents in found)
                       if maxevents < 0 else len(found))

        scenario(side, names, wait)
    finally:
        side.finish()
    return log


def _pairs(side, names: dict[int, str], count: int) -> list[tuple[int, int]]:
    pairs = []
    for index in range(count):
        a, b = side.pair()
        names[a], names[b] = f"a{index}", f"b{index}"
        pairs.append((a, b))
    return pairs


def level_triggered_until_drained(side, names, wait) -> None:
    [(a, b)] = _pairs(side, names, 1)
    side.register(b, IN)
    wait()  # nothing yet
    side.send(a, b"hello")
    wait()
    wait()  # still there: level-triggered
    side.recv(b, 2)
    wait()
    side.recv(b, 10)
    wait()


def edge_triggered_once_per_change(side, names, wait) -> None:
    [(a, b)] = _pairs(side, names, 1)
    side.register(b, IN, edge=True)
    side.send(a, b"x")
    wait()
    wait()  # no change since: nothing
    side.send(a, b"y")
    wait()


def oneshot_until_modified(side, names, wait) -> None:
    [(a, b)] = _pairs(side, names, 1)
    side.register(b, IN, oneshot=True)
    side.send(a, b"x")
    wait()
    side.send(a, b"y")
    wait()  # disabled
    side.modify(b, IN)
    wait()


def writable_and_hangups(side, names, wait) -> None:
    [(a, b), (c, d)] = _pairs(side, names, 2)
    side.register(a, IN | OUT | RDHUP)
    side.register(d, IN | RDHUP)
    wait()
    side.shutdown(b, socket.SHUT_WR)
    wait()
    side.close(c)
    wait()


def closing_the_socket_leaves_the_list(side, names, wait) -> None:
    [(a, b), (c, d)] = _pairs(side, names, 2)
    side.register(b, IN)
    side.register(d, IN)
    side.send(a, b"x")
    side.send(c, b"y")
    side.close(b)
    wait()
    side.unregister(d)
    wait()


def maxevents_limits_one_wait(side, names, wait) -> None:
    pairs = _pairs(side, names, 3)
    for a, b in pairs:
        side.register(b, IN)
        side.send(a, b"x")
    wait(2)
    wait(2)
    wait()


SCENARIOS = [level_triggered_until_drained, edge_triggered_once_per_change,
             oneshot_until_modified, writable_and_hangups,
             closing_the_socket_leaves_the_list, maxevents_limits_one_wait]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_interest_reports_what_kernel_epoll_reports(scenario) -> None:
    kernel = _run(scenario, KernelSide())
    virtual = _run(scenario, VirtualSide())
    assert virtual == kernel


def test_double_register_and_unknown_socket_are_refused() -> None:
    side = VirtualSide()
    try:
        a, _ = side.pair()
        side.register(a, IN)
        with pytest.raises(KeyError):
            side.register(a, IN)
        side.unregister(a)
        with pytest.raises(KeyError):
            side.unregister(a)
        with pytest.raises(KeyError):
            side.modify(a, IN)
    finally:
        side.finish()


def test_wait_times_out_empty() -> None:
    side = VirtualSide()
    try:
        _, b = side.pair()
        side.register(b, IN)
        start = time.monotonic()
        assert side.interest.wait(0.05) == []
        assert time.monotonic() - start >= 0.05
    finally:
        side.finish()


def test_wait_is_woken_by_data_from_another_thread() -> None:
    side = VirtualSide()
    try:
        a, b = side.pair()
        side.register(b, IN)
        got: list = []
        waiter = threading.Thread(target=lambda: got.append(side.interest.wait(JOIN)))
        waiter.start()
        deadline = time.monotonic() + JOIN
        while not side.interest._waiters and time.monotonic() < deadline:
            time.sleep(0.001)
        side.send(a, b"x")
        waiter.join(JOIN)
        assert got == [[(b, IN)]]
    finally:
        side.finish()


def test_idle_sockets_are_not_visited_by_a_wait() -> None:
    """What makes a wait cost the ready sockets only: idle members are never polled."""
    side = VirtualSide()
    polled: list[int] = []
    try:
        pairs = [side.pair() for _ in range(20)]
        for _, b in pairs:
            side.register(b, IN)
        assert side.interest.ready() == []  # the initial check of each registration
        for _, b in pairs:
            watch = descriptors.lookup(b).watch
            watch.revents = (lambda fd, inner: lambda: polled.append(fd) or inner())(
                b, watch.revents)
        a, b = pairs[7]
        side.send(a, b"x")
        assert side.interest.ready() == [(b, IN)]
        assert set(polled) == {b}  # (the kernel mirror reads it too)
    finally:
        side.finish()
