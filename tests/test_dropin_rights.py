"""Sockets passed over the drop-in's socketpair(), which is always the kernel's.

Programs hand connections to other threads over a socketpair (send_fds, sendmsg with
SCM_RIGHTS), and under the virtual preset those connections are virtual.  Each
scenario runs on the host preset (the kernel passes its own sockets: the reference)
and on virtual, and must observe the same thing.
"""

from __future__ import annotations

import array
import os
import socket
from collections.abc import Iterator

import pytest

import posix_socket as ps
from posix_socket.patching import patch

PRESETS = ["host", "virtual"]


@pytest.fixture(params=PRESETS)
def connection(request: pytest.FixtureRequest) -> Iterator[tuple]:
    """A patched stdlib on the preset, a kernel socketpair and a TCP connection."""
    with ps.use(request.param), patch():
        left, right = socket.socketpair()
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        server.close()
        with left, right, accepted:
            yield left, right, client, accepted
        client.close()


def test_a_passed_connection_works_after_the_sender_closes_its_own(connection: tuple) -> None:
    left, right, client, accepted = connection
    name = client.getsockname()
    assert socket.send_fds(left, [b"take it"], [client.fileno()]) == 7
    client.close()
    data, fds, _flags, _addr = socket.recv_fds(right, 100, 4)
    assert data == b"take it" and len(fds) == 1
    with socket.socket(fileno=fds[0]) as passed:
        assert passed.getsockname() == name
        passed.sendall(b"ping")
        assert accepted.recv(10) == b"ping"
        accepted.sendall(b"pong")
        assert passed.recv(10) == b"pong"
    assert accepted.recv(10) == b""  # the last reference went: the peer sees EOF


def test_a_peek_gives_a_second_number_for_the_same_socket(connection: tuple) -> None:
    left, right, client, accepted = connection
    socket.send_fds(left, [b"x"], [client.fileno()])
    client.close()
    space = socket.CMSG_SPACE(array.array("i").itemsize)
    _, peeked, _, _ = right.recvmsg(1, space, socket.MSG_PEEK)
    _, taken, _, _ = right.recvmsg(1, space)
    first = array.array("i", peeked[0][2]).tolist()[0]
    second = array.array("i", taken[0][2]).tolist()[0]
    assert first != second
    with socket.socket(fileno=first) as a, socket.socket(fileno=second) as b:
        a.sendall(b"1")
        b.sendall(b"2")
        assert accepted.recv(10) in (b"12", b"1")
    assert accepted.recv(10) in (b"", b"2")


def test_kernel_descriptors_beside_a_virtual_one_keep_their_places(connection: tuple) -> None:
    left, right, client, accepted = connection
    read_end, write_end = os.pipe()
    try:
        socket.send_fds(left, [b"two"], [read_end, client.fileno()])
        _, fds, _, _ = socket.recv_fds(right, 10, 4)
        os.write(write_end, b"pipe")
        assert os.read(fds[0], 10) == b"pipe"
        os.close(fds[0])
        with socket.socket(fileno=fds[1]) as passed:
            passed.sendall(b"sock")
            assert accepted.recv(10) == b"sock"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_message_that_was_not_sent_keeps_nothing_open(connection: tuple) -> None:
    left, _right, client, accepted = connection
    closed, other = os.pipe()
    os.close(closed)
    os.close(other)
    with pytest.raises(OSError) as caught:
        socket.send_fds(left, [b"x"], [client.fileno(), closed])
    assert caught.value.errno == 9  # EBADF, from the kernel, for the closed number
    client.close()
    assert accepted.recv(10) == b""
