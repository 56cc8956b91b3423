"""Closing a socket while another thread is blocked on it: the kernel is the oracle.

On Linux a call holds a reference to the open file it started on, so closing the
descriptor in another thread does not end a blocked recv, accept or send: the call goes
on until data, a connection, room, the peer's close or a shutdown.  poll and select hold
their files too: the close does not wake them, and the next look (an event, the
timeout) finds the number gone: poll says POLLNVAL, select calls it ready.  CPython's
socket with a timeout retries on its own number, now -1: EBADF.

Each scenario runs on the kernel (the stdlib), on the host preset and on the virtual
network (IPv4 and AF_UNIX), through the drop-in objects, and the outcomes must be equal.
"""

from __future__ import annotations

import os
import select as stdlib_select
import socket as stdlib
import threading
import time
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

import pytest

import posix_socket as ps
from posix_socket import select as dropin_select
from posix_socket import socket as dropin

PAUSE = 0.05  # seconds a blocked call is given to prove it is still waiting
JOIN = 10.0
_names = count()


class Net:
    """One network's socket and select modules, and how to make a connected pair."""

    def __init__(self, sockets: Any, selects: Any, family: int) -> None:
        self.sockets, self.selects, self.family = sockets, selects, family

    def listener(self) -> tuple[Any, Any]:
        sock = self.sockets.socket(self.family, stdlib.SOCK_STREAM)
        if self.family == stdlib.AF_UNIX:
            sock.bind(f"\0posix-socket-close-while-blocked-{next(_names)}")
        else:
            sock.bind(("127.0.0.1", 0))
        sock.listen()
        return sock, sock.getsockname()

    def pair(self) -> tuple[Any, Any]:
        listener, address = self.listener()
        with listener:
            client = self.sockets.socket(self.family, stdlib.SOCK_STREAM)
            client.connect(address)
            server, _ = listener.accept()
        return client, server


class Blocked:
    """A call in its own thread."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.outcome: Any = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()
        time.sleep(PAUSE)  # into the kernel's (or the layer's) wait

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.outcome = call()
        except OSError as exc:
            self.outcome = ("error", exc.errno)

    def waiting(self) -> bool:
        time.sleep(PAUSE)
        return self.thread.is_alive()

    def result(self) -> Any:
        self.thread.join(JOIN)
        assert not self.thread.is_alive(), "the blocked call never ended"
        return self.outcome


def recv_then_data(net: Net) -> tuple:
    a, b = net.pair()
    call = Blocked(lambda: b.recv(100))
    b.close()
    waiting = call.waiting()
    a.sendall(b"data")
    outcome = call.result()
    a.close()
    return waiting, outcome


def recv_then_peer_close(net: Net) -> tuple:
    a, b = net.pair()
    call = Blocked(lambda: b.recv(100))
    b.close()
    waiting = call.waiting()
    a.close()
    return waiting, call.result()


def recv_then_shutdown_of_a_duplicate(net: Net) -> tuple:
    a, b = net.pair()
    copy = b.dup()
    call = Blocked(lambda: b.recv(100))
    b.close()
    waiting = call.waiting()
    copy.shutdown(stdlib.SHUT_RDWR)
    outcome = call.result()
    copy.close()
    a.close()
    return waiting, outcome


def accept_then_connect(net: Net) -> tuple:
    listener, address = net.listener()
    call = Blocked(lambda: listener.accept()[0])
    listener.close()
    waiting = call.waiting()
    client = net.sockets.socket(net.family, stdlib.SOCK_STREAM)
    client.connect(address)
    accepted = call.result()
    client.sendall(b"hi")
    outcome = accepted.recv(10)  # a working connection
    accepted.close()
    client.close()
    return waiting, outcome


def send_then_drain(net: Net) -> tuple:
    a, b = net.pair()
    a.setblocking(False)
    try:
        while True:
            a.send(b"x" * 65536)
    except BlockingIOError:
        pass
    a.setblocking(True)
    call = Blocked(lambda: a.send(b"y" * 100))
    a.close()
    waiting = call.waiting()
    b.setblocking(False)
    got = b""
    deadline = time.monotonic() + JOIN
    while not got.endswith(b"y" * 100) and time.monotonic() < deadline:
        try:
            chunk = b.recv(1 << 20)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        if not chunk:
            break
        got += chunk
    outcome = call.result()
    b.close()
    return waiting, outcome, got.endswith(b"y" * 100)


def poll_then_data(net: Net) -> tuple:
    a, b = net.pair()
    number = b.fileno()
    poller = net.selects.poll()
    poller.register(number, stdlib_select.POLLIN)
    call = Blocked(lambda: poller.poll(JOIN * 1000))
    b.close()
    waiting = call.waiting()
    a.sendall(b"x")
    outcome = [(fd == number, revents) for fd, revents in call.result()]
    a.close()
    return waiting, outcome


def select_then_data(net: Net) -> tuple:
    a, b = net.pair()
    number = b.fileno()
    call = Blocked(lambda: net.selects.select([number], [], [], JOIN))
    b.close()
    waiting = call.waiting()
    a.sendall(b"x")
    outcome = call.result()
    a.close()
    return waiting, outcome == ([number], [], [])


def recv_with_timeout_then_data(net: Net) -> tuple:
    a, b = net.pair()
    b.settimeout(JOIN)
    call = Blocked(lambda: b.recv(100))
    b.close()
    waiting = call.waiting()
    a.sendall(b"data")
    outcome = call.result()
    a.close()
    return waiting, outcome


SCENARIOS = [recv_then_data, recv_then_peer_close, recv_then_shutdown_of_a_duplicate,
             accept_then_connect, send_then_drain, poll_then_data, select_then_data,
             recv_with_timeout_then_data]


@pytest.fixture(params=[stdlib.AF_INET, stdlib.AF_UNIX], ids=["inet", "unix"])
def family(request) -> int:
    return request.param


@pytest.fixture(params=["host", "virtual"])
def layer(request, family) -> Iterator[Net]:
    with ps.use(request.param):
        yield Net(dropin, dropin_select, family)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_close_in_another_thread_leaves_the_call_as_linux_does(scenario, family, layer):
    kernel = scenario(Net(stdlib, stdlib_select, family))
    assert kernel[0] is True  # the oracle itself: the close did not end the call
    assert scenario(layer) == kernel


def test_the_socket_is_released_once_the_blocked_call_ends():
    """The waiting call keeps the socket open; when it ends, the close it missed takes
    effect: the peer sees EOF, and the number is free for the next socket."""
    with ps.use("virtual"):
        net = Net(dropin, dropin_select, stdlib.AF_INET)
        a, b = net.pair()
        number = b.fileno()
        read_end, write_end = os.pipe()
        call = Blocked(lambda: b.recv(100))
        b.close()
        os.dup2(read_end, number)  # the freed number names a pipe now: no confusion
        assert call.waiting()
        a.settimeout(JOIN)
        a.sendall(b"data")
        assert call.result() == b"data"
        assert a.recv(10) == b""  # the missed close happened when the call ended
        os.write(write_end, b"pipe")
        assert os.read(number, 10) == b"pipe"
        for fd in (number, read_end, write_end):
            os.close(fd)
        a.close()
