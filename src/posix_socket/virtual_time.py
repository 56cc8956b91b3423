"""The process's clocks on a virtual clock: what ``patch()`` adds when the network in use
runs on virtual time.

``time``'s clocks and sleep, the timed waits of ``threading`` (Condition, and through it
Event, Semaphore, Barrier; Thread.join) and ``queue`` follow ``clock.current``; the
layer's own waits (blocking calls, select/poll/epoll, selectors, so asyncio's loop and
socketserver) follow it already.  Not virtual: ``Lock.acquire(timeout=)`` and
``RLock.acquire(timeout=)`` on locks (C code), ``datetime.now()`` (it reads the system
clock in C), ``os.times()``, ``resource`` usage, file timestamps, and anything a C
extension times itself.  ``clock.real_time``/``clock.real_monotonic`` read the wall.
"""

from __future__ import annotations

import threading
import time as _time_module
from types import ModuleType

from . import clock as _clock

__all__ = ["replacements"]


def time() -> float:
    return _clock.current.time()


def time_ns() -> int:
    return int(_clock.current.time() * 1e9)


def monotonic() -> float:
    return _clock.current.now()


def monotonic_ns() -> int:
    return int(_clock.current.now() * 1e9)


def sleep(seconds: float) -> None:
    if not isinstance(seconds, (int, float)):
        raise TypeError(f"'{type(seconds).__name__}' object cannot be interpreted as an "
                        "integer or float")
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    _clock.current.sleep(seconds)


def _condition_wait(self: threading.Condition, timeout: float | None = None) -> bool:
    return _clock.condition_wait(self, timeout, _clock.current)


def _condition_notify(self: threading.Condition, n: int = 1) -> None:
    _clock.condition_notify(self, n, _clock.current)


_thread_join = threading.Thread.join


def _join(self: threading.Thread, timeout: float | None = None) -> None:
    clock = _clock.current
    if clock is _clock.REAL or not self.is_alive() or clock.deadlocked:
        _thread_join(self, timeout)  # (after a deadlock: the threads are ending)
        return
    if self is threading.current_thread():
        raise RuntimeError("cannot join current thread")
    # Through the clock even without a timeout: a join it can see lets it jump at once
    # (one it cannot see costs an idle interval of real time per jump).
    lock = threading.Lock()
    lock.acquire()
    sleeper = clock.enter(lock, None if timeout is None else max(timeout, 0.0),
                          lambda: _clock._release(lock), f"Thread.join({self.name})",
                          ready=lambda: not self.is_alive())
    lock.acquire()
    clock.leave(lock, sleeper)
    if not self.is_alive():
        _thread_join(self, 0)  # reap it, as join does


def replacements() -> list[tuple[ModuleType | type, str, object]]:
    """(module or class, name, replacement) for ``patch()``."""
    found: list[tuple[ModuleType | type, str, object]] = [
        (_time_module, "time", time), (_time_module, "time_ns", time_ns),
        (_time_module, "monotonic", monotonic), (_time_module, "monotonic_ns", monotonic_ns),
        (_time_module, "perf_counter", monotonic),
        (_time_module, "perf_counter_ns", monotonic_ns),
        (_time_module, "sleep", sleep),
        (threading.Condition, "wait", _condition_wait),
        (threading.Condition, "notify", _condition_notify),
        (threading.Thread, "join", _join),
        (threading, "_time", monotonic),
    ]
    import queue
    found.append((queue, "time", monotonic))
    return found
