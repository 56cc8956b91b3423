"""CPython's own test_asyncio modules that do socket work, on the patched stdlib.

Each preset runs in a child process: ``host`` (the kernel behind the drop-ins: the
harness itself must pass there), ``virtual`` (numbers shown to the kernel's pollers,
as plain ``patch()`` does) and ``virtual-unshown`` (never shown, as under
``posix-socket run``).  Failures must be exactly the ones listed with a reason, and the
virtual runs must pass and skip module by module what the host run does.

test_ssl is the slowest module (about a minute a preset, the presets side by side):
its threaded servers wrap proxies of their sockets and close without close_notify, so
asyncio's shutdown waits on the layer to pass the kernel's EOF on.
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from cpython_runs import assert_failures_as_listed, finished

RUNNER = pathlib.Path(__file__).parent / "conformance" / "run_cpython_asyncio.py"
# The running interpreter's own test_asyncio (3.10 has no test_ssl module yet).
MODULES = [f"test.test_asyncio.{name}" for name in (
    "test_events", "test_streams", "test_sock_lowlevel", "test_server", "test_sendfile",
    "test_base_events", "test_unix_events", "test_selector_events", "test_buffered_proto",
    "test_sslproto", "test_ssl")
    if importlib.util.find_spec(f"test.test_asyncio.{name}") is not None]
PRESETS = ("host", "virtual", "virtual-unshown")

# {test id: reason} per preset.
KNOWN_FAILURES: dict[str, dict[str, str]] = {preset: {} for preset in PRESETS}

# From 3.12 these tests start processes that listen on AF_UNIX for this one:
# multiprocessing's forkserver makes its listener here (a virtual socket) and passes
# the number to the server process, where it is no kernel socket; a forked Manager
# listens on the virtual network of its own (forked) process.  This process's connect
# finds no kernel socket at the path and is refused (ECONNREFUSED, no hang): the
# network lives in one process (README, known limits).
FORKSERVER = ("another process listens on AF_UNIX through a virtual socket (forkserver, "
              "Manager): ECONNREFUSED, the network lives in one process (README limits)")
if sys.version_info >= (3, 12):  # the tests are new in 3.12
    for preset in ("virtual", "virtual-unshown"):
        KNOWN_FAILURES[preset].update(dict.fromkeys([
            "test.test_asyncio.test_events.TestCGetEventLoop.test_get_event_loop_new_process",
            "test.test_asyncio.test_events.TestPyGetEventLoop.test_get_event_loop_new_process",
            "test.test_asyncio.test_unix_events.TestFork.test_fork_asyncio_run",
            "test.test_asyncio.test_unix_events.TestFork.test_fork_asyncio_subprocess",
            "test.test_asyncio.test_unix_events.TestFork.test_fork_signal_handling",
        ], FORKSERVER))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], dict]]:
    """``run(preset)``: that child's result; all three start together on first use
    (they mostly wait on their own threads).  Output goes to files: no full pipes."""
    folder = tmp_path_factory.mktemp("cpython_asyncio")
    children = {}
    for preset in PRESETS:
        out, err = folder / f"{preset}.out", folder / f"{preset}.err"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            children[preset] = (subprocess.Popen(
                [sys.executable, str(RUNNER), preset, *MODULES], stdout=stdout,
                stderr=stderr), out, err)

    def run(preset: str) -> dict:
        return finished(*children[preset])

    yield run
    for child, _, _ in children.values():
        if child.poll() is None:
            child.kill()
        child.wait()


@pytest.mark.timeout(700)
@pytest.mark.parametrize("preset", PRESETS)
def test_cpython_test_asyncio_passes_on_the_patched_stdlib(
        runs: Callable[[str], dict], preset: str) -> None:
    result = runs(preset)
    assert_failures_as_listed(result, KNOWN_FAILURES[preset])
    assert result["run"] > 750
    if preset != "host":
        host = runs("host")
        assert result["skipped"] == host["skipped"]
        # Module by module what host passes, but for the known failures (host has none).
        expected = {name: {**counts, "passed": counts["passed"] - sum(
                        test.startswith(f"{name}.") for test in KNOWN_FAILURES[preset])}
                    for name, counts in host["modules"].items()}
        assert result["modules"] == expected
