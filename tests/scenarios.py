"""The oracle suite: one sequence of socket calls, run on the kernel and on the layer.

"Linux is the oracle": a scenario never states what a call should return.  It is run
once through ``KernelAPI`` (the stdlib on the real kernel) and once through ``LayerAPI``
(``posix_socket.posix``); each adapter logs every call's normalised outcome, and the
two logs must be equal call by call.  Normalising makes runs comparable: descriptor
numbers become ``fd#0, fd#1...`` in creation order, ephemeral ports ``port#0...``,
addresses the environment handed out ``addr#0...``, AF_UNIX autobind names
``autobind#0...``, and the family number read back through SO_DOMAIN ``"family"``.

A scenario is a plain function ``scenario_xxx(api, env)``.  It must be deterministic on
the kernel: it only waits for things that are bound to happen (a blocking call whose
data was sent, a poll with a generous timeout for an event already under way) and
never asks "has it arrived yet?".  ``@scenario(...)`` records which socket types (and,
for family-specific behaviour, which families) it makes sense for and which optional
driver features it needs, so a configuration can leave out what its driver does not
claim to do.

Where Linux is deterministic only in a summary (an ephemeral port is *some* port in
32768-60999; connections spread over SO_REUSEPORT listeners *somehow*; a full buffer
takes *some* number of bytes), the scenario makes the varying calls with
``api.quietly(...)``, which does not log them, and logs the summary with
``api.note(...)``.  Payloads longer than 64 bytes are logged as their length and digest.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl as _fcntl
import hashlib
import itertools
import os
import select as _select
import shutil
import socket as _socket
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posix_socket import posix

STREAM, DGRAM = _socket.SOCK_STREAM, _socket.SOCK_DGRAM
SEQPACKET = _socket.SOCK_SEQPACKET  # connections, like STREAM (helpers test ``!= DGRAM``)
SOL_SOCKET = _socket.SOL_SOCKET
SO_DOMAIN = getattr(_socket, "SO_DOMAIN", 39)
SO_PROTOCOL = getattr(_socket, "SO_PROTOCOL", 38)
POLLIN, POLLOUT = _select.POLLIN, _select.POLLOUT
POLL_ALL = 0xFFFF  # every event bit poll(2) can be asked for
WAIT_MS = 5000  # for events already under way; only a broken driver ever waits this long
UNSUPPORTED_FAMILY = 1000  # above the kernel's AF_MAX and never registered here
UNSUPPORTED_PROTO = 99
FIONBIO = 0x5421
FIONREAD = 0x541B
TIMEVAL = struct.Struct("@ll")
INT = struct.Struct("@i")

# Optional features a scenario may need beyond a plain stream socket; a configuration
# names the ones its driver lacks.
MSG = "sendmsg/recvmsg/recvfrom/sendto"
SOCKOPTS = "transport socket options"
IOCTL = "ioctl requests other than FIONBIO"
AUTOBIND = "binding to an empty name picks one"


# -- environment -------------------------------------------------------------------------

class Env:
    """What a scenario knows about where it runs: the family, the type, fresh addresses.

    Every address handed out is remembered so logs can name it by its order
    (``addr#0``) instead of by a temp path or a random name.
    """

    def __init__(self, family: int, type: int, make_address: Callable[[], Any],
                 any_address: Any = "", cleanup: Callable[[], None] = lambda: None) -> None:
        self.family = family
        self.type = type
        self.addresses: list[Any] = []
        self.any_address = any_address  # binding to it makes the system pick a name
        self._make_address = make_address
        self._cleanup = cleanup

    def address(self) -> Any:
        """A fresh address to bind: loopback port 0, a new path, or a new name."""
        addr = self._make_address()
        self.addresses.append(addr)
        return addr

    def close(self) -> None:
        self._cleanup()


def make_env(family: int, type: int) -> Env:
    """The environment for ``family``: loopback for IP, temp paths for AF_UNIX, and
    plain string names for any other (test-only) family."""
    if family == _socket.AF_INET:
        return Env(family, type, lambda: ("127.0.0.1", 0), ("127.0.0.1", 0))
    if family == _socket.AF_INET6:
        return Env(family, type, lambda: ("::1", 0), ("::1", 0))
    if family == _socket.AF_UNIX:
        directory = tempfile.mkdtemp(prefix="oracle-")  # short: sun_path has 108 bytes
        counter = itertools.count()
        return Env(family, type, lambda: os.path.join(directory, f"s{next(counter)}"),
                   "", lambda: shutil.rmtree(directory, ignore_errors=True))
    counter = itertools.count()
    return Env(family, type, lambda: f"name{next(counter)}")


# -- the two implementations of the calls --------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


class KernelCalls:
    """The reference: the kernel's own answers, through the stdlib.

    socket.socket objects are kept by descriptor number.  socket(), socketpair() and
    accept4() are the raw system calls (via ctypes) because CPython always adds
    SOCK_CLOEXEC and has no accept4; everything else is the stdlib method.
    """

    def __init__(self) -> None:
        self.socks: dict[int, _socket.socket] = {}

    def _keep(self, fd: int) -> int:
        self.socks[fd] = _socket.socket(fileno=fd)
        return fd

    def _sock(self, fd: int) -> _socket.socket:
        sock = self.socks.get(fd)
        if sock is None:
            os.fstat(fd)  # numbers not kept here are closed ones: the kernel says EBADF
            raise RuntimeError(f"descriptor {fd} was not opened by this adapter")
        return sock

    def socket(self, family: int, type: int, proto: int = 0) -> int:
        return self._keep(_check(_libc.socket(family, type, proto)))

    def socketpair(self, family: int, type: int, proto: int = 0) -> tuple[int, int]:
        pair = (ctypes.c_int * 2)()
        _check(_libc.socketpair(family, type, proto, pair))
        return self._keep(pair[0]), self._keep(pair[1])

    def accept4(self, fd: int, flags: int) -> tuple[int, Any]:
        new = self._keep(_check(_libc.accept4(fd, None, None, flags)))
        try:
            return new, self.socks[new].getpeername()  # the address accept reports
        except OSError:
            self.close(new)
            raise

    def accept(self, fd: int) -> tuple[int, Any]:
        return self.accept4(fd, 0)

    def bind(self, fd: int, addr: Any) -> None:
        self._sock(fd).bind(addr)

    def listen(self, fd: int, backlog: int) -> None:
        self._sock(fd).listen(backlog)

    def connect(self, fd: int, addr: Any) -> None:
        self._sock(fd).connect(addr)

    def shutdown(self, fd: int, how: int) -> None:
        self._sock(fd).shutdown(how)

    def getsockname(self, fd: int) -> Any:
        return self._sock(fd).getsockname()

    def getpeername(self, fd: int) -> Any:
        return self._sock(fd).getpeername()

    def getsockopt(self, fd: int, level: int, optname: int, buflen: int = 0) -> int | bytes:
        if buflen:
            return self._sock(fd).getsockopt(level, optname, buflen)
        return self._sock(fd).getsockopt(level, optname)

    def setsockopt(self, fd: int, level: int, optname: int, value: int | bytes | None,
                   optlen: int | None = None) -> None:
        if optlen is None:
            self._sock(fd).setsockopt(level, optname, value)
        else:
            self._sock(fd).setsockopt(level, optname, value, optlen)

    def send(self, fd: int, data: bytes, flags: int = 0) -> int:
        return self._sock(fd).send(data, flags)

    def sendto(self, fd: int, data: bytes, flags: int, addr: Any) -> int:
        return self._sock(fd).sendto(data, flags, addr)

    def sendmsg(self, fd: int, buffers: list, ancdata: Any = (), flags: int = 0,
                addr: Any = None) -> int:
        if addr is None:
            return self._sock(fd).sendmsg(buffers, ancdata, flags)
        return self._sock(fd).sendmsg(buffers, ancdata, flags, addr)

    def recv(self, fd: int, bufsize: int, flags: int = 0) -> bytes:
        return self._sock(fd).recv(bufsize, flags)

    def recvfrom(self, fd: int, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        return self._sock(fd).recvfrom(bufsize, flags)

    def recvmsg(self, fd: int, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> tuple:
        return self._sock(fd).recvmsg(bufsize, ancbufsize, flags)

    def close(self, fd: int) -> None:
        sock = self.socks.pop(fd, None)
        if sock is None:
            os.close(fd)
        else:
            sock.close()

    def dup(self, fd: int) -> int:
        return self._keep(_fcntl.fcntl(fd, _fcntl.F_DUPFD, 0))  # dup(2): not close-on-exec

    def dup2(self, fd: int, fd2: int) -> int:
        os.dup2(fd, fd2)  # dup2(2): fd2's old description is closed, fd2 not close-on-exec
        if fd != fd2:
            old = self.socks.pop(fd2, None)
            if old is not None:
                old.detach()  # the number now belongs to fd's description
            self._keep(fd2)
        return fd2

    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int | bytes:
        if cmd in (_fcntl.F_DUPFD, _fcntl.F_DUPFD_CLOEXEC):
            return self._keep(_fcntl.fcntl(fd, cmd, arg))
        return _fcntl.fcntl(fd, cmd, arg)

    def ioctl(self, fd: int, request: int, arg: int | bytes = 0) -> int | bytes:
        return _fcntl.ioctl(fd, request, arg)

    def poll(self, fds: list[tuple[int, int]], timeout_ms: int = -1) -> list[tuple[int, int]]:
        poller = _select.poll()
        for fd, events in fds:
            poller.register(fd, events)
        return poller.poll(timeout_ms)

    def select(self, rlist: list, wlist: list, xlist: list,
               timeout: float | None = None) -> tuple[list, list, list]:
        return _select.select(rlist, wlist, xlist, timeout)


# -- the recording adapters ------------------------------------------------------------

# What the stdlib raises for a call that fails; anything else is a bug, not a result.
STDLIB_ERRORS = (OSError, TypeError, ValueError, OverflowError)


@dataclass(frozen=True)
class Failure:
    """What a scenario gets back from a call that raised; the log has the details."""

    exc: BaseException


def outcome_of_error(exc: BaseException) -> tuple[str, str, str | None]:
    code = getattr(exc, "errno", None)
    return ("error", type(exc).__name__, errno.errorcode.get(code) if code else None)


class Recorder:
    """Calls ``impl`` (anything with posix's function names) and logs every outcome.

    Calls never raise into the scenario: an exception is logged and returned as a
    ``Failure``, so a scenario reads as a flat list of calls and the kernel decides
    what each one gives.  Results are normalised as the module docstring describes.
    """

    impl: Any

    def __init__(self, env: Env) -> None:
        self.env = env
        self.log: list[tuple[str, Any]] = []
        self.open: set[int] = set()
        self._fd_labels: dict[int, str] = {}
        self._fd_count = itertools.count()
        self._ports: dict[int, str] = {}
        self._autobinds: dict[bytes, str] = {}

    def _call(self, name: str, normalise: Callable[[Any], Any], *args: Any) -> Any:
        try:
            result = getattr(self.impl, name)(*args)
        except STDLIB_ERRORS as exc:
            self.log.append((name, outcome_of_error(exc)))
            return Failure(exc)
        self.log.append((name, normalise(result)))
        return result

    def close_all(self) -> None:
        """Close whatever the scenario left open, without logging (cleanup, not test)."""
        for fd in sorted(self.open):
            try:
                self.impl.close(fd)
            except OSError:
                pass
        self.open.clear()

    # -- normalisers -----------------------------------------------------------------

    def _new_fd(self, fd: int) -> str:
        self._fd_labels[fd] = f"fd#{next(self._fd_count)}"
        self.open.add(fd)
        return self._fd_labels[fd]

    def _fd(self, fd: int) -> str:
        return self._fd_labels.get(fd, "fd?")

    def _port(self, port: int) -> Any:
        if not port:
            return 0
        return self._ports.setdefault(port, f"port#{len(self._ports)}")

    def _addr(self, addr: Any) -> Any:
        if isinstance(addr, tuple):
            return (addr[0], self._port(addr[1]), *addr[2:])
        if addr in self.env.addresses:
            return f"addr#{self.env.addresses.index(addr)}"
        if isinstance(addr, bytes) and addr.startswith(b"\0"):
            return self._autobinds.setdefault(addr, f"autobind#{len(self._autobinds)}")
        return addr

    def _same(self, result: Any) -> Any:
        return result

    @staticmethod
    def _data(data: Any) -> Any:
        """Short payloads as they are; long ones as length and digest, to keep the
        report readable."""
        if isinstance(data, bytes) and len(data) > 64:
            return f"<{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}>"
        return data

    # -- what is not a plain call --------------------------------------------------------

    def note(self, what: str, value: Any) -> None:
        """Log a fact the scenario derived from raw results, for outcomes Linux fixes
        only in summary (a port's range, a count compared with another)."""
        self.log.append(("note", (what, value)))

    def quietly(self, name: str, *args: Any) -> Any:
        """Make a call without logging it, raising what it raises: for loops whose
        number of calls is not deterministic (draining a queue, accepting whatever
        arrived where).  Descriptors it opens are still closed at the end."""
        result = getattr(self.impl, name)(*args)
        if name in ("accept", "accept4"):
            self.open.add(result[0])
        elif name == "socket":
            self.open.add(result)
        return result

    def recv_truncating(self, fd: int, bufsize: int, flags: int) -> Any:
        """recv with MSG_TRUNC: Linux returns the datagram's full length, and the stdlib
        grows the result to it without filling the tail, so only the length and the
        first ``bufsize`` bytes are logged."""
        return self._call("recv", lambda r: ("length", len(r), self._data(r[:bufsize])),
                          fd, bufsize, flags)

    # -- the calls -------------------------------------------------------------------

    def socket(self, family: int, type: int, proto: int = 0) -> Any:
        return self._call("socket", self._new_fd, family, type, proto)

    def socketpair(self, family: int, type: int, proto: int = 0) -> Any:
        return self._call("socketpair", lambda p: (self._new_fd(p[0]), self._new_fd(p[1])),
                          family, type, proto)

    def accept(self, fd: int) -> Any:
        return self._call("accept", lambda r: (self._new_fd(r[0]), self._addr(r[1])), fd)

    def accept4(self, fd: int, flags: int) -> Any:
        return self._call("accept4", lambda r: (self._new_fd(r[0]), self._addr(r[1])),
                          fd, flags)

    def bind(self, fd: int, addr: Any) -> Any:
        return self._call("bind", self._same, fd, addr)

    def listen(self, fd: int, backlog: int) -> Any:
        return self._call("listen", self._same, fd, backlog)

    def connect(self, fd: int, addr: Any) -> Any:
        return self._call("connect", self._same, fd, addr)

    def shutdown(self, fd: int, how: int) -> Any:
        return self._call("shutdown", self._same, fd, how)

    def getsockname(self, fd: int) -> Any:
        return self._call("getsockname", self._addr, fd)

    def getpeername(self, fd: int) -> Any:
        return self._call("getpeername", self._addr, fd)

    def getsockopt(self, fd: int, level: int, optname: int, buflen: int = 0) -> Any:
        def normalise(value: Any) -> Any:
            if (level, optname) == (SOL_SOCKET, SO_DOMAIN) and value == self.env.family:
                return "family"
            return value
        return self._call("getsockopt", normalise, fd, level, optname, buflen)

    def setsockopt(self, fd: int, level: int, optname: int, value: int | bytes | None,
                   optlen: int | None = None) -> Any:
        """``value`` None with ``optlen``: the stdlib's four-argument form (a NULL
        option pointer claiming ``optlen`` bytes)."""
        if optlen is None:
            return self._call("setsockopt", self._same, fd, level, optname, value)
        return self._call("setsockopt", self._same, fd, level, optname, value, optlen)

    def send(self, fd: int, data: bytes, flags: int = 0) -> Any:
        return self._call("send", self._same, fd, data, flags)

    def sendto(self, fd: int, data: bytes, flags: int, addr: Any) -> Any:
        return self._call("sendto", self._same, fd, data, flags, addr)

    def sendmsg(self, fd: int, buffers: list, ancdata: Any = (), flags: int = 0,
                addr: Any = None) -> Any:
        return self._call("sendmsg", self._same, fd, buffers, ancdata, flags, addr)

    def recv(self, fd: int, bufsize: int, flags: int = 0) -> Any:
        return self._call("recv", self._data, fd, bufsize, flags)

    def recvfrom(self, fd: int, bufsize: int, flags: int = 0) -> Any:
        return self._call("recvfrom", lambda r: (self._data(r[0]), self._addr(r[1])),
                          fd, bufsize, flags)

    def recvmsg(self, fd: int, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Any:
        return self._call("recvmsg", lambda r: (self._data(r[0]), *r[1:3], self._addr(r[3])),
                          fd, bufsize, ancbufsize, flags)

    def close(self, fd: int) -> Any:
        def closed(result: None) -> None:
            self.open.discard(fd)
        return self._call("close", closed, fd)

    def dup(self, fd: int) -> Any:
        return self._call("dup", self._new_fd, fd)

    def dup2(self, fd: int, fd2: int) -> Any:
        def normalise(number: int) -> str:
            if number not in self._fd_labels:
                return self._new_fd(number)
            self.open.add(number)
            return self._fd(number)
        return self._call("dup2", normalise, fd, fd2)

    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> Any:
        dups = (_fcntl.F_DUPFD, _fcntl.F_DUPFD_CLOEXEC)
        return self._call("fcntl", self._new_fd if cmd in dups else self._same, fd, cmd, arg)

    def ioctl(self, fd: int, request: int, arg: int | bytes = 0) -> Any:
        return self._call("ioctl", self._same, fd, request, arg)

    def poll(self, fds: list[tuple[int, int]], timeout_ms: int = -1) -> Any:
        return self._call("poll", lambda r: [(self._fd(fd), bits) for fd, bits in r],
                          fds, timeout_ms)

    def select(self, rlist: list, wlist: list, xlist: list,
               timeout: float | None = None) -> Any:
        return self._call("select", lambda r: tuple([self._fd(fd) for fd in g] for g in r),
                          rlist, wlist, xlist, timeout)


class KernelAPI(Recorder):
    """The reference run: the real kernel through the stdlib."""

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self.impl = KernelCalls()


class LayerAPI(Recorder):
    """The run under test: ``posix_socket.posix`` and whichever driver serves the family."""

    impl = posix


def run(scenario: Callable[[Recorder, Env], None], api: type[Recorder], env: Env) -> list:
    """Run ``scenario`` through a fresh ``api`` adapter and return its log.

    An exception escaping the scenario (say, from unpacking a call that failed, or a
    bug in the layer) ends the log with a ``"scenario raised"`` entry, so the report
    still shows the first call that went differently; every descriptor it opened is
    closed.
    """
    adapter = api(env)
    try:
        scenario(adapter, env)
    except Exception as exc:
        adapter.log.append(("scenario raised", f"{type(exc).__name__}: {exc}"))
    finally:
        adapter.close_all()
    return adapter.log


def first_difference(expected: list, actual: list, context: int = 3) -> str | None:
    """None if the logs are equal, else a message naming the first differing call
    with the few calls before it."""
    missing = ("<no call>", None)
    pairs = itertools.zip_longest(expected, actual, fillvalue=missing)
    for index, (want, got) in enumerate(pairs):
        if want != got:
            before = "".join(f"\n    {i}: {expected[i]!r}"
                             for i in range(max(0, index - context), index))
            return (f"first difference at call {index}:\n  kernel: {want!r}\n"
                    f"  layer:  {got!r}\n  after:{before or ' (nothing)'}")
    return None


# -- scenario registry -----------------------------------------------------------------

SCENARIOS: list[Callable[[Recorder, Env], None]] = []


def scenario(*types: int, needs: tuple[str, ...] = (),
             families: tuple[int, ...] = ()) -> Callable:
    """Register a scenario for the socket ``types`` it makes sense for, needing the
    optional driver features in ``needs``; ``families`` (the reference families whose
    behaviour it describes) limits it to those, as for TCP/IP-only rules."""
    def register(function: Callable[[Recorder, Env], None]) -> Callable:
        function.types = frozenset(types)
        function.needs = frozenset(needs)
        function.families = frozenset(families)
        SCENARIOS.append(function)
        return function
    return register


# -- helpers scenarios share ----------------------------------------------------------

def listening(api: Recorder, env: Env) -> tuple[int, Any]:
    """A bound, listening stream socket and the address to connect to."""
    listener = api.socket(env.family, env.type)
    api.bind(listener, env.address())
    api.listen(listener, 8)
    return listener, api.getsockname(listener)


def connected_pair(api: Recorder, env: Env) -> tuple[int, int]:
    """Two sockets connected to each other: connect + accept for streams, two bound
    datagram sockets connected to each other's names otherwise."""
    if env.type != DGRAM:
        listener, addr = listening(api, env)
        client = api.socket(env.family, env.type)
        api.connect(client, addr)
        server, _ = api.accept(listener)
        api.close(listener)
        return client, server
    first, second = api.socket(env.family, env.type), api.socket(env.family, env.type)
    api.bind(first, env.address())
    api.bind(second, env.address())
    api.connect(first, api.getsockname(second))
    api.connect(second, api.getsockname(first))
    return first, second


def wait_readable(api: Recorder, fd: int) -> None:
    """Block until ``fd`` is readable; used only when the data has already been sent."""
    api.poll([(fd, POLLIN)], WAIT_MS)


# -- creation ------------------------------------------------------------------------

@scenario(STREAM, DGRAM)
def scenario_socket_of_unsupported_family_fails(api: Recorder, env: Env) -> None:
    """No driver and no kernel protocol serves the family: EAFNOSUPPORT, not a crash."""
    api.socket(UNSUPPORTED_FAMILY, env.type)
    api.socketpair(UNSUPPORTED_FAMILY, env.type)


@scenario(STREAM, DGRAM)
def scenario_socket_with_bad_type_fails(api: Recorder, env: Env) -> None:
    """Unknown flag bits, a type beyond SOCK_MAX and type 0 are refused at creation."""
    api.socket(env.family, env.type | 0x10)
    api.socket(env.family, env.type | 0x40000000)
    api.socket(env.family, 15)
    api.socket(env.family, 0)
    api.socketpair(env.family, env.type | 0x10)


@scenario(STREAM, DGRAM)
def scenario_socket_with_unsupported_protocol_fails(api: Recorder, env: Env) -> None:
    """A protocol the family does not have is EPROTONOSUPPORT."""
    api.socket(env.family, env.type, UNSUPPORTED_PROTO)


@scenario(STREAM, DGRAM)
def scenario_type_flags_show_in_fcntl_and_not_in_so_type(api: Recorder, env: Env) -> None:
    """SOCK_NONBLOCK lands in the description (F_GETFL), SOCK_CLOEXEC in the number
    (F_GETFD), and neither in SO_TYPE."""
    flag_sets = (0, _socket.SOCK_NONBLOCK, _socket.SOCK_CLOEXEC,
                 _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
    for flags in flag_sets:
        fd = api.socket(env.family, env.type | flags)
        api.fcntl(fd, _fcntl.F_GETFL)
        api.fcntl(fd, _fcntl.F_GETFD)
        api.getsockopt(fd, SOL_SOCKET, _socket.SO_TYPE)
        api.close(fd)


@scenario(STREAM, DGRAM)
def scenario_socketpair_is_connected_both_ways(api: Recorder, env: Env) -> None:
    """socketpair gives two connected, unnamed ends carrying the creation flags (or
    EOPNOTSUPP where the family has no pairs, as for IP)."""
    pair = api.socketpair(env.family, env.type | _socket.SOCK_NONBLOCK)
    if isinstance(pair, Failure):
        return
    first, second = pair
    api.fcntl(first, _fcntl.F_GETFL)
    api.fcntl(second, _fcntl.F_GETFL)
    api.getsockname(first)
    api.getpeername(second)
    api.send(first, b"ping")
    api.recv(second, 100)
    api.send(second, b"pong")
    api.recv(first, 100)
    api.recv(first, 100)


# -- state errors --------------------------------------------------------------------

@scenario(STREAM)
def scenario_data_calls_on_unconnected_stream_socket_fail(api: Recorder, env: Env) -> None:
    """recv/send/getpeername/shutdown before connect fail with the kernel's errnos."""
    fd = api.socket(env.family, env.type)
    api.recv(fd, 10)
    api.recv(fd, 10, _socket.MSG_DONTWAIT)
    api.send(fd, b"x", _socket.MSG_NOSIGNAL)
    api.getpeername(fd)
    api.shutdown(fd, 3)
    api.shutdown(fd, -1)


@scenario(STREAM)
def scenario_shutdown_before_connect(api: Recorder, env: Env) -> None:
    """TCP refuses to shut down what is not connected (ENOTCONN); AF_UNIX accepts it
    and the socket then polls as shut down, though it is still not connected."""
    fd = api.socket(env.family, env.type)
    api.shutdown(fd, _socket.SHUT_RD)
    api.poll([(fd, POLL_ALL)], 0)
    api.shutdown(fd, _socket.SHUT_WR)
    api.poll([(fd, POLL_ALL)], 0)
    api.recv(fd, 10, _socket.MSG_DONTWAIT)
    api.send(fd, b"x", _socket.MSG_NOSIGNAL)
    api.getpeername(fd)


@scenario(STREAM, DGRAM, families=(_socket.AF_INET, _socket.AF_INET6))
def scenario_shutdown_of_an_unconnected_socket_then_serve(api: Recorder, env: Env) -> None:
    """shutdown of a socket that is not connected is ENOTCONN, yet Linux records the
    shut directions (inet_shutdown falls through): the socket can still bind, listen
    and accept a connection (TCP), or be connected (UDP), and then carries them."""
    for how in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
        for bound in (False, True):
            fd = api.socket(env.family, env.type | _socket.SOCK_NONBLOCK)
            if bound:
                api.bind(fd, env.address())
            api.shutdown(fd, how)
            api.poll([(fd, POLL_ALL)], 0)
            if not bound:
                api.bind(fd, env.address())
            api.listen(fd, 4)
            api.accept(fd)
            peer = api.socket(env.family, env.type)
            api.connect(peer, api.getsockname(fd))
            if env.type == DGRAM:
                api.connect(fd, api.getsockname(peer))
                api.send(peer, b"to fd")
                api.poll([(fd, POLLIN)], WAIT_MS)
                api.recv(fd, 10)
                api.send(fd, b"to peer", MSG_NOSIGNAL)
            else:
                wait_readable(api, fd)
                accepted = api.accept(fd)
                if not isinstance(accepted, Failure):
                    # A child shut for writing sends its FIN at once: EOF for the peer.
                    api.poll([(peer, POLLIN)], 0 if how == _socket.SHUT_RD else WAIT_MS)
                    api.recv(peer, 10, MSG_DONTWAIT)
                    api.send(accepted[0], b"hi", MSG_NOSIGNAL)
                    api.send(peer, b"ho")
                    api.poll([(accepted[0], POLLIN)], WAIT_MS)
                    api.recv(accepted[0], 10)
                    api.poll([(accepted[0], POLL_ALL)], 0)
                    api.close(accepted[0])
                api.connect(fd, api.getsockname(peer))
                api.recv(fd, 10)
                api.send(fd, b"x", MSG_NOSIGNAL)
            api.poll([(fd, POLL_ALL)], 0)
            api.close(peer)
            api.close(fd)


@scenario(STREAM, families=(_socket.AF_INET, _socket.AF_INET6))
def scenario_shutdown_of_an_unconnected_socket_then_connect(api: Recorder, env: Env) -> None:
    """A TCP socket shut (ENOTCONN) before it connects keeps the shut directions through
    connect: what the connection can then still carry either way."""
    listener, addr = listening(api, env)
    for how in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
        fd = api.socket(env.family, env.type)
        api.shutdown(fd, how)
        api.connect(fd, addr)
        server, _ = api.accept(listener)
        api.poll([(fd, POLL_ALL)], 0)
        api.send(fd, b"up", MSG_NOSIGNAL)
        api.send(server, b"down", MSG_NOSIGNAL)
        api.poll([(server, POLLIN)], 200)
        api.recv(server, 10, MSG_DONTWAIT)
        api.recv(fd, 10, MSG_DONTWAIT)
        api.shutdown(fd, _socket.SHUT_RDWR)
        api.close(fd)
        api.close(server)


@scenario(STREAM, families=(_socket.AF_INET, _socket.AF_INET6))
def scenario_shutdown_of_a_listener_then_listen_again(api: Recorder, env: Env) -> None:
    """A listener shut for reading stops listening (Linux's tcp_disconnect: a closed
    socket, its port given back unless bind() named one); SHUT_WR alone changes nothing.
    It can listen again (on a new port, as getsockname then shows) and serve."""
    for how in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
        listener = api.socket(env.family, env.type | _socket.SOCK_NONBLOCK)
        api.bind(listener, env.address())
        api.listen(listener, 4)
        api.shutdown(listener, how)
        api.getsockopt(listener, SOL_SOCKET, _socket.SO_ACCEPTCONN)
        api.poll([(listener, POLL_ALL)], 0)
        api.accept(listener)
        api.listen(listener, 4)
        api.getsockopt(listener, SOL_SOCKET, _socket.SO_ACCEPTCONN)
        addr = api.getsockname(listener)
        client = api.socket(env.family, env.type)
        api.connect(client, addr)
        wait_readable(api, listener)
        accepted = api.accept(listener)
        if not isinstance(accepted, Failure):
            api.send(client, b"again")
            api.recv(accepted[0], 10)
            api.close(accepted[0])
        api.close(client)
        api.close(listener)


@scenario(STREAM)
def scenario_listening_socket_refuses_data_and_connect(api: Recorder, env: Env) -> None:
    """A listener is not a connection: recv, send, connect and getpeername fail."""
    listener, addr = listening(api, env)
    api.listen(listener, 2)  # listening again just changes the backlog
    api.recv(listener, 10, _socket.MSG_DONTWAIT)
    api.send(listener, b"x", _socket.MSG_NOSIGNAL)
    api.connect(listener, addr)
    api.getpeername(listener)
    api.shutdown(listener, _socket.SHUT_RD)  # and now it stops taking connections
    api.connect(api.socket(env.family, env.type), addr)
    api.fcntl(listener, _fcntl.F_SETFL, os.O_NONBLOCK)
    api.accept(listener)


@scenario(STREAM, DGRAM)
def scenario_bind_twice_fails_einval(api: Recorder, env: Env) -> None:
    """A socket has one name: a second bind is EINVAL even to a fresh address."""
    fd = api.socket(env.family, env.type)
    api.bind(fd, env.address())
    api.bind(fd, env.address())


@scenario(STREAM)
def scenario_listen_before_bind(api: Recorder, env: Env) -> None:
    """TCP binds an ephemeral port on listen; AF_UNIX refuses an unnamed listener."""
    fd = api.socket(env.family, env.type)
    api.listen(fd, 1)
    api.getsockname(fd)


@scenario(STREAM, DGRAM)
def scenario_accept_on_socket_not_listening_fails(api: Recorder, env: Env) -> None:
    """accept on a fresh or bound socket: EINVAL (EOPNOTSUPP for datagrams)."""
    fd = api.socket(env.family, env.type)
    api.accept(fd)
    api.bind(fd, env.address())
    api.accept(fd)
    api.accept4(fd, _socket.SOCK_NONBLOCK)


@scenario(STREAM, DGRAM)
def scenario_accept4_with_unknown_flags_fails_einval(api: Recorder, env: Env) -> None:
    """accept4 checks its flags before anything else, even on a listener."""
    fd = api.socket(env.family, env.type)
    if env.type != DGRAM:
        api.bind(fd, env.address())
        api.listen(fd, 1)
    api.accept4(fd, 0x10)
    api.accept4(fd, _socket.SOCK_NONBLOCK | 1)


@scenario(DGRAM)
def scenario_datagram_socket_has_no_connection_calls(api: Recorder, env: Env) -> None:
    """listen and accept do not exist for datagrams; an unconnected send has no
    destination; recv on an empty socket would block."""
    fd = api.socket(env.family, env.type)
    api.listen(fd, 1)
    api.send(fd, b"x", _socket.MSG_NOSIGNAL)
    api.recv(fd, 10, _socket.MSG_DONTWAIT)
    api.getpeername(fd)
    api.shutdown(fd, _socket.SHUT_WR)


# -- connections ---------------------------------------------------------------------

@scenario(STREAM)
def scenario_connect_and_accept_agree_on_names(api: Recorder, env: Env) -> None:
    """Both ends see the same pair of names, and accept reports the client's."""
    listener, addr = listening(api, env)
    client = api.socket(env.family, env.type)
    api.connect(client, addr)
    server, _ = api.accept(listener)
    api.getsockname(client)
    api.getpeername(client)
    api.getsockname(server)
    api.getpeername(server)
    api.connect(client, addr)  # already connected


@scenario(STREAM, DGRAM)
def scenario_bind_to_address_in_use_fails(api: Recorder, env: Env) -> None:
    """A second socket cannot take a name that is held."""
    first, second = api.socket(env.family, env.type), api.socket(env.family, env.type)
    api.bind(first, env.address())
    api.bind(second, api.getsockname(first))
    api.getsockname(second)


@scenario(STREAM, DGRAM, needs=(AUTOBIND,))
def scenario_binding_to_any_address_picks_a_fresh_name(api: Recorder, env: Env) -> None:
    """Port 0, or an empty AF_UNIX name (autobind), makes the system choose a name no
    other socket has, which peers can then reach."""
    first, second = api.socket(env.family, env.type), api.socket(env.family, env.type)
    api.bind(first, env.any_address)
    api.bind(second, env.any_address)
    name = api.getsockname(first)
    api.getsockname(second)
    if env.type != DGRAM:
        api.listen(first, 1)
        api.connect(second, name)
        server, _ = api.accept(first)
    else:
        api.connect(second, name)
        server = first
    api.getpeername(second)
    api.send(second, b"found you")
    api.recv(server, 100)


@scenario(STREAM)
def scenario_connect_to_name_nobody_listens_on_is_refused(api: Recorder, env: Env) -> None:
    """Bound but not listening: ECONNREFUSED, no pending error left behind, and the
    socket may try again."""
    bound = api.socket(env.family, env.type)
    api.bind(bound, env.address())
    client = api.socket(env.family, env.type)
    api.connect(client, api.getsockname(bound))
    api.getsockopt(client, SOL_SOCKET, _socket.SO_ERROR)
    api.connect(client, api.getsockname(bound))
    api.getpeername(client)


@scenario(STREAM)
def scenario_accept4_flags_apply_to_the_new_socket(api: Recorder, env: Env) -> None:
    """accept4's NONBLOCK/CLOEXEC go to the accepted socket only; accept sets neither;
    a non-blocking listener with an empty queue says EAGAIN."""
    listener, addr = listening(api, env)
    clients = [api.socket(env.family, env.type) for _ in range(2)]
    for client in clients:
        api.connect(client, addr)
    flagged, _ = api.accept4(listener, _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
    plain, _ = api.accept(listener)
    for fd in (flagged, plain, listener):
        api.fcntl(fd, _fcntl.F_GETFL)
        api.fcntl(fd, _fcntl.F_GETFD)
    api.fcntl(listener, _fcntl.F_SETFL, os.O_NONBLOCK)
    api.accept(listener)
    api.recv(flagged, 10)


# -- data ----------------------------------------------------------------------------

@scenario(STREAM, DGRAM)
def scenario_send_and_recv_carry_bytes(api: Recorder, env: Env) -> None:
    """Bytes sent on one end arrive on the other, in both directions."""
    first, second = connected_pair(api, env)
    api.send(first, b"hello")
    api.recv(second, 100)
    api.send(second, b"world!")
    api.recv(first, 100)
    api.recv(first, 100, _socket.MSG_DONTWAIT)


@scenario(STREAM, DGRAM)
def scenario_msg_peek_leaves_data_queued(api: Recorder, env: Env) -> None:
    """MSG_PEEK returns data without consuming it, whatever the size asked."""
    first, second = connected_pair(api, env)
    api.send(first, b"abcdef")
    wait_readable(api, second)
    api.recv(second, 3, _socket.MSG_PEEK)
    api.recv(second, 100, _socket.MSG_PEEK)
    api.recv(second, 100)
    api.recv(second, 100, _socket.MSG_PEEK | _socket.MSG_DONTWAIT)


@scenario(STREAM, DGRAM)
def scenario_msg_dontwait_on_empty_socket_fails_eagain(api: Recorder, env: Env) -> None:
    """A blocking socket does not block with MSG_DONTWAIT, nor once O_NONBLOCK is set."""
    _first, second = connected_pair(api, env)
    api.recv(second, 10, _socket.MSG_DONTWAIT)
    api.fcntl(second, _fcntl.F_SETFL, os.O_NONBLOCK)
    api.recv(second, 10)
    api.fcntl(second, _fcntl.F_SETFL, 0)
    api.recv(second, 10, _socket.MSG_DONTWAIT)


@scenario(STREAM)
def scenario_msg_waitall_gathers_the_whole_request(api: Recorder, env: Env) -> None:
    """MSG_WAITALL keeps reading until the requested count, across several sends."""
    first, second = connected_pair(api, env)
    api.send(first, b"0123456789")
    api.recv(second, 10, _socket.MSG_WAITALL)
    api.send(first, b"abc")
    api.send(first, b"defg")
    api.recv(second, 7, _socket.MSG_WAITALL)
    api.send(first, b"xyz")
    api.recv(second, 2, _socket.MSG_WAITALL)
    api.recv(second, 1, _socket.MSG_WAITALL)


@scenario(STREAM, DGRAM)
def scenario_recv_of_zero_bytes(api: Recorder, env: Env) -> None:
    """recv(0) with data waiting returns b"" (and, for a datagram, drops it)."""
    first, second = connected_pair(api, env)
    api.send(first, b"data")
    wait_readable(api, second)
    api.recv(second, 0)
    api.recv(second, 100, _socket.MSG_DONTWAIT)


@scenario(STREAM, DGRAM, needs=(MSG,))
def scenario_sendmsg_gathers_buffers_and_recvmsg_reads_them(api: Recorder, env: Env) -> None:
    """sendmsg sends its buffers as one message; recvmsg and recvfrom report flags and
    the sender's address the way the family does."""
    first, second = connected_pair(api, env)
    api.sendmsg(first, [b"one ", b"two ", b"three"])
    api.recvmsg(second, 100)
    api.sendmsg(first, [b"", bytearray(b"x"), memoryview(b"yz")])
    api.recvfrom(second, 100)
    api.sendmsg(first, [])
    api.recvmsg(second, 100, 0, _socket.MSG_DONTWAIT)


@scenario(DGRAM, needs=(MSG,))
def scenario_datagrams_keep_their_boundaries(api: Recorder, env: Env) -> None:
    """Each datagram is read whole or truncated (MSG_TRUNC), never merged, and carries
    its sender's name."""
    receiver, sender = api.socket(env.family, env.type), api.socket(env.family, env.type)
    api.bind(receiver, env.address())
    api.bind(sender, env.address())
    target = api.getsockname(receiver)
    api.sendto(sender, b"first", 0, target)
    api.sendto(sender, b"second", 0, target)
    api.recvfrom(receiver, 100)
    api.recvmsg(receiver, 3)
    api.recvfrom(receiver, 100, _socket.MSG_DONTWAIT)


@scenario(STREAM, DGRAM, needs=(IOCTL,))
def scenario_fionread_counts_queued_bytes(api: Recorder, env: Env) -> None:
    """FIONREAD reports how much a recv would return."""
    first, second = connected_pair(api, env)
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.send(first, b"twelve bytes")
    wait_readable(api, second)
    api.ioctl(second, FIONREAD, INT.pack(0))


# -- shutdown and close --------------------------------------------------------------

@scenario(STREAM)
def scenario_shut_wr_gives_peer_eof_and_send_fails_epipe(api: Recorder, env: Env) -> None:
    """After SHUT_WR the peer reads EOF, our sends fail EPIPE, and the other direction
    still works."""
    first, second = connected_pair(api, env)
    api.send(first, b"last words")
    api.shutdown(first, _socket.SHUT_WR)
    api.recv(second, 10, _socket.MSG_WAITALL)
    api.recv(second, 10)
    api.recv(second, 10)
    api.send(first, b"more", _socket.MSG_NOSIGNAL)
    api.send(second, b"reply")
    api.recv(first, 100)
    api.shutdown(first, _socket.SHUT_WR)


@scenario(STREAM)
def scenario_shut_rd_reads_eof(api: Recorder, env: Env) -> None:
    """After SHUT_RD our reads return EOF at once; what the peer's send does is the
    family's business (TCP accepts it, AF_UNIX says EPIPE)."""
    first, second = connected_pair(api, env)
    api.shutdown(second, _socket.SHUT_RD)
    api.recv(second, 10)
    api.recv(second, 10, _socket.MSG_DONTWAIT)
    api.poll([(second, POLL_ALL)], 0)
    api.send(first, b"anyone?", _socket.MSG_NOSIGNAL)
    api.send(second, b"outbound")
    api.recv(first, 100)


@scenario(STREAM)
def scenario_closed_peer_reads_eof_then_send_breaks(api: Recorder, env: Env) -> None:
    """A closed peer reads as EOF; sending to it ends in EPIPE (TCP first accepts one
    send and learns of the close from the peer's reset)."""
    first, second = connected_pair(api, env)
    api.close(first)
    api.recv(second, 10)
    api.send(second, b"hello?", _socket.MSG_NOSIGNAL)
    api.poll([(second, 0)], WAIT_MS)  # wait for the hang-up to be final
    api.getsockopt(second, SOL_SOCKET, _socket.SO_ERROR)
    api.send(second, b"hello?", _socket.MSG_NOSIGNAL)
    api.recv(second, 10)


@scenario(STREAM, needs=(SOCKOPTS,))
def scenario_send_to_a_closed_peer_takes_what_the_send_buffer_holds(api: Recorder,
                                                                    env: Env) -> None:
    """The one send TCP accepts after the peer closed is bounded by SO_SNDBUF, not
    swallowed whole (asyncio's sendfile then sees the reset on its next call)."""
    first, second = connected_pair(api, env)
    api.setsockopt(second, SOL_SOCKET, _socket.SO_SNDBUF, 65536)
    api.close(first)
    api.recv(second, 10)
    api.send(second, b"x" * 253953, _socket.MSG_NOSIGNAL | _socket.MSG_DONTWAIT)
    api.poll([(second, 0)], WAIT_MS)  # wait for the reset
    api.send(second, b"x" * 10, _socket.MSG_NOSIGNAL)


@scenario(STREAM)
def scenario_close_with_unread_data_resets_peer(api: Recorder, env: Env) -> None:
    """Closing with data still unread resets the connection: the peer's next read is
    ECONNRESET, once, and then the connection is simply gone."""
    first, second = connected_pair(api, env)
    api.send(second, b"never read")
    wait_readable(api, first)
    api.close(first)
    api.recv(second, 10)
    api.recv(second, 10)
    api.send(second, b"x", _socket.MSG_NOSIGNAL)


@scenario(STREAM)
def scenario_closing_listener_resets_unaccepted_connections(api: Recorder, env: Env) -> None:
    """Connections still waiting in the backlog when the listener closes are reset."""
    listener, addr = listening(api, env)
    client = api.socket(env.family, env.type)
    api.connect(client, addr)
    wait_readable(api, listener)
    api.close(listener)
    api.recv(client, 10)
    api.recv(client, 10)
    api.send(client, b"x", _socket.MSG_NOSIGNAL)
    api.connect(client, addr)


# -- readiness -----------------------------------------------------------------------

@scenario(STREAM, DGRAM)
def scenario_poll_of_fresh_and_bound_sockets(api: Recorder, env: Env) -> None:
    """What a socket that is not connected reports to poll and select."""
    fd = api.socket(env.family, env.type)
    api.poll([(fd, POLL_ALL)], 0)
    api.poll([(fd, POLLIN | POLLOUT)], 0)
    api.select([fd], [fd], [fd], 0)
    api.bind(fd, env.address())
    api.poll([(fd, POLL_ALL)], 0)
    api.poll([(fd, 0)], 0)


@scenario(STREAM)
def scenario_poll_of_listening_socket(api: Recorder, env: Env) -> None:
    """A listener is readable exactly when a connection is waiting to be accepted."""
    listener, addr = listening(api, env)
    api.poll([(listener, POLL_ALL)], 0)
    api.select([listener], [listener], [listener], 0)
    client = api.socket(env.family, env.type)
    api.connect(client, addr)
    wait_readable(api, listener)
    api.poll([(listener, POLL_ALL)], 0)
    api.select([listener], [listener], [listener], 0)
    api.accept(listener)
    api.poll([(listener, POLL_ALL)], 0)


@scenario(STREAM, DGRAM)
def scenario_poll_of_connected_sockets(api: Recorder, env: Env) -> None:
    """Connected: writable; readable once data is queued, and not after it is read."""
    first, second = connected_pair(api, env)
    api.poll([(first, POLL_ALL), (second, POLL_ALL)], 0)
    api.send(first, b"data")
    wait_readable(api, second)
    api.poll([(first, POLL_ALL), (second, POLL_ALL)], 0)
    api.poll([(second, POLLIN | POLLOUT)], 0)
    api.select([first, second], [first, second], [first, second], 0)
    api.recv(second, 100)
    api.poll([(second, POLL_ALL)], 0)


@scenario(STREAM)
def scenario_poll_after_peer_closed(api: Recorder, env: Env) -> None:
    """A socket whose peer closed is readable (EOF) with RDHUP; HUP once writes are
    dead too."""
    first, second = connected_pair(api, env)
    api.close(first)
    api.recv(second, 10)  # EOF: the close has fully arrived
    api.poll([(second, POLL_ALL)], 0)
    api.poll([(second, POLLIN | POLLOUT)], 0)
    api.select([second], [second], [second], 0)


@scenario(STREAM)
def scenario_poll_after_shutdown(api: Recorder, env: Env) -> None:
    """Each shutdown direction shows in poll on both ends."""
    first, second = connected_pair(api, env)
    api.shutdown(first, _socket.SHUT_WR)
    api.recv(second, 10)  # EOF: the shutdown has fully arrived
    api.poll([(first, POLL_ALL), (second, POLL_ALL)], 0)
    api.shutdown(second, _socket.SHUT_WR)
    api.recv(first, 10)
    api.poll([(first, POLL_ALL), (second, POLL_ALL)], 0)
    api.shutdown(first, _socket.SHUT_RD)
    api.poll([(first, POLL_ALL)], 0)
    api.select([first], [first], [first], 0)


# -- options -------------------------------------------------------------------------

@scenario(STREAM, DGRAM)
def scenario_descriptive_options(api: Recorder, env: Env) -> None:
    """SO_TYPE, SO_DOMAIN and SO_PROTOCOL describe the socket, as ints or raw bytes,
    and cannot be set."""
    fd = api.socket(env.family, env.type | _socket.SOCK_NONBLOCK)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_TYPE)
    api.getsockopt(fd, SOL_SOCKET, SO_DOMAIN)
    api.getsockopt(fd, SOL_SOCKET, SO_PROTOCOL)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_TYPE, 4)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_TYPE, 2)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_TYPE, 8)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_ERROR)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_TYPE, DGRAM)
    api.setsockopt(fd, SOL_SOCKET, SO_PROTOCOL, 0)


def _timeout_round_trip(api: Recorder, fd: int, option: int) -> None:
    """Set ``option`` to a range of struct timevals and read each back."""
    api.getsockopt(fd, SOL_SOCKET, option, TIMEVAL.size)
    for sec, usec in ((1, 500_000), (0, 1), (0, 999_999), (3, 0), (-1, 0), (0, 0)):
        api.setsockopt(fd, SOL_SOCKET, option, TIMEVAL.pack(sec, usec))
        api.getsockopt(fd, SOL_SOCKET, option, TIMEVAL.size)
    api.setsockopt(fd, SOL_SOCKET, option, TIMEVAL.pack(2, 250_000))
    api.getsockopt(fd, SOL_SOCKET, option)
    api.getsockopt(fd, SOL_SOCKET, option, 8)
    api.getsockopt(fd, SOL_SOCKET, option, 64)
    api.setsockopt(fd, SOL_SOCKET, option, TIMEVAL.pack(1, 1_000_000))
    api.setsockopt(fd, SOL_SOCKET, option, TIMEVAL.pack(1, -1))
    api.setsockopt(fd, SOL_SOCKET, option, TIMEVAL.pack(1, 0)[:8])
    api.setsockopt(fd, SOL_SOCKET, option, 5)
    api.getsockopt(fd, SOL_SOCKET, option, TIMEVAL.size)


@scenario(STREAM, DGRAM)
def scenario_timeout_options_read_back_as_the_kernel_rounds_them(api: Recorder,
                                                                 env: Env) -> None:
    """SO_RCVTIMEO/SO_SNDTIMEO: kernel rounding, EDOM for tv_usec outside [0, 1e6),
    EINVAL for a short buffer; a failed set leaves the old value."""
    fd = api.socket(env.family, env.type)
    _timeout_round_trip(api, fd, _socket.SO_RCVTIMEO)
    _timeout_round_trip(api, fd, _socket.SO_SNDTIMEO)


@scenario(STREAM, DGRAM)
def scenario_receive_timeout_expires_with_eagain(api: Recorder, env: Env) -> None:
    """A blocking recv gives up after SO_RCVTIMEO; a negative timeout does not wait."""
    _first, second = connected_pair(api, env)
    api.setsockopt(second, SOL_SOCKET, _socket.SO_RCVTIMEO, TIMEVAL.pack(0, 20_000))
    api.recv(second, 10)
    api.setsockopt(second, SOL_SOCKET, _socket.SO_RCVTIMEO, TIMEVAL.pack(-1, 0))
    api.recv(second, 10)


@scenario(STREAM, DGRAM, needs=(SOCKOPTS,))
def scenario_transport_options_round_trip(api: Recorder, env: Env) -> None:
    """Ordinary options keep what was set; unknown ones are ENOPROTOOPT."""
    fd = api.socket(env.family, env.type)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_REUSEADDR)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_REUSEADDR)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_KEEPALIVE)
    api.getsockopt(fd, SOL_SOCKET, 9999)
    api.setsockopt(fd, SOL_SOCKET, 9999, 1)


SO_BINDTODEVICE = getattr(_socket, "SO_BINDTODEVICE", 25)


def _options_without_a_buffer(env: Env) -> list[tuple[int, int]]:
    """Options of every kind for ``setsockopt(level, name, None, optlen)``: some read
    an int, some a struct, some check the length first, some read nothing."""
    sol = [(SOL_SOCKET, name) for name in (
        SO_BINDTODEVICE, _socket.SO_REUSEADDR, _socket.SO_LINGER, _socket.SO_RCVTIMEO,
        _socket.SO_TYPE, _socket.SO_ERROR, 9999)]
    if env.family not in IP:
        return sol
    ipproto = _socket.IPPROTO_IP
    options = sol + [(ipproto, name) for name in (
        _socket.IP_TOS, _socket.IP_TTL, _socket.IP_MULTICAST_TTL, _socket.IP_MULTICAST_LOOP,
        _socket.IP_MULTICAST_IF, _socket.IP_ADD_MEMBERSHIP, 9999)]
    options.append((_socket.IPPROTO_TCP, _socket.TCP_NODELAY) if env.type == STREAM
                   else (_socket.IPPROTO_UDP, getattr(_socket, "UDP_CORK", 1)))
    if env.family == AF_INET6:
        options += [(_socket.IPPROTO_IPV6, name) for name in (
            _socket.IPV6_V6ONLY, _socket.IPV6_UNICAST_HOPS, _socket.IPV6_MULTICAST_LOOP,
            _socket.IPV6_MULTICAST_IF, _socket.IPV6_MULTICAST_HOPS, _socket.IPV6_JOIN_GROUP)]
    return options


@scenario(STREAM, DGRAM, needs=(SOCKOPTS,))
def scenario_setsockopt_without_a_buffer(api: Recorder, env: Env) -> None:
    """``setsockopt(level, name, None, optlen)`` passes a NULL pointer: length 0 acts as
    an empty buffer (SO_BINDTODEVICE unbinds, IP_TOS becomes 0, most say EINVAL);
    a length the option reads is EFAULT, after the checks that come first (unknown
    IP options, short lengths); IPv6 reads NULL as 0.  A negative length is EINVAL."""
    fd = api.socket(env.family, env.type)
    for level, name in _options_without_a_buffer(env):
        api.setsockopt(fd, level, name, b"")
        for optlen in (0, 1, 4, 8, 20, 100):
            api.setsockopt(fd, level, name, None, optlen)
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, None, -1)
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, None, 2**32)  # wraps to 0


@scenario(STREAM, DGRAM, needs=(SOCKOPTS,))
def scenario_bind_to_device_and_back(api: Recorder, env: Env) -> None:
    """SO_BINDTODEVICE takes the loopback device's name (up to its NUL), reads back as
    the name and a NUL into IFNAMSIZ bytes (EINVAL into fewer), refuses a device the
    machine lacks (ENODEV), and unbinds with an empty name or None, 0."""
    fd = api.socket(env.family, env.type)
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE)
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 16)
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, b"lo")
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 16)
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 64)
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 8)
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE)
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, None, 0)
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 16)
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, b"lo\0junk")
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 16)
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, b"no-such-device")
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, b"lo" + b"x" * 20)
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 16)
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, b"\0lo")
    api.getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 16)
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 0)
    api.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, 1)


# -- descriptors ---------------------------------------------------------------------

@scenario(STREAM, DGRAM)
def scenario_dup_shares_o_nonblock(api: Recorder, env: Env) -> None:
    """O_NONBLOCK belongs to the open description, so every duplicate sees it."""
    _first, second = connected_pair(api, env)
    copy = api.dup(second)
    api.fcntl(second, _fcntl.F_SETFL, os.O_NONBLOCK)
    api.fcntl(copy, _fcntl.F_GETFL)
    api.recv(copy, 10)
    api.fcntl(copy, _fcntl.F_SETFL, 0)
    api.fcntl(second, _fcntl.F_GETFL)
    api.ioctl(copy, FIONBIO, INT.pack(1))
    api.fcntl(second, _fcntl.F_GETFL)
    api.recv(second, 10)
    api.ioctl(copy, FIONBIO, INT.pack(0))
    api.fcntl(second, _fcntl.F_GETFL)
    api.ioctl(copy, FIONBIO, 1)


@scenario(STREAM, DGRAM)
def scenario_closing_one_number_keeps_the_socket(api: Recorder, env: Env) -> None:
    """The socket lives while any number names it: close the original, use the copy."""
    first, second = connected_pair(api, env)
    copy = api.dup(first)
    api.close(first)
    api.getsockname(copy)
    api.send(copy, b"still here")
    api.recv(second, 100)
    api.send(second, b"and back")
    api.recv(copy, 100)


@scenario(STREAM)
def scenario_dup2_over_a_socket_closes_it(api: Recorder, env: Env) -> None:
    """dup2 onto a number holding another socket closes that socket (its peer reads
    EOF) and makes the number a second name for the first socket."""
    first, second = connected_pair(api, env)
    victim, victims_peer = connected_pair(api, env)
    api.dup2(first, victim)
    api.recv(victims_peer, 10)
    api.getsockname(victim)
    api.send(victim, b"via dup2")
    api.recv(second, 100)
    api.close(first)
    api.send(victim, b"alone")
    api.recv(second, 100)
    api.dup2(victim, victim)


@scenario(STREAM, DGRAM)
def scenario_calls_on_a_closed_number_fail_ebadf(api: Recorder, env: Env) -> None:
    """Once closed, a number is dead for every call; poll says POLLNVAL."""
    fd = api.socket(env.family, env.type)
    other = api.socket(env.family, env.type)
    api.close(fd)
    api.close(fd)
    api.recv(fd, 10)
    api.send(fd, b"x")
    api.bind(fd, env.address())
    api.getsockname(fd)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_TYPE)
    api.fcntl(fd, _fcntl.F_GETFD)
    api.dup(fd)
    api.dup2(fd, other)
    api.poll([(fd, POLLIN), (other, POLLOUT)], 0)
    api.select([fd], [], [], 0)
    api.getsockopt(other, SOL_SOCKET, _socket.SO_TYPE)


@scenario(STREAM, DGRAM)
def scenario_cloexec_belongs_to_each_number(api: Recorder, env: Env) -> None:
    """FD_CLOEXEC is per number: dup clears it, F_DUPFD_CLOEXEC sets it, and setting
    it on one number leaves the others alone."""
    fd = api.socket(env.family, env.type | _socket.SOCK_CLOEXEC)
    copy = api.dup(fd)
    cloexec_copy = api.fcntl(fd, _fcntl.F_DUPFD_CLOEXEC, 0)
    numbers = (fd, copy, cloexec_copy)
    for number in numbers:
        api.fcntl(number, _fcntl.F_GETFD)
    api.fcntl(copy, _fcntl.F_SETFD, _fcntl.FD_CLOEXEC)
    api.fcntl(fd, _fcntl.F_SETFD, 0)
    for number in numbers:
        api.fcntl(number, _fcntl.F_GETFD)


# == TCP and UDP over IP, as Linux does them over loopback ================================
#
# These describe IP only (``families=IP``): the virtual inet driver copies them.  Addresses
# are loopback, wildcards that are only bound (never sent to from outside), and the
# documentation ranges 203.0.113.0/24 and 2001:db8::/32 as "an address this machine does
# not have"; nothing here reaches a real network.

AF_INET, AF_INET6 = _socket.AF_INET, _socket.AF_INET6
IP = (AF_INET, AF_INET6)
IPV4 = (AF_INET,)
IPV6 = (AF_INET6,)
POLLERR, POLLHUP = _select.POLLERR, _select.POLLHUP
MSG_NOSIGNAL, MSG_DONTWAIT = _socket.MSG_NOSIGNAL, _socket.MSG_DONTWAIT
MSG_PEEK, MSG_TRUNC, MSG_WAITALL = _socket.MSG_PEEK, _socket.MSG_TRUNC, _socket.MSG_WAITALL
IPPROTO_TCP, IPPROTO_IPV6 = _socket.IPPROTO_TCP, _socket.IPPROTO_IPV6
SO_RXQ_OVFL = getattr(_socket, "SO_RXQ_OVFL", 40)
LINGER = struct.Struct("@ii")
EPHEMERAL_PORTS = range(32768, 61000)  # Linux's default net.ipv4.ip_local_port_range
UDP_PAYLOAD_MAX = {AF_INET: 65535 - 20 - 8, AF_INET6: 65535 - 8}  # 65507 / 65527


@dataclass(frozen=True)
class IpNames:
    """The addresses an IP scenario uses, per family."""

    loopback: str
    wildcard: str
    foreign: str  # a documentation address: certainly not this machine's


IP_NAMES = {AF_INET: IpNames("127.0.0.1", "0.0.0.0", "203.0.113.7"),
            AF_INET6: IpNames("::1", "::", "2001:db8::7")}


def ip(env: Env) -> IpNames:
    return IP_NAMES[env.family]


def port_of(name: Any) -> int:
    """The port of a name getsockname gave (0 for a failed call, so a broken run still
    logs its calls and fails on the difference, not on a TypeError here)."""
    return name[1] if isinstance(name, tuple) else 0


def note_ephemeral(api: Recorder, what: str, name: Any, parity: str | None = None) -> None:
    """Log that ``name`` has a port from Linux's ephemeral range and, for TCP, the
    parity Linux prefers: odd for bind(port 0) and listen, even for connect."""
    port = port_of(name)
    api.note(f"{what}: port in 32768-60999", port in EPHEMERAL_PORTS)
    if parity is not None:
        api.note(f"{what}: port is {parity}", port % 2 == (parity == "odd"))


def closed_port(api: Recorder, env: Env) -> Any:
    """A loopback name nothing is bound to: bound once, then closed (quietly, so the
    scenario logs only what it does with it)."""
    fd = api.quietly("socket", env.family, env.type)
    api.quietly("bind", fd, (ip(env).loopback, 0))
    name = api.quietly("getsockname", fd)
    api.quietly("close", fd)
    api.open.discard(fd)
    return name


def queued(api: Recorder, fd: int) -> int:
    return INT.unpack(api.quietly("ioctl", fd, FIONREAD, INT.pack(0)))[0]


def wait_queued(api: Recorder, fd: int, count: int) -> None:
    """Wait (at most WAIT_MS) until FIONREAD says ``count`` bytes are queued on ``fd``:
    for data already sent, when poll cannot tell (a second send; a socket that is
    readable anyway because its reading side is shut)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while queued(api, fd) < count and time.monotonic() < deadline:
        time.sleep(0.001)


def wait_for_error(api: Recorder, fd: int) -> None:
    """Wait until an error is pending on ``fd`` (a UDP socket's ICMP error under way):
    poll with no events still reports POLLERR.  Not logged: the scenario logs the state
    it then looks at."""
    api.quietly("poll", [(fd, 0)], WAIT_MS)


def wait_for_hangup(api: Recorder, fd: int) -> None:
    """Wait until ``fd`` polls POLLHUP: the end state of a TCP socket that was reset or
    refused.  Linux reports the error (POLLERR, waking pollers) a moment before it marks
    the socket closed, so waking on the first event could log a state in between when
    the packet is handled on another CPU."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        ready = api.quietly("poll", [(fd, 0)], WAIT_MS)
        if ready and ready[0][1] & POLLHUP:
            return
        time.sleep(0.001)


def nonblocking(env: Env) -> int:
    return env.type | _socket.SOCK_NONBLOCK


# -- TCP: bind rules -------------------------------------------------------------------

@scenario(STREAM, DGRAM, families=IP)
def scenario_port_held_by_bound_or_listening_socket_is_in_use(api: Recorder,
                                                              env: Env) -> None:
    """EADDRINUSE while another socket holds the port, bound or listening; once it is
    closed (with no connections left behind) the port is free again."""
    first, second = api.socket(env.family, env.type), api.socket(env.family, env.type)
    api.bind(first, (ip(env).loopback, 0))
    name = api.getsockname(first)
    api.bind(second, name)
    if env.type == STREAM:
        api.listen(first, 8)
        api.bind(second, name)
    api.close(first)
    api.bind(second, name)
    api.getsockname(second)


@scenario(STREAM, DGRAM, families=IP)
def scenario_wildcard_and_specific_addresses_conflict(api: Recorder, env: Env) -> None:
    """A wildcard bind holds the port on every address, so a specific bind to the same
    port fails, and the other way round; different specific addresses do not clash."""
    names = ip(env)
    wild = api.socket(env.family, env.type)
    api.bind(wild, (names.wildcard, 0))
    port = port_of(api.getsockname(wild))
    specific = api.socket(env.family, env.type)
    api.bind(specific, (names.loopback, port))
    api.close(wild)
    api.bind(specific, (names.loopback, port))
    api.bind(api.socket(env.family, env.type), (names.wildcard, port))
    if env.family == AF_INET:
        other = api.socket(env.family, env.type)
        api.bind(other, ("127.0.0.2", port))
        api.getsockname(other)


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_reuseaddr_shares_a_port_until_one_socket_listens(api: Recorder,
                                                               env: Env) -> None:
    """With SO_REUSEADDR on both, two TCP sockets may bind one port while neither
    listens; it takes both flags; once one listens, the others cannot listen or bind."""
    def reusing() -> int:
        fd = api.socket(env.family, env.type)
        api.setsockopt(fd, SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        return fd
    first, second = reusing(), reusing()
    api.bind(first, (ip(env).loopback, 0))
    name = api.getsockname(first)
    api.bind(second, name)
    api.bind(api.socket(env.family, env.type), name)  # no flag on the newcomer
    api.listen(first, 8)
    api.listen(second, 8)
    api.bind(reusing(), name)
    api.bind(reusing(), (ip(env).wildcard, port_of(name)))
    api.close(first)
    api.listen(second, 8)


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_reuseaddr_rebinds_a_port_its_connections_still_hold(api: Recorder,
                                                                 env: Env) -> None:
    """A closed listener's connections (established, then TIME_WAIT after an active
    close) keep its port: a plain bind is EADDRINUSE, one with SO_REUSEADDR succeeds
    only if the old listener had the flag too (its connections inherit it)."""
    for old_flag in (0, 1):
        listener = api.socket(env.family, env.type)
        api.setsockopt(listener, SOL_SOCKET, _socket.SO_REUSEADDR, old_flag)
        api.bind(listener, (ip(env).loopback, 0))
        api.listen(listener, 8)
        name = api.getsockname(listener)
        client = api.socket(env.family, env.type)
        api.connect(client, name)
        server, _ = api.accept(listener)
        api.close(listener)
        for new_flag in (0, 1):  # the accepted connection is established
            fresh = api.socket(env.family, env.type)
            api.setsockopt(fresh, SOL_SOCKET, _socket.SO_REUSEADDR, new_flag)
            api.bind(fresh, name)
            api.close(fresh)
        api.close(server)  # the server closes first: its side ends in TIME_WAIT
        api.recv(client, 10)
        api.close(client)
        for new_flag in (0, 1):
            fresh = api.socket(env.family, env.type)
            api.setsockopt(fresh, SOL_SOCKET, _socket.SO_REUSEADDR, new_flag)
            if api.bind(fresh, name) is None:
                api.listen(fresh, 8)
            api.close(fresh)


@scenario(STREAM, DGRAM, families=IP)
def scenario_binding_an_address_not_on_this_host_fails(api: Recorder, env: Env) -> None:
    """EADDRNOTAVAIL for an address the host does not have (all of 127/8 is local, only
    ::1 of IPv6 loopback); a literal of the other family is a getaddrinfo error; the
    socket stays unbound and can bind afterwards."""
    names = ip(env)
    fd = api.socket(env.family, env.type)
    api.bind(fd, (names.foreign, 0))
    api.bind(fd, ("::1", 0) if env.family == AF_INET else ("127.0.0.1", 0))
    if env.family == AF_INET6:
        api.bind(fd, ("::2", 0))
    api.getsockname(fd)
    api.bind(fd, ("127.0.0.2", 0) if env.family == AF_INET else (names.loopback, 0))
    api.getsockname(fd)


@scenario(STREAM, DGRAM, families=IP)
def scenario_bound_socket_cannot_bind_again(api: Recorder, env: Env) -> None:
    """EINVAL for a second bind, also when the first name was picked automatically:
    by listen, by connect, or by sending a datagram."""
    names = ip(env)
    target = api.socket(env.family, env.type)
    api.bind(target, (names.loopback, 0))
    name = api.getsockname(target)
    fd = api.socket(env.family, env.type)
    if env.type == STREAM:
        api.listen(target, 8)
        api.connect(fd, name)
        lazy = api.socket(env.family, env.type)
        api.listen(lazy, 1)
        api.bind(lazy, (names.loopback, 0))
    else:
        api.sendto(fd, b"x", 0, name)
    api.bind(fd, (names.loopback, 0))
    api.bind(target, (names.loopback, 0))


@scenario(STREAM, DGRAM, families=IP)
def scenario_port_zero_picks_an_ephemeral_port(api: Recorder, env: Env) -> None:
    """bind(port 0) takes a port from 32768-60999 (for TCP an odd one, as Linux prefers
    for bind) and two such binds never share one."""
    first, second = api.socket(env.family, env.type), api.socket(env.family, env.type)
    api.bind(first, (ip(env).loopback, 0))
    api.bind(second, (ip(env).loopback, 0))
    names = api.getsockname(first), api.getsockname(second)
    parity = "odd" if env.type == STREAM else None
    for name in names:
        note_ephemeral(api, "bind to port 0", name, parity)


@scenario(STREAM, families=IP)
def scenario_tcp_autobinds_on_listen_and_on_connect(api: Recorder, env: Env) -> None:
    """listen and connect on an unbound socket bind it: listen to the wildcard address
    and an odd ephemeral port, connect to the address it leaves from and an even one;
    the accepted socket is named by the address that was dialled."""
    listener = api.socket(env.family, env.type)
    api.getsockname(listener)
    api.listen(listener, 8)
    name = api.getsockname(listener)
    note_ephemeral(api, "listen", name, "odd")
    client = api.socket(env.family, env.type)
    api.connect(client, (ip(env).loopback, port_of(name)))
    note_ephemeral(api, "connect", api.getsockname(client), "even")
    server, _ = api.accept(listener)
    api.getsockname(server)
    api.getpeername(server)


@scenario(DGRAM, families=IP)
def scenario_udp_autobinds_on_send_even_when_it_fails(api: Recorder, env: Env) -> None:
    """A datagram socket gets an ephemeral port on its first send: sendto, and even a
    send that fails EDESTADDRREQ for want of a destination; recv does not bind."""
    receiver = api.socket(env.family, env.type)
    api.bind(receiver, (ip(env).loopback, 0))
    target = api.getsockname(receiver)
    sender = api.socket(env.family, env.type)
    api.getsockname(sender)
    api.recv(sender, 10, MSG_DONTWAIT)
    api.getsockname(sender)
    api.send(sender, b"nowhere")
    note_ephemeral(api, "failed send", api.getsockname(sender))
    api.sendto(sender, b"hello", 0, target)
    api.recvfrom(receiver, 100)
    other = api.socket(env.family, env.type)
    api.sendto(other, b"hi", 0, target)
    note_ephemeral(api, "sendto", api.getsockname(other))
    api.recvfrom(receiver, 100)
    api.sendto(other, b"x", 0, (ip(env).loopback, 0))


@scenario(STREAM, families=IP)
def scenario_connects_beyond_the_backlog_wait_for_room(api: Recorder, env: Env) -> None:
    """listen(1) queues two connections; a third is not refused but left connecting
    (EINPROGRESS, then EALREADY; a blocking connect times out with EINPROGRESS) until
    accept makes room, when it completes on its own."""
    listener = api.socket(env.family, env.type)
    api.bind(listener, (ip(env).loopback, 0))
    api.listen(listener, 1)
    addr = api.getsockname(listener)
    for _ in range(2):
        queued_client = api.socket(env.family, nonblocking(env))
        api.connect(queued_client, addr)
        api.poll([(queued_client, POLLOUT)], WAIT_MS)
    waiting = api.socket(env.family, nonblocking(env))
    api.connect(waiting, addr)
    api.poll([(waiting, POLL_ALL)], 0)
    api.connect(waiting, addr)
    api.getsockopt(waiting, SOL_SOCKET, _socket.SO_ERROR)
    api.getpeername(waiting)
    api.send(waiting, b"x", MSG_NOSIGNAL)
    api.recv(waiting, 10)
    patient = api.socket(env.family, env.type)
    api.setsockopt(patient, SOL_SOCKET, _socket.SO_SNDTIMEO, TIMEVAL.pack(0, 50_000))
    api.connect(patient, addr)
    api.connect(patient, addr)
    api.close(patient)
    api.accept(listener)
    api.poll([(waiting, POLLOUT)], WAIT_MS)  # Linux: the SYN is resent after 1 s
    api.connect(waiting, addr)
    api.connect(waiting, addr)
    api.accept(listener)
    api.accept(listener)


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_reuseport_listeners_share_the_connections(api: Recorder, env: Env) -> None:
    """Listeners that all set SO_REUSEPORT may bind and listen on one port; sockets
    without it may not; the kernel spreads incoming connections over the listeners."""
    def reuseport_listener(name: Any) -> int:
        fd = api.socket(env.family, env.type)
        api.setsockopt(fd, SOL_SOCKET, _socket.SO_REUSEPORT, 1)
        api.bind(fd, name)
        api.listen(fd, 64)
        return fd
    first = reuseport_listener((ip(env).loopback, 0))
    name = api.getsockname(first)
    second = reuseport_listener(name)
    api.bind(api.socket(env.family, env.type), name)
    reuseaddr = api.socket(env.family, env.type)
    api.setsockopt(reuseaddr, SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    api.bind(reuseaddr, name)
    clients = 32  # all on one listener by chance: 2 ** -31
    for _ in range(clients):
        api.connect(api.socket(env.family, env.type), name)
    counts = {first: 0, second: 0}
    deadline = time.monotonic() + WAIT_MS / 1000
    while sum(counts.values()) < clients and time.monotonic() < deadline:
        ready = api.quietly("poll", [(first, POLLIN), (second, POLLIN)], WAIT_MS)
        for fd, _events in ready:
            api.quietly("accept", fd)
            counts[fd] += 1
    api.note("every connection accepted by one of the listeners", sum(counts.values()))
    api.note("each listener got some", all(counts.values()))


@scenario(DGRAM, families=IP, needs=(SOCKOPTS,))
def scenario_udp_reuseaddr_delivers_to_the_newest_socket(api: Recorder, env: Env) -> None:
    """UDP sockets that both set SO_REUSEADDR share a port; a unicast datagram goes to
    the one bound last."""
    sockets = []
    name = (ip(env).loopback, 0)
    for _ in range(2):
        fd = api.socket(env.family, env.type)
        api.setsockopt(fd, SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        api.bind(fd, name)
        name = api.getsockname(fd)
        sockets.append(fd)
    sender = api.socket(env.family, env.type)
    api.sendto(sender, b"who?", 0, name)
    api.poll([(fd, POLLIN) for fd in sockets], WAIT_MS)
    for fd in sockets:
        api.recv(fd, 10, MSG_DONTWAIT)


# -- TCP: connect ----------------------------------------------------------------------

@scenario(STREAM, families=IP)
def scenario_nonblocking_connect_completes_then_connect_says_so(api: Recorder,
                                                                env: Env) -> None:
    """EINPROGRESS, then writable with SO_ERROR 0; the next connect returns success
    (it collects the result), the one after EISCONN."""
    listener, addr = listening(api, env)
    client = api.socket(env.family, nonblocking(env))
    api.connect(client, addr)
    api.poll([(client, POLLOUT)], WAIT_MS)
    api.poll([(client, POLL_ALL)], 0)
    api.getsockopt(client, SOL_SOCKET, _socket.SO_ERROR)
    api.connect(client, addr)
    api.connect(client, addr)
    api.getpeername(client)
    api.accept(listener)
    eager = api.socket(env.family, nonblocking(env))
    api.connect(eager, addr)
    api.connect(eager, addr)  # loopback: already established, so success at once
    api.connect(eager, addr)


@scenario(STREAM, families=IP)
def scenario_refused_connect_and_what_the_socket_says_after(api: Recorder,
                                                            env: Env) -> None:
    """A connect to a closed port is refused.  Blocking: ECONNREFUSED, the name keeps
    its port but loses its address.  Non-blocking: EINPROGRESS, then POLLOUT|ERR|HUP;
    the error is reported once, by whichever call comes first (SO_ERROR, connect,
    recv); a connect after SO_ERROR took it is ECONNABORTED and resets the socket."""
    dead = closed_port(api, env)
    blocking = api.socket(env.family, env.type)
    api.connect(blocking, dead)
    api.getsockname(blocking)
    api.poll([(blocking, POLL_ALL)], 0)
    api.getsockopt(blocking, SOL_SOCKET, _socket.SO_ERROR)
    api.connect(blocking, dead)

    fd = api.socket(env.family, nonblocking(env))
    api.connect(fd, dead)
    wait_for_hangup(api, fd)
    api.poll([(fd, POLLOUT)], 0)
    api.poll([(fd, POLL_ALL)], 0)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_ERROR)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_ERROR)
    api.poll([(fd, POLL_ALL)], 0)
    api.connect(fd, dead)
    api.connect(fd, dead)  # a fresh attempt
    wait_for_hangup(api, fd)
    api.connect(fd, dead)  # the error, reported by connect
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_ERROR)

    other = api.socket(env.family, nonblocking(env))
    api.connect(other, dead)
    wait_for_hangup(api, other)
    api.recv(other, 10)
    api.recv(other, 10)
    api.send(other, b"x", MSG_NOSIGNAL)
    api.poll([(other, POLL_ALL)], 0)
    api.getpeername(other)
    api.getsockname(other)


@scenario(STREAM, DGRAM, families=IP)
def scenario_connecting_to_the_wildcard_address_reaches_loopback(api: Recorder,
                                                                 env: Env) -> None:
    """0.0.0.0 and :: as a destination mean this host (Linux dials loopback); port 0
    is refused (TCP) or invalid (UDP sendto)."""
    names = ip(env)
    server = api.socket(env.family, env.type)
    api.bind(server, (names.loopback, 0))
    port = port_of(api.getsockname(server))
    client = api.socket(env.family, env.type)
    if env.type == STREAM:
        api.listen(server, 8)
        api.connect(client, (names.wildcard, port))
        api.getpeername(client)
        api.getsockname(client)
        api.accept(server)
        api.connect(api.socket(env.family, env.type), (names.loopback, 0))
    else:
        api.sendto(client, b"to any", 0, (names.wildcard, port))
        api.recvfrom(server, 100)
        api.connect(client, (names.wildcard, port))
        api.getpeername(client)
        api.getsockname(client)
        api.sendto(client, b"x", 0, (names.loopback, 0))


@scenario(STREAM, DGRAM, families=IPV4)
def scenario_every_127_address_is_a_separate_local_address(api: Recorder,
                                                           env: Env) -> None:
    """127.0.0.0/8 is all local: sockets on 127.0.0.1 and 127.0.0.2 share a port
    without clashing, each gets what is sent to its own address, and a client bound
    to 127.0.0.3 is seen as coming from there."""
    servers = [api.socket(env.family, env.type) for _ in range(2)]
    api.bind(servers[0], ("127.0.0.1", 0))
    port = port_of(api.getsockname(servers[0]))
    api.bind(servers[1], ("127.0.0.2", port))
    for index, server in enumerate(servers):
        client = api.socket(env.family, env.type)
        api.bind(client, (f"127.0.0.{3 + index}", 0))
        destination = (f"127.0.0.{1 + index}", port)
        if env.type == STREAM:
            api.listen(server, 8)
            api.connect(client, destination)
            peer, _ = api.accept(server)
            api.getsockname(peer)
            api.send(client, b"hello %d" % index)
            api.recv(peer, 100)
        else:
            api.sendto(client, b"hello %d" % index, 0, destination)
            api.recvfrom(server, 100)


# -- TCP: data ---------------------------------------------------------------------------

@scenario(STREAM, families=IP, needs=(IOCTL,))
def scenario_tcp_peek_and_waitall_span_sends(api: Recorder, env: Env) -> None:
    """TCP is a byte stream: MSG_PEEK and recv see two sends as one run of bytes;
    MSG_WAITALL takes exactly what was asked; FIONREAD follows the queue."""
    first, second = connected_pair(api, env)
    api.send(first, b"abc")
    api.send(first, b"def")
    wait_queued(api, second, 6)
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.recv(second, 10, MSG_PEEK)
    api.recv(second, 2)
    api.recv(second, 10, MSG_PEEK | MSG_DONTWAIT)
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.recv(second, 3, MSG_WAITALL)
    api.recv(second, 10, MSG_DONTWAIT)
    api.send(first, b"tail")
    api.shutdown(first, _socket.SHUT_WR)
    api.recv(second, 10, MSG_WAITALL)  # EOF ends the wait with what there is
    api.ioctl(second, FIONREAD, INT.pack(0))


@scenario(STREAM, DGRAM, families=IP, needs=(IOCTL,))
def scenario_fionread_on_ip_sockets(api: Recorder, env: Env) -> None:
    """FIONREAD: 0 on a fresh socket, EINVAL on a listener; for TCP the bytes queued
    (not counting the FIN), for UDP the size of the next datagram only."""
    fresh = api.socket(env.family, env.type)
    api.ioctl(fresh, FIONREAD, INT.pack(0))
    if env.type == STREAM:
        listener, _addr = listening(api, env)
        api.ioctl(listener, FIONREAD, INT.pack(0))
    first, second = connected_pair(api, env)
    api.send(first, b"0123456789")
    api.send(first, b"abc")
    stream = env.type == STREAM
    if stream:
        api.shutdown(first, _socket.SHUT_WR)
        wait_queued(api, second, 13)
    else:
        api.send(first, b"")
        wait_readable(api, second)
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.recv(second, 4)
    if not stream:
        wait_readable(api, second)
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.recv(second, 100)
    if not stream:
        wait_readable(api, second)  # the empty datagram
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.recv(second, 100, MSG_DONTWAIT)
    api.ioctl(second, FIONREAD, INT.pack(0))


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_full_buffers_push_back_and_lose_nothing(api: Recorder, env: Env) -> None:
    """With small SO_SNDBUF/SO_RCVBUF, non-blocking sends stop with EAGAIN while the
    peer does not read; once it drains, every byte has arrived in order and the
    sender is writable again.  (How many bytes fit is Linux's accounting, not logged.)"""
    listener = api.socket(env.family, env.type)
    api.setsockopt(listener, SOL_SOCKET, _socket.SO_RCVBUF, 4096)
    api.bind(listener, (ip(env).loopback, 0))
    api.listen(listener, 8)
    client = api.socket(env.family, env.type)
    api.setsockopt(client, SOL_SOCKET, _socket.SO_SNDBUF, 4096)
    api.connect(client, api.getsockname(listener))
    server, _ = api.accept(listener)
    api.getsockopt(client, SOL_SOCKET, _socket.SO_SNDBUF)
    api.getsockopt(server, SOL_SOCKET, _socket.SO_RCVBUF)
    sent = []
    pushed_back = False
    for index in range(100_000):  # about 100 MB: far beyond any buffer
        chunk = bytes([index % 251]) * 1000
        try:
            count = api.quietly("send", client, chunk, MSG_DONTWAIT)
        except BlockingIOError:
            pushed_back = True
            break
        sent.append(chunk[:count])
    api.note("MSG_DONTWAIT send ends in EAGAIN", pushed_back)
    expected = b"".join(sent)
    received = []
    got = 0
    give_up = TIMEVAL.pack(WAIT_MS // 1000, 0)  # a lost byte must not hang the suite
    api.quietly("setsockopt", server, SOL_SOCKET, _socket.SO_RCVTIMEO, give_up)
    while got < len(expected):
        try:
            data = api.quietly("recv", server, 65536)
        except OSError:
            break
        if not data:
            break
        received.append(data)
        got += len(data)
    api.note("every byte arrived, in order", b"".join(received) == expected)


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_a_send_buffer_the_program_set_bounds_what_fits(api: Recorder, env: Env) -> None:
    """A sender that set SO_SNDBUF stops autotuning its send queue: with a peer that
    does not read, non-blocking sends stop after about that much plus the peer's
    window, not after megabytes.  (asyncio's test_abort_clients sets 65536 and needs
    the push-back to fill its own write buffer.)"""
    listener = api.socket(env.family, env.type)
    api.bind(listener, (ip(env).loopback, 0))
    api.listen(listener, 8)
    client = api.socket(env.family, env.type)
    api.connect(client, api.getsockname(listener))
    server, _ = api.accept(listener)
    api.setsockopt(client, SOL_SOCKET, _socket.SO_SNDBUF, 65536)
    api.getsockopt(client, SOL_SOCKET, _socket.SO_SNDBUF)
    sent = 0
    chunk = b"w" * 65536
    while sent < 64 * 2**20:
        try:
            sent += api.quietly("send", client, chunk, MSG_DONTWAIT)
        except BlockingIOError:
            break
    api.note("pushed back within 1 MiB", 0 < sent <= 2**20)
    give_up = TIMEVAL.pack(WAIT_MS // 1000, 0)  # a lost byte must not hang the suite
    api.quietly("setsockopt", server, SOL_SOCKET, _socket.SO_RCVTIMEO, give_up)
    got = 0
    while got < sent:
        try:
            got += len(api.quietly("recv", server, 2**20))
        except OSError:
            break
    api.note("every byte arrived", got == sent)
    api.note("writable again",
             bool(api.quietly("poll", [(client, _select.POLLOUT)], WAIT_MS)))
    api.poll([(client, POLLOUT)], WAIT_MS)
    api.recv(server, 10, MSG_DONTWAIT)


# -- TCP: shutdown, close and reset ------------------------------------------------------

@scenario(STREAM, families=IP)
def scenario_shut_rdwr_and_data_that_arrives_after(api: Recorder, env: Env) -> None:
    """SHUT_RDWR: the peer reads EOF but may still send; data arriving at a socket
    shut for reading resets the connection (ECONNRESET here, EPIPE at the peer)."""
    first, second = connected_pair(api, env)
    api.shutdown(first, _socket.SHUT_RDWR)
    api.recv(second, 10)
    api.poll([(first, POLL_ALL), (second, POLL_ALL)], 0)
    api.recv(first, 10)
    api.send(first, b"x", MSG_NOSIGNAL)
    api.send(second, b"late")
    wait_for_hangup(api, second)
    api.poll([(first, POLL_ALL), (second, POLL_ALL)], 0)
    api.getsockopt(second, SOL_SOCKET, _socket.SO_ERROR)
    api.recv(first, 10)
    api.recv(first, 10)
    api.getsockopt(first, SOL_SOCKET, _socket.SO_ERROR)
    api.send(second, b"more", MSG_NOSIGNAL)
    api.shutdown(first, _socket.SHUT_RDWR)


@scenario(STREAM, families=IP, needs=(IOCTL,))
def scenario_tcp_shut_rd_still_delivers_what_arrives(api: Recorder, env: Env) -> None:
    """TCP's SHUT_RD only says "EOF when empty": the peer is not told (it polls as
    before) and data it sends afterwards is still queued and read."""
    first, second = connected_pair(api, env)
    api.shutdown(second, _socket.SHUT_RD)
    api.poll([(first, POLL_ALL), (second, POLL_ALL)], 0)
    api.recv(second, 10)
    api.send(first, b"late")
    wait_queued(api, second, 4)
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.recv(second, 10)
    api.recv(second, 10)
    api.shutdown(second, _socket.SHUT_RD)


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_so_linger_zero_resets_the_connection(api: Recorder, env: Env) -> None:
    """close with SO_LINGER {1, 0} sends a reset: the peer reports ECONNRESET once —
    by whichever comes first of recv, send or SO_ERROR — and is then a dead socket."""
    for first_look in ("recv", "send", "SO_ERROR"):
        first, second = connected_pair(api, env)
        if first_look == "recv":
            api.getsockopt(first, SOL_SOCKET, _socket.SO_LINGER, LINGER.size)
        api.setsockopt(first, SOL_SOCKET, _socket.SO_LINGER, LINGER.pack(1, 0))
        if first_look == "recv":
            api.getsockopt(first, SOL_SOCKET, _socket.SO_LINGER, LINGER.size)
            api.getsockopt(first, SOL_SOCKET, _socket.SO_LINGER)
        peer = api.getpeername(second)
        api.close(first)
        wait_for_hangup(api, second)
        api.poll([(second, POLLIN)], 0)
        api.poll([(second, POLL_ALL)], 0)
        if first_look == "recv":
            api.recv(second, 10)
        elif first_look == "send":
            api.send(second, b"x", MSG_NOSIGNAL)
        else:
            api.getsockopt(second, SOL_SOCKET, _socket.SO_ERROR)
        api.poll([(second, POLL_ALL)], 0)
        api.recv(second, 10)
        api.send(second, b"x", MSG_NOSIGNAL)
        api.getsockopt(second, SOL_SOCKET, _socket.SO_ERROR)
        api.getpeername(second)
        api.getsockname(second)
        api.shutdown(second, _socket.SHUT_RDWR)
        api.connect(second, peer)


@scenario(STREAM, families=IP)
def scenario_poll_through_a_connection_life(api: Recorder, env: Env) -> None:
    """poll over every event bit at each stage: connected and idle, readable, the peer
    shut for writing, own SHUT_WR, both shut, then closed."""
    first, second = connected_pair(api, env)
    both = [(first, POLL_ALL), (second, POLL_ALL)]
    api.poll(both, 0)
    api.send(first, b"data")
    wait_readable(api, second)
    api.poll(both, 0)
    api.shutdown(first, _socket.SHUT_WR)
    api.recv(second, 10, MSG_WAITALL)  # "data", then EOF ends the wait
    api.poll(both, 0)
    api.poll([(first, POLLIN | POLLOUT), (second, POLLIN | POLLOUT)], 0)
    api.shutdown(second, _socket.SHUT_WR)
    api.recv(first, 10)
    api.poll(both, 0)
    api.close(first)
    api.poll([(second, POLL_ALL)], 0)


# -- options -----------------------------------------------------------------------------

@scenario(STREAM, DGRAM, families=IP, needs=(SOCKOPTS,))
def scenario_buffer_sizes_read_back_doubled(api: Recorder, env: Env) -> None:
    """SO_RCVBUF/SO_SNDBUF read back twice what was set (Linux's bookkeeping
    overhead), at least 2304 and 4608; the defaults are the sysctl defaults."""
    fd = api.socket(env.family, env.type)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_RCVBUF)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_SNDBUF)
    for size in (0, 1, 1000, 1152, 1153, 2304, 4096, 65536):
        for option in (_socket.SO_RCVBUF, _socket.SO_SNDBUF):
            api.setsockopt(fd, SOL_SOCKET, option, size)
            api.getsockopt(fd, SOL_SOCKET, option)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_RCVBUF, INT.pack(10_000))
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_RCVBUF, 4)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_RCVBUF, b"\x01\x00")
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_RCVBUF)


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_tcp_options_read_back_and_pass_to_accepted_sockets(api: Recorder,
                                                                env: Env) -> None:
    """TCP_NODELAY, SO_KEEPALIVE and the keepalive timers, TCP_USER_TIMEOUT: defaults,
    booleans read back as 0/1, EINVAL outside Linux's ranges (a failed set keeps the
    old value); set on a listener, they pass to the sockets it accepts."""
    fd = api.socket(env.family, env.type)
    checks = (
        (IPPROTO_TCP, _socket.TCP_NODELAY, (1, 5, 0, -1)),
        (SOL_SOCKET, _socket.SO_KEEPALIVE, (1, 7, 0)),
        (SOL_SOCKET, _socket.SO_REUSEADDR, (3, 0)),
        (SOL_SOCKET, _socket.SO_REUSEPORT, (2, 0)),
        (IPPROTO_TCP, _socket.TCP_KEEPIDLE, (1, 60, 32767, 0, 32768, -1)),
        (IPPROTO_TCP, _socket.TCP_KEEPINTVL, (1, 10, 32767, 0, 32768)),
        (IPPROTO_TCP, _socket.TCP_KEEPCNT, (1, 3, 127, 0, 128)),
        (IPPROTO_TCP, _socket.TCP_USER_TIMEOUT, (30_000, 0, 1, -1)),
    )
    for level, option, values in checks:
        api.getsockopt(fd, level, option)
        for value in values:
            api.setsockopt(fd, level, option, value)
            api.getsockopt(fd, level, option)
    api.setsockopt(fd, IPPROTO_TCP, _socket.TCP_NODELAY, b"\x01\x00")
    api.setsockopt(fd, IPPROTO_TCP, _socket.TCP_NODELAY, INT.pack(1))
    api.getsockopt(fd, IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    api.getsockopt(fd, IPPROTO_TCP, _socket.TCP_NODELAY, 8)
    api.getsockopt(fd, IPPROTO_TCP, 9999)
    api.setsockopt(fd, IPPROTO_TCP, 9999, 1)

    listener = api.socket(env.family, env.type)
    inherited = (
        (IPPROTO_TCP, _socket.TCP_NODELAY, 1),
        (SOL_SOCKET, _socket.SO_KEEPALIVE, 1),
        (IPPROTO_TCP, _socket.TCP_KEEPIDLE, 60),
        (IPPROTO_TCP, _socket.TCP_KEEPINTVL, 5),
        (IPPROTO_TCP, _socket.TCP_KEEPCNT, 4),
        (IPPROTO_TCP, _socket.TCP_USER_TIMEOUT, 1234),
        (SOL_SOCKET, _socket.SO_RCVBUF, 8192),
        (SOL_SOCKET, _socket.SO_SNDBUF, 8192),
        (SOL_SOCKET, _socket.SO_LINGER, LINGER.pack(1, 5)),
    )
    for level, option, value in inherited:
        api.setsockopt(listener, level, option, value)
    api.bind(listener, (ip(env).loopback, 0))
    api.listen(listener, 8)
    client = api.socket(env.family, env.type)
    api.setsockopt(client, SOL_SOCKET, _socket.SO_SNDBUF, 4096)
    api.connect(client, api.getsockname(listener))
    api.getsockopt(client, SOL_SOCKET, _socket.SO_SNDBUF)  # set before connect: kept
    server, _ = api.accept(listener)
    for level, option, value in inherited:
        api.getsockopt(server, level, option, 0 if isinstance(value, int) else len(value))


@scenario(STREAM, DGRAM, families=IP, needs=(SOCKOPTS,))
def scenario_ip_sockets_describe_themselves(api: Recorder, env: Env) -> None:
    """SO_PROTOCOL names the transport (6 for TCP, 17 for UDP) whether it was given or
    left 0; SO_ACCEPTCONN follows listen; SO_ERROR and SO_ACCEPTCONN cannot be set;
    options of the other transport or family fail with the kernel's errnos."""
    for proto in (0, IPPROTO_TCP if env.type == STREAM else _socket.IPPROTO_UDP):
        fd = api.socket(env.family, env.type, proto)
        api.getsockopt(fd, SOL_SOCKET, SO_PROTOCOL)
        api.getsockopt(fd, SOL_SOCKET, _socket.SO_TYPE)
        api.getsockopt(fd, SOL_SOCKET, SO_DOMAIN)
    api.socket(env.family, env.type, _socket.IPPROTO_UDP if env.type == STREAM else IPPROTO_TCP)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_ACCEPTCONN)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_ACCEPTCONN, 1)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_ERROR, 0)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_BROADCAST)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_BROADCAST, 4)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_BROADCAST)
    if env.type == STREAM:
        api.bind(fd, (ip(env).loopback, 0))
        api.listen(fd, 1)
        api.getsockopt(fd, SOL_SOCKET, _socket.SO_ACCEPTCONN)
    else:
        api.getsockopt(fd, IPPROTO_TCP, _socket.TCP_NODELAY)
        api.setsockopt(fd, IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    if env.family == AF_INET:
        api.getsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY)
        api.setsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)


# -- UDP -------------------------------------------------------------------------------

@scenario(DGRAM, families=IP, needs=(MSG,))
def scenario_udp_boundaries_truncation_and_empty_datagrams(api: Recorder, env: Env) -> None:
    """Each recv takes one datagram: a short buffer drops the rest (MSG_TRUNC in
    recvmsg's flags, the full length from recv(MSG_TRUNC)); MSG_PEEK leaves it
    queued; an empty datagram is a datagram."""
    receiver, sender = api.socket(env.family, env.type), api.socket(env.family, env.type)
    api.bind(receiver, (ip(env).loopback, 0))
    target = api.getsockname(receiver)
    for payload in (b"0123456789", b"abc", b""):
        api.sendto(sender, payload, 0, target)
    api.recv(receiver, 3)
    api.recv(receiver, 100)
    wait_readable(api, receiver)  # the empty datagram
    api.poll([(receiver, POLL_ALL)], 0)
    api.recvfrom(receiver, 100)
    api.recv(receiver, 100, MSG_DONTWAIT)
    api.sendto(sender, b"0123456789", 0, target)
    api.sendto(sender, b"next", 0, target)
    api.recvmsg(receiver, 4, 0, MSG_PEEK)
    api.recv(receiver, 100, MSG_PEEK)
    api.recvmsg(receiver, 4)
    api.recvmsg(receiver, 100)
    api.sendto(sender, b"0123456789", 0, target)
    api.recv_truncating(receiver, 4, MSG_TRUNC | MSG_PEEK)
    api.recv_truncating(receiver, 4, MSG_TRUNC)
    api.sendto(sender, b"0123456789", 0, target)
    api.recvmsg(receiver, 4, 0, MSG_TRUNC)


@scenario(DGRAM, families=IP)
def scenario_udp_datagram_size_limit(api: Recorder, env: Env) -> None:
    """The largest datagram is 65507 bytes over IPv4, 65527 over IPv6; one byte more
    is EMSGSIZE, whole, and nothing is sent."""
    receiver, sender = api.socket(env.family, env.type), api.socket(env.family, env.type)
    api.bind(receiver, (ip(env).loopback, 0))
    target = api.getsockname(receiver)
    largest = UDP_PAYLOAD_MAX[env.family]
    api.sendto(sender, b"x" * largest, 0, target)
    api.sendto(sender, b"y" * (largest + 1), 0, target)
    api.sendto(sender, b"z" * 65536, 0, target)
    api.recv(receiver, 70_000)
    api.recv(receiver, 70_000, MSG_DONTWAIT)


@scenario(DGRAM, families=IP)
def scenario_connected_udp_hears_only_its_peer(api: Recorder, env: Env) -> None:
    """A connected datagram socket drops what others send it (the sender is not told,
    as it is not connected); it may still sendto someone else."""
    a, b, c = (api.socket(env.family, env.type) for _ in range(3))
    for fd in (a, b, c):
        api.bind(fd, (ip(env).loopback, 0))
    name_a, name_b, name_c = (api.getsockname(fd) for fd in (a, b, c))
    api.connect(a, name_b)
    api.sendto(c, b"from c", 0, name_a)
    api.sendto(b, b"from b", 0, name_a)
    api.recvfrom(a, 100)
    api.recv(a, 100, MSG_DONTWAIT)
    api.poll([(c, POLL_ALL)], 0)
    api.getsockopt(c, SOL_SOCKET, _socket.SO_ERROR)
    api.sendto(a, b"to c", 0, name_c)
    api.recvfrom(c, 100)


@scenario(DGRAM, families=IP)
def scenario_udp_port_unreachable_is_reported_on_the_next_call(api: Recorder,
                                                               env: Env) -> None:
    """A datagram to a closed port comes back as ECONNREFUSED, for a connected socket
    only, once, on its next call — recv, send, sendto elsewhere, or SO_ERROR — and
    poll shows POLLERR until then."""
    dead = closed_port(api, env)
    receiver = api.socket(env.family, env.type)
    api.bind(receiver, (ip(env).loopback, 0))
    elsewhere = api.getsockname(receiver)
    fd = api.socket(env.family, env.type)
    api.connect(fd, dead)
    api.send(fd, b"knock")
    api.poll([(fd, POLLIN)], WAIT_MS)
    api.poll([(fd, POLL_ALL)], 0)
    api.recv(fd, 10)
    api.recv(fd, 10, MSG_DONTWAIT)
    api.poll([(fd, POLL_ALL)], 0)
    api.send(fd, b"again")
    wait_for_error(api, fd)
    api.send(fd, b"refused")
    api.send(fd, b"and again")
    wait_for_error(api, fd)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_ERROR)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_ERROR)
    api.send(fd, b"once more")
    wait_for_error(api, fd)
    api.sendto(fd, b"elsewhere", 0, elsewhere)
    api.sendto(fd, b"elsewhere", 0, elsewhere)
    api.recvfrom(receiver, 100)
    unconnected = api.socket(env.family, env.type)
    api.sendto(unconnected, b"knock", 0, dead)
    api.poll([(unconnected, POLLIN)], 50)  # nothing comes: the error is not reported
    api.sendto(unconnected, b"knock", 0, dead)
    api.getsockopt(unconnected, SOL_SOCKET, _socket.SO_ERROR)


@scenario(DGRAM, families=IP, needs=(IOCTL,))
def scenario_udp_shutdown(api: Recorder, env: Env) -> None:
    """shutdown needs a connected datagram socket; after SHUT_RD a non-blocking recv
    still says EAGAIN but a blocking one returns b"" at once, and datagrams that arrive
    are still delivered; after SHUT_WR sends fail EPIPE."""
    lone = api.socket(env.family, env.type)
    api.bind(lone, (ip(env).loopback, 0))
    api.shutdown(lone, _socket.SHUT_RD)
    first, second = connected_pair(api, env)
    api.shutdown(first, _socket.SHUT_RD)
    api.poll([(first, POLL_ALL)], 0)
    api.recv(first, 10, MSG_DONTWAIT)
    api.recv(first, 10)
    api.send(second, b"after")
    wait_queued(api, first, 5)
    api.recv(first, 10)
    api.shutdown(first, _socket.SHUT_WR)
    api.poll([(first, POLL_ALL)], 0)
    api.send(first, b"x", MSG_NOSIGNAL)
    api.sendto(first, b"x", MSG_NOSIGNAL, api.getsockname(second))


@scenario(DGRAM, families=IPV4, needs=(SOCKOPTS,))
def scenario_udp_broadcast_needs_so_broadcast(api: Recorder, env: Env) -> None:
    """Sending to a broadcast address (here the loopback net's, 127.255.255.255) is
    EACCES until SO_BROADCAST is set; then sockets bound to the wildcard address on
    that port receive it, sockets bound to 127.0.0.1 do not."""
    everyone = api.socket(env.family, env.type)
    api.bind(everyone, ("0.0.0.0", 0))
    port = port_of(api.getsockname(everyone))
    sender = api.socket(env.family, env.type)
    api.getsockopt(sender, SOL_SOCKET, _socket.SO_BROADCAST)
    api.sendto(sender, b"all", 0, ("127.255.255.255", port))
    api.setsockopt(sender, SOL_SOCKET, _socket.SO_BROADCAST, 1)
    api.getsockopt(sender, SOL_SOCKET, _socket.SO_BROADCAST)
    api.sendto(sender, b"all", 0, ("127.255.255.255", port))
    api.recvfrom(everyone, 10)
    specific = api.socket(env.family, env.type)
    api.bind(specific, ("127.0.0.1", 0))
    api.sendto(sender, b"all", 0, ("127.255.255.255", port_of(api.getsockname(specific))))
    api.poll([(specific, POLLIN)], 0)


@scenario(DGRAM, families=IP, needs=(SOCKOPTS, MSG))
def scenario_udp_receive_queue_overflow_drops_and_counts(api: Recorder, env: Env) -> None:
    """A full receive queue (SO_RCVBUF) drops further datagrams whole; SO_RXQ_OVFL
    counts them.  (How many fit is Linux's accounting, not logged.)"""
    receiver = api.socket(env.family, env.type)
    api.bind(receiver, (ip(env).loopback, 0))
    api.setsockopt(receiver, SOL_SOCKET, _socket.SO_RCVBUF, 0)
    api.getsockopt(receiver, SOL_SOCKET, _socket.SO_RCVBUF)
    api.setsockopt(receiver, SOL_SOCKET, SO_RXQ_OVFL, 1)
    target = api.getsockname(receiver)
    sender = api.socket(env.family, env.type)
    sent = 64
    for index in range(sent):
        api.quietly("sendto", sender, bytes([index]) * 1000, 0, target)
    received = []
    while True:
        try:
            received.append(api.quietly("recv", receiver, 2000, MSG_DONTWAIT))
        except BlockingIOError:
            break
    sentinel = b"counted?"
    api.quietly("sendto", sender, sentinel, 0, target)
    give_up = TIMEVAL.pack(WAIT_MS // 1000, 0)  # a lost sentinel must not hang the suite
    api.quietly("setsockopt", receiver, SOL_SOCKET, _socket.SO_RCVTIMEO, give_up)
    drops = None
    for _ in range(sent + 1):  # anything late, then the sentinel
        try:
            data, ancdata, _flags, _addr = api.quietly("recvmsg", receiver, 2000,
                                                       _socket.CMSG_SPACE(4))
        except OSError:
            break
        if data != sentinel:
            received.append(data)
            continue
        drops = [INT.unpack(d[:4])[0] for level, kind, d in ancdata
                 if (level, kind) == (SOL_SOCKET, SO_RXQ_OVFL)]
        break
    api.note("some datagrams dropped, some kept", 0 < len(received) < sent)
    api.note("kept ones are whole", all(d == d[:1] * 1000 for d in received))
    api.note("SO_RXQ_OVFL counts the dropped ones", drops == [sent - len(received)])


# -- IPv6 --------------------------------------------------------------------------------

@scenario(STREAM, DGRAM, families=IPV6, needs=(SOCKOPTS,))
def scenario_ipv6_v6only_option(api: Recorder, env: Env) -> None:
    """IPV6_V6ONLY is off by default, reads back 0/1, and is fixed once bound (EINVAL);
    binding a specific IPv6 address (not :: nor a mapped one) turns it on."""
    fd = api.socket(env.family, env.type)
    api.getsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY)
    for value in (1, 5, 0):
        api.setsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY, value)
        api.getsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY)
    api.bind(fd, ("::", 0))
    api.setsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
    api.getsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY)
    for host in ("::1", "::ffff:127.0.0.1"):
        fd = api.socket(env.family, env.type)
        api.bind(fd, (host, 0))
        api.getsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY)
        api.setsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY, 0)


@scenario(STREAM, DGRAM, families=IPV6)
def scenario_ipv4_peers_of_dual_stack_ipv6_sockets_look_mapped(api: Recorder,
                                                                env: Env) -> None:
    """An IPv6 socket bound to ::ffff:127.0.0.1 serves IPv4 clients and sees them as
    ::ffff:127.0.0.1 4-tuples; an IPv6 socket reaches an IPv4 server through the
    mapped address, which sees a plain IPv4 peer."""
    server = api.socket(AF_INET6, env.type)
    api.bind(server, ("::ffff:127.0.0.1", 0))
    name = api.getsockname(server)
    client = api.socket(AF_INET, env.type)
    if env.type == STREAM:
        api.listen(server, 8)
        api.connect(client, ("127.0.0.1", port_of(name)))
        accepted, _ = api.accept(server)
        api.getsockname(accepted)
        api.getpeername(accepted)
        api.send(client, b"v4")
        api.recv(accepted, 10)
    else:
        api.connect(client, ("127.0.0.1", port_of(name)))
        api.send(client, b"v4")
        peer = api.recvfrom(server, 10)
        api.sendto(server, b"back", 0, peer[1] if isinstance(peer, tuple) else name)
        api.recvfrom(client, 10)
    api.getpeername(client)
    api.getsockname(client)

    v4_server = api.socket(AF_INET, env.type)
    api.bind(v4_server, ("127.0.0.1", 0))
    v4_name = api.getsockname(v4_server)
    v6_client = api.socket(AF_INET6, env.type)
    if env.type == STREAM:
        api.listen(v4_server, 8)
    api.connect(v6_client, ("::ffff:127.0.0.1", port_of(v4_name)))
    api.getsockname(v6_client)
    api.getpeername(v6_client)
    if env.type == STREAM:
        api.accept(v4_server)
    else:
        api.send(v6_client, b"v6")
        api.recvfrom(v4_server, 10)


@scenario(STREAM, DGRAM, families=IPV6, needs=(SOCKOPTS,))
def scenario_v6only_socket_refuses_ipv4_mapped_addresses(api: Recorder, env: Env) -> None:
    """With IPV6_V6ONLY, ::ffff:a.b.c.d is no address: bind is EINVAL, connect and
    sendto are ENETUNREACH (TCP's unconnected sendto is EPIPE first)."""
    v4_server = api.socket(AF_INET, env.type)
    api.bind(v4_server, ("127.0.0.1", 0))
    if env.type == STREAM:
        api.listen(v4_server, 8)
    mapped = ("::ffff:127.0.0.1", port_of(api.getsockname(v4_server)))
    fd = api.socket(AF_INET6, env.type)
    api.setsockopt(fd, IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
    api.bind(fd, ("::ffff:127.0.0.1", 0))
    api.connect(fd, mapped)
    api.getsockname(fd)
    api.sendto(fd, b"x", MSG_NOSIGNAL, mapped)
    api.getsockname(fd)


@scenario(STREAM, DGRAM, families=IPV6, needs=(SOCKOPTS,))
def scenario_v6only_decides_whether_ipv4_and_ipv6_ports_clash(api: Recorder,
                                                               env: Env) -> None:
    """An IPv6 wildcard bind also holds the IPv4 port unless IPV6_V6ONLY is set;
    ::1 and 127.0.0.1 are different addresses and share a port.  Every port is first
    taken by a dual-stack probe: the kernel's earlier connections leave ports in
    TIME_WAIT on one family that a bind on the other family's port 0 may be given."""
    for v6only in (0, 1):
        port = _port_free_on_both_families(api, env)
        v4 = api.socket(AF_INET, env.type)
        api.bind(v4, ("0.0.0.0", port))
        v6 = api.socket(AF_INET6, env.type)
        api.setsockopt(v6, IPPROTO_IPV6, _socket.IPV6_V6ONLY, v6only)
        api.bind(v6, ("::", port))
        api.close(v4)
        api.close(v6)
        port = _port_free_on_both_families(api, env)
        v6 = api.socket(AF_INET6, env.type)
        api.setsockopt(v6, IPPROTO_IPV6, _socket.IPV6_V6ONLY, v6only)
        api.bind(v6, ("::", port))
        for family, host in ((AF_INET, "0.0.0.0"), (AF_INET, "127.0.0.1"), (AF_INET6, "::1")):
            fd = api.socket(family, env.type)
            api.bind(fd, (host, port))
            api.close(fd)
        api.close(v6)
    port = _port_free_on_both_families(api, env)
    v4 = api.socket(AF_INET, env.type)
    api.bind(v4, ("127.0.0.1", port))
    api.bind(api.socket(AF_INET6, env.type), ("::1", port))
    api.bind(api.socket(AF_INET6, env.type), ("::ffff:127.0.0.1", port))


def _port_free_on_both_families(api: Recorder, env: Env) -> int:
    """A port nothing holds on IPv4 or IPv6 (a dual-stack wildcard bind to port 0,
    closed again)."""
    probe = api.socket(AF_INET6, env.type)
    api.setsockopt(probe, IPPROTO_IPV6, _socket.IPV6_V6ONLY, 0)
    api.bind(probe, ("::", 0))
    port = port_of(api.getsockname(probe))
    api.close(probe)
    return port


@scenario(STREAM, DGRAM, families=IPV6)
def scenario_ipv6_names_are_four_tuples(api: Recorder, env: Env) -> None:
    """IPv6 names are (host, port, flowinfo, scope_id): a 2-tuple is accepted, flowinfo
    and a scope on a global address are ignored (read back 0), flowinfo beyond 20 bits
    is OverflowError, and an IPv4 socket refuses a 4-tuple."""
    server = api.socket(env.family, env.type)
    api.bind(server, ("::1", 0, 5, 1))
    name = api.getsockname(server)
    if env.type == STREAM:
        api.listen(server, 8)
    client = api.socket(env.family, env.type)
    api.connect(client, ("::1", 0, 1 << 20, 0))
    api.connect(client, ("::1", port_of(name), 7, 3))
    api.getpeername(client)
    api.getsockname(client)
    if env.type == STREAM:
        api.accept(server)
    api.bind(api.socket(AF_INET, env.type), ("127.0.0.1", 0, 0, 0))


# -- UDP: corked datagrams (UDP_CORK, MSG_MORE) --------------------------------------------

IPPROTO_UDP = _socket.IPPROTO_UDP
UDP_CORK = getattr(_socket, "UDP_CORK", 1)
MSG_MORE = _socket.MSG_MORE


def udp_receivers(api: Recorder, env: Env, count: int) -> list[tuple[int, Any]]:
    """``count`` loopback datagram sockets and their names."""
    receivers = []
    for _ in range(count):
        fd = api.socket(env.family, env.type)
        api.bind(fd, (ip(env).loopback, 0))
        receivers.append((fd, api.getsockname(fd)))
    return receivers


def nothing_arrives(api: Recorder, *fds: int) -> None:
    """Log that nothing is queued on ``fds`` (whatever was sent has arrived: sends on
    loopback are delivered before they return; only a corked datagram waits)."""
    api.poll([(fd, POLLIN) for fd in fds], 0)


@scenario(DGRAM, families=IP, needs=(SOCKOPTS, MSG))
def scenario_udp_cork_holds_sends_until_it_is_released(api: Recorder, env: Env) -> None:
    """UDP_CORK (0/1, an int's worth of bytes or EINVAL) makes every send a piece of one
    datagram: each returns its length, later addresses are ignored (a missing one, a
    port 0, another host), and the datagram goes to the first send's destination
    when the option is turned off; turning it off with nothing pending does nothing."""
    (first, first_name), (second, second_name) = udp_receivers(api, env, 2)
    sender = api.socket(env.family, env.type)
    api.getsockopt(sender, IPPROTO_UDP, UDP_CORK)
    api.getsockopt(sender, IPPROTO_UDP, UDP_CORK, 1)
    api.getsockopt(sender, IPPROTO_UDP, UDP_CORK, 8)
    for value in (1, 5, 0, -1, b"", b"\x01", INT.pack(0), INT.pack(1) + b"\x00", b"\x00" * 5):
        api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, value)
        api.getsockopt(sender, IPPROTO_UDP, UDP_CORK)
    api.setsockopt(sender, IPPROTO_UDP, 999, b"")
    api.setsockopt(sender, IPPROTO_UDP, 999, 1)
    api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, 1)
    api.getsockname(sender)
    api.sendto(sender, b"ab", 0, first_name)
    api.getsockname(sender)
    api.sendto(sender, b"cd", 0, second_name)
    api.send(sender, b"ef")
    api.sendto(sender, b"gh", 0, (ip(env).loopback, 0))
    api.sendto(sender, b"ij", 0, (ip(env).foreign, port_of(first_name)))
    api.sendto(sender, b"", 0, first_name)
    api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, 1)
    nothing_arrives(api, first, second)
    api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, 0)
    wait_readable(api, first)
    api.recvfrom(first, 100)
    nothing_arrives(api, first, second)
    api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, 0)
    nothing_arrives(api, first, second)
    api.sendto(sender, b"plain", 0, second_name)
    wait_readable(api, second)
    api.recvfrom(second, 100)
    api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, 1)
    api.sendto(sender, b"", 0, first_name)
    api.close(sender)  # a pending datagram dies with its socket
    nothing_arrives(api, first)
    api.getsockopt(api.socket(env.family, STREAM), IPPROTO_UDP, UDP_CORK)
    api.setsockopt(api.socket(env.family, STREAM), IPPROTO_UDP, UDP_CORK, 1)


@scenario(DGRAM, families=IP, needs=(SOCKOPTS, MSG))
def scenario_udp_msg_more_builds_one_datagram(api: Recorder, env: Env) -> None:
    """MSG_MORE keeps a datagram pending as UDP_CORK does, until a send without it
    (while UDP_CORK is off): a send without MSG_MORE does not release what UDP_CORK
    holds, turning UDP_CORK off releases what MSG_MORE left.  getsockopt(UDP_CORK) only
    tells the option."""
    (first, first_name), (second, second_name) = udp_receivers(api, env, 2)
    sender = api.socket(env.family, env.type)
    api.sendto(sender, b"A", MSG_MORE, first_name)
    api.getsockopt(sender, IPPROTO_UDP, UDP_CORK)
    api.sendto(sender, b"B", MSG_MORE, second_name)
    nothing_arrives(api, first, second)
    api.sendto(sender, b"C", 0, second_name)
    wait_readable(api, first)
    api.recvfrom(first, 100)
    nothing_arrives(api, first, second)
    api.sendto(sender, b"D", MSG_MORE, first_name)
    api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, 1)
    api.sendto(sender, b"E", 0, first_name)
    nothing_arrives(api, first)
    api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, 0)
    wait_readable(api, first)
    api.recvfrom(first, 100)
    api.sendto(sender, b"", MSG_MORE, first_name)
    api.sendto(sender, b"", MSG_MORE, first_name)
    api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, 0)
    wait_readable(api, first)
    api.recvfrom(first, 100)
    connected = api.socket(env.family, env.type)
    api.connect(connected, second_name)
    api.send(connected, b"F", MSG_MORE)
    api.sendmsg(connected, [b"G", b"H"], (), MSG_MORE)
    api.send(connected, b"I")
    wait_readable(api, second)
    api.recvfrom(second, 100)


@scenario(DGRAM, families=IP, needs=(SOCKOPTS, MSG))
def scenario_udp_corked_datagram_size_and_errors(api: Recorder, env: Env) -> None:
    """The pending datagram has the size limit of one (65507 bytes over IPv4, 65527
    over IPv6): a piece that passes it is EMSGSIZE and throws the whole datagram away;
    a send over 64 KiB on the IPv4 path is refused before it touches the datagram, as
    is MSG_OOB there (IPv6 takes MSG_OOB).  A pending error stops a new datagram;
    SHUT_WR stops a new datagram but not a piece of the pending one."""
    (receiver, name), = udp_receivers(api, env, 1)
    largest = UDP_PAYLOAD_MAX[env.family]
    sender = api.socket(env.family, env.type)
    api.sendto(sender, b"x" * (largest + 1), MSG_MORE, name)
    api.sendto(sender, b"x" * 60000, MSG_MORE, name)
    api.sendto(sender, b"y" * (largest - 60000), MSG_MORE, name)
    api.sendto(sender, b"z", 0, name)
    api.setsockopt(sender, IPPROTO_UDP, UDP_CORK, 0)
    nothing_arrives(api, receiver)
    api.sendto(sender, b"fresh", 0, name)
    wait_readable(api, receiver)
    api.recvfrom(receiver, 100)
    api.sendto(sender, b"kept", MSG_MORE, name)
    api.sendto(sender, b"x" * 70000, 0, name)
    api.sendto(sender, b"!", _socket.MSG_OOB, name)
    api.sendto(sender, b"?", 0, name)
    wait_readable(api, receiver)
    api.recvfrom(receiver, 100)
    nothing_arrives(api, receiver)

    dead = closed_port(api, env)
    refused = api.socket(env.family, env.type)
    api.connect(refused, dead)
    api.send(refused, b"knock")
    wait_for_error(api, refused)
    api.send(refused, b"more", MSG_MORE)
    api.send(refused, b"more", MSG_MORE)
    api.send(refused, b"knock")
    wait_for_error(api, refused)
    api.getsockopt(refused, SOL_SOCKET, _socket.SO_ERROR)
    first, second = connected_pair(api, env)
    api.send(first, b"before", MSG_MORE)
    api.shutdown(first, _socket.SHUT_WR)
    api.send(first, b" and after", MSG_NOSIGNAL)
    wait_readable(api, second)
    api.recv(second, 100)
    api.send(first, b"new", MSG_MORE | MSG_NOSIGNAL)


@scenario(DGRAM, families=IP, needs=(SOCKOPTS, MSG))
def scenario_udp_connect_while_a_datagram_is_pending(api: Recorder, env: Env) -> None:
    """A connect does not send the pending datagram.  Over IPv4 it re-aims it at the
    new peer (the connect routes into the cork's flow); over IPv6 it still goes where
    its first piece was sent."""
    (first, first_name), (second, second_name) = udp_receivers(api, env, 2)
    sender = api.socket(env.family, env.type)
    api.sendto(sender, b"1", MSG_MORE, first_name)
    api.connect(sender, second_name)
    nothing_arrives(api, first, second)
    api.send(sender, b"2")
    api.poll([(first, POLLIN), (second, POLLIN)], WAIT_MS)
    api.quietly("poll", [(first, POLLIN)], 50)  # in case both were to get something
    api.poll([(first, POLLIN), (second, POLLIN)], 0)
    api.recv(first, 100, MSG_DONTWAIT)
    api.recv(second, 100, MSG_DONTWAIT)


@scenario(DGRAM, families=IPV6, needs=(SOCKOPTS, MSG))
def scenario_udp_pending_datagram_keeps_its_ip_version(api: Recorder, env: Env) -> None:
    """On a dual-stack socket the pending datagram is IPv4 or IPv6 for good: with an
    IPv6 one pending, a send to an IPv4-mapped address is EINVAL (the datagram stays);
    with an IPv4 one pending, a send to an IPv6 address joins it, and an IPv6 connect
    leaves it aimed where it was."""
    v4 = api.socket(AF_INET, env.type)
    api.bind(v4, ("127.0.0.1", 0))
    mapped = ("::ffff:127.0.0.1", port_of(api.getsockname(v4)))
    (v6, v6_name), = udp_receivers(api, env, 1)
    sender = api.socket(env.family, env.type)
    api.sendto(sender, b"six", MSG_MORE, v6_name)
    api.sendto(sender, b"four?", 0, mapped)
    api.sendto(sender, b"four?", MSG_MORE, mapped)
    api.send(sender, b"!")
    wait_readable(api, v6)
    api.recvfrom(v6, 100)
    nothing_arrives(api, v4)
    api.sendto(sender, b"four", MSG_MORE, mapped)
    api.sendto(sender, b"+six", MSG_MORE, v6_name)
    api.sendto(sender, b"x" * 65600, 0, v6_name)
    api.sendto(sender, b"!", _socket.MSG_OOB, v6_name)
    api.sendto(sender, b"!", 0, v6_name)
    wait_readable(api, v4)
    api.recvfrom(v4, 100)
    nothing_arrives(api, v6)
    other = api.socket(env.family, env.type)
    api.sendto(other, b"four", MSG_MORE, mapped)
    api.connect(other, v6_name)
    api.getsockname(other)
    api.send(other, b"+")
    wait_readable(api, v4)
    api.recvfrom(v4, 100)
    nothing_arrives(api, v6)


IP_BIND_ADDRESS_NO_PORT = getattr(_socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def _bound_without_port(api: Recorder, env: Env, address: str) -> int:
    fd = api.socket(env.family, env.type)
    api.setsockopt(fd, _socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    api.bind(fd, (address, 0))
    api.getsockname(fd)
    return fd


@scenario(STREAM, DGRAM, families=IP, needs=(SOCKOPTS,))
def scenario_bind_address_no_port(api: Recorder, env: Env) -> None:
    """IP_BIND_ADDRESS_NO_PORT (a boolean; an empty value is 0): bind() to port 0
    takes the address only (getsockname shows port 0, and bind may be called again);
    the port is picked when the socket connects, listens or (UDP) first sends, from
    the address bind() named.  A port given to bind, or the option set after bind,
    binds as usual."""
    names = ip(env)
    probe = api.socket(env.family, env.type)
    api.getsockopt(probe, _socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT)
    for value in (1, b"", b"\x07", INT.pack(0), 5):
        api.setsockopt(probe, _socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, value)
        api.getsockopt(probe, _socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT)
    api.getsockopt(probe, _socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    api.getsockopt(probe, _socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 4)
    api.bind(probe, (names.loopback, 0))
    api.getsockname(probe)
    api.bind(probe, (names.loopback, 0))  # no port taken yet: bind may come again
    api.getsockname(probe)

    if env.type == STREAM:
        listener, addr = listening(api, env)
        for address in (names.loopback, names.wildcard):
            client = _bound_without_port(api, env, address)
            api.connect(client, addr)
            api.getsockname(client)
            server, _peer = api.accept(listener)
            api.getpeername(server)
            api.close(server)
            api.close(client)
        server = _bound_without_port(api, env, names.loopback)
        api.listen(server, 4)
        served = api.getsockname(server)
        client = api.socket(env.family, env.type)
        api.connect(client, served)
        api.accept(server)
    else:
        receiver = api.socket(env.family, env.type)
        api.bind(receiver, env.address())
        target = api.getsockname(receiver)
        for address in (names.loopback, names.wildcard):
            sender = _bound_without_port(api, env, address)
            api.recv(sender, 10, MSG_DONTWAIT)
            api.sendto(sender, b"first", 0, target)
            api.getsockname(sender)
            api.poll([(receiver, POLLIN)], WAIT_MS)
            api.recvfrom(receiver, 10)
            connected = _bound_without_port(api, env, address)
            api.connect(connected, target)
            api.getsockname(connected)
    late = api.socket(env.family, env.type)
    api.bind(late, (names.loopback, 0))
    api.setsockopt(late, _socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    api.getsockname(late)
