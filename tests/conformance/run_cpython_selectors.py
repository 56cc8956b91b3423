"""Run CPython's own test_selectors classes with the stdlib patched onto a preset.

Usage: python run_cpython_selectors.py PRESET PAIRS [--last TEST_ID]... CLASS...
PAIRS says what the
tests' ``socketpair()`` gives: ``kernel`` (the patched ``socket.socketpair``, which is
always a kernel AF_UNIX pair) or ``virtual`` (drop-in sockets over the preset's own
``posix.socketpair(AF_UNIX, ...)``, numbers kept inside the layer) or ``tcp`` (a
connected TCP pair through the preset's network).  Prints one JSON
object: the number of tests run and the ids of those that failed, errored or were
skipped.  A separate process, because the CPython tests change process-wide state.
"""

import json
import socket
import sys
import unittest

import posix_socket as ps
from posix_socket import posix
from posix_socket.patching import patch

preset, pairs, *rest = sys.argv[1:]
last = {rest[i + 1] for i, arg in enumerate(rest) if arg == "--last"}
classes = [arg for i, arg in enumerate(rest) if arg != "--last" and rest[i - 1] != "--last"]
ps.use(preset)
patch()

from test import test_selectors  # noqa: E402  (must see the patched stdlib)


def layer_socketpair(family=socket.AF_UNIX, type=socket.SOCK_STREAM, proto=0):
    """A connected pair from the preset's AF_UNIX driver, as drop-in socket objects."""
    a, b = posix.socketpair(family, type | socket.SOCK_CLOEXEC, proto, visible=False)
    return (socket.socket(family, type, proto, fileno=a),
            socket.socket(family, type, proto, fileno=b))


_listeners: list = []


def tcp_socketpair(family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0):
    """A connected TCP pair on the preset's network, as drop-in socket objects.  One
    listener serves them all: the many-descriptors test makes ~10,000 pairs, and a
    listener each would use up the ephemeral ports (closed ones wait in TIME_WAIT)."""
    if not _listeners:
        _listeners.append(socket.create_server(("127.0.0.1", 0), backlog=8))
    listener = _listeners[0]
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    return client, accepted


if pairs == "virtual":
    test_selectors.socketpair = layer_socketpair
elif pairs == "tcp":
    test_selectors.socketpair = tcp_socketpair

# Tests given with --last (known failures that leave damage behind, such as closed
# numbers the layer still owns) run after all the others, so it cannot spread.
tests = [test for name in classes
         for test in unittest.TestLoader().loadTestsFromTestCase(getattr(test_selectors, name))]
suite = unittest.TestSuite([test for test in tests if test.id() not in last]
                           + [test for test in tests if test.id() in last])
result = unittest.TestResult()
suite.run(result)
print(json.dumps({
    "selected": len(tests),  # what the classes hold in this interpreter's test_selectors
    "run": result.testsRun,
    "failed": sorted(test.id() for test, _ in result.failures + result.errors),
    "skipped": sorted(test.id() for test, _ in result.skipped),
    "details": {test.id(): text[-1500:] for test, text in result.failures + result.errors},
}))
