"""Wrong Python types and out-of-range values: the stdlib's exception, exactly.

Every case calls the stdlib with the same bad argument (on a kernel socket, a pipe, or
the ``os``/``fcntl``/``select`` function that does the same job) and expects the posix
call to raise the same exception type, with the same message where the message is not
version-dependent (OverflowError texts differ between Python versions, so only the type
is compared for those).  Sockets under test come from the host driver and from the
in-memory driver, whose argument checks the core does itself.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import gc
import math
import os
import select
import socket

import pytest
from conftest import open_fds as listed_fds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memory_driver import AF_MEMORY, MemoryDriver

import posix_socket as ps
from posix_socket import descriptors, posix

SOL, REUSE = socket.SOL_SOCKET, socket.SO_REUSEADDR
POLLIN = select.POLLIN


class StrFileno:
    def fileno(self):
        return "3"


class NoFileno:
    pass


def same_error(stdlib, ours, *, message=None):
    """``ours()`` raises what ``stdlib()`` raises; ``message`` None compares messages
    except for OverflowError."""
    with pytest.raises(Exception) as expected:
        stdlib()
    with pytest.raises(Exception) as got:
        ours()
    assert type(got.value) is type(expected.value), (got.value, expected.value)
    if message is None:
        message = not isinstance(expected.value, OverflowError)
    if message:
        assert str(got.value) == str(expected.value)
    if isinstance(expected.value, OSError):
        assert got.value.errno == expected.value.errno


@pytest.fixture(params=["host", "memory"])
def family(request):
    if request.param == "host":
        yield socket.AF_UNIX
        return
    ps.register_family(AF_MEMORY, MemoryDriver(), replace=True)
    yield AF_MEMORY
    ps.unregister_family(AF_MEMORY)


@pytest.fixture
def pair(family):
    """A connected posix pair and, as the reference, a connected stdlib pair."""
    a, b = posix.socketpair(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    yield a, left
    posix.close(a)
    posix.close(b)
    left.close()
    right.close()


# (id, stdlib call on a socket object, posix call on a descriptor)
SOCKET_CASES = [
    # send / sendto / sendmsg
    ("send str", lambda s: s.send("str"), lambda fd: posix.send(fd, "str")),
    ("send None", lambda s: s.send(None), lambda fd: posix.send(fd, None)),
    ("send int", lambda s: s.send(123), lambda fd: posix.send(fd, 123)),
    ("send list", lambda s: s.send([1]), lambda fd: posix.send(fd, [1])),
    ("send flags str", lambda s: s.send(b"x", "0"), lambda fd: posix.send(fd, b"x", "0")),
    ("send flags float", lambda s: s.send(b"x", 1.0), lambda fd: posix.send(fd, b"x", 1.0)),
    ("send flags huge", lambda s: s.send(b"x", 2**40), lambda fd: posix.send(fd, b"x", 2**40)),
    ("sendto str", lambda s: s.sendto("s", 0, None), lambda fd: posix.sendto(fd, "s", 0, None)),
    ("sendto flags", lambda s: s.sendto(b"x", "0", None),
     lambda fd: posix.sendto(fd, b"x", "0", None)),
    ("sendmsg not iterable", lambda s: s.sendmsg(5), lambda fd: posix.sendmsg(fd, 5)),
    ("sendmsg str buffer", lambda s: s.sendmsg(["s"]), lambda fd: posix.sendmsg(fd, ["s"])),
    ("sendmsg int buffer", lambda s: s.sendmsg([b"x", 1]),
     lambda fd: posix.sendmsg(fd, [b"x", 1])),
    ("sendmsg ancdata not iterable", lambda s: s.sendmsg([b"x"], 5),
     lambda fd: posix.sendmsg(fd, [b"x"], 5)),
    ("sendmsg ancdata item int", lambda s: s.sendmsg([b"x"], [5]),
     lambda fd: posix.sendmsg(fd, [b"x"], [5])),
    ("sendmsg ancdata item short", lambda s: s.sendmsg([b"x"], [(1, 2)]),
     lambda fd: posix.sendmsg(fd, [b"x"], [(1, 2)])),
    ("sendmsg ancdata item long", lambda s: s.sendmsg([b"x"], [(1, 2, b"", 4)]),
     lambda fd: posix.sendmsg(fd, [b"x"], [(1, 2, b"", 4)])),
    ("sendmsg ancdata level str", lambda s: s.sendmsg([b"x"], [("1", 2, b"")]),
     lambda fd: posix.sendmsg(fd, [b"x"], [("1", 2, b"")])),
    ("sendmsg ancdata data str", lambda s: s.sendmsg([b"x"], [(1, 2, "s")]),
     lambda fd: posix.sendmsg(fd, [b"x"], [(1, 2, "s")])),
    ("sendmsg ancdata level huge", lambda s: s.sendmsg([b"x"], [(2**40, 2, b"")]),
     lambda fd: posix.sendmsg(fd, [b"x"], [(2**40, 2, b"")])),
    ("sendmsg flags str", lambda s: s.sendmsg([b"x"], [], "0"),
     lambda fd: posix.sendmsg(fd, [b"x"], [], "0")),
    # recv / recvfrom / recvmsg
    ("recv negative", lambda s: s.recv(-1), lambda fd: posix.recv(fd, -1)),
    ("recv str", lambda s: s.recv("1"), lambda fd: posix.recv(fd, "1")),
    ("recv float", lambda s: s.recv(1.0), lambda fd: posix.recv(fd, 1.0)),
    ("recv None", lambda s: s.recv(None), lambda fd: posix.recv(fd, None)),
    ("recv huge", lambda s: s.recv(2**64), lambda fd: posix.recv(fd, 2**64)),
    ("recv ssize_t max + 1", lambda s: s.recv(2**63), lambda fd: posix.recv(fd, 2**63)),
    ("recv very negative", lambda s: s.recv(-(2**64)), lambda fd: posix.recv(fd, -(2**64))),
    ("recv flags str", lambda s: s.recv(1, "0"), lambda fd: posix.recv(fd, 1, "0")),
    ("recv flags huge", lambda s: s.recv(1, 2**40), lambda fd: posix.recv(fd, 1, 2**40)),
    ("recvfrom negative", lambda s: s.recvfrom(-1), lambda fd: posix.recvfrom(fd, -1)),
    ("recvfrom str", lambda s: s.recvfrom("1"), lambda fd: posix.recvfrom(fd, "1")),
    ("recvfrom huge", lambda s: s.recvfrom(2**64), lambda fd: posix.recvfrom(fd, 2**64)),
    ("recvmsg negative", lambda s: s.recvmsg(-1), lambda fd: posix.recvmsg(fd, -1)),
    ("recvmsg ancbufsize negative", lambda s: s.recvmsg(1, -1),
     lambda fd: posix.recvmsg(fd, 1, -1)),
    ("recvmsg ancbufsize too big", lambda s: s.recvmsg(1, 2**31),
     lambda fd: posix.recvmsg(fd, 1, 2**31)),
    ("recvmsg ancbufsize huge", lambda s: s.recvmsg(1, 2**63),
     lambda fd: posix.recvmsg(fd, 1, 2**63)),
    ("recvmsg huge", lambda s: s.recvmsg(2**63), lambda fd: posix.recvmsg(fd, 2**63)),
    ("recvmsg str", lambda s: s.recvmsg("1"), lambda fd: posix.recvmsg(fd, "1")),
    ("recvmsg flags str", lambda s: s.recvmsg(1, 0, "0"),
     lambda fd: posix.recvmsg(fd, 1, 0, "0")),
    # options
    ("setsockopt str", lambda s: s.setsockopt(SOL, REUSE, "1"),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, "1")),
    ("setsockopt None", lambda s: s.setsockopt(SOL, REUSE, None),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, None)),
    ("setsockopt float", lambda s: s.setsockopt(SOL, REUSE, 1.0),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, 1.0)),
    ("setsockopt huge value", lambda s: s.setsockopt(SOL, REUSE, 2**40),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, 2**40)),
    ("setsockopt level str", lambda s: s.setsockopt("1", REUSE, 1),
     lambda fd: posix.setsockopt(fd, "1", REUSE, 1)),
    ("setsockopt level huge", lambda s: s.setsockopt(2**40, REUSE, 1),
     lambda fd: posix.setsockopt(fd, 2**40, REUSE, 1)),
    ("setsockopt optname str", lambda s: s.setsockopt(SOL, "2", 1),
     lambda fd: posix.setsockopt(fd, SOL, "2", 1)),
    # the four-argument form, (level, optname, None, optlen)
    ("setsockopt optlen with a value", lambda s: s.setsockopt(SOL, REUSE, 1, 4),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, 1, 4)),
    ("setsockopt optlen with bytes", lambda s: s.setsockopt(SOL, REUSE, b"", 0),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, b"", 0)),
    ("setsockopt optlen str", lambda s: s.setsockopt(SOL, REUSE, None, "4"),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, None, "4")),
    ("setsockopt optlen float", lambda s: s.setsockopt(SOL, REUSE, None, 4.0),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, None, 4.0)),
    ("setsockopt optlen level str", lambda s: s.setsockopt("1", REUSE, None, 0),
     lambda fd: posix.setsockopt(fd, "1", REUSE, None, 0)),
    ("setsockopt optlen level huge", lambda s: s.setsockopt(2**40, REUSE, None, 0),
     lambda fd: posix.setsockopt(fd, 2**40, REUSE, None, 0)),
    ("setsockopt optlen negative", lambda s: s.setsockopt(SOL, REUSE, None, -1),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, None, -1)),
    ("setsockopt optlen reads", lambda s: s.setsockopt(SOL, REUSE, None, 4),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, None, 4)),
    ("setsockopt optlen short", lambda s: s.setsockopt(SOL, REUSE, None, 2),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, None, 2)),
    ("setsockopt optlen huge reads", lambda s: s.setsockopt(SOL, REUSE, None, 2**64 + 4),
     lambda fd: posix.setsockopt(fd, SOL, REUSE, None, 2**64 + 4)),
    ("getsockopt level str", lambda s: s.getsockopt("1", REUSE),
     lambda fd: posix.getsockopt(fd, "1", REUSE)),
    ("getsockopt level huge", lambda s: s.getsockopt(2**40, REUSE),
     lambda fd: posix.getsockopt(fd, 2**40, REUSE)),
    ("getsockopt buflen too big", lambda s: s.getsockopt(SOL, socket.SO_TYPE, 2000),
     lambda fd: posix.getsockopt(fd, SOL, socket.SO_TYPE, 2000)),
    ("getsockopt buflen negative", lambda s: s.getsockopt(SOL, socket.SO_TYPE, -1),
     lambda fd: posix.getsockopt(fd, SOL, socket.SO_TYPE, -1)),
    ("getsockopt buflen str", lambda s: s.getsockopt(SOL, socket.SO_TYPE, "4"),
     lambda fd: posix.getsockopt(fd, SOL, socket.SO_TYPE, "4")),
    # state
    ("shutdown str", lambda s: s.shutdown("2"), lambda fd: posix.shutdown(fd, "2")),
    ("shutdown huge", lambda s: s.shutdown(2**40), lambda fd: posix.shutdown(fd, 2**40)),
    ("shutdown out of range", lambda s: s.shutdown(5), lambda fd: posix.shutdown(fd, 5)),
    ("shutdown negative", lambda s: s.shutdown(-1), lambda fd: posix.shutdown(fd, -1)),
    ("listen str", lambda s: s.listen("1"), lambda fd: posix.listen(fd, "1")),
    ("listen float", lambda s: s.listen(1.0), lambda fd: posix.listen(fd, 1.0)),
    ("listen huge", lambda s: s.listen(2**40), lambda fd: posix.listen(fd, 2**40)),
]


@pytest.mark.parametrize(("stdlib", "ours"), [c[1:] for c in SOCKET_CASES],
                         ids=[c[0] for c in SOCKET_CASES])
def test_socket_calls_raise_what_the_stdlib_raises(pair, stdlib, ours):
    fd, reference = pair
    same_error(lambda: stdlib(reference), lambda: ours(fd))


# (id, stdlib call on a descriptor number, posix call)
DESCRIPTOR_CASES = [
    ("read str", lambda fd: os.read(fd, "1"), lambda fd: posix.read(fd, "1")),
    ("read negative", lambda fd: os.read(fd, -1), lambda fd: posix.read(fd, -1)),
    ("read huge", lambda fd: os.read(fd, 2**63), lambda fd: posix.read(fd, 2**63)),
    ("write str", lambda fd: os.write(fd, "s"), lambda fd: posix.write(fd, "s")),
    ("write None", lambda fd: os.write(fd, None), lambda fd: posix.write(fd, None)),
    ("fcntl cmd str", lambda fd: fcntl.fcntl(fd, "1"), lambda fd: posix.fcntl(fd, "1")),
    ("fcntl cmd huge", lambda fd: fcntl.fcntl(fd, 2**40), lambda fd: posix.fcntl(fd, 2**40)),
    ("ioctl request str", lambda fd: fcntl.ioctl(fd, "1"), lambda fd: posix.ioctl(fd, "1")),
    ("dup2 target str", lambda fd: os.dup2(fd, "1"), lambda fd: posix.dup2(fd, "1")),
]


@pytest.mark.parametrize(("stdlib", "ours"), [c[1:] for c in DESCRIPTOR_CASES],
                         ids=[c[0] for c in DESCRIPTOR_CASES])
def test_descriptor_calls_raise_what_the_os_module_raises(pair, stdlib, ours):
    fd, reference = pair
    same_error(lambda: stdlib(reference.fileno()), lambda: ours(fd))


# (id, stdlib, posix, compare messages).  The fcntl module also takes objects with a
# fileno() method and words its TypeError for that; posix takes ints, as os does.
NUMBER_CASES = [
    ("close", os.close, posix.close, True),
    ("dup", os.dup, posix.dup, True),
    ("dup2", lambda fd: os.dup2(fd, 5), lambda fd: posix.dup2(fd, 5), True),
    ("dup2 target", lambda fd: os.dup2(0, fd), lambda fd: posix.dup2(0, fd), True),
    ("read", lambda fd: os.read(fd, 1), lambda fd: posix.read(fd, 1), True),
    ("write", lambda fd: os.write(fd, b"x"), lambda fd: posix.write(fd, b"x"), True),
    ("fcntl", lambda fd: fcntl.fcntl(fd, fcntl.F_GETFL),
     lambda fd: posix.fcntl(fd, fcntl.F_GETFL), False),
    ("ioctl", lambda fd: fcntl.ioctl(fd, 0x541B, b"\0" * 4),
     lambda fd: posix.ioctl(fd, 0x541B, b"\0" * 4), False),
]


@pytest.mark.parametrize("number", ["3", 3.0, None, 2**40, -(2**40)])
@pytest.mark.parametrize(("stdlib", "ours", "message"), [c[1:] for c in NUMBER_CASES],
                         ids=[c[0] for c in NUMBER_CASES])
def test_bad_descriptor_numbers(stdlib, ours, message, number):
    same_error(lambda: stdlib(number), lambda: ours(number), message=message and None)


@pytest.mark.parametrize("number", ["3", 3.0, None, 2**40])
@pytest.mark.parametrize("call", [
    lambda fd: posix.send(fd, b"x"), lambda fd: posix.recv(fd, 1),
    lambda fd: posix.getsockname(fd), lambda fd: posix.shutdown(fd, socket.SHUT_RDWR),
    lambda fd: posix.getsockopt(fd, SOL, socket.SO_TYPE), lambda fd: posix.accept(fd),
], ids=["send", "recv", "getsockname", "shutdown", "getsockopt", "accept"])
def test_bad_descriptor_numbers_for_socket_calls(call, number):
    """No stdlib function takes a socket number; the os module's conversion is the model."""
    same_error(lambda: os.fstat(number), lambda: call(number))


# Arguments for socket()/socketpair(), given the family under test.
CREATION_CASES = [
    ("family str", lambda family: ("2", socket.SOCK_STREAM)),
    ("family float", lambda family: (2.0, socket.SOCK_STREAM)),
    ("family None", lambda family: (None, socket.SOCK_STREAM)),
    ("family huge", lambda family: (2**40, socket.SOCK_STREAM)),
    ("type str", lambda family: (family, "1")),
    ("type float", lambda family: (family, 1.0)),
    ("type None", lambda family: (family, None)),
    ("type huge", lambda family: (family, 2**40)),
    ("proto str", lambda family: (family, socket.SOCK_STREAM, "0")),
    ("proto huge", lambda family: (family, socket.SOCK_STREAM, 2**40)),
]


@pytest.mark.parametrize("args", [c[1] for c in CREATION_CASES],
                         ids=[c[0] for c in CREATION_CASES])
@pytest.mark.parametrize("make", ["socket", "socketpair"])
def test_creation_raises_what_the_stdlib_raises(family, make, args):
    stdlib = getattr(_socket, make)  # the C functions: no Python-level defaults for -1
    same_error(lambda: stdlib(*args(socket.AF_UNIX)),
               lambda: getattr(posix, make)(*args(family)))


def test_family_keyword_is_checked_like_the_stdlib():
    same_error(lambda: socket.socket(family="x"),
               lambda: posix.socket(family="x", type=socket.SOCK_STREAM))


# -- poll and select ---------------------------------------------------------------------

POLL_ENTRY_CASES = [
    ("fd str", ("3", POLLIN)),
    ("fd no fileno", (NoFileno(), POLLIN)),
    ("fileno returns str", (StrFileno(), POLLIN)),
    ("fd huge", (2**40, POLLIN)),
    ("events negative", (None, -1)),
    ("events too big", (None, 2**16)),
    ("events huge", (None, 2**70)),
    ("events str", (None, "1")),
    ("events float", (None, 1.0)),
]


@pytest.mark.parametrize("entry", [c[1] for c in POLL_ENTRY_CASES],
                         ids=[c[0] for c in POLL_ENTRY_CASES])
def test_poll_entries_are_checked_like_select_poll(pair, entry):
    fd, reference = pair
    target, events = entry
    poller = select.poll()
    same_error(lambda: poller.register(reference if target is None else target, events),
               lambda: posix.poll([(fd if target is None else target, events)], 0))


@pytest.mark.parametrize("timeout", ["1", [], 2**31, 2**64, -(2**64), math.nan, math.inf,
                                     -math.inf, 1e300],
                         ids=["str", "list", "int max + 1", "huge", "very negative", "nan",
                              "inf", "-inf", "1e300"])
def test_poll_timeouts_are_checked_like_select_poll(pair, timeout):
    fd, reference = pair
    poller = select.poll()
    poller.register(reference, select.POLLOUT)  # ready at once: only the check can fail
    same_error(lambda: poller.poll(timeout),
               lambda: posix.poll([(fd, select.POLLOUT)], timeout))
    same_error(lambda: select.poll().poll(timeout), lambda: posix.poll([], timeout))


def test_poll_rejects_what_is_not_a_list_of_pairs(pair):
    fd, _ = pair
    for bad in (5, [5], [(fd,)], [(fd, POLLIN, 0)], [None]):
        with pytest.raises(TypeError):
            posix.poll(bad, 0)


@pytest.mark.parametrize("timeout", ["1", [], -1, -0.5, 2**64, -(2**64), 10**10, math.nan,
                                     math.inf, -math.inf, 1e300, 1e10],
                         ids=["str", "list", "negative", "negative float", "huge",
                              "very negative", "beyond 2**63 ns", "nan", "inf", "-inf",
                              "1e300", "float beyond 2**63 ns"])
def test_select_timeouts_are_checked_like_select_select(pair, timeout):
    fd, reference = pair
    same_error(lambda: select.select([], [reference], [], timeout),
               lambda: posix.select([], [fd], [], timeout))


def test_select_with_a_long_but_valid_timeout_returns_at_once(pair):
    fd, reference = pair
    assert select.select([], [reference], [], 1e9) == ([], [reference], [])
    assert posix.select([], [fd], [], 1e9) == ([], [fd], [])
    r, w = os.pipe()
    try:  # kernel descriptors only: the wait goes to poll(2), whose timeout is a C int
        assert posix.select([], [w], [], 1e9) == ([], [w], [])
        assert posix.poll([(w, select.POLLOUT)], 2**31 - 1) == [(w, select.POLLOUT)]
    finally:
        os.close(r)
        os.close(w)


SELECT_ENTRY_CASES = [
    ("negative", -1),
    ("FD_SETSIZE", 1024),
    ("huge", 2**40),
    ("str", "3"),
    ("float", 3.0),
    ("no fileno", NoFileno()),
    ("fileno returns str", StrFileno()),
]


@pytest.mark.parametrize("entry", [c[1] for c in SELECT_ENTRY_CASES],
                         ids=[c[0] for c in SELECT_ENTRY_CASES])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_select_entries_are_checked_like_select_select(pair, entry, where):
    fd, reference = pair
    stdlib_lists = [[reference], [], []]
    ours_lists = [[fd], [], []]
    stdlib_lists[where].append(entry)
    ours_lists[where].append(entry)
    same_error(lambda: select.select(*stdlib_lists, 0), lambda: posix.select(*ours_lists, 0))


@pytest.mark.parametrize("bad", [5, None, object()])
def test_select_lists_must_be_sequences(bad):
    same_error(lambda: select.select(bad, [], [], 0), lambda: posix.select(bad, [], [], 0))
    same_error(lambda: select.select([], [], bad, 0), lambda: posix.select([], [], bad, 0))


# -- garbage everywhere ------------------------------------------------------------------

class Slot:
    """Stands for a live descriptor of the example: replaced by its number at call time."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


SLOTS = [Slot("memory"), Slot("host"), Slot("pipe")]
NOWHERE = "/nonexistent-posix-socket-test/x"  # a path no bind or connect can create
GARBAGE = [
    None, "", NOWHERE, b"", NOWHERE.encode(), bytearray(NOWHERE.encode()),
    memoryview(NOWHERE.encode()), -1, -(2**31) - 1, 2**63, 2**64, -(2**63) - 1, 1.5,
    math.nan, math.inf, -math.inf, [], [b"a", b"b"], [(1, 2)], [(1, 1, b"a")], [5], (),
    ("127.0.0.1", 0), ("::1", 0, 0, 0), object(), {}, "x" * 300,
]
TIMEOUTS = [0, 0.0, "1", [], math.nan, math.inf, -math.inf, 2**64, -(2**64), 1e300]
EVENTS = [POLLIN, select.POLLOUT, 0, -1, 2**16, "1", None]
ALLOWED = (OSError, TypeError, ValueError, OverflowError)

# Sensible small numbers for sizes, flags, levels...: never in a descriptor's place,
# where they would name the test runner's own stdin, stdout or stderr.
PLAUSIBLE = [0, 1, 16, 4096]

garbage = st.sampled_from(GARBAGE)
descriptor = st.one_of(st.sampled_from(SLOTS), garbage)
argument = st.sampled_from(GARBAGE + PLAUSIBLE)
poll_entry = st.one_of(st.tuples(descriptor, st.sampled_from(EVENTS)), garbage)

ARITY = {  # function: number of arguments after the descriptor
    "bind": 1, "listen": 1, "connect": 1, "accept": 0, "accept4": 1, "shutdown": 1,
    "getsockname": 0, "getpeername": 0, "getsockopt": 3, "setsockopt": 3, "send": 2,
    "sendto": 3, "sendmsg": 4, "recv": 2, "recvfrom": 2, "recvmsg": 3, "read": 1,
    "write": 1, "close": 0, "ioctl": 2, "dup": 0, "fcntl": 2,
}


@st.composite
def garbage_call(draw):
    name = draw(st.sampled_from([*ARITY, "socket", "socketpair", "dup2", "poll", "select"]))
    if name in ("socket", "socketpair"):
        args = draw(st.lists(argument, min_size=2, max_size=3))
    elif name == "dup2":
        args = [draw(descriptor), draw(descriptor)]
    elif name == "poll":
        args = [draw(st.one_of(st.lists(poll_entry, max_size=4), garbage)),
                draw(st.sampled_from(TIMEOUTS))]
    elif name == "select":
        lists = st.one_of(st.lists(descriptor, max_size=3), garbage)
        args = [draw(lists), draw(lists), draw(lists), draw(st.sampled_from(TIMEOUTS))]
    else:
        count = ARITY[name]
        args = [draw(descriptor), *draw(st.lists(argument, min_size=count, max_size=count))]
    return name, args


def open_fds() -> set[int]:
    fds = set()
    for fd in listed_fds():
        try:
            os.fstat(fd)
        except OSError:
            continue
        fds.add(fd)
    return fds


def resolve(value, numbers):
    if isinstance(value, Slot):
        return numbers[value.name]
    if isinstance(value, list):
        return [resolve(item, numbers) for item in value]
    if isinstance(value, tuple):
        return tuple(resolve(item, numbers) for item in value)
    return value


def returned_numbers(name, result) -> list[int]:
    if name in ("dup", "dup2", "socket", "fcntl") and type(result) is int:
        return [result]
    if name == "socketpair":
        return list(result)
    if name in ("accept", "accept4"):
        return [result[0]]
    return []


@pytest.mark.timeout(120)
@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(garbage_call())
def test_garbage_arguments_raise_only_argument_or_os_errors(call):
    name, args = call
    ps.register_family(AF_MEMORY, MemoryDriver(), replace=True)
    for fd in posix.socketpair(AF_MEMORY, socket.SOCK_STREAM):
        posix.close(fd)  # the layer's lazily made helpers exist from here on
    fds, table = open_fds(), set(descriptors.open_numbers())
    memory, memory_peer = posix.socketpair(AF_MEMORY, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    host, host_peer = posix.socketpair(socket.AF_UNIX,
                                       socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    pipe_r, pipe_w = os.pipe2(os.O_NONBLOCK)
    numbers = {"memory": memory, "host": host, "pipe": pipe_r}
    mine = [memory, memory_peer, host, host_peer, pipe_r, pipe_w]
    made: list[int] = []
    try:
        result = getattr(posix, name)(*resolve(args, numbers))
    except ALLOWED:
        pass
    else:
        made = returned_numbers(name, result)
    finally:
        for fd in made + mine:
            try:
                posix.close(fd)
            except OSError as exc:
                assert exc.errno == errno.EBADF
        ps.unregister_family(AF_MEMORY)
    if open_fds() != fds:
        gc.collect()  # slow, so only when something may wait for the collector
    assert set(descriptors.open_numbers()) == table, (name, args)
    assert open_fds() == fds, (name, args)


# setsockopt's argument forms on the drop-in socket object, against the stdlib's.
SETSOCKOPT_FORMS = [
    (SOL, REUSE, None), (SOL, REUSE, 1, 4), (SOL, REUSE, None, None),
    (SOL, REUSE, None, 0, 0), (SOL, REUSE, None, "0"), (SOL, REUSE, None, -1),
    (SOL, REUSE, None, 4), (SOL, socket.SO_BINDTODEVICE, None, 2**32 + 1),
]


@pytest.mark.parametrize("args", SETSOCKOPT_FORMS, ids=repr)
@pytest.mark.parametrize("preset", ["host", "virtual"])
def test_dropin_setsockopt_forms_raise_what_the_stdlib_raises(preset, args):
    from posix_socket import socket as dropin

    with socket.socket() as reference, ps.use(preset), dropin.socket() as ours:
        same_error(lambda: reference.setsockopt(*args), lambda: ours.setsockopt(*args))


@pytest.mark.parametrize("preset", ["host", "virtual"])
def test_dropin_setsockopt_without_a_buffer_unbinds_a_device(preset):
    """SO_BINDTODEVICE with (None, 0), the stdlib's way to unbind, works on every preset."""
    from posix_socket import socket as dropin

    with ps.use(preset), dropin.socket() as sock:
        sock.setsockopt(SOL, socket.SO_BINDTODEVICE, b"lo")
        assert sock.getsockopt(SOL, socket.SO_BINDTODEVICE, 16) == b"lo\0"
        sock.setsockopt(SOL, socket.SO_BINDTODEVICE, None, 0)
        assert sock.getsockopt(SOL, socket.SO_BINDTODEVICE, 16) == b""
