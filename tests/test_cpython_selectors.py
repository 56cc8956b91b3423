"""CPython's own test_selectors, run on the stdlib patched onto the registry.

The classes Linux has (select, poll, epoll and the default selector, with the
many-descriptors test of the scalable ones) run in child processes, at the same time:

* ``host``: the tests' ``socketpair()`` is the patched ``socket.socketpair``, which
  gives kernel AF_UNIX pairs under every preset, so this checks the drop-in selectors
  and select objects on kernel descriptors (the harness must pass here);
* ``virtual``: the tests' ``socketpair`` is replaced by drop-in sockets over the
  virtual preset's ``posix.socketpair(AF_UNIX, ...)``, so every descriptor watched is
  a virtual socket;
* ``tcp``: the same with connected TCP pairs on the virtual network.

Each run's failures must be exactly the ones listed, each with its reason: fixing one
turns the test red until the list is updated.  Known failures run last in their child
(``--last``), so what they leave behind cannot spread to other tests.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from cpython_runs import assert_failures_as_listed, communicated

RUNNER = pathlib.Path(__file__).parent / "conformance" / "run_cpython_selectors.py"

CLASSES = ["DefaultSelectorTestCase", "SelectSelectorTestCase", "PollSelectorTestCase",
           "EpollSelectorTestCase"]

# (preset, what socketpair() gives) per run.
RUNS = {"host": ("host", "kernel"), "virtual": ("virtual", "virtual"),
        "tcp": ("virtual", "tcp")}

# {test id: reason} per run.
KNOWN_FAILURES: dict[str, dict[str, str]] = {"host": {}, "virtual": {}, "tcp": {}}


def _start(run: str) -> subprocess.Popen:
    preset, pairs = RUNS[run]
    last = [arg for test in KNOWN_FAILURES[run] for arg in ("--last", test)]
    return subprocess.Popen([sys.executable, str(RUNNER), preset, pairs, *last, *CLASSES],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    """All runs at once: they wait on timers and alarms much more than they compute."""
    children = {run: _start(run) for run in RUNS}
    return {run: communicated(child) for run, child in children.items()}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("run", list(RUNS))
def test_cpython_test_selectors_passes_on_the_patched_stdlib(run: str, results) -> None:
    result = results[run]
    assert_failures_as_listed(result, KNOWN_FAILURES[run])
    # Every test of the classes ran: 79 in 3.11's test_selectors, 75 in 3.10's.
    assert result["run"] == result["selected"] >= 75
    # Skipped on Linux by the stdlib itself (modify of a select selector's key does
    # not go through a poll object).
    allowed = {"test.test_selectors.SelectSelectorTestCase.test_modify_unregister"}
    if run == "host":
        # Each kernel socket of the layer holds the driver's descriptor and its number:
        # the many-descriptors test stops at the process limit half way ("FD limit
        # reached") and skips itself.
        allowed |= {f"test.test_selectors.{name}.test_above_fd_setsize"
                    for name in ("PollSelectorTestCase", "EpollSelectorTestCase")}
    assert set(result["skipped"]) <= allowed
