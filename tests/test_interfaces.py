"""if_nameindex, if_nametoindex and if_indextoname answer the network's interfaces.

The virtual network has one interface, ``lo`` with index 1 (every added host's
addresses live on it, as aliases would on Linux's lo), so a program sees ``lo`` there;
the kernel's other interfaces are not on the virtual network.  Bad arguments get the
stdlib's own exceptions, which differ between Python versions: each case runs the
stdlib's function first and compares.
"""

from __future__ import annotations

import errno
import pathlib
import socket

import pytest

import posix_socket as ps
from posix_socket import socket as dropin


def outcome(call, *args):
    try:
        return call(*args)
    except Exception as exc:
        return (type(exc).__name__, getattr(exc, "errno", None), str(exc))


def test_the_virtual_network_lists_only_lo():
    with ps.use("virtual"), ps.patch():
        assert socket.if_nameindex() == [(1, "lo")]
        assert socket.if_nametoindex("lo") == 1
        assert socket.if_indextoname(1) == "lo"


def test_under_the_host_preset_the_kernel_answers():
    with ps.use("host"), ps.patch():
        assert dropin.if_nameindex() == socket.if_nameindex()


def _kernel_name_not_virtual():
    for index, name in socket.if_nameindex():
        if name != "lo":
            return index, name
    return None


@pytest.mark.skipif(_kernel_name_not_virtual() is None, reason="the machine has only lo")
def test_a_kernel_interface_is_not_on_the_virtual_network():
    index, name = _kernel_name_not_virtual()
    with ps.use("virtual"):
        assert outcome(dropin.if_nametoindex, name) == ("OSError", None,
                                                        "no interface with this name")
        assert outcome(dropin.if_indextoname, index)[:2] == ("OSError", errno.ENXIO)


@pytest.mark.parametrize("name", ["lo", b"lo", pathlib.PurePosixPath("lo"), "nosuch", "",
                                  "x" * 40, 1, None, "lo\0x", bytearray(b"lo")], ids=repr)
def test_if_nametoindex_answers_and_fails_as_the_stdlib(name):
    with ps.use("virtual"):
        assert outcome(dropin.if_nametoindex, name) == outcome(socket.if_nametoindex, name)


@pytest.mark.parametrize("index", [1, True, 0, 99, -1, 2**32, 2**32 + 1, 2**64, "1", 1.0,
                                   None], ids=repr)
def test_if_indextoname_answers_and_fails_as_the_stdlib(index):
    with ps.use("virtual"):
        assert outcome(dropin.if_indextoname, index) == outcome(socket.if_indextoname, index)


def test_if_nameindex_takes_no_arguments_like_the_stdlib():
    with ps.use("virtual"), pytest.raises(TypeError):
        dropin.if_nameindex(1)
