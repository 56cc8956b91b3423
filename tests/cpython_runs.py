"""What the CPython conformance tests share: reading a child runner's JSON result and
holding it to the list of known failures."""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import Iterable


def finished(child: subprocess.Popen, out: pathlib.Path, err: pathlib.Path,
             timeout: float = 600) -> dict:
    """The result of a runner whose output goes to files (so it never stalls on a
    full pipe): its last stdout line.  A hang past ``timeout`` kills it."""
    try:
        code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        code = child.wait()
    assert code == 0, err.read_text()[-3000:]
    return json.loads(out.read_text().splitlines()[-1])


def communicated(child: subprocess.Popen, timeout: float = 600) -> dict:
    """The result of a runner started with pipes for stdout and stderr."""
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, err[-3000:]
    return json.loads(out.splitlines()[-1])


def assert_failures_as_listed(result: dict, known: dict[str, str],
                              also_allowed: Iterable[str] = ()) -> None:
    """Failures must be exactly ``known`` (each with its reason), apart from
    ``also_allowed`` ones that may fail or pass: a listed one that passes turns red
    until the list is updated."""
    allowed = set(known) | set(also_allowed)
    unexpected = {t: result["details"][t] for t in result["failed"] if t not in allowed}
    assert not unexpected, "\n\n".join(f"{t}\n{text}" for t, text in unexpected.items())
    fixed = set(known) - set(result["failed"])
    assert not fixed, f"now passing, remove from KNOWN_FAILURES: {sorted(fixed)}"
