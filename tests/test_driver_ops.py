"""The ops table as the core uses it: fallbacks, EOPNOTSUPP, the core's own answers and
checks, driver bugs turned into EIO, and the driver's budget."""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import socket
import struct
import threading
import time
from collections import deque

import pytest
from leaks import errno_of, leftovers, open_fds
from memory_driver import AF_MEMORY, MemoryDriver

import posix_socket as ps
from posix_socket import descriptors, posix
from posix_socket.driver import DEFAULT_BUDGET, Budget
from posix_socket.errors import DriverFailure

FAMILY = 251
POLLIN, POLLOUT = select.POLLIN, select.POLLOUT


LIBC = ctypes.CDLL(None, use_errno=True)


def kernel_socket_errno(family: int, kind: int) -> int:
    """What socket(2) itself says (the stdlib would turn type -1 into SOCK_STREAM)."""
    ctypes.set_errno(0)
    fd = LIBC.socket(family, kind, 0)
    if fd >= 0:
        os.close(fd)
        return 0
    return ctypes.get_errno()


@pytest.fixture
def no_leaks():
    """Nothing left behind: no process descriptors, no descriptor-table entries."""
    warm = MemoryDriver()
    ps.register_family(FAMILY + 40, warm)
    posix.close(posix.socket(FAMILY + 40, socket.SOCK_STREAM))  # lazily made helpers
    ps.unregister_family(FAMILY + 40)
    fds, numbers = open_fds(), set(descriptors.open_numbers())
    yield
    assert leftovers(fds, numbers) == (set(), set())


def register(driver, family=FAMILY):
    ps.register_family(family, driver, replace=True)
    return driver


@pytest.fixture
def family():
    yield FAMILY
    if FAMILY in ps.registered_families():
        ps.unregister_family(FAMILY)


# -- a driver that only knows sendmsg and recvmsg ----------------------------------------

class Endpoint:
    def __init__(self) -> None:
        self.queue: deque[tuple[bytes, object]] = deque()
        self.peer: Endpoint | None = None


class MessageDriver(ps.SocketDriver):
    """Datagrams between socketpair ends, through sendmsg/recvmsg only."""

    name = "messages"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.closed = 0

    def create(self, family, type, proto):
        return Endpoint()

    def socketpair(self, family, type, proto):
        a, b = Endpoint(), Endpoint()
        a.peer, b.peer = b, a
        return a, b

    def sendmsg(self, sock, buffers, ancdata, flags, addr):
        data = b"".join(bytes(b) for b in buffers)
        self.calls.append(("sendmsg", data, list(ancdata), flags, addr))
        sock.peer.queue.append((data, addr))
        self.notify(sock.peer)
        return len(data)

    def recvmsg(self, sock, bufsize, ancbufsize, flags):
        self.calls.append(("recvmsg", bufsize, ancbufsize, flags))
        if not sock.queue:
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        data, addr = sock.queue[0] if flags & socket.MSG_PEEK else sock.queue.popleft()
        self.notify(sock)
        return data[:bufsize], [], 0, addr or "peer"

    def poll(self, sock):
        return POLLOUT | (POLLIN if sock.queue else 0)

    def close(self, sock):
        self.closed += 1


def test_send_and_receive_fall_back_to_sendmsg_and_recvmsg(family, no_leaks):
    driver = register(MessageDriver())
    a, b = posix.socketpair(family, socket.SOCK_DGRAM)
    try:
        assert posix.send(a, b"send", socket.MSG_DONTWAIT) == 4
        assert posix.sendto(a, b"sendto", 0, "somewhere") == 6
        assert posix.write(a, b"write") == 5
        assert posix.sendmsg(a, [b"send", b"msg"]) == 7
        assert [c for c in driver.calls if c[0] == "sendmsg"] == [
            ("sendmsg", b"send", [], socket.MSG_DONTWAIT, None),
            ("sendmsg", b"sendto", [], 0, "somewhere"),
            ("sendmsg", b"write", [], 0, None),
            ("sendmsg", b"sendmsg", [], 0, None),
        ]
        driver.calls.clear()
        assert posix.recv(b, 100, socket.MSG_PEEK) == b"send"
        assert posix.recv(b, 100) == b"send"
        assert posix.recvfrom(b, 100) == (b"sendto", "somewhere")
        assert posix.read(b, 3) == b"wri"
        assert posix.recvmsg(b, 100, 0) == (b"sendmsg", [], 0, "peer")
        assert driver.calls == [
            ("recvmsg", 100, 0, socket.MSG_PEEK),
            ("recvmsg", 100, 0, 0),
            ("recvmsg", 100, 0, 0),
            ("recvmsg", 3, 0, 0),
            ("recvmsg", 100, 0, 0),
        ]
        with pytest.raises(BlockingIOError):
            posix.recv(b, 10, socket.MSG_DONTWAIT)
        assert posix.poll([(b, POLLIN)], 0) == []
        posix.send(a, b"wake")
        assert posix.poll([(b, POLLIN)], 0) == [(b, POLLIN)]
    finally:
        posix.close(a)
        posix.close(b)
    assert driver.closed == 2


MISSING = [
    ("bind", lambda fd: posix.bind(fd, "name")),
    ("listen", lambda fd: posix.listen(fd, 5)),
    ("connect", lambda fd: posix.connect(fd, "name")),
    ("accept", lambda fd: posix.accept(fd)),
    ("accept4", lambda fd: posix.accept4(fd, socket.SOCK_CLOEXEC)),
    ("shutdown", lambda fd: posix.shutdown(fd, socket.SHUT_RDWR)),
    ("getsockname", lambda fd: posix.getsockname(fd)),
    ("getpeername", lambda fd: posix.getpeername(fd)),
    ("getsockopt", lambda fd: posix.getsockopt(fd, socket.SOL_SOCKET, socket.SO_ERROR)),
    ("setsockopt", lambda fd: posix.setsockopt(fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)),
    ("ioctl", lambda fd: posix.ioctl(fd, 0x541B, b"\0" * 4)),  # FIONREAD
    ("send", lambda fd: posix.send(fd, b"x")),
    ("sendto", lambda fd: posix.sendto(fd, b"x", 0, "name")),
    ("sendmsg", lambda fd: posix.sendmsg(fd, [b"x"])),
    ("write", lambda fd: posix.write(fd, b"x")),
    ("recv", lambda fd: posix.recv(fd, 1)),
    ("recvfrom", lambda fd: posix.recvfrom(fd, 1)),
    ("recvmsg", lambda fd: posix.recvmsg(fd, 1)),
    ("read", lambda fd: posix.read(fd, 1)),
]


class CreateOnly(ps.SocketDriver):
    name = "create-only"

    def create(self, family, type, proto):
        return object()

    def poll(self, sock):
        return POLLOUT


@pytest.mark.parametrize(("op", "call"), MISSING, ids=[op for op, _ in MISSING])
def test_a_missing_op_is_eopnotsupp(family, no_leaks, op, call):
    register(CreateOnly())
    fd = posix.socket(family, socket.SOCK_STREAM)
    try:
        assert errno_of(lambda: call(fd)) == errno.EOPNOTSUPP
    finally:
        posix.close(fd)


def test_missing_create_and_socketpair_are_eopnotsupp(family, no_leaks):
    register(ps.SocketDriver("nothing"))
    assert errno_of(lambda: posix.socket(family, socket.SOCK_STREAM)) == errno.EOPNOTSUPP
    assert errno_of(lambda: posix.socketpair(family, socket.SOCK_STREAM)) == \
        errno.EOPNOTSUPP


def test_a_driver_without_poll_is_always_ready_like_a_linux_file(family, no_leaks):
    class NoPoll(ps.SocketDriver):
        def create(self, family, type, proto):
            return object()

    register(NoPoll())
    fd = posix.socket(family, socket.SOCK_STREAM)
    try:
        mask = POLLIN | POLLOUT | select.POLLRDNORM | select.POLLWRNORM
        assert posix.poll([(fd, 0xFFFF)], 0) == [(fd, mask)]
        assert select.select([fd], [fd], [], 0) == ([fd], [fd], [])
    finally:
        posix.close(fd)


# -- what the core answers and checks itself ---------------------------------------------

def test_core_answers_type_domain_protocol(family, no_leaks):
    register(CreateOnly())
    kind = socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    fd = posix.socket(family, kind, 7)
    reference = socket.socket(socket.AF_UNIX, kind)
    try:
        get = posix.getsockopt
        # As the kernel: SO_TYPE without the NONBLOCK/CLOEXEC bits.
        assert reference.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_DGRAM
        assert get(fd, socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_DGRAM
        assert get(fd, socket.SOL_SOCKET, socket.SO_DOMAIN) == family
        assert get(fd, socket.SOL_SOCKET, socket.SO_PROTOCOL) == 7
        assert get(fd, socket.SOL_SOCKET, socket.SO_TYPE, 4) == struct.pack("@i", 2)
        assert get(fd, socket.SOL_SOCKET, socket.SO_DOMAIN, 16) == struct.pack("@i", family)
        for option in (socket.SO_TYPE, socket.SO_DOMAIN, socket.SO_PROTOCOL):
            expected = errno_of(
                lambda o=option: reference.setsockopt(socket.SOL_SOCKET, o, 1))
            assert errno_of(
                lambda o=option: posix.setsockopt(fd, socket.SOL_SOCKET, o, 1)) == expected
    finally:
        reference.close()
        posix.close(fd)


class Recording(MemoryDriver):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def create(self, family, type, proto):
        self.ops.append("create")
        return super().create(family, type, proto)

    def socketpair(self, family, type, proto):
        self.ops.append("socketpair")
        return super().socketpair(family, type, proto)

    def shutdown(self, sock, how):
        self.ops.append("shutdown")
        return super().shutdown(sock, how)

    def accept(self, sock, flags):
        self.ops.append("accept")
        return super().accept(sock, flags)


BAD_TYPES = [socket.SOCK_STREAM | 0x100000, socket.SOCK_STREAM | 0x40, -1, 2**31 - 1, 15]


@pytest.mark.parametrize("kind", BAD_TYPES)
def test_bad_type_bits_are_einval_before_the_driver(family, no_leaks, kind):
    driver = register(Recording())
    expected = kernel_socket_errno(socket.AF_UNIX, kind)
    assert expected == errno.EINVAL
    assert errno_of(lambda: posix.socket(family, kind)) == expected
    assert errno_of(lambda: posix.socketpair(family, kind)) == expected
    assert driver.ops == []


@pytest.mark.parametrize("how", [-1, 3, 4, 2**31 - 1])
def test_bad_shutdown_how_is_einval_before_the_driver(family, no_leaks, how):
    driver = register(Recording())
    a, b = posix.socketpair(family, socket.SOCK_STREAM)
    reference, other = socket.socketpair()
    try:
        expected = errno_of(lambda: reference.shutdown(how))
        assert expected == errno.EINVAL
        assert errno_of(lambda: posix.shutdown(a, how)) == expected
        assert "shutdown" not in driver.ops
    finally:
        reference.close()
        other.close()
        posix.close(a)
        posix.close(b)


def kernel_accept4_errno(flags: int) -> int:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(b"\0posix-socket-test-accept4-%d" % os.getpid())
        listener.listen()
        listener.setblocking(False)
        ctypes.set_errno(0)
        assert LIBC.accept4(listener.fileno(), None, None, flags) == -1
        return ctypes.get_errno()


@pytest.mark.parametrize("flags", [socket.MSG_PEEK, 0x4, 0x100, socket.SOCK_STREAM, -1])
def test_bad_accept4_flags_are_einval_before_the_driver(family, no_leaks, flags):
    driver = register(Recording())
    listener = posix.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        posix.bind(listener, "listener")
        posix.listen(listener, 5)
        expected = kernel_accept4_errno(flags)
        assert expected == errno.EINVAL
        assert errno_of(lambda: posix.accept4(listener, flags)) == expected
        assert "accept" not in driver.ops
    finally:
        posix.close(listener)


# -- driver bugs become EIO --------------------------------------------------------------

class Faulty(MemoryDriver):
    """A memory driver that raises ``self.faults[op]`` from ``op`` once it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: dict[str, BaseException] = {}
        self.closes = 0

    def _check(self, op):
        if op in self.faults:
            raise self.faults[op]

    def create(self, family, type, proto):
        self._check("create")
        return super().create(family, type, proto)

    def socketpair(self, family, type, proto):
        self._check("socketpair")
        return super().socketpair(family, type, proto)

    def fileno(self, sock):
        self._check("fileno")
        return None

    def send(self, sock, data, flags):
        self._check("send")
        return super().send(sock, data, flags)

    def recv(self, sock, bufsize, flags):
        self._check("recv")
        return super().recv(sock, bufsize, flags)

    def poll(self, sock):
        self._check("poll")
        return super().poll(sock)

    def close(self, sock):
        self.closes += 1
        super().close(sock)  # the socket is released whatever happens next
        self._check("close")


BUGS = [RuntimeError("boom"), KeyError("missing"), AttributeError("no such thing")]
BUG_IDS = ["RuntimeError", "KeyError", "AttributeError"]


def assert_driver_failure(info, op, original):
    failure = info.value
    assert isinstance(failure, DriverFailure)
    assert isinstance(failure, OSError)
    assert failure.errno == errno.EIO
    assert failure.__cause__ is original
    assert failure.op == op
    assert failure.driver_name == "memory"
    assert op in str(failure)


@pytest.mark.parametrize("bug", BUGS, ids=BUG_IDS)
@pytest.mark.parametrize("op", ["create", "fileno"])
def test_bug_while_creating(family, no_leaks, op, bug):
    driver = register(Faulty())
    driver.faults[op] = bug
    with pytest.raises(OSError) as info:
        posix.socket(family, socket.SOCK_STREAM)
    assert_driver_failure(info, op, bug)
    with pytest.raises(OSError) as info:
        posix.socketpair(family, socket.SOCK_STREAM)  # the memory driver's calls create
    assert_driver_failure(info, "socketpair" if op == "create" else op, bug)
    # Sockets the driver made before the bug struck are let go, exactly once each.
    assert driver.closes == (3 if op == "fileno" else 0)


@pytest.mark.parametrize("bug", BUGS, ids=BUG_IDS)
def test_bug_in_socketpair(family, no_leaks, bug):
    driver = register(Faulty())
    driver.faults["socketpair"] = bug
    with pytest.raises(OSError) as info:
        posix.socketpair(family, socket.SOCK_STREAM)
    assert_driver_failure(info, "socketpair", bug)


@pytest.mark.parametrize("bug", BUGS, ids=BUG_IDS)
@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "nonblocking"])
def test_bug_in_send_and_recv(family, no_leaks, bug, blocking):
    driver = register(Faulty())
    kind = socket.SOCK_STREAM | (0 if blocking else socket.SOCK_NONBLOCK)
    a, b = posix.socketpair(family, kind)
    try:
        driver.faults["send"] = bug
        with pytest.raises(OSError) as info:
            posix.send(a, b"data")
        assert_driver_failure(info, "send", bug)
        with pytest.raises(OSError) as info:
            posix.write(a, b"data")  # write -> send in the driver
        assert_driver_failure(info, "write", bug)
        del driver.faults["send"]
        assert posix.send(a, b"data") == 4
        driver.faults["recv"] = bug
        with pytest.raises(OSError) as info:
            posix.recv(b, 10)
        assert_driver_failure(info, "recv", bug)
        with pytest.raises(OSError) as info:
            posix.read(b, 10)  # read -> recv in the driver
        assert_driver_failure(info, "read", bug)
        del driver.faults["recv"]
        assert posix.recv(b, 10) == b"data"
    finally:
        driver.faults.clear()
        posix.close(a)
        posix.close(b)
    assert driver.closes == 2


class Interrupted(Faulty):
    """Sends run a signal whose Python handler raises, as a program's alarm can
    strike between two bytecodes of a driver's code."""

    def send(self, sock, data, flags):
        signal.raise_signal(signal.SIGUSR1)  # the handler runs before this returns
        return super().send(sock, data, flags)


def test_a_signal_handlers_exception_passes_through_a_driver_op_as_the_stdlib_lets_it(
        family, no_leaks):
    def handler(signum, frame):
        raise ZeroDivisionError("from the handler")

    # With the stdlib, a handler's exception leaves the call it interrupted unchanged
    # (CPython's test_socket InterruptedSendTimeoutTest, run in test_cpython_socket,
    # raises ZeroDivisionError from SIGALRM); it is the program's, not a driver bug.
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        register(Interrupted())
        a, b = posix.socketpair(family, socket.SOCK_STREAM)
        try:
            with pytest.raises(ZeroDivisionError, match="from the handler"):
                posix.send(a, b"data")
        finally:
            posix.close(a)
            posix.close(b)
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("bug", BUGS, ids=BUG_IDS)
def test_bug_in_poll(family, no_leaks, bug):
    driver = register(Faulty())
    a, b = posix.socketpair(family, socket.SOCK_STREAM)
    try:
        driver.faults["poll"] = bug
        with pytest.raises(OSError) as info:
            posix.poll([(a, POLLIN | POLLOUT)], 0)
        assert_driver_failure(info, "poll", bug)
        with pytest.raises(OSError) as info:
            posix.select([a], [a], [], 0)
        assert_driver_failure(info, "poll", bug)
        with pytest.raises(OSError) as info:  # a blocking recv asks poll while it waits
            posix.recv(a, 10)
        assert_driver_failure(info, "poll", bug)
    finally:
        driver.faults.clear()
        posix.close(a)
        posix.close(b)
    assert driver.closes == 2


@pytest.mark.parametrize("bug", BUGS, ids=BUG_IDS)
def test_bug_in_poll_while_creating_leaves_nothing_behind(family, no_leaks, bug):
    driver = register(Faulty())
    driver.faults["poll"] = bug
    with pytest.raises(OSError) as info:
        posix.socket(family, socket.SOCK_STREAM)
    assert_driver_failure(info, "poll", bug)
    with pytest.raises(OSError) as info:
        posix.socketpair(family, socket.SOCK_STREAM)
    assert_driver_failure(info, "poll", bug)
    assert driver.closes == 3


@pytest.mark.parametrize("bug", BUGS, ids=BUG_IDS)
def test_bug_in_close_goes_to_the_unraisable_hook(family, no_leaks, monkeypatch, bug):
    driver = register(Faulty())
    reports = []
    monkeypatch.setattr("sys.unraisablehook", reports.append)
    a, b = posix.socketpair(family, socket.SOCK_STREAM)
    extra = posix.dup(a)
    driver.faults["close"] = bug
    posix.close(a)
    assert reports == []  # not the last reference
    posix.close(extra)
    posix.close(b)
    assert driver.closes == 2
    assert len(reports) == 2
    for report in reports:
        failure = report.exc_value
        assert isinstance(failure, DriverFailure)
        assert failure.errno == errno.EIO
        assert failure.op == "close"
        assert failure.__cause__ is bug
        assert report.exc_type is DriverFailure
    for fd in (a, b, extra):  # the numbers are gone all the same
        assert fd not in descriptors.open_numbers()
        assert errno_of(lambda fd=fd: posix.close(fd)) == errno.EBADF


@pytest.mark.parametrize("bug", BUGS, ids=BUG_IDS)
def test_bug_in_recv_after_a_wait(family, no_leaks, bug):
    """The first attempt would block; the retry after the wake-up hits the bug."""
    driver = register(Faulty())
    a, b = posix.socketpair(family, socket.SOCK_STREAM)

    def later():
        time.sleep(0.05)
        driver.faults["recv"] = bug
        posix.send(a, b"late")

    thread = threading.Thread(target=later)
    thread.start()
    try:
        with pytest.raises(OSError) as info:
            posix.recv(b, 10)
        assert_driver_failure(info, "recv", bug)
    finally:
        thread.join()
        driver.faults.clear()
        posix.close(a)
        posix.close(b)


def test_expected_errors_pass_through_unchanged(family, no_leaks):
    driver = register(Faulty())
    a, b = posix.socketpair(family, socket.SOCK_STREAM)
    try:
        refused = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        driver.faults["send"] = refused
        with pytest.raises(ConnectionRefusedError) as info:
            posix.send(a, b"x")
        assert info.value is refused
    finally:
        driver.faults.clear()
        posix.close(a)
        posix.close(b)


# -- budget ------------------------------------------------------------------------------

def test_budget_charges_and_releases():
    budget = Budget(10)
    budget.charge(4)
    budget.charge(6)
    assert budget.used == 10
    with pytest.raises(OSError) as info:
        budget.charge(1)
    assert info.value.errno == errno.ENOBUFS
    assert budget.used == 10
    budget.release(5)
    budget.charge(5)
    budget.release(100)
    assert budget.used == 0
    assert "limit=10" in repr(budget)
    with pytest.raises(ValueError):
        Budget(-1)
    assert ps.SocketDriver().budget.limit == DEFAULT_BUDGET
    shared = Budget(5)
    assert ps.SocketDriver(budget=shared).budget is shared


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "nonblocking"])
def test_memory_driver_surfaces_enobufs_on_send(no_leaks, blocking):
    driver = MemoryDriver(budget=Budget(100))
    ps.register_family(AF_MEMORY, driver, replace=True)
    kind = socket.SOCK_STREAM | (0 if blocking else socket.SOCK_NONBLOCK)
    a, b = posix.socketpair(AF_MEMORY, kind)
    try:
        assert posix.send(a, b"x" * 60) == 60
        assert errno_of(lambda: posix.send(a, b"y" * 60)) == errno.ENOBUFS
        assert errno_of(lambda: posix.send(b, b"z" * 200)) == errno.ENOBUFS
        assert driver.budget.used == 60
        assert posix.recv(b, 100) == b"x" * 60
        assert driver.budget.used == 0
        assert posix.send(a, b"y" * 60) == 60
    finally:
        posix.close(a)
        posix.close(b)
        ps.unregister_family(AF_MEMORY)
    assert driver.budget.used == 0
