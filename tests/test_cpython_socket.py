"""CPython's own test_socket, run on the stdlib patched onto the registry.

The same classes run twice in child processes: with the ``host`` preset (the kernel
behind the drop-in: the harness itself must pass there) and with ``virtual`` (TCP and
UDP on the in-process network).  Each run's failures must be exactly the ones listed,
each with its reason: fixing one turns the test red until the list is updated.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

RUNNER = pathlib.Path(__file__).parent / "conformance" / "run_cpython_socket.py"

CLASSES = [
    "GeneralModuleTests", "BasicTCPTest", "BasicTCPTest2", "BasicUDPTest",
    "NonBlockingTCPTests", "FileObjectClassTestCase", "UnbufferedFileObjectClassTestCase",
    "LineBufferedFileObjectClassTestCase", "SmallBufferedFileObjectClassTestCase",
    "NetworkConnectionNoServer", "NetworkConnectionAttributesTest",
    "NetworkConnectionBehaviourTest", "BasicSocketPairTest", "TCPTimeoutTest",
    "UDPTimeoutTest", "TestExceptions", "ContextManagersTest", "InheritanceTest",
    "CreateServerTest", "CreateServerFunctionalTest", "SendfileUsingSendTest",
    "SendfileUsingSendfileTest", "SendmsgTCPTest", "RecvmsgTCPTest", "RecvmsgIntoTCPTest",
    "SendmsgUDPTest", "RecvmsgUDPTest", "RecvmsgIntoUDPTest", "SendmsgUDP6Test",
    "RecvmsgUDP6Test", "RecvmsgIntoUDP6Test", "InterruptedRecvTimeoutTest",
    "InterruptedSendTimeoutTest",
    # AF_UNIX: streams bound to paths, abstract names, sendmsg/recvmsg and SCM_RIGHTS.
    "TestUnixDomain", "TestLinuxAbstractNamespace", "SendmsgUnixStreamTest",
    "RecvmsgUnixStreamTest", "RecvmsgIntoUnixStreamTest", "RecvmsgSCMRightsStreamTest",
    "RecvmsgIntoSCMRightsStreamTest", "SendRecvFdsTests", "CmsgMacroTests",
    # More of the file objects and TCP.
    "UnicodeReadFileObjectClassTestCase", "UnicodeWriteFileObjectClassTestCase",
    "UnicodeReadWriteFileObjectClassTestCase", "BufferIOTest", "TCPCloserTest",
    "NonblockConstantTest",
]

# {test id: reason} per preset.
KNOWN_FAILURES: dict[str, dict[str, str]] = {"host": {}, "virtual": {}}


def _run(preset: str) -> dict:
    done = subprocess.run([sys.executable, str(RUNNER), preset, *CLASSES],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.timeout(900)
@pytest.mark.parametrize("preset", ["host", "virtual"])
def test_cpython_test_socket_passes_on_the_patched_stdlib(preset: str) -> None:
    result = _run(preset)
    unexpected = {t: result["details"][t] for t in result["failed"]
                  if t not in KNOWN_FAILURES[preset]}
    assert not unexpected, "\n\n".join(f"{t}\n{text}" for t, text in unexpected.items())
    fixed = set(KNOWN_FAILURES[preset]) - set(result["failed"])
    assert not fixed, f"now passing, remove from KNOWN_FAILURES: {sorted(fixed)}"
    assert result["run"] > 300
