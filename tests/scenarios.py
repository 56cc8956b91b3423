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
never asks "has it arrived yet?".  ``@scenario(...)`` records which socket types it
makes sense for and which optional driver features it needs, so a configuration can
leave out what its driver does not claim to do.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl as _fcntl
import itertools
import os
import select as _select
import shutil
import socket as _socket
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posix_socket import posix

STREAM, DGRAM = _socket.SOCK_STREAM, _socket.SOCK_DGRAM
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

    def setsockopt(self, fd: int, level: int, optname: int, value: int | bytes) -> None:
        self._sock(fd).setsockopt(level, optname, value)

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

    def setsockopt(self, fd: int, level: int, optname: int, value: int | bytes) -> Any:
        return self._call("setsockopt", self._same, fd, level, optname, value)

    def send(self, fd: int, data: bytes, flags: int = 0) -> Any:
        return self._call("send", self._same, fd, data, flags)

    def sendto(self, fd: int, data: bytes, flags: int, addr: Any) -> Any:
        return self._call("sendto", self._same, fd, data, flags, addr)

    def sendmsg(self, fd: int, buffers: list, ancdata: Any = (), flags: int = 0,
                addr: Any = None) -> Any:
        return self._call("sendmsg", self._same, fd, buffers, ancdata, flags, addr)

    def recv(self, fd: int, bufsize: int, flags: int = 0) -> Any:
        return self._call("recv", self._same, fd, bufsize, flags)

    def recvfrom(self, fd: int, bufsize: int, flags: int = 0) -> Any:
        return self._call("recvfrom", lambda r: (r[0], self._addr(r[1])), fd, bufsize, flags)

    def recvmsg(self, fd: int, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Any:
        return self._call("recvmsg", lambda r: (*r[:3], self._addr(r[3])),
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


def scenario(*types: int, needs: tuple[str, ...] = ()) -> Callable:
    """Register a scenario for the socket ``types`` it makes sense for, needing the
    optional driver features in ``needs``."""
    def register(function: Callable[[Recorder, Env], None]) -> Callable:
        function.types = frozenset(types)
        function.needs = frozenset(needs)
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
    if env.type == STREAM:
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
    if env.type == STREAM:
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
    if env.type == STREAM:
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
