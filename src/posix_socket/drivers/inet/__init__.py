"""The virtual IPv4/IPv6 network: in-process TCP and UDP with Linux semantics."""

from .driver import InetDriver
from .hosts import Host
from .links import Conditions, Link
from .network import VirtualNetwork

__all__ = ["InetDriver", "VirtualNetwork", "Host", "Link", "Conditions"]
