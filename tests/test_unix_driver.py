"""The virtual AF_UNIX driver beyond what the oracle compares: files on disk, threads,
descriptors in flight and that none of them leaks."""

from __future__ import annotations

import array
import errno
import os
import socket
import stat
import threading
import time

import pytest
from leaks import leftovers, open_fds

import posix_socket as ps
from posix_socket import descriptors, posix
from posix_socket.drivers.host import HostDriver
from posix_socket.drivers.unix import UnixDriver, kernel

AF_UNIX, STREAM, DGRAM = socket.AF_UNIX, socket.SOCK_STREAM, socket.SOCK_DGRAM
SEQPACKET = socket.SOCK_SEQPACKET
SOL_SOCKET, SCM_RIGHTS = socket.SOL_SOCKET, socket.SCM_RIGHTS


@pytest.fixture
def unix():
    """A fresh virtual AF_UNIX driver for one test; every descriptor and table entry
    the test made must be gone afterwards."""
    descriptors.placeholder_fd()  # made once per process, on first use
    kernel.start_pump()  # likewise, for sockets that reach another process's
    fds, numbers = open_fds(), set(descriptors.open_numbers())
    with ps.use("virtual") as preset:
        yield preset.drivers[AF_UNIX]
    assert leftovers(fds, numbers) == (set(), set())


def rights(*fds: int) -> list:
    return [(SOL_SOCKET, SCM_RIGHTS, array.array("i", fds).tobytes())]


def received(ancdata: list) -> list[int]:
    numbers: list[int] = []
    for level, kind, data in ancdata:
        assert (level, kind) == (SOL_SOCKET, SCM_RIGHTS)
        numbers += array.array("i", data).tolist()
    return numbers


def test_virtual_preset_serves_af_unix_with_a_fresh_driver() -> None:
    with ps.use("virtual") as first, ps.use("virtual") as second:
        assert isinstance(first.drivers[AF_UNIX], UnixDriver)
        assert first.drivers[AF_UNIX] is not second.drivers[AF_UNIX]
    assert ps.UnixDriver is UnixDriver


def test_socketpair_under_the_virtual_preset_is_virtual(unix) -> None:
    a, b = posix.socketpair(AF_UNIX, STREAM | socket.SOCK_NONBLOCK)
    try:
        assert descriptors.lookup(a).driver is unix
        assert descriptors.lookup(a).kernel is None
        posix.send(a, b"ping")
        assert posix.recv(b, 10) == b"ping"
    finally:
        posix.close(a)
        posix.close(b)


def test_bind_makes_a_socket_file_that_unlink_removes(unix, tmp_path) -> None:
    path = str(tmp_path / "sock")
    fd = posix.socket(AF_UNIX, STREAM)
    try:
        posix.bind(fd, path)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        posix.listen(fd, 1)
        os.unlink(path)
        client = posix.socket(AF_UNIX, STREAM)
        with pytest.raises(FileNotFoundError):
            posix.connect(client, path)
        posix.close(client)
        assert posix.getsockname(fd) == path  # the name stays, as on Linux
    finally:
        posix.close(fd)


def test_abstract_names_share_the_kernels_namespace(unix) -> None:
    """One abstract namespace, as Linux has per network namespace: a name a kernel
    socket holds is taken (EADDRINUSE) and reached through the kernel; a name nobody
    holds is refused by the kernel."""
    name = b"\0shared-" + os.urandom(4).hex().encode()
    holder = socket.socket(AF_UNIX, STREAM)
    holder.bind(name)
    holder.listen(1)
    fd = posix.socket(AF_UNIX, STREAM)
    client = posix.socket(AF_UNIX, STREAM | socket.SOCK_CLOEXEC)
    try:
        with pytest.raises(OSError) as info:
            posix.bind(fd, name)
        assert info.value.errno == errno.EADDRINUSE
        with pytest.raises(ConnectionRefusedError):
            posix.connect(client, name + b"!")
        posix.connect(client, name)
        conn, _ = holder.accept()
        with conn:
            assert posix.getpeername(client) == name
    finally:
        posix.close(fd)
        posix.close(client)
        holder.close()


def test_scm_rights_between_threads(unix) -> None:
    """A blocked recvmsg in one thread gets the pipe another thread sends."""
    a, b = posix.socketpair(AF_UNIX, SEQPACKET)
    read_end, write_end = os.pipe()
    result: list = []

    def receive() -> None:
        result.append(posix.recvmsg(b, 100, socket.CMSG_SPACE(4)))

    thread = threading.Thread(target=receive)
    thread.start()
    time.sleep(0.05)
    posix.sendmsg(a, [b"here"], rights(read_end))
    thread.join(5)
    os.close(read_end)
    data, ancdata, _flags, _addr = result[0]
    (copy,) = received(ancdata)
    os.write(write_end, b"hello")
    assert data == b"here" and os.read(copy, 10) == b"hello"
    for fd in (copy, write_end, a, b):
        posix.close(fd)


def test_a_passed_socket_is_the_same_description(unix) -> None:
    """The receiver's number names the very socket sent, even after the sender closed
    its own: O_NONBLOCK is shared and data still flows."""
    a, b = posix.socketpair(AF_UNIX, STREAM)
    c, d = posix.socketpair(AF_UNIX, DGRAM)
    posix.sendmsg(a, [b"x"], rights(c))
    original = descriptors.lookup(c)
    posix.close(c)
    _data, ancdata, _flags, _addr = posix.recvmsg(b, 1, socket.CMSG_SPACE(4))
    (copy,) = received(ancdata)
    assert descriptors.lookup(copy) is original
    posix.send(copy, b"via the copy")
    assert posix.recv(d, 100) == b"via the copy"
    for fd in (copy, a, b, d):
        posix.close(fd)


def test_passing_a_host_socket_and_a_pipe(unix) -> None:
    """Kernel sockets made outside the layer and plain descriptors travel as duplicates
    of their open files."""
    kernel_a, kernel_b = socket.socketpair()
    read_end, write_end = os.pipe()
    a, b = posix.socketpair(AF_UNIX, STREAM)
    posix.sendmsg(a, [b"two"], rights(kernel_a.fileno(), read_end))
    kernel_a.close()
    os.close(read_end)
    _data, ancdata, _flags, _addr = posix.recvmsg(b, 10, socket.CMSG_SPACE(8))
    sock_copy, pipe_copy = received(ancdata)
    os.write(sock_copy, b"kernel")
    assert kernel_b.recv(10) == b"kernel"
    os.write(write_end, b"pipe")
    assert os.read(pipe_copy, 10) == b"pipe"
    for fd in (sock_copy, pipe_copy, write_end, a, b):
        os.close(fd) if fd in (sock_copy, pipe_copy, write_end) else posix.close(fd)
    kernel_b.close()


def test_descriptors_in_flight_are_closed_with_the_socket_that_never_read(unix) -> None:
    read_end, write_end = os.pipe()
    a, b = posix.socketpair(AF_UNIX, DGRAM)
    c, d = posix.socketpair(AF_UNIX, STREAM)
    posix.sendmsg(a, [b"pipe"], rights(read_end))
    posix.sendmsg(a, [b"socket"], rights(c))
    os.close(read_end)
    posix.close(c)
    posix.close(b)  # unread: the pipe's last reader and socket c go with it
    with pytest.raises(BrokenPipeError):
        os.write(write_end, b"x")
    assert posix.recv(d, 10) == b""  # c is closed: its peer reads EOF
    for fd in (a, d):
        posix.close(fd)
    os.close(write_end)


def test_holding_a_descriptor_in_flight_does_not_take_a_low_number(unix) -> None:
    read_end, write_end = os.pipe()
    a, b = posix.socketpair(AF_UNIX, STREAM)
    posix.sendmsg(a, [b"x"], rights(read_end))
    os.close(read_end)
    again = os.dup(write_end)
    assert again == read_end  # the number in flight is free, as on Linux
    for fd in (again, write_end):
        os.close(fd)
    for fd in (a, b):
        posix.close(fd)


def test_peeked_descriptors_are_copies_and_truncated_ones_are_closed(unix) -> None:
    read_end, write_end = os.pipe()
    a, b = posix.socketpair(AF_UNIX, DGRAM)
    posix.sendmsg(a, [b"x"], rights(read_end, read_end))
    os.close(read_end)
    _d, peeked, _f, _a = posix.recvmsg(b, 10, socket.CMSG_SPACE(8), socket.MSG_PEEK)
    _d, kept, flags, _a = posix.recvmsg(b, 10, socket.CMSG_LEN(4))
    assert flags & socket.MSG_CTRUNC
    numbers = received(peeked) + received(kept)
    assert len(numbers) == 3
    for fd in numbers:
        os.close(fd)
    with pytest.raises(BrokenPipeError):
        os.write(write_end, b"x")
    os.close(write_end)
    for fd in (a, b):
        posix.close(fd)


def test_a_blocked_datagram_sender_waits_for_room(unix, tmp_path) -> None:
    path = str(tmp_path / "r")
    receiver = posix.socket(AF_UNIX, DGRAM)
    posix.bind(receiver, path)
    sender = posix.socket(AF_UNIX, DGRAM)
    for _ in range(11):
        posix.sendto(sender, b"x", 0, path)
    done = threading.Event()

    def send_one_more() -> None:
        posix.sendto(sender, b"last", 0, path)
        done.set()

    thread = threading.Thread(target=send_one_more)
    thread.start()
    assert not done.wait(0.1)
    posix.recv(receiver, 10)
    assert done.wait(5)
    thread.join()
    for fd in (receiver, sender):
        posix.close(fd)


def test_many_threads_stream_through_one_listener(unix, tmp_path) -> None:
    path = str(tmp_path / "server")
    listener = posix.socket(AF_UNIX, STREAM)
    posix.bind(listener, path)
    posix.listen(listener, 64)
    payload = os.urandom(100_000)
    errors: list = []

    def client() -> None:
        try:
            fd = posix.socket(AF_UNIX, STREAM)
            posix.connect(fd, path)
            posix.send(fd, payload)
            posix.shutdown(fd, socket.SHUT_WR)
            assert posix.recv(fd, 10) == b"ok"
            posix.close(fd)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for _ in threads:
        conn, _addr = posix.accept(listener)
        chunks = []
        while chunk := posix.recv(conn, 65536):
            chunks.append(chunk)
        assert b"".join(chunks) == payload
        posix.send(conn, b"ok")
        posix.close(conn)
    for thread in threads:
        thread.join(10)
    posix.close(listener)
    assert errors == []


def test_blocking_accept_on_a_listener_shut_for_reading_fails_at_once_as_the_kernel():
    """Linux polls such a listener readable, yet a blocking accept does not sleep:
    EINVAL at once, long before SO_RCVTIMEO runs out (the layer used to wait it out)."""
    timeval = (0).to_bytes(8, "little") + (300_000).to_bytes(8, "little")
    kernel = socket.socket(socket.AF_UNIX)
    kernel.bind(b"\0shut-listener-kernel-%d" % os.getpid())
    kernel.listen()
    kernel.shutdown(socket.SHUT_RD)
    kernel.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    started = time.monotonic()
    with pytest.raises(OSError) as failure:
        kernel.accept()
    kernel_took = time.monotonic() - started
    kernel.close()
    with ps.use("virtual"):
        fd = posix.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        posix.bind(fd, b"\0shut-listener-virtual")
        posix.listen(fd, 5)
        posix.shutdown(fd, socket.SHUT_RD)
        posix.setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        started = time.monotonic()
        with pytest.raises(OSError) as virtual_failure:
            posix.accept(fd)
        took = time.monotonic() - started
        posix.close(fd)
    assert failure.value.errno == virtual_failure.value.errno == errno.EINVAL
    assert kernel_took < 0.2 and took < 0.2


@pytest.mark.parametrize("kind", [STREAM, SEQPACKET])
@pytest.mark.parametrize("preset", ["host", "virtual"])
def test_shutdown_ends_a_blocked_accept_with_einval(unix, tmp_path, preset, kind) -> None:
    """A thread blocked in accept wakes when another thread shuts the listener for
    reading, and fails with EINVAL at once, on the kernel (the host preset) as on the
    virtual driver."""
    with ps.use(preset):
        listener = posix.socket(AF_UNIX, kind)
    try:
        posix.bind(listener, str(tmp_path / "listener"))
        posix.listen(listener, 1)
        outcome: list = []

        def wait_for_a_connection() -> None:
            try:
                outcome.append(posix.accept(listener))
            except OSError as exc:
                outcome.append((errno.errorcode[exc.errno], time.monotonic()))

        waiter = threading.Thread(target=wait_for_a_connection)
        waiter.start()
        time.sleep(0.05)
        assert waiter.is_alive()
        shut_at = time.monotonic()
        posix.shutdown(listener, socket.SHUT_RD)
        waiter.join(5)
        assert not waiter.is_alive()
        code, ended = outcome[0]
        assert code == "EINVAL"
        assert ended - shut_at < 0.5
    finally:
        posix.close(listener)


def test_a_host_socket_in_flight_keeps_no_low_number(unix) -> None:
    """A kernel socket of the layer (the host driver) sent over a virtual AF_UNIX socket
    and closed by the sender stays open in the message, on a parked descriptor, not on
    a low number; the receiver's number is again its only descriptor."""
    host_a, host_b = posix.socketpair(AF_UNIX, STREAM, driver=HostDriver())
    a, b = posix.socketpair(AF_UNIX, STREAM)
    posix.sendmsg(a, [b"x"], rights(host_a))
    posix.close(host_a)
    again = os.dup(b)
    assert again == host_a  # the number in flight is free, as on Linux
    os.close(again)
    with pytest.raises(BlockingIOError):  # not EOF: the message holds the socket open
        posix.recv(host_b, 10, socket.MSG_DONTWAIT)
    before = open_fds()
    _data, ancdata, _flags, _addr = posix.recvmsg(b, 1, socket.CMSG_SPACE(4))
    (copy,) = received(ancdata)
    assert copy == host_a  # the lowest free number
    assert open_fds() - before == {copy}
    assert len(before - open_fds()) == 1  # the parked duplicate is gone
    posix.send(copy, b"via the copy")
    assert posix.recv(host_b, 100) == b"via the copy"
    posix.close(copy)
    assert posix.recv(host_b, 10) == b""
    for fd in (host_b, a, b):
        posix.close(fd)


def test_a_host_socket_in_a_message_never_read_is_closed_with_it(unix) -> None:
    host_a, host_b = posix.socketpair(AF_UNIX, STREAM, driver=HostDriver())
    a, b = posix.socketpair(AF_UNIX, STREAM)
    posix.sendmsg(a, [b"x"], rights(host_a))
    posix.close(host_a)
    posix.close(b)  # unread: the host socket goes with it
    assert posix.recv(host_b, 10) == b""
    for fd in (host_b, a):
        posix.close(fd)
