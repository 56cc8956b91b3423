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

import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable

__all__ = ["Watch", "Mirror", "Waiter", "changed", "watch", "unwatch", "wait"]

POLLIN, POLLOUT, POLLERR, POLLHUP, POLLNVAL = (
    select.POLLIN, select.POLLOUT, select.POLLERR, select.POLLHUP, select.POLLNVAL)
POLLPRI = select.POLLPRI
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)

# What select(2) counts as readable / writable (the kernel's POLLIN_SET / POLLOUT_SET).
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
        try:
            self._lock.release()
        except RuntimeError:  # already woken and not yet consumed
            pass

    def wait(self, timeout: float | None) -> None:
        self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))


class KernelWaiter(Waiter):
    """A waiter that can also be woken inside a kernel poll: it owns an eventfd."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        super().__init__()
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def wake(self) -> None:
        try:
            os.eventfd_write(self.fd, 1)
        except OSError:  # already closed: the waiter has finished
            pass

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

    __slots__ = ("outer", "inner", "readable", "writable", "_lock")

    def __init__(self) -> None:
        self.outer, self.inner = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        self.outer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        self.readable = False
        self.writable = True
        self._lock = threading.Lock()

    def show(self, revents: Callable[[], int]) -> None:
        """Bring the kernel object in line with ``revents()``, read under the lock so
        that concurrent updates settle on the latest state."""
        with self._lock:
            if self.inner.fileno() < 0:
                return
            events = revents()
            readable = bool(events & READABLE)
            writable = bool(events & WRITABLE)
            if readable != self.readable:
                if readable:
                    self.inner.send(b"\0")
                else:
                    self.outer.recv(1)
                self.readable = readable
            if writable != self.writable:
                if writable:
                    self.inner.recv(self.BLOB)
                else:
                    self.outer.send(bytes(self.BLOB))
                self.writable = writable

    def close(self) -> None:
        with self._lock:
            self.outer.close()
            self.inner.close()


class Watch:
    """Everything that watches one virtual socket: parked waiters and, once armed,
    the kernel mirror.  ``revents`` reads the driver's current poll state."""

    __slots__ = ("revents", "waiters", "mirror")

    def __init__(self, revents: Callable[[], int]) -> None:
        self.revents = revents
        self.waiters: set[Waiter] = set()
        self.mirror: Mirror | None = None

    def changed(self) -> None:
        if self.waiters:
            for waiter in tuple(self.waiters):
                waiter.wake()
        mirror = self.mirror
        if mirror is not None:
            mirror.show(self.revents)


# id(sock) -> Watch.  Keyed by identity because a driver's socket object is opaque
# (it may not be hashable); the open description keeps ``sock`` alive while listed.
_watches: dict[int, Watch] = {}


def changed(sock: object) -> None:
    """A driver's notification that ``poll(sock)`` may have changed."""
    entry = _watches.get(id(sock))
    if entry is not None:
        entry.changed()


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
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if ready():
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None:
                if remaining <= 0:
                    return False
                remaining = min(remaining, _LONGEST_NAP)  # the loop waits out the rest
            if kernel_poll is None:
                waiter.wait(remaining)
            else:
                ms = -1 if remaining is None else max(0, int(remaining * 1000 + 0.999))
                if kernel_poll(waiter.fd, ms):
                    return True
                waiter.drain()
    finally:
        for entry in watches:
            entry.waiters.discard(waiter)
        if isinstance(waiter, KernelWaiter):
            waiter.close()
