"""Run CPython's own test_socket classes with the stdlib patched onto a preset.

Usage: python run_cpython_socket.py PRESET[-unshown] CLASS...  Prints one JSON object: the
number of tests run, the ids of those that failed, errored or were skipped, and per
class how many ran, passed and were skipped.  A separate process, because the
CPython tests change process-wide state.  Any interpreter with this package on its
path works (e.g. ``PYTHONPATH=src python3.13 ...``): each runs its own test_socket.

CPython's threaded tests can wait forever when the client half fails early (the
server sits in accept(), or a tearDown that expects the client's socket raises and
never signals "done"), and the client's exception is only reported after that wait.
So each test's id goes to stderr as it starts, a client-side exception is printed
there as it happens, and a watchdog dumps every thread's stack and exits if the whole
run takes longer than WATCHDOG_SECONDS: a hang then says where it is and why.
"""

import faulthandler
import json
import os
import shutil
import sys
import tempfile
import traceback
import unittest
from typing import Any

import posix_socket as ps
from posix_socket.patching import patch

WATCHDOG_SECONDS = 480

# PRESET, or PRESET-unshown: patched with kernel_pollers=False, so numbers handed out
# by fileno() are never shown to the kernel's pollers.
preset, unshown, _ = sys.argv[1].partition("-unshown")
ps.use(preset)
patch(kernel_pollers=not unshown)

# CPython's tests make their files (AF_UNIX socket paths among them) in the current
# directory, as regrtest runs them in a scratch one: so do we.
scratch = tempfile.mkdtemp(prefix="cpython_socket_")
os.chdir(scratch)

from test import test_socket  # noqa: E402  (must see the patched stdlib)


def _reporting(test_id: str, call: Any) -> Any:
    def reported(*args: Any) -> Any:
        try:
            return call(*args)
        except BaseException:
            print(f"client side of {test_id} raised:", file=sys.stderr)
            traceback.print_exc()
            raise
    return reported


_client_run = test_socket.ThreadableTest.clientRun


def _client_run_reporting(self: Any, test_func: Any) -> None:
    """CPython's clientRun, with its setup and test function reporting exceptions."""
    self.clientSetUp = _reporting(self.id(), self.clientSetUp)
    _client_run(self, _reporting(self.id(), test_func))


test_socket.ThreadableTest.clientRun = _client_run_reporting


class Result(unittest.TestResult):
    """Records results, and names each test on stderr as it starts."""

    def startTest(self, test: unittest.TestCase) -> None:
        print(f"start {test.id()}", file=sys.stderr, flush=True)
        super().startTest(test)


faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
classes = {}
for name in sys.argv[2:]:
    suite = unittest.TestLoader().loadTestsFromTestCase(getattr(test_socket, name))
    result = Result()
    suite.run(result)
    classes[name] = result
faulthandler.cancel_dump_traceback_later()
os.chdir("/")
shutil.rmtree(scratch, ignore_errors=True)


def ids(pairs: list) -> list:
    return sorted(test.id() for test, _ in pairs)


def broken(result: unittest.TestResult) -> list:
    """(test, text) for each failure, error and unexpected success."""
    return (result.failures + result.errors
            + [(test, "unexpected success") for test in result.unexpectedSuccesses])


print(json.dumps({
    "run": sum(r.testsRun for r in classes.values()),
    "failed": sorted(t for r in classes.values() for t in ids(broken(r))),
    "skipped": sorted(t for r in classes.values() for t in ids(r.skipped)),
    "details": {test.id(): text[-1500:] for r in classes.values()
                for test, text in broken(r)},
    "classes": {name: {"run": r.testsRun, "skipped": len(r.skipped),
                       "passed": r.testsRun - len(r.skipped) - len(broken(r))}
                for name, r in classes.items()},
}))
