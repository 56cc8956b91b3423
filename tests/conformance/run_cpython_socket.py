"""Run CPython's own test_socket classes with the stdlib patched onto a preset.

Usage: python run_cpython_socket.py PRESET CLASS...  Prints one JSON object: the
number of tests run and the ids of those that failed, errored or were skipped.  A
separate process, because the CPython tests change process-wide state.
"""

import json
import sys
import unittest

import posix_socket as ps
from posix_socket.patching import patch

ps.use(sys.argv[1])
patch()

from test import test_socket  # noqa: E402  (must see the patched stdlib)

suite = unittest.TestSuite()
for name in sys.argv[2:]:
    suite.addTests(unittest.TestLoader().loadTestsFromTestCase(getattr(test_socket, name)))
result = unittest.TestResult()
suite.run(result)
print(json.dumps({
    "run": result.testsRun,
    "failed": sorted(test.id() for test, _ in result.failures + result.errors),
    "skipped": sorted(test.id() for test, _ in result.skipped),
    "details": {test.id(): text[-1500:] for test, text in result.failures + result.errors},
}))
