"""posix-socket: a POSIX socket layer with pluggable implementations per address family.

``socket(family, ...)`` looks up the driver registered for ``family``; the descriptor it
returns remembers that driver and every later call on it goes to that driver's ops.
After import the ``host`` preset (the kernel) serves AF_INET, AF_INET6 and AF_UNIX.

PYTEST_DONT_REWRITE: under ``posix-socket run -m pytest`` the package is imported
before pytest starts, so pytest (which rewrites the asserts of its plugins' packages,
this one among them) would warn that it cannot; the package has no asserts of tests.
"""

from __future__ import annotations

import socket as _socket

from . import clock as _clock
from . import posix
from .driver import Budget, SocketDriver
from .drivers.host import HostDriver
from .drivers.inet import Conditions, Host, InetDriver, Link, VirtualNetwork
from .drivers.unix import UnixDriver
from .net_config import NetworkConfig, NetworkConfigError, load_network_config
from .patching import patch
from .registry import (
    PRESET_FAMILIES,
    VirtualDrivers,
    add_preset,
    load_entry_points,
    network,
    register_family,
    registered_families,
    unregister_family,
    use,
)
from .stacked import StackedDriver
from .tracing import trace

__all__ = [
    "SocketDriver", "Budget", "HostDriver", "register_family", "unregister_family",
    "registered_families", "use", "add_preset", "posix", "InetDriver", "VirtualNetwork",
    "UnixDriver", "patch", "VirtualDrivers", "network", "Host", "Link", "Conditions",
    "load_network_config", "NetworkConfig", "NetworkConfigError",
    "StackedDriver", "trace",
]

__version__ = "0.1.0"

_HOST = HostDriver()
add_preset("host", lambda: dict.fromkeys(PRESET_FAMILIES, _HOST))


CLOCKS = ("real", "virtual")


def _virtual(seed: int | None = None, clock: str = "real") -> VirtualDrivers:
    """A fresh, isolated virtual network and AF_UNIX namespace for each use("virtual").

    ``seed`` fixes the network's random choices (ports, each link's fates).
    ``posix.socketpair(AF_UNIX, ...)`` then gives virtual sockets too.  (asyncio's
    self-pipe must stay a kernel pair: see ``drivers.unix.driver``.)
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(map(repr, CLOCKS))}, "
                         f"not {clock!r}")
    network_clock = _clock.VirtualClock() if clock == "virtual" else _clock.REAL
    inet = InetDriver(VirtualNetwork(seed, network_clock))
    return VirtualDrivers({_socket.AF_INET: inet, _socket.AF_INET6: inet,
                           _socket.AF_UNIX: UnixDriver()})


add_preset("virtual", _virtual)
use("host")
load_entry_points()
