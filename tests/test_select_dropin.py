"""The ``posix_socket.select`` drop-in: select(), poll and epoll objects.

Linux is the oracle: each scenario runs once with the stdlib's ``select`` module on
kernel sockets and once with the drop-in on layer descriptors (virtual sockets, and a
mix of virtual sockets, the layer's kernel sockets and sockets made outside the layer),
and the logs of what each call returned or raised must be equal.  Descriptor numbers
differ between runs, so the log names them.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import posix_socket as ps
from posix_socket import descriptors, posix
from posix_socket import select as dropin
from posix_socket.drivers.host import HostDriver

IN, OUT, PRI = select.EPOLLIN, select.EPOLLOUT, select.EPOLLPRI
RDHUP, ET, ONESHOT = select.EPOLLRDHUP, select.EPOLLET, select.EPOLLONESHOT
EXCLUSIVE = select.EPOLLEXCLUSIVE
JOIN = 10.0
_HOST = HostDriver()


# -- the sides -------------------------------------------------------------------------

class KernelSide:
    """The oracle: the stdlib's select module on kernel sockets."""

    module: Any = select

    def __init__(self, family: int) -> None:
        self.family = family
        self.objects: dict[int, Any] = {}
        self.server = None
        if family != socket.AF_UNIX:
            self.server = socket.socket(family, socket.SOCK_STREAM)
            self.server.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
            self.server.listen(64)

    def pair(self) -> tuple[int, int]:
        if self.server is None:
            a, b = socket.socketpair()
        else:
            a = socket.create_connection(self.server.getsockname()[:2])
            b, _ = self.server.accept()
        for sock in (a, b):
            self.objects[sock.fileno()] = sock
        return a.fileno(), b.fileno()

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self.objects[r] = self.objects[w] = None
        return r, w

    def dup(self, fd: int) -> int:
        new = os.dup(fd)
        self.objects[new] = None
        return new

    def dup2(self, fd: int, fd2: int) -> None:
        assert fd2 not in self.objects  # only over closed numbers, to keep count
        os.dup2(fd, fd2)
        self.objects[fd2] = None

    def listener(self) -> int | None:
        return None if self.server is None else self.server.fileno()

    def connect(self) -> int:
        client = socket.create_connection(self.server.getsockname()[:2])
        self.objects[client.fileno()] = client
        return client.fileno()

    def accept(self) -> int:
        sock, _ = self.server.accept()
        self.objects[sock.fileno()] = sock
        return sock.fileno()

    def send(self, fd: int, data: bytes) -> None:
        os.write(fd, data)

    def recv(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def shutdown(self, fd: int, how: int) -> None:
        self.objects[fd].shutdown(how)

    def close(self, fd: int) -> None:
        sock = self.objects.pop(fd)
        if sock is None:
            os.close(fd)
        else:
            sock.close()

    def finish(self) -> None:
        for fd in list(self.objects):
            self.close(fd)
        if self.server is not None:
            self.server.close()


class LayerSide:
    """The drop-in on layer descriptors under the virtual preset.  ``kinds`` cycles
    through what each new pair is: ``virtual`` (the preset's driver), ``host`` (the
    layer's kernel sockets) or ``outside`` (kernel sockets the layer does not own)."""

    module: Any = dropin

    def __init__(self, family: int, kinds: tuple[str, ...] = ("virtual",)) -> None:
        self.family = family
        self.kinds = kinds
        self.made = 0
        self.preset = ps.use("virtual")
        self.layer: set[int] = set()
        self.outside: dict[int, Any] = {}
        self.kernel = KernelSide(family)
        self.server = None
        if family != socket.AF_UNIX:
            self.server = posix.socket(family, socket.SOCK_STREAM, visible=False)
            posix.bind(self.server, ("127.0.0.1" if family == socket.AF_INET else "::1", 0))
            posix.listen(self.server, 64)

    def pair(self) -> tuple[int, int]:
        kind = self.kinds[self.made % len(self.kinds)]
        self.made += 1
        if kind == "outside":
            a, b = self.kernel.pair()
            self.outside[a], self.outside[b] = self.kernel.objects[a], self.kernel.objects[b]
            return a, b
        if self.family == socket.AF_UNIX:
            a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM, visible=False,
                                    driver=_HOST if kind == "host" else None)
        elif kind == "host":
            a, b = self._host_tcp_pair()
        else:
            a = posix.socket(self.family, socket.SOCK_STREAM, visible=False)
            posix.connect(a, posix.getsockname(self.server)[:2])
            b, _ = posix.accept(self.server, visible=False)
        self.layer |= {a, b}
        return a, b

    def _host_tcp_pair(self) -> tuple[int, int]:
        """A loopback TCP pair of the layer's kernel sockets (the host driver)."""
        with ps.use("host"):
            server = posix.socket(self.family, socket.SOCK_STREAM)
            try:
                posix.bind(server, ("127.0.0.1" if self.family == socket.AF_INET else "::1",
                                    0))
                posix.listen(server, 1)
                a = posix.socket(self.family, socket.SOCK_STREAM)
                posix.connect(a, posix.getsockname(server)[:2])
                b, _ = posix.accept(server)
            finally:
                posix.close(server)
        return a, b

    def pipe(self) -> tuple[int, int]:
        return self.kernel.pipe()

    def dup(self, fd: int) -> int:
        new = posix.dup(fd)
        if fd in self.layer:
            self.layer.add(new)
        else:
            self.kernel.objects[new] = None
        return new

    def dup2(self, fd: int, fd2: int) -> None:
        assert fd2 not in self.layer and fd2 not in self.kernel.objects
        posix.dup2(fd, fd2)
        if fd in self.layer:
            self.layer.add(fd2)
        else:
            self.kernel.objects[fd2] = None

    def listener(self) -> int | None:
        return self.server

    def connect(self) -> int:
        client = posix.socket(self.family, socket.SOCK_STREAM, visible=False)
        posix.connect(client, posix.getsockname(self.server)[:2])
        self.layer.add(client)
        return client

    def accept(self) -> int:
        sock, _ = posix.accept(self.server, visible=False)
        self.layer.add(sock)
        return sock

    def send(self, fd: int, data: bytes) -> None:
        posix.write(fd, data)

    def recv(self, fd: int, size: int) -> bytes:
        return posix.read(fd, size)

    def shutdown(self, fd: int, how: int) -> None:
        posix.shutdown(fd, how)

    def close(self, fd: int) -> None:
        if fd in self.layer:
            self.layer.remove(fd)
            posix.close(fd)
        else:
            self.outside.pop(fd, None)
            self.kernel.close(fd)

    def finish(self) -> None:
        try:
            for fd in list(self.layer):
                self.close(fd)
            if self.server is not None:
                posix.close(self.server)
            self.kernel.finish()
        finally:
            self.preset.__exit__(None, None, None)


FAMILIES = {"unix": socket.AF_UNIX, "tcp": socket.AF_INET, "tcp6": socket.AF_INET6}
LAYERS = {
    "virtual": ("virtual",),
    "mixed": ("virtual", "outside", "virtual", "host"),
}


class Log:
    """What a scenario saw, with descriptor numbers replaced by names."""

    def __init__(self) -> None:
        self.entries: list = []
        self.names: dict[int, str] = {}

    def name(self, fd: int, label: str) -> None:
        self.names[fd] = label

    def record(self, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except (OSError, ValueError, TypeError, KeyError, OverflowError,
                RuntimeError) as exc:
            self.entries.append(_failure(exc, self.names))
            return None
        self.entries.append(self._named(result))
        return result

    def _named(self, result: Any) -> Any:
        if isinstance(result, list) and all(isinstance(x, tuple) for x in result):
            return sorted((self.names.get(fd, fd), bits) for fd, bits in result)
        if isinstance(result, tuple) and len(result) == 3:  # select()
            return tuple(sorted(self.names.get(fd, fd) for fd in group) for group in result)
        return result


def _failure(exc: BaseException, names: dict[int, str]) -> tuple:
    if isinstance(exc, OSError):
        return (type(exc).__name__, exc.errno)
    if isinstance(exc, KeyError):
        return ("KeyError", names.get(exc.args[0], exc.args[0]))
    return (type(exc).__name__, str(exc))


def _pairs(side, log: Log, count: int) -> list[tuple[int, int]]:
    pairs = []
    for index in range(count):
        a, b = side.pair()
        log.name(a, f"a{index}")
        log.name(b, f"b{index}")
        pairs.append((a, b))
    return pairs


# -- epoll scenarios ---------------------------------------------------------------------

def epoll_level_triggered(side, log: Log) -> None:
    [(a, b)] = _pairs(side, log, 1)
    with side.module.epoll() as ep:
        log.record(lambda: ep.register(b, IN))
        log.record(lambda: ep.poll(0))
        side.send(a, b"hello")
        log.record(lambda: ep.poll(0))
        log.record(lambda: ep.poll(0))
        side.recv(b, 2)
        log.record(lambda: ep.poll(0))
        side.recv(b, 10)
        log.record(lambda: ep.poll(0.01))


def epoll_edge_triggered(side, log: Log) -> None:
    [(a, b), (c, _)] = _pairs(side, log, 2)
    ep = side.module.epoll()
    log.record(lambda: ep.register(b, IN | ET))
    log.record(lambda: ep.register(c, OUT | ET))
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.poll(0))
    side.send(a, b"x")
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.poll(0))
    side.send(a, b"y")
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.modify(b, IN | ET))
    log.record(lambda: ep.poll(0))  # modify looks again, as epoll_ctl does
    ep.close()


def epoll_oneshot(side, log: Log) -> None:
    [(a, b)] = _pairs(side, log, 1)
    ep = side.module.epoll()
    log.record(lambda: ep.register(b, IN | ONESHOT))
    side.send(a, b"x")
    log.record(lambda: ep.poll(0))
    side.send(a, b"y")
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.register(b, IN))  # still registered, only disabled
    log.record(lambda: ep.modify(b, IN | OUT))
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.poll(0))
    ep.close()


def epoll_exclusive(side, log: Log) -> None:
    [(a, b), (_, d)] = _pairs(side, log, 2)
    ep = side.module.epoll()
    for mask in (IN | EXCLUSIVE | ONESHOT, IN | EXCLUSIVE | RDHUP, PRI | EXCLUSIVE,
                 IN | EXCLUSIVE | select.EPOLLRDNORM):
        log.record(lambda mask=mask: ep.register(b, mask))
    log.record(lambda: ep.modify(b, IN | EXCLUSIVE))  # not registered yet
    log.record(lambda: ep.register(b, IN | OUT | EXCLUSIVE | ET))
    log.record(lambda: ep.modify(b, IN))  # an exclusive entry cannot change
    log.record(lambda: ep.modify(b, IN | EXCLUSIVE))
    log.record(lambda: ep.register(d, IN))
    log.record(lambda: ep.modify(d, IN | EXCLUSIVE))
    side.send(a, b"x")
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.unregister(b))
    log.record(lambda: ep.poll(0))
    ep.close()


def epoll_errors(side, log: Log) -> None:
    [(a, _), (c, d)] = _pairs(side, log, 2)
    ep = side.module.epoll()
    log.record(lambda: ep.modify(a, IN))
    log.record(lambda: ep.unregister(a))
    log.record(lambda: ep.register(a, IN))
    log.record(lambda: ep.register(a, OUT))
    log.record(lambda: ep.register(a, 2**40 | IN))  # masked to 32 bits: EEXIST
    log.record(lambda: ep.register(c, -1))  # every bit, EPOLLEXCLUSIVE among them
    log.record(lambda: ep.register(c, "x"))
    log.record(lambda: ep.register("x", IN))
    log.record(lambda: ep.register(-1, IN))
    log.record(lambda: ep.register(2**40, IN))
    log.record(lambda: ep.register(1.0, IN))
    log.record(lambda: ep.poll("x"))
    log.record(lambda: ep.poll(0, 0))
    log.record(lambda: ep.poll(0, -2))
    log.record(lambda: ep.poll(0, 1.0))
    log.record(lambda: ep.poll(0, 2**40))
    log.record(lambda: ep.poll(float("nan")))
    log.record(lambda: ep.poll(1e300))
    log.record(lambda: ep.poll(2**31))
    log.record(lambda: ep.poll(2**40))
    log.record(lambda: ep.poll(-0.0001))  # rounds to 0 ms: no wait
    log.record(lambda: ep.poll(timeout=0, maxevents=1))
    closed = d
    side.close(closed)
    log.record(lambda: ep.register(closed, IN))
    log.record(lambda: ep.modify(closed, IN))
    log.record(lambda: ep.unregister(closed))
    ep.close()
    log.record(lambda: ep.closed)
    for call in (lambda: ep.register(a, IN), lambda: ep.modify(a, IN),
                 lambda: ep.unregister(a), lambda: ep.poll(0), lambda: ep.poll("x"),
                 lambda: ep.poll(0, 0), lambda: ep.fileno(), lambda: ep.__enter__(),
                 lambda: ep.register("x", IN), ep.close):
        log.record(call)


def epoll_close_leaves_the_list(side, log: Log) -> None:
    [(a, b), (c, d)] = _pairs(side, log, 2)
    ep = side.module.epoll()
    log.record(lambda: ep.register(b, IN))
    log.record(lambda: ep.register(d, IN))
    side.send(a, b"x")
    side.send(c, b"y")
    side.close(b)
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.unregister(b))  # closed number: EBADF
    [(e, f)] = _pairs(side, log, 1)  # takes the lowest free numbers, b's among them
    reused = b if b in (e, f) else None
    log.record(lambda: reused is not None)
    if reused is not None:
        log.record(lambda: ep.modify(reused, IN))  # a new socket: not registered
        log.record(lambda: ep.register(reused, IN))
        log.record(lambda: ep.unregister(reused))
    log.record(lambda: ep.unregister(d))
    log.record(lambda: ep.poll(0))
    ep.close()


def epoll_hangups_and_writable(side, log: Log) -> None:
    [(a, b), (c, d)] = _pairs(side, log, 2)
    ep = side.module.epoll()
    log.record(lambda: ep.register(a, IN | OUT | RDHUP))
    log.record(lambda: ep.register(d, IN | RDHUP))
    log.record(lambda: ep.poll(0))
    side.shutdown(b, socket.SHUT_WR)
    log.record(lambda: ep.poll(0))
    side.close(c)
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.modify(a, 0))  # ERR and HUP are always reported
    log.record(lambda: ep.poll(0))
    ep.close()


def epoll_maxevents(side, log: Log) -> None:
    pairs = _pairs(side, log, 5)
    ep = side.module.epoll()
    for a, b in pairs:
        ep.register(b, IN)
        side.send(a, b"x")
    # Which ones a limited wait returns is the kernel's business; how many is not.
    log.entries.append(len(ep.poll(0, 2)))
    log.entries.append(len(ep.poll(0, 4)))
    log.record(lambda: ep.poll(0))
    seen = set()
    for _ in range(10):  # limited level-triggered waits go round all of them (the
        # drop-in's two halves take turns, so in twice as many waits at most)
        seen |= {fd for fd, _ in ep.poll(0, 1)}
    log.entries.append(len(seen))
    ep.close()


def epoll_pipes_with_sockets(side, log: Log) -> None:
    [(a, b)] = _pairs(side, log, 1)
    r, w = side.pipe()
    log.name(r, "r")
    log.name(w, "w")
    ep = side.module.epoll()
    log.record(lambda: ep.register(r, IN))
    log.record(lambda: ep.register(w, OUT))
    log.record(lambda: ep.register(b, IN))
    log.record(lambda: ep.poll(0))
    side.send(w, b"p")
    side.send(a, b"s")
    log.record(lambda: ep.poll(0))
    side.close(w)
    log.record(lambda: ep.poll(0))
    with open(os.devnull) as regular:
        log.record(lambda: ep.register(regular, IN))  # epoll refuses regular files
    log.record(lambda: ep.register(ep.fileno(), IN))  # and itself
    ep.close()


def epoll_duplicate_numbers(side, log: Log) -> None:
    """Linux keys entries by file and number: two numbers of one socket are two
    entries, and one whose number was closed while a duplicate keeps the socket open
    is still reported, and can no longer be removed."""
    [(a, b), (c, d)] = _pairs(side, log, 2)
    twin = side.dup(b)
    log.name(twin, "twin")
    ep = side.module.epoll()
    log.record(lambda: ep.register(b, IN))
    log.record(lambda: ep.register(twin, IN | ET))
    log.record(lambda: ep.register(twin, IN))
    side.send(a, b"x")
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.unregister(twin))
    log.record(lambda: ep.register(twin, IN))
    side.close(b)  # the socket stays open: twin names it
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.unregister(b))  # EBADF: and the entry stays
    log.record(lambda: ep.poll(0))
    side.dup2(d, b)  # b names another socket now: the old entry still reports as b
    log.record(lambda: ep.modify(b, IN))
    log.record(lambda: ep.poll(0))
    side.close(b)
    side.dup2(twin, b)  # b names the first socket again: its entry is there
    log.record(lambda: ep.register(b, IN))
    log.record(lambda: ep.unregister(b))
    log.record(lambda: ep.poll(0))
    side.close(twin)
    side.close(b)
    side.close(c)
    log.record(lambda: ep.poll(0))
    ep.close()


def epoll_listener(side, log: Log) -> None:
    server = side.listener()
    if server is None:  # an AF_UNIX side has pairs only
        return
    log.name(server, "server")
    ep = side.module.epoll()
    log.record(lambda: ep.register(server, IN | OUT))
    log.record(lambda: ep.poll(0))
    log.name(side.connect(), "client")
    log.record(lambda: ep.poll(0))
    accepted = side.accept()
    log.name(accepted, "accepted")
    log.record(lambda: ep.poll(0))
    log.record(lambda: ep.register(accepted, IN | OUT | RDHUP))
    log.record(lambda: ep.poll(0))
    ep.close()


def epoll_nested(side, log: Log) -> None:
    """An epoll's own number in the kernel's epoll: readable while it has events.
    (The drop-in's stays readable after the data is read until it is polled itself,
    which a nested poller does next anyway; this scenario polls it first.)"""
    [(a, b)] = _pairs(side, log, 1)
    inner = side.module.epoll()
    outer = select.epoll()
    log.record(lambda: inner.register(b, IN))
    log.name(inner.fileno(), "inner")
    log.record(lambda: outer.register(inner.fileno(), IN))
    log.record(lambda: outer.poll(0))
    side.send(a, b"x")
    log.record(lambda: outer.poll(0))
    log.record(lambda: inner.poll(0))
    log.record(lambda: outer.poll(0))  # level-triggered: still there
    side.recv(b, 10)
    log.record(lambda: inner.poll(0))
    log.record(lambda: outer.poll(0))
    waiter = threading.Timer(0.05, side.send, (a, b"y"))
    waiter.start()
    log.record(lambda: outer.poll(JOIN))  # woken by a change in another thread
    waiter.join()
    log.record(lambda: inner.poll(0))
    outer.close()
    inner.close()


# -- poll and select scenarios ---------------------------------------------------------

def poll_objects(side, log: Log) -> None:
    [(a, b), (c, d)] = _pairs(side, log, 2)
    p = side.module.poll()
    log.record(lambda: p.modify(a, IN))
    log.record(lambda: p.unregister(a))
    log.record(lambda: p.register(a))
    log.record(lambda: p.register(b, select.POLLIN))
    log.record(lambda: p.poll(0))
    side.send(a, b"x")
    log.record(lambda: p.poll(1.5))
    log.record(lambda: p.register(b, select.POLLOUT))  # registering again replaces
    log.record(lambda: p.modify(a, select.POLLIN))
    log.record(lambda: p.poll(0))
    log.record(lambda: p.unregister(b))
    log.record(lambda: p.unregister(b))
    for call in (lambda: p.register(a, 2**16), lambda: p.register(a, -1),
                 lambda: p.register(a, "x"), lambda: p.register(-1),
                 lambda: p.modify(a, 2**16), lambda: p.modify(-5, IN),
                 lambda: p.unregister(-5), lambda: p.poll("x"), lambda: p.poll(2**40),
                 lambda: p.poll(float("nan"))):
        log.record(call)
    log.record(lambda: p.register(d, select.POLLIN))
    side.close(c)
    log.record(lambda: p.poll(0))
    side.close(d)
    log.record(lambda: p.poll(0))  # a closed number: POLLNVAL
    log.record(lambda: p.unregister(d))


def select_calls(side, log: Log) -> None:
    [(a, b), (c, d)] = _pairs(side, log, 2)
    module = side.module
    log.record(lambda: module.select([b, d], [a], [], 0))
    side.send(a, b"x")
    log.record(lambda: module.select([b, d, b], [a, c], [b], 0))  # duplicates stay
    side.shutdown(c, socket.SHUT_WR)
    log.record(lambda: module.select([b, d], [], [], 0.001))
    for call in (lambda: module.select([b], [], [], -1), lambda: module.select([b], [], [], "x"),
                 lambda: module.select(b, [], []), lambda: module.select(["x"], [], [], 0),
                 lambda: module.select([-1], [], [], 0),
                 lambda: module.select([5000], [], [], 0),
                 lambda: module.select([b], [], [], float("nan"))):
        log.record(call)
    side.close(d)
    log.record(lambda: module.select([b, d], [], [], 0))


SCENARIOS = [epoll_level_triggered, epoll_edge_triggered, epoll_oneshot, epoll_exclusive,
             epoll_errors, epoll_close_leaves_the_list, epoll_hangups_and_writable,
             epoll_maxevents, epoll_pipes_with_sockets, epoll_duplicate_numbers,
             epoll_listener, epoll_nested,
             poll_objects, select_calls]


def _run(scenario, side) -> list:
    log = Log()
    try:
        scenario(side, log)
    finally:
        side.finish()
    return log.entries


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_dropin_reports_what_the_kernel_reports(scenario, family: str, layer: str) -> None:
    expected = _run(scenario, KernelSide(FAMILIES[family]))
    found = _run(scenario, LayerSide(FAMILIES[family], LAYERS[layer]))
    assert found == expected


# -- threads, signals, closing ---------------------------------------------------------

def _waiting(target: Callable[[], Any]) -> tuple[threading.Thread, list]:
    """Run ``target`` in a thread; give it time to block."""
    got: list = []
    thread = threading.Thread(target=lambda: got.append(target()), daemon=True)
    thread.start()
    time.sleep(0.05)
    return thread, got


@pytest.fixture(params=["kernel", "virtual"])
def side(request):
    made = (KernelSide if request.param == "kernel" else LayerSide)(socket.AF_UNIX)
    yield made
    made.finish()


def test_a_wait_is_ended_by_data_from_another_thread(side) -> None:
    a, b = side.pair()
    r, w = side.pipe()
    ep = side.module.epoll()
    ep.register(b, IN)
    ep.register(r, IN)
    thread, got = _waiting(lambda: ep.poll(JOIN))
    side.send(a, b"x")
    thread.join(JOIN)
    assert got == [[(b, IN)]]
    side.recv(b, 1)
    thread, got = _waiting(lambda: ep.poll(JOIN))  # and by a kernel descriptor
    side.send(w, b"x")
    thread.join(JOIN)
    assert got == [[(r, IN)]]
    ep.close()


def test_registering_a_ready_socket_from_another_thread_ends_a_wait(side) -> None:
    a, b = side.pair()
    side.send(a, b"x")
    r, _ = side.pipe()
    ep = side.module.epoll()
    ep.register(r, IN)  # something in the list, nothing ready
    thread, got = _waiting(lambda: ep.poll(JOIN))
    ep.register(b, IN)
    thread.join(JOIN)
    assert got == [[(b, IN)]]
    ep.close()


def test_a_virtual_registration_ends_a_wait_over_kernel_descriptors_only() -> None:
    side = LayerSide(socket.AF_UNIX)
    try:
        a, b = side.pair()
        side.send(a, b"x")
        r, _ = side.pipe()
        ep = dropin.epoll()
        ep.register(r, IN)  # the kernel's epoll alone so far: the first virtual one
        thread, got = _waiting(lambda: ep.poll(JOIN))  # must reach a wait in progress
        ep.register(b, IN)
        thread.join(JOIN)
        assert got == [[(b, IN)]]
        ep.close()
    finally:
        side.finish()


def test_unregistered_from_another_thread_is_not_reported(side) -> None:
    a, b = side.pair()
    ep = side.module.epoll()
    ep.register(b, IN)
    thread, got = _waiting(lambda: ep.poll(0.3))
    ep.unregister(b)
    side.send(a, b"x")
    thread.join(JOIN)
    assert got == [[]]
    ep.close()


def test_closing_a_registered_socket_while_waiting_removes_it_quietly(side) -> None:
    """As epoll: the close does not end the wait, and the socket leaves the list."""
    (_, b), (c, d) = side.pair(), side.pair()
    ep = side.module.epoll()
    ep.register(b, IN)
    ep.register(d, IN)
    thread, got = _waiting(lambda: ep.poll(JOIN))
    side.close(b)
    time.sleep(0.1)
    assert got == [] and thread.is_alive()
    side.send(c, b"y")
    thread.join(JOIN)
    assert got == [[(d, IN)]]
    with pytest.raises(OSError) as info:
        ep.unregister(b)
    assert info.value.errno == errno.EBADF
    ep.close()


def test_two_threads_waiting_on_one_epoll_each_get_an_edge(side) -> None:
    (a, b), (c, d) = side.pair(), side.pair()
    ep = side.module.epoll()
    ep.register(b, IN | ET)
    ep.register(d, IN | ET)
    first, got_first = _waiting(lambda: ep.poll(JOIN))
    second, got_second = _waiting(lambda: ep.poll(JOIN))
    side.send(a, b"x")
    time.sleep(0.05)
    side.send(c, b"y")
    first.join(JOIN)
    second.join(JOIN)
    assert sorted(got_first + got_second) == [[(b, IN)], [(d, IN)]]
    ep.close()


def test_registrations_from_many_threads_while_others_wait() -> None:
    """No deadlock, no lost or foreign event: each worker churns its own sockets in
    one epoll (virtual and kernel), two threads keep waiting on it."""
    side = LayerSide(socket.AF_UNIX, ("virtual", "outside"))
    try:
        pairs = [side.pair() for _ in range(8)]
        ep = dropin.epoll()
        stop = threading.Event()
        errors: list[BaseException] = []
        mine = {b for _, b in pairs}

        def wait() -> None:
            while not stop.is_set():
                for fd, _ in ep.poll(0.01):
                    if fd not in mine:
                        errors.append(AssertionError(f"foreign {fd}"))

        def churn(a: int, b: int) -> None:
            try:
                for _ in range(150):
                    ep.register(b, IN)
                    side.send(a, b"x")
                    ep.modify(b, IN | ET)
                    side.recv(b, 1)
                    ep.unregister(b)
            except BaseException as exc:
                errors.append(exc)

        waiters = [threading.Thread(target=wait) for _ in range(2)]
        workers = [threading.Thread(target=churn, args=pair) for pair in pairs]
        for thread in waiters + workers:
            thread.start()
        for thread in workers:
            thread.join(JOIN * 3)
        stop.set()
        for thread in waiters:
            thread.join(JOIN)
        assert not errors
        assert not any(thread.is_alive() for thread in waiters + workers)
        assert ep.poll(0) == []
        ep.close()
    finally:
        side.finish()


@pytest.mark.parametrize("what", ["epoll", "epoll-mixed", "poll", "select"])
def test_ctrl_c_interrupts_a_wait(what: str) -> None:
    side = LayerSide(socket.AF_UNIX)
    try:
        _, b = side.pair()
        r, _ = side.pipe()
        if what.startswith("epoll"):
            ep = dropin.epoll()
            ep.register(b, IN)
            if what == "epoll-mixed":
                ep.register(r, IN)
            wait = lambda: ep.poll(JOIN)  # noqa: E731
        elif what == "poll":
            p = dropin.poll()
            p.register(b, select.POLLIN)
            wait = lambda: p.poll(JOIN * 1000)  # noqa: E731
        else:
            wait = lambda: dropin.select([b], [], [], JOIN)  # noqa: E731
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
        start = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            wait()
        timer.join()
        assert time.monotonic() - start < JOIN / 2
    finally:
        side.finish()


def test_timeouts_wait_as_long_as_asked(side) -> None:
    _, b = side.pair()
    r, _ = side.pipe()
    ep = side.module.epoll()
    ep.register(b, IN)
    ep.register(r, IN)
    p = side.module.poll()
    p.register(b, select.POLLIN)
    for wait in (lambda: ep.poll(0.05), lambda: ep.poll(0.05, 1), lambda: p.poll(50),
                 lambda: p.poll(50.0), lambda: side.module.select([b, r], [], [], 0.05)):
        start = time.monotonic()
        assert wait() in ([], ([], [], []))
        assert 0.045 <= time.monotonic() - start < 2
    ep.close()


def test_concurrent_poll_on_one_poll_object_is_refused_as_the_stdlib_does(side) -> None:
    _, b = side.pair()
    p = side.module.poll()
    p.register(b, select.POLLIN)
    thread, _ = _waiting(lambda: p.poll(300))
    with pytest.raises(RuntimeError, match="concurrent poll"):
        p.poll(0)
    thread.join(JOIN)


# -- idle sockets, numbers kept inside the layer ---------------------------------------

def test_a_wait_over_ten_thousand_idle_virtual_sockets_costs_what_is_ready() -> None:
    with ps.use("virtual"):
        pairs = [posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM, visible=False)
                 for _ in range(5000)]
        try:
            big, small = dropin.epoll(), dropin.epoll()
            for a, b in pairs:
                big.register(a, IN)
                big.register(b, IN)
            for a, b in pairs[:5]:
                small.register(a, IN)
                small.register(b, IN)
            assert big.poll(0) == [] and small.poll(0) == []
            a, b = pairs[3]
            posix.send(a, b"x")

            def per_wait(ep) -> float:
                best = float("inf")
                for _ in range(5):
                    start = time.perf_counter()
                    for _ in range(200):
                        assert ep.poll(0) == [(b, IN)]
                    best = min(best, time.perf_counter() - start)
                return best / 200

            assert per_wait(big) < 3 * per_wait(small) + 20e-6
            posix.recv(b, 1)
            thread, got = _waiting(lambda: big.poll(JOIN))  # a blocking wait, woken
            posix.send(a, b"y")
            thread.join(JOIN)
            assert got == [[(b, IN)]]
            # None of them was shown to the kernel: no mirror was armed.
            assert all(descriptors.lookup(fd).watch.mirror is None
                       for pair in pairs for fd in pair)
            big.close()
            small.close()
        finally:
            for pair in pairs:
                for fd in pair:
                    posix.close(fd)


def test_dropin_sockets_are_watched_without_arming_their_mirror() -> None:
    from posix_socket import socket as dropin_socket
    with ps.use("virtual"):
        a, b = dropin_socket.socketpair()  # kernel pair: the drop-in's AF_UNIX
        server = dropin_socket.create_server(("127.0.0.1", 0))
        client = dropin_socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        try:
            client.sendall(b"x")
            ep = dropin.epoll()
            ep.register(conn, IN)
            p = dropin.poll()
            p.register(conn, select.POLLIN)
            number = conn._number()
            assert ep.poll(0) == [(number, IN)]
            assert p.poll(0) == [(number, IN)]
            assert dropin.select([conn], [], [], 0) == ([conn], [], [])
            assert descriptors.lookup(number).watch.mirror is None
            ep.close()
        finally:
            for sock in (a, b, server, client, conn):
                sock.close()


def test_epoll_fromfd_and_the_object_surface() -> None:
    with ps.use("virtual"):
        a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            kernel = select.epoll()
            ep = dropin.epoll.fromfd(os.dup(kernel.fileno()))
            kernel.close()
            assert not ep.closed and ep.fileno() >= 0
            ep.register(b, IN)
            posix.send(a, b"x")
            assert ep.poll(0) == [(b, IN)]
            with ep as same:
                assert same is ep
            assert ep.closed
            with pytest.raises(ValueError, match="closed epoll"):
                ep.poll(0)
            with pytest.raises(ValueError, match="negative sizehint"):
                dropin.epoll(0)
            with pytest.raises(OSError, match="invalid flags"):
                dropin.epoll(flags=5)
        finally:
            posix.close(a)
            posix.close(b)


def test_the_module_has_every_public_name_of_the_stdlibs() -> None:
    public = {name for name in dir(select) if not name.startswith("_")}
    assert public <= set(dir(dropin))
    assert public == set(dropin.__all__)
    for name in public:
        if name.isupper():
            assert getattr(dropin, name) == getattr(select, name)
    assert dropin.error is OSError
