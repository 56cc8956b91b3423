"""The clock a virtual network keeps its time by.

Network timing (delivery times, retransmission and keepalive timers, TIME_WAIT) asks a
clock, never ``time`` directly, so that a clock which jumps (virtual time) can stand in
for the wall without touching the protocols.  ``RealClock`` is the wall's monotonic clock.
"""

from __future__ import annotations

import threading
import time

__all__ = ["RealClock"]


class RealClock:
    """Monotonic seconds of the wall; waiting takes as long as it says."""

    name = "real"

    def now(self) -> float:
        return time.monotonic()

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on ``condition`` (its lock held) until notified or ``timeout`` passes."""
        condition.wait(timeout)

    def __repr__(self) -> str:
        return "RealClock()"
