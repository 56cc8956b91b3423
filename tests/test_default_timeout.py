"""``socket.setdefaulttimeout`` reaches the program's sockets, never the layer's own.

A program's sockets get the default timeout exactly where the stdlib gives it (new
sockets, socketpair, accepted sockets, create_connection), on every preset.  The
kernel sockets the host driver keeps inside the layer must not: the layer does the
waiting, so a default of 1 s there made a recv with its own 0.1 s timeout wait 1 s, and
a blocking posix call give up after the default.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

import posix_socket as ps
from posix_socket import posix
from posix_socket import socket as dropin

DEFAULT = 2.0  # long enough that waiting it by mistake is plain on a loaded machine


@pytest.fixture
def default_timeout():
    socket.setdefaulttimeout(DEFAULT)
    try:
        yield DEFAULT
    finally:
        socket.setdefaulttimeout(None)


def _connections(module) -> dict[str, socket.socket]:
    """One socket of every way a program gets one, through ``module``'s names."""
    listener = module.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = module.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    left, right = module.socketpair()
    return {"listener": listener, "create_connection": client, "accepted": accepted,
            "socketpair": left, "socketpair peer": right,
            "nonblocking": module.socket(type=socket.SOCK_STREAM | socket.SOCK_NONBLOCK),
            "udp": module.socket(socket.AF_INET, socket.SOCK_DGRAM)}


def _close(sockets: dict[str, socket.socket]) -> None:
    for sock in sockets.values():
        sock.close()


@pytest.mark.parametrize("preset", ["host", "virtual"])
def test_sockets_get_the_default_timeout_where_the_stdlib_gives_it(preset, default_timeout):
    expected_sockets = _connections(socket)
    expected = {name: sock.gettimeout() for name, sock in expected_sockets.items()}
    _close(expected_sockets)
    with ps.use(preset):
        sockets = _connections(dropin)
        try:
            got = {name: sock.gettimeout() for name, sock in sockets.items()}
            blocking = {name: os.get_blocking(sock.fileno()) for name, sock in sockets.items()}
        finally:
            _close(sockets)
    assert got == expected
    assert expected["accepted"] == DEFAULT  # the case is really tested
    # As the stdlib's, a socket with a timeout has a non-blocking number.
    assert blocking == dict.fromkeys(got, False)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("preset", ["host", "virtual"])
def test_a_sockets_own_timeout_is_not_stretched_by_the_default(preset, default_timeout):
    with ps.use(preset), ps.patch():
        sockets = _connections(socket)
        try:
            for name in ("create_connection", "accepted", "socketpair", "udp"):
                sock = sockets[name]
                sock.settimeout(0.1)
                if name == "udp":
                    sock.bind(("127.0.0.1", 0))
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    sock.recv(10)
                assert time.monotonic() - started < DEFAULT / 2, name
        finally:
            _close(sockets)


def _send_later(sock: socket.socket, delay: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), sock.send(b"late")))
    thread.start()
    return thread


@pytest.mark.timeout(30)
@pytest.mark.parametrize("preset", ["host", "virtual"])
def test_a_socket_without_a_timeout_waits_past_the_default(preset):
    """settimeout(None) after the default was set: recv waits as long as it takes."""
    socket.setdefaulttimeout(0.2)
    try:
        with ps.use(preset):
            left, right = dropin.socketpair()
    finally:
        socket.setdefaulttimeout(None)
    with left, right:
        left.settimeout(None)
        sender = _send_later(right, 0.6)
        assert left.recv(10) == b"late"
        sender.join(10)


@pytest.mark.timeout(30)
def test_blocking_posix_calls_on_host_sockets_ignore_the_default_timeout():
    socket.setdefaulttimeout(0.2)
    try:
        with ps.use("host"):
            first, second = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    finally:
        socket.setdefaulttimeout(None)
    try:
        assert os.get_blocking(first)
        socket.setdefaulttimeout(0.2)
        thread = threading.Thread(target=lambda: (time.sleep(0.6), posix.send(second, b"x")))
        thread.start()
        assert posix.recv(first, 10) == b"x"
        thread.join(10)
    finally:
        socket.setdefaulttimeout(None)
        posix.close(first)
        posix.close(second)


@pytest.mark.parametrize("blocking", [True, False])
def test_an_outside_kernel_socket_keeps_its_blocking_mode_when_the_layer_adopts_it(
        blocking, default_timeout):
    left, right = socket.socketpair()  # the stdlib's: non-blocking under the default
    with left, right:
        os.set_blocking(left.fileno(), blocking)
        assert posix.getsockopt(left.fileno(), socket.SOL_SOCKET, socket.SO_TYPE) == (
            socket.SOCK_STREAM)
        assert os.get_blocking(left.fileno()) is blocking


@pytest.mark.timeout(30)
@pytest.mark.parametrize("blocking", [True, False])
def test_a_host_socket_moving_to_another_number_ignores_the_default_timeout(blocking):
    """The first number of a host socket closed while a dup remains: the driver's
    object moves to the dup without the default timeout touching the open file's
    O_NONBLOCK, and a blocking call on the dup still waits past the default."""
    with ps.use("host"):
        first, second = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    copy = posix.dup(first)
    socket.setdefaulttimeout(0.2)
    try:
        os.set_blocking(first, blocking)
        posix.close(first)  # the number the driver's object was on
        posix.getsockname(copy)  # a call through the object, now on the copy
        assert os.get_blocking(copy) is blocking
        if blocking:
            thread = threading.Thread(
                target=lambda: (time.sleep(0.6), posix.send(second, b"x")))
            thread.start()
            assert posix.recv(copy, 10) == b"x"
            thread.join(10)
    finally:
        socket.setdefaulttimeout(None)
        posix.close(copy)
        posix.close(second)
