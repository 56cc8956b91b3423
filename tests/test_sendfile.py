"""posix.sendfile: os.sendfile's contract on every driver, the kernel's as the oracle."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

import posix_socket as ps
from posix_socket import posix


def _connected(preset: str) -> tuple[int, int]:
    with ps.use(preset):
        server = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            posix.bind(server, ("127.0.0.1", 0))
            posix.listen(server, 1)
            client = posix.socket(socket.AF_INET, socket.SOCK_STREAM)
            posix.connect(client, posix.getsockname(server))
            accepted, _ = posix.accept(server)
        finally:
            posix.close(server)
    return client, accepted


def _outcome(call) -> object:
    try:
        return call()
    except OSError as exc:
        return type(exc).__name__, exc.errno


def _receive_all(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += posix.recv(fd, size - len(data))
    return data


def sendfile_scenario(preset: str) -> Iterator[object]:
    """The same calls, each outcome yielded, for the kernel and the layer to compare."""
    client, accepted = _connected(preset)
    with tempfile.TemporaryFile() as file:
        file.write(bytes(range(256)) * 64)
        file.flush()
        file.seek(100)
        fd = file.fileno()
        try:
            sent = posix.sendfile(client, fd, None, 1000)  # from the position, moving it
            yield sent, os.lseek(fd, 0, os.SEEK_CUR), _receive_all(accepted, sent)
            sent = posix.sendfile(client, fd, 5, 7)  # from an offset, position untouched
            yield sent, os.lseek(fd, 0, os.SEEK_CUR), _receive_all(accepted, sent)
            yield posix.sendfile(client, fd, 1 << 20, 10)  # past the end: nothing
            yield posix.sendfile(client, fd, 0, 0)
            read_end, write_end = os.pipe()
            try:
                yield _outcome(lambda: posix.sendfile(client, read_end, None, 4))
            finally:
                os.close(read_end)
                os.close(write_end)
            yield _outcome(lambda: posix.sendfile(client, 10_000, None, 4))
            yield _outcome(lambda: posix.sendfile(client, fd, None, -1))
            yield _outcome(lambda: posix.sendfile(client, fd, -1, 4))
            with pytest.raises(TypeError):
                posix.sendfile(client, fd, 0, 1.5)
            with pytest.raises(OverflowError):
                posix.sendfile(client, fd, 0, 2**63)
            posix.shutdown(client, socket.SHUT_WR)
            yield _outcome(lambda: posix.sendfile(client, fd, 0, 4))
        finally:
            posix.close(client)
            posix.close(accepted)


def test_sendfile_to_a_virtual_socket_matches_the_kernel() -> None:
    kernel = list(sendfile_scenario("host"))
    virtual = list(sendfile_scenario("virtual"))
    assert virtual == kernel
    assert ("BrokenPipeError", errno.EPIPE) in kernel  # the scenario reached its end


def test_sendfile_on_a_nonblocking_full_virtual_socket_is_eagain() -> None:
    client, accepted = _connected("virtual")
    try:
        posix.fcntl(client, 4, os.O_NONBLOCK)  # F_SETFL
        with tempfile.TemporaryFile() as file:
            file.write(bytes(1 << 20))
            file.flush()
            total = 0
            with pytest.raises(BlockingIOError):
                while True:
                    total += posix.sendfile(client, file.fileno(), 0, 1 << 20)
            assert total > 0
    finally:
        posix.close(client)
        posix.close(accepted)
