"""Clocks: what the layer and a virtual network keep their time by.

Every wait of the layer (a blocking call, poll/select/epoll, the network's scheduler)
asks the current clock for the time and blocks through it, never ``time`` directly, so a
clock that jumps can stand in for the wall without touching the protocols.

``RealClock`` is the wall: waiting takes as long as it says.

``VirtualClock`` stands still while any thread runs, and jumps to the next deadline (a
timer, a delivery, a timeout) when every thread waits.  A thread "waits" when it blocks
through the clock (``block``: the layer's calls, and under ``patch()`` time.sleep and the
timed waits of threading and queue), or when it sits in the kernel without using the
CPU (blocked in C code, a lock taken without timeout, a file read): the clock samples
each such thread's CPU time (/proc/self/task/<tid>/schedstat) and counts it as waiting
once it has used none for ``IDLE_INTERVAL`` of real time.  When every thread blocks
through the clock with no deadline and no event is pending, nothing can ever happen:
the clock raises ``Deadlock`` in every waiting thread, saying where each waits.

A blocked thread is woken by its waker through ``release``, so the clock knows at once
that it runs again (a jump never passes a thread that was woken and has not run yet).
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

__all__ = ["RealClock", "VirtualClock", "Deadlock", "current", "now", "use_clock", "REAL",
           "condition_wait", "condition_notify",
           "real_monotonic", "real_time", "real_sleep", "EPOCH", "IDLE_INTERVAL"]

# The real clock's functions, kept before anything can patch ``time`` or ``threading``
# (under virtual time ``patch()`` replaces Condition.wait/notify for every thread; a
# network on the real clock must keep the real ones).
real_monotonic = time.monotonic
real_time = time.time
real_sleep = time.sleep
_real_condition_wait = threading.Condition.wait
_real_condition_notify = threading.Condition.notify

EPOCH = 1735689600.0  # what time.time() says at a virtual clock's start: 2025-01-01 UTC
START = 1000.0  # a virtual clock's monotonic reading at its start (never 0: see below)
KERNEL_READINESS_THREAD = "posix-socket AF_UNIX kernel readiness"
IDLE_INTERVAL = 0.002  # real seconds a thread outside the clock must use no CPU
_IDLE_CPU_NS = 200_000  # CPU time a "still" thread may use in one sample (bookkeeping)


class Deadlock(RuntimeError):
    """Every thread waits through the virtual clock, none with a deadline, and no event
    is pending: the program can never go on."""


class RealClock:
    """Monotonic seconds of the wall; waiting takes as long as it says."""

    name = "real"

    def now(self) -> float:
        return real_monotonic()

    def time(self) -> float:
        return real_time()

    def block(self, lock: threading.Lock, timeout: float | None, what: str = "") -> bool:
        """Acquire ``lock`` (a wake-up lock another thread releases), giving up after
        ``timeout`` seconds; True if it was acquired."""
        return lock.acquire(True, -1 if timeout is None else max(timeout, 0.0))

    def release(self, lock: threading.Lock) -> None:
        """Wake the thread blocked on ``lock`` (a no-op if it was released already)."""
        try:
            lock.release()
        except RuntimeError:
            pass

    deadlocked = False

    def awake(self, key: object) -> None:
        """The thread waiting on ``key`` is being woken (nothing to track here)."""

    def sleep(self, seconds: float) -> None:
        real_sleep(seconds)

    def wait(self, condition: threading.Condition, timeout: float | None) -> bool:
        """``condition.wait(timeout)`` (its lock held), the real one even while a
        virtual clock's ``patch()`` has replaced it."""
        return _real_condition_wait(condition, timeout)

    def notify(self, condition: threading.Condition) -> None:
        _real_condition_notify(condition)

    def __repr__(self) -> str:
        return "RealClock()"


class _Sleeper:
    __slots__ = ("deadline", "wake", "thread", "native_id", "timed_out", "what", "ready")

    def __init__(self, deadline: float | None, wake: Callable[[], None], what: str,
                 ready: Callable[[], bool] | None = None) -> None:
        self.deadline = deadline
        self.wake = wake
        self.ready = ready  # for a wait nobody wakes (Thread.join): has it ended?
        self.thread = threading.get_ident()
        self.native_id = threading.get_native_id()
        self.timed_out = False
        self.what = what


class VirtualClock:
    """Time that passes only when every thread waits (see the module doc)."""

    name = "virtual"

    def __init__(self, epoch: float = EPOCH) -> None:
        self.epoch = epoch
        self._now = START
        self._lock = threading.Lock()
        self._sleepers: dict[object, _Sleeper] = {}  # key (a lock, a waiter) -> sleeper
        self._watching = False  # whether the monitor thread runs
        self._deadlock: str | None = None
        self.jumps = 0

    # -- reading ---------------------------------------------------------------------

    def now(self) -> float:
        return self._now

    def time(self) -> float:
        return self.epoch + (self._now - START)

    # -- waiting ---------------------------------------------------------------------

    def block(self, lock: threading.Lock, timeout: float | None, what: str = "") -> bool:
        """Acquire the wake-up ``lock``, giving up after ``timeout`` seconds of this
        clock; True if a waker released it, False on timeout (then the clock released
        it, and it is held again: only for locks used to wake one thread)."""
        if lock.acquire(False):
            return True
        if timeout is not None and timeout <= 0:
            return False
        sleeper = self.enter(lock, timeout, lambda: _release(lock), what,
                             woken=lambda: lock.acquire(False))
        if sleeper is None:
            return True
        lock.acquire()
        return not self.leave(lock, sleeper)

    def enter(self, key: object, timeout: float | None, wake: Callable[[], None],
              what: str = "", ready: Callable[[], bool] | None = None,
              woken: Callable[[], bool] | None = None) -> _Sleeper | None:
        """Register the calling thread as waiting on ``key`` until ``timeout`` seconds
        of this clock pass (None: no deadline); ``wake`` wakes it.  The caller then
        blocks for real and calls ``leave`` once it runs again.

        ``woken`` asks, under the clock's lock, whether the wake came already (between
        the caller's last look and this call): then nothing is registered and None is
        returned.  Without that look a thread whose waker had woken it and gone to
        wait itself would count as waiting, and the clock could jump past it while it
        runs (a server thread that saw its handler thread start, run and end before it
        registered its wait for the start let 16 clients time out at once).  It must
        take no lock of the layer: the clock's lock is held."""
        with self._lock:
            self._check_deadlock()
            if woken is not None and woken():
                return None
            deadline = None if timeout is None else self._now + timeout
            sleeper = _Sleeper(deadline, wake, what or "a wait", ready)
            self._sleepers[key] = sleeper
            self._settle()
        return sleeper

    def leave(self, key: object, sleeper: _Sleeper) -> bool:
        """The thread runs again: whether its deadline woke it.  Raises ``Deadlock``
        if the clock found the program deadlocked."""
        with self._lock:
            if self._sleepers.get(key) is sleeper:
                del self._sleepers[key]
            self._check_deadlock()
        return sleeper.timed_out

    def release(self, lock: threading.Lock) -> None:
        """Wake the thread blocked on the wake-up ``lock``: from now it counts as
        running (a no-op if it was woken already)."""
        with self._lock:
            self._sleepers.pop(lock, None)
        _release(lock)

    def awake(self, key: object) -> None:
        """The thread waiting on ``key`` (the key its ``enter`` named) is being woken by
        its own means: from now it counts as running."""
        with self._lock:
            self._sleepers.pop(key, None)

    def wait(self, condition: threading.Condition, timeout: float | None) -> bool:
        """``condition.wait(timeout)`` in this clock's time (its lock held)."""
        return condition_wait(condition, timeout, self)

    def notify(self, condition: threading.Condition) -> None:
        condition_notify(condition, 1, self)

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            real_sleep(0)  # still a chance for other threads to run
            return
        lock = threading.Lock()
        lock.acquire()
        self.block(lock, seconds, "time.sleep")

    # -- the jump ------------------------------------------------------------------------

    def _settle(self) -> None:
        """Jump if every thread waits now; else make sure the monitor watches the
        threads outside the clock.  Called with ``_lock`` held."""
        outside = self._outside()
        if not outside:
            self._jump()
        elif not self._watching:
            # A bare thread: threading's start() would wait on a Condition (through
            # this clock, whose lock is held), and it stays out of enumerate().
            self._watching = True
            _thread.start_new_thread(self._watch, ())

    def _outside(self) -> list[threading.Thread]:
        """Live threads not waiting through the clock (the monitor aside)."""
        waiting = {sleeper.thread for sleeper in self._sleepers.values()}
        # enumerate() lists started threads and those starting (not yet alive: the
        # starter waits for them, so they count as running).
        return [thread for thread in threading.enumerate() if thread.ident not in waiting]

    def _wake_ready(self) -> bool:
        """Wake the waits nobody wakes whose end came (a joined thread that ended)."""
        done = [(key, s) for key, s in self._sleepers.items()
                if s.ready is not None and s.ready()]
        for key, sleeper in done:
            del self._sleepers[key]
            sleeper.wake()
        return bool(done)

    def _jump(self) -> None:
        """Every thread waits: move to the earliest deadline and wake who is due."""
        if self._wake_ready():
            return
        deadlines = [s.deadline for s in self._sleepers.values() if s.deadline is not None]
        if not deadlines:
            if self._sleepers and all(_infrastructure(t) for t in self._outside()):
                self._declare_deadlock()
            return
        target = min(deadlines)
        if target > self._now:
            self._now = target
            self.jumps += 1
        due = [(key, s) for key, s in self._sleepers.items()
               if s.deadline is not None and s.deadline <= self._now]
        for key, sleeper in due:
            del self._sleepers[key]
            sleeper.timed_out = True
            sleeper.wake()

    def _watch(self) -> None:
        """While threads outside the clock exist, jump once each of them has used no
        CPU for ``IDLE_INTERVAL`` (blocked somewhere the clock cannot see)."""
        while True:
            with self._lock:
                if not self._sleepers:
                    self._watching = False
                    return
                if self._wake_ready():
                    continue
                outside = self._outside()
                if not outside:
                    self._jump()
                    continue
                before = {t.native_id: _cpu_ns(t.native_id) for t in outside}
                generation = dict(self._sleepers)
            real_sleep(IDLE_INTERVAL)
            with self._lock:
                if self._sleepers != generation:
                    continue  # someone started or stopped waiting: look again
                still = all(_still(used, _cpu_ns(native)) for native, used in before.items())
                if still and self._outside_ids() == set(before):
                    self._jump()

    def _outside_ids(self) -> set[int | None]:
        return {thread.native_id for thread in self._outside()}

    # -- deadlock --------------------------------------------------------------------

    def _declare_deadlock(self) -> None:
        frames = sys._current_frames()
        lines = ["every thread waits and nothing can wake them (virtual clock at "
                 f"{self._now - START:.6f} s):"]
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        for sleeper in self._sleepers.values():
            where = _where(frames.get(sleeper.thread))
            lines.append(f"  thread {names.get(sleeper.thread, sleeper.thread)!r} waits in "
                         f"{sleeper.what}{where}")
        self._deadlock = "\n".join(lines)
        for sleeper in list(self._sleepers.values()):
            sleeper.wake()
        self._sleepers.clear()

    @property
    def deadlocked(self) -> bool:
        """Whether it found the program deadlocked (its waits raise ``Deadlock``)."""
        return self._deadlock is not None

    def _check_deadlock(self) -> None:
        if self._deadlock is not None:
            raise Deadlock(self._deadlock)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now - START:.6f}, jumps={self.jumps})"


def condition_wait(condition: threading.Condition, timeout: float | None,
                   clock: RealClock | VirtualClock) -> bool:
    """threading.Condition.wait, its timed part through ``clock`` (the waiter is a
    fresh lock in the condition's list, as CPython's own)."""
    if not condition._is_owned():  # type: ignore[attr-defined]
        raise RuntimeError("cannot wait on un-acquired lock")
    waiter = _allocate_lock()
    waiter.acquire()
    condition._waiters.append(waiter)  # type: ignore[attr-defined]
    saved = condition._release_save()  # type: ignore[attr-defined]
    notified = False
    try:
        notified = clock.block(waiter, timeout, "Condition.wait")
        return notified
    finally:
        condition._acquire_restore(saved)  # type: ignore[attr-defined]
        if not notified:
            try:
                condition._waiters.remove(waiter)  # type: ignore[attr-defined]
            except ValueError:
                pass


def condition_notify(condition: threading.Condition, n: int,
                     clock: RealClock | VirtualClock) -> None:
    """threading.Condition.notify: wake up to ``n`` waiters through ``clock``."""
    if not condition._is_owned():  # type: ignore[attr-defined]
        raise RuntimeError("cannot notify on un-acquired lock")
    waiters = condition._waiters  # type: ignore[attr-defined]
    while waiters and n > 0:
        waiter = waiters.popleft()
        clock.release(waiter)
        n -= 1


_allocate_lock = threading.Lock


def _still(before: int | None, after: int | None) -> bool:
    """Whether a thread sampled twice stayed off the CPU (gone counts as still)."""
    if before == -1 or after == -1:
        return False
    if before is None or after is None:
        return True
    return after - before <= _IDLE_CPU_NS


def _infrastructure(thread: threading.Thread) -> bool:
    """The layer's AF_UNIX kernel readiness watcher, running: idle, it waits for the
    program, never the other way round, so it does not keep a deadlock from being
    declared.  (The network's scheduler thread is no such thing: while it is not
    waiting through the clock it is starting or running events.)"""
    return (thread.daemon and thread.name == KERNEL_READINESS_THREAD
            and thread.is_alive())


def _release(lock: threading.Lock) -> None:
    try:
        lock.release()
    except RuntimeError:  # released already: the thread is awake
        pass


def _cpu_ns(native_id: int | None) -> int | None:
    """CPU time the thread has used (ns), or None when the kernel does not say; -1
    while it is runnable (state R: on a CPU or waiting for one, so busy even if the
    sample saw no CPU time pass, as on a loaded machine).  A thread that is starting
    (listed by threading, no native id yet: the kernel may not even have made it)
    counts as runnable too: it is about to run, however long the machine takes to
    get to it."""
    if native_id is None:
        return -1
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as file:
            state = file.read().rpartition(b")")[2].split()[0]
        if state == b"R":
            return -1
        with open(f"/proc/self/task/{native_id}/schedstat", "rb") as file:
            return int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _where(frame) -> str:
    if frame is None:
        return ""
    skipped = (os.path.dirname(__file__), os.path.dirname(threading.__file__))
    stack = traceback.extract_stack(frame)
    for entry in reversed(stack):  # the program's own frame, past the library's
        if not entry.filename.startswith(skipped):
            return f" ({entry.filename}:{entry.lineno} in {entry.name})"
    return ""


# -- the clock the layer's own waits use ---------------------------------------------------

REAL = RealClock()
current: RealClock | VirtualClock = REAL


def now() -> float:
    """The current clock's monotonic seconds: every deadline of the layer."""
    return current.now()


class use_clock:
    """Make ``clock`` the layer's clock until ``restore()`` (or the ``with`` ends)."""

    def __init__(self, clock: RealClock | VirtualClock) -> None:
        global current
        self._saved = current
        self.clock = clock
        current = clock

    def restore(self) -> None:
        global current
        if current is self.clock:
            current = self._saved

    def __enter__(self) -> use_clock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()
