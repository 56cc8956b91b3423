"""Benchmarks: the layer and the stdlib doing the same work in the same run.

Each row times one workload through the layer and through the stdlib/kernel, in
interleaved rounds (so drift on a shared machine hits both sides alike), keeps each
side's best round, and reports the ratio.  Nothing here is asserted: the numbers are for
people, printed by ``posix-socket bench``.
"""

from __future__ import annotations

import gc
import resource
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import descriptors, posix, readiness, registry
from .drivers.inet import InetDriver

__all__ = ["Row", "Result", "Unavailable", "ROWS", "run"]

Timer = Callable[[int], float]  # iterations -> seconds


@dataclass(frozen=True)
class Row:
    """One workload.  ``setup`` returns a measure for the layer, one for the stdlib and
    a cleanup; a measure takes a count and returns seconds (or bytes, for ``kind``
    "bytes") for that many iterations."""

    name: str
    unit: str  # what one iteration is
    goal: str  # human-readable goal
    max_ratio: float | None  # goal as layer/stdlib
    setup: Callable[[], tuple[Timer, Timer, Callable[[], None]]]
    iterations: int
    kind: str = "seconds"
    max_layer: float | None = None  # goal as an absolute amount per iteration
    baseline: str = "stdlib"  # what the second timer measures
    # Timed by a link's pace, not the CPU's: more rounds would only wait longer, and
    # there is nothing to warm up that a round of seconds would notice.
    paced: bool = False


class Unavailable(Exception):
    """A row cannot be measured on this machine (the message says why)."""


@dataclass(frozen=True)
class Result:
    row: Row
    layer: float  # seconds per iteration, best round
    stdlib: float
    unavailable: str | None = None  # why the row was not measured

    @property
    def ratio(self) -> float:
        return self.layer / self.stdlib

    @property
    def met(self) -> bool | None:
        if self.unavailable is not None:
            return None
        if self.row.max_ratio is not None:
            return self.ratio <= self.row.max_ratio
        if self.row.max_layer is not None:
            return self.layer <= self.row.max_layer
        return None


def _posix_ping_pong(a: int, b: int) -> Timer:
    """Timer: n 1-byte round trips between layer numbers ``a`` and ``b``."""
    send, recv = posix.send, posix.recv

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            send(a, b"x")
            recv(b, 1)
            send(b, b"y")
            recv(a, 1)
        return time.perf_counter() - start
    return run


def _stdlib_ping_pong(sa: socket.socket, sb: socket.socket) -> Timer:
    """Timer: the same round trips through the stdlib's socket methods."""
    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            sa.send(b"x")
            sb.recv(1)
            sb.send(b"y")
            sa.recv(1)
        return time.perf_counter() - start
    return run


def _host_ping_pong() -> tuple[Timer, Timer, Callable[[], None]]:
    """1-byte ping-pong on one host socketpair, same thread: posix.send/recv on the
    layer's numbers vs the stdlib's methods on socket objects over the same numbers."""
    a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sa, sb = socket.socket(fileno=a), socket.socket(fileno=b)

    def cleanup() -> None:
        sa.detach()
        sb.detach()
        posix.close(a)
        posix.close(b)

    return _posix_ping_pong(a, b), _stdlib_ping_pong(sa, sb), cleanup


def _tcp_pair_kernel() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    for sock in (client, accepted):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, accepted


def _tcp_pair_virtual(driver: InetDriver, visible: bool) -> tuple[int, int]:
    with registry.use("virtual"):
        registry.register_family(socket.AF_INET, driver, replace=True)
        server = posix.socket(socket.AF_INET, socket.SOCK_STREAM, visible=visible)
        posix.bind(server, ("127.0.0.1", 0))
        posix.listen(server, 8)
        client = posix.socket(socket.AF_INET, socket.SOCK_STREAM, visible=visible)
        posix.connect(client, posix.getsockname(server))
        accepted, _ = posix.accept(server, visible=visible)
        posix.close(server)
    return client, accepted


# The virtual rows run twice: on numbers kept inside the layer (``visible=False``, as
# the stdlib drop-in keeps its sockets until ``fileno()``), which the goals are about,
# and on numbers shown to the kernel's pollers, where each readiness change of a
# socket costs a system call on its kernel mirror.
INSIDE = "numbers kept in the layer"
SHOWN = "numbers shown to kernel pollers"


def _virtual_round_trip(visible: bool) -> tuple[Timer, Timer, Callable[[], None]]:
    """1-byte TCP round trip, same thread: posix.* on the virtual network vs the
    stdlib on the kernel's loopback."""
    a, b = _tcp_pair_virtual(InetDriver(), visible)
    ka, kb = _tcp_pair_kernel()

    def cleanup() -> None:
        for fd in (a, b):
            posix.close(fd)
        ka.close()
        kb.close()

    return _posix_ping_pong(a, b), _stdlib_ping_pong(ka, kb), cleanup


def _virtual_connect_accept_close(visible: bool) -> tuple[Timer, Timer, Callable[[], None]]:
    """connect + accept + close of both ends: posix.* on the virtual network vs the
    stdlib on the kernel's loopback."""
    driver = InetDriver()
    with registry.use("virtual"):
        registry.register_family(socket.AF_INET, driver, replace=True)
        server = posix.socket(socket.AF_INET, socket.SOCK_STREAM, visible=visible)
        posix.bind(server, ("127.0.0.1", 0))
        posix.listen(server, 128)
        address = posix.getsockname(server)
    kernel_server = socket.create_server(("127.0.0.1", 0), backlog=128)
    kernel_address = kernel_server.getsockname()

    def layer(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            client = posix.socket(socket.AF_INET, socket.SOCK_STREAM, visible=visible)
            posix.connect(client, address)
            accepted, _ = posix.accept(server, visible=visible)
            posix.close(client)
            posix.close(accepted)
        return time.perf_counter() - start

    def stdlib(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.connect(kernel_address)
            accepted, _ = kernel_server.accept()
            client.close()
            accepted.close()
        return time.perf_counter() - start

    def cleanup() -> None:
        posix.close(server)
        kernel_server.close()

    # The layer's sockets are made through the driver registered now, not at setup.
    def layer_registered(n: int) -> float:
        with registry.use("virtual"):
            registry.register_family(socket.AF_INET, driver, replace=True)
            return layer(n)

    return layer_registered, stdlib, cleanup


_CHUNK = 64 * 1024


def _stream(send: Callable[[bytes], object], receive: Callable[[int], int],
            megabytes: int) -> float:
    """Seconds to move ``megabytes`` MiB from a sender thread to this thread."""
    payload = bytes(_CHUNK)
    total = megabytes * 1024 * 1024
    sender = threading.Thread(
        target=lambda: [send(payload) for _ in range(total // _CHUNK)])
    start = time.perf_counter()
    sender.start()
    got = 0
    while got < total:
        got += receive(_CHUNK)
    sender.join()
    return time.perf_counter() - start


def _bulk_stream(visible: bool) -> tuple[Timer, Timer, Callable[[], None]]:
    """A bulk stream between two threads, per MiB: posix.send / posix.recv on the
    virtual network vs the stdlib's sendall / recv_into on the kernel's loopback."""
    a, b = _tcp_pair_virtual(InetDriver(), visible)
    ka, kb = _tcp_pair_kernel()
    buffer = bytearray(_CHUNK)

    def layer(n: int) -> float:
        return _stream(lambda data: posix.send(a, data),
                       lambda size: len(posix.recv(b, size)), n)

    def stdlib(n: int) -> float:
        return _stream(ka.sendall, lambda size: kb.recv_into(buffer, size), n)

    def cleanup() -> None:
        for fd in (a, b):
            posix.close(fd)
        ka.close()
        kb.close()

    return layer, stdlib, cleanup


# Rows over an imperfect link: what the conditions cost and how close the network comes
# to what they promise.  Each moves bytes from the first host to a host of its own.
PACED_ROUNDS = 3  # at most, for rows a link paces
LINK_RATE = 1_000_000  # bytes per second: a 1 MB/s link
LINK_LATENCY = 0.02  # seconds, one way
ROUND_TRIP_LATENCY = 0.01
LINK_LOSS = 0.05
LINK_MTU = 1500  # Ethernet's: a MB is some 690 segments, as on a real link
_MB = 1_000_000


def _conditioned_pair(**conditions: Any) -> tuple[int, int]:
    """A virtual TCP connection (client, accepted) from the first host to a second one,
    over a link with ``conditions`` (none: the perfect path between two hosts)."""
    with registry.use("virtual", seed=1) as preset:
        net = preset.network
        assert net is not None
        far = net.add_host("10.0.0.2", names=["far.bench"])
        if conditions:
            net.link(net.first_host, far, **conditions)
        server = posix.socket(socket.AF_INET, socket.SOCK_STREAM, visible=False)
        posix.bind(server, ("10.0.0.2", 0))
        posix.listen(server, 1)
        client = posix.socket(socket.AF_INET, socket.SOCK_STREAM, visible=False)
        posix.connect(client, posix.getsockname(server))
        accepted, _ = posix.accept(server, visible=False)
        posix.close(server)
    posix.setsockopt(client, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    posix.setsockopt(accepted, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, accepted


def _move(a: int, b: int, total: int) -> None:
    """Send ``total`` bytes on ``a`` from another thread; return when ``b`` has them."""
    payload = bytes(_CHUNK)

    def send() -> None:
        left = total
        while left:
            left -= posix.send(a, payload if left >= _CHUNK else payload[:left])

    sender = threading.Thread(target=send)
    sender.start()
    got = 0
    while got < total:
        data = posix.recv(b, _CHUNK)
        if not data:
            raise ConnectionError("the stream ended early")
        got += len(data)
    sender.join()


def _closing(*fds: int) -> Callable[[], None]:
    def cleanup() -> None:
        for fd in fds:
            posix.close(fd)
    return cleanup


def _link_throughput() -> tuple[Timer, Timer, Callable[[], None]]:
    """Seconds per MB through a 1 MB/s link with 20 ms latency and a 1500-byte MTU,
    against the ideal: the bytes at the link's rate plus one latency for the last of
    them (headers not counted: the link's rate is of payload bytes)."""
    a, b = _conditioned_pair(bandwidth=LINK_RATE, latency=LINK_LATENCY, mtu=LINK_MTU)

    def layer(n: int) -> float:
        start = time.perf_counter()
        _move(a, b, n * _MB)
        return time.perf_counter() - start

    def ideal(n: int) -> float:
        return n * _MB / LINK_RATE + LINK_LATENCY

    return layer, ideal, _closing(a, b)


def _link_round_trip() -> tuple[Timer, Timer, Callable[[], None]]:
    """1-byte round trips over a link with 10 ms latency each way, against the ideal
    20 ms."""
    a, b = _conditioned_pair(latency=ROUND_TRIP_LATENCY)

    def ideal(n: int) -> float:
        return n * 2 * ROUND_TRIP_LATENCY

    return _posix_ping_pong(a, b), ideal, _closing(a, b)


def _lossy_link_cpu() -> tuple[Timer, Timer, Callable[[], None]]:
    """CPU seconds (every thread of the process: sender, receiver, the network's
    scheduler) per MB delivered over a link with a 1500-byte MTU losing 5% of its
    packets, against the same bytes over the perfect path between two hosts."""
    lossy = _conditioned_pair(loss=LINK_LOSS, mtu=LINK_MTU)
    perfect = _conditioned_pair()

    def cpu(pair: tuple[int, int]) -> Timer:
        def run(n: int) -> float:
            start = time.process_time()
            _move(*pair, n * _MB)
            return time.process_time() - start
        return run

    return cpu(lossy), cpu(perfect), _closing(*lossy, *perfect)


def _idle_connection_heap() -> tuple[Timer, Timer, Callable[[], None]]:
    """Python heap held by idle connections (both ends, with their descriptors): the
    virtual network vs stdlib socket objects on the kernel's loopback."""

    def measure(connect: Callable[[], tuple], close: Callable[[object], None]) -> Timer:
        def run(n: int) -> float:
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                pairs = [connect() for _ in range(n)]
                gc.collect()
                held = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            for pair in pairs:
                for end in pair:
                    close(end)
            return held
        return run

    driver = InetDriver()
    with registry.use("virtual"):
        registry.register_family(socket.AF_INET, driver, replace=True)
        server = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        posix.bind(server, ("127.0.0.1", 0))
        posix.listen(server, 4096)
        address = posix.getsockname(server)
    kernel_server = socket.create_server(("127.0.0.1", 0), backlog=4096)

    def virtual_connection() -> tuple[int, int]:
        with registry.use("virtual"):
            registry.register_family(socket.AF_INET, driver, replace=True)
            client = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
            posix.connect(client, address)
            return client, posix.accept(server)[0]

    def kernel_connection() -> tuple[socket.socket, socket.socket]:
        client = socket.create_connection(kernel_server.getsockname())
        return client, kernel_server.accept()[0]

    def cleanup() -> None:
        posix.close(server)
        kernel_server.close()

    return (measure(virtual_connection, posix.close),
            measure(kernel_connection, socket.socket.close), cleanup)


def _dropin_round_trip() -> tuple[Timer, Timer, Callable[[], None]]:
    """The drop-in's own cost: 1-byte round trips through ``posix_socket.socket``
    objects vs ``posix.send``/``recv`` on the same virtual connection's numbers."""
    from . import socket as dropin

    a, b = _tcp_pair_virtual(InetDriver(), visible=False)
    sa = dropin.socket(socket.AF_INET, socket.SOCK_STREAM, fileno=a)
    sb = dropin.socket(socket.AF_INET, socket.SOCK_STREAM, fileno=b)

    def cleanup() -> None:
        sa.close()
        sb.close()

    return _stdlib_ping_pong(sa, sb), _posix_ping_pong(a, b), cleanup


def _dropin_host_ping_pong() -> tuple[Timer, Timer, Callable[[], None]]:
    """What a program pays on the host preset: 1-byte ping-pong through a drop-in
    ``socketpair()`` (the layer's numbers, the host driver) vs the stdlib's own
    ``socketpair()``, both kernel AF_UNIX streams."""
    from . import socket as dropin

    with registry.use("host"):
        la, lb = dropin.socketpair()
    ka, kb = socket.socketpair()

    def cleanup() -> None:
        for sock in (la, lb, ka, kb):
            sock.close()

    return _stdlib_ping_pong(la, lb), _stdlib_ping_pong(ka, kb), cleanup


def _dropin_connect_accept_close() -> tuple[Timer, Timer, Callable[[], None]]:
    """What a program pays per connection: ``create_connection`` + ``accept`` +
    ``close`` of both ends through the drop-in on the virtual network vs the stdlib
    on the kernel's loopback (numeric addresses; the names are resolved each time,
    as a program's calls do)."""
    from . import socket as dropin

    driver = InetDriver()
    with registry.use("virtual"):
        registry.register_family(socket.AF_INET, driver, replace=True)
        server = dropin.create_server(("127.0.0.1", 0), backlog=128)
    address = server.getsockname()
    kernel_server = socket.create_server(("127.0.0.1", 0), backlog=128)
    kernel_address = kernel_server.getsockname()

    def connections(create_connection: Callable[..., socket.socket],
                    listener: socket.socket, target: tuple[str, int], n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            client = create_connection(target)
            accepted, _ = listener.accept()
            client.close()
            accepted.close()
        return time.perf_counter() - start

    def layer(n: int) -> float:
        # The layer's sockets are made through the driver registered now.
        with registry.use("virtual"):
            registry.register_family(socket.AF_INET, driver, replace=True)
            return connections(dropin.create_connection, server, address, n)

    def cleanup() -> None:
        server.close()
        kernel_server.close()

    return (layer, partial(connections, socket.create_connection, kernel_server,
                           kernel_address), cleanup)


ECHO_CLIENTS = 100


async def _echo_requests(host: str, requests: int) -> float:
    """Seconds for ``requests`` line-echo requests spread over ``ECHO_CLIENTS``
    asyncio stream clients of one asyncio stream server (connections made first)."""
    import asyncio

    finished: list[asyncio.Future[None]] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        finished.append(done)
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()
        done.set_result(None)

    server = await asyncio.start_server(echo, host, 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await asyncio.open_connection(host, port) for _ in range(ECHO_CLIENTS)]

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     count: int) -> None:
        for _ in range(count):
            writer.write(b"ping\n")
            await writer.drain()
            if await reader.readline() != b"ping\n":
                raise AssertionError("echo server answered something else")

    share, extra = divmod(requests, ECHO_CLIENTS)
    start = time.perf_counter()
    await asyncio.gather(*(client(reader, writer, share + (index < extra))
                           for index, (reader, writer) in enumerate(clients)))
    elapsed = time.perf_counter() - start
    for _, writer in clients:
        writer.close()
    await asyncio.gather(*finished)  # each handler saw its client's EOF
    server.close()
    await server.wait_closed()
    return elapsed


def _asyncio_echo(kernel_pollers: bool | None) -> tuple[Timer, Timer, Callable[[], None]]:
    """asyncio streams, many clients, one echo server: the unmodified program on the
    patched stdlib and the virtual network vs the same program on kernel loopback.
    ``kernel_pollers`` as for ``patch()``: with True every socket asyncio asks the
    number of keeps a kernel mirror; None is what ``posix-socket run`` does."""
    import asyncio

    from .patching import patch

    def virtual(n: int) -> float:
        with registry.use("virtual"), patch(kernel_pollers=kernel_pollers):
            return asyncio.run(_echo_requests("127.0.0.1", n))

    def kernel(n: int) -> float:
        return asyncio.run(_echo_requests("127.0.0.1", n))

    return virtual, kernel, lambda: None


IDLE_SOCKETS = 10_000
FEW_IDLE_SOCKETS = 10


def _file_limit_at_least(count: int) -> None:
    """Raise the soft (and, with privilege, hard) descriptor limit to ``count``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= count:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, max(hard, count)))
    except (ValueError, OSError):
        raise Unavailable(f"needs {count} descriptors; the limit is {hard} "
                          "(raise it with ulimit -n)") from None


def _wake_up_over_idle() -> tuple[Timer, Timer, Callable[[], None]]:
    """One wake-up of a wait over many idle virtual sockets plus one active one,
    against the same over a few idle ones: an ``Interest`` (the layer's epoll) must
    cost what is ready, not what is watched.  Each iteration sends a byte on the active
    connection, waits, and reads it."""
    per_socket = 1  # numbers kept in the layer have no kernel mirror
    _file_limit_at_least(len(descriptors.open_numbers()) + 64
                         + per_socket * (IDLE_SOCKETS + FEW_IDLE_SOCKETS + 4))
    driver = InetDriver()
    opened: list[int] = []
    interests: list[readiness.Interest] = []
    with registry.use("virtual"):
        registry.register_family(socket.AF_INET, driver, replace=True)
        server = posix.socket(socket.AF_INET, socket.SOCK_STREAM, visible=False)
        opened.append(server)
        posix.bind(server, ("127.0.0.1", 0))
        posix.listen(server, 4096)
        address = posix.getsockname(server)

        def connection() -> tuple[int, int]:
            client = posix.socket(socket.AF_INET, socket.SOCK_STREAM, visible=False)
            opened.append(client)
            posix.connect(client, address)
            accepted = posix.accept(server, visible=False)[0]
            opened.append(accepted)
            return client, accepted

        def waiting_over(idle: int) -> Timer:
            interest = readiness.Interest()
            interests.append(interest)
            for _ in range(idle // 2):
                for fd in connection():
                    interest.register(descriptors.lookup(fd).watch, readiness.POLLIN, fd)
            active, passive = connection()
            interest.register(descriptors.lookup(passive).watch, readiness.POLLIN, passive)
            wait = interest.wait

            def run(n: int) -> float:
                start = time.perf_counter()
                for _ in range(n):
                    posix.send(active, b"x")
                    wait(None)
                    posix.recv(passive, 1)
                return time.perf_counter() - start
            return run

        try:
            many, few = waiting_over(IDLE_SOCKETS), waiting_over(FEW_IDLE_SOCKETS)
        except BaseException:
            for fd in opened:
                posix.close(fd)
            raise

    def cleanup() -> None:
        for interest in interests:
            interest.close()
        for fd in opened:
            posix.close(fd)

    return many, few, cleanup


ROWS: list[Row] = [
    Row("host 1-byte ping-pong, same thread", "round trip", "<= 1.15x stdlib time", 1.15,
        _host_ping_pong, 10_000),
    Row(f"virtual TCP 1-byte round trip, same thread ({INSIDE})", "round trip",
        "<= 0.5x kernel time", 0.5, partial(_virtual_round_trip, False), 5_000),
    Row(f"virtual TCP 1-byte round trip, same thread ({SHOWN})", "round trip",
        "-", None, partial(_virtual_round_trip, True), 5_000),
    Row(f"virtual TCP bulk stream, sender and receiver threads ({INSIDE})", "MiB",
        "<= 0.67x kernel time (1.5x throughput)", 1 / 1.5, partial(_bulk_stream, False),
        64),
    Row(f"virtual TCP bulk stream, sender and receiver threads ({SHOWN})", "MiB",
        "-", None, partial(_bulk_stream, True), 64),
    Row(f"virtual TCP connect + accept + close ({INSIDE})", "connection",
        "<= 0.33x kernel time (3x rate)", 1 / 3,
        partial(_virtual_connect_accept_close, False), 1_000),
    Row(f"virtual TCP connect + accept + close ({SHOWN})", "connection", "-", None,
        partial(_virtual_connect_accept_close, True), 1_000),
    Row("virtual TCP Python heap per idle connection", "connection", "<= 4 KiB", None,
        _idle_connection_heap, 200, kind="bytes", max_layer=4096),
    Row("drop-in socket objects, 1-byte round trip, same thread (virtual TCP)",
        "round trip", "-", None, _dropin_round_trip, 5_000, baseline="posix.*"),
    Row("drop-in socketpair() 1-byte ping-pong, same thread (host preset)", "round trip",
        "<= 1.15x stdlib time", 1.15, _dropin_host_ping_pong, 10_000),
    Row("drop-in create_connection + accept + close (virtual TCP)", "connection",
        "<= 0.33x kernel time (3x rate)", 1 / 3, _dropin_connect_accept_close, 1_000),
    Row(f"asyncio streams echo, {ECHO_CLIENTS} clients, virtual (as posix-socket run "
        "patches)", "request", "<= 0.77x kernel time (1.3x rate)", 1 / 1.3,
        partial(_asyncio_echo, None), 5_000),
    Row(f"asyncio streams echo, {ECHO_CLIENTS} clients, virtual (patch(): numbers shown "
        "to kernel pollers)", "request", "-", None, partial(_asyncio_echo, True), 5_000),
    Row("virtual TCP over a 1 MB/s link, 20 ms latency, MTU 1500: time per MB", "MB",
        "<= 1.1x ideal (>= 0.9 MB/s)", 1.1, _link_throughput, 2, baseline="ideal",
        paced=True),
    Row("virtual TCP 1-byte round trip over a link with 10 ms latency", "round trip",
        "<= 1.1x ideal (2 x 10 ms)", 1.1, _link_round_trip, 20, baseline="ideal",
        paced=True),
    Row(f"virtual TCP CPU per MB delivered over a {LINK_LOSS:.0%} lossy link, MTU 1500",
        "MB", "-", None, _lossy_link_cpu, 1, baseline="perfect path", paced=True),
    Row(f"wake-up of a wait over {IDLE_SOCKETS:,} idle virtual sockets + 1 active",
        "wake-up", f"<= 2x the cost over {FEW_IDLE_SOCKETS}", 2.0, _wake_up_over_idle,
        5_000, baseline=f"(over {FEW_IDLE_SOCKETS})"),
]


def run(rows: list[Row] | None = None, rounds: int = 15, scale: float = 1.0,
        progress: Callable[[str], None] | None = None) -> Iterator[Result]:
    """Time each row; yields one Result per row as it finishes."""
    for row in rows if rows is not None else ROWS:
        try:
            layer_timer, stdlib_timer, cleanup = row.setup()
        except Unavailable as why:
            yield Result(row, float("nan"), float("nan"), unavailable=str(why))
            continue
        n = max(1, int(row.iterations * scale))
        try:
            if not row.paced:
                layer_timer(max(1, n // 10))  # warm up both paths
                stdlib_timer(max(1, n // 10))
            best_layer = best_stdlib = float("inf")
            for index in range(min(rounds, PACED_ROUNDS) if row.paced else rounds):
                if progress is not None:
                    progress(f"{row.name}: round {index + 1}/{rounds}")
                best_layer = min(best_layer, layer_timer(n) / n)
                best_stdlib = min(best_stdlib, stdlib_timer(n) / n)
        finally:
            cleanup()
        yield Result(row, best_layer, best_stdlib)
