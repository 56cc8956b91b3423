"""Conditions of the paths between hosts: latency, bandwidth, loss, partitions.

A ``Link`` holds the conditions of the path between two hosts (both directions unless
``both_ways=False``); the network's defaults apply to every path without a link of its
own.  A ``Path`` is one direction between two hosts as the protocols see it: whether it
is perfect (then they take the direct path and pay nothing), whether it is blocked (a
partition or a link that is down: packets vanish), and the draws that decide each
packet's fate, from the link's own random stream so that traffic on one link never
changes what happens on another.

Units: seconds, bytes per second, probabilities in 0..1.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Callable
from typing import Any

__all__ = ["Conditions", "Link", "Path", "FIELDS"]

FIELDS = ("latency", "jitter", "bandwidth", "loss", "duplicate", "reorder", "mtu", "down")
_DEFAULTS = {"latency": 0.0, "jitter": 0.0, "bandwidth": None, "loss": 0.0,
             "duplicate": 0.0, "reorder": 0.0, "mtu": None, "down": False}
_PROBABILITIES = ("loss", "duplicate", "reorder")
MIN_MTU = 68  # IPv4's minimum (RFC 791); IPv6 paths need 1280 (checked where used)
MAX_MTU = 65536  # loopback's


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return value


def checked(name: str, value: Any) -> Any:
    """``value`` for condition ``name`` in its stored form, or the error saying why not."""
    if name in ("latency", "jitter"):
        seconds = _number(name, value)
        if seconds < 0:
            raise ValueError(f"{name} must be >= 0 seconds, not {value!r}")
        return seconds
    if name in _PROBABILITIES:
        share = _number(name, value)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be a probability in 0..1, not {value!r}")
        return share
    if name == "bandwidth":
        if value is None:
            return None
        rate = _number(name, value)
        if rate <= 0:
            raise ValueError(f"bandwidth must be > 0 bytes per second (None: unlimited), "
                             f"not {value!r}")
        return rate
    if name == "mtu":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"mtu must be an int, not {type(value).__name__}")
        if not MIN_MTU <= value <= MAX_MTU:
            raise ValueError(f"mtu must be in {MIN_MTU}..{MAX_MTU} bytes, not {value!r}")
        return value
    if name == "down":
        if not isinstance(value, bool):
            raise TypeError(f"down must be a bool, not {type(value).__name__}")
        return value
    raise TypeError(f"unknown condition {name!r} (known: {', '.join(FIELDS)})")


class Conditions:
    """The conditions of a path.  Setting an attribute checks it and takes effect at
    once, for traffic already flowing too (``on_change`` tells the network)."""

    __slots__ = (*FIELDS, "_on_change")
    latency: float
    jitter: float
    bandwidth: float | None
    loss: float
    duplicate: float
    reorder: float
    mtu: int | None
    down: bool

    def __init__(self, on_change: Callable[[], None] | None = None, **values: Any) -> None:
        settled = {name: checked(name, value) for name, value in values.items()}
        object.__setattr__(self, "_on_change", None)
        for name in FIELDS:
            object.__setattr__(self, name, settled.get(name, _DEFAULTS[name]))
        object.__setattr__(self, "_on_change", on_change)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in FIELDS:
            raise AttributeError(f"{type(self).__name__!r} object has no condition {name!r}")
        object.__setattr__(self, name, checked(name, value))
        if self._on_change is not None:
            self._on_change()

    def update(self, **values: Any) -> None:
        """Set several conditions at once: all are checked before any changes."""
        settled = {name: checked(name, value) for name, value in values.items()}
        for name, value in settled.items():
            object.__setattr__(self, name, value)
        if self._on_change is not None:
            self._on_change()

    @property
    def perfect(self) -> bool:
        """Nothing to apply: a packet arrives at once, whole, exactly once."""
        return (not self.latency and not self.jitter and self.bandwidth is None
                and not self.loss and not self.duplicate and not self.reorder
                and self.mtu is None and not self.down)

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def __repr__(self) -> str:
        changed = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS
                            if getattr(self, name) != _DEFAULTS[name])
        return f"{type(self).__name__}({changed})"


class Link(Conditions):
    """The conditions between hosts ``a`` and ``b`` (a == b: that host's loopback).

    ``random`` is the link's own random stream: the same seed and the same sends give
    the same fates.  ``drops`` counts the packets its queues dropped (both ways)."""

    __slots__ = ("a", "b", "both_ways", "random", "drops")

    def __init__(self, a: Any, b: Any, both_ways: bool, rng: random.Random,
                 on_change: Callable[[], None] | None = None, **values: Any) -> None:
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "both_ways", both_ways)
        object.__setattr__(self, "random", rng)
        object.__setattr__(self, "drops", 0)
        super().__init__(on_change, **values)

    def count_drop(self) -> None:
        object.__setattr__(self, "drops", self.drops + 1)  # not a condition: no on_change

    def __repr__(self) -> str:
        arrow = "<->" if self.both_ways else "->"
        conditions = super().__repr__().partition("(")[2]
        return f"Link({self.a.label} {arrow} {self.b.label}: {conditions}"


class Path:
    """One direction between two hosts, as TCP and UDP see it.

    ``perfect`` is kept up to date by the network whenever its configuration changes,
    so the protocols' hot path reads one attribute.  The rest is read only when it is
    not perfect."""

    __slots__ = ("source", "destination", "link", "defaults", "perfect", "blocked",
                 "random", "busy_until", "queue", "drops", "last_arrival")

    def __init__(self, source: Any, destination: Any) -> None:
        self.source = source
        self.destination = destination
        self.link: Link | None = None
        self.defaults: Conditions | None = None
        self.perfect = True
        self.blocked = False  # partitioned, or the link is down
        self.random: random.Random | None = None
        self.busy_until = 0.0  # when the last byte queued on this direction leaves
        # When each datagram waiting to leave will have left (UDP's link queue), and
        # how many packets this direction dropped because that queue was full.
        self.queue: collections.deque[float] = collections.deque()
        self.drops = 0
        self.last_arrival = 0.0  # of the last datagram paced by the bandwidth (UDP)

    @property
    def conditions(self) -> Conditions:
        return self.link if self.link is not None else self.defaults

    @property
    def mtu(self) -> int | None:
        return self.conditions.mtu

    def delay(self) -> float:
        """One packet's latency: the link's, plus a jitter drawn in ±jitter."""
        conditions = self.conditions
        jitter = conditions.jitter
        if not jitter:
            return conditions.latency
        return max(0.0, conditions.latency + self.random.uniform(-jitter, jitter))

    def lost(self) -> bool:
        """Whether a packet sent now vanishes: blocked, or a loss draw."""
        if self.blocked:
            return True
        loss = self.conditions.loss
        return bool(loss) and self.random.random() < loss

    def chance(self, probability: float) -> bool:
        return bool(probability) and self.random.random() < probability

    def depart(self, size: int, now: float) -> float:
        """When a packet of ``size`` bytes handed over at ``now`` has left: after the
        ones queued before it, at the link's bandwidth (now, when unlimited)."""
        bandwidth = self.conditions.bandwidth
        if bandwidth is None:
            return now
        start = self.busy_until if self.busy_until > now else now
        self.busy_until = start + size / bandwidth
        return self.busy_until

    def __repr__(self) -> str:
        state = "perfect" if self.perfect else repr(self.conditions)
        if self.blocked:
            state += ", blocked"
        return f"<Path {self.source.label} -> {self.destination.label}: {state}>"
