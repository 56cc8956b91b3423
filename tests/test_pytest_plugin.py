"""The pytest plugin, run as a user runs it: a test file in a fresh directory, pytest in
a subprocess, the plugin found through its entry point (never named on the command line).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parent.parent / "src")


def start_pytest(directory: Path, source: str, *args: str) -> subprocess.Popen:
    (directory / "test_user.py").write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": SRC, "PYTEST_ADDOPTS": ""}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *args],
        cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_pytest(directory: Path, source: str, *args: str) -> subprocess.CompletedProcess:
    process = start_pytest(directory, source, *args)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def counts(result: subprocess.CompletedProcess) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_the_plugin_is_installed_with_the_package():
    found = [ep for ep in metadata.entry_points(group="pytest11")
             if ep.value == "posix_socket.pytest_plugin"]
    assert found, "pyproject's [project.entry-points.pytest11] is not installed"


USER_TESTS = """
    import socket
    import urllib.request
    import http.server
    import threading

    import pytest

    STDLIB_SOCKET = socket.socket

    def serve_once(port):
        server = http.server.HTTPServer(("api.test", port), http.server.SimpleHTTPRequestHandler)
        threading.Thread(target=server.handle_request, daemon=True).start()
        return server

    @pytest.mark.virtual_network(hosts={"api.test": "10.0.0.80"})
    def test_port_80_on_a_named_host():
        server = serve_once(80)
        with urllib.request.urlopen("http://api.test/", timeout=10) as response:
            assert response.status == 200
        server.server_close()

    def test_the_next_test_does_not_see_that_host(virtual_network):
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("api.test", 80)
        server = socket.create_server(("127.0.0.1", 80))  # free again: a fresh network
        server.close()

    def test_outside_the_plugin_sockets_are_the_stdlibs():
        assert socket.socket is STDLIB_SOCKET
        sock = socket.socket()
        assert type(sock) is STDLIB_SOCKET
        sock.close()

    def test_the_fixture_yields_the_network(virtual_network):
        import posix_socket
        assert posix_socket.network() is virtual_network
        assert socket.socket is not STDLIB_SOCKET

    @pytest.mark.virtual_network(seed=5)
    def test_a_marker_seed_fixes_the_ports():
        import posix_socket
        assert posix_socket.network().seed == 5
"""


def test_fixture_marker_and_isolation_as_a_user_writes_them(tmp_path):
    result = run_pytest(tmp_path, USER_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result).startswith("5 passed")


def test_the_same_file_passes_under_xdist(tmp_path):
    pytest.importorskip("xdist", reason="pytest-xdist is in the test extra")
    result = run_pytest(tmp_path, USER_TESTS, "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in counts(result)


def test_every_test_on_a_network_with_the_option(tmp_path):
    result = run_pytest(tmp_path, """
        import socket
        import posix_socket

        def test_one():
            assert posix_socket.network() is not None
            socket.create_server(("127.0.0.1", 8080)).close()

        def test_two():
            socket.create_server(("127.0.0.1", 8080)).close()
    """, "--virtual-network")
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result).startswith("2 passed")


def test_a_failing_test_shows_its_seed_and_replays_with_it(tmp_path):
    source = """
        import posix_socket

        def test_fails(virtual_network):
            print("ports from", virtual_network.seed)
            assert False
    """
    first = run_pytest(tmp_path, source)
    assert first.returncode == 1
    seed = first.stdout.split("ports from ")[1].split()[0]
    assert f"seed {seed}" in first.stdout
    again = run_pytest(tmp_path, source)
    assert f"ports from {seed}" in again.stdout  # derived from the test id: the same
    chosen = run_pytest(tmp_path, source, "--network-seed", "42")
    assert "ports from 42" in chosen.stdout


def test_sockets_left_open_are_reported(tmp_path):
    result = run_pytest(tmp_path, """
        import socket

        def test_leaks(virtual_network):
            test_leaks.sock = socket.socket()
    """)
    assert result.returncode == 0
    assert "LeftBehindWarning" in result.stdout and "left 1 virtual socket" in result.stdout


BAD_MARKERS = [
    ("virtual_network(speed=1)", "no argument 'speed'"),
    ("virtual_network(1)", "keyword arguments only"),
    ("virtual_network(seed='x')", "must be an int"),
    ("virtual_network(hosts=['a'])", "must map names to addresses"),
    ("virtual_network(hosts={'a': 5})", "needs an address"),
    ("virtual_network(clock='bogus')", "clock"),
]


def test_a_bad_marker_is_a_usage_error_naming_the_test(tmp_path):
    runs = []
    for number, (marker, complaint) in enumerate(BAD_MARKERS):  # in parallel: slow starts
        directory = tmp_path / str(number)
        directory.mkdir()
        runs.append((marker, complaint, start_pytest(directory, f"""
            import pytest

            @pytest.mark.{marker}
            def test_marked():
                pass

            def test_other():
                pass
        """)))
    for marker, complaint, process in runs:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 4, (marker, stdout, stderr)  # a usage error
        assert "test_user.py::test_marked" in stderr and complaint in stderr, marker
        assert "passed" not in stdout


def test_a_bad_host_address_is_a_usage_error(tmp_path):
    result = run_pytest(tmp_path, """
        import pytest

        @pytest.mark.virtual_network(hosts={"a.test": "not-an-address"})
        def test_marked():
            pass
    """)
    assert result.returncode != 0
    assert "test_marked" in result.stdout + result.stderr
    assert "not an IP address" in result.stdout + result.stderr


def test_unittest_classes_and_asyncio_tests_run_on_the_network(tmp_path):
    pytest.importorskip("pytest_asyncio", reason="pytest-asyncio is in the test extra")
    result = run_pytest(tmp_path, """
        import asyncio
        import socket
        import unittest

        import pytest
        import posix_socket

        @pytest.mark.virtual_network(hosts={"db.test": "10.0.0.2"})
        class TestOnTheNetwork(unittest.TestCase):
            def test_sees_its_host(self):
                self.assertEqual(socket.gethostbyname("db.test"), "10.0.0.2")
                self.assertEqual(posix_socket.network().find_host("db.test").names,
                                 ["db.test"])

        @pytest.mark.asyncio
        @pytest.mark.virtual_network
        async def test_asyncio_echo():
            async def echo(reader, writer):
                writer.write(await reader.read(100))
                await writer.drain()
                writer.close()
            server = await asyncio.start_server(echo, "127.0.0.1", 7)
            reader, writer = await asyncio.open_connection("127.0.0.1", 7)
            writer.write(b"ping")
            assert await reader.read(100) == b"ping"
            writer.close()
            server.close()
            await server.wait_closed()
            assert posix_socket.network() is not None
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result).startswith("2 passed")


def test_a_suite_that_does_not_use_it_runs_on_the_kernel(tmp_path):
    result = run_pytest(tmp_path, """
        import socket

        def test_kernel():
            import posix_socket
            with socket.socket() as sock:
                assert type(sock) is socket.socket
            try:
                posix_socket.network()
            except LookupError:
                pass
            else:
                raise AssertionError("a virtual network was registered")
    """)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_test_file_passes(tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "test_with_virtual_network.py"
    result = run_pytest(tmp_path, example.read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result).startswith("3 passed")


def test_a_failing_test_leaves_its_traffic_as_a_pcap_that_tshark_reads(tmp_path):
    import shutil
    tshark = shutil.which("tshark")
    if tshark is None:
        if os.environ.get("POSIX_SOCKET_REQUIRE_TSHARK"):
            pytest.fail("tshark is required (CI installs it: .ci/system-tools)")
        pytest.skip("tshark (Wireshark's reader) is not installed: apt-get install tshark")
    pcaps = tmp_path / "pcaps"
    result = run_pytest(tmp_path, """
        import socket

        def exchange():
            server = socket.create_server(("127.0.0.1", 45000))
            client = socket.create_connection(("127.0.0.1", 45000))
            conn, _ = server.accept()
            client.sendall(b"hello")
            assert conn.recv(10) == b"hello"
            for sock in (client, conn, server):
                sock.close()

        def test_passes(virtual_network):
            exchange()

        def test_fails(virtual_network):
            exchange()
            assert False
    """, "--pcap-dir", str(pcaps))
    assert result.returncode == 1
    saved = sorted(pcaps.iterdir())
    assert [path.name for path in saved] == ["test_user.py_test_fails.pcap"]
    assert str(saved[0]) in result.stdout  # the report shows where
    out = subprocess.run([tshark, "-r", str(saved[0]), "-Y", "tcp.len == 5", "-T", "fields",
                          "-e", "tcp.payload"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [b"hello".hex()]


def test_virtual_time_a_quarter_hour_sleep_takes_milliseconds(tmp_path):
    result = run_pytest(tmp_path, """
        import time
        import pytest
        from posix_socket import clock

        @pytest.mark.virtual_network(clock="virtual")
        def test_sleeps_a_quarter_hour():
            real = clock.real_monotonic()
            start = time.monotonic()
            time.sleep(15 * 60)
            assert time.monotonic() - start == 900
            assert clock.real_monotonic() - real < 0.5

        def test_the_option_puts_every_network_on_it(virtual_network):
            assert virtual_network.clock.name == "virtual"
    """, "--virtual-time")
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result).startswith("2 passed")


def test_a_marker_config_file_sets_up_the_network(tmp_path):
    (tmp_path / "net.json").write_text(
        '{"seed": 9, "hosts": {"db.test": ["10.0.0.2"]}, '
        '"links": [{"between": ["localhost", "db.test"], "latency": 0.05}]}')
    (tmp_path / "bad.json").write_text('{"links": [{"between": ["localhost", "x"], '
                                       '"loss": 2}]}')
    good = run_pytest(tmp_path, """
        import socket
        import pytest

        @pytest.mark.virtual_network(config="net.json")
        def test_configured(virtual_network):
            assert virtual_network.seed == 9
            assert socket.gethostbyname("db.test") == "10.0.0.2"
            assert virtual_network.links()[0].latency == 0.05
    """)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = run_pytest(tmp_path, """
        import pytest

        @pytest.mark.virtual_network(config="bad.json")
        def test_badly_configured():
            pass
    """)
    assert bad.returncode == 4
    assert "test_badly_configured" in bad.stderr and "bad.json" in bad.stderr


def test_anyio_tests_run_on_the_network(tmp_path):
    pytest.importorskip("anyio", reason="anyio is in the test extra")
    result = run_pytest(tmp_path, """
        import anyio
        import pytest
        import posix_socket

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        @pytest.mark.virtual_network(hosts={"echo.test": "10.0.0.7"})
        async def test_anyio_echo():
            async def serve(client):
                async with client:
                    await client.send(await client.receive())
            listener = await anyio.create_tcp_listener(local_host="echo.test", local_port=7)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(listener.serve, serve)
                async with await anyio.connect_tcp("echo.test", 7) as stream:
                    await stream.send(b"ping")
                    assert await stream.receive() == b"ping"
                tasks.cancel_scope.cancel()
            assert posix_socket.network().find_host("echo.test").names == ["echo.test"]
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result).startswith("1 passed")


def test_pytest_under_run_gives_no_warning_of_the_plugins_own(tmp_path):
    """``posix-socket run -m pytest``: the package is imported before pytest loads its
    plugin, which must not make pytest warn that it cannot rewrite the package (pytest
    9.2 warns for an editable install too; earlier ones only for a regular one, so the
    marker pytest looks for is checked as well)."""
    from _pytest.assertion.rewrite import AssertionRewriter

    import posix_socket
    assert AssertionRewriter.is_rewrite_disabled(posix_socket.__doc__ or "")
    (tmp_path / "test_user.py").write_text("def test_nothing():\n    pass\n")
    env = {**os.environ, "PYTHONPATH": SRC, "PYTEST_ADDOPTS": ""}
    env.pop("PYTEST_XDIST_WORKER", None)
    result = subprocess.run(
        [sys.executable, "-m", "posix_socket", "run", "-m", "pytest", "-p",
         "no:cacheprovider", "-q", "-W", "error::pytest.PytestAssertRewriteWarning"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout.lower(), result.stdout

