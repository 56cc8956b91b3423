"""Every driver against the kernel: each scenario of ``scenarios.py`` runs once on the
kernel (the reference) and once through the layer, and the two logs must match.

To check a new driver, add a line to ``CONFIGURATIONS``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import NamedTuple

import fuzz_found_scenarios  # noqa: F401  (registers what the differential fuzzer found)
import pytest
import scenarios
import unix_scenarios  # registers the AF_UNIX scenarios too
from memory_driver import AF_MEMORY, MemoryDriver
from scenarios import (
    DGRAM,
    SEQPACKET,
    STREAM,
    KernelAPI,
    LayerAPI,
    first_difference,
    make_env,
    run,
)

import posix_socket as ps
from posix_socket.drivers.inet import InetDriver, VirtualNetwork
from posix_socket.drivers.unix import UnixDriver


class Configuration(NamedTuple):
    """One driver serving one family and type, and the kernel family it must match.

    ``driver`` makes the driver to register for ``family`` (None: the host driver of
    the "host" preset).  ``reference`` is the kernel family whose behaviour it copies
    (default: ``family`` itself).  ``lacks`` names optional scenario features
    (``scenarios.MSG`` ...) the driver does not claim to have.  ``also`` lists further
    families the same driver instance is registered for during the test, for scenarios
    that mix families (an IPv4 client of a dual-stack IPv6 server must meet it on one
    network).  ``runs`` names another socket type whose scenarios it runs as well: a
    seqpacket socket is a connection, so the stream scenarios apply to it too (the
    kernel, run with the same type, says what each call gives).
    """

    id: str
    driver: Callable[[], ps.SocketDriver] | None
    family: int
    type: int
    reference: int | None = None
    lacks: frozenset[str] = frozenset()
    also: tuple[int, ...] = ()
    runs: int | None = None


CONFIGURATIONS = [
    Configuration("host-inet-stream", None, socket.AF_INET, STREAM),
    Configuration("host-inet-dgram", None, socket.AF_INET, DGRAM),
    Configuration("host-inet6-stream", None, socket.AF_INET6, STREAM),
    Configuration("host-inet6-dgram", None, socket.AF_INET6, DGRAM),
    Configuration("host-unix-stream", None, socket.AF_UNIX, STREAM),
    Configuration("host-unix-dgram", None, socket.AF_UNIX, DGRAM),
    Configuration("host-unix-seqpacket", None, socket.AF_UNIX, SEQPACKET, runs=STREAM),
    # The in-memory test driver (as the ``memory`` fixture makes it) behaves like
    # AF_UNIX streams but implements only send/recv and no transport options.
    Configuration("memory-stream", lambda: MemoryDriver(capacity=4096), AF_MEMORY, STREAM,
                  reference=socket.AF_UNIX,
                  lacks=frozenset({scenarios.MSG, scenarios.SOCKOPTS, scenarios.IOCTL,
                                   scenarios.AUTOBIND, unix_scenarios.UNIX_FAMILY})),
]

# -- the virtual IPv4/IPv6 network (issue 3) ----------------------------------------------


def _virtual_inet() -> ps.SocketDriver:
    """A fresh, isolated network per test, serving both IP families."""
    return InetDriver(VirtualNetwork())


CONFIGURATIONS += [
    Configuration(f"virtual-{name}-{kind}", _virtual_inet, family, type,
                  also=tuple({socket.AF_INET, socket.AF_INET6} - {family}))
    for name, family in (("inet", socket.AF_INET), ("inet6", socket.AF_INET6))
    for kind, type in (("stream", STREAM), ("dgram", DGRAM))
]

# -- the virtual AF_UNIX driver (issue 4) ---------------------------------------------------

CONFIGURATIONS += [
    Configuration("virtual-unix-stream", UnixDriver, socket.AF_UNIX, STREAM),
    Configuration("virtual-unix-dgram", UnixDriver, socket.AF_UNIX, DGRAM),
    Configuration("virtual-unix-seqpacket", UnixDriver, socket.AF_UNIX, SEQPACKET,
                  runs=STREAM),
]

# Known differences between a configuration and the kernel: {(config id, scenario
# name): reason}.  Each becomes a strict xfail, so fixing it turns the test red.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {}


def _applies(config: Configuration, scenario: Callable) -> bool:
    reference = config.reference or config.family
    types = {config.type, config.runs}
    return (bool(types & scenario.types) and not scenario.needs & config.lacks
            and (not scenario.families or reference in scenario.families))


def _cases() -> list:
    cases = []
    for config in CONFIGURATIONS:
        for scenario in scenarios.SCENARIOS:
            if not _applies(config, scenario):
                continue
            marks = []
            reason = KNOWN_DIFFERENCES.get((config.id, scenario.__name__))
            if reason:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            name = scenario.__name__.removeprefix("scenario_")
            cases.append(pytest.param(config, scenario, marks=marks, id=f"{config.id}-{name}"))
    return cases


@pytest.fixture
def served(request):
    """Register the configuration's driver for its family for one test, then restore
    exactly what was registered before."""
    config: Configuration = request.param
    if config.driver is None:
        with ps.use("host"):
            yield config
        return
    families = (config.family, *config.also)
    registered = ps.registered_families()
    previous = {family: registered.get(family) for family in families}
    driver = config.driver()
    for family in families:
        ps.register_family(family, driver, replace=True)
    try:
        yield config
    finally:
        for family, old in previous.items():
            if old is None:
                ps.unregister_family(family)
            else:
                ps.register_family(family, old, replace=True)


def _log(scenario: Callable, api: type, family: int, type: int) -> list:
    env = make_env(family, type)
    try:
        return run(scenario, api, env)
    finally:
        env.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("served", "scenario"), _cases(), indirect=["served"])
def test_layer_matches_kernel(served: Configuration, scenario: Callable) -> None:
    expected = _log(scenario, KernelAPI, served.reference or served.family, served.type)
    assert expected[-1][0] != "scenario raised", f"scenario broken on the kernel: {expected}"
    actual = _log(scenario, LayerAPI, served.family, served.type)
    difference = first_difference(expected, actual)
    assert difference is None, difference


def test_every_scenario_runs_somewhere() -> None:
    """A scenario no configuration selects would silently test nothing."""
    unused = [s.__name__ for s in scenarios.SCENARIOS
              if not any(_applies(config, s) for config in CONFIGURATIONS)]
    assert unused == []


def test_oracle_tells_families_apart() -> None:
    """The comparison can fail: TCP and AF_UNIX streams answer the same calls
    differently, and the report names the first call where they part."""
    scenario = scenarios.scenario_data_calls_on_unconnected_stream_socket_fail
    tcp = _log(scenario, KernelAPI, socket.AF_INET, STREAM)
    unix = _log(scenario, KernelAPI, socket.AF_UNIX, STREAM)
    difference = first_difference(tcp, unix)
    assert difference is not None
    assert "first difference at call 1" in difference  # recv: ENOTCONN vs EINVAL
    assert first_difference(tcp, tcp[:-1]) is not None  # a missing call counts too
    assert first_difference(tcp, list(tcp)) is None
