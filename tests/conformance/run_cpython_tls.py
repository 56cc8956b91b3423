"""Run CPython's own TLS tests with the stdlib patched onto the virtual preset.

Usage: python run_cpython_tls.py MODULE...   (e.g. test.test_ssl)

The socket, select and selectors modules are patched (``patch()``) and TLS is hooked
(``posix_socket.tls.replacements()``), so the tests' servers and clients -- blocking
``ssl`` threads, asyncio streams -- meet on the virtual network.  Prints one JSON
object: the number of tests run and the ids of those that failed, errored or were
skipped.  A separate process, because the CPython tests change process-wide state;
faulthandler ends it with the threads' stacks if a test hangs.
"""

import faulthandler
import json
import sys
import unittest

import posix_socket as ps
from posix_socket import tls
from posix_socket.patching import patch

faulthandler.dump_traceback_later(480, exit=True)
ps.use("virtual")
patch()
for target, name, value in tls.replacements():
    setattr(target, name, value)

suite = unittest.TestSuite(unittest.TestLoader().loadTestsFromName(name)
                           for name in sys.argv[1:])
result = unittest.TestResult()
suite.run(result)
print(json.dumps({
    "run": result.testsRun,
    "failed": sorted(test.id() for test, _ in result.failures + result.errors),
    "skipped": sorted(test.id() for test, _ in result.skipped),
    "details": {test.id(): text[-1500:] for test, text in result.failures + result.errors},
}))
