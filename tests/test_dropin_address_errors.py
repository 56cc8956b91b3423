"""Bad addresses given to the drop-in's connect and connect_ex: the stdlib's exception.

CPython words an address error with the name of the method that got it
(``connect_ex(): port must be 0-65535.``), so each case runs the same call on a
kernel socket of the stdlib and on a drop-in socket of the host and virtual presets,
and compares the exception's type and text (read from the stdlib at run time: the
texts are CPython's, per version).
"""

from __future__ import annotations

import socket

import pytest

import posix_socket as ps
from posix_socket import socket as dropin

V4, V6 = socket.AF_INET, socket.AF_INET6

# (id, family, address)
BAD_ADDRESSES = [
    ("port past 65535", V4, ("127.0.0.1", 70000)),
    ("negative port", V4, ("127.0.0.1", -1)),
    ("huge port", V4, ("127.0.0.1", 2**70)),
    ("IPv6 port past 65535", V6, ("::1", 70000)),
    ("IPv6 flowinfo too big", V6, ("::1", 1, 1 << 21)),
    ("not a tuple", V4, "127.0.0.1"),
    ("IPv6 not a tuple", V6, "::1"),
    ("three items for IPv4", V4, ("127.0.0.1", 1, 2)),
    ("five items for IPv6", V6, ("::1", 1, 0, 0, 0)),
    ("host not text", V4, (1, 1)),
    ("port as text", V4, ("127.0.0.1", "1")),
    ("port as float", V6, ("::1", 1.0)),
]


@pytest.mark.parametrize("address", [("::1", 1, 2**32), ("::1", 1, 2**70), ("::1", 1, 0, 1 << 33),
                                     ("::1", 1, 0, -1), ("::1", 1, 0, 2**70)], ids=repr)
def test_ipv6_flowinfo_and_scope_id_are_masked_to_32_bits_as_cpython_does(address):
    """CPython takes them as unsigned ints without overflow checks: 2**32 is 0."""
    with socket.socket(V6, socket.SOCK_DGRAM) as kernel:
        kernel.connect(address)
        expected = kernel.getpeername()[2:]
    with ps.use("virtual"), dropin.socket(V6, socket.SOCK_DGRAM) as ours:
        ours.connect(address)
        assert ours.getpeername()[2:] == expected


@pytest.mark.parametrize("preset", ["host", "virtual"])
@pytest.mark.parametrize("method", ["connect", "connect_ex"])
@pytest.mark.parametrize(("family", "address"), [c[1:] for c in BAD_ADDRESSES],
                         ids=[c[0] for c in BAD_ADDRESSES])
def test_bad_address_raises_what_the_stdlib_raises_naming_the_method(preset, method, family,
                                                                     address):
    with socket.socket(family, socket.SOCK_STREAM) as kernel, \
            pytest.raises(Exception) as expected:
        getattr(kernel, method)(address)
    with ps.use(preset), dropin.socket(family, socket.SOCK_STREAM) as ours, \
            pytest.raises(Exception) as got:
        getattr(ours, method)(address)
    assert (type(got.value), str(got.value)) == (type(expected.value), str(expected.value))
