"""A drop-in for the stdlib ``select`` module over any mix of descriptors.

``select()``, ``poll`` objects and ``epoll`` objects take layer numbers (virtual or
kernel sockets of the registry), outside kernel sockets, pipes and files alike, with the
stdlib's arguments, results and errors.  ``select`` and ``poll`` go to ``posix``, which
asks virtual sockets directly and leaves the rest to the kernel's poll.

``epoll`` keeps two interest lists: virtual sockets in a ``readiness.Interest`` (a wait
costs what is ready, however many sockets are idle) and everything else in a kernel
epoll.  A wait blocks in one place, the kernel's ``epoll_wait``: an eventfd registered
there is written when a virtual socket in the interest list changes, so either kind of
descriptor ends the wait.  Once ``fileno()`` has handed out the kernel epoll's number
(to nest it in another poller), every change writes the eventfd, so that number is
readable while a virtual socket may be ready, as a nested epoll's is.  The interest
list is keyed by the open description and the number, as the kernel's is: a socket
whose last number closes leaves it on its own, and one registered under a number
that was closed while a duplicate keeps it open is still reported under that number.

A drop-in socket (``posix_socket.socket.socket``) is found by its number without
``fileno()``, which would arm the kernel mirror this module does not need.
"""

from __future__ import annotations

import errno
import math
import operator
import os
import select as _stdlib
import threading
from collections.abc import Iterable
from typing import Any

from . import clock as _clock
from . import descriptors, posix, readiness
from . import socket as _dropin
from .descriptors import OpenSocket
from .errors import oserror

__all__ = ["select", "poll", "epoll", "error",
           *sorted(name for name in dir(_stdlib) if name.isupper())]

# The constants are the kernel's (POLL* and EPOLL* bits are the same numbers on Linux).
globals().update({name: getattr(_stdlib, name) for name in dir(_stdlib) if name.isupper()})

error = OSError

# Captured at import, before ``patch()`` can replace the stdlib module's names.
_KernelEpoll = _stdlib.epoll
_kernel_select = _stdlib.select
_C_FILENO = _dropin._C.fileno
_DROPIN_FILENO = _dropin.socket.fileno

_EPOLLET = int(_stdlib.EPOLLET)
_EPOLLONESHOT = int(_stdlib.EPOLLONESHOT)
_EPOLLEXCLUSIVE = int(_stdlib.EPOLLEXCLUSIVE)
_EPOLLWAKEUP = 1 << 29
_EPOLL_FLAGS = _EPOLLET | _EPOLLONESHOT | _EPOLLEXCLUSIVE | _EPOLLWAKEUP
# What Linux lets EPOLLEXCLUSIVE come with (EPOLLEXCLUSIVE_OK_BITS); more is EINVAL.
_EXCLUSIVE_OK = (_stdlib.EPOLLIN | _stdlib.EPOLLOUT | _stdlib.EPOLLERR | _stdlib.EPOLLHUP
                 | _EPOLLWAKEUP | _EPOLLET | _EPOLLEXCLUSIVE)
_EPOLL_DEFAULT = _stdlib.EPOLLIN | _stdlib.EPOLLPRI | _stdlib.EPOLLOUT
_POLL_DEFAULT = _stdlib.POLLIN | _stdlib.POLLPRI | _stdlib.POLLOUT
_MAXEVENTS_DEFAULT = 1023  # FD_SETSIZE - 1, as the stdlib


def _number(obj: Any) -> int:
    """The descriptor number an argument names, with the stdlib's errors (an int, or
    what ``fileno()`` returns; a drop-in socket's number is read without arming)."""
    if isinstance(obj, int):
        fd = obj
    elif isinstance(obj, _dropin.socket) and type(obj).fileno is _DROPIN_FILENO:
        fd = _C_FILENO(obj)
    else:
        try:
            method = obj.fileno
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
        fd = method()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    fd = _c_int(fd)
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _c_int(value: int) -> int:
    value = operator.index(value)
    if not -(2**31) <= value < 2**31:
        raise OverflowError("Python int too large to convert to C int")
    return value


def _virtual(number: int) -> OpenSocket | None:
    """The virtual socket a number names now, or None for anything the kernel serves."""
    f = descriptors.lookup(number)
    return f if f is not None and f.kernel is None else None


# -- select ------------------------------------------------------------------------------

def select(rlist: Iterable[Any], wlist: Iterable[Any], xlist: Iterable[Any],
           timeout: float | None = None) -> tuple[list, list, list]:
    """select(2), as ``select.select``: the ready objects of each list, in order."""
    if timeout is not None:
        if not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be a float or None")
        posix._check_timeout(timeout, 0)
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    try:
        groups = [list(rlist), list(wlist), list(xlist)]
    except TypeError:
        raise TypeError("arguments 1-3 must be sequences") from None
    numbers = [[_select_number(obj) for obj in objs] for objs in groups]
    ready = [set(found) for found in posix.select(*numbers, timeout)]
    return tuple([obj for obj, fd in zip(objs, fds, strict=True) if fd in found]
                 for objs, fds, found in zip(groups, numbers, ready, strict=True))


def _select_number(obj: Any) -> int:
    fd = _number(obj)
    if fd >= posix.FD_SETSIZE:
        raise ValueError("filedescriptor out of range in select()")
    return fd


# -- poll --------------------------------------------------------------------------------

def _eventmask(value: Any) -> int:
    """poll's event mask: an unsigned short, with the stdlib's errors."""
    if not isinstance(value, int):
        raise TypeError("an integer is required")
    if value < 0:
        raise ValueError("value must be positive")
    if value > 0xFFFF:
        raise OverflowError("Python int too large for C unsigned short")
    return value


class poll:
    """A ``select.poll`` object: a set of ``(fd, events)`` that ``poll()`` hands to
    ``posix.poll``, in registration order, as the stdlib builds its pollfd array."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()
        self._running = False

    def register(self, fd: Any, eventmask: int = _POLL_DEFAULT, /) -> None:
        """Watch ``fd`` for ``eventmask``; registering again replaces the mask."""
        number, mask = _number(fd), _eventmask(eventmask)
        self._fds[number] = mask

    def modify(self, fd: Any, eventmask: int, /) -> None:
        number, mask = _number(fd), _eventmask(eventmask)
        if number not in self._fds:
            raise oserror(errno.ENOENT)
        self._fds[number] = mask

    def unregister(self, fd: Any, /) -> None:
        number = _number(fd)
        try:
            del self._fds[number]
        except KeyError:
            raise KeyError(number) from None

    def poll(self, timeout: float | None = None, /) -> list[tuple[int, int]]:
        """``[(fd, revents)]``; ``timeout`` in milliseconds, None or negative: forever."""
        with self._lock:
            if self._running:
                raise RuntimeError("concurrent poll() invocation")
            self._running = True
        try:
            return posix.poll(list(self._fds.items()), timeout)
        finally:
            self._running = False


# -- epoll -------------------------------------------------------------------------------

class _Wakeup:
    """The eventfd in an epoll's kernel list that virtual sockets' changes write to."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # No write after close: the number may be reused.  Re-entrant: a socket closed
        # by a finalizer the collector runs inside ``wake`` wakes this list again.
        self._lock = threading.RLock()

    def wake(self) -> None:
        with self._lock:
            if self.fd >= 0:
                try:
                    os.eventfd_write(self.fd, 1)
                except BlockingIOError:  # the counter is full: it is readable anyway
                    pass

    def drain(self) -> None:
        with self._lock:
            if self.fd >= 0:
                try:
                    os.eventfd_read(self.fd)
                except BlockingIOError:
                    pass

    def close(self) -> None:
        with self._lock:
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to tell
            pass


class _Parked:
    """One blocked wait, parked in the interest list: its wake writes the eventfd.
    One object per wait, so concurrent waits on one epoll do not unpark each other."""

    __slots__ = ("wakeup",)

    def __init__(self, wakeup: _Wakeup) -> None:
        self.wakeup = wakeup

    def wake(self) -> None:
        _clock.current.awake(self)
        self.wakeup.wake()


def _epoll_timeout(timeout: Any) -> float | None:
    """epoll.poll's timeout as the stdlib reads it: seconds, rounded up to whole
    milliseconds; None or negative milliseconds block; also its errors."""
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be an integer or None")
    posix._check_timeout(timeout, 0)
    ms = math.ceil(timeout * 1000) if isinstance(timeout, float) else timeout * 1000
    if not -(2**31) <= ms < 2**31:
        raise OverflowError("timeout is too large")
    return None if ms < 0 else ms / 1000


class epoll:
    """A ``select.epoll`` object over any mix of descriptors (see the module docstring).

    Linux's rules apply to both halves: EEXIST registering twice, ENOENT for what is
    not registered, EBADF for closed numbers, EINVAL for EPOLLEXCLUSIVE outside
    ``register`` or with bits it does not allow; level-triggered by default,
    EPOLLET and EPOLLONESHOT as the kernel does them.
    """

    def __init__(self, sizehint: int = -1, flags: int = 0) -> None:
        self._start(_KernelEpoll(sizehint, flags))

    @classmethod
    def fromfd(cls, fd: int, /) -> epoll:
        """An epoll object over an existing kernel epoll descriptor (which it owns)."""
        self = cls.__new__(cls)
        self._start(_KernelEpoll.fromfd(fd))
        return self

    def _start(self, kernel: Any) -> None:
        self._kernel = kernel
        self._interest = readiness.Interest()
        self._virtual: dict[int, tuple[OpenSocket, int]] = {}  # fd -> (socket, eventmask)
        self._kernel_fds: set[int] = set()  # may name closed ones: only to skip a call
        self._wakeup: _Wakeup | None = None  # made with the first virtual registration
        self._lock = threading.Lock()
        self._kernel_first = False
        self._kernel_waits = 0  # waits in the kernel-only fast path
        self._shown: _Parked | None = None  # subscribed once fileno() was handed out

    # -- the object ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._kernel.closed

    def fileno(self) -> int:
        """The kernel epoll's descriptor, from now on readable whenever a virtual
        socket in the list may be ready too (it may be nested in another poller)."""
        fd = self._kernel.fileno()
        with self._lock:
            if self._shown is None:
                if self._wakeup is None:
                    self._add_wakeup()
                self._shown = _Parked(self._wakeup)
                self._interest.subscribe(self._shown)
                if self._interest.peek():
                    self._wakeup.wake()
        return fd

    def close(self) -> None:
        with self._lock:
            self._interest.close()
            self._virtual.clear()
            self._kernel_fds.clear()
            self._kernel.close()
            wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.close()

    def __enter__(self) -> epoll:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        interest = getattr(self, "_interest", None)
        if interest is not None:
            interest.close()  # its registrations sit in the sockets' waiter sets

    def _check_open(self) -> None:
        if self._kernel.closed:
            raise ValueError("I/O operation on closed epoll object")

    # -- the interest list ---------------------------------------------------------------

    def register(self, fd: Any, eventmask: int = _EPOLL_DEFAULT) -> None:
        number, mask = _number(fd), operator.index(eventmask) & 0xFFFFFFFF
        self._check_open()
        with self._lock:
            f = _virtual(number)
            if f is None:
                self._kernel.register(number, mask)
                self._kernel_fds.add(number)
                return
            if mask & _EPOLLEXCLUSIVE and mask & ~_EXCLUSIVE_OK:
                raise oserror(errno.EINVAL)
            old = self._virtual.get(number)
            if old is not None:
                if old[0] is f:
                    raise oserror(errno.EEXIST)
                del self._virtual[number]  # the number names another socket now
            self._prune()
            if self._wakeup is None:
                self._add_wakeup()
            try:
                self._interest.register(f.watch, mask & ~_EPOLL_FLAGS, number, key=number,
                                        edge=bool(mask & _EPOLLET),
                                        oneshot=bool(mask & _EPOLLONESHOT))
            except KeyError:  # it kept its registration while the number named another
                self._virtual[number] = (f, 0)
                raise oserror(errno.EEXIST) from None
            self._virtual[number] = (f, mask)

    def modify(self, fd: Any, eventmask: int) -> None:
        number, mask = _number(fd), operator.index(eventmask) & 0xFFFFFFFF
        self._check_open()
        with self._lock:
            f = _virtual(number)
            if f is None:
                self._virtual.pop(number, None)  # the number names another file now
                self._kernel.modify(number, mask)
                return
            if mask & _EPOLLEXCLUSIVE:
                raise oserror(errno.EINVAL)
            old = self._virtual.get(number)
            if old is None or old[0] is not f:
                raise oserror(errno.ENOENT)
            if old[1] & _EPOLLEXCLUSIVE:
                raise oserror(errno.EINVAL)  # Linux: an exclusive entry cannot change
            self._interest.modify(f.watch, mask & ~_EPOLL_FLAGS, number, key=number,
                                  edge=bool(mask & _EPOLLET),
                                  oneshot=bool(mask & _EPOLLONESHOT))
            self._virtual[number] = (f, mask)

    def unregister(self, fd: Any) -> None:
        number = _number(fd)
        self._check_open()
        with self._lock:
            f = _virtual(number)
            if f is None:
                self._virtual.pop(number, None)  # the number names another file now
                self._kernel.unregister(number)
                self._kernel_fds.discard(number)
                return
            old = self._virtual.get(number)
            if old is None or old[0] is not f:
                self._virtual.pop(number, None)  # what it named before, if anything
                raise oserror(errno.ENOENT)
            self._forget(number)

    def _forget(self, number: int) -> None:
        """Unregister the virtual socket registered under ``number``.

        Only ``unregister`` does: when the number names another file (or nothing)
        now, the record is dropped but a registration whose socket is still open
        stays, reported under the number until the socket closes, as in Linux's
        epoll, which finds entries by file and number."""
        old = self._virtual.pop(number, None)
        if old is not None:
            try:
                self._interest.unregister(old[0].watch, key=number)
            except KeyError:  # it left on its own when the socket closed
                pass

    def _prune(self) -> None:
        """Forget registrations of sockets that closed (they left the interest list
        themselves), once they are many, so churn stays cheap."""
        if len(self._virtual) > 2 * len(self._interest) + 16:
            for number, (f, _) in list(self._virtual.items()):
                if f.closed:
                    del self._virtual[number]

    def _add_wakeup(self) -> None:
        wakeup = _Wakeup()
        self._kernel.register(wakeup.fd, _stdlib.EPOLLIN)
        self._wakeup = wakeup
        if self._kernel_waits:
            wakeup.wake()  # a wait already blocked in the kernel goes round and parks

    # -- waiting --------------------------------------------------------------------------

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        """``[(fd, events)]`` ready now or within ``timeout`` seconds (None or
        negative: forever), at most ``maxevents`` of them."""
        observer = posix._observer
        if observer is not None and observer.outside():  # a trace writes its line
            return observer.epoll_wait(self.poll, self._kernel, timeout, maxevents)
        if self._wakeup is None and _clock.current is not _clock.REAL and (
                timeout is not None and timeout >= 0):
            self._add_wakeup()  # a virtual clock ends the wait through the wake-up
        if self._wakeup is None:  # only kernel descriptors were ever registered
            self._kernel_waits += 1
            try:
                events = self._kernel.poll(timeout, maxevents)
            finally:
                self._kernel_waits -= 1
            if self._wakeup is None or not self._without_wakeup(events):
                return events
            # The first virtual socket was registered during the wait and its wake-up
            # ended it: wait again, for both kinds (the timeout starts over, once).
        return self._wait(timeout, maxevents)

    def _wait(self, timeout: float | None, maxevents: int) -> list[tuple[int, int]]:
        maxevents = _c_int(maxevents)
        self._check_open()
        seconds = _epoll_timeout(timeout)
        if maxevents == -1:
            maxevents = _MAXEVENTS_DEFAULT
        elif maxevents < 1:
            raise ValueError(f"maxevents must be greater than 0, got {maxevents}")
        deadline = None if seconds is None else _clock.now() + seconds
        while True:
            if self._kernel_first and self._kernel_fds:
                found = self._kernel_events(0, maxevents)
                if len(found) < maxevents:
                    found += self._interest.ready(maxevents - len(found))
            else:
                found = self._interest.ready(maxevents)
                if found and len(found) < maxevents and self._kernel_fds:
                    found += self._kernel_events(0, maxevents - len(found))
            if found:
                self._kernel_first = not self._kernel_first  # neither half starves
                return found
            remaining = None if deadline is None else max(0.0, deadline - _clock.now())
            parked = _Parked(self._wakeup)
            if not self._interest.park(parked):
                continue  # something changed meanwhile: look again
            try:
                if remaining is None or _clock.current is _clock.REAL:
                    found = self._kernel_events(remaining, maxevents)
                else:  # a virtual clock wakes the wait at its deadline
                    found = self._kernel_events_until(parked, remaining, maxevents)
            finally:
                self._interest.unpark(parked)
            if found:
                room = maxevents - len(found)
                if room:
                    found += self._interest.ready(room)
                return found
            if remaining is not None and _clock.now() >= deadline:
                return found

    def _kernel_events_until(self, parked: _Parked, timeout: float,
                             maxevents: int) -> list[tuple[int, int]]:
        found = self._kernel_events(0, maxevents)  # ready already: no wait to tell
        if found:
            return found
        clock = _clock.current
        sleeper = clock.enter(parked, timeout, self._wakeup.wake, "epoll.poll",
                              woken=self._kernel_readable)
        if sleeper is None:  # woken (or a kernel number ready) since the look above
            return self._kernel_events(0, maxevents)
        try:
            return self._kernel_events(None, maxevents)
        finally:
            clock.leave(parked, sleeper)

    def _kernel_readable(self) -> bool:
        """Whether the kernel half has an event (its epoll number polls readable),
        without taking it: a system call and no lock, for the clock's ``woken``."""
        return bool(_kernel_select([self._kernel.fileno()], [], [], 0)[0])

    def _kernel_events(self, timeout: float | None, maxevents: int) -> list[tuple[int, int]]:
        """The kernel half's events, without the wake-up (drained when it is there;
        written again if the number is shown and a virtual socket is still ready)."""
        events = self._kernel.poll(timeout, maxevents)
        if (self._without_wakeup(events) and self._shown is not None
                and self._interest.peek()):
            self._wakeup.wake()
        return events

    def _without_wakeup(self, events: list[tuple[int, int]]) -> bool:
        """Take the wake-up out of ``events`` (draining it); True if it was there."""
        wakeup = self._wakeup
        if wakeup is not None:
            for index, (fd, _) in enumerate(events):
                if fd == wakeup.fd:
                    wakeup.drain()
                    del events[index]
                    return True
        return False

