"""The network's scheduler: packets and timers as events in time, run at their time.

A perfect network never uses it.  Conditions (latency, bandwidth, loss) and TCP's timers
(retransmission, SYN retries, keepalive) put events here; one thread per network runs
them in time order under the network's lock, then wakes the sockets they changed, the
same way an op does.  The thread exists only while events are pending, so an idle
network holds no thread, and it is started again after a fork.

Time comes from the clock (``clock.py``): on the real clock an event waits for its
moment; a virtual clock may jump to it.  An event is never run early.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Any

from ... import clock as _clock

__all__ = ["Scheduler", "Timer"]


def _dropped(*args: Any) -> None:
    """What a cancelled timer holds instead of its callback."""


class Timer:
    """One scheduled call; ``cancel()`` keeps it from running (a no-op once it ran)."""

    __slots__ = ("when", "callback", "args", "cancelled", "scheduler")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple,
                 scheduler: Scheduler | None = None) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self.scheduler = scheduler

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # What it would have called goes at once (a cancelled keepalive timer is two
        # hours away: it must not keep its socket alive, nor the network's thread).
        self.callback = _dropped
        self.args = ()
        if self.scheduler is not None:
            self.scheduler._cancelled()

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer at {self.when:.6f} {self.callback.__qualname__}{state}>"


class Scheduler:
    """Runs ``callback(touched, *args)`` at ``when`` under ``lock``; each socket the
    callback appends to ``touched`` is passed to ``notify`` after the lock is released.
    """

    def __init__(self, lock: threading.RLock, notify: Callable[[Any], None],
                 clock: Any = None) -> None:
        self.lock = lock
        self.notify = notify
        self.clock = clock if clock is not None else _clock.REAL
        self._events: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()  # equal times run in the order scheduled
        self._wakeup = threading.Condition(lock)
        self._thread: threading.Thread | None = None
        self.closed = False

    def now(self) -> float:
        return self.clock.now()

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(when, callback, args, self)
        with self.lock:
            if self.closed:  # the network's time has ended: nothing happens any more
                timer.cancelled = True
                return timer
            first = not self._events or when < self._events[0][0]
            heapq.heappush(self._events, (when, next(self._order), timer))
            thread = self._thread
            if thread is None or not thread.is_alive():
                self._start()
            elif first:
                self.clock.notify(self._wakeup)
        return timer

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self.call_at(self.clock.now() + delay, callback, *args)

    def close(self) -> None:
        """Drop every pending event and let the thread end: what a virtual clock's
        network does when its ``use()`` ends (nothing can make its time pass any
        more; left alone its timers would run at random moments of later code)."""
        with self.lock:
            self.closed = True
            self._events.clear()
            if self._thread is not None:
                self.clock.notify(self._wakeup)

    def _cancelled(self) -> None:
        """A timer was cancelled: cancelled events at the head of the queue go now, so
        that the thread waits for the next live one (or ends when none is left) and a
        clock that jumps never aims at them."""
        with self.lock:
            events = self._events
            if events and events[0][2].cancelled:
                while events and events[0][2].cancelled:
                    heapq.heappop(events)
                if self._thread is not None:
                    self.clock.notify(self._wakeup)

    def pending(self) -> int:
        """How many events wait (a cancelled one until it is at the head or due)."""
        with self.lock:
            return len(self._events)

    def next_time(self) -> float | None:
        """When the next event is due, or None."""
        with self.lock:
            return self._events[0][0] if self._events else None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="posix-socket network",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        events, clock = self._events, self.clock
        while True:
            touched: list = []
            with self.lock:
                while True:
                    while events and events[0][2].cancelled:
                        heapq.heappop(events)
                    if not events:
                        self._thread = None  # started again by the next call_at
                        return
                    now = clock.now()
                    if events[0][0] <= now:
                        break
                    clock.wait(self._wakeup, events[0][0] - now)
                while events and events[0][0] <= now:
                    timer = heapq.heappop(events)[2]
                    if not timer.cancelled:
                        timer.cancelled = True  # ran: a later cancel changes nothing
                        timer.callback(touched, *timer.args)
            for sock in touched:
                self.notify(sock)
