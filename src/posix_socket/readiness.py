"""Readiness: the one place that waits, wakes, and shows Python sockets to the kernel.

Two audiences watch a socket that lives in Python (a "virtual" socket):

* callers inside the layer (a blocking ``recv``, ``posix.poll``): they park on a
  ``Waiter`` and are woken by ``changed(sock)``, which a driver calls whenever
  ``poll(sock)`` may have changed.  No system call is made for them.
* code outside the layer that hands the descriptor number to the kernel's own
  select/poll/epoll (selectors captured at import, urllib3, asyncio).  For them a
  ``Mirror`` keeps a kernel object in the same readiness state.  A mirror is only armed
  once the number may be watched from outside; after that each real transition costs
  one system call and a steady state costs nothing.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import resource
import select
import socket
import threading
from collections.abc import Callable, Iterable

from . import clock as _clock
from .interrupts import unchain

__all__ = ["Watch", "Mirror", "Waiter", "Interest", "changed", "faded", "watch", "unwatch",
           "wait"]

POLLIN, POLLOUT, POLLERR, POLLHUP, POLLNVAL = (
    select.POLLIN, select.POLLOUT, select.POLLERR, select.POLLHUP, select.POLLNVAL)
POLLPRI = select.POLLPRI
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)

# What select(2) counts as readable / writable (the kernel's POLLIN_SET / POLLOUT_SET).
_DONTWAIT = socket.MSG_DONTWAIT

READABLE = POLLIN | POLLHUP | POLLERR | POLLRDHUP | POLLPRI
WRITABLE = POLLOUT | POLLERR


class Waiter:
    """One blocked call: a binary semaphore that ``wake`` releases and ``wait`` takes.

    A plain lock is used because acquiring it can be interrupted by signals (Ctrl-C)
    and released from any thread.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def wake(self) -> None:
        clock = _clock.current
        if clock is not _clock.REAL:
            clock.release(self._lock)  # a virtual clock must know it runs again
            return
        try:
            self._lock.release()
        except RuntimeError:  # already woken and not yet consumed
            pass

    def wait(self, timeout: float | None) -> None:
        clock = _clock.current
        if clock is _clock.REAL:
            self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))
        else:
            clock.block(self._lock, timeout, "a socket call")


class KernelWaiter(Waiter):
    """A waiter that can also be woken inside a kernel poll: it owns an eventfd."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        super().__init__()
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def wake(self) -> None:
        _clock.current.awake(self)
        self.signal()

    def signal(self) -> None:
        try:
            os.eventfd_write(self.fd, 1)
        except OSError:  # already closed: the waiter has finished
            pass

    def consume(self) -> bool:
        """Whether it was signalled since the last drain (and drain it)."""
        try:
            os.eventfd_read(self.fd)
        except OSError:  # not signalled (EAGAIN)
            return False
        return True

    def drain(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class Mirror:
    """A kernel object whose poll state copies a virtual socket's readiness.

    It is a connected AF_UNIX datagram pair.  ``outer`` is what descriptor numbers
    point at; ``inner`` is private.  A one-byte marker queued on ``outer`` makes it
    readable; a blob ``outer`` sent that ``inner`` has not read fills ``outer``'s
    (minimal) send buffer and makes it unwritable.  So each of the two bits changes
    with one system call, and only when it really changes.

    Errors and hang-ups are shown the way select(2) reports them: readable (HUP, ERR)
    and writable (ERR).  The exact revents are what the layer's own poll returns.
    """

    BLOB = 1024

    __slots__ = ("outer", "inner", "readable", "writable", "_lock", "_small_sndbuf",
                 "_closing", "_again")

    def __init__(self, nonblocking: bool = True) -> None:
        # The C-level pair: the stdlib's names may be patched onto the layer.  It is
        # made with the socket's O_NONBLOCK, which ``outer`` must show, so that needs no
        # call of its own; the pair's own calls never wait either way (a marker always
        # has room, a blob is sent with MSG_DONTWAIT, reads find what was sent).
        kind = socket.SOCK_DGRAM | (socket.SOCK_NONBLOCK if nonblocking else 0)
        outer, inner = _socket.socketpair(socket.AF_UNIX, kind)
        self.outer, self.inner = _lifted(outer), _lifted(inner)
        self.readable = False
        self.writable = True
        # Re-entrant, for a finalizer the garbage collector runs inside ``show`` that
        # changes or closes this very socket: see ``show`` and ``close``.
        self._lock = threading.RLock()
        self._closing = False
        self._again = False
        self._small_sndbuf = False  # shrunk before the first blob: most never need it

    def show(self, revents: Callable[[], int]) -> None:
        """Bring the kernel object in line with ``revents()``, read under the lock so
        that concurrent updates settle on the latest state."""
        if self._lock._is_owned():
            # Nested: a finalizer run inside this thread's own ``show`` changed the
            # socket.  The outer call reads the state again before it lets go.
            self._again = True
            return
        with self._lock:
            if self.inner.fileno() < 0:
                return
            try:
                self._again = True
                while self._again:
                    self._again = False
                    self._follow(revents())
            finally:
                if self._closing:
                    self._close()

    def _follow(self, events: int) -> None:
        readable = bool(events & READABLE)
        writable = bool(events & WRITABLE)
        if readable != self.readable:
            if readable:
                self.inner.send(b"\0")
            else:
                self.outer.recv(1, _DONTWAIT)
            self.readable = readable
        if writable != self.writable:
            if writable:
                self.inner.recv(self.BLOB)
            else:
                if not self._small_sndbuf:
                    self.outer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
                    self._small_sndbuf = True
                self.outer.send(bytes(self.BLOB), _DONTWAIT)
            self.writable = writable

    def set_nonblocking(self, on: bool) -> None:
        """Copy a socket's O_NONBLOCK onto the description its numbers name (the
        mirror's own calls never block either way)."""
        with self._lock:
            if self.outer.fileno() >= 0:
                try:
                    self.outer.setblocking(not on)
                finally:
                    if self._closing:
                        self._close()

    def close(self) -> None:
        if self._lock._is_owned():
            # A finalizer run inside this thread's own ``show`` (the collector runs
            # wherever memory is allocated): closing the pair under that call would
            # pull it from under it.  The call closes it on its way out.
            self._closing = True
            return
        with self._lock:
            self._close()

    def _close(self) -> None:
        self.outer.close()
        self.inner.close()


# Where a mirror's own descriptors go: above the numbers programs use.  A mirror is
# armed late (by ``fileno()``), and a program may well believe the lowest free numbers
# are still free then (CPython's test_selectors dup2()s over them and closes them).
_MIRROR_FLOOR = min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)


def _lifted(sock: _socket.socket) -> _socket.socket:
    """``sock`` moved to a number from ``_MIRROR_FLOOR`` up, if one is free there."""
    try:
        fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, _MIRROR_FLOOR)
    except OSError:  # nothing free up there: keep the low number
        return sock
    lifted = _socket.socket(sock.family, sock.type, sock.proto, fd)
    if lifted.gettimeout() != sock.gettimeout():
        lifted.settimeout(sock.gettimeout())
    sock.close()
    return lifted


class Watch:
    """Everything that watches one virtual socket: parked waiters, the interest lists
    it is registered in and, once armed, the kernel mirror.  ``revents`` reads the
    driver's current poll state."""

    __slots__ = ("revents", "waiters", "mirror", "closed")

    def __init__(self, revents: Callable[[], int]) -> None:
        self.revents = revents
        self.waiters: set[Waiter | _Member] = set()
        self.mirror: Mirror | None = None
        self.closed = False

    def close(self) -> None:
        """The socket is gone: wake everything parked on it (each waiter finds out
        for itself) and drop it from interest lists, as closing a file does in epoll."""
        self.closed = True
        for waiter in tuple(self.waiters):
            waiter.wake()
        self.waiters.clear()
        if self.mirror is not None:
            self.mirror.close()

    def changed(self) -> None:
        if self.waiters:
            for waiter in tuple(self.waiters):
                waiter.wake()
        mirror = self.mirror
        if mirror is not None:
            mirror.show(self.revents)


class _Member:
    """One socket's registration in an ``Interest``; it sits in the socket's waiters,
    so the socket's ``changed`` queues it on the interest's ready list."""

    __slots__ = ("interest", "watch", "slot", "events", "data", "edge", "oneshot",
                 "disabled")

    def __init__(self, interest: Interest, watch: Watch, key: object, events: int,
                 data: object, edge: bool, oneshot: bool) -> None:
        self.interest = interest
        self.watch = watch
        self.slot = (watch, key)  # where the interest list keeps it
        self.events = events
        self.data = data
        self.edge = edge
        self.oneshot = oneshot
        self.disabled = False

    def wake(self) -> None:
        self.interest._queue(self)


class Interest:
    """An epoll-like interest list over virtual sockets.

    ``wait`` (like ``poll`` and select) parks on every socket it is given, for every
    call: its cost grows with the number of sockets.  An interest list stays
    registered between waits and a socket's ``changed`` puts it on the ready list, so
    a wait costs what is ready, however many sockets are idle.

    Level-triggered by default: a socket reported ready stays listed until a wait
    finds it not ready.  ``edge`` reports it again only after its next change;
    ``oneshot`` disables it after one report until ``modify``.  A socket whose last
    descriptor closes leaves every list on its own.  One socket may be registered
    more than once under different ``key``s (epoll keys by description and number).
    """

    def __init__(self) -> None:
        # Re-entrant: a socket closed by a finalizer the garbage collector runs while
        # this thread holds the lock leaves the list (``_queue``) from inside.  Each
        # section keeps the list consistent between statements, which is all a
        # nested call can see.
        self._lock = threading.RLock()
        self._members: dict[tuple[Watch, object], _Member] = {}
        self._ready: dict[_Member, None] = {}  # insertion-ordered set
        self._waiters: set[Waiter] = set()

    def __len__(self) -> int:
        return len(self._members)

    def register(self, entry: Watch, events: int, data: object, *, key: object = None,
                 edge: bool = False, oneshot: bool = False) -> None:
        """Watch ``entry`` for ``events``; waits report ``(data, revents)``.
        KeyError if it is registered already under ``key`` (epoll says EEXIST)."""
        with self._lock:
            if (entry, key) in self._members:
                raise KeyError(data)
            member = _Member(self, entry, key, events, data, edge, oneshot)
            self._members[member.slot] = member
            entry.waiters.add(member)
            self._ready[member] = None  # its current state counts, as in epoll_ctl
        self._wake_waiters()

    def modify(self, entry: Watch, events: int, data: object, *, key: object = None,
               edge: bool = False, oneshot: bool = False) -> None:
        with self._lock:
            member = self._members[entry, key]
            member.events, member.data = events, data
            member.edge, member.oneshot, member.disabled = edge, oneshot, False
            self._ready[member] = None
        self._wake_waiters()

    def unregister(self, entry: Watch, *, key: object = None) -> None:
        with self._lock:
            member = self._members.pop((entry, key))
            self._ready.pop(member, None)
        entry.waiters.discard(member)

    def close(self) -> None:
        with self._lock:
            members = list(self._members.values())
            self._members.clear()
            self._ready.clear()
        for member in members:
            member.watch.waiters.discard(member)
        self._wake_waiters()

    def _queue(self, member: _Member) -> None:
        with self._lock:
            if member.watch.closed:  # the socket is gone: it leaves the list
                if self._members.get(member.slot) is member:
                    del self._members[member.slot]
                self._ready.pop(member, None)
                return
            if self._members.get(member.slot) is not member:
                return
            self._ready[member] = None
            waiters = tuple(self._waiters)
        for waiter in waiters:
            waiter.wake()

    def _wake_waiters(self) -> None:
        with self._lock:
            waiters = tuple(self._waiters)
        for waiter in waiters:
            waiter.wake()

    def ready(self, maxevents: int = -1) -> list[tuple[object, int]]:
        """Report what is ready now, without waiting.

        Driver polls run outside the list's lock: a driver may notify while holding
        its own lock, and that notification takes this one.
        """
        with self._lock:
            batch = list(self._ready)
            self._ready.clear()
        found: list[tuple[object, int]] = []
        keep: list[_Member] = []
        unvisited: list[_Member] = []
        try:
            for position, member in enumerate(batch):
                if len(found) == maxevents:
                    unvisited = batch[position:]
                    break
                if member.disabled or member.watch.closed:
                    continue
                revents = member.watch.revents() & (member.events | POLLERR | POLLHUP)
                if not revents:
                    continue
                found.append((member.data, revents))
                if member.oneshot:
                    member.disabled = True
                elif not member.edge:
                    keep.append(member)
        except BaseException:
            keep.extend(m for m in batch if m not in keep)
            raise
        finally:
            with self._lock:
                for member in unvisited + keep:  # reported ones go to the back, as in epoll
                    if self._members.get(member.slot) is member:
                        self._ready[member] = None
        return found

    def park(self, waiter: Waiter) -> bool:
        """Have ``waiter.wake()`` called on the next change, for a caller that blocks
        somewhere else (in the kernel, with kernel descriptors in the same wait).
        False, and not parked, if something is queued already: look again first."""
        with self._lock:
            if self._ready:
                return False
            self._waiters.add(waiter)
            return True

    def unpark(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def subscribe(self, waiter: Waiter) -> None:
        """Have ``waiter.wake()`` called on every change from now on, until
        ``unpark`` (for a kernel object that shows this list's readiness)."""
        with self._lock:
            self._waiters.add(waiter)

    def peek(self) -> bool:
        """Whether a queued socket is ready now, without reporting it (``ready`` would
        use up edge-triggered and one-shot events).  Polls outside the lock, as
        ``ready`` does."""
        with self._lock:
            batch = list(self._ready)
        return any(not member.disabled and not member.watch.closed
                   and member.watch.revents() & (member.events | POLLERR | POLLHUP)
                   for member in batch)

    def wait(self, timeout: float | None, maxevents: int = -1) -> list[tuple[object, int]]:
        """Block until something is ready or ``timeout`` seconds pass (None: forever)."""
        deadline = None if timeout is None else _clock.now() + timeout
        while True:
            found = self.ready(maxevents)
            if found:
                return found
            remaining = None if deadline is None else deadline - _clock.now()
            if remaining is not None and remaining <= 0:
                return found
            waiter = Waiter()
            with self._lock:
                if self._ready:
                    continue
                self._waiters.add(waiter)
            try:
                waiter.wait(None if remaining is None else min(remaining, _LONGEST_NAP))
            finally:
                with self._lock:
                    self._waiters.discard(waiter)


def _kernel_wait(waiter: KernelWaiter, timeout: float,
                 kernel_poll: Callable[[int, int], bool]) -> bool:
    """A kernel poll with a deadline on a virtual clock: the clock signals the
    waiter's eventfd at the deadline, so the poll itself has no real timeout."""
    if kernel_poll(waiter.fd, 0):  # ready already: no wait to tell the clock of
        return True
    clock = _clock.current
    kernel_ready = False

    def woken() -> bool:  # a kernel descriptor is ready, or the eventfd was written
        nonlocal kernel_ready
        kernel_ready = kernel_poll(waiter.fd, 0)
        return kernel_ready or waiter.consume()

    sleeper = clock.enter(waiter, timeout, waiter.signal, "a kernel poll", woken=woken)
    if sleeper is None:
        return kernel_ready
    try:
        if kernel_poll(waiter.fd, -1):
            return True
        waiter.drain()
        return False
    finally:
        clock.leave(waiter, sleeper)


# id(sock) -> Watch.  Keyed by identity because a driver's socket object is opaque
# (it may not be hashable); the open description keeps ``sock`` alive while listed.
_watches: dict[int, Watch] = {}


def changed(sock: object) -> None:
    """A driver's notification that ``poll(sock)`` may have changed."""
    entry = _watches.get(id(sock))
    if entry is not None and (entry.waiters or entry.mirror is not None):
        entry.changed()


def faded(sock: object) -> None:
    """A driver's notification that ``poll(sock)`` can only have lost bits (its data
    was read, its error taken).  Losing readiness wakes nobody: waiters and interest
    lists look again before they report.  Only a kernel mirror must follow it."""
    entry = _watches.get(id(sock))
    if entry is not None and entry.mirror is not None:
        entry.mirror.show(entry.revents)


def watch(sock: object, revents: Callable[[], int]) -> Watch:
    entry = Watch(revents)
    _watches[id(sock)] = entry
    return entry


def unwatch(sock: object) -> None:
    _watches.pop(id(sock), None)


# One nap at most, in seconds: lock and poll(2) timeouts overflow long before the
# timeouts Linux accepts (SO_RCVTIMEO takes any tv_sec).
_LONGEST_NAP = 24 * 3600.0


def wait(watches: Iterable[Watch], ready: Callable[[], bool], timeout: float | None,
         kernel_poll: Callable[[int], bool] | None = None) -> bool:
    """Block until ``ready()`` is true; False when ``timeout`` (seconds) runs out first.

    Woken by ``changed`` on any of ``watches``.  With ``kernel_poll`` the wait also
    covers kernel descriptors: ``kernel_poll(wake_fd_or_-1, timeout_ms)`` must block in
    the kernel including the waiter's eventfd and return True if a kernel descriptor is
    ready.  Interrupted by signals like any blocking call (Ctrl-C raises).
    """
    if ready():
        return True
    if timeout is not None and timeout <= 0:
        return False
    waiter: Waiter = KernelWaiter() if kernel_poll is not None else Waiter()
    watches = tuple(watches)
    for entry in watches:
        entry.waiters.add(waiter)
    try:
        deadline = None if timeout is None else _clock.now() + timeout
        while True:
            if ready():
                return True
            remaining = None if deadline is None else deadline - _clock.now()
            if remaining is not None:
                if remaining <= 0:
                    return False
                remaining = min(remaining, _LONGEST_NAP)  # the loop waits out the rest
            if kernel_poll is None:
                waiter.wait(remaining)
            elif _clock.current is _clock.REAL or remaining is None:
                ms = -1 if remaining is None else max(0, int(remaining * 1000 + 0.999))
                if kernel_poll(waiter.fd, ms):
                    return True
                waiter.drain()
            elif _kernel_wait(waiter, remaining, kernel_poll):
                return True
    except BaseException as exc:  # from a signal handler (Ctrl-C): see interrupts
        unchain(exc)
        raise
    finally:
        for entry in watches:
            entry.waiters.discard(waiter)
        if isinstance(waiter, KernelWaiter):
            waiter.close()
