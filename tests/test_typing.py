"""The package is typed (PEP 561): ``mypy --strict`` on a user's script sees its hints.

The script is what the README shows; the check runs mypy on the package as it ships
(``py.typed`` in it, hints on the public surface).  A script that misuses a driver's
type must fail, or the hints would be ``Any`` and prove nothing.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")

USER_SCRIPT = '''
import socket
import posix_socket as ps
from posix_socket import posix

with ps.use("virtual") as preset:
    preset.drivers[socket.AF_INET].network.add_host("10.0.0.2", names=["db.internal"])
    preset.drivers[socket.AF_INET6].network.add_host("fd00::2")
    fd = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
    posix.bind(fd, ("db.internal", 5432))
    posix.close(fd)
    reveal_type(preset.drivers[socket.AF_UNIX])
with ps.use("host") as host:
    reveal_type(host.drivers[socket.AF_INET])
with ps.patch():
    pass
'''


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """One mypy cache for the module: the second run skips re-reading typeshed."""
    return tmp_path_factory.mktemp("mypy_cache")


def mypy(script: str, tmp_path: pathlib.Path, cache: pathlib.Path
         ) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "user.py"
    path.write_text(script)
    # PYTHONPATH: mypy looks for installed packages on the interpreter's path, where
    # an untyped package (no py.typed) would be skipped as "missing library stubs".
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    environment.pop("MYPYPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(cache), str(path)],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=300)


def test_mypy_strict_sees_the_readme_pattern_typed(tmp_path: pathlib.Path,
                                                   cache: pathlib.Path) -> None:
    result = mypy(USER_SCRIPT, tmp_path, cache)
    notes = [line.split(": note: ", 1)[1] for line in result.stdout.splitlines()
             if ": note: " in line]
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert not errors, result.stdout
    assert notes == ['Revealed type is "posix_socket.drivers.unix.driver.UnixDriver"',
                     'Revealed type is "posix_socket.drivers.host.HostDriver"']


def test_mypy_strict_rejects_a_driver_the_preset_does_not_have(
        tmp_path: pathlib.Path, cache: pathlib.Path) -> None:
    result = mypy(USER_SCRIPT.replace("drivers[socket.AF_INET6].network",
                                      "drivers[socket.AF_UNIX].network"), tmp_path, cache)
    assert result.returncode == 1
    assert '"UnixDriver" has no attribute "network"' in result.stdout
