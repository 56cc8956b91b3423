"""Virtual AF_UNIX sockets talking to other processes' kernel sockets (issue 14, item 15).

The oracle scenarios (unix_scenarios.py, "sockets of other processes") compare call by
call with the kernel.  Here: a whole program under ``posix-socket run`` against plain
python, the waiting that only a kernel peer can end (the pump's wake-ups), and the
documented limits, which fail with EOPNOTSUPP and say why.
"""

from __future__ import annotations

import array
import asyncio
import errno
import os
import pathlib
import selectors
import socket
import subprocess
import sys
import threading
import time

import pytest
import unix_daemon
from leaks import leftovers, open_fds

import posix_socket as ps
from posix_socket import descriptors, posix
from posix_socket.drivers.host import KernelSocket
from posix_socket.drivers.unix import kernel

AF_UNIX, STREAM, DGRAM = socket.AF_UNIX, socket.SOCK_STREAM, socket.SOCK_DGRAM
SOL_SOCKET, SCM_RIGHTS = socket.SOL_SOCKET, socket.SCM_RIGHTS
CLIENT = pathlib.Path(__file__).with_name("unix_kernel_client.py")
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def virtual(tmp_path):
    """The virtual preset for one test; every descriptor and table entry the test made
    must be gone afterwards (the pump's own two live as long as the process)."""
    kernel.start_pump()
    descriptors.placeholder_fd()
    fds, numbers = open_fds(), set(descriptors.open_numbers())
    with ps.use("virtual") as preset:
        yield preset.drivers[AF_UNIX]
    assert leftovers(fds, numbers) == (set(), set())


def kernel_listener(path: str, type: int = STREAM) -> socket.socket:
    """A kernel socket of this process (the stdlib's, captured before any patch)."""
    sock = KernelSocket(AF_UNIX, type)
    sock.bind(path)
    if type != DGRAM:
        sock.listen(8)
    return sock


def errno_and_text(call) -> tuple[int, str]:
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno, str(info.value)


# -- a program, as users run it ------------------------------------------------------------

def test_program_under_run_talks_to_daemons_as_under_plain_python(tmp_path):
    """Data both ways (1 MB each), credentials, SCM_RIGHTS both ways (a pipe, a kernel
    socket), timeouts, makefile, select/poll/selectors, asyncio.open_unix_connection,
    a datagram daemon answering our bound name, and the kernel's refusals: the same
    lines under ``posix-socket run`` as under python."""
    stream_path, dgram_path = str(tmp_path / "stream"), str(tmp_path / "dgram")
    with unix_daemon.running(stream_path, STREAM) as daemon, \
            unix_daemon.running(dgram_path, DGRAM):
        outputs = []
        for launcher in ([sys.executable], [sys.executable, "-m", "posix_socket", "run"]):
            result = subprocess.run(
                [*launcher, str(CLIENT), stream_path, dgram_path, str(daemon.pid)],
                capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            outputs.append(result.stdout)
    plain, layered = outputs
    assert plain.endswith("done\n") and "1 MB to the daemon: b'sunk 1000000'" in plain
    assert layered == plain


# -- in one process, under the virtual preset -------------------------------------------------

def test_connected_socket_stays_virtual_and_delegates_to_a_kernel_socket(virtual, tmp_path):
    path = str(tmp_path / "daemon")
    with kernel_listener(path) as listener:
        fd = posix.socket(AF_UNIX, STREAM)
        try:
            posix.connect(fd, path)
            f = descriptors.lookup(fd)
            assert f.driver is virtual and f.kernel is None
            assert isinstance(f.sock, kernel.KernelBacked)
            assert virtual.kernel_number(f.sock) == f.sock.kernel.fd
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"hello")
                assert posix.recv(fd, 100) == b"hello"
        finally:
            posix.close(fd)


def test_blocking_recv_wakes_when_the_kernel_peer_answers_later(virtual, tmp_path):
    path = str(tmp_path / "daemon")
    with kernel_listener(path) as listener:
        fd = posix.socket(AF_UNIX, STREAM)
        posix.connect(fd, path)
        conn, _ = listener.accept()

        def answer_late() -> None:
            time.sleep(0.2)
            conn.sendall(b"late")
            time.sleep(0.2)
            conn.close()

        thread = threading.Thread(target=answer_late)
        started = time.monotonic()
        thread.start()
        try:
            assert posix.recv(fd, 100) == b"late"
            assert time.monotonic() - started >= 0.15
            assert posix.recv(fd, 100) == b""  # woken by the peer's close: EOF
        finally:
            thread.join()
            posix.close(fd)


def test_blocking_send_waits_for_the_kernel_peer_to_read(virtual, tmp_path):
    path = str(tmp_path / "daemon")
    payload = os.urandom(4 * 1024 * 1024)
    with kernel_listener(path) as listener:
        fd = posix.socket(AF_UNIX, STREAM)
        posix.connect(fd, path)
        conn, _ = listener.accept()
        received = bytearray()

        def read_slowly() -> None:
            time.sleep(0.1)  # the sender fills every buffer first
            while len(received) < len(payload):
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                received.extend(chunk)

        thread = threading.Thread(target=read_slowly)
        thread.start()
        try:
            assert posix.send(fd, payload) == len(payload)
        finally:
            thread.join()
            conn.close()
            posix.close(fd)
        assert bytes(received) == payload


def test_blocking_sendto_into_a_full_kernel_receiver_waits_without_spinning(virtual,
                                                                           tmp_path):
    """Linux sleeps on the receiver, which the layer cannot watch: it polls again after
    short pauses instead, and uses little CPU meanwhile."""
    path = str(tmp_path / "receiver")
    with kernel_listener(path, DGRAM) as receiver:
        fd = posix.socket(AF_UNIX, DGRAM)
        sent = 0
        done = threading.Event()

        def send_many() -> None:
            nonlocal sent
            for _ in range(40):  # more than max_dgram_qlen + 1
                posix.sendto(fd, b"datagram", 0, path)
                sent += 1
            done.set()

        thread = threading.Thread(target=send_many)
        cpu = time.process_time()
        thread.start()
        try:
            assert not done.wait(0.5)
            assert 0 < sent < 40
            assert time.process_time() - cpu < 0.25  # not a busy loop
            receiver.settimeout(5)
            for _ in range(40):
                assert receiver.recv(100) == b"datagram"
            assert done.wait(5)
        finally:
            thread.join()
            posix.close(fd)


def test_a_name_that_moved_to_the_kernel_is_reached_through_the_kernel(virtual, tmp_path):
    """A bound datagram socket that wrote to a daemon owns its name in the kernel now:
    another virtual socket writing to that name reaches it there."""
    daemon_path, mine = str(tmp_path / "daemon"), str(tmp_path / "mine")
    with kernel_listener(daemon_path, DGRAM) as daemon:
        moved = posix.socket(AF_UNIX, DGRAM)
        other = posix.socket(AF_UNIX, DGRAM)
        try:
            posix.bind(moved, mine)
            posix.sendto(moved, b"hello daemon", 0, daemon_path)
            assert daemon.recvfrom(100) == (b"hello daemon", mine)
            posix.sendto(other, b"hello neighbour", 0, mine)
            assert posix.recvfrom(moved, 100) == (b"hello neighbour", None)
            assert posix.getsockname(moved) == mine
        finally:
            posix.close(moved)
            posix.close(other)


# -- the limits, each a clear error -----------------------------------------------------------

def test_kernel_backed_socket_cannot_reach_a_virtual_name(virtual, tmp_path):
    daemon_path, virtual_path = str(tmp_path / "daemon"), str(tmp_path / "virtual")
    with kernel_listener(daemon_path, DGRAM):
        ours = posix.socket(AF_UNIX, DGRAM)
        sender = posix.socket(AF_UNIX, DGRAM)
        try:
            posix.bind(ours, virtual_path)
            posix.sendto(sender, b"to the daemon", 0, daemon_path)
            code, text = errno_and_text(
                lambda: posix.sendto(sender, b"to a virtual socket", 0, virtual_path))
            assert code == errno.EOPNOTSUPP
            assert "reached another process's socket" in text and "virtual" in text
        finally:
            posix.close(ours)
            posix.close(sender)


def test_datagram_socket_that_virtual_sockets_depend_on_cannot_move(virtual, tmp_path):
    daemon_path, mine = str(tmp_path / "daemon"), str(tmp_path / "mine")
    with kernel_listener(daemon_path, DGRAM) as daemon:
        fd = posix.socket(AF_UNIX, DGRAM)
        neighbour = posix.socket(AF_UNIX, DGRAM)
        try:
            posix.bind(fd, mine)
            posix.sendto(neighbour, b"queued", 0, mine)
            code, text = errno_and_text(lambda: posix.sendto(fd, b"x", 0, daemon_path))
            assert code == errno.EOPNOTSUPP and "wait in this socket's queue" in text
            assert posix.recv(fd, 100) == b"queued"  # nothing was lost
            posix.connect(neighbour, mine)
            code, text = errno_and_text(lambda: posix.sendto(fd, b"x", 0, daemon_path))
            assert code == errno.EOPNOTSUPP and "connected to this datagram socket" in text
            posix.close(neighbour)
            neighbour = -1
            posix.sendto(fd, b"now it can", 0, daemon_path)
            assert daemon.recvfrom(100) == (b"now it can", mine)
        finally:
            posix.close(fd)
            if neighbour >= 0:
                posix.close(neighbour)


def test_virtual_socket_cannot_be_passed_to_another_process(virtual, tmp_path):
    """SCM_RIGHTS over a kernel connection carries kernel descriptors (a pipe arrives);
    a virtual socket cannot leave the process: EOPNOTSUPP, and it stays usable."""
    path = str(tmp_path / "daemon")
    with kernel_listener(path) as listener:
        fd = posix.socket(AF_UNIX, STREAM)
        posix.connect(fd, path)
        conn, _ = listener.accept()
        a, b = posix.socketpair(AF_UNIX, STREAM)
        r, w = os.pipe()
        try:
            assert descriptors.lookup(a).kernel is None  # a virtual pair
            code, text = errno_and_text(lambda: posix.sendmsg(
                fd, [b"x"], [(SOL_SOCKET, SCM_RIGHTS, array.array("i", [r, a]).tobytes())]))
            assert code == errno.EOPNOTSUPP and "cannot be passed" in text
            posix.send(a, b"still works")
            assert posix.recv(b, 100) == b"still works"
            posix.sendmsg(fd, [b"pipe"],
                          [(SOL_SOCKET, SCM_RIGHTS, array.array("i", [r]).tobytes())])
            conn.settimeout(5)
            data, fds, _flags, _addr = socket.recv_fds(conn, 100, 4)
            assert data == b"pipe" and len(fds) == 1
            os.write(w, b"through")
            assert os.read(fds[0], 100) == b"through"
            os.close(fds[0])
        finally:
            for number in (r, w):
                os.close(number)
            for number in (a, b, fd):
                posix.close(number)
            conn.close()


def test_a_kernel_backed_socket_passes_its_kernel_socket(virtual, tmp_path):
    path = str(tmp_path / "daemon")
    with kernel_listener(path) as listener:
        carrier = posix.socket(AF_UNIX, STREAM)
        passed = posix.socket(AF_UNIX, STREAM)
        posix.connect(carrier, path)
        carrier_conn, _ = listener.accept()
        posix.connect(passed, path)
        passed_conn, _ = listener.accept()
        try:
            posix.sendmsg(carrier, [b"a socket"],
                          [(SOL_SOCKET, SCM_RIGHTS, array.array("i", [passed]).tobytes())])
            carrier_conn.settimeout(5)
            _data, fds, _flags, _addr = socket.recv_fds(carrier_conn, 100, 1)
            with KernelSocket(fileno=fds[0]) as copy:
                copy.sendall(b"via the passed copy")
                passed_conn.settimeout(5)
                assert passed_conn.recv(100) == b"via the passed copy"
        finally:
            posix.close(carrier)
            posix.close(passed)
            carrier_conn.close()
            passed_conn.close()


def test_a_socket_the_kernel_refuses_goes_back_to_being_virtual(virtual, tmp_path):
    """Named or not, a socket whose first kernel call fails is virtual again, holding
    its name (the file its kernel socket left), so virtual sockets reach it directly."""
    stale, mine = str(tmp_path / "stale"), str(tmp_path / "mine")
    with KernelSocket(AF_UNIX, DGRAM) as leftover:
        leftover.bind(stale)
    fd = posix.socket(AF_UNIX, DGRAM)
    sender = posix.socket(AF_UNIX, DGRAM)
    try:
        posix.bind(fd, mine)
        assert errno_and_text(lambda: posix.sendto(fd, b"x", 0, stale))[0] == errno.ECONNREFUSED
        sock = descriptors.lookup(fd).sock
        assert not isinstance(sock, kernel.KernelBacked) and sock.kernel is None
        assert virtual.space.inodes[sock.inode] is sock
        posix.sendto(sender, b"virtual", 0, mine)
        assert not isinstance(descriptors.lookup(sender).sock, kernel.KernelBacked)
        assert posix.recvfrom(fd, 100) == (b"virtual", None)
    finally:
        posix.close(fd)
        posix.close(sender)


def test_stdlib_under_patch_reaches_a_daemon_with_selectors_and_asyncio(virtual, tmp_path):
    """The stdlib's own socket, selectors and asyncio, patched in this process."""
    path = str(tmp_path / "daemon")
    with unix_daemon.running(path, STREAM), ps.patch():
        with socket.socket(AF_UNIX, STREAM) as sock:
            sock.connect(path)
            assert isinstance(descriptors.lookup(sock.fileno()).sock, kernel.KernelBacked)
            sock.setblocking(False)
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                assert selector.select(0) == []
                sock.send(b"echo:selected")
                assert [mask for _key, mask in selector.select(10)] == [selectors.EVENT_READ]
                assert sock.recv(100) == b"selected"

        async def converse() -> tuple[bytes, bytes]:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"echo:over asyncio\n")
            line = await asyncio.wait_for(reader.readline(), 10)
            writer.write(b"shut")
            rest = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            await writer.wait_closed()
            return line, rest

        assert asyncio.run(converse()) == (b"over asyncio\n", b"")
