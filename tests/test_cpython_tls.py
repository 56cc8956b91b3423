"""CPython's own test_ssl, run on the virtual network in a child process (asyncio's
TLS tests are in test_cpython_asyncio).

Failures must be exactly the ones listed, each with its reason; a listed one that
passes turns the test red until the list is updated.  ``RACES`` may fail or pass.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from cpython_runs import assert_failures_as_listed, communicated

RUNNER = pathlib.Path(__file__).parent / "conformance" / "run_cpython_tls.py"
RUNS = {"test_ssl": ["test.test_ssl"]}

KNOWN_FAILURES: dict[str, dict[str, str]] = {
    "test_ssl": {},
}
# Failures that pass when run again alone are reported by the runner as races and
# shown here, not failed: the test server of test_ssl stops at the first reset, and a
# TLS 1.3 client closing right after its handshake resets the connection whenever the
# server's session tickets arrive first (the kernel nearly always wins that race, the
# virtual network, instant and switching threads on the GIL, loses it now and then).
RACES: dict[str, dict[str, str]] = {
    "test_ssl": {
        "test.test_ssl.ThreadedTests.test_wrong_cert_tls13":
            "the server rejects the client certificate and closes with the client's "
            "last records unread (a reset); if the reset beats the client's first "
            "write, the write raises ConnectionResetError where 3.11's test wants the "
            "alert (later CPythons accept both)",
    },
}


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    children = {run: subprocess.Popen([sys.executable, str(RUNNER), *modules],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
                for run, modules in RUNS.items()}
    return {run: communicated(child) for run, child in children.items()}


@pytest.mark.timeout(700)
@pytest.mark.parametrize("run", list(RUNS))
def test_cpython_tls_tests_pass_on_the_virtual_network(run: str, results) -> None:
    result = results[run]
    assert_failures_as_listed(result, KNOWN_FAILURES[run], also_allowed=RACES[run])
    assert result["run"] >= 150
    if result["races"]:
        print(f"{run}: lost races (passed when run again): {result['races']}")
