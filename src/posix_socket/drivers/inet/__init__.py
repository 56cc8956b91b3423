"""The virtual IPv4/IPv6 network: in-process TCP and UDP with Linux semantics."""

from .driver import InetDriver
from .network import VirtualNetwork

__all__ = ["InetDriver", "VirtualNetwork"]
