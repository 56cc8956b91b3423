"""``ps.trace()`` and ``posix-socket run --trace``: one strace-like line per call.

One scripted program runs on the virtual drivers and on the kernel (the host preset);
its trace is compared line by line, structurally (call, descriptor, result; not the
timestamps), with the calls it made and what they returned.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import posix_socket as ps
from posix_socket import descriptors, posix, registry
from posix_socket import run as runner

LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{6}) \[([^\]]+)\] (\w+)\((.*)\) = (.*?)"
                  r"(?: <waited (\d+\.\d{6})s>)?$")
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


class Line:
    def __init__(self, text: str) -> None:
        match = LINE.match(text)
        assert match, f"not a trace line: {text!r}"
        self.text = text
        self.thread = match[2]
        self.call = match[3]
        self.args = match[4]
        self.fd = match[4].split(",")[0]
        self.result = match[5]
        self.waited = None if match[6] is None else float(match[6])

    def __repr__(self) -> str:
        return self.text


def parse(text: str) -> list[Line]:
    return [Line(line) for line in text.splitlines()]


def refused_port(family: int = socket.AF_INET) -> int:
    """A port nothing listens on: bound, then closed, on the preset in use."""
    fd = posix.socket(family, socket.SOCK_STREAM)
    posix.bind(fd, ("127.0.0.1", 0))
    port = posix.getsockname(fd)[1]
    posix.close(fd)
    return port


def scripted_program() -> tuple[list[tuple], str]:
    """Run the calls under a trace; returns (what each call gave, the trace)."""
    out = io.StringIO()
    done: list[tuple] = []  # (call, fd, result text the line must show)
    early = posix.socket(socket.AF_INET, socket.SOCK_STREAM)  # before the trace
    port = refused_port()
    with ps.trace(out):
        s = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        done.append(("socket", "AF_INET", str(s)))
        posix.setsockopt(s, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        done.append(("setsockopt", str(s), "0"))
        posix.bind(s, ("127.0.0.1", 0))
        done.append(("bind", str(s), "0"))
        posix.listen(s, 5)
        done.append(("listen", str(s), "0"))
        addr = posix.getsockname(s)
        done.append(("getsockname", str(s), repr(addr)))
        reuse = posix.getsockopt(s, socket.SOL_SOCKET, socket.SO_REUSEADDR)
        done.append(("getsockopt", str(s), repr(reuse)))
        c1 = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        done.append(("socket", "AF_INET", str(c1)))
        with pytest.raises(ConnectionRefusedError):
            posix.connect(c1, ("127.0.0.1", port))
        done.append(("connect", str(c1), "-1 ECONNREFUSED (Connection refused)"))
        posix.close(c1)
        done.append(("close", str(c1), "0"))
        c = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        done.append(("socket", "AF_INET", str(c)))
        posix.connect(c, addr)
        done.append(("connect", str(c), "0"))
        a, peer = posix.accept(s)
        done.append(("accept4", str(s), f"{a} (peer {peer!r})"))

        def later() -> None:
            time.sleep(0.05)
            posix.send(a, b"hello world")

        sender = threading.Thread(target=later, name="sender")
        sender.start()
        assert posix.recv(c, 100) == b"hello world"
        done.append(("recv", str(c), "b'hello world' (11 bytes)", "waited"))
        sender.join()
        with pytest.raises(BlockingIOError):
            posix.recv(c, 100, socket.MSG_DONTWAIT | socket.MSG_PEEK)
        done.append(("recv", str(c), "-1 EAGAIN (Resource temporarily unavailable)"))
        assert posix.poll([(c, select_in_out())], 0) == [(c, 4)]
        done.append(("poll", f"[{{fd={c}", f"1 ([{{fd={c}, revents=POLLOUT}}])"))
        assert posix.select([c], [], [], 0.01) == ([], [], [])
        done.append(("select", f"[{c}]", "0 (Timeout)"))
        posix.shutdown(c, socket.SHUT_WR)
        done.append(("shutdown", str(c), "0"))
        assert posix.recv(a, 10) == b""
        done.append(("recv", str(a), "b'' (0 bytes)"))
        for fd in (a, c, s):
            posix.close(fd)
            done.append(("close", str(fd), "0"))
        u1 = posix.socket(socket.AF_INET, socket.SOCK_DGRAM)
        done.append(("socket", "AF_INET", str(u1)))
        posix.bind(u1, ("127.0.0.1", 0))
        done.append(("bind", str(u1), "0"))
        target = posix.getsockname(u1)
        done.append(("getsockname", str(u1), repr(target)))
        u2 = posix.socket(socket.AF_INET, socket.SOCK_DGRAM)
        done.append(("socket", "AF_INET", str(u2)))
        assert posix.sendto(u2, b"dgram", 0, target) == 5
        done.append(("sendto", str(u2), "5"))
        _data, source = posix.recvfrom(u1, 100)
        done.append(("recvfrom", str(u1), f"b'dgram' (5 bytes) from {source!r}"))
        x, y = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        done.append(("socketpair", "AF_UNIX", "0"))
        posix.send(x, b"pair")
        done.append(("send", str(x), "4"))
        assert posix.recv(y, 10) == b"pair"
        done.append(("recv", str(y), "b'pair' (4 bytes)"))
        with pytest.raises(OSError):
            posix.getpeername(early)
        done.append(("getpeername", str(early),
                     "-1 ENOTCONN (Transport endpoint is not connected)"))
        for fd in (u1, u2, x, y, early):
            posix.close(fd)
            done.append(("close", str(fd), "0"))
    return done, out.getvalue()


def select_in_out() -> int:
    import select
    return select.POLLIN | select.POLLOUT


@pytest.mark.parametrize("preset", ["virtual", "host"])
def test_trace_shows_every_call_of_a_scripted_program_in_order(preset):
    with ps.use(preset):
        done, text = scripted_program()
    lines = parse(text)
    main = [line for line in lines if line.thread == "MainThread"]
    assert [(line.call, line.fd, line.result) for line in main] == [
        step[:3] for step in done], text
    for line, step in zip(main, done, strict=True):
        if step[3:] == ("waited",):
            assert line.waited is not None and line.waited >= 0.03, line
    (sent,) = [line for line in lines if line.thread == "sender"]
    assert (sent.call, sent.result) == ("send", "11")
    assert "b'hello world' (11 bytes), 0" in sent.args
    # Names, not numbers.
    assert "setsockopt" in text and "SOL_SOCKET, SO_REUSEADDR, 1" in text
    assert "MSG_PEEK|MSG_DONTWAIT" in text  # in bit order, as strace writes them
    assert re.search(r"socketpair\(AF_UNIX, SOCK_STREAM, 0, \[\d+, \d+\]\) = 0", text)


@pytest.mark.parametrize("preset", ["virtual", "host"])
def test_a_blocking_call_that_times_out_is_one_line_with_its_wait(preset):
    out = io.StringIO()
    with ps.use(preset):
        a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        posix.setsockopt(a, socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(0.05))
        with ps.trace(out), pytest.raises(BlockingIOError):
            posix.recv(a, 10)
        posix.close(a)
        posix.close(b)
    (line,) = parse(out.getvalue())
    assert (line.call, line.fd, line.result) == (
        "recv", str(a), "-1 EAGAIN (Resource temporarily unavailable)")
    assert line.waited is not None and line.waited >= 0.04


def _timeval(seconds: float) -> bytes:
    import struct
    return struct.pack("@ll", int(seconds), int(seconds % 1 * 1_000_000))


def test_a_non_blocking_accept_shows_eagain():
    out = io.StringIO()
    with ps.use("virtual"):
        s = posix.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        posix.bind(s, ("127.0.0.1", 0))
        posix.listen(s, 1)
        with ps.trace(out), pytest.raises(BlockingIOError):
            posix.accept(s)
        posix.close(s)
    (line,) = parse(out.getvalue())
    assert (line.call, line.fd, line.result, line.waited) == (
        "accept4", str(s), "-1 EAGAIN (Resource temporarily unavailable)", None)


def test_a_blocking_accept_is_one_line_with_its_wait():
    out = io.StringIO()
    with ps.use("virtual"):
        s = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        posix.bind(s, ("127.0.0.1", 0))
        posix.listen(s, 1)
        c = posix.socket(socket.AF_INET, socket.SOCK_STREAM)

        def later() -> None:
            time.sleep(0.05)
            posix.connect(c, posix.getsockname(s))

        with ps.trace(out):
            helper = threading.Thread(target=later, name="client")
            helper.start()
            a, _ = posix.accept(s)
            helper.join()
        for fd in (a, c, s):
            posix.close(fd)
    (accepted,) = [line for line in parse(out.getvalue()) if line.call == "accept4"]
    assert accepted.fd == str(s) and accepted.result.startswith(f"{a} (peer ")
    assert accepted.waited is not None and accepted.waited >= 0.03


def test_trace_restores_exactly_the_registered_drivers_and_costs_nothing_after():
    with ps.use("virtual"):
        before = ps.registered_families()
        early = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        driver = descriptors.lookup(early).driver
        with ps.trace(io.StringIO()):
            assert all(isinstance(d, ps.StackedDriver)
                       for d in ps.registered_families().values())
            assert descriptors.lookup(early).driver is not driver  # traced too
            during = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        after = ps.registered_families()
        assert after.keys() == before.keys()
        assert all(after[f] is before[f] for f in before)
        for fd in (early, during):
            f = descriptors.lookup(fd)
            assert f.driver is driver
            # The hot path is the driver's own bound method again, nothing between.
            assert f.send == driver.send and f.send.__func__ is type(driver).send
            assert f.recv == driver.recv and f.recv.__func__ is type(driver).recv
            posix.close(fd)
        assert posix._observer is None
        assert not registry._stacks


def test_without_a_trace_the_hot_path_is_the_drivers_own():
    with ps.use("virtual") as preset:
        fd = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        f = descriptors.lookup(fd)
        inet = preset.drivers[socket.AF_INET]
        assert f.driver is inet
        assert f.send.__self__ is inet and f.send.__func__ is type(inet).send
        assert posix._observer is None
        posix.close(fd)


def test_dropin_kernel_sockets_return_to_the_kernel_fast_path_after_a_trace():
    with ps.use("host"), ps.patch():
        a, b = socket.socketpair()
        out = io.StringIO()
        with ps.trace(out):
            a.send(b"x")
            assert b.recv(1) == b"x"
        assert [line.call for line in parse(out.getvalue())] == ["send", "recv"]
        a.send(b"y")  # the C call again: no layer, no line
        assert b.recv(1) == b"y"
        assert b._kernel_number() and a._kernel_number()
        a.close()
        b.close()
    assert len(parse(out.getvalue())) == 2


def test_lines_never_interleave_between_threads():
    out = io.StringIO()
    rounds, workers = 100, 4
    with ps.use("virtual"):
        pairs = [posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(workers)]

        def work(pair: tuple[int, int]) -> None:
            for _ in range(rounds):
                posix.send(pair[0], b"x" * 100)
                posix.recv(pair[1], 100)

        with ps.trace(out):
            threads = [threading.Thread(target=work, args=(pair,)) for pair in pairs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        for pair in pairs:
            posix.close(pair[0])
            posix.close(pair[1])
    lines = parse(out.getvalue())
    assert len(lines) == 2 * rounds * workers


def test_trace_to_a_path_writes_the_file(tmp_path):
    path = tmp_path / "calls.trace"
    with ps.use("virtual"), ps.trace(path):
        fd = posix.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        posix.close(fd)
    lines = parse(path.read_text())
    assert [line.call for line in lines] == ["socket", "close"]
    assert lines[0].args == "AF_INET6, SOCK_DGRAM, 0"


def test_socket_creation_failure_shows_its_errno():
    out = io.StringIO()
    with ps.use("virtual"), ps.trace(out), pytest.raises(OSError):
        posix.socket(socket.AF_INET, socket.SOCK_RAW)
    (line,) = parse(out.getvalue())
    assert line.call == "socket" and line.result.startswith("-1 E")


# -- posix-socket run --trace ----------------------------------------------------------

PROGRAM = textwrap.dedent("""
    import socket, threading
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    refused = probe.getsockname()
    probe.close()
    try:
        socket.create_connection(refused)
    except ConnectionRefusedError:
        pass
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    client.sendall(b"ping")
    assert conn.recv(10) == b"ping"
    for s in (conn, client, server):
        s.close()
""")


@pytest.mark.parametrize("net", ["virtual", "host"])
def test_run_trace_writes_every_call_of_the_program(tmp_path, net):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    trace_file = tmp_path / "out.trace"
    env = dict(os.environ, PYTHONPATH=SRC)
    result = subprocess.run(
        [sys.executable, "-m", "posix_socket", "run", "--net", net, "--trace",
         str(trace_file), str(script)], env=env, capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 0, result.stderr
    lines = parse(trace_file.read_text())
    calls = [line.call for line in lines]
    assert "-1 ECONNREFUSED (Connection refused)" in [line.result for line in lines]
    for call in ("socket", "bind", "getsockname", "close", "connect", "listen",
                 "accept4", "send", "recv"):
        assert call in calls, calls
    (received,) = [line for line in lines if line.call == "recv"]
    assert received.result == "b'ping' (4 bytes)"


def test_run_trace_to_stderr_by_default(tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC)
    result = subprocess.run(
        [sys.executable, "-m", "posix_socket", "run", "--trace", "-c",
         "import socket; a, b = socket.socketpair(); a.send(b'x'); b.recv(1)"],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [line.call for line in parse(result.stderr)] == ["socketpair", "send", "recv"]


@pytest.mark.parametrize(("argv", "trace", "target"), [
    (["--trace", "prog.py"], "", "prog.py"),
    (["--trace", "out.txt", "prog.py"], "out.txt", "prog.py"),
    (["--trace=prog.txt", "prog.py", "x"], "prog.txt", "prog.py"),
    (["--trace", "-m", "http.server"], "", "http.server"),
    (["--trace", "out", "-c", "pass"], "out", "pass"),
    (["prog.py", "--trace"], None, "prog.py"),
])
def test_run_parses_trace_with_and_without_a_file(argv, trace, target):
    options = runner.parse_args(argv)
    assert (options.trace, options.target) == (trace, target)


def test_a_preset_used_inside_a_trace_is_traced_and_put_back():
    out = io.StringIO()
    with ps.use("host"):
        host = ps.registered_families()
        with ps.trace(out):
            with ps.use("virtual") as preset:
                fd = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
                assert isinstance(descriptors.lookup(fd).driver, ps.StackedDriver)
                assert descriptors.lookup(fd).driver.inner is preset.drivers[socket.AF_INET]
                posix.close(fd)
            assert all(isinstance(d, ps.StackedDriver)
                       for d in ps.registered_families().values())
        after = ps.registered_families()
        assert all(after[f] is host[f] for f in host)
    assert [line.call for line in parse(out.getvalue())] == ["socket", "close"]


def test_registering_a_layer_again_does_not_trace_twice():
    out = io.StringIO()
    with ps.use("virtual"), ps.trace(out):
        ps.register_family(socket.AF_INET, ps.registered_families()[socket.AF_INET],
                           replace=True)
        fd = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        posix.close(fd)
    assert [line.call for line in parse(out.getvalue())] == ["socket", "close"]


def test_an_epoll_wait_is_one_line_with_what_it_found():
    from posix_socket import select as dropin
    out = io.StringIO()
    with ps.use("virtual"):
        a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        poller = dropin.epoll()
        poller.register(b, dropin.EPOLLIN)
        posix.send(a, b"x")
        with ps.trace(out):
            assert poller.poll(1) == [(b, dropin.EPOLLIN)]
        poller.close()
        posix.close(a)
        posix.close(b)
    (line,) = parse(out.getvalue())
    assert (line.call, line.result) == ("epoll_wait", f"1 ([{{fd={b}, events=EPOLLIN}}])")


def test_two_traces_at_once_each_see_every_call_once():
    outer, inner = io.StringIO(), io.StringIO()
    with ps.use("virtual"):
        a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ps.trace(outer):
            with ps.trace(inner):
                posix.send(a, b"x")
                assert posix.poll([(b, 1)], 0) == [(b, 1)]
                assert posix.select([b], [], [], 0) == ([b], [], [])
            posix.recv(b, 1)
        posix.close(a)
        posix.close(b)
        assert posix._observer is None and not registry._stacks
    assert [line.call for line in parse(inner.getvalue())] == ["send", "poll", "select"]
    assert [line.call for line in parse(outer.getvalue())] == [
        "send", "poll", "select", "recv"]


def test_under_a_virtual_clock_a_wait_shows_the_time_the_program_saw_pass():
    out = io.StringIO()
    with ps.use("virtual", clock="virtual"):
        a, b = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        posix.setsockopt(a, socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(5))
        started = time.monotonic()
        with ps.trace(out), pytest.raises(BlockingIOError):
            posix.recv(a, 10)
        took = time.monotonic() - started
        posix.close(a)
        posix.close(b)
    (line,) = parse(out.getvalue())
    assert line.result == "-1 EAGAIN (Resource temporarily unavailable)"
    assert line.waited is not None and 4.99 <= line.waited <= 5.01, line
    assert took < 2.5  # the clock jumped: no 5 s of wall time
