"""POSIX socket calls on integer descriptors, with Linux's errno semantics.

Like the ``os`` module: every function takes descriptor numbers.  A call on a socket
descriptor goes to the driver of the family the socket was made in; a call on a plain
descriptor (pipe, file) that makes sense for it (read, write, close, dup, fcntl, poll,
select) goes to the kernel; a kernel socket made outside the layer is served by the host
driver.  Driver ops never block: the waiting, timeouts, MSG_DONTWAIT/O_NONBLOCK and
wake-ups happen here, once, for every driver.
"""

from __future__ import annotations

import errno
import fcntl as _fcntl
import math
import operator
import os
import select as _select
import socket as _socket
import stat
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import clock as _clock
from . import descriptors, inflight, options, readiness, registry
from .descriptors import OpenSocket
from .driver import NullBuffer, SocketDriver
from .errors import DriverFailure, oserror, raised_by_signal_handler

__all__ = [
    "socket", "socketpair", "bind", "listen", "connect", "accept", "accept4", "shutdown",
    "getsockname", "getpeername", "getsockopt", "setsockopt", "send", "sendto", "sendmsg",
    "recv", "recvfrom", "recvmsg", "read", "write", "close", "ioctl", "dup", "dup2",
    "fcntl", "poll", "select", "make_visible", "sendfile", "observe",
]

# Plain ints: the socket module's enums make every ``flags & X`` a slow Python call.
SOCK_NONBLOCK = int(_socket.SOCK_NONBLOCK)
SOCK_CLOEXEC = int(_socket.SOCK_CLOEXEC)
SOCK_STREAM = int(_socket.SOCK_STREAM)
_SOCK_TYPE_MASK = 0xF
_SOCK_MAX = 11  # Linux refuses types from here up in every family (SOCK_PACKET + 1)
MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)
MSG_WAITALL = int(_socket.MSG_WAITALL)
MSG_PEEK = int(_socket.MSG_PEEK)
POLLIN, POLLOUT, POLLPRI = _select.POLLIN, _select.POLLOUT, _select.POLLPRI
POLLERR, POLLHUP, POLLNVAL = _select.POLLERR, _select.POLLHUP, _select.POLLNVAL
FIONBIO = 0x5421
FD_SETSIZE = 1024
_SOCKLEN_T_LIMIT = 2**31 - 1  # the stdlib's cap on recvmsg's ancbufsize

# Exceptions a driver may raise on purpose; anything else is a driver bug (EIO).
_EXPECTED = (OSError, TypeError, ValueError, OverflowError)

_files = descriptors._files  # the hot path reads the table directly
_registered = registry._drivers  # and the families' drivers
# Who watches the calls (a trace), or None.  Set by ``observe``; read only where a
# call takes a new number, ends a wait, or polls: never on a driver op's own path,
# which observers see by stacking a driver (see ``registry.stack``).
_observer: Any = None
_KERNEL_POLL = _select.poll  # the kernel's: patch() puts the drop-in in the select module
_KERNEL_SELECT = _select.select


# -- argument checks: the stdlib's exceptions for the stdlib's mistakes ------------------

_C_INT_LIMIT = 2**31  # a C int holds -2**31 .. 2**31 - 1


def _c_int(value: object) -> int:
    number = operator.index(value)
    if not -(2**31) <= number < 2**31:
        raise OverflowError("Python int too large to convert to C int")
    return number


def _buffer(data: object) -> None:
    if type(data) is bytes:
        return
    try:
        memoryview(data)
    except TypeError:
        raise TypeError(
            f"a bytes-like object is required, not '{type(data).__name__}'") from None


def _size(value: object, message: str) -> int:
    size = operator.index(value)
    if not -(2**63) <= size < 2**63:
        raise OverflowError("Python int too large to convert to C ssize_t")
    if size < 0:
        raise ValueError(message)
    return size


def _fileno(obj: object) -> int:
    """An int or an object with fileno(), as select/poll accept them."""
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            method = obj.fileno
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
        fd = method()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return _c_int(fd)


# -- finding the description -------------------------------------------------------------

def _foreign(fd: object) -> OpenSocket:
    """``fd`` is not a layer socket: an outside kernel socket, or an error."""
    number = _c_int(fd)
    f = _files.get(number)
    if f is not None:
        if f.kernel is not None and f.kernel != number:
            descriptors.point_at(f, number)
        return f
    if number < 0:
        raise oserror(errno.EBADF)
    if not stat.S_ISSOCK(os.fstat(number).st_mode):  # EBADF when not open
        raise oserror(errno.ENOTSOCK)
    return descriptors.adopt(number)


def _get(fd: int) -> OpenSocket:
    """The description ``fd`` names.  A kernel socket's driver object is put on ``fd``
    first if it is on another of the socket's numbers (see ``descriptors.point_at``)."""
    f = _files.get(fd)
    if f is None or type(fd) is not int:
        return _foreign(fd)
    if f.kernel is not None and f.kernel != fd:
        descriptors.point_at(f, fd)
    return f


def _failure(f: OpenSocket, op: str, exc: BaseException) -> DriverFailure:
    """What the call raises for ``exc`` from a driver op: EIO for the driver's bug;
    an exception of the program's signal handler passes through (raised here)."""
    if raised_by_signal_handler(exc):
        raise exc
    return DriverFailure(f.driver.name, op, exc)


def _call(f: OpenSocket, op: str, *args: Any) -> Any:
    """One driver op.  An unexpected exception from a Python driver is its bug,
    reported as EIO (DriverFailure).  A kernel socket's ops are the kernel's calls,
    which raise nothing else: what escapes them comes from a signal handler that ran
    during the call, and passes through as it does with the stdlib."""
    try:
        return getattr(f.driver, op)(f.sock, *args)
    except _EXPECTED:
        raise
    except Exception as exc:
        if f.kernel is not None:
            raise
        raise _failure(f, op, exc) from exc


# -- waiting (virtual sockets only; the kernel waits for its own) ------------------------

def _wait(f: OpenSocket, events: int, timeout: float | None) -> bool:
    """Park until ``f`` polls ``events`` (or an error or hang-up); False on timeout.

    The caller holds ``f`` (``_using``): closing its numbers in another thread does not
    end the wait, as on Linux, where a call keeps the open file it started on."""
    mask = events | POLLERR | POLLHUP
    return readiness.wait((f.watch,), lambda: bool(f.revents() & mask), timeout)


class _Using:
    """A blocking call's reference to the description it waits on, taken on the slow
    path only (a call that does not wait costs nothing).  Like the reference a Linux
    syscall holds on its ``struct file``: a close of the last number in another thread
    leaves the socket open, and the call waiting, until the call is over; the last
    reference to go runs the driver's close.  EBADF if the socket is already gone."""

    __slots__ = ("f",)

    def __init__(self, f: OpenSocket) -> None:
        self.f = f

    def __enter__(self) -> OpenSocket:
        try:
            descriptors.hold(self.f)
        except ValueError:
            raise oserror(errno.EBADF) from None
        return self.f

    def __exit__(self, *exc_info: object) -> None:
        descriptors.drop(self.f)
        if _observer is not None:
            _observer.waited(self.f, exc_info[1])


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else _clock.now() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - _clock.now()


def _retry(f: OpenSocket, events: int, timeout: float | None, op: str,
           attempt: Callable[[], Any]) -> Any:
    """Call ``attempt`` until it stops raising BlockingIOError, parking in between."""
    deadline = _deadline(timeout)
    nap = 0.0
    with _Using(f):
        while True:
            if not _wait(f, events, _remaining(deadline)):
                raise oserror(errno.EAGAIN)
            try:
                return attempt()
            except BlockingIOError:
                if f.revents() & (events | POLLERR | POLLHUP):
                    nap = _nap_while_falsely_ready(f, nap, deadline)
                continue
            except _EXPECTED:
                raise
            except Exception as exc:
                raise _failure(f, op, exc) from exc


def _never() -> bool:
    return False


def _nap_while_falsely_ready(f: OpenSocket, nap: float, deadline: float | None) -> float:
    """Wait a little when poll says ready yet the op would block, instead of spinning.

    A driver may have such states (a listener that polls readable with nothing to
    accept, which Linux's AF_UNIX answers at once: see ``accept_blocking``).  The nap doubles from
    1 ms to 50 ms; a timeout still ends the call on time and Ctrl-C interrupts it."""
    nap = min(max(nap * 2, 0.001), 0.05)
    remaining = _remaining(deadline)
    if remaining is not None and remaining <= 0:
        raise oserror(errno.EAGAIN)
    readiness.wait((f.watch,), _never, nap if remaining is None else min(nap, remaining))
    return nap


def _receive(f: OpenSocket, op: str, flags: int, bufsize: int,
             attempt: Callable[[int], Any]) -> Any:
    """A receive on a virtual socket: wait while it would block; MSG_WAITALL gathers."""
    try:
        result = attempt(bufsize)
    except BlockingIOError:
        if f.nonblocking or flags & MSG_DONTWAIT:
            raise
        if not bufsize and f.type == SOCK_STREAM and (
                f.driver.empty_stream_receive_waits_once):
            return _wait_once(f, op)
        result = _retry(f, POLLIN, f.rcvtimeo, op, lambda: attempt(bufsize))
    except _EXPECTED:
        raise
    except Exception as exc:
        raise _failure(f, op, exc) from exc
    if (flags & (MSG_WAITALL | MSG_PEEK | MSG_DONTWAIT) == MSG_WAITALL
            and not f.nonblocking and f.type == SOCK_STREAM):
        return _gather(f, op, flags, bufsize, attempt, result)
    return result


def _wait_once(f: OpenSocket, op: str) -> Any:
    """A blocking receive of 0 bytes with nothing queued, on a driver that answers it as
    Linux's tcp_recvmsg: one wait (for data, an error, the end, or SO_RCVTIMEO), then
    0 bytes whatever ended it; an error that came stays pending."""
    with _Using(f):
        _wait(f, POLLIN, f.rcvtimeo)
    return (b"", None) if op == "recvfrom" else (b"", [], 0, None) if op == "recvmsg" else b""


def _gather(f: OpenSocket, op: str, flags: int, bufsize: int,
            attempt: Callable[[int], Any], first: Any) -> Any:
    """MSG_WAITALL on a stream: keep receiving until ``bufsize`` bytes, EOF, an error
    or the timeout; then return what arrived (Linux returns a short count likewise)."""
    single = isinstance(first, bytes)
    chunks = [first if single else first[0]]
    got = len(chunks[0])
    deadline = _deadline(f.rcvtimeo)
    while 0 < got < bufsize and chunks[-1]:
        try:
            want = bufsize - got
            more = _retry(f, POLLIN, _remaining(deadline), op,
                          lambda want=want: attempt(want))
        except OSError:
            break
        chunk = more if single else more[0]
        chunks.append(chunk)
        got += len(chunk)
    data = b"".join(chunks)
    return data if single else (data, *first[1:])


def _transmit(f: OpenSocket, op: str, flags: int, size: int,
              attempt: Callable[[int], int], sent: int = 0) -> int:
    """A send on a virtual socket.  ``attempt(offset)`` sends the payload from ``offset``
    (``sent`` bytes may already be gone).

    A blocking send on a stream queues everything, waiting as needed, like Linux; a
    timeout, error or signal after a partial send returns the count sent so far.
    """
    dontwait = f.nonblocking or flags & MSG_DONTWAIT
    stream = f.type == SOCK_STREAM
    deadline = _deadline(f.sndtimeo)
    using: _Using | None = None  # taken before the first wait
    try:
        while True:
            try:
                sent += attempt(sent)
            except BlockingIOError:
                if dontwait:
                    if sent:
                        return sent
                    raise
                if using is None:
                    using = _Using(f)
                    using.__enter__()
                if not _wait(f, POLLOUT, _remaining(deadline)):
                    if sent:
                        return sent
                    raise oserror(errno.EAGAIN) from None
                continue
            except _EXPECTED as exc:
                if sent:
                    keep = getattr(f.driver, "keep_error", None)  # optional op
                    if keep is not None and stream and isinstance(exc, OSError) and (
                            exc.errno):
                        keep(f.sock, exc.errno)  # pending for the next call, as Linux
                    return sent
                raise
            except Exception as exc:
                raise _failure(f, op, exc) from exc
            if dontwait or not stream or sent >= size:
                return sent
    finally:
        if using is not None:
            using.__exit__()


# -- creation ----------------------------------------------------------------------------

def _check_type(type: object) -> tuple[int, bool, bool]:
    kind = type if type.__class__ is int else operator.index(type)  # SOCK_* are IntEnums
    if not 0 <= kind < _C_INT_LIMIT:
        kind = _c_int(kind)
    if kind & ~(_SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC) or (
            (kind & _SOCK_TYPE_MASK) >= _SOCK_MAX):
        raise oserror(errno.EINVAL)
    return kind & _SOCK_TYPE_MASK, bool(kind & SOCK_NONBLOCK), bool(kind & SOCK_CLOEXEC)


# Every valid ``type`` int -> what _check_type answers for it: a new socket's type is
# looked up, not taken apart (an int or a SocketKind member, whose hash and equality
# are the int's).
_SocketKind = _socket.SocketKind
_VALID_TYPES = {kind | nonblocking | cloexec: (kind, bool(nonblocking), bool(cloexec))
                for kind in range(_SOCK_MAX) for nonblocking in (0, SOCK_NONBLOCK)
                for cloexec in (0, SOCK_CLOEXEC)}


def _driver(family: int):
    driver = registry.driver_for(family)
    if driver is None:
        raise oserror(errno.EAFNOSUPPORT)
    return driver


def _open(driver, sock: Any, fd: int | None, family: int, type: int, proto: int,
          nonblocking: bool, visible: bool = True, cloexec: bool | None = None) -> int:
    """Wrap a new driver socket in a description named by the reserved number ``fd``
    (reserved close-on-exec or not as ``cloexec`` says, when given), or, for a kernel
    socket (``fd`` None), by its own number; that number is returned.

    On failure the driver's socket is closed; a reserved number stays reserved for the
    caller to give back.
    """
    try:
        f = OpenSocket(driver, sock, family, type, proto, nonblocking)
    except _EXPECTED:
        _discard(driver, sock)
        raise
    except Exception as exc:
        _discard(driver, sock)
        raise DriverFailure(driver.name, "fileno", exc) from exc
    try:
        if fd is None:
            fd = f.kernel
            if fd is None:
                raise DriverFailure(driver.name, "fileno", TypeError(
                    "a driver with kernel_sockets made a socket without a number"))
        if nonblocking and f.kernel is not None:
            _set_kernel_nonblocking(f.kernel, True)  # the flag lives in the description
        descriptors.install(f, fd, watched=visible, cloexec=cloexec)
        if _observer is not None:
            _observer.opened(f, fd, cloexec)
    except BaseException:
        if f._watch is not None:
            readiness.unwatch(sock)
            if f._watch.mirror is not None:  # armed, then its first show() failed
                f._watch.mirror.close()
        _discard(driver, sock)
        raise
    return fd


def _discard(driver, sock: Any) -> None:
    try:
        driver.close(sock)
    except Exception:
        pass


def _set_kernel_nonblocking(fd: int, on: bool) -> None:
    flags = _fcntl.fcntl(fd, _fcntl.F_GETFL)
    _fcntl.fcntl(fd, _fcntl.F_SETFL, flags | os.O_NONBLOCK if on else flags & ~os.O_NONBLOCK)


def socket(family: int, type: int, proto: int = 0, *, visible: bool = True) -> int:
    """socket(2).  ``type`` may carry SOCK_NONBLOCK | SOCK_CLOEXEC.

    ``visible=False`` is for callers that keep the number inside the layer (the
    stdlib drop-in, until someone asks for ``fileno()``): the kernel's own
    select/poll/epoll then see a placeholder on a virtual socket's number, not its
    readiness, until ``make_visible`` (call it before handing the number to them);
    this saves the kernel mirror's two descriptors and a system call per readiness
    change.  The layer's own waits and polls see the socket either way.
    """
    if family.__class__ is not int:  # socket.AF_INET is an IntEnum: a C call, no frame
        family = operator.index(family)
    if not -_C_INT_LIMIT <= family < _C_INT_LIMIT:
        family = _c_int(family)
    checked = (_VALID_TYPES.get(type)
               if type.__class__ is int or type.__class__ is _SocketKind else None)
    kind, nonblocking, cloexec = checked if checked is not None else _check_type(type)
    if not (proto.__class__ is int and -_C_INT_LIMIT <= proto < _C_INT_LIMIT):
        proto = _c_int(proto)
    driver = _registered.get(family)
    if driver is None:
        raise oserror(errno.EAFNOSUPPORT)
    if driver.kernel_sockets:  # the kernel's socket() takes the number itself
        return _open(driver, _create(driver, family, kind, proto), None, family, kind,
                     proto, nonblocking, visible, cloexec)
    fd = descriptors.reserve(cloexec)
    try:
        sock = _create(driver, family, kind, proto)
        _open(driver, sock, fd, family, kind, proto, nonblocking, visible, cloexec)
    except BaseException:
        descriptors.unreserve(fd)
        raise
    return fd


def _create(driver: SocketDriver, family: int, kind: int, proto: int) -> Any:
    try:
        return driver.create(family, kind, proto)
    except _EXPECTED:
        raise
    except Exception as exc:
        raise DriverFailure(driver.name, "create", exc) from exc


def socketpair(family: int, type: int, proto: int = 0, *, visible: bool = True,
               driver: SocketDriver | None = None) -> tuple[int, int]:
    """socketpair(2): two connected sockets, on the two lowest free numbers.
    ``visible`` as for ``socket``; ``driver`` makes the pair with that driver instead
    of the family's registered one (the drop-in asks for kernel pairs this way)."""
    family = _c_int(family)
    kind, nonblocking, cloexec = _check_type(type)
    proto = _c_int(proto)
    driver = _driver(family) if driver is None else registry.layered(driver)
    if driver.kernel_sockets:
        return _kernel_socketpair(driver, family, kind, proto, nonblocking, cloexec)
    fd1 = descriptors.reserve(cloexec)
    try:
        fd2 = descriptors.reserve(cloexec)
    except BaseException:
        descriptors.unreserve(fd1)
        raise
    opened: list[int] = []
    try:
        first, second = _driver_socketpair(driver, family, kind, proto)
        try:
            _open(driver, first, fd1, family, kind, proto, nonblocking, visible=False)
        except BaseException:
            _discard(driver, second)
            raise
        opened.append(fd1)
        _open(driver, second, fd2, family, kind, proto, nonblocking, visible=False)
        opened.append(fd2)
        if visible:
            descriptors.expose(_files[fd1])
            descriptors.expose(_files[fd2])
    except BaseException:
        for fd in (fd1, fd2):
            if fd in opened:
                close(fd)
            else:
                descriptors.unreserve(fd)
        raise
    return fd1, fd2


def _driver_socketpair(driver: SocketDriver, family: int, kind: int,
                       proto: int) -> tuple[Any, Any]:
    """The driver's pair; a driver's bug (not an OSError) is a DriverFailure."""
    try:
        return driver.socketpair(family, kind, proto)
    except _EXPECTED:
        raise
    except Exception as exc:
        raise DriverFailure(driver.name, "socketpair", exc) from exc


def _kernel_socketpair(driver: SocketDriver, family: int, kind: int, proto: int,
                       nonblocking: bool, cloexec: bool) -> tuple[int, int]:
    """socketpair(2) of kernel sockets: the kernel's call takes both numbers."""
    first, second = _driver_socketpair(driver, family, kind, proto)
    try:
        fd1 = _open(driver, first, None, family, kind, proto, nonblocking, False, cloexec)
    except BaseException:
        _discard(driver, second)
        raise
    try:
        fd2 = _open(driver, second, None, family, kind, proto, nonblocking, False, cloexec)
    except BaseException:
        close(fd1)
        raise
    return fd1, fd2


def accept4(fd: int, flags: int, *, visible: bool = True) -> tuple[int, Any]:
    """accept4(2): flags may be SOCK_NONBLOCK | SOCK_CLOEXEC, anything else is EINVAL.

    The new number is taken before waiting, as Linux does: without one (EMFILE) the
    connection stays queued (on a kernel socket, the kernel's accept4() does both).
    ``visible`` as for ``socket``.
    """
    if not (flags.__class__ is int and 0 <= flags < _C_INT_LIMIT):
        flags = _c_int(flags)
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise oserror(errno.EINVAL)
    f = _get(fd)
    driver = f.driver
    if f.kernel is not None:  # the kernel's accept4() takes the number (or says EMFILE)
        try:
            sock, addr = driver.accept(f.sock, flags)
        except _EXPECTED:
            raise
        except Exception as exc:
            raise _failure(f, "accept", exc) from exc
        return _open(driver, sock, None, f.family, f.type, f.proto,
                     bool(flags & SOCK_NONBLOCK), visible, bool(flags & SOCK_CLOEXEC)), addr
    new = descriptors.reserve(bool(flags & SOCK_CLOEXEC))
    try:
        try:
            if f.nonblocking:
                sock, addr = driver.accept(f.sock, flags)
            else:
                sock, addr = driver.accept_blocking(f.sock, flags)
        except BlockingIOError:
            if f.nonblocking:
                raise
            sock, addr = _retry(f, POLLIN, f.rcvtimeo, "accept",
                                lambda: driver.accept_blocking(f.sock, flags))
        except _EXPECTED:
            raise
        except Exception as exc:
            raise _failure(f, "accept", exc) from exc
        _open(driver, sock, new, f.family, f.type, f.proto, bool(flags & SOCK_NONBLOCK),
              visible, bool(flags & SOCK_CLOEXEC))
        if (f.rcvtimeo is not None or f.sndtimeo is not None) and \
                driver.accept_inherits_timeouts:
            child = _files[new]
            child.rcvtimeo, child.sndtimeo = f.rcvtimeo, f.sndtimeo
    except BaseException:
        descriptors.unreserve(new)
        raise
    return new, addr


def accept(fd: int, *, visible: bool = True) -> tuple[int, Any]:
    """accept(2)."""
    return accept4(fd, 0, visible=visible)


def make_visible(fd: int) -> None:
    """Show a virtual socket's readiness to the kernel's pollers on all its numbers,
    from now on (a no-op for kernel sockets and for numbers already visible), or as
    soon as such pollers may exist: see ``descriptors.expose``."""
    descriptors.expose(_get(fd))


# -- addressing and state ----------------------------------------------------------------

def bind(fd: int, addr: Any) -> None:
    _call(_get(fd), "bind", addr)


def listen(fd: int, backlog: int) -> None:
    _call(_get(fd), "listen", _c_int(backlog))


def connect(fd: int, addr: Any) -> None:
    """connect(2).  Blocking connects on virtual sockets wait for the driver's verdict.

    A blocking socket asks the driver's ``connect_blocking``, which returns at once
    when the handshake ended inside the call (the virtual network's listener with
    room).  Otherwise the driver's EINPROGRESS is followed by a look at the socket's
    readiness (already writable: no wait is set up) and the second connect that
    collects the outcome.
    """
    f = _files.get(fd)
    if f is None or fd.__class__ is not int:
        f = _foreign(fd)
    if f.kernel is not None:
        if f.kernel != fd:
            descriptors.point_at(f, fd)
        return _call(f, "connect", addr)
    driver = f.driver
    try:
        if f.nonblocking:
            driver.connect(f.sock, addr)
        else:
            driver.connect_blocking(f.sock, addr)
        return
    except BlockingIOError as exc:
        if f.nonblocking:
            raise
        pending = exc.errno
    except _EXPECTED:
        raise
    except Exception as exc:
        raise _failure(f, "connect", exc) from exc
    if pending == errno.EINPROGRESS and not f.closed and (
            f.revents() & (POLLOUT | POLLERR | POLLHUP)):
        try:
            driver.connect(f.sock, addr)
            return
        except BlockingIOError as exc:
            if exc.errno != errno.EALREADY:
                raise
        except _EXPECTED:
            raise
        except Exception as exc:
            raise _failure(f, "connect", exc) from exc
    with _Using(f):
        return _connect_wait(f, addr, pending)


def _connect_wait(f: OpenSocket, addr: Any, pending: int) -> None:
    """A blocking connect the driver has not answered yet: a full backlog (EAGAIN) or
    a handshake under way (EINPROGRESS, EALREADY).  The caller holds ``f``."""
    deadline = _deadline(f.sndtimeo)
    pause = _BACKLOG_PAUSE
    while pending not in (errno.EINPROGRESS, errno.EALREADY):
        # A full backlog (EAGAIN).  Room appears on the listener, which only the driver
        # can name, and an unconnected socket is already writable, so no readiness of
        # ``f`` tells when to try again: back off instead of spinning.  Signals
        # interrupt the nap, SO_SNDTIMEO ends it with EAGAIN.
        remaining = _remaining(deadline)
        if remaining is not None and remaining <= 0:
            raise oserror(errno.EAGAIN)
        readiness.wait((f.watch,), lambda: False,
                       pause if remaining is None else min(pause, remaining))
        pause = min(pause * 2, _BACKLOG_PAUSE_MAX)
        try:
            _call(f, "connect", addr)
            return
        except BlockingIOError as exc:
            if f.nonblocking:
                raise
            pending = exc.errno
    while True:  # as inet_stream_connect after its wait: connect again collects the outcome
        if not _wait(f, POLLOUT, _remaining(deadline)):
            raise oserror(pending)
        try:
            _call(f, "connect", addr)
            return
        except BlockingIOError as exc:
            if exc.errno != errno.EALREADY:
                raise


_BACKLOG_PAUSE = 0.001  # seconds: first retry of a connect into a full backlog
_BACKLOG_PAUSE_MAX = 0.02


def shutdown(fd: int, how: int) -> None:
    f = _get(fd)  # Linux looks the descriptor up first: EBADF/ENOTSOCK before EINVAL
    how = _c_int(how)
    if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
        raise oserror(errno.EINVAL)
    _call(f, "shutdown", how)


def getsockname(fd: int) -> Any:
    return _call(_get(fd), "getsockname")


def getpeername(fd: int) -> Any:
    return _call(_get(fd), "getpeername")


def getsockopt(fd: int, level: int, optname: int, buflen: int = 0) -> int | bytes:
    """getsockopt(2): an int when ``buflen`` is 0, else at most ``buflen`` bytes."""
    f = _get(fd)
    level, optname, buflen = _c_int(level), _c_int(optname), _c_int(buflen)
    if buflen and not 0 < buflen <= 1024:
        raise OSError("getsockopt buflen out of range")
    if f.kernel is None and options.answers(level, optname):
        if optname == options.SO_PROTOCOL and not f.proto:
            # proto 0 means "the family's default", which only the driver can name
            # (Linux's TCP says 6); a driver that does not answer gets the 0 it was given.
            try:
                return _call(f, "getsockopt", level, optname, buflen)
            except OSError:
                pass
        return options.get(f, optname, buflen)
    return _call(f, "getsockopt", level, optname, buflen)


def setsockopt(fd: int, level: int, optname: int, value: int | bytes | None,
               optlen: int | None = None) -> None:
    """setsockopt(2): ``value`` is an int or a bytes-like object; or None with
    ``optlen``, the stdlib's four-argument form, which passes a NULL option pointer
    claiming ``optlen`` bytes (the driver sees a ``NullBuffer``; see there)."""
    if optlen is not None:
        level, optname, value = _null_option(level, optname, value, optlen)
    f = _get(fd)
    if optlen is None:
        level, optname = _c_int(level), _c_int(optname)
        if isinstance(value, int):
            try:
                value = _c_int(value)
            except OverflowError:
                raise TypeError("a bytes-like object is required, not 'int'") from None
        else:
            _buffer(value)
            value = bytes(value)
    if f.kernel is None and level == options.SOL_SOCKET:
        options.check_socket_level(optname, value)
        if options.answers(level, optname):
            options.set(f, optname, value)
            return
    _call(f, "setsockopt", level, optname, value)


def _null_option(level: object, optname: object, value: object,
                 optlen: object) -> tuple[int, int, bytes | NullBuffer]:
    """The four-argument form's arguments, converted as the stdlib does: ``optlen`` is a
    C unsigned int taken without overflow checking, and any argument the form cannot
    take makes the stdlib fall back to the three-argument form, which then has one too
    many.  A length past 2**31 is a negative socklen_t: EINVAL, as __sys_setsockopt
    answers before it looks at the descriptor."""
    try:
        if value is not None:
            raise TypeError
        level, optname = _c_int(level), _c_int(optname)
        length = operator.index(optlen) & 0xFFFFFFFF
    except (TypeError, OverflowError):
        raise TypeError("setsockopt() takes exactly 3 arguments (4 given)") from None
    if length >= 2**31:
        raise oserror(errno.EINVAL)
    return level, optname, NullBuffer(length) if length else b""


# -- data --------------------------------------------------------------------------------

def send(fd: int, data: bytes, flags: int = 0) -> int:
    """send(2)."""
    try:
        f = _files[fd]  # the hot path: one subscript, then one driver call
    except (KeyError, TypeError):
        f = _foreign(fd)
    if fd.__class__ is not int:  # 5.0 == 5: only real ints name descriptors
        f = _foreign(fd)
    if f.kernel is not None:  # the kernel's call: see _call on what escapes it
        try:
            return f.send(f.sock, data, flags)
        except OSError as exc:
            if f.kernel == fd or exc.errno not in _NOT_THIS_SOCKET:
                raise
        descriptors.point_at(f, fd)  # see _NOT_THIS_SOCKET
        return f.send(f.sock, data, flags)
    # A virtual socket.  The common case, everything accepted at once, makes one
    # driver call and nothing else.
    if type(data) is bytes:
        size = len(data)
    else:
        _buffer(data)
        size = memoryview(data).nbytes
    if type(flags) is not int or not 0 <= flags < 2**31:
        flags = _c_int(flags)
    sent = 0
    try:
        sent = f.send(f.sock, data, flags)
        if sent >= size or f.nonblocking or flags & MSG_DONTWAIT or f.type != SOCK_STREAM:
            return sent
    except BlockingIOError:
        if f.nonblocking or flags & MSG_DONTWAIT:
            raise
    except _EXPECTED:
        raise
    except Exception as exc:
        raise _failure(f, "send", exc) from exc
    return _send_rest(f, data, flags, size, sent)


# send and recv on a kernel socket go through its driver object wherever it is, and
# put it on their own number (as _get does for every other call) only when the
# object's number turns out not to name the socket any more (closed behind the layer's
# back, or by another thread meanwhile): nothing was done, so the call is made again.
# The check costs the call that works nothing.  A number closed behind the layer's
# back and reused meanwhile for another socket made outside the layer is the one case
# it cannot see.
_NOT_THIS_SOCKET = (errno.EBADF, errno.ENOTSOCK)


def _send_rest(f: OpenSocket, data: bytes, flags: int, size: int, sent: int) -> int:
    """A blocking send the driver took only part of (or none): wait and go on.  Apart
    from send() because its closure would slow every send down."""
    op = f.send
    return _transmit(f, "send", flags, size,
                     lambda sent: op(f.sock, memoryview(data)[sent:] if sent else data, flags),
                     sent)


def _no_address(family: int) -> TypeError:
    """The stdlib's error for sendto(data, None): None is the ops' "no address"."""
    if family in (_socket.AF_INET, _socket.AF_INET6):
        name = "AF_INET" if family == _socket.AF_INET else "AF_INET6"
        return TypeError(f"sendto(): {name} address must be tuple, not NoneType")
    return TypeError("a bytes-like object is required, not 'NoneType'")


def sendto(fd: int, data: bytes, flags: int, addr: Any) -> int:
    """sendto(2)."""
    f = _get(fd)
    if addr is None:  # after the checks the stdlib makes first
        _buffer(data)
        _c_int(flags)
        raise _no_address(f.family)
    if f.kernel is not None:
        return _call(f, "sendto", data, flags, addr)
    _buffer(data)
    flags = _c_int(flags)
    op = f.driver.sendto
    return _transmit(f, "sendto", flags, len(memoryview(data)),
                     lambda sent: op(f.sock, memoryview(data)[sent:] if sent else data,
                                     flags, addr))


def sendmsg(fd: int, buffers: Iterable[bytes], ancdata: Iterable[Any] = (), flags: int = 0,
            addr: Any = None) -> int:
    """sendmsg(2): scatter ``buffers``, with ancillary ``(level, type, data)`` items."""
    f = _get(fd)
    if f.kernel is not None:
        return _call(f, "sendmsg", buffers, ancdata, flags, addr)
    buffers = _buffers(buffers)
    ancdata = _ancdata(ancdata)
    flags = _c_int(flags)
    op = f.driver.sendmsg
    size = sum(len(memoryview(b)) for b in buffers)
    ancdata, refs = _rights_in_flight(ancdata)

    def attempt(sent: int) -> int:
        if not sent:
            return op(f.sock, buffers, ancdata, flags, addr)
        rest = memoryview(b"".join(buffers))[sent:]
        return op(f.sock, [rest], [], flags, addr)

    if not refs:
        return _transmit(f, "sendmsg", flags, size, attempt)
    try:  # once the driver accepted the message, the references are the driver's
        return _transmit(f, "sendmsg", flags, size, attempt)
    except BaseException:
        for ref in refs:
            ref.close()
        raise


_SCM_MAX_FD = 253  # Linux's limit of descriptors in one message


def _rights_in_flight(ancdata: list) -> tuple[list, list]:
    """SCM_RIGHTS items become one ``(SOL_SOCKET, SCM_RIGHTS, [InFlight, ...])`` item
    (several are merged, as Linux merges them; an empty one is dropped), so that the
    driver carries open descriptions, not numbers.  EBADF for a number not open;
    EINVAL past 253 descriptors."""
    if not any(level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
               for level, kind, _data in ancdata):
        return ancdata, []
    numbers: list[int] = []
    items: list = []
    slot = -1
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            count = len(data) // _INT_SIZE
            if not count:
                continue
            numbers += struct.unpack(f"@{count}i", data[:count * _INT_SIZE])
            if len(numbers) > _SCM_MAX_FD:
                raise oserror(errno.EINVAL)
            if slot < 0:
                slot = len(items)
                items.append(None)
        else:
            items.append((level, kind, data))
    refs: list = []
    try:
        for number in numbers:
            refs.append(inflight.send(number))
    except BaseException:
        for ref in refs:
            ref.close()
        raise
    if slot >= 0:
        items[slot] = (_socket.SOL_SOCKET, _socket.SCM_RIGHTS, refs)
    return items, refs


def _buffers(buffers: object) -> list:
    try:
        items = list(buffers)
    except TypeError:
        raise TypeError("sendmsg() argument 1 must be an iterable") from None
    for item in items:
        _buffer(item)
    return items


def _ancdata(ancdata: object) -> list[tuple[int, int, bytes]]:
    try:
        items = list(ancdata)
    except TypeError:
        raise TypeError("sendmsg() argument 2 must be an iterable") from None
    checked = []
    where = "[sendmsg() ancillary data items]() argument"
    for item in items:
        try:
            parts = tuple(item)
        except TypeError:
            raise TypeError(f"{where} must be 3-item sequence, not "
                            f"{type(item).__name__}") from None
        if len(parts) != 3:
            raise TypeError(f"{where} must be sequence of length 3, not {len(parts)}")
        level, kind, data = parts
        _buffer(data)
        checked.append((_c_int(level), _c_int(kind), bytes(data)))
    return checked


def write(fd: int, data: bytes) -> int:
    """write(2) on any descriptor."""
    f = _files.get(fd)
    if f is None or type(fd) is not int:
        return os.write(fd, data)
    if f.kernel is not None:
        return _call(_get(fd), "write", data)
    _buffer(data)
    op = f.driver.write
    return _transmit(f, "write", 0, len(memoryview(data)),
                     lambda sent: op(f.sock, memoryview(data)[sent:] if sent else data))


def recv(fd: int, bufsize: int, flags: int = 0) -> bytes:
    """recv(2)."""
    try:
        f = _files[fd]  # the hot path: one subscript, then one driver call
    except (KeyError, TypeError):
        f = _foreign(fd)
    if fd.__class__ is not int:  # 5.0 == 5: only real ints name descriptors
        f = _foreign(fd)
    if f.kernel is not None:  # the kernel's call: see _call on what escapes it
        try:
            return f.recv(f.sock, bufsize, flags)
        except OSError as exc:
            if f.kernel == fd or exc.errno not in _NOT_THIS_SOCKET:
                raise
        descriptors.point_at(f, fd)  # see _NOT_THIS_SOCKET
        return f.recv(f.sock, bufsize, flags)
    # A virtual socket.  The common case, data already there, makes one driver call
    # and nothing else.
    if type(bufsize) is not int or not 0 <= bufsize < 2**63:
        bufsize = _size(bufsize, "negative buffersize in recv")
    if type(flags) is not int or not 0 <= flags < 2**31:
        flags = _c_int(flags)
    if f.nonblocking:
        flags |= MSG_DONTWAIT  # ops learn "must not wait" as Linux's do, from the file
    if not flags & MSG_WAITALL:
        try:
            return f.recv(f.sock, bufsize, flags)
        except BlockingIOError:
            if f.nonblocking or flags & MSG_DONTWAIT:
                raise
        except _EXPECTED:
            raise
        except Exception as exc:
            raise _failure(f, "recv", exc) from exc
    return _recv_rest(f, bufsize, flags)


def _recv_rest(f: OpenSocket, bufsize: int, flags: int) -> bytes:
    """A blocking receive with nothing there yet, or MSG_WAITALL: wait and gather.
    Apart from recv() because its closure would slow every receive down."""
    op = f.recv
    return _receive(f, "recv", flags, bufsize, lambda size: op(f.sock, size, flags))


def recvfrom(fd: int, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
    """recvfrom(2): ``(data, address)``."""
    f = _get(fd)
    if f.kernel is not None:
        return _call(f, "recvfrom", bufsize, flags)
    bufsize = _size(bufsize, "negative buffersize in recvfrom")
    flags = _c_int(flags)
    if f.nonblocking:
        flags |= MSG_DONTWAIT
    op = f.driver.recvfrom
    return _receive(f, "recvfrom", flags, bufsize, lambda size: op(f.sock, size, flags))


def recvmsg(fd: int, bufsize: int, ancbufsize: int = 0,
            flags: int = 0) -> tuple[bytes, list, int, Any]:
    """recvmsg(2): ``(data, ancdata, msg_flags, address)``."""
    f = _get(fd)
    if f.kernel is not None:
        return _call(f, "recvmsg", bufsize, ancbufsize, flags)
    bufsize = _size(bufsize, "negative buffer size in recvmsg()")
    ancbufsize = _size(ancbufsize, "invalid ancillary data buffer length")
    if ancbufsize > _SOCKLEN_T_LIMIT:
        raise ValueError("invalid ancillary data buffer length")
    flags = _c_int(flags)
    if f.nonblocking:
        flags |= MSG_DONTWAIT
    op = f.driver.recvmsg
    pieces: list = []

    def attempt(size: int) -> Any:
        if pieces and pieces[-1][1]:
            # MSG_WAITALL: a read that brought ancillary data ends there, as on Linux
            raise OSError(errno.EAGAIN, "ancillary data ends the read")
        piece = op(f.sock, size, ancbufsize, flags)
        pieces.append(piece)
        return piece

    data, ancdata, msg_flags, addr = _receive(f, "recvmsg", flags, bufsize, attempt)
    if len(pieces) > 1:
        ancdata = [item for piece in pieces for item in piece[1]]
        for piece in pieces:
            msg_flags |= piece[2]
    if ancdata:
        ancdata, truncated = _rights_received(ancdata, bool(flags & _MSG_CMSG_CLOEXEC))
        if truncated:
            msg_flags |= _socket.MSG_CTRUNC
    return data, ancdata, msg_flags | flags & _MSG_CMSG_CLOEXEC, addr  # Linux echoes it


_MSG_CMSG_CLOEXEC = getattr(_socket, "MSG_CMSG_CLOEXEC", 0x40000000)
_INT_SIZE = struct.calcsize("@i")


def _rights_received(ancdata: list, cloexec: bool) -> tuple[list, bool]:
    """Install the descriptors of SCM_RIGHTS items the driver returned (lists of
    ``InFlight`` references) as new numbers, packed as the kernel packs them."""
    items = []
    truncated = False
    for index, (level, kind, data) in enumerate(ancdata):
        if not isinstance(data, list):
            items.append((level, kind, data))
            continue
        if truncated:
            for ref in data:
                ref.close()
            continue
        try:
            numbers, truncated = inflight.install(data, cloexec)
        except BaseException:
            for _level, _kind, rest in ancdata[index + 1:]:
                for ref in rest if isinstance(rest, list) else ():
                    ref.close()
            raise
        if numbers:
            items.append((level, kind, struct.pack(f"@{len(numbers)}i", *numbers)))
    return items, truncated


def read(fd: int, n: int) -> bytes:
    """read(2) on any descriptor."""
    f = _files.get(fd)
    if f is None or type(fd) is not int:
        return os.read(fd, n)
    if f.kernel is not None:
        return _call(_get(fd), "read", n)
    n = operator.index(n)
    if not -(2**63) <= n < 2**63:
        raise OverflowError("Python int too large to convert to C ssize_t")
    if n < 0:
        raise oserror(errno.EINVAL)
    op = f.driver.read
    return _receive(f, "read", 0, n, lambda size: op(f.sock, size))



# Per call, as Linux caps one sendfile(2) at 0x7ffff000 bytes; callers loop anyway.
_SENDFILE_CHUNK = 1 << 20


def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
    """sendfile(2), as ``os.sendfile``: ``count`` bytes of the file ``in_fd`` from
    ``offset`` (None: its position, which then moves) to the socket ``out_fd``.

    A virtual socket's number names no kernel file that could take the bytes, so for
    it the file is read and the data sent through the driver, with send's blocking
    and O_NONBLOCK; every other ``out_fd`` is the kernel's call.
    """
    f = _files.get(out_fd) if type(out_fd) is int else None
    if f is None or f.kernel is not None:
        return os.sendfile(out_fd, in_fd, offset, count)
    count = operator.index(count)
    if not -(2**63) <= count < 2**63:
        raise OverflowError("Python int too large to convert to C ssize_t")
    if offset is not None:
        offset = operator.index(offset)
    mode = os.fstat(in_fd).st_mode  # EBADF for a closed number
    if not stat.S_ISREG(mode) and not stat.S_ISBLK(mode):
        raise oserror(errno.EINVAL)  # Linux reads only from mmap-able files
    if count < 0 or (offset is not None and offset < 0):
        raise oserror(errno.EINVAL)
    position = os.lseek(in_fd, 0, os.SEEK_CUR) if offset is None else offset
    data = os.pread(in_fd, min(count, _SENDFILE_CHUNK), position)
    if not data:
        return 0
    sent = send(out_fd, data)
    if offset is None:
        os.lseek(in_fd, position + sent, os.SEEK_SET)
    return sent

# -- descriptors -------------------------------------------------------------------------

def close(fd: int) -> None:
    """close(2) on any descriptor; the driver's close runs with the last reference."""
    if type(fd) is not int:
        fd = _c_int(fd)
    if not descriptors.close(fd):
        os.close(fd)


def dup(fd: int) -> int:
    """dup(2): the lowest free number, sharing the open description; not close-on-exec."""
    if _c_int(fd) < 0:
        raise oserror(errno.EBADF)  # as os.dup (fcntl.fcntl says ValueError instead)
    return _dupfd(fd, 0, cloexec=False)


def _dupfd(fd: int, lowest: int, cloexec: bool) -> int:
    fd = _c_int(fd)
    f = _files.get(fd)
    if f is None:
        cmd = _fcntl.F_DUPFD_CLOEXEC if cloexec else _fcntl.F_DUPFD
        return _fcntl.fcntl(fd, cmd, lowest)
    return descriptors.dup(fd, f, lowest, cloexec)


def dup2(fd: int, fd2: int) -> int:
    """dup2(2): ``fd2`` now names ``fd``'s description (closing what it named)."""
    fd, fd2 = _c_int(fd), _c_int(fd2)
    if fd == fd2:
        os.fstat(fd)  # EBADF if not open; otherwise a no-op, as in POSIX
        return fd2
    return descriptors.dup2(fd, fd2, inheritable=True)


def fcntl(fd: int, cmd: int, arg: int | bytes = 0) -> int | bytes:
    """fcntl(2).  O_NONBLOCK lives in the open description; FD_CLOEXEC in the number."""
    fd, cmd = _c_int(fd), _c_int(cmd)
    f = _files.get(fd)
    if cmd in (_fcntl.F_DUPFD, _fcntl.F_DUPFD_CLOEXEC):
        return _dupfd(fd, _c_int(arg), cloexec=cmd == _fcntl.F_DUPFD_CLOEXEC)
    if f is None or f.kernel is not None or cmd not in (_fcntl.F_GETFL, _fcntl.F_SETFL):
        return _fcntl.fcntl(fd, cmd, arg)
    if cmd == _fcntl.F_GETFL:
        return os.O_RDWR | (os.O_NONBLOCK if f.nonblocking else 0)
    descriptors.set_nonblocking(f, bool(_c_int(arg) & os.O_NONBLOCK))
    return 0


def ioctl(fd: int, request: int, arg: int | bytes = 0) -> int | bytes:
    """ioctl(2).  FIONBIO is the file's (the layer's); the rest go to the driver."""
    fd, request = _c_int(fd), operator.index(request) & 0xFFFFFFFF
    f = _files.get(fd)
    if f is None:
        return _fcntl.ioctl(fd, request, arg)
    if f.kernel is None and request == FIONBIO:
        if isinstance(arg, int):
            raise oserror(errno.EFAULT)  # the kernel reads an int *pointer*
        _buffer(arg)
        descriptors.set_nonblocking(
            f, bool(struct.unpack("@i", bytes(arg)[:4].ljust(4, b"\0"))[0]))
        return bytes(arg)
    return _call(_get(fd), "ioctl", request, arg)


# -- readiness ---------------------------------------------------------------------------

def _poll_entries(fds: Iterable[Any]) -> list[tuple[int, int]]:
    entries = []
    for item in fds:
        try:
            fd, events = item
        except (TypeError, ValueError):
            raise TypeError("poll() entries must be (fd, events) pairs") from None
        fd = fd if isinstance(fd, int) else _fileno(fd)
        if not isinstance(events, int):  # as select.poll's unsigned short converter
            raise TypeError("an integer is required")
        if events < 0:
            raise ValueError("value must be positive")
        if events > 0xFFFF:
            raise OverflowError("Python int too large for C unsigned short")
        entries.append((fd, events))
    return entries


def _scan(entries: Sequence[tuple[int, int]], timeout: float | None,
          vanished: int = POLLNVAL) -> list[int]:
    """Wait until some entry is ready; return every entry's revents.

    Virtual sockets are asked directly and wake the waiter through their Watch;
    everything else (kernel sockets, pipes, closed numbers) is left to the kernel's
    poll, with the waiter's eventfd in the set so a virtual event interrupts it.

    As Linux's poll keeps a reference to each file it waits on, a virtual socket
    whose numbers are closed by another thread during the wait stays open and does
    not end it; the next look (an event on it or another entry, or the timeout)
    reports it as ``vanished`` (poll: POLLNVAL; select: the ready bits Linux gives a
    descriptor that has no file any more), limited to the events asked for.
    """
    revents = [0] * len(entries)
    virtual: list[tuple[int, OpenSocket]] = []
    kernel: dict[int, int] = {}
    for index, (fd, events) in enumerate(entries):
        if fd < 0:
            continue
        f = _files.get(fd)
        if f is not None and f.kernel is None:
            virtual.append((index, f))
        else:
            kernel[fd] = kernel.get(fd, 0) | events
    kernel_ready: dict[int, int] = {}
    waited = False
    closed_before: set[int] = set()

    def scan_virtual() -> bool:
        found = False
        for index, f in virtual:
            bits = vanished & (entries[index][1] | POLLNVAL) if f.closed else (
                f.revents() & (entries[index][1] | POLLERR | POLLHUP))
            revents[index] = bits
            found = found or bool(bits)
        return found

    def poll_kernel(wake_fd: int, timeout_ms: int) -> bool:
        poller = _KERNEL_POLL()
        for fd, events in kernel.items():
            poller.register(fd, events)
        if wake_fd >= 0:
            poller.register(wake_fd, POLLIN)
        kernel_ready.clear()
        kernel_ready.update(poller.poll(timeout_ms))
        kernel_ready.pop(wake_fd, None)
        return bool(kernel_ready)

    if not virtual and (timeout is None or timeout <= 0 or _clock.current is _clock.REAL):
        poll_kernel(-1, -1 if timeout is None else _ms(timeout))
    elif not virtual:  # a virtual clock's deadline ends the wait through a wake-up
        if not poll_kernel(-1, 0):
            readiness.wait((), _never, timeout, poll_kernel)
    else:
        found = scan_virtual()
        if kernel:
            found = poll_kernel(-1, 0) or found
            closed_before = {fd for fd, bits in kernel_ready.items() if bits & POLLNVAL}
        if not found and (timeout is None or timeout > 0):
            waited = True
            held = []
            try:
                for _, f in virtual:
                    try:
                        descriptors.hold(f)
                    except ValueError:  # released just now: scan_virtual says closed
                        continue
                    held.append(f)
                readiness.wait([f.watch for _, f in virtual], scan_virtual, timeout,
                               poll_kernel if kernel else None)
                scan_virtual()
                if kernel:
                    poll_kernel(-1, 0)
            finally:
                for f in held:
                    descriptors.drop(f)
    for index, (fd, events) in enumerate(entries):
        if fd in kernel_ready and (fd in kernel):
            f = _files.get(fd)
            if f is None or f.kernel is not None:
                bits = kernel_ready[fd]
                if bits & POLLNVAL and waited and fd not in closed_before:
                    bits = vanished  # a kernel descriptor closed during the wait
                revents[index] = bits & (events | POLLERR | POLLHUP | POLLNVAL)
    return revents


def _ms(seconds: float) -> int:
    # poll(2) takes a C int; longer waits are cut to ~24 days (select(2) allows more).
    return min(max(0, int(seconds * 1000 + 0.999)), 2**31 - 1)


def _stdlib_overflow_text(value: float) -> str:
    """What the running interpreter says for a timeout no C timestamp holds: the text
    differs between Python versions and between floats and ints.  Asked of a poll
    object, which raises while converting the timeout, before any system call."""
    try:
        _select.poll().poll(value)
    except OverflowError as exc:
        return str(exc)
    raise AssertionError(f"poll({value!r}) did not overflow")


# Read at import, before patch() can replace select.poll.
_FLOAT_OVERFLOW = _stdlib_overflow_text(1e300)
_INT_OVERFLOW = _stdlib_overflow_text(2**70)


def _check_timeout(value: int | float, scale: int) -> None:
    """The stdlib's errors for a timeout of ``value`` * 10**-``scale`` seconds that no
    C timeout holds (NaN, infinities, beyond 2**63 nanoseconds)."""
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("Invalid value NaN (not a number)")
        if not abs(value) * 10 ** (9 - scale) < 2**63:
            raise OverflowError(_FLOAT_OVERFLOW)
    elif not abs(value) * 10 ** (9 - scale) < 2**63:
        raise OverflowError(_INT_OVERFLOW)


def poll(fds: Iterable[tuple[int, int]], timeout_ms: float | None = -1) -> list[tuple[int, int]]:
    """poll(2) over any mix of layer and plain descriptors.

    Returns ``[(fd, revents)]`` for the entries with events, in order.  A negative
    ``fd`` is ignored and a closed one reports POLLNVAL, as the kernel does.
    """
    if _observer is not None and _observer.outside():  # a trace writes its line
        return _observer.poll(poll, fds, timeout_ms)
    entries = _poll_entries(fds)
    if timeout_ms is None:
        timeout = None
    else:
        if not isinstance(timeout_ms, (int, float)):
            raise TypeError("timeout must be an integer or None")
        _check_timeout(timeout_ms, 3)
        if not -(2**31) <= math.ceil(timeout_ms) < 2**31:
            raise OverflowError("timeout is too large")
        timeout = None if timeout_ms < 0 else timeout_ms / 1000
    revents = _scan(entries, timeout)
    return [(fd, bits) for (fd, _), bits in zip(entries, revents, strict=True) if bits]


_READ_SET = POLLIN | POLLHUP | POLLERR
# What Linux's select finds for a descriptor closed while it waited (no file: the
# kernel's DEFAULT_POLLMASK): readable and writable, if asked.
_SELECT_VANISHED = POLLIN | POLLOUT
_WRITE_SET = POLLOUT | POLLERR


def select(rlist: Iterable[Any], wlist: Iterable[Any], xlist: Iterable[Any],
           timeout: float | None = None) -> tuple[list, list, list]:
    """select(2) over any mix of layer and plain descriptors, as ``select.select``."""
    if _observer is not None and _observer.outside():  # a trace writes its line
        return _observer.select(select, rlist, wlist, xlist, timeout)
    if timeout is not None:
        if not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be a float or None")
        _check_timeout(timeout, 0)
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    try:
        groups = [list(rlist), list(wlist), list(xlist)]
    except TypeError:
        raise TypeError("arguments 1-3 must be sequences") from None
    wanted = (POLLIN, POLLOUT, POLLPRI)
    entries = []
    virtual = False
    for objs, events in zip(groups, wanted, strict=True):
        for obj in objs:
            fd = _fileno(obj)
            if fd >= FD_SETSIZE:
                raise ValueError("filedescriptor out of range in select()")
            entries.append((fd, events))
            f = _files.get(fd)
            virtual = virtual or (f is not None and f.kernel is None)
    if not virtual:
        return _kernel_select(groups, entries, timeout)
    revents = _scan(entries, timeout, _SELECT_VANISHED)
    if any(bits & POLLNVAL for bits in revents):
        raise oserror(errno.EBADF)
    ready: tuple[list, list, list] = ([], [], [])
    sets = (_READ_SET, _WRITE_SET, POLLPRI)
    index = 0
    for group, objs in enumerate(groups):
        for obj in objs:
            if revents[index] & sets[group]:
                ready[group].append(obj)
            index += 1
    return ready


def _kernel_select(groups: list[list], entries: list[tuple[int, int]],
                   timeout: float | None) -> tuple[list, list, list]:
    """Only kernel descriptors: the kernel's own select, which alone can tell a number
    closed before the call (EBADF) from one closed by another thread during the wait
    (reported ready, as the kernel does for a descriptor with no file)."""
    numbers: list[list[int]] = [[], [], []]
    index = 0
    for group, objs in enumerate(groups):
        for _obj in objs:
            numbers[group].append(entries[index][0])
            index += 1
    found = _KERNEL_SELECT(*numbers, 0 if _clock.current is not _clock.REAL else timeout)
    if not any(found) and _clock.current is not _clock.REAL and (
            timeout is None or timeout > 0):
        def select_kernel(wake_fd: int, timeout_ms: int) -> bool:
            nonlocal found
            readable = numbers[0] + [wake_fd] if wake_fd >= 0 else numbers[0]
            found = _KERNEL_SELECT(readable, numbers[1], numbers[2],
                                   None if timeout_ms < 0 else timeout_ms / 1000)
            found = ([fd for fd in found[0] if fd != wake_fd], found[1], found[2])
            return any(found)
        readiness.wait((), _never, timeout, select_kernel)
    return tuple([obj for obj, fd in zip(objs, group_numbers, strict=True) if fd in ready]
                 for objs, group_numbers, ready in zip(
                     groups, numbers, map(set, found), strict=True))  # type: ignore[return-value]


def observe(observer: Any) -> Any:
    """Make ``observer`` (or None) the one told of new numbers, ended waits and
    polls; returns the previous one.  What it answers: see ``tracing._Observer``.

    poll, select and epoll hand themselves to it and it calls them back; its
    ``outside()`` is False for that inner call.  So with no observer a wait pays
    one global's test and no extra call."""
    global _observer
    previous, _observer = _observer, observer
    return previous
