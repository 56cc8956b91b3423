"""The family registry: register, replace, unregister, presets, entry points, threads."""

from __future__ import annotations

import _socket
import errno
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from memory_driver import MemoryDriver

import posix_socket as ps
from posix_socket import posix, registry

FAMILY = 251
HUGE_FAMILY = 2**31 - 1  # the largest C int: still a valid family number
PRESET = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


@pytest.fixture(autouse=True)
def restore_registry():
    """Every test leaves the registry exactly as it found it (public API only)."""
    saved = ps.registered_families()
    sources = registry.family_sources()
    yield
    for family in ps.registered_families():
        if family not in saved:
            ps.unregister_family(family)
    for family, driver in saved.items():
        ps.register_family(family, driver, replace=True,
                           source=sources.get(family, "register_family"))


class CountingDriver(MemoryDriver):
    """The memory driver, counting the ops the registry tests care about."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.closes = 0

    def close(self, sock) -> None:
        self.closes += 1
        super().close(sock)


def errno_of(call) -> int:
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno


# -- registering -------------------------------------------------------------------------

@pytest.mark.parametrize("family", [FAMILY, HUGE_FAMILY])
def test_new_family_is_reached_through_posix_socket(family):
    driver = CountingDriver()
    ps.register_family(family, driver)
    assert ps.registered_families()[family] is driver
    a, b = posix.socketpair(family, socket.SOCK_STREAM)
    lone = posix.socket(family, socket.SOCK_STREAM)
    try:
        assert posix.getsockopt(a, socket.SOL_SOCKET, socket.SO_DOMAIN) == family
        assert posix.getsockopt(lone, socket.SOL_SOCKET, socket.SO_DOMAIN) == family
        assert posix.send(a, b"ping") == 4
        assert posix.recv(b, 10) == b"ping"
    finally:
        for fd in (a, b, lone):
            posix.close(fd)
    assert driver.closes == 3


def test_family_must_be_a_c_int_and_driver_a_socket_driver():
    driver = MemoryDriver()
    with pytest.raises(OverflowError):
        ps.register_family(2**31, driver)
    with pytest.raises(OverflowError):
        ps.register_family(-(2**31) - 1, driver)
    with pytest.raises(TypeError):
        ps.register_family("251", driver)
    with pytest.raises(TypeError):
        ps.register_family(1.0, driver)
    with pytest.raises(TypeError):
        ps.register_family(FAMILY, object())
    with pytest.raises(TypeError):
        ps.register_family(FAMILY, MemoryDriver)  # the class, not a driver
    assert FAMILY not in ps.registered_families()
    assert driver.init_calls == 0


def test_duplicate_registration_is_refused():
    first, second = MemoryDriver(), MemoryDriver()
    ps.register_family(FAMILY, first)
    with pytest.raises(FileExistsError):
        ps.register_family(FAMILY, second)
    assert ps.registered_families()[FAMILY] is first
    assert second.init_calls == 0
    with pytest.raises(FileExistsError):  # the host preset's families are taken too
        ps.register_family(socket.AF_INET, second)


def test_replace_serves_new_sockets_and_old_ones_keep_their_driver():
    old, new = CountingDriver(), CountingDriver()
    ps.register_family(FAMILY, old)
    a, b = posix.socketpair(FAMILY, socket.SOCK_STREAM)
    ps.register_family(FAMILY, new, replace=True)
    assert ps.registered_families()[FAMILY] is new
    c = posix.socket(FAMILY, socket.SOCK_STREAM)
    posix.send(a, b"old")
    assert posix.recv(b, 10) == b"old"
    for fd in (a, b, c):
        posix.close(fd)
    assert (old.closes, new.closes) == (2, 1)


def test_registering_the_same_driver_again_is_fine():
    driver = MemoryDriver()
    ps.register_family(FAMILY, driver)
    ps.register_family(FAMILY, driver)  # no replace needed for the same instance
    assert ps.registered_families()[FAMILY] is driver
    assert driver.init_calls == 1


def test_init_runs_exactly_once_per_driver():
    driver, other = MemoryDriver(), MemoryDriver()
    assert driver.init_calls == 0
    ps.register_family(FAMILY, driver)
    ps.register_family(FAMILY + 2, driver)
    ps.register_family(FAMILY, other, replace=True)
    ps.register_family(FAMILY, driver, replace=True)
    ps.unregister_family(FAMILY)
    ps.register_family(FAMILY, driver)
    with ps.use("host"):
        pass
    assert driver.init_calls == 1
    assert other.init_calls == 1


def test_a_failing_init_leaves_the_family_free():
    class Broken(MemoryDriver):
        def init(self):
            raise RuntimeError("no hardware")

    with pytest.raises(RuntimeError):
        ps.register_family(FAMILY, Broken())
    assert FAMILY not in ps.registered_families()


# -- unregistering -----------------------------------------------------------------------

def test_unregister_refuses_new_sockets_but_open_ones_keep_working():
    driver = CountingDriver()
    ps.register_family(FAMILY, driver)
    a, b = posix.socketpair(FAMILY, socket.SOCK_STREAM)
    assert ps.unregister_family(FAMILY) is driver
    assert FAMILY not in ps.registered_families()
    # What the kernel says for a family nobody serves.
    expected = errno_of(lambda: _socket.socket(FAMILY, socket.SOCK_STREAM))
    assert expected == errno.EAFNOSUPPORT
    assert errno_of(lambda: posix.socket(FAMILY, socket.SOCK_STREAM)) == expected
    assert errno_of(lambda: posix.socketpair(FAMILY, socket.SOCK_STREAM)) == expected
    # The open pair still runs on its old driver.
    assert posix.send(a, b"still here") == 10
    assert posix.recv(b, 100) == b"still here"
    posix.close(a)
    assert posix.recv(b, 100) == b""
    posix.close(b)
    assert driver.closes == 2


def test_unregister_unknown_family_is_a_key_error():
    with pytest.raises(KeyError):
        ps.unregister_family(FAMILY)
    ps.register_family(FAMILY, MemoryDriver())
    ps.unregister_family(FAMILY)
    with pytest.raises(KeyError):
        ps.unregister_family(FAMILY)


def test_registered_families_is_a_snapshot():
    snapshot = ps.registered_families()
    assert isinstance(snapshot, dict)
    snapshot[FAMILY] = MemoryDriver()
    assert FAMILY not in ps.registered_families()
    before = ps.registered_families()
    driver = MemoryDriver()
    ps.register_family(FAMILY, driver)
    assert FAMILY not in before
    assert ps.registered_families()[FAMILY] is driver
    ps.unregister_family(FAMILY)
    assert ps.registered_families() == before


# -- presets -----------------------------------------------------------------------------

def test_import_registers_the_host_preset():
    """A fresh interpreter: the kernel serves AF_INET, AF_INET6 and AF_UNIX."""
    code = textwrap.dedent("""
        import socket, stat, os
        import posix_socket as ps
        from posix_socket import posix, registry
        families = ps.registered_families()
        for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            assert isinstance(families[family], ps.HostDriver), families
            assert registry.family_sources()[family] == "preset host"
            fd = posix.socket(family, socket.SOCK_STREAM)
            assert stat.S_ISSOCK(os.fstat(fd).st_mode)
            assert posix.getsockopt(fd, socket.SOL_SOCKET, socket.SO_DOMAIN) == family
            posix.close(fd)
        assert "host" in registry.presets()
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_use_host_as_a_call():
    ps.register_family(socket.AF_INET, MemoryDriver(), replace=True)
    ps.unregister_family(socket.AF_UNIX)
    result = ps.use("host")
    families = ps.registered_families()
    assert all(isinstance(families[f], ps.HostDriver) for f in PRESET)
    assert len({id(families[f]) for f in PRESET}) == 1  # one driver for the three
    assert repr(result) == "use('host')"
    fd = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        posix.bind(fd, ("127.0.0.1", 0))
        host, port = posix.getsockname(fd)
        assert host == "127.0.0.1" and port > 0
    finally:
        posix.close(fd)


def test_use_as_a_context_manager_restores_what_was_there():
    custom = MemoryDriver()
    ps.register_family(socket.AF_INET, custom, replace=True)
    ps.unregister_family(socket.AF_UNIX)
    inet6 = ps.registered_families()[socket.AF_INET6]
    with ps.use("host") as used:
        assert isinstance(used, ps.use)
        families = ps.registered_families()
        assert all(isinstance(families[f], ps.HostDriver) for f in PRESET)
    families = ps.registered_families()
    assert families[socket.AF_INET] is custom
    assert socket.AF_UNIX not in families  # absent before, absent again
    assert families[socket.AF_INET6] is inet6
    assert registry.family_sources()[socket.AF_INET] == "register_family"


def test_use_restores_after_an_exception_and_nests():
    custom = MemoryDriver()
    ps.register_family(socket.AF_INET, custom, replace=True)
    with pytest.raises(ZeroDivisionError), ps.use("host"):
        inner = MemoryDriver()
        with ps.use("host"):
            assert isinstance(ps.registered_families()[socket.AF_INET], ps.HostDriver)
        ps.register_family(FAMILY, inner)  # not a preset family: use leaves it
        1 / 0  # noqa: B018
    assert ps.registered_families()[socket.AF_INET] is custom
    assert ps.registered_families()[FAMILY] is inner


def test_unknown_preset_is_a_value_error():
    before = ps.registered_families()
    with pytest.raises(ValueError, match="nope"):
        ps.use("nope")
    assert ps.registered_families() == before


# -- entry points ------------------------------------------------------------------------

DIST = "ps-test-drivers"
MODULE = "ps_test_entry_drivers"

ENTRY_POINTS = """\
[posix_socket.drivers]
253 = ps_test_entry_drivers:Broken
254 = ps_test_entry_drivers_missing:Driver
AF_NOT_A_FAMILY = ps_test_entry_drivers:Driver
SOCK_STREAM = ps_test_entry_drivers:Driver
252 = ps_test_entry_drivers:Driver
AF_INET = ps_test_entry_drivers:Driver
255 = ps_test_entry_drivers:INSTANCE
"""

DRIVERS = """\
from posix_socket import SocketDriver


class Driver(SocketDriver):
    name = "entry-point"

    def __init__(self):
        super().__init__()
        self.init_calls = 0

    def init(self):
        self.init_calls += 1

    def create(self, family, type, proto):
        return object()

    def poll(self, sock):
        return 4  # POLLOUT


class Broken(SocketDriver):
    def __init__(self):
        raise RuntimeError("broken on purpose")


INSTANCE = Driver()
"""


@pytest.fixture
def test_distribution(tmp_path, monkeypatch):
    """A tiny installed distribution advertising drivers, found by importlib.metadata."""
    (tmp_path / f"{MODULE}.py").write_text(DRIVERS)
    info = tmp_path / f"{DIST.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop(MODULE, None)


def ours(outcomes):
    return {label.split(" = ")[0]: outcome for label, outcome in outcomes
            if MODULE in label}


def test_entry_points_register_drivers(test_distribution):
    host = ps.registered_families()[socket.AF_INET]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcomes = ours(ps.load_entry_points())
    module = sys.modules[MODULE]
    families = ps.registered_families()

    assert outcomes["252"] == "registered"
    assert type(families[252]) is module.Driver
    assert families[252].init_calls == 1
    assert families[255] is module.INSTANCE  # an instance is used as it is
    assert registry.family_sources()[252] == f"entry point {DIST}"

    assert outcomes["AF_INET"] == "skipped: family taken"
    assert families[socket.AF_INET] is host

    for name in ("253", "254", "AF_NOT_A_FAMILY", "SOCK_STREAM"):
        assert outcomes[name].startswith("failed"), (name, outcomes[name])
    assert not {253, 254} & set(families)
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    for needle in ("253 =", "254 =", "AF_NOT_A_FAMILY =", "SOCK_STREAM ="):
        assert any(needle in message for message in messages), (needle, messages)

    fd = posix.socket(252, socket.SOCK_DGRAM)
    try:
        assert posix.getsockopt(fd, socket.SOL_SOCKET, socket.SO_DOMAIN) == 252
    finally:
        posix.close(fd)


def test_entry_points_loaded_twice_change_nothing(test_distribution):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ps.load_entry_points()
        driver = ps.registered_families()[252]
        outcomes = ours(ps.load_entry_points())
    assert outcomes["252"] == "skipped: family taken"
    assert ps.registered_families()[252] is driver
    assert driver.init_calls == 1


def test_explicit_registration_wins_over_entry_points(test_distribution):
    mine = MemoryDriver()
    ps.register_family(252, mine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcomes = ours(ps.load_entry_points())
    assert outcomes["252"] == "skipped: family taken"
    assert ps.registered_families()[252] is mine


# -- threads -----------------------------------------------------------------------------

def run_threads(count, target):
    barrier = threading.Barrier(count)
    errors = []

    def body(index):
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def test_registry_is_thread_safe():
    before = ps.registered_families()
    drivers = [MemoryDriver() for _ in range(8)]

    def churn(index):
        for round_ in range(100):
            family = 10_000 + index * 1000 + round_ % 10
            ps.register_family(family, drivers[index], replace=round_ % 2 == 1)
            assert ps.registered_families()[family] is drivers[index]
            assert ps.unregister_family(family) is drivers[index]

    def read(_index):
        for _ in range(300):
            snapshot = ps.registered_families()
            assert all(isinstance(d, ps.SocketDriver) for d in snapshot.values())

    errors = run_threads(8, churn) + run_threads(4, read)
    assert errors == []
    assert ps.registered_families() == before
    assert all(driver.init_calls == 1 for driver in drivers)


def test_racing_registrations_have_one_winner():
    drivers = [MemoryDriver() for _ in range(8)]
    errors = run_threads(8, lambda index: ps.register_family(FAMILY, drivers[index]))
    assert len(errors) == 7
    assert all(isinstance(error, FileExistsError) for error in errors)
    winner = ps.registered_families()[FAMILY]
    assert winner in drivers
    assert [d.init_calls for d in drivers].count(1) == 1
    assert winner.init_calls == 1


def test_registry_and_sockets_from_many_threads():
    """Sockets made while other threads re-register the family use a whole driver."""
    drivers = [CountingDriver() for _ in range(4)]
    ps.register_family(FAMILY, drivers[0])
    stop = threading.Event()

    def swap(_index):
        i = 0
        while not stop.is_set():
            i += 1
            ps.register_family(FAMILY, drivers[i % len(drivers)], replace=True)
            time.sleep(0)  # let the other thread run between swaps

    def use_sockets(_index):
        try:
            for _ in range(100):
                a, b = posix.socketpair(FAMILY, socket.SOCK_STREAM)
                posix.send(a, b"x")
                assert posix.recv(b, 1) == b"x"
                posix.close(a)
                posix.close(b)
        finally:
            stop.set()

    errors = run_threads(2, lambda i: (swap if i == 0 else use_sockets)(i))
    assert errors == []
    assert sum(driver.closes for driver in drivers) == 200
