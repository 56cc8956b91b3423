"""A drop-in socket whose number was closed behind its back (``os.close(s.fileno())``).

The stdlib's socket object keeps the integer: ``fileno()`` still answers it, ``repr``
shows it, ``close()`` says EBADF once and then the object is closed (-1).  The kernel
socket itself is gone with the number, so its address is free again.  The same calls
run on the kernel, the host preset and the virtual network (IPv4 and AF_UNIX).
"""

from __future__ import annotations

import errno
import os
import socket as stdlib
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest

import posix_socket as ps
from posix_socket import socket as dropin

_names = count()


def address_for(family: int) -> Any:
    if family == stdlib.AF_UNIX:
        return f"\0posix-socket-behind-our-back-{os.getpid()}-{next(_names)}"
    with stdlib.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()


def outcome(call: Any) -> Any:
    try:
        return call()
    except OSError as exc:
        return ("error", exc.errno)


def closed_listener(module: Any, family: int, reuse_number: bool) -> list:
    address = address_for(family)
    sock = module.socket(family, stdlib.SOCK_STREAM)
    if family != stdlib.AF_UNIX:
        sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen()
    number = sock.fileno()
    os.close(number)
    seen = []
    if reuse_number:  # another socket takes the number and gives it back
        other = module.socket(family, stdlib.SOCK_STREAM)
        seen.append(other.fileno() == number)
        other.close()
    seen.append(sock.fileno() == number)
    seen.append(f"fd={number}," in repr(sock))
    seen.append(outcome(sock.close))
    seen.append(sock.fileno())
    seen.append(outcome(sock.close))  # closed now: nothing more to say
    again = module.socket(family, stdlib.SOCK_STREAM)
    if family != stdlib.AF_UNIX:
        again.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR, 1)
    seen.append(outcome(lambda: again.bind(address)))  # the listener is gone
    again.close()
    return seen


@pytest.fixture(params=[stdlib.AF_INET, stdlib.AF_UNIX], ids=["inet", "unix"])
def family(request) -> int:
    return request.param


@pytest.fixture(params=["host", "virtual"])
def layer(request) -> Iterator[str]:
    with ps.use(request.param):
        yield request.param


@pytest.mark.parametrize("reuse_number", [False, True], ids=["kept", "reused"])
def test_fileno_and_close_after_the_number_was_closed_behind_the_socket(family, layer,
                                                                       reuse_number):
    kernel = closed_listener(stdlib, family, reuse_number)
    assert kernel[-6:] == [True, True, ("error", errno.EBADF), -1, None, None]
    assert closed_listener(dropin, family, reuse_number) == kernel


def calls_after_os_close(family: int) -> list:
    """A connected socket whose number the program closes with ``os.close``; every
    later call on it (the socket module as the program sees it)."""
    if family == stdlib.AF_UNIX:
        sock, peer = stdlib.socketpair()
        others: list = []
    else:
        listener = stdlib.create_server(("127.0.0.1", 0))
        sock = stdlib.create_connection(listener.getsockname())
        peer, _ = listener.accept()
        others = [listener]
    number = sock.fileno()
    os.close(number)
    seen = [outcome(lambda: sock.send(b"x")), outcome(lambda: sock.recv(1)),
            outcome(lambda: sock.getsockname() and None),
            outcome(lambda: sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_KEEPALIVE, 1)),
            outcome(lambda: sock.shutdown(stdlib.SHUT_RDWR)),
            sock.fileno() == number, outcome(sock.close), sock.fileno()]
    for each in (peer, *others):
        each.close()
    return seen


def test_calls_after_os_close_fail_as_on_linux_under_patch(family, layer):
    """Under ``patch()`` (as under ``run``) ``os.close`` goes through the layer: the
    socket's later calls fail with EBADF as the kernel's do."""
    kernel = calls_after_os_close(family)
    assert kernel[0] == ("error", errno.EBADF)
    with ps.patch():
        assert calls_after_os_close(family) == kernel
