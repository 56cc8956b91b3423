"""The descriptor table: which open socket description a process descriptor number names.

Every socket descriptor is a real descriptor of the process, allocated by the kernel, so
numbers never collide with pipes, files or sockets made elsewhere, lowest-free-number
and EMFILE come from the kernel, and ``os.fstat`` works.  What the number points at:

* a kernel socket (host driver): the kernel socket itself.  The kernel's socket(),
  accept4() and socketpair() pick its number, and the driver's socket object works on
  that number, so a socket costs one descriptor, as on Linux (EMFILE at the kernel's
  count; an accept needs one free number).  dup, dup2, F_DUPFD and SCM_RIGHTS give
  more numbers of the same open file.  When the number the driver's object is on
  goes while others remain, the object moves to one of them (``renumber``); a socket
  in flight with no number left moves to a parked duplicate (see ``parking``);
* a virtual socket whose number may be watched from outside: a duplicate of its
  ``Mirror``'s outer end, which carries its readiness;
* a virtual socket nobody outside watches yet: a duplicate of one shared placeholder
  socket, which costs one cheap ``dup`` instead of a socketpair.  ``arm`` swaps in a
  mirror (``dup2`` over every number) the moment that changes.  A virtual socket's
  number is taken (``reserve``) before its driver runs, as Linux takes it.

A number handed out of the layer (``expose``) may be given to the kernel's pollers, so
it is armed at once, unless ``patch()`` has found that no poller outside the layer is
left to watch it (every select/poll/epoll/selector in the program is the drop-in's):
then it is only marked, and armed if that stops being true (``outside_pollers(True)``).
A mirror costs a system call per readiness change, so that is what asyncio and
socketserver pay, or not, for every event.

Numbers that share an ``OpenSocket`` (dup, dup2, fcntl F_DUPFD) share its flags and its
reference count; the driver's ``close`` runs once, when the last number goes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from . import readiness
from .driver import SocketDriver
from .drivers.host import HostDriver, KernelSocket, kernel_socket
from .errors import DriverFailure
from .parking import parked_copy

__all__ = ["OpenSocket", "lookup", "install", "close", "dup", "dup2", "arm", "expose",
           "outside_pollers", "open_numbers"]


class OpenSocket:
    """An open socket description (Linux's ``struct file`` for a socket)."""

    __slots__ = ("driver", "sock", "family", "type", "proto", "kernel", "nonblocking",
                 "numbers", "closed", "rcvtimeo", "sndtimeo", "_watch", "send", "recv",
                 "holds", "released", "exposed")

    def __init__(self, driver: SocketDriver, sock: Any, family: int, type: int, proto: int,
                 nonblocking: bool = False) -> None:
        self.driver = driver
        self.sock = sock
        # The hottest ops, looked up once: every send and recv starts here.
        self.send = driver.send
        self.recv = driver.recv
        self.family = family
        self.type = type
        self.proto = proto
        self.nonblocking = nonblocking
        self.numbers: set[int] = set()
        self.closed = False
        self.holds = 0  # SCM_RIGHTS messages carrying it: they keep it open, as numbers do
        self.released = False
        self.exposed = False  # handed out of the layer while no kernel poller could watch
        self.rcvtimeo: float | None = None  # seconds; None blocks forever
        self.sndtimeo: float | None = None
        kfd = driver.fileno(sock)
        # For kernel sockets the kernel blocks, times out and reports readiness itself.
        self.kernel: int | None = kfd
        self._watch: readiness.Watch | None = None  # made by the ``watch`` property

    @property
    def watch(self) -> readiness.Watch | None:
        """What watches a virtual socket (None for a kernel socket), made on first use.

        Most sockets of a connect-heavy program are never waited on, polled, selected
        or shown to the kernel: without a watch their notifications find nothing to
        do, and opening and closing them skips the watch's setup and teardown.
        Whoever is about to wait asks here first, then looks at the readiness, so a
        change made before the watch existed is never missed.
        """
        entry = self._watch
        if entry is None and self.kernel is None:
            entry = _make_watch(self)
        return entry

    def revents(self) -> int:
        """The socket's current revents (what ``_poll`` answers, in one call frame:
        interest lists ask this for every event)."""
        try:
            return self.driver.poll(self.sock)
        except OSError:
            raise
        except Exception as exc:
            raise DriverFailure(self.driver.name, "poll", exc) from exc

    def __repr__(self) -> str:
        kind = "kernel" if self.kernel is not None else "virtual"
        return (f"<OpenSocket {self.driver.name} {kind} family={self.family} "
                f"type={self.type} numbers={sorted(self.numbers)}>")


def _make_watch(f: OpenSocket) -> readiness.Watch:
    """``f``'s watch, made once under the table's lock.  A socket already released
    gets a closed watch nobody notifies (waits on it end at once, as they would
    had it been made before the close)."""
    with _lock:
        entry = f._watch
        if entry is None:
            if f.released:
                entry = readiness.Watch(partial(_poll, f.driver, f.sock))
                entry.closed = True
            else:
                entry = readiness.watch(f.sock, f.revents)
            f._watch = entry
    return entry


def _poll(driver: SocketDriver, sock: Any) -> int:
    """A virtual socket's current revents; a driver's bug in poll is EIO."""
    try:
        return driver.poll(sock)
    except OSError:
        raise
    except Exception as exc:
        raise DriverFailure(driver.name, "poll", exc) from exc


class _Adopted(OpenSocket):
    """A kernel socket made outside the layer, wrapped for one call.

    Its host socket object owns a duplicate of the number, released with the wrapper,
    so the outside owner of the number keeps full control of it.
    """

    __slots__ = ()

    def __del__(self) -> None:
        self.sock.close()


_files: dict[int, OpenSocket] = {}
_lock = threading.RLock()
# Changes (an int, replaced) each time a number stops naming a kernel socket (closed,
# forgotten, replaced by dup2).  Whoever looked up what a number names may keep
# trusting that answer for a kernel socket while this still holds the same int object:
# the drop-in's kernel sockets call the kernel on their number directly (see there).
kernel_unlinks: list[int] = [0]
_placeholder_number = -1  # its number, once made: every reserve duplicates it
_HOST = HostDriver()
_dupfd = fcntl.fcntl
_dup = os.dup


def lookup(fd: int) -> OpenSocket | None:
    """The description behind ``fd``, or None for numbers the layer does not own."""
    return _files.get(fd)


def open_numbers() -> dict[int, OpenSocket]:
    """A snapshot of the table, for diagnostics and leak checks."""
    with _lock:
        return dict(_files)


def adopt(fd: int) -> OpenSocket:
    """Wrap a kernel socket made outside the layer (the caller checked it is one);
    the host driver serves it."""
    sock = kernel_socket(fileno=os.dup(fd))
    return _Adopted(_HOST, sock, sock.family, sock.type, sock.proto)


def placeholder_fd() -> int:
    """The shared socket unarmed numbers point at (made on first use).  Only its number
    is kept: it lives as long as the process, and no object warns at exit that it was
    never closed."""
    global _placeholder_number
    if _placeholder_number < 0:
        with _lock:
            if _placeholder_number < 0:
                _placeholder_number = KernelSocket(socket.AF_UNIX, socket.SOCK_DGRAM).detach()
    return _placeholder_number


def reserve(cloexec: bool) -> int:
    """Take the lowest free number for a virtual socket about to be made or accepted.

    Like Linux, the number is taken before the driver runs: a call that cannot have
    one (EMFILE) fails before anything happens (an accept leaves the connection
    queued).  Until ``install`` it names the placeholder.  (A kernel socket needs
    none: the kernel's own socket(), accept4() or socketpair() takes its number.)
    """
    placeholder = _placeholder_number
    if placeholder < 0:
        placeholder = placeholder_fd()
    # One system call: F_DUPFD takes the lowest free number (no fstat, no
    # get_inheritable: the command itself says close-on-exec or not).  os.dup is
    # F_DUPFD_CLOEXEC from 0, and cheaper than fcntl.fcntl with an int argument, which
    # first tries the argument as a buffer and formats the TypeError it then drops.
    fd = _dup(placeholder) if cloexec else _dupfd(placeholder, _F_DUPFD, 0)
    if fd in _files:
        _closed_behind_our_back(fd)
    return fd


def _closed_behind_our_back(fd: int) -> None:
    """The kernel gave out ``fd`` anew, yet the table still names it: code outside the
    layer closed the number itself (a stdlib socket class made before ``patch()``,
    e.g. ssl's, closes in C).  That number's reference is gone: drop it."""
    forget(fd)


_F_DUPFD, _F_DUPFD_CLOEXEC = fcntl.F_DUPFD, fcntl.F_DUPFD_CLOEXEC


def unreserve(fd: int) -> None:
    """Give back a reserved number that was never installed."""
    os.close(fd)


def install(f: OpenSocket, fd: int, *, watched: bool = True,
            cloexec: bool | None = None) -> None:
    """Make ``fd`` name ``f``: a number ``reserve`` took for it, or a kernel socket's own
    number (``f.kernel``), which the kernel's call that made it has just picked.

    ``watched`` says the number leaves the layer and may be handed to the kernel's
    pollers, so a virtual socket needs its mirror armed.  ``cloexec``, when the caller
    knows it (it reserved ``fd`` so), spares asking the kernel (F_GETFD) before a dup2;
    a kernel socket is made close-on-exec, and loses the flag here if ``cloexec`` is
    False.
    """
    if f.kernel == fd:
        if fd in _files:  # the kernel gave it out anew: see reserve
            _closed_behind_our_back(fd)
        if cloexec is False:
            os.set_inheritable(fd, True)
    elif f.kernel is not None:
        # A driver of kernel sockets that does not say so (``kernel_sockets``) and
        # had a number reserved: the number names its socket, which keeps its own.
        inheritable = os.get_inheritable(fd) if cloexec is None else not cloexec
        os.dup2(f.kernel, fd, inheritable=inheritable)
    # No lock: ``f`` is new and ``fd`` is not in the table, so no other thread can reach
    # either until the one store that publishes them, made last.
    f.numbers.add(fd)
    _files[fd] = f
    if watched and f.kernel is None and f.watch.mirror is None:
        try:
            expose(f, cloexec)
        except OSError as exc:
            if exc.errno not in _OUT_OF_DESCRIPTORS:
                _unpublish(f, fd)
                raise
            # The mirror's two descriptors do not fit, but the socket's number did,
            # and that is all Linux needs for this call (an accept with one number
            # free succeeds).  The socket stays exposed and unarmed: the next expose
            # (``fileno()``) or ``outside_pollers(True)`` tries again; meanwhile the
            # kernel's own pollers see the placeholder on its number.
        except BaseException:
            _unpublish(f, fd)
            raise


_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def _unpublish(f: OpenSocket, fd: int) -> None:
    with _lock:
        _files.pop(fd, None)
        f.numbers.discard(fd)


def arm(f: OpenSocket, cloexec: bool | None = None) -> None:
    """Make a virtual socket's readiness visible to the kernel on all its numbers.
    ``cloexec``: the close-on-exec flag of every number, if the caller knows it."""
    if f.kernel is not None:
        return
    entry = f.watch
    with _lock:
        if entry.mirror is not None or f.closed:
            return
        nonblocking = f.nonblocking
        mirror = readiness.Mirror(nonblocking)
        try:
            for fd in f.numbers:
                inheritable = os.get_inheritable(fd) if cloexec is None else not cloexec
                os.dup2(mirror.outer.fileno(), fd, inheritable=inheritable)
        except BaseException:
            mirror.close()
            raise
        entry.mirror = mirror
        if f.nonblocking != nonblocking:  # changed meanwhile, before it could see mirror
            mirror.set_nonblocking(f.nonblocking)
    mirror.show(entry.revents)


# May kernel pollers outside the layer watch the numbers it hands out?  See the
# module docstring; ``patch()`` decides.
_outside_pollers = True


def expose(f: OpenSocket, cloexec: bool | None = None) -> None:
    """``f``'s numbers leave the layer (``fileno()``, a visible ``posix`` number, an
    SCM_RIGHTS receive): arm its mirror, or only mark it while no outside poller
    exists."""
    if f.kernel is not None:
        return
    f.exposed = True
    if _outside_pollers:
        arm(f, cloexec)


def outside_pollers(present: bool) -> None:
    """Tell the layer whether pollers outside it (the kernel's select/poll/epoll, the
    stdlib's selectors) may watch its numbers.  Turned on, every socket handed out
    meanwhile is armed now."""
    global _outside_pollers
    with _lock:
        _outside_pollers = present
        # A snapshot first: a finalizer the collector runs here may close a number.
        waiting = {id(f): f for f in list(_files.values())
                   if present and f.exposed and f.kernel is None}
    for f in waiting.values():
        arm(f)


def set_nonblocking(f: OpenSocket, on: bool) -> None:
    """O_NONBLOCK of a description.  A virtual socket's flag lives here; once its
    numbers name a kernel mirror, that description carries it too, so fcntl(2) from
    outside the layer reads what the layer does."""
    f.nonblocking = on
    entry = f._watch
    if entry is not None and entry.mirror is not None:
        entry.mirror.set_nonblocking(on)


def close(fd: int) -> bool:
    """Close a layer number.  False if the layer does not own ``fd``.

    The last number of a socket that is not in flight is released here, under the
    same lock turn that removed the number (every socket's life ends this way).
    """
    gone = None
    with _lock:
        f = _files.pop(fd, None)
        if f is None:
            return False
        numbers = f.numbers
        numbers.discard(fd)
        if not numbers:
            f.closed = True
            if not (f.holds or f.released):
                f.released = True
                numbers = None
        # A kernel socket's last number is the driver's to close; any other is the
        # layer's (the driver's socket moved off it first if it was on it).
        by_driver = False
        if f.kernel is not None:
            kernel_unlinks[0] += 1
            if f.kernel == fd:
                by_driver = numbers is None or not _move_off(f, fd)
        if not by_driver:
            try:
                os.close(fd)
            except OSError as exc:
                # Closed behind the layer's back (os.close on the number): EBADF, as
                # the kernel says, but this number's reference is gone all the same.
                gone = exc
    if numbers is not None:  # not the last reference
        if gone is not None:
            raise gone
        return True
    if gone is not None:
        _close_driver_socket(f)
        raise gone
    if f._watch is None:  # the usual socket: never watched, only the driver's close
        try:
            f.driver.close(f.sock)
        except OSError as exc:
            if by_driver:
                raise  # the number's own close: EBADF if closed behind our back
            _close_failed(f, exc)
        except Exception as exc:
            _close_failed(f, exc)
        return True
    _close_driver_socket(f)
    return True


def _move_off(f: OpenSocket, fd: int) -> bool:
    """``f`` stays open, but ``fd``, the number its kernel socket's driver object is
    on, is going: move the object to another of its numbers, or, for a socket in
    flight that has none left, to a parked duplicate.  False when no duplicate fits
    (EMFILE): the object stays on ``fd``, which stays open until ``f`` is released.
    Under ``_lock``."""
    if f.numbers:
        _renumber(f, min(f.numbers))
        return True
    try:
        parked = parked_copy(fd)
    except OSError:
        return False
    _renumber(f, parked)
    return True


def point_at(f: OpenSocket, fd: int) -> None:
    """A call on ``fd`` is about to go through the driver object of ``f``, a kernel
    socket, which is on another of its numbers: put it on ``fd`` first.  So the call
    depends on no number but its own, as on Linux: another thread may be closing the
    other one, or code outside the layer may have closed it."""
    if fd not in f.numbers or not f.driver.kernel_sockets:
        return  # an outside socket's wrapper, or a number going away meanwhile
    with _lock:
        if f.kernel != fd and fd in f.numbers:
            _renumber(f, fd)


def _renumber(f: OpenSocket, fd: int | None) -> None:
    """Point ``f``'s kernel socket at ``fd`` (None: at nothing, its number is gone)."""
    f.driver.renumber(f.sock, fd)
    f.kernel = _NO_NUMBER if fd is None else fd


_NO_NUMBER = -1  # a kernel socket's ``kernel`` once its only number left behind its back


def forget(fd: int) -> None:
    """Drop ``fd`` from the table after the kernel replaced it (dup2 over it)."""
    with _lock:
        f = _files.pop(fd, None)
        if f is None:
            return
        f.numbers.discard(fd)
        if f.kernel is not None:
            kernel_unlinks[0] += 1
            if f.kernel == fd:  # the number is someone else's now, or handed over
                _renumber(f, min(f.numbers) if f.numbers else None)
        last = not f.numbers
        if last:
            f.closed = True
    if last:
        _release(f)


def dup(fd: int, f: OpenSocket, lowest: int, cloexec: bool) -> int:
    cmd = fcntl.F_DUPFD_CLOEXEC if cloexec else fcntl.F_DUPFD
    with _lock:
        new = _dupfd(fd, cmd, lowest)
        if new in _files:
            _closed_behind_our_back(new)
        _files[new] = f
        f.numbers.add(new)
    return new


def dup2(fd: int, fd2: int, inheritable: bool) -> int:
    """dup2 over numbers of any kind; keeps the table in step with the kernel."""
    with _lock:
        f = _files.get(fd)
        old = _files.get(fd2)
        # A kernel socket whose driver object is on fd2 moves off it first, unless
        # fd2 will name the same open file again.
        moving = old is not None and old is not f and old.kernel == fd2
        parked = None
        if moving and (len(old.numbers) > 1 or old.holds):
            old.numbers.discard(fd2)
            try:
                _move_off(old, fd2)
            finally:
                old.numbers.add(fd2)
            if old.kernel != fd2 and old.kernel not in old.numbers:
                parked = old.kernel
        try:
            os.dup2(fd, fd2, inheritable=inheritable)
        except BaseException:
            if parked is not None:  # fd2 stays: back onto it
                _renumber(old, fd2)
                os.close(parked)
            raise
        if old is not None:
            del _files[fd2]
            if old.kernel is not None:
                kernel_unlinks[0] += 1
            old.numbers.discard(fd2)
            if moving and old.kernel == fd2:  # its open file went with the number
                _renumber(old, None)
            if not old.numbers:
                old.closed = True
            else:
                old = None
        if f is not None:
            _files[fd2] = f
            f.numbers.add(fd2)
    if old is not None:
        _release(old)
    return fd2


def _release(f: OpenSocket) -> None:
    """The last number is gone: close the driver's socket once and wake its waiters.

    A socket in flight (held by an SCM_RIGHTS message) stays open until the last
    hold is dropped too; whichever goes last releases it, exactly once.
    """
    with _lock:
        if f.numbers or f.holds or f.released:
            return
        f.released = True
    _close_driver_socket(f)


def _close_driver_socket(f: OpenSocket) -> None:
    """The driver's close, once (``f.released`` was just set): waiters wake."""
    entry = f._watch  # no watch made: nothing waits, nothing to undo
    if entry is not None:
        readiness.unwatch(f.sock)
        # The watch held ``f.revents``, a reference back to ``f``: the two were a
        # reference cycle, which only the garbage collector would free (some ten
        # objects per socket; on a connect-heavy path those collections cost more than
        # the sockets' own work).  Asking the driver directly breaks it, and answers
        # the same to anyone still polling the watch.
        entry.revents = partial(_poll, f.driver, f.sock)
    try:
        f.driver.close(f.sock)
    except Exception as exc:
        _close_failed(f, exc)
    finally:
        if entry is not None:
            entry.close()


def _close_failed(f: OpenSocket, exc: Exception) -> None:
    """The driver's close raised: the number is already gone; report, do not raise."""
    failure = DriverFailure(f.driver.name, "close", exc)
    failure.__cause__ = exc
    sys.unraisablehook(_Unraisable(failure, f))


# -- descriptors in flight (SCM_RIGHTS) ----------------------------------------------------

def hold(f: OpenSocket) -> None:
    """Keep ``f`` open without a number: it is in an SCM_RIGHTS message."""
    with _lock:
        if f.released:
            raise ValueError("the socket is already released")
        f.holds += 1


def drop(f: OpenSocket) -> None:
    """Give back a ``hold``; the socket closes if that was the last reference."""
    with _lock:
        f.holds -= 1
        last = not f.holds and not f.numbers
        if last:
            f.closed = True
    if last:
        _release(f)


def give_number(f: OpenSocket, cloexec: bool) -> int:
    """A new lowest-free number naming the held description ``f`` (an SCM_RIGHTS
    receive), which may have no number left; the caller still drops its hold."""
    if f.kernel is not None:
        cmd = fcntl.F_DUPFD_CLOEXEC if cloexec else fcntl.F_DUPFD
        fd = fcntl.fcntl(f.kernel, cmd, 0)
        with _lock:
            if fd in _files:
                _closed_behind_our_back(fd)
            # Parked while it had no number (see _move_off): back onto this one.
            parked = f.kernel if not f.numbers and f.driver.kernel_sockets else None
            _files[fd] = f
            f.numbers.add(fd)
            f.closed = False
            if parked is not None:
                _renumber(f, fd)
                os.close(parked)
        return fd
    fd = reserve(cloexec)
    with _lock:
        mirror = f.watch.mirror
        if mirror is not None:
            os.dup2(mirror.outer.fileno(), fd, inheritable=not cloexec)
        _files[fd] = f
        f.numbers.add(fd)
        f.closed = False
    if mirror is None:
        expose(f)  # whoever receives a descriptor may hand it to the kernel's pollers
    return fd


class _Unraisable:
    """The record ``sys.unraisablehook`` expects."""

    def __init__(self, exc: BaseException, obj: object) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = "Exception ignored while closing a socket"
        self.object = obj


# -- stacked drivers -------------------------------------------------------------------------

def restack(replace: Callable[[SocketDriver], SocketDriver | None]) -> None:
    """Serve every open socket by ``replace(its driver)`` where that is not None (a
    layer put over its driver, or taken off again: see ``registry.stack``).

    The cached ops follow, and the drop-in's kernel sockets look again at who serves
    their number before their next call (``kernel_unlinks``).  A call already running
    finishes with the driver it started with.
    """
    with _lock:
        for f in {id(f): f for f in _files.values()}.values():
            driver = replace(f.driver)
            if driver is not None:
                f.driver = driver
                f.send = driver.send
                f.recv = driver.recv
        kernel_unlinks[0] += 1
