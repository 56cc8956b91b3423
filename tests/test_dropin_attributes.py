"""A drop-in socket's family and type read as the stdlib's do: the AddressFamily /
SocketKind member for a known number, the number itself for one no enum names (the
drop-in looks them up instead of calling the enums, which is slow)."""

from __future__ import annotations

import socket

import pytest
from memory_driver import AF_MEMORY

import posix_socket as ps
from posix_socket import socket as dropin

KINDS = [(socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_DGRAM),
         (socket.AF_INET6, socket.SOCK_STREAM), (socket.AF_UNIX, socket.SOCK_SEQPACKET),
         (socket.AF_UNIX, socket.SOCK_DGRAM)]


@pytest.mark.parametrize("preset", ["host", "virtual"])
@pytest.mark.parametrize(("family", "kind"), KINDS)
def test_family_and_type_are_the_stdlib_members(preset, family, kind):
    with socket.socket(family, kind) as kernel:
        expected = (kernel.family, kernel.type, repr(kernel.family), repr(kernel.type))
    with ps.use(preset), dropin.socket(family, kind) as ours:
        got = (ours.family, ours.type, repr(ours.family), repr(ours.type))
        assert type(ours.family) is socket.AddressFamily
        assert type(ours.type) is socket.SocketKind
    assert got == expected


def test_accepted_socket_has_the_listeners_family_and_type_members():
    with ps.use("virtual"), dropin.create_server(("127.0.0.1", 0)) as server, \
            dropin.create_connection(server.getsockname()):
        accepted, _ = server.accept()
        with accepted:
            assert (repr(accepted.family), repr(accepted.type)) == (
                repr(socket.AF_INET), repr(socket.SOCK_STREAM))


def test_a_family_no_enum_names_reads_as_its_number(memory):
    with dropin.socket(AF_MEMORY, socket.SOCK_STREAM) as sock:
        assert sock.family == AF_MEMORY and type(sock.family) is int
        assert type(sock.type) is socket.SocketKind


@pytest.mark.parametrize("preset", ["host", "virtual"])
def test_accept_on_a_closed_listener_raises_what_the_stdlib_raises(preset):
    kernel = socket.create_server(("127.0.0.1", 0))
    kernel.close()
    with pytest.raises(OSError) as expected:
        kernel.accept()
    with ps.use(preset):
        ours = dropin.create_server(("127.0.0.1", 0))
    ours.close()
    with pytest.raises(OSError) as got:
        ours.accept()
    assert (type(got.value), got.value.errno, got.value.strerror) == (
        type(expected.value), expected.value.errno, expected.value.strerror)
