"""Virtual time: the network's clock stands still while a thread runs and jumps when
every thread waits; under ``patch()`` the process's clocks and timed waits follow it.

Each test checks the virtual time a wait ended at (exact: the clock jumps to the
deadline) and that it took a small fraction of that in real time.
"""

from __future__ import annotations

import asyncio
import queue
import selectors
import socket
import threading
import time

import pytest

import posix_socket as ps
from posix_socket import clock as psclock

REAL_BUDGET = 2.0  # real seconds any of these tests may take (they wait minutes virtually)


@pytest.fixture
def vclock():
    started = psclock.real_monotonic()
    with ps.use("virtual", clock="virtual", seed=1) as preset, ps.patch():
        yield preset.clock
    assert psclock.real_monotonic() - started < REAL_BUDGET


def elapsed(clock, since: float) -> float:
    return round(clock.now() - since, 6)


def test_sleeping_an_hour_takes_no_real_time(vclock):
    before_real, before, wall = psclock.real_monotonic(), time.monotonic(), time.time()
    time.sleep(3600)
    assert time.monotonic() - before == 3600
    assert round(time.time() - wall, 6) == 3600
    assert time.perf_counter_ns() - int(before * 1e9) == 3600 * 10**9
    assert psclock.real_monotonic() - before_real < 0.1


def test_the_clock_starts_at_a_fixed_epoch_and_stands_still_while_code_runs(vclock):
    assert time.time() == psclock.EPOCH
    first = time.monotonic()
    sum(range(200_000))  # running Python code: no time passes
    assert time.monotonic() == first


def test_a_socket_timeout_ends_at_its_virtual_deadline(vclock):
    server = socket.create_server(("127.0.0.1", 8000))
    client = socket.create_connection(("127.0.0.1", 8000))
    conn, _ = server.accept()
    conn.settimeout(2.5)
    start = vclock.now()
    with pytest.raises(TimeoutError):
        conn.recv(10)
    assert elapsed(vclock, start) == 2.5
    for sock in (conn, client, server):
        sock.close()


def test_threads_wake_each_other_at_the_right_virtual_time(vclock):
    done = threading.Event()
    start = vclock.now()

    def worker():
        time.sleep(10)
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    assert done.wait(100) is True
    assert elapsed(vclock, start) == 10
    thread.join()
    assert not threading.Event().wait(7)
    assert elapsed(vclock, start) == 17


def test_a_blocking_recv_wakes_when_a_thread_sends_later(vclock):
    server = socket.create_server(("127.0.0.1", 8001))
    client = socket.create_connection(("127.0.0.1", 8001))
    conn, _ = server.accept()
    start = vclock.now()

    def later():
        time.sleep(30)
        client.sendall(b"late")

    thread = threading.Thread(target=later)
    thread.start()
    assert conn.recv(10) == b"late"
    assert elapsed(vclock, start) == 30
    thread.join()
    for sock in (conn, client, server):
        sock.close()


def test_thread_join_with_a_timeout(vclock):
    start = vclock.now()
    thread = threading.Thread(target=time.sleep, args=(5,))
    thread.start()
    thread.join(2)
    assert thread.is_alive() and elapsed(vclock, start) == 2
    thread.join(10)
    assert not thread.is_alive() and elapsed(vclock, start) == 5


def test_queue_semaphore_and_barrier_timeouts(vclock):
    start = vclock.now()
    with pytest.raises(queue.Empty):
        queue.Queue().get(timeout=4)
    assert elapsed(vclock, start) == 4
    assert threading.Semaphore(0).acquire(timeout=1.5) is False
    assert elapsed(vclock, start) == 5.5
    with pytest.raises(threading.BrokenBarrierError):
        threading.Barrier(2).wait(3)
    assert elapsed(vclock, start) == 8.5
    condition = threading.Condition()
    with condition:
        assert condition.wait_for(lambda: False, timeout=0.5) is False
    assert elapsed(vclock, start) == 9.0


def test_selectors_select_and_poll_time_out_virtually(vclock):
    start = vclock.now()
    reader, writer = socket.socketpair()  # kernel descriptors
    selector = selectors.DefaultSelector()
    selector.register(reader, selectors.EVENT_READ)
    assert selector.select(2.5) == []
    assert elapsed(vclock, start) == 2.5
    import select
    assert select.select([reader], [], [], 1.5) == ([], [], [])
    poller = select.poll()
    poller.register(reader, select.POLLIN)
    assert poller.poll(500) == []
    assert elapsed(vclock, start) == 4.5
    writer.send(b"x")
    assert selector.select(10)[0][0].fileobj is reader
    assert elapsed(vclock, start) == 4.5
    selector.close()
    reader.close()
    writer.close()


def test_asyncio_sleeps_and_timeouts_in_virtual_time(vclock):
    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(30)
        after_sleep = loop.time() - start
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 12)
        in_thread = await loop.run_in_executor(None, time.sleep, 3)
        return after_sleep, loop.time() - start, in_thread

    assert asyncio.run(main()) == (30, 45, None)


def test_asyncio_server_and_client_with_a_slow_handler(vclock):
    async def main():
        async def handle(reader, writer):
            data = await reader.read(100)
            await asyncio.sleep(5)
            writer.write(data.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 8002)
        loop = asyncio.get_running_loop()
        start = loop.time()
        reader, writer = await asyncio.open_connection("127.0.0.1", 8002)
        writer.write(b"hello")
        answer = await reader.read(100)
        writer.close()
        server.close()
        await server.wait_closed()
        return answer, loop.time() - start

    assert asyncio.run(main()) == (b"HELLO", 5)


def test_a_busy_thread_holds_the_clock_still(vclock):
    start = vclock.now()
    readings = []

    def sleeper():
        time.sleep(1)

    thread = threading.Thread(target=sleeper)
    thread.start()
    deadline = psclock.real_monotonic() + 0.1
    while psclock.real_monotonic() < deadline:  # 100 ms of real work
        readings.append(time.monotonic())
    assert set(readings) == {start}
    thread.join()
    assert elapsed(vclock, start) == 1


def test_a_thread_blocked_outside_the_clock_does_not_stop_it(vclock):
    """A thread blocked where the clock cannot see (a lock taken without timeout) is
    counted as waiting once it uses no CPU: the sleeper still wakes."""
    lock = threading.Lock()
    lock.acquire()
    blocked = threading.Thread(target=lock.acquire)
    blocked.start()
    start = vclock.now()
    time.sleep(60)
    assert elapsed(vclock, start) == 60
    lock.release()
    blocked.join()


def test_a_thread_still_starting_holds_the_clock_still(vclock):
    """A thread threading lists but the kernel has not run yet (no native id: a loaded
    machine may take milliseconds to get to it) is about to run, not blocked: the clock
    must not jump past it.  (It did, after IDLE_INTERVAL, so a reply sent from a thread
    that had just started the network's scheduler thread came a timeout too late, now
    and then, and a seeded program printed different lines from run to run.)"""
    starting = threading.Thread(target=lambda: None)  # stands for one the kernel is making
    woken = []

    def sleeper():
        time.sleep(1)
        woken.append(psclock.real_monotonic())

    with threading._active_limbo_lock:  # type: ignore[attr-defined]
        threading._limbo[starting] = starting  # type: ignore[attr-defined]
    try:
        thread = threading.Thread(target=sleeper)
        thread.start()
        held_until = psclock.real_monotonic() + 50 * psclock.IDLE_INTERVAL
        while psclock.real_monotonic() < held_until:
            psclock.real_sleep(psclock.IDLE_INTERVAL)
            assert not woken
    finally:
        with threading._active_limbo_lock:  # type: ignore[attr-defined]
            del threading._limbo[starting]  # type: ignore[attr-defined]
    thread.join()
    assert woken


class WokenRightAfterTheLook:
    """A wake-up lock whose waker releases it just after the waiting thread's first
    look (``acquire(False)``) and before the thread tells the clock it waits."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.looks = 0

    def acquire(self, blocking: bool = True) -> bool:
        got = self.lock.acquire(blocking)
        if not blocking:
            self.looks += 1
            if self.looks == 1:
                self.lock.release()  # the waker, in between
        return got

    def release(self) -> None:
        self.lock.release()


def test_a_thread_woken_before_it_registers_its_wait_does_not_count_as_waiting(vclock):
    """A waker that wakes a thread between its look and its registration, then waits
    itself: the woken thread runs, so the clock must not jump (it jumped, and every
    client of a threaded HTTP server timed out at once, now and then)."""
    thread = threading.Thread(target=time.sleep, args=(10,))
    thread.start()
    while not any(s.what == "time.sleep" for s in list(vclock._sleepers.values())):
        psclock.real_sleep(0.001)
    start = vclock.now()
    assert vclock.block(WokenRightAfterTheLook(), None, "test") is True
    assert vclock.now() == start
    thread.join()
    assert elapsed(vclock, start) == 10


def test_a_deadlocked_program_fails_saying_where_each_thread_waits(vclock):
    raised_there = []

    def consumer(q):
        try:
            q.get()
        except psclock.Deadlock as exc:
            raised_there.append(exc)

    worker = threading.Thread(target=consumer, args=(queue.Queue(),), name="consumer")
    worker.start()
    with pytest.raises(psclock.Deadlock) as raised:
        queue.Queue().get()
    message = str(raised.value)
    assert "'MainThread' waits in Condition.wait" in message
    assert "'consumer' waits in Condition.wait" in message
    assert "test_virtual_time.py" in message and "in consumer" in message
    worker.join()  # no timeout: not through the (deadlocked) clock
    assert [str(exc) for exc in raised_there] == [message]


def test_bad_input():
    with pytest.raises(ValueError, match="'real', 'virtual'"):
        ps.use("virtual", clock="bogus")
    with ps.use("virtual", clock="virtual"), ps.patch():
        with pytest.raises(ValueError, match="non-negative"):
            time.sleep(-1)
        with pytest.raises(TypeError):
            time.sleep("1")


def test_leaving_restores_the_real_clocks():
    before = time.monotonic
    with ps.use("virtual", clock="virtual"), ps.patch():
        assert time.monotonic is not before
    assert time.monotonic is before and psclock.current is psclock.REAL
    assert threading.Condition.wait is not None and time.monotonic() > 0
    assert threading.Event().wait(0.01) is False  # real waits work again


REPLAY_PROGRAM = '''
import asyncio, socket, sys, time
import posix_socket as ps

async def main():
    async def echo(reader, writer):
        data = await reader.read(100)
        await asyncio.sleep(0.25)
        writer.write(data)
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello")
    print(port, writer.get_extra_info("sockname")[1], await reader.read(100),
          asyncio.get_running_loop().time(), time.time())
    writer.close()
    server.close()
    await server.wait_closed()

with ps.use("virtual", seed=5, clock="virtual") as preset, ps.patch():
    with preset.network.capture(sys.argv[1]):
        asyncio.run(main())
'''


def test_an_asyncio_program_replays_exactly_with_one_seed(tmp_path):
    """Same seed, virtual clock: the same output (ports, times) and the same capture,
    byte for byte (sequence numbers and timestamps included)."""
    import subprocess
    import sys
    script = tmp_path / "replay.py"
    script.write_text(REPLAY_PROGRAM)
    outputs, captures = set(), set()
    for run in range(2):
        pcap = tmp_path / f"{run}.pcap"
        outputs.add(subprocess.run([sys.executable, str(script), str(pcap)],
                                   capture_output=True, text=True, timeout=60,
                                   check=True).stdout)
        captures.add(pcap.read_bytes())
    assert len(outputs) == 1 and "b'hello'" in outputs.pop()
    assert len(captures) == 1 and len(captures.pop()) > 500


def test_tcp_timers_run_on_virtual_time(vclock):
    """A connect across a partition gives up after Linux's 127 s of SYN retries, and
    keepalive ends a connection at idle + count x interval: minutes of virtual time."""
    net = ps.network()
    net.add_host("10.0.0.2", names=["far.test"])
    server = socket.create_server(("far.test", 8003))
    net.partition(["far.test"])
    start = vclock.now()
    client = socket.socket()
    with pytest.raises(TimeoutError) as raised:
        client.connect(("far.test", 8003))
    assert raised.value.errno == 110 and elapsed(vclock, start) == 127
    client.close()
    net.heal()
    client = socket.create_connection(("far.test", 8003))
    conn, _ = server.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    net.partition(["far.test"])
    start = vclock.now()
    with pytest.raises(TimeoutError):
        client.recv(10)
    assert 90 <= elapsed(vclock, start) <= 91  # idle 60 + 3 probes x 10 s
    for sock in (client, conn, server):
        sock.close()


def test_a_virtual_networks_time_ends_with_its_use():
    """Its pending timers are dropped when use() ends: nothing can make that time pass
    any more, and left alone they would run at random moments of later code."""
    with ps.use("virtual", clock="virtual") as preset, ps.patch():
        net = preset.network
        ran = []
        net.scheduler.call_later(5, lambda touched: ran.append(1))
        thread = net.scheduler._thread
    thread.join(2)
    assert not thread.is_alive() and ran == [] and net.scheduler.pending() == 0
    net.scheduler.call_later(0, lambda touched: ran.append(2))
    assert ran == [] and net.scheduler.pending() == 0


def test_a_real_clock_network_keeps_real_time_while_another_runs_virtually():
    """patch() under virtual time replaces threading's Condition for every thread: a
    network on the real clock must still wait for real (its scheduler thread is not
    the program's)."""
    import threading as threads
    with ps.use("virtual") as real_preset:
        real_net = real_preset.network
        fired = threads.Event()
        real_net.scheduler.call_later(0.2, lambda touched: fired.set())
    with ps.use("virtual", clock="virtual") as preset, ps.patch():
        time.sleep(60)  # virtual: the real network's timer must not fire because of it
        assert not fired.is_set()
        assert preset.clock.now() - psclock.START == 60
    assert fired.wait(5)
    assert real_net.scheduler.pending() == 0
