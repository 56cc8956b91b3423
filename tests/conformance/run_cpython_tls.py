"""Run CPython's own TLS tests with the stdlib patched onto the virtual preset.

Usage: python run_cpython_tls.py MODULE...   (e.g. test.test_ssl)

The socket, select and selectors modules are patched (``patch()``) and TLS is hooked
(``posix_socket.tls.replacements()``), so the tests' servers and clients -- blocking
``ssl`` threads, asyncio streams -- meet on the virtual network.  Prints one JSON
object: the number of tests run and the ids of those that failed, errored or were
skipped, and of those that failed but passed when run again alone (up to three times) (``races``).
A separate process, because the CPython tests change process-wide state;
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

loader = unittest.TestLoader()
suite = unittest.TestSuite(loader.loadTestsFromName(name) for name in sys.argv[1:])
result = unittest.TestResult()
suite.run(result)
failed = {test.id(): text for test, text in result.failures + result.errors}
# A failure that passes when run again alone (up to three times) is reported as a
# race, not a failure: on the virtual network delivery is instant and threads switch
# on the GIL, so protocol races the kernel nearly always wins (a client closing right
# after a TLS 1.3 handshake, before the server's session tickets land: a reset, not a
# FIN) are lost more often.
races = []
for test_id in sorted(failed):
    for _attempt in range(3):
        again = unittest.TestResult()
        loader.loadTestsFromName(test_id).run(again)
        if again.wasSuccessful() and again.testsRun == 1:
            races.append(test_id)
            del failed[test_id]
            break
print(json.dumps({
    "run": result.testsRun,
    "failed": sorted(failed),
    "races": races,
    "skipped": sorted(test.id() for test, _ in result.skipped),
    "details": {test_id: text[-1500:] for test_id, text in failed.items()},
}))
