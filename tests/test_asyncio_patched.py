"""asyncio on the patched stdlib, under the virtual preset."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import posix_socket as ps
from posix_socket import descriptors
from posix_socket.patching import patch


def test_signal_handlers_run_because_the_self_pipe_is_a_kernel_pair() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, signal.SIGUSR1)
        try:
            loop.call_later(0.05, os.kill, os.getpid(), signal.SIGUSR1)
            return await asyncio.wait_for(got, 10)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)

    with ps.use("virtual"), patch():
        assert asyncio.run(main()) == signal.SIGUSR1


def test_the_dropin_socketpair_is_the_kernels_and_posix_socketpair_is_virtual() -> None:
    with ps.use("virtual"), patch():
        a, b = socket.socketpair()
        with a, b:
            a.sendall(b"x")
            assert b.recv(1) == b"x"
            # The kernel serves the number itself: os-level I/O reaches the peer.
            os.write(a.fileno(), b"y")
            assert b.recv(1) == b"y"
        left, right = ps.posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            assert ps.posix.getsockopt(left, socket.SOL_SOCKET, socket.SO_DOMAIN) == 1
            assert descriptors.lookup(left).kernel is None
        finally:
            ps.posix.close(left)
            ps.posix.close(right)
