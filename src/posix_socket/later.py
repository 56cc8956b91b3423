"""Work a finalizer cannot do where it runs, done as soon as the locks it needs are free.

The cyclic garbage collector runs finalizers in whatever thread allocates at the moment,
which may be inside a driver call holding the driver's lock.  An unclosed socket's
finalizer then closes it, which needs that same lock: waiting for it there would wait
for ourselves.  Reads a finalizer makes (``repr`` asks ``getsockname``) simply re-enter
the drivers' re-entrant locks, but a close must not run in the middle of another op's
critical section (its state half changed), so it is handed to a new thread, which
blocks on the lock until the op holding it is over, a moment later.

The thread is a bare ``_thread`` one: starting it takes no lock of the ``threading``
module (which the finalizer might have interrupted), and it is not a ``Thread`` that
test harnesses would count as left running.  This happens only when a collection
finalizes an unclosed socket inside a call of the same driver, so a thread each time
costs nothing that matters.
"""

from __future__ import annotations

import _thread
from collections.abc import Callable
from typing import Any

__all__ = ["run_later", "held_here"]


def held_here(lock: Any) -> bool:
    """Whether this thread holds ``lock`` (a ``threading.RLock``)."""
    return lock._is_owned()


def run_later(function: Callable[..., Any], *args: Any) -> None:
    """Call ``function(*args)`` soon, on a thread of its own.  What it raises goes to
    ``sys.unraisablehook``, as a finalizer's exception would."""
    _thread.start_new_thread(function, args)
