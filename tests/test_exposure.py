"""Numbers handed out of the layer: armed at once while kernel pollers may watch, only
marked while none can (``descriptors.outside_pollers(False)``), armed when that ends."""

from __future__ import annotations

import select
import socket

import pytest

import posix_socket as ps
from posix_socket import descriptors, posix


@pytest.fixture
def virtual_pair():
    with ps.use("virtual"):
        a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM, visible=False)
    yield a, b
    descriptors.outside_pollers(True)
    posix.close(a)
    posix.close(b)


def _armed(fd: int) -> bool:
    return descriptors.lookup(fd).watch.mirror is not None


def test_a_number_made_visible_is_armed_while_outside_pollers_may_watch(virtual_pair):
    a, b = virtual_pair
    posix.make_visible(a)
    assert _armed(a) and not _armed(b)
    posix.send(b, b"x")
    assert select.select([a], [], [], 0)[0] == [a]  # the kernel's own select sees it


def test_without_outside_pollers_a_visible_number_is_only_marked(virtual_pair):
    a, b = virtual_pair
    descriptors.outside_pollers(False)
    posix.make_visible(a)
    assert not _armed(a)
    posix.send(b, b"x")
    assert posix.select([a], [], [], 0)[0] == [a]  # the layer's own waits see it


def test_marked_numbers_are_armed_when_outside_pollers_return(virtual_pair):
    a, b = virtual_pair
    descriptors.outside_pollers(False)
    posix.make_visible(a)
    posix.send(b, b"x")
    descriptors.outside_pollers(True)
    assert _armed(a) and not _armed(b)  # b never left the layer
    assert select.select([a], [], [], 0)[0] == [a]


def test_a_drained_tcp_socket_stops_looking_readable_to_the_kernel() -> None:
    """A receive only fades its own socket's readiness (notify_faded): nobody is
    woken for that, but the kernel mirror must follow it."""
    with ps.use("virtual"):
        server = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        posix.bind(server, ("127.0.0.1", 0))
        posix.listen(server, 1)
        client = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        posix.connect(client, posix.getsockname(server))
        accepted, _ = posix.accept(server)
    try:
        posix.send(client, b"x")
        assert select.select([accepted], [], [], 0)[0] == [accepted]
        assert posix.recv(accepted, 10) == b"x"
        assert select.select([accepted], [], [], 0)[0] == []
    finally:
        for fd in (server, client, accepted):
            posix.close(fd)
