"""accept at the process's descriptor limit, through the drop-in objects, against the kernel.

Linux's accept needs exactly one free descriptor, for the new connection.  With none
it fails with EMFILE and the connection stays queued, so poll keeps calling the
listener readable: an event loop that keeps one spare descriptor closes it, accepts
(and drops) the connection, and reopens the spare.  If the layer needed more than one,
that loop would spin.  Each scenario runs on the kernel and on the layer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import select as stdlib_select
import socket as stdlib
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest

import posix_socket as ps
from posix_socket import select as dropin_select
from posix_socket import socket as dropin

_names = count()


@contextlib.contextmanager
def exactly_free(free: int) -> Iterator[None]:
    """Lower RLIMIT_NOFILE and fill the table so that exactly ``free`` numbers remain;
    everything is given back afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    source = os.open(os.devnull, os.O_RDONLY)
    fillers: list[int] = []
    try:
        highest = max(int(name) for name in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16 + free, hard))
        while True:
            try:
                fillers.append(os.dup(source))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        for _ in range(free):
            os.close(fillers.pop())
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        os.close(source)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def listening(sockets: Any, family: int) -> Any:
    """A stream listener on a fresh loopback address of ``family``."""
    listener = sockets.socket(family, stdlib.SOCK_STREAM)
    if family == stdlib.AF_UNIX:
        listener.bind(f"\0posix-socket-limit-{os.getpid()}-{next(_names)}")
    else:
        listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def at_the_limit(sockets: Any, selects: Any, family: int) -> list:
    listener = listening(sockets, family)
    clients = []
    seen: list = []
    try:
        for _ in range(2):
            client = sockets.socket(family, stdlib.SOCK_STREAM)
            client.connect(listener.getsockname())
            client.sendall(b"hello")
            clients.append(client)
        poller = selects.poll()
        poller.register(listener.fileno(), stdlib_select.POLLIN)
        with exactly_free(0):
            try:
                listener.accept()
                seen.append("accepted with none free")
            except OSError as exc:
                seen.append(exc.errno)
            seen.append(poller.poll(0) == [(listener.fileno(), stdlib_select.POLLIN)])
        for _ in range(2):  # one free: the spare-descriptor loop's accept
            with exactly_free(1):
                try:
                    accepted, _ = listener.accept()
                except OSError as exc:
                    seen.append(exc.errno)
                    continue
            seen.append(accepted.recv(10))
            accepted.close()
        seen.append(poller.poll(0))  # both taken: nothing left to spin on
    finally:
        for client in clients:
            client.close()
        listener.close()
    return seen


@pytest.fixture(params=[stdlib.AF_INET, stdlib.AF_UNIX], ids=["inet", "unix"])
def family(request) -> int:
    return request.param


@pytest.mark.parametrize("preset", ["virtual", "host"])
def test_accept_needs_exactly_one_free_descriptor(family, preset):
    kernel = at_the_limit(stdlib, stdlib_select, family)
    assert kernel == [errno.EMFILE, True, b"hello", b"hello", []]
    with ps.use(preset):
        assert at_the_limit(dropin, dropin_select, family) == kernel


FREE = 7  # numbers left free under the lowered limit


def sockets_until_emfile(sockets: Any, family: int) -> tuple[list[int], int]:
    """With FREE numbers left, make sockets until the kernel (or the layer) says no:
    their numbers and the errno."""
    made: list[Any] = []
    try:
        with exactly_free(FREE):
            while True:
                try:
                    made.append(sockets.socket(family, stdlib.SOCK_STREAM))
                except OSError as exc:
                    code = exc.errno
                    break
        return [sock.fileno() for sock in made], code
    finally:
        for sock in made:
            sock.close()


@pytest.mark.parametrize("preset", ["host", "virtual"])
def test_as_many_sockets_as_the_kernel_before_emfile(family, preset):
    """RLIMIT_NOFILE lowered: the layer makes exactly as many sockets as the stdlib
    does on the same free numbers, on those very numbers, then says EMFILE."""
    kernel = sockets_until_emfile(stdlib, family)
    assert kernel[1] == errno.EMFILE and len(kernel[0]) == FREE
    with ps.use(preset):
        dropin.socket(family, stdlib.SOCK_STREAM).close()  # helpers made on first use
        assert sockets_until_emfile(dropin, family) == kernel


def numbers_at_the_limit(sockets: Any, family: int) -> list:
    """socket, socketpair, accept and dup on the last FREE numbers, then EMFILE (the
    connection stays queued); a number closed is taken again by the next accept, and
    the dup of the connection closed carries on: every number, errno and byte seen."""
    listener = listening(sockets, family)
    clients = [sockets.socket(family, stdlib.SOCK_STREAM) for _ in range(3)]
    seen: list = []
    made: dict[str, Any] = {}

    def attempt(name: str, call: Any) -> None:
        try:
            result = call()
        except OSError as exc:
            seen.append(exc.errno)
            return
        for index, sock in enumerate(result if isinstance(result, tuple) else (result,)):
            made[f"{name}{index}"] = sock
            seen.append(sock.fileno())

    try:
        for client in clients:
            client.connect(listener.getsockname())
        with exactly_free(FREE):
            attempt("socket", lambda: sockets.socket(family, stdlib.SOCK_STREAM))
            attempt("pair", lambda: sockets.socketpair())
            attempt("first", lambda: listener.accept()[0])
            attempt("dup", lambda: made["first0"].dup())
            attempt("second", lambda: listener.accept()[0])
            attempt("more", lambda: sockets.socket(family, stdlib.SOCK_STREAM))
            attempt("third", lambda: listener.accept()[0])  # none free: EMFILE
            attempt("more", lambda: sockets.socket(family, stdlib.SOCK_STREAM))
            made.pop("first0").close()  # its dup carries the connection on
            attempt("third", lambda: listener.accept()[0])  # left queued; first's number
            attempt("more", lambda: sockets.socket(family, stdlib.SOCK_STREAM))
            made["dup0"].sendall(b"via the dup")
            seen.append(clients[0].recv(100))
    finally:
        for sock in [*made.values(), *clients, listener]:
            sock.close()
    return seen


def test_numbers_at_the_limit_are_the_kernels_on_the_host_preset(family):
    kernel = numbers_at_the_limit(stdlib, family)
    assert kernel[-5:] == [errno.EMFILE, errno.EMFILE, kernel[3], errno.EMFILE,
                           b"via the dup"]
    with ps.use("host"):
        dropin.socket(family, stdlib.SOCK_STREAM).close()
        assert numbers_at_the_limit(dropin, family) == kernel
