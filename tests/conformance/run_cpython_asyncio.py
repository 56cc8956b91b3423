"""Run modules of CPython's own test_asyncio with the stdlib patched onto a preset.

Usage: python run_cpython_asyncio.py PRESET[-unshown] MODULE...  (MODULE as in
``test.test_asyncio.test_streams``).  Prints one JSON object: tests run, the ids of
those that failed, errored or were skipped, and per module how many ran, passed and
were skipped.  ``-unshown`` patches with ``kernel_pollers=False``: numbers are never
shown to the kernel's pollers, as under ``posix-socket run``.  Each test's id goes to
stderr as it starts, and a watchdog dumps every stack and exits on a hang.
"""

import faulthandler
import importlib
import json
import os
import shutil
import sys
import tempfile
import unittest

import posix_socket as ps
from posix_socket.patching import patch

WATCHDOG_SECONDS = 300


class Result(unittest.TestResult):
    def startTest(self, test: unittest.TestCase) -> None:
        print(f"start {test.id()}", file=sys.stderr, flush=True)
        super().startTest(test)


def broken(result: unittest.TestResult) -> list:
    return (result.failures + result.errors
            + [(test, "unexpected success") for test in result.unexpectedSuccesses])


def main() -> None:
    preset, unshown, _ = sys.argv[1].partition("-unshown")
    ps.use(preset)
    patch(kernel_pollers=not unshown)

    scratch = tempfile.mkdtemp(prefix="cpython_asyncio_")  # AF_UNIX paths land here
    os.chdir(scratch)
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    modules = {}
    for name in sys.argv[2:]:
        suite = unittest.TestLoader().loadTestsFromModule(importlib.import_module(name))
        result = Result()
        suite.run(result)
        modules[name] = result
    faulthandler.cancel_dump_traceback_later()
    os.chdir("/")
    shutil.rmtree(scratch, ignore_errors=True)

    print(json.dumps({
        "run": sum(r.testsRun for r in modules.values()),
        "failed": sorted(t.id() for r in modules.values() for t, _ in broken(r)),
        "skipped": sorted(t.id() for r in modules.values() for t, _ in r.skipped),
        "details": {t.id(): text[-1500:] for r in modules.values() for t, text in broken(r)},
        "modules": {name: {"run": r.testsRun, "skipped": len(r.skipped),
                           "passed": r.testsRun - len(r.skipped) - len(broken(r))}
                    for name, r in modules.items()},
    }))


# Guarded: multiprocessing's forkserver and spawn children (3.13's asyncio tests start
# them) import the main script again, as __mp_main__, and must not rerun the tests.
if __name__ == "__main__":
    main()
