"""The descriptor table: real process numbers, shared open descriptions, EBADF, ENOTSOCK,
EMFILE, and kernel sockets made outside the layer.  Errnos are compared with what the
kernel itself says for the same mistake."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import itertools
import os
import resource
import select
import signal
import socket
import stat
import threading
import time
from functools import partial

import pytest
from leaks import errno_of, leftovers, open_fds
from memory_driver import AF_MEMORY, MemoryDriver

import posix_socket as ps
from posix_socket import descriptors, fd_calls, posix

STREAM = socket.SOCK_STREAM
LIBC = ctypes.CDLL(None, use_errno=True)
_names = itertools.count()


class CountingMemory(MemoryDriver):
    def __init__(self) -> None:
        super().__init__(capacity=4096)
        self.closes = 0

    def close(self, sock) -> None:
        self.closes += 1
        super().close(sock)


class Kind:
    """One driver under test: the kernel (AF_UNIX through the host driver) or memory."""

    def __init__(self, name: str, family: int, driver: CountingMemory | None) -> None:
        self.name, self.family, self.driver = name, family, driver

    def socket(self, flags: int = 0) -> int:
        return posix.socket(self.family, STREAM | flags)

    def pair(self, flags: int = 0) -> tuple[int, int]:
        return posix.socketpair(self.family, STREAM | flags)

    def address(self):
        n = next(_names)
        if self.name == "host":
            return b"\0posix-socket-test-descriptors-%d-%d" % (os.getpid(), n)
        return f"listener-{n}"

    def listener(self):
        fd = self.socket()
        address = self.address()
        posix.bind(fd, address)
        posix.listen(fd, 16)
        return fd, address

    def closes(self) -> int | None:
        return None if self.driver is None else self.driver.closes

    def __repr__(self) -> str:
        return self.name


@pytest.fixture(params=["host", "memory"])
def kind(request):
    if request.param == "host":
        yield Kind("host", socket.AF_UNIX, None)
        return
    driver = CountingMemory()
    ps.register_family(AF_MEMORY, driver, replace=True)
    yield Kind("memory", AF_MEMORY, driver)
    ps.unregister_family(AF_MEMORY)


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test leaves no process descriptor and no table entry behind."""
    ps.register_family(AF_MEMORY + 30, MemoryDriver(), replace=True)
    posix.close(posix.socket(AF_MEMORY + 30, STREAM))  # lazily made helpers exist now
    ps.unregister_family(AF_MEMORY + 30)
    fds, numbers = open_fds(), set(descriptors.open_numbers())
    yield
    assert leftovers(fds, numbers) == (set(), set())


def at_eof(fd: int) -> bool:
    """Whether the peer of ``fd`` is gone (recv says EOF) rather than just quiet."""
    try:
        return posix.recv(fd, 100, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False


def close_all(*fds: int) -> None:
    for fd in fds:
        posix.close(fd)


# -- real numbers ------------------------------------------------------------------------

def test_numbers_are_real_socket_descriptors(kind):
    fd = kind.socket()
    a, b = kind.pair()
    d = posix.dup(a)
    try:
        for number in (fd, a, b, d):
            assert stat.S_ISSOCK(os.fstat(number).st_mode)
            assert number in descriptors.open_numbers()
    finally:
        close_all(fd, a, b, d)
    for number in (fd, a, b, d):
        assert errno_of(lambda n=number: os.fstat(n)) == errno.EBADF


@pytest.mark.parametrize("op", ["socket", "socketpair", "accept", "dup"])
def test_lowest_free_number(kind, op):
    listener, address = kind.listener()
    client = kind.socket()
    posix.connect(client, address)
    made: list[int] = []
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    try:
        if op == "socket":
            made = [kind.socket()]
        elif op == "socketpair":
            made = list(kind.pair())
        elif op == "accept":
            made = [posix.accept(listener)[0]]
        else:
            made = [posix.dup(client)]
        assert made == [r, w][:len(made)]
    finally:
        close_all(listener, client, *made)


def test_numbers_never_collide_with_pipes_or_files(kind, tmp_path):
    sockets, others = [], []
    try:
        for i in range(10):
            sockets.append(kind.socket())
            r, w = os.pipe()
            others += [r, w]
            sockets.extend(kind.pair())
            others.append(os.open(tmp_path / f"f{i}", os.O_CREAT | os.O_RDWR))
            if i % 3 == 0:
                posix.close(sockets.pop(0))
                os.close(others.pop(0))
        assert len(set(sockets) | set(others)) == len(sockets) + len(others)
        assert all(stat.S_ISSOCK(os.fstat(fd).st_mode) for fd in sockets)
        assert not any(stat.S_ISSOCK(os.fstat(fd).st_mode) for fd in others)
        assert set(descriptors.open_numbers()) >= set(sockets)
        assert not set(descriptors.open_numbers()) & set(others)
    finally:
        close_all(*sockets)
        for fd in others:
            os.close(fd)


# -- shared open descriptions ------------------------------------------------------------

def test_dups_share_the_description(kind):
    a, b = kind.pair()
    r, w = os.pipe()
    os.close(r)
    dups = [posix.dup(a), posix.fcntl(a, fcntl.F_DUPFD, 0),
            posix.fcntl(a, fcntl.F_DUPFD_CLOEXEC, 0)]
    high = posix.fcntl(a, fcntl.F_DUPFD, 200)
    assert high >= 200
    assert posix.dup2(a, w) == w  # dup2 over a pipe's number
    dups += [high, w]
    try:
        assert len(set(dups) | {a, b}) == 7
        shared = descriptors.open_numbers()[a]
        assert all(descriptors.open_numbers()[d] is shared for d in dups)
        # O_NONBLOCK lives in the description: set on one number, seen on all.
        flags = posix.fcntl(a, fcntl.F_GETFL)
        assert not flags & os.O_NONBLOCK
        posix.fcntl(a, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        for d in dups:
            assert posix.fcntl(d, fcntl.F_GETFL) & os.O_NONBLOCK
            with pytest.raises(BlockingIOError):
                posix.recv(d, 10)
        posix.fcntl(dups[1], fcntl.F_SETFL, flags)
        assert not posix.fcntl(a, fcntl.F_GETFL) & os.O_NONBLOCK
        # Data sent through any number arrives at the one peer.
        for i, d in enumerate(dups):
            posix.send(d, b"%d" % i)
        assert posix.recv(b, 100) == b"01234"
    finally:
        close_all(a, b, *dups)


def test_close_on_exec_belongs_to_the_number(kind):
    fd = kind.socket(socket.SOCK_CLOEXEC)
    plain = kind.socket()
    try:
        assert posix.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert not os.get_inheritable(fd)
        assert not posix.fcntl(plain, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        duplicate = posix.dup(fd)  # dup(2) clears FD_CLOEXEC on the new number
        cloexec = posix.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)
        r, target = os.pipe()
        os.close(r)
        posix.dup2(fd, target)  # so does dup2(2)
        try:
            assert not posix.fcntl(duplicate, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert posix.fcntl(cloexec, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert not posix.fcntl(target, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            posix.fcntl(duplicate, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
            posix.fcntl(fd, fcntl.F_SETFD, 0)
            assert posix.fcntl(duplicate, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert not posix.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert posix.fcntl(cloexec, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        finally:
            close_all(duplicate, cloexec, target)
    finally:
        close_all(fd, plain)


def test_driver_close_runs_once_on_the_last_reference(kind):
    a, b = kind.pair()
    r, w = os.pipe()
    os.close(r)
    others = [posix.dup(a), posix.fcntl(a, fcntl.F_DUPFD, 0),
              posix.fcntl(a, fcntl.F_DUPFD_CLOEXEC, 0), posix.dup2(a, w)]
    try:
        for fd in [a, *others[:-1]]:
            posix.close(fd)
            assert not at_eof(b)
            assert kind.closes() in (None, 0)
        posix.close(others[-1])
        assert at_eof(b)
        assert kind.closes() in (None, 1)
    finally:
        posix.close(b)
    assert kind.closes() in (None, 2)


def test_dup2_over_a_layer_number_releases_it(kind):
    a, b = kind.pair()
    c, d = kind.pair()
    try:
        assert posix.dup2(a, c) == c
        assert at_eof(d)  # c's old description is gone...
        assert kind.closes() in (None, 1)
        assert descriptors.open_numbers()[c] is descriptors.open_numbers()[a]
        posix.send(c, b"via c")  # ...and c now names a's
        assert posix.recv(b, 100) == b"via c"
        posix.close(a)
        assert not at_eof(b)
        posix.close(c)
        assert at_eof(b)
        assert kind.closes() in (None, 2)
    finally:
        close_all(b, d)


def test_dup2_of_a_pipe_over_a_layer_number(kind):
    a, b = kind.pair()
    r, w = os.pipe()
    try:
        assert posix.dup2(r, a) == a
        assert a not in descriptors.open_numbers()
        assert stat.S_ISFIFO(os.fstat(a).st_mode)
        assert at_eof(b)
        assert kind.closes() in (None, 1)
        os.write(w, b"pipe")
        assert posix.read(a, 10) == b"pipe"
        expected = errno_of(lambda: socket.socket(fileno=r))
        assert expected == errno.ENOTSOCK
        assert errno_of(lambda: posix.send(a, b"x")) == expected
    finally:
        close_all(a, b, r, w)


def test_dup2_of_a_layer_number_over_a_pipe(kind):
    a, b = kind.pair()
    r, w = os.pipe()
    try:
        assert posix.dup2(a, w) == w
        assert os.read(r, 10) == b""  # the pipe lost its only writer
        assert descriptors.open_numbers()[w] is descriptors.open_numbers()[a]
        posix.send(w, b"through the old pipe number")
        assert posix.recv(b, 100) == b"through the old pipe number"
    finally:
        close_all(a, b, r, w)


def test_dup2_onto_itself(kind):
    a, b = kind.pair()
    try:
        assert posix.dup2(a, a) == a
        assert a in descriptors.open_numbers()
        assert kind.closes() in (None, 0)
        posix.send(a, b"same")
        assert posix.recv(b, 10) == b"same"
    finally:
        close_all(a, b)
    expected = errno_of(lambda: os.dup2(a, a))
    assert expected == errno.EBADF
    assert errno_of(lambda: posix.dup2(a, a)) == expected


def test_dup2_of_a_closed_number_leaves_the_target_alone(kind):
    a, b = kind.pair()
    closed = kind.socket()
    posix.close(closed)
    try:
        assert errno_of(lambda: posix.dup2(closed, a)) == errno_of(lambda: os.dup2(closed, a))
        assert a in descriptors.open_numbers()
        posix.send(a, b"alive")
        assert posix.recv(b, 10) == b"alive"
    finally:
        close_all(a, b)


# -- EBADF and ENOTSOCK ------------------------------------------------------------------

SOCKET_CALLS = [
    ("bind", lambda fd: posix.bind(fd, "name")),
    ("listen", lambda fd: posix.listen(fd, 1)),
    ("connect", lambda fd: posix.connect(fd, "name")),
    ("accept", lambda fd: posix.accept(fd)),
    ("accept4", lambda fd: posix.accept4(fd, socket.SOCK_NONBLOCK)),
    ("shutdown", lambda fd: posix.shutdown(fd, socket.SHUT_RDWR)),
    ("getsockname", lambda fd: posix.getsockname(fd)),
    ("getpeername", lambda fd: posix.getpeername(fd)),
    ("getsockopt", lambda fd: posix.getsockopt(fd, socket.SOL_SOCKET, socket.SO_TYPE)),
    ("setsockopt", lambda fd: posix.setsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)),
    ("send", lambda fd: posix.send(fd, b"x")),
    ("sendto", lambda fd: posix.sendto(fd, b"x", 0, "name")),
    ("sendmsg", lambda fd: posix.sendmsg(fd, [b"x"])),
    ("recv", lambda fd: posix.recv(fd, 1)),
    ("recvfrom", lambda fd: posix.recvfrom(fd, 1)),
    ("recvmsg", lambda fd: posix.recvmsg(fd, 1)),
]
# Calls that take any descriptor, with the stdlib function that does the same.
ANY_CALLS = [
    ("read", lambda fd: posix.read(fd, 1), lambda fd: os.read(fd, 1)),
    ("write", lambda fd: posix.write(fd, b"x"), lambda fd: os.write(fd, b"x")),
    ("close", lambda fd: posix.close(fd), lambda fd: os.close(fd)),
    ("dup", lambda fd: posix.dup(fd), lambda fd: os.dup(fd)),
    ("dup2", lambda fd: posix.dup2(fd, 2**16 - 1), lambda fd: os.dup2(fd, 2**16 - 1)),
    ("fcntl F_GETFL", lambda fd: posix.fcntl(fd, fcntl.F_GETFL),
     lambda fd: fcntl.fcntl(fd, fcntl.F_GETFL)),
    ("fcntl F_DUPFD", lambda fd: posix.fcntl(fd, fcntl.F_DUPFD, 0),
     lambda fd: fcntl.fcntl(fd, fcntl.F_DUPFD, 0)),
    ("fcntl F_SETFD", lambda fd: posix.fcntl(fd, fcntl.F_SETFD, 0),
     lambda fd: fcntl.fcntl(fd, fcntl.F_SETFD, 0)),
    ("ioctl", lambda fd: posix.ioctl(fd, 0x541B, b"\0" * 4),  # FIONREAD
     lambda fd: fcntl.ioctl(fd, 0x541B, b"\0" * 4)),
]
ALL_CALLS = SOCKET_CALLS + [(name, call) for name, call, _ in ANY_CALLS]


@pytest.mark.parametrize(("name", "call"), ALL_CALLS, ids=[n for n, _ in ALL_CALLS])
def test_closed_number_is_ebadf(kind, name, call):
    fd = kind.socket()
    posix.close(fd)
    expected = errno_of(lambda: os.close(fd))
    assert expected == errno.EBADF
    assert errno_of(lambda: call(fd)) == expected


@pytest.mark.parametrize(("name", "call"), SOCKET_CALLS, ids=[n for n, _ in SOCKET_CALLS])
def test_negative_number_is_ebadf_for_socket_calls(name, call):
    ctypes.set_errno(0)
    assert LIBC.getsockname(-1, None, None) == -1
    expected = ctypes.get_errno()
    assert expected == errno.EBADF
    assert errno_of(lambda: call(-1)) == expected


@pytest.mark.parametrize(("name", "call", "stdlib"), ANY_CALLS, ids=[c[0] for c in ANY_CALLS])
def test_negative_number_as_the_stdlib_says(name, call, stdlib):
    """os.* says EBADF, fcntl.* says ValueError: posix says what its counterpart says."""
    with pytest.raises(Exception) as expected:
        stdlib(-1)
    with pytest.raises(type(expected.value)) as got:
        call(-1)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)


def test_closed_number_in_poll_and_select(kind):
    fd = kind.socket()
    posix.close(fd)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    assert posix.poll([(fd, select.POLLIN)], 0) == poller.poll(0) == [(fd, select.POLLNVAL)]
    expected = errno_of(lambda: select.select([fd], [], [], 0))
    assert expected == errno.EBADF
    assert errno_of(lambda: posix.select([fd], [], [], 0)) == expected
    assert errno_of(lambda: posix.select([], [fd], [], 0)) == expected
    assert posix.poll([(-1, select.POLLIN)], 0) == []  # negative entries are ignored


@pytest.fixture(params=["pipe", "file"])
def not_a_socket(request, tmp_path):
    if request.param == "pipe":
        r, w = os.pipe()
        yield r
        os.close(w)
    else:
        r = os.open(tmp_path / "file", os.O_CREAT | os.O_RDWR)
        yield r
    with contextlib.suppress(OSError):
        os.close(r)


@pytest.mark.parametrize(("name", "call"), SOCKET_CALLS, ids=[n for n, _ in SOCKET_CALLS])
def test_socket_calls_on_a_pipe_or_file_are_enotsock(not_a_socket, name, call):
    ctypes.set_errno(0)
    assert LIBC.shutdown(not_a_socket, socket.SHUT_RDWR) == -1
    expected = ctypes.get_errno()
    assert expected == errno.ENOTSOCK
    assert errno_of(lambda: call(not_a_socket)) == expected


def test_plain_calls_on_a_pipe_go_to_the_kernel():
    r, w = os.pipe()
    try:
        assert posix.write(w, b"hello") == 5
        assert posix.poll([(r, select.POLLIN), (w, select.POLLOUT)], 0) == [
            (r, select.POLLIN), (w, select.POLLOUT)]
        assert posix.select([r], [w], [], 0) == ([r], [w], [])
        assert posix.fcntl(r, fcntl.F_GETFL) == fcntl.fcntl(r, fcntl.F_GETFL)
        d = posix.dup(r)
        assert d not in descriptors.open_numbers()
        assert posix.read(d, 2) == b"he"
        posix.close(d)
        assert posix.read(r, 10) == b"llo"
    finally:
        posix.close(r)
        posix.close(w)


# -- a kernel socket is one descriptor -----------------------------------------------------
#
# A host-driver socket's number is the kernel socket itself; the driver's own socket
# object is on one of its numbers and follows them (see descriptors).  Each scenario
# runs on the kernel (stdlib calls on plain numbers) and through posix on the host
# driver, and the observations, numbers included, must be equal.

class KernelCalls:
    """The oracle: the kernel's calls on plain numbers."""

    def pair(self) -> tuple[int, int]:
        a, b = socket.socketpair(socket.AF_UNIX, STREAM)
        return a.detach(), b.detach()

    def socket(self) -> int:
        return socket.socket(socket.AF_UNIX, STREAM).detach()

    dup, dup2, close = staticmethod(os.dup), staticmethod(os.dup2), staticmethod(os.close)

    @staticmethod
    def _on(fd: int, call):
        sock = socket.socket(fileno=fd)
        try:
            return call(sock)
        finally:
            sock.detach()

    def send(self, fd: int, data: bytes) -> int:
        return self._on(fd, lambda s: s.send(data))

    def recv(self, fd: int) -> bytes:
        return self._on(fd, lambda s: s.recv(100, socket.MSG_DONTWAIT))

    def sndbuf(self, fd: int, size: int) -> int:
        def call(s):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            return s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        return self._on(fd, call)

    def shutdown(self, fd: int) -> None:
        self._on(fd, lambda s: s.shutdown(socket.SHUT_WR))


class LayerCalls:
    """The same calls through posix, on sockets of the host driver."""

    def pair(self) -> tuple[int, int]:
        return posix.socketpair(socket.AF_UNIX, STREAM)

    def socket(self) -> int:
        return posix.socket(socket.AF_UNIX, STREAM)

    dup, dup2, close = staticmethod(posix.dup), staticmethod(posix.dup2), staticmethod(posix.close)

    def send(self, fd: int, data: bytes) -> int:
        return posix.send(fd, data)

    def recv(self, fd: int) -> bytes:
        return posix.recv(fd, 100, socket.MSG_DONTWAIT)

    def sndbuf(self, fd: int, size: int) -> int:
        posix.setsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        return posix.getsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDBUF)

    def shutdown(self, fd: int) -> None:
        posix.shutdown(fd, socket.SHUT_WR)


def the_first_number_closed(calls) -> list:
    a, b = calls.pair()
    d = calls.dup(a)
    calls.close(a)  # the number the layer's driver object was on
    e = calls.socket()
    seen: list = [(a, b, d, e)]  # e takes a's number: the lowest free
    seen += [calls.send(d, b"via d"), calls.recv(b), calls.sndbuf(d, 8192)]
    calls.shutdown(d)
    seen.append(calls.recv(b))  # EOF: the shutdown reached the one connection
    for fd in (d, e, b):
        calls.close(fd)
    return seen


def dup2_over_the_first_number(calls) -> list:
    a, b = calls.pair()
    d = calls.dup(a)
    c, e = calls.pair()
    calls.dup2(c, a)  # a names c's file now; a's first file lives on in d
    seen: list = [calls.send(d, b"one"), calls.recv(b), calls.send(a, b"two"), calls.recv(e)]
    calls.close(c)
    calls.close(a)
    seen.append(calls.recv(e))  # c's file had a and c: both closed, EOF
    calls.close(d)
    seen.append(calls.recv(b))  # and d was a's first file's last number
    calls.close(b)
    calls.close(e)
    return seen


def closed_behind_the_back_then_reused(calls, use_the_dup_first: bool) -> list:
    a, b = calls.pair()
    d = calls.dup(a)
    os.close(a)  # the kernel's close, past the layer
    seen: list = []
    if use_the_dup_first:
        seen += [calls.send(d, b"x"), calls.recv(b)]
    n = calls.socket()
    seen += [n == a, calls.send(d, b"y"), calls.recv(b)]
    calls.close(d)
    seen.append(calls.recv(b))  # d was the connection's last number: EOF
    calls.close(n)
    calls.close(b)
    return seen


KERNEL_SCENARIOS = [the_first_number_closed, dup2_over_the_first_number,
                    partial(closed_behind_the_back_then_reused, use_the_dup_first=True),
                    partial(closed_behind_the_back_then_reused, use_the_dup_first=False)]


@pytest.mark.parametrize("scenario", KERNEL_SCENARIOS,
                         ids=["first-closed", "dup2-over-first", "behind-back-used",
                              "behind-back-reused"])
def test_a_kernel_socket_follows_its_numbers_as_the_kernel_does(scenario):
    kernel = scenario(KernelCalls())
    layer = scenario(LayerCalls())
    assert layer == kernel


def test_a_kernel_socket_costs_one_descriptor_per_number():
    """socket, socketpair, accept and dup each add exactly the numbers they return to
    the process's descriptors (the kernel's count), and closing gives them all back."""
    listener = posix.socket(socket.AF_UNIX, STREAM)
    posix.bind(listener, b"\0posix-socket-test-one-each-%d" % os.getpid())
    posix.listen(listener, 4)
    before = open_fds()
    made: list[int] = []
    try:
        made.append(posix.socket(socket.AF_UNIX, STREAM))
        made += posix.socketpair(socket.AF_UNIX, STREAM)
        posix.connect(made[0], posix.getsockname(listener))
        made.append(posix.accept(listener)[0])
        made.append(posix.dup(made[-1]))
        made.append(posix.fcntl(made[1], fcntl.F_DUPFD_CLOEXEC, 0))
        assert open_fds() - before == set(made)
        assert len(set(made)) == 6
    finally:
        close_all(*made, listener)
    assert open_fds() == before - {listener}


def blocked_accept_on_the_second_number(calls, name: bytes) -> tuple[bool, bool]:
    listener = calls.socket()
    KernelCalls._on(listener, lambda s: (s.bind(name), s.listen()))  # same either way
    second = calls.dup(listener)
    if isinstance(calls, KernelCalls):
        def accept() -> int:
            return KernelCalls._on(second, lambda s: s._accept()[0])
    else:
        def accept() -> int:
            return posix.accept(second)[0]
    result: list = []

    def blocked() -> None:
        try:
            result.append(accept())
        except OSError as exc:
            result.append(("error", exc.errno))

    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    thread = threading.Thread(target=blocked, daemon=True)
    client = calls.socket()
    try:
        thread.start()
        time.sleep(0.1)
        calls.close(listener)  # the first number, in this thread
        signal.pthread_kill(thread.ident, signal.SIGUSR1)
        time.sleep(0.1)
        alive = thread.is_alive()
        KernelCalls._on(client, lambda s: s.connect(name))
        thread.join(10)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        close_all_with(calls, client, second)
    accepted = result[0] if result else None
    if isinstance(accepted, int):
        calls.close(accepted)
    return alive, isinstance(accepted, int)


def close_all_with(calls, *fds: int) -> None:
    for fd in fds:
        calls.close(fd)


def test_a_blocked_accept_on_a_dup_outlives_closing_the_first_number():
    """Thread safety, with the kernel as the oracle: a thread blocked in accept on a
    second number goes on when another thread closes the first (the driver's object
    moves to the second), is woken by a connection, and a signal meanwhile (EINTR,
    which CPython retries on the object's number) does not make it EBADF."""
    name = b"\0posix-socket-test-blocked-%d-" % os.getpid()
    kernel = blocked_accept_on_the_second_number(KernelCalls(), name + b"kernel")
    layer = blocked_accept_on_the_second_number(LayerCalls(), name + b"layer")
    assert layer == kernel == (True, True)


# -- EMFILE ------------------------------------------------------------------------------

@contextlib.contextmanager
def exhausted(free: int):
    """Lower RLIMIT_NOFILE and fill the table: exactly ``free`` numbers remain."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    source, spare = os.pipe()
    fillers: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(open_fds()) + 32 + free, hard))
        while True:
            try:
                fillers.append(os.dup(source))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        for _ in range(free):
            os.close(fillers.pop())
        yield source
    finally:
        for fd in fillers:
            os.close(fd)
        os.close(source)
        os.close(spare)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def make_socket(kind, ready):
    return [kind.socket()]


def make_pair(kind, ready):
    return list(kind.pair())


def make_dup(kind, ready):
    return [posix.dup(ready["socket"])]


def make_fcntl_dup(kind, ready):
    return [posix.fcntl(ready["socket"], fcntl.F_DUPFD_CLOEXEC, 0)]


def make_accept(kind, ready):
    return [posix.accept(ready["listener"])[0]]


MAKERS = [make_socket, make_pair, make_dup, make_fcntl_dup, make_accept]


@pytest.mark.parametrize("make", MAKERS, ids=[m.__name__[5:] for m in MAKERS])
def test_emfile_at_the_process_limit(kind, make):
    listener, address = kind.listener()
    ready = {"socket": kind.socket(), "listener": listener}
    fds, numbers = open_fds(), set(descriptors.open_numbers())
    outcomes = []
    try:
        for free in range(7):
            client = kind.socket()
            posix.connect(client, address)  # a connection for make_accept to take
            made: list[int] = []
            with exhausted(free) as source:
                kernel = errno_of(lambda s=source: os.dup(s)) if free == 0 else None
                try:
                    made = make(kind, ready)
                    outcomes.append("ok")
                except OSError as exc:
                    assert exc.errno == errno.EMFILE
                    outcomes.append("EMFILE")
            if free == 0:
                assert kernel == errno.EMFILE
                assert outcomes[-1] == "EMFILE"
            close_all(*made, client)
            # Drain connections left pending by failed accepts (host: still queued).
            posix.fcntl(listener, fcntl.F_SETFL, os.O_NONBLOCK)
            with contextlib.suppress(BlockingIOError):
                while True:
                    posix.close(posix.accept(listener)[0])
            posix.fcntl(listener, fcntl.F_SETFL, 0)
            assert leftovers(fds, numbers) == (set(), set()), (free, outcomes)
        assert outcomes[-1] == "ok"
    finally:
        close_all(listener, ready["socket"])


def test_accept_with_one_number_free_succeeds(kind):
    """Linux's accept needs one descriptor, the new connection's: with exactly one
    free it succeeds (a program that keeps one spare descriptor for EMFILE relies on
    it).  A virtual socket's readiness mirror, which needs two more, is armed later."""
    kernel_listener = socket.socket(socket.AF_UNIX, STREAM)
    kernel_listener.bind(b"\0posix-socket-test-one-free-%d" % os.getpid())
    kernel_listener.listen()
    kernel_client = socket.socket(socket.AF_UNIX, STREAM)
    kernel_client.connect(kernel_listener.getsockname())
    listener, address = kind.listener()
    client = kind.socket()
    posix.connect(client, address)
    posix.send(client, b"hello")
    accepted = []
    try:
        with exhausted(1):
            kernel_accepted, _ = kernel_listener.accept()  # the oracle
        kernel_accepted.close()
        with exhausted(1):
            accepted.append(posix.accept(listener)[0])
        assert posix.recv(accepted[0], 10) == b"hello"
        posix.make_visible(accepted[0])  # room again: now the mirror fits
        kernel_poll = select.poll()  # the kernel's own: it sees the mirror
        kernel_poll.register(accepted[0], select.POLLIN)
        assert kernel_poll.poll(0) == []
        posix.send(client, b"x")
        assert kernel_poll.poll(10_000) == [(accepted[0], select.POLLIN)]
    finally:
        kernel_client.close()
        kernel_listener.close()
        close_all(listener, client, *accepted)


def test_accept_at_emfile_keeps_the_connection_queued(kind):
    listener, address = kind.listener()
    client = kind.socket()
    posix.connect(client, address)
    posix.send(client, b"hello")
    accepted = None
    try:
        with exhausted(0):  # no number free: EMFILE, and the connection stays queued
            assert errno_of(lambda: posix.accept(listener)) == errno.EMFILE
        assert posix.poll([(listener, select.POLLIN)], 0) == [(listener, select.POLLIN)]
        posix.fcntl(listener, fcntl.F_SETFL, os.O_NONBLOCK)
        accepted, _ = posix.accept(listener)
        assert posix.recv(accepted, 10) == b"hello"
    finally:
        close_all(listener, client, *([accepted] if accepted is not None else []))


def test_dup2_beyond_the_limit_is_ebadf(kind):
    fd = kind.socket()
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        r, w = os.pipe()
        expected = errno_of(lambda: os.dup2(r, soft + 10))
        os.close(r)
        os.close(w)
        assert expected == errno.EBADF
        assert errno_of(lambda: posix.dup2(fd, soft + 10)) == expected
        assert errno_of(lambda: posix.fcntl(fd, fcntl.F_DUPFD, soft + 10)) == errno.EINVAL
    finally:
        posix.close(fd)


# -- kernel sockets made outside the layer -----------------------------------------------

def test_outside_stream_sockets_are_served_by_the_host_driver():
    numbers = set(descriptors.open_numbers())
    fds = open_fds()
    left, right = socket.socketpair()
    with left, right:
        assert posix.send(left.fileno(), b"from posix") == 10
        assert right.recv(100) == b"from posix"
        right.send(b"from stdlib")
        assert posix.recv(left.fileno(), 100) == b"from stdlib"
        assert posix.sendmsg(left.fileno(), [b"a", b"b"]) == 2
        assert posix.recvmsg(right.fileno(), 10)[0] == b"ab"
        assert posix.getsockname(left.fileno()) == left.getsockname()
        assert posix.getpeername(left.fileno()) == left.getpeername()
        posix.setsockopt(left.fileno(), socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        with socket.socket(socket.AF_UNIX) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
            assert left.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == \
                probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert posix.getsockopt(left.fileno(), socket.SOL_SOCKET, socket.SO_TYPE) == STREAM
        assert posix.poll([(right, select.POLLOUT)], 0) == [(right.fileno(), select.POLLOUT)]
        left.setblocking(False)
        with pytest.raises(BlockingIOError):
            posix.recv(left.fileno(), 10)
        posix.shutdown(left.fileno(), socket.SHUT_WR)
        assert right.recv(10) == b""
        # The layer took nothing over: no table entries, no extra descriptors.
        assert leftovers(fds | {left.fileno(), right.fileno()}, numbers) == (set(), set())
    assert left.fileno() == -1  # the stdlib objects closed their own numbers


def test_outside_datagram_and_listening_sockets():
    numbers, fds = set(descriptors.open_numbers()), open_fds()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other, \
            socket.create_server(("127.0.0.1", 0)) as server:
        udp.bind(("127.0.0.1", 0))
        other.bind(("127.0.0.1", 0))
        assert posix.sendto(other.fileno(), b"dgram", 0, udp.getsockname()) == 5
        assert posix.recvfrom(udp.fileno(), 100) == (b"dgram", other.getsockname())
        client = socket.create_connection(server.getsockname())
        with client:
            fd, addr = posix.accept(server.fileno())  # the new socket is the layer's
            try:
                assert addr == client.getsockname()
                assert fd in descriptors.open_numbers()
                posix.send(fd, b"accepted")
                assert client.recv(100) == b"accepted"
            finally:
                posix.close(fd)
    assert leftovers(fds, numbers) == (set(), set())


def test_a_number_closed_behind_the_layers_back_is_dropped_when_the_kernel_reuses_it():
    """C code (a stdlib socket class made before patch()) may close a layer number
    itself; when the kernel hands that number out again, the stale entry goes and its
    socket's last reference with it."""
    with ps.use("virtual"):
        fd = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        f = descriptors.lookup(fd)
        fd_calls._close(fd)  # the kernel's close, past the layer
        again = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert again == fd
        assert f.released and descriptors.lookup(again) is not f
        os.fstat(again)
    finally:
        posix.close(again)
