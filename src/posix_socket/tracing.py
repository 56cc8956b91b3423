"""``trace()``: one line per socket call, as strace writes them, for every driver.

The trace is a driver stacked over every registered one (``registry.stack``), the
kernel's host driver included, so it sees each op the core sends down, on whatever
family.  Three things an op does not know come from the core, through the observer
hook ``posix.observe`` (nothing is called there while no trace is active):

* the descriptor number: the core names it when it installs a new socket
  (``opened``); sockets open before the trace began are looked up in the table;
* waiting: a driver op never blocks, it raises BlockingIOError and the core parks
  and calls it again.  For a blocking call (a blocking description, no
  MSG_DONTWAIT) the layer writes nothing for those attempts and one line with the
  final result and the time waited; when the core gives up waiting (a timeout, a
  signal) it says so (``waited``) and the line shows that outcome.  A kernel
  socket's op blocks in the kernel: its line shows the call's duration as the wait
  when it took a millisecond or more;
* poll and select, which are the core's own calls, not driver ops.

Lines are written whole, one ``write`` each under a lock, so threads never
interleave inside a line.
"""

from __future__ import annotations

import atexit
import os
import socket as _socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from . import clock as _clock
from . import descriptors, posix, registry
from . import trace_format as fmt
from .descriptors import OpenSocket
from .driver import Address, AncData, NullBuffer, SocketDriver
from .stacked import StackedDriver

__all__ = ["trace", "TracingDriver"]

_MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)
_KERNEL_WAIT_SHOWN = 0.001  # seconds: a kernel call this long is shown as a wait


class _Pending:
    """A blocking call whose attempts said EAGAIN: its line waits for the outcome."""

    __slots__ = ("sock", "op", "call", "wall", "start")

    def __init__(self, sock: Any, op: str, call: str, wall: float, start: float) -> None:
        self.sock, self.op, self.call, self.wall, self.start = sock, op, call, wall, start


# (the numbers, the first socket's description, close-on-exec) -> (call, result)
_Describe = Callable[[list[int], OpenSocket, bool], tuple[str, str]]


class _Opening:
    """A socket (or two) the driver made, whose numbers the core names next."""

    __slots__ = ("socks", "numbers", "describe", "wall", "waited")

    def __init__(self, socks: list[Any], describe: _Describe, wall: float,
                 waited: float | None) -> None:
        self.socks = socks
        self.numbers: list[int | None] = [None] * len(socks)
        self.describe = describe
        self.wall = wall
        self.waited = waited


class trace:
    """Write one line per socket call to ``file`` while active (stderr by default; a
    path, opened for writing, or a text file, left open).

    Takes effect at the call; as a context manager it ends on exit, which puts back
    exactly the drivers that were registered.  Sockets opened before it began are
    traced too (the layer is put under them as well), their numbers read from the
    descriptor table.
    """

    def __init__(self, file: str | os.PathLike[str] | IO[str] | None = None) -> None:
        if file is None:
            self._out: IO[str] = sys.stderr
            self._owned = False
        elif isinstance(file, (str, os.PathLike)):
            self._out = open(file, "w", encoding="utf-8")  # noqa: SIM115 (closed in close)
            self._owned = True
        else:
            self._out = file
            self._owned = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self._files: dict[int, tuple[OpenSocket, int]] = {}  # id(sock) -> (socket, number)
        for number, f in sorted(descriptors.open_numbers().items(), reverse=True):
            self._files[id(f.sock)] = (f, number)  # the lowest number wins
        self.active = True
        _start(self)
        self._stack = registry.stack(lambda inner: TracingDriver(inner, self))

    def __enter__(self) -> trace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop tracing and put the drivers back (idempotent)."""
        if not self.active:
            return
        self._stack.close()
        self.active = False
        _stop(self)
        with self._lock:
            if self._owned:
                self._out.close()
            else:
                try:
                    self._out.flush()
                except (OSError, ValueError):
                    pass

    # -- writing -------------------------------------------------------------------

    def emit(self, wall: float, call: str, result: str, waited: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(wall))
        micros = int((wall % 1) * 1_000_000)
        line = f"{stamp}.{micros:06d} [{threading.current_thread().name}] {call} = {result}"
        if waited is not None:
            line += f" <waited {waited:.6f}s>"
        with self._lock:
            if not self.active and self._owned:
                return
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (OSError, ValueError):
                pass  # the file went away under us: a trace never breaks the program

    # -- what the layer knows of a socket --------------------------------------------

    def number(self, sock: Any) -> tuple[OpenSocket | None, int | str]:
        """The description and a number of ``sock`` (its lowest, or the one it was
        installed on), "?" for a socket not (or no longer) in the table."""
        known = self._files.get(id(sock))
        if known is not None and known[0].sock is sock:
            f, number = known
            if number in f.numbers or not f.numbers:
                return f, number
            number = min(f.numbers)
            self._files[id(sock)] = (f, number)
            return f, number
        for number, f in sorted(descriptors.open_numbers().items()):
            if f.sock is sock:
                self._files[id(sock)] = (f, number)
                return f, number
        return None, "?"

    def forget(self, sock: Any) -> None:
        self._files.pop(id(sock), None)

    def _state(self) -> threading.local:
        state = self._local
        if not hasattr(state, "pending"):
            state.pending = None
            state.opening = None
        return state

    # -- one op --------------------------------------------------------------------

    def call(self, sock: Any, op: str, args: Callable[[int | str], str],
             attempt: Callable[[], Any], show: Callable[[Any], str],
             blocking_flags: int | None = 0) -> Any:
        """Run ``attempt`` (the inner op on ``sock``) and write its line.

        ``blocking_flags``: the MSG flags that decide whether the core waits after
        EAGAIN, or None for an op the core never repeats.
        """
        if not self.active:
            return attempt()
        state = self._state()
        f, number = self.number(sock)
        wall, start = _stamp()
        try:
            result = attempt()
        except BlockingIOError as exc:
            if (f is not None and f.kernel is None and blocking_flags is not None
                    and not f.nonblocking and not blocking_flags & _MSG_DONTWAIT):
                self.hold(state, sock, op, f"{op}({args(number)})", wall, start)
                raise
            self.finish(state, sock, op, f"{op}({args(number)})", wall, start,
                        fmt.error(exc), f)
            raise
        except BaseException as exc:
            self.finish(state, sock, op, f"{op}({args(number)})", wall, start,
                        fmt.error(exc), f)
            raise
        self.finish(state, sock, op, f"{op}({args(number)})", wall, start, show(result), f)
        return result

    def hold(self, state: threading.local, sock: Any, op: str, call: str, wall: float,
             start: float) -> None:
        """An attempt said EAGAIN and the core will wait and try again: no line yet
        (the first attempt's text and time stay for the line)."""
        pending = state.pending
        if pending is None or pending.sock is not sock or pending.op != op:
            self._flush_stale(state)
            state.pending = _Pending(sock, op, call, wall, start)

    def outcome(self, state: threading.local, sock: Any, op: str, wall: float,
                start: float, f: OpenSocket | None) -> tuple[float, float | None]:
        """The op is over: when its call began and how long it waited (None: it did
        not).  Ends a pending wait of the same op."""
        pending = state.pending
        if pending is not None:
            if pending.sock is sock and pending.op == op:
                state.pending = None
                return pending.wall, _clock.now() - pending.start
            self._flush_stale(state)
        if f is not None and f.kernel is not None:
            took = _clock.now() - start
            if took >= _KERNEL_WAIT_SHOWN:
                return wall, took
        return wall, None

    def finish(self, state: threading.local, sock: Any, op: str, call: str, wall: float,
               start: float, result: str, f: OpenSocket | None) -> None:
        pending = state.pending
        if pending is not None and pending.sock is sock and pending.op == op:
            call = pending.call
        wall, waited = self.outcome(state, sock, op, wall, start, f)
        self.emit(wall, call, result, waited)

    def _flush_stale(self, state: threading.local) -> None:
        """A blocking call whose outcome the core never reported (it gave up before
        its wait began): its line, as far as it is known."""
        pending, state.pending = state.pending, None
        if pending is not None:
            self.emit(pending.wall, pending.call, "? <unfinished>",
                      _clock.now() - pending.start)

    def pending_opening(self, socks: list[Any], describe: _Describe, wall: float,
                        waited: float | None = None) -> None:
        """The driver made ``socks``; the line is written when the core has named
        their numbers (``opened``)."""
        self._state().opening = _Opening(socks, describe, wall, waited)

    # -- what the core reports (see posix.observe) -------------------------------------

    def opened(self, f: OpenSocket, fd: int, cloexec: bool | None) -> None:
        self._files[id(f.sock)] = (f, fd)
        state = self._state()
        opening = state.opening
        if opening is None:
            return
        for index, sock in enumerate(opening.socks):
            if sock is f.sock:
                opening.numbers[index] = fd
        if all(number is not None for number in opening.numbers):
            state.opening = None
            call, result = opening.describe(opening.numbers, f, bool(cloexec))
            self.emit(opening.wall, call, result, opening.waited)

    def waited(self, f: OpenSocket, exc: BaseException | None) -> None:
        state = self._state()
        pending = state.pending
        if pending is None or pending.sock is not f.sock:
            return
        state.pending = None
        result = fmt.error(exc) if exc is not None else fmt.error(BlockingIOError(11, ""))
        self.emit(pending.wall, pending.call, result, _clock.now() - pending.start)

    def poll(self, call: Callable[[list, Any], list], fds: Iterable[Any],
             timeout_ms: Any) -> list:
        entries = list(fds) if not isinstance(fds, list) else fds
        wall, start = _stamp()
        shown = ", ".join(_poll_entry(item) for item in entries)
        text = f"poll([{shown}], {len(entries)}, {timeout_ms})"
        return self._ready_list(wall, start, text, lambda: call(entries, timeout_ms),
                                "revents", fmt.poll_events)

    def epoll_wait(self, call: Callable[[Any, int], list], kernel: Any, timeout: Any,
                   maxevents: int) -> list:
        """A wait of the drop-in epoll (``kernel``: its kernel epoll object, whose
        number names it)."""
        wall, start = _stamp()
        try:
            epfd = kernel.fileno()
        except ValueError:  # closed: the wait raises the stdlib's error
            epfd = -1
        text = f"epoll_wait({epfd}, {maxevents}, {timeout})"
        return self._ready_list(wall, start, text, lambda: call(timeout, maxevents),
                                "events", fmt.epoll_events)

    def _ready_list(self, wall: float, start: float, text: str, run: Callable[[], list],
                    field: str, names: Callable[[int], str]) -> list:
        """A poll-like wait's line: ``[(fd, bits)]`` found, or a timeout, or its error."""
        try:
            result = run()
        except BaseException as exc:
            self.emit(wall, text, fmt.error(exc), _wait_shown(start))
            raise
        if result:
            ready = ", ".join(f"{{fd={fd}, {field}={names(bits)}}}" for fd, bits in result)
            outcome = f"{len(result)} ([{ready}])"
        else:
            outcome = "0 (Timeout)"
        self.emit(wall, text, outcome, _wait_shown(start))
        return result

    def select(self, call: Callable[..., tuple[list, list, list]], rlist: Iterable[Any],
               wlist: Iterable[Any], xlist: Iterable[Any], timeout: Any) -> tuple:
        try:
            groups = [list(rlist), list(wlist), list(xlist)]
        except TypeError:
            return call(rlist, wlist, xlist, timeout)  # the core raises the stdlib's error
        wall, start = _stamp()
        text = "select({}, {})".format(", ".join(_fd_list(g) for g in groups), timeout)
        try:
            ready = call(*groups, timeout)
        except BaseException as exc:
            self.emit(wall, text, fmt.error(exc), _wait_shown(start))
            raise
        count = sum(len(group) for group in ready)
        outcome = f"{count} ({', '.join(_fd_list(g) for g in ready)})" if count else (
            "0 (Timeout)")
        self.emit(wall, text, outcome, _wait_shown(start))
        return ready


def _stamp() -> tuple[float, float]:
    """(the time of day, the layer's clock): a virtual clock's, under a virtual-time
    network, so that waits show the time the program saw pass."""
    now = _clock.now()
    if _clock.current is _clock.REAL:
        return _clock.real_time(), now
    return _clock.EPOCH + (now - _clock.START), now


def _wait_shown(start: float) -> float | None:
    took = _clock.now() - start
    return took if took >= _KERNEL_WAIT_SHOWN else None


def _fd_text(obj: Any) -> str:
    """A descriptor as a number, without asking ``fileno()`` (which would show a
    virtual socket to the kernel's pollers)."""
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, _socket.socket):
        return str(_socket.socket.fileno(obj))
    return repr(obj)


def _fd_list(items: list) -> str:
    return "[" + ", ".join(_fd_text(item) for item in items) + "]"


def _poll_entry(item: Any) -> str:
    try:
        fd, events = item
        return f"{{fd={_fd_text(fd)}, events={fmt.poll_events(events)}}}"
    except (TypeError, ValueError):
        return repr(item)


# -- the observer the core calls: every active trace hears it -----------------------------

_active: list[trace] = []
_active_lock = threading.Lock()


class _Observer:
    """What ``posix.observe`` is given while any trace is active.

    poll, select and epoll.poll call ``outside()`` first; a wait this observer is
    writing the line of calls itself back, and is then inside (per thread)."""

    _inside = threading.local()

    @classmethod
    def outside(cls) -> bool:
        return not getattr(cls._inside, "waiting", False)

    @classmethod
    def _within(cls, call: Callable[..., Any]) -> Callable[..., Any]:
        def inside(*args: Any) -> Any:
            cls._inside.waiting = True
            try:
                return call(*args)
            finally:
                cls._inside.waiting = False
        return inside

    @staticmethod
    def opened(f: OpenSocket, fd: int, cloexec: bool | None) -> None:
        for each in list(_active):
            each.opened(f, fd, cloexec)

    @staticmethod
    def waited(f: OpenSocket, exc: BaseException | None) -> None:
        for each in list(_active):
            each.waited(f, exc)

    @classmethod
    def poll(cls, call: Callable, fds: Iterable[Any], timeout_ms: Any) -> list:
        call = cls._within(call)
        for each in reversed(list(_active)):
            call = _bind_poll(each, call)
        return call(fds, timeout_ms)

    @classmethod
    def epoll_wait(cls, call: Callable, kernel: Any, timeout: Any, maxevents: int) -> list:
        call = cls._within(call)
        for each in reversed(list(_active)):
            call = _bind_epoll(each, call, kernel)
        return call(timeout, maxevents)

    @classmethod
    def select(cls, call: Callable, rlist: Any, wlist: Any, xlist: Any,
               timeout: Any) -> tuple:
        call = cls._within(call)
        for each in reversed(list(_active)):
            call = _bind_select(each, call)
        return call(rlist, wlist, xlist, timeout)


def _bind_poll(each: trace, call: Callable) -> Callable:
    return lambda fds, timeout_ms: each.poll(call, fds, timeout_ms)


def _bind_epoll(each: trace, call: Callable, kernel: Any) -> Callable:
    return lambda timeout, maxevents: each.epoll_wait(call, kernel, timeout, maxevents)


def _bind_select(each: trace, call: Callable) -> Callable:
    return lambda r, w, x, timeout: each.select(call, r, w, x, timeout)


def _start(each: trace) -> None:
    with _active_lock:
        _active.append(each)
        posix.observe(_Observer)


def _stop(each: trace) -> None:
    with _active_lock:
        if each in _active:
            _active.remove(each)
        if not _active:
            posix.observe(None)


def trace_until_exit(file: str | None) -> trace:
    """A trace for a whole program (``posix-socket run --trace``): ended at exit,
    after the interpreter has joined the program's threads."""
    active = trace(file)
    atexit.register(active.close)
    return active


# -- the layer ---------------------------------------------------------------------------

def _none(_result: Any) -> str:
    return "0"


def _count(result: Any) -> str:
    return str(result)


def _data(result: Any) -> str:
    return fmt.payload(result)


def _data_from(result: Any) -> str:
    data, addr = result
    return f"{fmt.payload(data)} from {fmt.address(addr)}"


def _message(result: Any) -> str:
    data, ancdata, msg_flags, addr = result
    text = f"{fmt.payload(data)}, msg_flags={fmt.msg_flags(msg_flags)}"
    if ancdata:
        text += f", {len(ancdata)} control message{'s' if len(ancdata) > 1 else ''}"
    if addr is not None:
        text += f" from {fmt.address(addr)}"
    return text


class TracingDriver(StackedDriver):
    """The trace's layer over one driver: each op writes its line (see ``trace``)."""

    def __init__(self, inner: SocketDriver, tracer: trace) -> None:
        super().__init__(inner, name=inner.name)
        self.tracer = tracer

    # -- new sockets: written once the core has named the numbers ------------------------

    def create(self, family: int, type: int, proto: int) -> Any:
        tracer = self.tracer
        if not tracer.active:
            return self.inner.create(family, type, proto)
        wall = _stamp()[0]
        try:
            sock = self.inner.create(family, type, proto)
        except BaseException as exc:
            call = f"socket({fmt.family(family)}, {fmt.kind(type)}, {fmt.proto(proto)})"
            tracer.emit(wall, call, fmt.error(exc))
            raise

        def describe(numbers: list[int], f: OpenSocket, cloexec: bool) -> tuple[str, str]:
            kind = fmt.kind(type, f.nonblocking, cloexec)
            return (f"socket({fmt.family(family)}, {kind}, {fmt.proto(proto)})",
                    str(numbers[0]))

        tracer.pending_opening([sock], describe, wall)
        return sock

    def socketpair(self, family: int, type: int, proto: int) -> tuple[Any, Any]:
        tracer = self.tracer
        if not tracer.active:
            return self.inner.socketpair(family, type, proto)
        wall = _stamp()[0]
        try:
            pair = self.inner.socketpair(family, type, proto)
        except BaseException as exc:
            call = f"socketpair({fmt.family(family)}, {fmt.kind(type)}, {fmt.proto(proto)})"
            tracer.emit(wall, call, fmt.error(exc))
            raise

        def describe(numbers: list[int], f: OpenSocket, cloexec: bool) -> tuple[str, str]:
            kind = fmt.kind(type, f.nonblocking, cloexec)
            return (f"socketpair({fmt.family(family)}, {kind}, {fmt.proto(proto)}, "
                    f"[{numbers[0]}, {numbers[1]}])", "0")

        tracer.pending_opening(list(pair), describe, wall)
        return pair

    def accept(self, sock: Any, flags: int) -> tuple[Any, Address]:
        return self._accept(sock, flags, self.inner.accept)

    def accept_blocking(self, sock: Any, flags: int) -> tuple[Any, Address]:
        return self._accept(sock, flags, self.inner.accept_blocking)

    def _accept(self, sock: Any, flags: int,
                op: Callable[[Any, int], tuple[Any, Address]]) -> tuple[Any, Address]:
        tracer = self.tracer
        if not tracer.active:
            return op(sock, flags)
        state = tracer._state()
        f, listener = tracer.number(sock)
        call = f"accept4({listener}, {fmt.accept_flags(flags)})"
        wall, start = _stamp()
        try:
            accepted = op(sock, flags)
        except BlockingIOError as exc:
            if f is not None and f.kernel is None and not f.nonblocking:
                tracer.hold(state, sock, "accept4", call, wall, start)
                raise
            tracer.finish(state, sock, "accept4", call, wall, start, fmt.error(exc), f)
            raise
        except BaseException as exc:
            tracer.finish(state, sock, "accept4", call, wall, start, fmt.error(exc), f)
            raise
        # The line waits for the new socket's number, which the core names next.
        wall, waited = tracer.outcome(state, sock, "accept4", wall, start, f)
        peer = fmt.address(accepted[1])

        def describe(numbers: list[int], _f: OpenSocket, _cloexec: bool) -> tuple[str, str]:
            return call, f"{numbers[0]} (peer {peer})"

        tracer.pending_opening([accepted[0]], describe, wall, waited)
        return accepted

    # -- addressing and state --------------------------------------------------------

    def bind(self, sock: Any, addr: Address) -> None:
        return self.tracer.call(sock, "bind", lambda n: f"{n}, {fmt.address(addr)}",
                                lambda: self.inner.bind(sock, addr), _none, None)

    def listen(self, sock: Any, backlog: int) -> None:
        return self.tracer.call(sock, "listen", lambda n: f"{n}, {backlog}",
                                lambda: self.inner.listen(sock, backlog), _none, None)

    def connect(self, sock: Any, addr: Address) -> None:
        return self.tracer.call(sock, "connect", lambda n: f"{n}, {fmt.address(addr)}",
                                lambda: self.inner.connect(sock, addr), _none, 0)

    def connect_blocking(self, sock: Any, addr: Address) -> None:
        return self.tracer.call(sock, "connect", lambda n: f"{n}, {fmt.address(addr)}",
                                lambda: self.inner.connect_blocking(sock, addr), _none, 0)

    def shutdown(self, sock: Any, how: int) -> None:
        return self.tracer.call(sock, "shutdown", lambda n: f"{n}, {fmt.how(how)}",
                                lambda: self.inner.shutdown(sock, how), _none, None)

    def getsockname(self, sock: Any) -> Address:
        return self.tracer.call(sock, "getsockname", str,
                                lambda: self.inner.getsockname(sock), fmt.address, None)

    def getpeername(self, sock: Any) -> Address:
        return self.tracer.call(sock, "getpeername", str,
                                lambda: self.inner.getpeername(sock), fmt.address, None)

    def getsockopt(self, sock: Any, level: int, optname: int, buflen: int) -> int | bytes:
        return self.tracer.call(
            sock, "getsockopt",
            lambda n: f"{n}, {fmt.level(level)}, {fmt.option(level, optname)}, {buflen}",
            lambda: self.inner.getsockopt(sock, level, optname, buflen),
            fmt.option_value, None)

    def setsockopt(self, sock: Any, level: int, optname: int,
                   value: int | bytes | NullBuffer) -> None:
        return self.tracer.call(
            sock, "setsockopt",
            lambda n: (f"{n}, {fmt.level(level)}, {fmt.option(level, optname)}, "
                       f"{fmt.option_value(value)}"),
            lambda: self.inner.setsockopt(sock, level, optname, value), _none, None)

    def ioctl(self, sock: Any, request: int, arg: int | bytes) -> int | bytes:
        return self.tracer.call(sock, "ioctl", lambda n: f"{n}, {request:#x}, {arg!r}",
                                lambda: self.inner.ioctl(sock, request, arg), repr, None)

    # -- data ------------------------------------------------------------------------

    def send(self, sock: Any, data: bytes, flags: int) -> int:
        return self.tracer.call(
            sock, "send", lambda n: f"{n}, {fmt.payload(data)}, {fmt.msg_flags(flags)}",
            lambda: self.inner.send(sock, data, flags), _count, flags)

    def sendto(self, sock: Any, data: bytes, flags: int, addr: Address | None) -> int:
        return self.tracer.call(
            sock, "sendto",
            lambda n: (f"{n}, {fmt.payload(data)}, {fmt.msg_flags(flags)}, "
                       f"{fmt.address(addr)}"),
            lambda: self.inner.sendto(sock, data, flags, addr), _count, flags)

    def sendmsg(self, sock: Any, buffers: Iterable[bytes], ancdata: AncData, flags: int,
                addr: Address | None) -> int:
        buffers = list(buffers)
        return self.tracer.call(
            sock, "sendmsg",
            lambda n: (f"{n}, {fmt.buffers(buffers)}, {len(ancdata)} control messages, "
                       f"{fmt.msg_flags(flags)}, {fmt.address(addr)}"),
            lambda: self.inner.sendmsg(sock, buffers, ancdata, flags, addr), _count, flags)

    def recv(self, sock: Any, bufsize: int, flags: int) -> bytes:
        return self.tracer.call(
            sock, "recv", lambda n: f"{n}, {bufsize}, {fmt.msg_flags(flags)}",
            lambda: self.inner.recv(sock, bufsize, flags), _data, flags)

    def recvfrom(self, sock: Any, bufsize: int, flags: int) -> tuple[bytes, Address]:
        return self.tracer.call(
            sock, "recvfrom", lambda n: f"{n}, {bufsize}, {fmt.msg_flags(flags)}",
            lambda: self.inner.recvfrom(sock, bufsize, flags), _data_from, flags)

    def recvmsg(self, sock: Any, bufsize: int, ancbufsize: int,
                flags: int) -> tuple[bytes, list[tuple[int, int, bytes]], int, Address]:
        return self.tracer.call(
            sock, "recvmsg",
            lambda n: f"{n}, {bufsize}, {ancbufsize}, {fmt.msg_flags(flags)}",
            lambda: self.inner.recvmsg(sock, bufsize, ancbufsize, flags), _message, flags)

    def read(self, sock: Any, n: int) -> bytes:
        return self.tracer.call(sock, "read", lambda number: f"{number}, {n}",
                                lambda: self.inner.read(sock, n), _data, 0)

    def write(self, sock: Any, data: bytes) -> int:
        return self.tracer.call(sock, "write", lambda n: f"{n}, {fmt.payload(data)}",
                                lambda: self.inner.write(sock, data), _count, 0)

    def close(self, sock: Any) -> None:
        tracer = self.tracer
        try:
            return tracer.call(sock, "close", str, lambda: self.inner.close(sock), _none,
                               None)
        finally:
            tracer.forget(sock)
