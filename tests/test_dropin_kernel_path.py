"""Drop-in sockets over kernel sockets call the kernel on their own number.

The number of a kernel socket in the layer is a duplicate of the host driver's
descriptor, so the drop-in's hot methods use the C base's calls on it directly.  These
tests run the same calls on the stdlib's sockets and on drop-in sockets of the host
preset and compare what each sees: the timeouts and O_NONBLOCK as fcntl reads them on
the number, errors after close and detach, and a number that dup2 pointed at another
socket (the calls must follow it, virtual or kernel, as they do on the kernel).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket

import pytest

import posix_socket as ps
from posix_socket import posix
from posix_socket import socket as dropin


def _nonblocking(sock: socket.socket) -> bool:
    return bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)


def _timeouts_seen(module) -> list:
    a, b = module.socketpair()
    seen: list = []
    with a, b:
        for setting in (0.05, 0.0, None, 2.0):
            a.settimeout(setting)
            seen.append((a.gettimeout(), a.getblocking(), _nonblocking(a)))
            if setting == 0.0:
                with pytest.raises(BlockingIOError) as raised:
                    a.recv(1)
                seen.append(raised.value.errno)
            elif setting == 0.05:
                with pytest.raises(TimeoutError) as raised:
                    a.recv(1)
                seen.append(str(raised.value))
                with pytest.raises(TimeoutError):
                    a.recv_into(bytearray(1))
            else:
                b.sendall(b"ab")
                buffer = bytearray(2)
                seen.append((a.recv(1), a.recv_into(buffer, 1), bytes(buffer)))
        a.setblocking(True)
        seen.append(_nonblocking(a))
    return seen


def test_timeouts_and_o_nonblock_of_a_kernel_drop_in_match_the_stdlib():
    expected = _timeouts_seen(socket)
    with ps.use("host"):
        assert _timeouts_seen(dropin) == expected


def test_default_timeout_reaches_a_kernel_drop_in_as_the_stdlib():
    previous = socket.getdefaulttimeout()
    seen = []
    try:
        socket.setdefaulttimeout(0.05)
        for module in (socket, dropin):
            with ps.use("host"):
                a, b = module.socketpair()
            with a, b:
                with pytest.raises(TimeoutError):
                    a.recv(1)
                seen.append((a.gettimeout(), _nonblocking(a)))
    finally:
        socket.setdefaulttimeout(previous)
    assert seen[0] == seen[1] == (0.05, True)


CALLS = [("send", b"x"), ("recv", 1), ("sendall", b"x"), ("recv_into", bytearray(1)),
         ("settimeout", 1)]


def _errors_after_closing(module) -> list:
    errors = []
    for end in ("close", "detach"):
        a, b = module.socketpair()
        b.close()
        number = getattr(a, end)()
        for method, argument in CALLS:
            with pytest.raises(OSError) as raised:
                getattr(a, method)(argument)
            errors.append((type(raised.value), raised.value.errno))
        if end == "detach":
            posix.close(number)
    return errors


def test_closed_or_detached_kernel_drop_in_raises_ebadf_as_the_stdlib():
    expected = _errors_after_closing(socket)
    assert expected[0] == (OSError, errno.EBADF)
    with ps.use("host"):
        got = _errors_after_closing(dropin)
    assert got == expected


def test_a_kernel_drop_in_follows_its_number_when_dup2_points_it_at_a_virtual_socket():
    # On the kernel: after dup2, a socket object's calls reach what its number names.
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    os.dup2(c.fileno(), a.fileno())
    a.send(b"to c")
    assert d.recv(10) == b"to c"
    for sock in (a, b, c, d):
        sock.close()

    with ps.use("virtual"):
        a, b = dropin.socketpair()  # a kernel pair under every preset
        c, d = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)  # virtual
        assert a.send(b"before") == 6 and b.recv(10) == b"before"  # the direct path
        posix.dup2(c, a.fileno())
        assert a.send(b"to c") == 4
        assert posix.recv(d, 10) == b"to c"
        posix.send(d, b"to a")
        assert a.recv(10) == b"to a"
        for sock in (a, b):
            sock.close()
        for number in (c, d):
            posix.close(number)


def test_a_kernel_drop_in_follows_its_number_when_dup2_points_it_at_another_kernel_socket():
    with ps.use("host"):
        a, b = dropin.socketpair()
        c, d = dropin.socketpair()
        assert a.send(b"before") == 6 and b.recv(10) == b"before"
        posix.dup2(c.fileno(), a.fileno())
        a.settimeout(0.05)
        a.sendall(b"to c")
        assert d.recv(10) == b"to c"
        with pytest.raises(TimeoutError):
            a.recv(1)
        for sock in (a, b, c, d):
            sock.close()
