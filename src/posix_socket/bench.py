"""Benchmarks: the layer and the stdlib doing the same work in the same run.

Each row times one workload through the layer and through the stdlib/kernel, in
interleaved rounds (so drift on a shared machine hits both sides alike), keeps each
side's best round, and reports the ratio.  Nothing here is asserted: the numbers are for
people, printed by ``posix-socket bench``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import posix

__all__ = ["Row", "Result", "ROWS", "run"]

Timer = Callable[[int], float]  # iterations -> seconds


@dataclass(frozen=True)
class Row:
    name: str
    unit: str  # what one iteration is
    goal: str  # human-readable goal for the ratio layer/stdlib
    max_ratio: float | None
    setup: Callable[[], tuple[Timer, Timer, Callable[[], None]]]
    iterations: int


@dataclass(frozen=True)
class Result:
    row: Row
    layer: float  # seconds per iteration, best round
    stdlib: float

    @property
    def ratio(self) -> float:
        return self.layer / self.stdlib

    @property
    def met(self) -> bool | None:
        return None if self.row.max_ratio is None else self.ratio <= self.row.max_ratio


def _host_ping_pong() -> tuple[Timer, Timer, Callable[[], None]]:
    """1-byte ping-pong on one host socketpair, same thread: posix.send/recv on the
    layer's numbers vs the stdlib's methods on socket objects over the same numbers."""
    a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sa, sb = socket.socket(fileno=a), socket.socket(fileno=b)
    send, recv = posix.send, posix.recv

    def layer(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            send(a, b"x")
            recv(b, 1)
            send(b, b"y")
            recv(a, 1)
        return time.perf_counter() - start

    def stdlib(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            sa.send(b"x")
            sb.recv(1)
            sb.send(b"y")
            sa.recv(1)
        return time.perf_counter() - start

    def cleanup() -> None:
        sa.detach()
        sb.detach()
        posix.close(a)
        posix.close(b)

    return layer, stdlib, cleanup


ROWS: list[Row] = [
    Row("host 1-byte ping-pong, same thread", "round trip", "<= 1.15x stdlib time", 1.15,
        _host_ping_pong, 10_000),
]


def run(rows: list[Row] | None = None, rounds: int = 15, scale: float = 1.0,
        progress: Callable[[str], None] | None = None) -> Iterator[Result]:
    """Time each row; yields one Result per row as it finishes."""
    for row in rows if rows is not None else ROWS:
        layer_timer, stdlib_timer, cleanup = row.setup()
        n = max(1, int(row.iterations * scale))
        try:
            layer_timer(max(1, n // 10))  # warm up both paths
            stdlib_timer(max(1, n // 10))
            best_layer = best_stdlib = float("inf")
            for index in range(rounds):
                if progress is not None:
                    progress(f"{row.name}: round {index + 1}/{rounds}")
                best_layer = min(best_layer, layer_timer(n) / n)
                best_stdlib = min(best_stdlib, stdlib_timer(n) / n)
        finally:
            cleanup()
        yield Result(row, best_layer, best_stdlib)
