"""C event loops (uvloop, gevent) under ``posix-socket run``: refused at import, at once,
with a message naming the limit; a program that falls back to asyncio keeps working.

They do their I/O in C on the descriptor numbers, so on the virtual network (and beside
the layer under ``--net host``) such a program would hang.  Where uvloop and gevent are
installed (the ``test`` extra), plain python runs the same programs, so the refusal is
the layer's and not a missing package.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import textwrap

import pytest

from posix_socket import c_event_loops

TIMEOUT = 30  # a refused import fails in well under a second; this only stops a hang
LIMIT = "not available under posix-socket run"

ECHO = """\
    async def main():
        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        writer.write(b"hello\\n")
        await writer.drain()
        print("echo", (await reader.readline()).decode().strip())
        writer.close()
        server.close()
"""

PROGRAMS = {
    "import uvloop": ("uvloop", "import uvloop\n"),
    "uvloop policy": ("uvloop", "import asyncio\nimport uvloop\n" + textwrap.dedent(ECHO)
                      + "asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())\n"
                        "asyncio.run(main())\n"),
    "uvloop.install": ("uvloop", "import asyncio\nimport uvloop\n" + textwrap.dedent(ECHO)
                       + "uvloop.install()\nasyncio.run(main())\n"),
    "uvloop.run": ("uvloop", "import asyncio\nimport uvloop\n" + textwrap.dedent(ECHO)
                   + "uvloop.run(main())\n"),
    "import gevent": ("gevent", "import gevent\n"),
    "gevent monkey": ("gevent", textwrap.dedent("""\
        from gevent import monkey
        monkey.patch_all()
        import socket
        a, b = socket.socketpair()
        a.sendall(b"echo hello")
        print(b.recv(10).decode())
    """)),
}

FALLBACK = "import asyncio\n" + textwrap.dedent("""\
    try:
        import uvloop
    except ImportError:
        uvloop = None
""") + textwrap.dedent(ECHO) + textwrap.dedent("""\
    if uvloop is None:
        asyncio.run(main())
    else:
        uvloop.run(main())
""")


def run(args: list[str], tmp_path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "prog.py").write_text(source)
    return subprocess.run([*args, "prog.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT)


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


@pytest.mark.parametrize("net", ["virtual", "host"])
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_a_c_event_loop_is_refused_at_import_naming_the_limit(tmp_path, program, net):
    package, source = PROGRAMS[program]
    result = run([sys.executable, "-m", "posix_socket", "run", "--net", net], tmp_path,
                 source)
    assert result.returncode == 1, result.stderr
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith(f"ModuleNotFoundError: {package} is not available under "
                           "posix-socket run"), result.stderr
    assert "in C on the descriptor numbers" in last and "known limit" in last
    assert result.stdout == ""  # refused before anything of it ran


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_python_itself_runs_the_same_programs(tmp_path, program):
    """The oracle: the refusal is the layer's, not a package missing."""
    package, source = PROGRAMS[program]
    if not installed(package):
        pytest.skip(f"{package} is not installed (pip install -e '.[test]' installs it)")
    result = run([sys.executable], tmp_path, source)
    assert result.returncode == 0, result.stderr
    assert result.stdout in ("", "echo hello\n")


@pytest.mark.parametrize("net", ["virtual", "host"])
def test_a_program_that_falls_back_to_asyncio_keeps_working(tmp_path, net):
    result = run([sys.executable, "-m", "posix_socket", "run", "--net", net], tmp_path,
                 FALLBACK)
    assert (result.returncode, result.stdout) == (0, "echo hello\n"), result.stderr


def test_the_refusal_is_an_import_error_and_comes_off_again():
    for name in ("uvloop", "gevent", "gevent.monkey"):
        sys.modules.pop(name, None)
    c_event_loops.install()
    try:
        for name in ("uvloop", "gevent.monkey"):
            with pytest.raises(ImportError, match="known limit") as refused:
                importlib.import_module(name)
            assert isinstance(refused.value, ModuleNotFoundError)
            assert refused.value.name == name.partition(".")[0]  # the parent first
        importlib.import_module("json")  # anything else imports as usual
    finally:
        c_event_loops.uninstall()
    assert c_event_loops.Refuser not in map(type, sys.meta_path)
    if installed("uvloop"):
        assert importlib.import_module("uvloop").__name__ == "uvloop"
