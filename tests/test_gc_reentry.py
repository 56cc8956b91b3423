"""Finalizers the garbage collector runs inside the layer's own critical sections.

The cyclic collector runs finalizers in whichever thread allocates, so an unclosed
socket's ``__del__`` (a ResourceWarning whose text asks ``getsockname``, then a close)
can run while this very thread is inside a driver op holding the driver's lock, inside
a kernel mirror's update, or inside an epoll interest list.  None of those may wait for
itself.  Each test forces a collection at exactly such a point (a lock whose first entry
after arming runs ``gc.collect()``), runs the call in a thread joined with a timeout so
a regression fails instead of hanging, and checks that the collected socket really was
closed: its address can be bound again, as on the kernel, where the same garbage frees
its port at the same collection.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import socket as stdlib
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import posix_socket as ps
from posix_socket import descriptors
from posix_socket import select as dropin_select
from posix_socket import socket as dropin

JOIN = 10.0


class CollectingLock:
    """A driver's re-entrant lock that, once armed, collects garbage right after its
    next acquisition: inside the critical section of whatever op takes it."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.armed = False
        self.collected = 0

    def __enter__(self) -> CollectingLock:
        self.real.acquire()
        if self.armed:
            self.armed = False
            self.collected += 1
            gc.collect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.real.release()

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        return self.real.acquire(*args, **kwargs)

    def release(self) -> None:
        self.real.release()

    def _is_owned(self) -> bool:
        return self.real._is_owned()


def virtual_pair(name: str) -> tuple[Any, Any]:
    """A connected pair of virtual AF_UNIX stream sockets (the drop-in's
    ``socketpair()`` makes kernel ones, as asyncio's self-pipe needs)."""
    listener = dropin.socket(stdlib.AF_UNIX, stdlib.SOCK_STREAM)
    try:
        listener.bind(name)
        listener.listen()
        client = dropin.socket(stdlib.AF_UNIX, stdlib.SOCK_STREAM)
        client.connect(name)
        server, _ = listener.accept()
    finally:
        listener.close()
    return client, server


def finishes(call: Callable[[], Any]) -> Any:
    """``call()`` in a daemon thread; fails (instead of hanging) if it deadlocks."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised below, in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(JOIN)
    assert not thread.is_alive(), "deadlocked: a finalizer waited for its own thread"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def abandon(module: Any, family: int, kind: int, address: Any) -> None:
    """An unclosed socket bound to ``address``, reachable only through a cycle."""

    class Holder:
        pass

    holder = Holder()
    holder.me = holder
    holder.sock = module.socket(family, kind)
    holder.sock.bind(address)
    del holder


def bindable(module: Any, family: int, kind: int, address: Any) -> bool:
    """Whether ``address`` can be bound again (soon: a close deferred until the op
    that held the lock finished may land a moment later)."""
    deadline = time.monotonic() + JOIN
    while True:
        probe = module.socket(family, kind)
        try:
            probe.bind(address)
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        finally:
            probe.close()


# (preset family, type, a fixed address the abandoned socket holds)
CASES = [
    pytest.param(stdlib.AF_UNIX, stdlib.SOCK_STREAM, "\0posix-socket-gc-stream",
                 id="unix-stream"),
    pytest.param(stdlib.AF_UNIX, stdlib.SOCK_DGRAM, "\0posix-socket-gc-dgram",
                 id="unix-dgram"),
    pytest.param(stdlib.AF_INET, stdlib.SOCK_STREAM, ("127.0.0.1", 0), id="inet-tcp"),
    pytest.param(stdlib.AF_INET, stdlib.SOCK_DGRAM, ("127.0.0.1", 0), id="inet-udp"),
]


def _free_port(family: int, kind: int) -> tuple[str, int]:
    with stdlib.socket(family, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()


@pytest.fixture
def quiet():
    """Collections happen when the test says; unclosed-socket warnings are expected."""
    enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
    if enabled:
        gc.enable()


def _lock_owner(driver: Any) -> tuple[Any, str]:
    """The object and attribute name of a virtual driver's lock."""
    network = getattr(driver, "network", None)
    return (network, "lock") if network is not None else (driver, "lock")


OPS = ["getsockname", "setsockopt", "close", "sendto"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("family", "kind", "address"), CASES)
def test_collection_inside_a_driver_op_finalizes_without_deadlock(quiet, family, kind,
                                                                  address, op):
    if family == stdlib.AF_INET:
        address = _free_port(family, kind)
    # The kernel: the same garbage, collected, frees its address.
    abandon(stdlib, family, kind, address)
    gc.collect()
    assert bindable(stdlib, family, kind, address)

    with ps.use("virtual"):
        driver = ps.registered_families()[family]
        owner, name = _lock_owner(driver)
        lock = CollectingLock(getattr(owner, name))
        setattr(owner, name, lock)
        try:
            sock = dropin.socket(family, kind)
            try:
                abandon(dropin, family, kind, address)
                lock.armed = True
                if op == "getsockname":
                    finishes(sock.getsockname)
                elif op == "setsockopt":
                    finishes(lambda: sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF,
                                                     8192))
                elif op == "sendto":
                    sock.setblocking(False)
                    nobody = ("\0posix-socket-gc-nobody" if family == stdlib.AF_UNIX
                              else ("127.0.0.1", 9))
                    with contextlib.suppress(OSError):  # whatever the type makes of it
                        finishes(lambda: sock.sendto(b"x", nobody))
                else:
                    finishes(sock.close)
                assert lock.collected == 1
                assert bindable(dropin, family, kind, address)
            finally:
                sock.close()
        finally:
            setattr(owner, name, lock.real)


def test_collection_inside_a_mirror_update_closing_that_socket(quiet):
    """The mirror of a socket whose only Python object is garbage updates (its peer
    sent data); the update's read of the readiness collects that object, whose
    finalizer closes the socket and with it the mirror being updated."""
    with ps.use("virtual"):
        left, right = virtual_pair("\0posix-socket-gc-mirror")
        number = right.fileno()  # armed: the kernel's pollers may watch it
        f = descriptors.lookup(number)
        entry = f.watch
        assert entry.mirror is not None
        revents = entry.revents
        calls = []

        def collecting_revents() -> int:
            if not calls:
                calls.append(1)
                gc.collect()
            return revents()

        class Holder:
            pass

        holder = Holder()
        holder.me = holder
        holder.sock = right
        del right, holder
        entry.revents = collecting_revents
        finishes(lambda: left.send(b"data"))
        assert calls == [1]
        assert descriptors.lookup(number) is not f  # the finalizer closed it
        assert entry.mirror.outer.fileno() == -1  # and the mirror with it, afterwards
        left.close()


def test_collection_inside_an_interest_list_closing_a_member(quiet):
    """A socket registered in an epoll is collected while that epoll's interest list
    holds its lock for another member's change: the closed socket leaves the list."""
    with ps.use("virtual"):
        a, b = virtual_pair("\0posix-socket-gc-interest-1")
        c, d = virtual_pair("\0posix-socket-gc-interest-2")
        poller = dropin_select.epoll()
        try:
            poller.register(b.fileno(), select.EPOLLIN)
            poller.register(d.fileno(), select.EPOLLIN)
            assert poller.poll(0) == []
            interest = poller._interest
            lock = CollectingLock(interest._lock)
            interest._lock = lock

            class Holder:
                pass

            holder = Holder()
            holder.me = holder
            holder.sock = d
            d_number = d.fileno()
            del d, holder
            lock.armed = True
            finishes(lambda: a.send(b"x"))  # b changes: its member is queued
            assert lock.collected == 1
            assert descriptors.lookup(d_number) is None or (
                descriptors.lookup(d_number).family != stdlib.AF_UNIX)
            interest._lock = lock.real
            assert finishes(lambda: poller.poll(JOIN)) == [(b.fileno(), select.EPOLLIN)]
        finally:
            poller.close()
            for sock in (a, b, c):
                sock.close()


def test_deferred_close_still_reaches_the_peer(quiet):
    """A close deferred out of a driver op is a real close: the peer reads EOF."""
    with ps.use("virtual"):
        driver = ps.registered_families()[stdlib.AF_UNIX]
        lock = CollectingLock(driver.lock)
        driver.lock = lock
        try:
            keep, gone = virtual_pair("\0posix-socket-gc-peer")
            other = dropin.socket(stdlib.AF_UNIX, stdlib.SOCK_STREAM)

            class Holder:
                pass

            holder = Holder()
            holder.me = holder
            holder.sock = gone
            del gone, holder
            lock.armed = True
            finishes(other.getsockname)
            keep.settimeout(JOIN)
            assert finishes(lambda: keep.recv(10)) == b""
            keep.close()
            other.close()
        finally:
            driver.lock = lock.real


def test_no_descriptor_leaks_from_deferred_closes(quiet):
    before = set(os.listdir("/proc/self/fd"))
    with ps.use("virtual"):
        driver = ps.registered_families()[stdlib.AF_INET]
        lock = CollectingLock(driver.network.lock)
        driver.network.lock = lock
        try:
            for _ in range(3):
                abandon(dropin, stdlib.AF_INET, stdlib.SOCK_STREAM, ("127.0.0.1", 0))
                lock.armed = True
                probe = dropin.socket()
                finishes(probe.getsockname)
                probe.close()
        finally:
            driver.network.lock = lock.real
    deadline = time.monotonic() + JOIN
    while set(os.listdir("/proc/self/fd")) - before and time.monotonic() < deadline:
        time.sleep(0.005)
    assert set(os.listdir("/proc/self/fd")) - before == set()
