"""What CI runs is what the README tells a developer to run, and it proves every
Python the package supports: the whole suite on the default python3, the rest of the
versions through .ci/versions."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
CI_RUN = ROOT / ".ci" / "run"
CI_VERSIONS = ROOT / ".ci" / "versions"


def _commands(text: str) -> list[str]:
    """Shell lines without comments and blanks."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def _readme_test_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Test\n", 1)[1]
    return _commands(re.search(r"```sh\n(.*?)```", section, re.S).group(1))


def _minor(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def test_ci_runs_the_readme_test_commands_after_the_install() -> None:
    """After its install steps (pip's, and any the tests need from the system)."""
    commands = _commands(CI_RUN.read_text())
    last_install = max(n for n, line in enumerate(commands) if " install " in line)
    assert any("pip install" in line for line in commands[:last_install + 1])
    assert commands[last_install + 1:] == _readme_test_commands()
    assert ".ci/versions" in _readme_test_commands()


def test_the_versions_with_the_default_are_every_supported_python() -> None:
    """From pyproject's requires-python up to the newest one .ci/versions runs, no gap:
    the default python3 (the whole suite) fills its own place."""
    listed = re.search(r"^VERSIONS=\((.*)\)$", CI_VERSIONS.read_text(), re.M).group(1)
    versions = {_minor(version) for version in listed.split()}
    default = subprocess.run(
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True).stdout.strip()
    versions.add(_minor(default))
    lowest = re.search(r'requires-python = ">=(3\.\d+)"',
                       (ROOT / "pyproject.toml").read_text()).group(1)
    newest = max(versions)
    assert min(versions) == _minor(lowest)
    assert versions == {(3, minor) for minor in range(_minor(lowest)[1], newest[1] + 1)}


def test_a_missing_python_fails_the_run_naming_it(tmp_path: pathlib.Path) -> None:
    environment = {**os.environ, "PYENV_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(CI_VERSIONS), "3.99"], capture_output=True, text=True,
                            env=environment, timeout=60)
    assert result.returncode == 1
    assert "no Python 3.99" in result.stderr
    assert not (ROOT / ".venvs" / "3.99").exists()
