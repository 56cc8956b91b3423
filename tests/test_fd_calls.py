"""os and fcntl calls on a socket's fileno() under patch(): the kernel's results on
every preset (the host preset, where the kernel answers itself, is the oracle)."""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
import termios
from collections.abc import Iterator

import pytest

import posix_socket as ps
from posix_socket import descriptors
from posix_socket.patching import patch


def _outcome(call) -> object:
    try:
        return call()
    except OSError as exc:
        return type(exc).__name__, exc.errno


def fd_calls_scenario(preset: str, kernel_pollers: bool) -> Iterator[object]:
    with ps.use(preset), patch(kernel_pollers=kernel_pollers):
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        server.close()
        a, b = client.detach(), accepted.detach()  # as multiprocessing.connection does
        try:
            yield os.write(a, b"hello")
            yield fcntl.ioctl(b, termios.FIONREAD, b"\0\0\0\0")
            yield os.read(b, 100)
            yield bool(fcntl.fcntl(a, fcntl.F_GETFL) & os.O_NONBLOCK)
            fcntl.fcntl(a, fcntl.F_SETFL, fcntl.fcntl(a, fcntl.F_GETFL) | os.O_NONBLOCK)
            yield bool(fcntl.fcntl(a, fcntl.F_GETFL) & os.O_NONBLOCK)
            yield _outcome(lambda: os.read(a, 1))  # nothing there, non-blocking
            copy = fcntl.fcntl(a, fcntl.F_DUPFD_CLOEXEC, 0)
            yield bool(fcntl.fcntl(copy, fcntl.F_GETFL) & os.O_NONBLOCK)  # one description
            os.write(copy, b"via the copy")
            yield os.read(b, 100)
            os.close(copy)
            with tempfile.TemporaryFile() as file:
                file.write(b"0123456789")
                file.flush()
                yield os.sendfile(a, file.fileno(), 2, 5), os.read(b, 100)
            os.close(a)
            yield os.read(b, 100)  # the peer saw the close: end of file
            yield _outcome(lambda: os.read(a, 1))
            yield _outcome(lambda: os.close(a))
        finally:
            for fd in (a, b):
                try:
                    os.close(fd)
                except OSError:
                    pass


@pytest.mark.parametrize("kernel_pollers", [True, False], ids=["shown", "unshown"])
def test_os_and_fcntl_on_a_virtual_fileno_give_the_kernels_results(kernel_pollers) -> None:
    before = set(descriptors.open_numbers())
    kernel = list(fd_calls_scenario("host", True))
    virtual = list(fd_calls_scenario("virtual", kernel_pollers))
    assert virtual == kernel
    assert set(descriptors.open_numbers()) == before  # os.close released the sockets


def blocking_flags_scenario(preset: str, kernel_pollers: bool) -> list[object]:
    """O_NONBLOCK as os.get_blocking reads it: each socket's own, also after another
    socket's timeout changed (unarmed virtual numbers share one kernel object)."""
    with ps.use(preset), patch(kernel_pollers=kernel_pollers):
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(1)
        try:
            timed, untimed = socket.socket(), socket.socket()
        finally:
            socket.setdefaulttimeout(previous)
        untimed.settimeout(None)
        seen: list[object] = [os.get_blocking(timed.fileno()),
                              os.get_blocking(untimed.fileno())]
        third = socket.socket()
        third.setblocking(False)
        seen.append(os.get_blocking(untimed.fileno()))
        os.set_blocking(untimed.fileno(), False)
        seen += [os.get_blocking(untimed.fileno()), untimed.gettimeout(),
                 os.get_blocking(third.fileno())]
        os.set_blocking(third.fileno(), True)
        seen += [os.get_blocking(third.fileno()), third.gettimeout()]
        for each in (timed, untimed, third):
            each.close()
        return seen


@pytest.mark.parametrize("kernel_pollers", [True, False], ids=["shown", "unshown"])
def test_os_get_and_set_blocking_see_each_sockets_own_flag(kernel_pollers) -> None:
    assert (blocking_flags_scenario("virtual", kernel_pollers)
            == blocking_flags_scenario("host", True))


def test_the_layers_own_kernel_calls_do_not_loop_through_the_patch() -> None:
    with ps.use("virtual"), patch():
        a, b = socket.socketpair()  # kernel pairs, numbers in the layer
        sock = socket.socket()
        number = sock.fileno()
        assert fcntl.fcntl(number, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # the kernel's
        a.send(b"x")
        assert os.read(b.fileno(), 1) == b"x"
        for each in (a, b, sock):
            each.close()
