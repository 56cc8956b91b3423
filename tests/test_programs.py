"""Unmodified programs under ``posix-socket run``, and the ``run`` command itself.

Each program in tests/programs/ is an ordinary script that knows nothing of
posix-socket, checks its own results and prints one line.  It must print that line:

* on the virtual network inside ``unshare -n``, a network namespace where not even
  loopback is up, so the kernel's TCP/IP cannot have carried a byte: it ran on the
  virtual network, offline;
* on ``--net host`` outside the namespace, where the kernel is the oracle: the same
  output, so the virtual network did what Linux does.

The ``run`` tests compare with plain ``python`` run the same way: python is the oracle
for argv, sys.path, ``__main__``, tracebacks and exit statuses.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs"
TIMEOUT = 60  # each program takes well under a second; this only stops a hang
HANG = 10  # how long a program known to hang (see VIRTUAL_XFAIL) is given

# What each program prints when all its checks passed (the same on every network).
EXPECTED = {
    "http_server_clients.py":
        "ok http: urllib 3 requests and 128 from 16 threads, http.client 20 requests on "
        "1 connection, 1 MiB bodies",
    "socketserver_tcp_udp.py":
        "ok socketserver: 20 TCP clients x 50 lines (sha256 f970ca6dc2ae0d4d), "
        "200 UDP datagrams",
    "xmlrpc_program.py":
        "ok xmlrpc: 100 calls (sum 5050), 256 KiB binary, a fault, a multicall",
    "mp_connection.py":
        "ok multiprocessing.connection: AF_INET, AF_UNIX path and abstract, "
        "400 messages each, 1 MiB, wrong key refused",
    "asyncio_streams.py":
        "ok asyncio streams: 300 concurrent clients x 10 lines over TCP and AF_UNIX "
        "(sha256 daedf64bc4f8bac4), loop.sendfile of 1048576 bytes",
    "asyncio_datagrams.py":
        "ok asyncio datagrams: 50 endpoints x 20 datagrams over IPv4 and IPv6, "
        "unreachable port -> ConnectionRefusedError",
    "requests_wsgi.py":
        "ok requests: GET and POST of 1 MiB, 404, 30 queries, a streamed download, by name",
}

# Programs a known bug of the layer stops on the virtual network: name -> the bug, for
# xfail(strict=True).  (multiprocessing.connection was here until patch() routed
# os.read/os.write/os.close on virtual numbers to posix.)
VIRTUAL_XFAIL: dict[str, str] = {}


def command() -> list[str]:
    """The ``posix-socket`` console script of this interpreter, else ``python -m``."""
    script = pathlib.Path(sys.executable).with_name("posix-socket")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "posix_socket"]


@functools.cache
def namespace_unavailable() -> str | None:
    """Why ``unshare -n`` cannot be used here, or None if it can."""
    if shutil.which("unshare") is None:
        return "no unshare(1) on PATH"
    if os.geteuid() != 0:
        return "unshare -n needs root (CI runs as root)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -n fails here: {probe.stderr.strip()}"
    return None


def offline(args: list[str], timeout: float = TIMEOUT,
            **kwargs) -> subprocess.CompletedProcess[str]:
    reason = namespace_unavailable()
    if reason is not None:
        pytest.skip(reason)
    return subprocess.run(["unshare", "-n", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def online(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def program_params(xfail: dict[str, str]) -> list[object]:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=xfail[name]))
            if name in xfail else name for name in sorted(EXPECTED)]


def test_every_program_is_listed():
    assert sorted(p.name for p in PROGRAMS.glob("*.py")) == sorted(EXPECTED)


def test_the_namespace_really_has_no_network():
    """What makes the offline runs a proof: the kernel's TCP/IP cannot work in there."""
    probe = "import socket; socket.create_connection(('127.0.0.1', 9), timeout=5)"
    result = offline([sys.executable, "-c", probe])
    assert result.returncode == 1
    assert "Network is unreachable" in result.stderr


@pytest.mark.parametrize("name", program_params(VIRTUAL_XFAIL))
def test_program_runs_offline_on_the_virtual_network(name):
    result = offline([*command(), "run", str(PROGRAMS / name)],
                     timeout=HANG if name in VIRTUAL_XFAIL else TIMEOUT)
    assert (result.returncode, result.stdout) == (0, EXPECTED[name] + "\n"), result.stderr


@pytest.mark.parametrize("name", program_params({}))
def test_program_prints_the_same_on_the_kernel(name):
    result = online([*command(), "run", "--net", "host", str(PROGRAMS / name)])
    assert (result.returncode, result.stdout) == (0, EXPECTED[name] + "\n"), result.stderr


def test_a_program_runs_offline_as_a_module_too():
    result = offline([*command(), "run", "-m", "asyncio_datagrams"], cwd=PROGRAMS)
    assert (result.returncode, result.stdout) == (0, EXPECTED["asyncio_datagrams.py"] + "\n")


# -- the run command, with python as the oracle ----------------------------------------

PROBE = """\
import json, socket, sys, warnings
main = sys.modules["__main__"]
warnings.warn("shown in __main__ by default", DeprecationWarning)
print(json.dumps({
    "argv": sys.argv, "path0": sys.path[0], "name": __name__, "file": __file__,
    "spec": None if __spec__ is None else __spec__.name, "package": __package__,
    "loader": type(__loader__).__name__, "is_main": main.__dict__ is globals(),
    "main_file": getattr(main, "__file__", None),
}))
print(socket.socket.__module__, file=sys.stderr)
"""


@pytest.fixture
def scripts(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory with the probe as a script, a module and a package's __main__."""
    (tmp_path / "probe.py").write_text(PROBE)
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(PROBE)
    return tmp_path


def both(args: list[str], cwd: pathlib.Path, **kwargs) -> tuple[subprocess.CompletedProcess[str],
                                                               subprocess.CompletedProcess[str]]:
    """``python ARGS`` and ``posix-socket run ARGS``."""
    return (online([sys.executable, *args], cwd=cwd, **kwargs),
            online([*command(), "run", *args], cwd=cwd, **kwargs))


def split_probe(result: subprocess.CompletedProcess[str]) -> tuple[dict, list[str]]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr.splitlines()


@pytest.mark.parametrize("args", [["probe.py"], ["probe.py", "-m", "--net", "host", "--", "x"],
                                  ["-m", "probe", "--help", "a b"], ["-m", "pkg", "-v"]],
                         ids=["script", "script-with-options", "module", "package"])
def test_run_looks_to_the_program_as_python_does(scripts, args):
    python, run = both(args, scripts)
    (expected, python_err), (got, run_err) = split_probe(python), split_probe(run)
    assert got == expected
    # The same DeprecationWarning, shown because the program is __main__; only the
    # patched socket class differs.
    assert python_err[:-1] == run_err[:-1]
    assert (python_err[-1], run_err[-1]) == ("socket", "posix_socket.socket")


def test_the_script_directory_is_sys_path_0_through_a_symlink(scripts, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "link.py").symlink_to(scripts / "probe.py")
    (scripts / "helper.py").write_text("VALUE = 'found next to the script'\n")
    (scripts / "probe.py").write_text("import helper\n" + PROBE + "print(helper.VALUE)\n")
    python, run = both([str(elsewhere / "link.py")], elsewhere)
    assert python.returncode == run.returncode == 0, run.stderr
    assert run.stdout == python.stdout
    assert json.loads(run.stdout.splitlines()[0])["path0"] == str(scripts)


@pytest.mark.parametrize(("code", "status"), [
    ("pass", 0), ("import sys; sys.exit()", 0), ("import sys; sys.exit(3)", 3),
    ("import sys; sys.exit('bye')", 1), ("raise SystemExit(256 + 7)", 7),
    ("def f():\n    raise ValueError('boom')\nf()", 1),
    ("import sys\nsys.excepthook = lambda *a: print('hooked', a[0].__name__)\n1/0", 1),
    ("import atexit, threading, time\n"
     "threading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\n"
     "atexit.register(print, 'atexit')\nraise KeyError(1)", 1),
    ("def broken(:\n    pass", 1),
    ("try:\n    {}['key']\nexcept KeyError as e:\n    raise RuntimeError('wrapped') from e", 1),
], ids=["end", "exit", "exit-3", "exit-text", "exit-263", "exception", "excepthook",
        "threads-and-atexit", "syntax-error", "chained"])
def test_exit_status_and_traceback_are_pythons(tmp_path, code, status):
    (tmp_path / "prog.py").write_text(code + "\n")
    python, run = both(["prog.py"], tmp_path)
    assert python.returncode == status
    assert (run.returncode, run.stdout, run.stderr) == (status, python.stdout, python.stderr)


def test_a_directory_or_zip_with_main_runs_as_python_runs_it(scripts):
    (scripts / "app").mkdir()
    (scripts / "app" / "__main__.py").write_text(PROBE)
    with zipfile.ZipFile(scripts / "app.zip", "w") as archive:
        archive.writestr("__main__.py", PROBE)
    for target in ("app", "app.zip"):
        python, run = both([target, "arg"], scripts)
        assert split_probe(run)[0] == split_probe(python)[0]


def test_a_module_traceback_shows_runpy_as_python_does(scripts):
    (scripts / "fails.py").write_text("import json\njson.loads('{')\n")
    python, run = both(["-m", "fails"], scripts)
    assert python.returncode == run.returncode == 1
    assert run.stderr == python.stderr
    assert "runpy" in run.stderr


def _reset_sigint() -> None:
    # The test runner's own disposition must not leak in: python only turns SIGINT
    # into KeyboardInterrupt when it is not ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_uncaught_keyboard_interrupt_exits_by_sigint_as_python_does(tmp_path):
    (tmp_path / "prog.py").write_text("raise KeyboardInterrupt\n")
    python, run = both(["prog.py"], tmp_path, preexec_fn=_reset_sigint)
    assert python.returncode == run.returncode == -signal.SIGINT
    assert run.stderr == python.stderr


CONNECTED = """\
import socket
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
conn, _ = server.accept()
"""
BLOCKED = {
    "accept": """\
        import socket
        server = socket.create_server(("127.0.0.1", 0))
        print("waiting", flush=True)
        server.accept()
    """,
    "recv": CONNECTED + textwrap.dedent("""\
        def receive(sock):
            return sock.recv(10)

        print("waiting", flush=True)
        receive(client)
    """),
    "recv with a timeout": CONNECTED + textwrap.dedent("""\
        client.settimeout(60)
        print("waiting", flush=True)
        client.recv_into(bytearray(10))
    """),
    "sendall": CONNECTED + textwrap.dedent("""\
        print("waiting", flush=True)
        client.sendall(bytes(1 << 28))
    """),
    "select": CONNECTED + textwrap.dedent("""\
        import select
        print("waiting", flush=True)
        select.select([client], [], [])
    """),
    "selectors": CONNECTED + textwrap.dedent("""\
        import selectors
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ)
        print("waiting", flush=True)
        selector.select()
    """),
    "asyncio": """\
        import asyncio

        async def main():
            server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            print("waiting", flush=True)
            await server.serve_forever()

        asyncio.run(main())
    """,
}
# The layer's own POSIX calls, which only run under posix-socket (no python to compare).
BLOCKED_LAYER_ONLY = {
    "posix.recv": """\
        import socket
        from posix_socket import posix
        a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        print("waiting", flush=True)
        posix.recv(a, 10)
    """,
}


def interrupted(program: list[str], cwd: pathlib.Path) -> tuple[int, str]:
    """Start ``program``, press Ctrl-C once it says it is about to block; its status
    and stderr."""
    process = subprocess.Popen(program, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_reset_sigint)
    try:
        assert process.stdout.readline() == "waiting\n"
        time.sleep(0.2)  # into the blocking call (earlier, the traceback tells)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
        process.wait()
    return process.returncode, err


def frames(traceback_text: str) -> tuple[list[str], int]:
    """The traceback's frames in prog.py (``line N, in function``), and how many of
    them are posix-socket's."""
    located = re.findall(r'^  File "(.*)", (line \d+, in .*)$', traceback_text, re.M)
    program = [where for path, where in located if path.endswith("prog.py")]
    ours = sum("/posix_socket/" in path for path, _ in located)
    return program, ours


@pytest.mark.parametrize("net", ["virtual", "host"])
@pytest.mark.parametrize("blocked", sorted(BLOCKED))
def test_ctrl_c_in_a_blocking_call_shows_the_frames_python_shows(tmp_path, net, blocked):
    """Ctrl-C, uncaught: the program dies by SIGINT, and the traceback shows the
    program's frames as python's does, one frame of the layer for the call python
    runs in C, and no exception chained from inside the layer (the BlockingIOError
    the layer waits after)."""
    (tmp_path / "prog.py").write_text(textwrap.dedent(BLOCKED[blocked]))
    status, expected = interrupted([sys.executable, "prog.py"], tmp_path)
    assert status == -signal.SIGINT
    status, err = interrupted([*command(), "run", "--net", net, "prog.py"], tmp_path)
    assert status == -signal.SIGINT
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    # asyncio.run chains the main task's CancelledError, under python too.
    assert err.count("During handling") == expected.count("During handling"), err
    program, ours = frames(err)
    assert program == frames(expected)[0], err
    assert ours <= 1, err


@pytest.mark.parametrize("net", ["virtual", "host"])
@pytest.mark.parametrize("blocked", sorted(BLOCKED_LAYER_ONLY))
def test_ctrl_c_in_a_blocking_posix_call_shows_one_frame_of_the_layer(tmp_path, net,
                                                                        blocked):
    (tmp_path / "prog.py").write_text(textwrap.dedent(BLOCKED_LAYER_ONLY[blocked]))
    status, err = interrupted([*command(), "run", "--net", net, "prog.py"], tmp_path)
    assert status == -signal.SIGINT
    assert "During handling" not in err, err
    program, ours = frames(err)
    assert program == ["line 5, in <module>"] and ours == 1, err


def test_a_missing_script_or_module_fails_as_python_does(tmp_path):
    python, run = both(["missing.py"], tmp_path)
    assert python.returncode == run.returncode == 2
    assert "can't open file" in run.stderr and "missing.py" in run.stderr
    python, run = both(["-m", "no_such_module"], tmp_path)
    assert python.returncode == run.returncode == 1
    # runpy's own "No module named" message, after the interpreter's path, which is
    # the launcher's shebang (python3, in a venv) on one side and python on the other.
    assert run.stderr.split(": ", 1)[1] == python.stderr.split(": ", 1)[1]


@pytest.mark.parametrize(("args", "message"), [
    ([], "a script, -m module or -c code is required"), (["--net"], "expected one argument"),
    (["--net", "nowhere", "x.py"], "invalid choice: 'nowhere'"), (["-m"], "expected one"),
    (["-c"], "argument -c: expected one argument"),
    (["--frobnicate", "x.py"], "unrecognized option: --frobnicate"),
    (["--host", "db", "x.py"], "expected NAME=ADDRESS, not 'db'"),
    (["--host", "db=nowhere", "x.py"], "'nowhere' is not an IP address"),
])
def test_run_usage_errors(args, message):
    result = online([*command(), "run", *args])
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.startswith("usage: posix-socket run")


def test_named_hosts_given_on_the_command_line_are_on_the_virtual_network(tmp_path):
    (tmp_path / "prog.py").write_text(textwrap.dedent("""\
        import socket
        import posix_socket
        server = socket.create_server(("db.internal", 5432))
        client = socket.create_connection(("db", 5432))
        conn, peer = server.accept()
        # The client lives on the machine (the first host): it speaks from its address.
        machine = posix_socket.network().first_host
        print(server.getsockname(), peer[0] in machine.addresses,
              socket.gethostbyaddr("10.0.0.2")[0],
              socket.getaddrinfo("cache", 1, type=socket.SOCK_STREAM)[0][4])
    """))
    result = offline([*command(), "run", "--host", "db.internal,db=10.0.0.2",
                      "--host=cache=10.0.0.3,fd00::3", "prog.py"], cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "('10.0.0.2', 5432) True db.internal ('fd00::3', 1, 0, 0)\n"


def test_named_hosts_need_a_virtual_network(tmp_path):
    (tmp_path / "prog.py").write_text("print('never')\n")
    result = online([*command(), "run", "--net", "host", "--host", "a=10.0.0.2", "prog.py"],
                    cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert "--host needs a virtual network" in result.stderr


def test_run_help_lists_the_presets():
    result = online([*command(), "run", "--help"])
    assert result.returncode == 0
    assert "--net PRESET" in result.stdout and "host, virtual" in result.stdout


# -- run -c CODE, as python -c ------------------------------------------------------------

COMMAND_PROBE = """\
import json, socket, sys, warnings
main = sys.modules["__main__"]
warnings.warn("shown in __main__ by default", DeprecationWarning)
print(json.dumps({
    "argv": sys.argv, "path0": sys.path[0], "name": __name__,
    "has_file": "__file__" in globals(), "spec": __spec__, "package": __package__,
    "loader": repr(__loader__), "is_main": main.__dict__ is globals(),
}))
print(socket.socket.__module__, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [[], ["a", "-m", "--net", "host"], ["--", "-c", "x"]],
                         ids=["alone", "with-options", "dashes"])
def test_run_dash_c_looks_to_the_code_as_python_dash_c_does(tmp_path, args):
    python, run = both(["-c", COMMAND_PROBE, *args], tmp_path)
    (expected, python_err), (got, run_err) = split_probe(python), split_probe(run)
    assert got == expected
    assert got["argv"] == ["-c", *args] and got["path0"] == ""
    assert python_err[:-1] == run_err[:-1]  # the warning, shown from "<string>"
    assert (python_err[-1], run_err[-1]) == ("socket", "posix_socket.socket")


def test_run_dash_c_attached_and_safe_path_as_python(tmp_path):
    code = "import sys; print(sys.argv, sys.path[0])"
    python, run = both(["-c" + code, "x"], tmp_path)
    assert python.returncode == run.returncode == 0, run.stderr
    assert run.stdout == python.stdout == "['-c', 'x'] \n"
    # -P (3.11+; -I before it, which also drops PYTHONPATH): python puts nothing in
    # sys.path[0] for -c, and neither does run.
    flag = "-P" if sys.version_info >= (3, 11) else "-I"
    python = online([sys.executable, flag, "-c", code], cwd=tmp_path)
    run = online([sys.executable, flag, "-m", "posix_socket", "run", "-c", code],
                 cwd=tmp_path)
    assert python.returncode == run.returncode == 0, run.stderr
    assert python.stdout == run.stdout
    assert not python.stdout.endswith(" \n")


@pytest.mark.parametrize(("code", "status"), [
    ("pass", 0), ("import sys; sys.exit(3)", 3), ("import sys; sys.exit('bye')", 1),
    ("def f():\n    raise ValueError('boom')\nf()", 1), ("def broken(:\n    pass", 1),
    ("try:\n    {}['key']\nexcept KeyError as e:\n    raise RuntimeError('wrapped') from e",
     1),
], ids=["end", "exit-3", "exit-text", "exception", "syntax-error", "chained"])
def test_run_dash_c_exit_status_and_traceback_are_python_dash_cs(tmp_path, code, status):
    python, run = both(["-c", code], tmp_path)
    assert python.returncode == status
    assert (run.returncode, run.stdout, run.stderr) == (status, python.stdout, python.stderr)
    if status == 1 and "SystemExit" not in code and "exit" not in code:
        assert 'File "<string>", line' in run.stderr


def test_python_dash_m_posix_socket_run_is_the_same(scripts):
    via_module = online([sys.executable, "-m", "posix_socket", "run", "probe.py", "z"],
                        cwd=scripts)
    via_script = online([*command(), "run", "probe.py", "z"], cwd=scripts)
    assert split_probe(via_module) == split_probe(via_script)


# -- the shipped example (the README's main command) -------------------------------------

EXAMPLE = ROOT / "examples" / "virtual_city.py"
EXAMPLE_OUTPUT = """\
town            the town hall and the weather station are open
town hall       registered ada in north
ada             is citizen number 1
weather         asked about north
ada             hears the north forecast: sunny, 21 C
town hall       registered grace in harbour
grace           is citizen number 2
weather         asked about harbour
grace           hears the harbour forecast: windy, 17 C
town hall       registered linus in old town
linus           is citizen number 3
weather         asked about old town
linus           hears the old town forecast: rain, 15 C
town hall       GET /census
mayor           the census counts 3: ada, grace, linus
market          200 shoppers at once, 200 sales
town            closed for the night
"""


def test_the_example_tells_its_story_offline():
    result = offline([*command(), "run", str(EXAMPLE)], cwd=ROOT)
    assert (result.returncode, result.stdout) == (0, EXAMPLE_OUTPUT), result.stderr


def test_the_example_tells_the_same_story_on_the_kernel():
    result = online([sys.executable, str(EXAMPLE)], cwd=ROOT)
    assert (result.returncode, result.stdout) == (0, EXAMPLE_OUTPUT), result.stderr


# -- run --virtual-time ---------------------------------------------------------------------

VIRTUAL_TIME_PROGRAM = """\
import socket, threading, time
from posix_socket import clock
real = clock.real_monotonic()
print(time.time())
time.sleep(600)
server = socket.create_server(("127.0.0.1", 80))
client = socket.create_connection(("127.0.0.1", 80))
conn, _ = server.accept()
conn.settimeout(30)
threading.Thread(target=lambda: (time.sleep(45), client.sendall(b"late"))).start()
try:
    conn.recv(10)
except TimeoutError:
    print("timed out after", time.monotonic() - 1000)
print(conn.recv(10), time.monotonic() - 1000, clock.real_monotonic() - real < 1)
"""


def test_run_virtual_time_makes_minutes_of_waiting_take_no_time(tmp_path):
    (tmp_path / "prog.py").write_text(VIRTUAL_TIME_PROGRAM)
    result = offline([*command(), "run", "--virtual-time", "prog.py"], cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == ("1735689600.0\ntimed out after 630.0\n"
                             "b'late' 645.0 True\n")


def test_run_virtual_time_needs_a_virtual_network(tmp_path):
    (tmp_path / "prog.py").write_text("print('never')\n")
    result = online([*command(), "run", "--net", "host", "--virtual-time", "prog.py"],
                    cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert "--virtual-time needs a virtual network" in result.stderr
