"""The pytest plugin: a fresh virtual network per test, on request.

Installed with the package (entry point group ``pytest11``) and inert unless used: a
suite that asks for nothing runs exactly as before, its sockets on the kernel.  A test
asks with the ``virtual_network`` fixture, the ``@pytest.mark.virtual_network(...)``
marker, or the whole run with ``--virtual-network``.  Each such test gets its own
``use("virtual", seed=...)`` and ``patch()``: isolated ports and names, nothing shared
with the next test or with other xdist workers (networks live in the process).

The seed is ``--network-seed`` or, by default, derived from the test's id, so a failing
test replays with the same ports and the same fates on its links; a failure's report
shows the seed.  Sockets the test left open and threads it left running are reported
as warnings at teardown.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from . import descriptors, patching, registry
from .net_config import NetworkConfigError, load_network_config

__all__ = ["virtual_network", "LeftBehindWarning", "seed_for"]

MARKER = "virtual_network"
_MARKER_ARGUMENTS = ("seed", "clock", "hosts", "config")
_SEED_KEY = pytest.StashKey[int]()
_PCAP_KEY = pytest.StashKey[list]()  # [path, keep]


class LeftBehindWarning(UserWarning):
    """A test on a virtual network left sockets open or threads running."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("posix-socket", "virtual networks (posix-socket)")
    group.addoption("--virtual-network", action="store_true", default=False,
                    help="run every test on its own virtual network (sockets never reach "
                         "the kernel's network)")
    group.addoption("--network-seed", type=int, default=None, metavar="N",
                    help="seed of every test's virtual network (default: derived from the "
                         "test's id, shown when a test fails)")
    group.addoption("--virtual-time", action="store_true", default=False,
                    help="run the tests' virtual networks on a virtual clock (sleeps and "
                         "timeouts take no real time)")
    group.addoption("--pcap-dir", default=None, metavar="DIR",
                    help="save each failing test's virtual network traffic as "
                         "DIR/<test id>.pcap (the path is shown in its report)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(seed=None, clock='real', hosts={{name: address}}, config=None): run "
        "the test on a fresh virtual network (posix-socket)")


def seed_for(nodeid: str) -> int:
    """The default seed of a test: a function of its id only, the same in every run
    and every process (not Python's randomized ``hash``)."""
    return int.from_bytes(hashlib.sha256(nodeid.encode()).digest()[:4], "big")


def _marker_options(item: pytest.Item) -> dict[str, Any] | None:
    """The closest marker's arguments, checked (a usage error names the test)."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    if marker.args:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER} takes keyword "
                                f"arguments only ({', '.join(_MARKER_ARGUMENTS)}), not "
                                f"{marker.args!r}")
    unknown = sorted(set(marker.kwargs) - set(_MARKER_ARGUMENTS))
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER} has no argument "
                                f"{unknown[0]!r} (known: {', '.join(_MARKER_ARGUMENTS)})")
    options = dict(marker.kwargs)
    seed = options.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}(seed=...) must be an "
                                f"int, not {seed!r}")
    hosts = options.get("hosts")
    if hosts is not None:
        _check_hosts(item.nodeid, hosts)
    clock = options.get("clock")
    if clock is not None and clock not in ("real", "virtual"):
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}(clock=...) must be "
                                f"'real' or 'virtual', not {clock!r}")
    config = options.get("config")
    if config is not None:
        if not isinstance(config, (str, os.PathLike, Mapping)):
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}(config=...) must "
                                    f"be a path or a mapping, not {config!r}")
        if not isinstance(config, Mapping) and not os.path.isabs(config):
            config = os.path.join(os.path.dirname(str(item.path)), config)
        try:
            options["config"] = load_network_config(config)
        except NetworkConfigError as exc:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}(config=...): "
                                    f"{exc}") from None
    return options


def _file_name(nodeid: str) -> str:
    """A test id as a file name: path separators and brackets become '_'."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", nodeid).strip("_")


def _check_hosts(nodeid: str, hosts: object) -> None:
    where = f"{nodeid}: @pytest.mark.{MARKER}(hosts=...)"
    if not isinstance(hosts, Mapping):
        raise pytest.UsageError(f"{where} must map names to addresses, not {hosts!r}")
    for name, addresses in hosts.items():
        if not isinstance(name, str) or not name:
            raise pytest.UsageError(f"{where}: {name!r} is not a host name")
        if isinstance(addresses, str):
            continue
        if not isinstance(addresses, (list, tuple)) or not addresses or not all(
                isinstance(address, str) for address in addresses):
            raise pytest.UsageError(f"{where}: {name!r} needs an address or a list of "
                                    f"addresses, not {addresses!r}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every marker before any test runs: a usage error stops the run."""
    for item in items:
        _marker_options(item)


@pytest.fixture(autouse=True)
def _posix_socket_virtual_network(request: pytest.FixtureRequest) -> None:
    """Puts marked tests (or all, with --virtual-network) on a virtual network.
    Costs one marker lookup for the others."""
    if (request.node.get_closest_marker(MARKER) is not None
            or request.config.getoption("virtual_network")):
        request.getfixturevalue("virtual_network")


@pytest.fixture
def virtual_network(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh virtual network for the test, with the stdlib patched onto it; yields
    the ``VirtualNetwork``.  Teardown restores the stdlib and the registry and warns
    about sockets left open and threads left running."""
    item = request.node
    options = _marker_options(item) or {}
    config = options.get("config")
    seed = options.get("seed")
    if seed is None:
        seed = request.config.getoption("network_seed")
    if seed is None and config is not None:
        seed = config.seed
    if seed is None:
        seed = seed_for(item.nodeid)
    clock = options.get("clock") or (
        "virtual" if request.config.getoption("virtual_time") else "real")
    item.stash[_SEED_KEY] = seed
    sockets_before = set(descriptors.open_numbers())
    threads_before = set(threading.enumerate())
    preset = registry.use("virtual", seed=seed, clock=clock)
    patched = patching.patch()
    capture = None
    try:
        network = preset.network
        pcap_dir = request.config.getoption("pcap_dir")
        if pcap_dir:
            path = pathlib.Path(pcap_dir) / f"{_file_name(item.nodeid)}.pcap"
            path.parent.mkdir(parents=True, exist_ok=True)
            capture = network.capture(path)
            item.stash[_PCAP_KEY] = [path, False]
        for name, addresses in (options.get("hosts") or {}).items():
            if isinstance(addresses, str):
                addresses = [addresses]
            try:
                network.add_host(*addresses, names=[name])
            except (ValueError, TypeError) as exc:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}(hosts=...): "
                                        f"{name!r}: {exc}") from None
        if config is not None:
            try:
                config.apply(network)
            except NetworkConfigError as exc:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}(config=...): "
                                        f"{exc}") from None
        yield network
    finally:
        if capture is not None:
            capture.close()
        left = sorted(set(descriptors.open_numbers()) - sockets_before)
        patched.restore()
        preset.restore()
    threads = [thread for thread in threading.enumerate() if thread not in threads_before
               and thread.is_alive() and thread.name != "posix-socket network"]
    if left:
        warnings.warn(LeftBehindWarning(
            f"{item.nodeid} left {len(left)} virtual socket(s) open: descriptors "
            f"{', '.join(map(str, left))}"), stacklevel=1)
    if threads:
        warnings.warn(LeftBehindWarning(
            f"{item.nodeid} left {len(threads)} thread(s) running: "
            f"{', '.join(thread.name for thread in threads)}"), stacklevel=1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    seed = item.stash.get(_SEED_KEY, None)
    pcap = item.stash.get(_PCAP_KEY, None)
    if seed is not None and report.failed:
        saved = ""
        if pcap is not None:
            pcap[1] = True
            saved = f"; its traffic: {pcap[0]}"
        report.sections.append(
            ("virtual network", f"seed {seed} (replay: --network-seed {seed} or "
                                f"@pytest.mark.{MARKER}(seed={seed})){saved}"))
    if pcap is not None and report.when == "teardown" and not pcap[1]:
        pcap[0].unlink(missing_ok=True)  # passed: only failing tests keep theirs
