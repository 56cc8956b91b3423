"""Hosts of the virtual network: who owns which addresses.

Every socket lives on one host.  The first host is the machine the program runs on: it
owns 127.0.0.0/8, ::1 and the addresses /etc/hosts gives the machine's names.  Hosts
added with ``add_host`` own their addresses and answer their names.
"""

from __future__ import annotations

import ipaddress

__all__ = ["Host"]


class Host:
    """One host: its addresses (IPv4 ones stored IPv4-mapped, as the network keeps
    every address) and its names.  ``addresses`` shows them as the stdlib prints them."""

    __slots__ = ("ips", "names", "index")

    def __init__(self, ips: list[ipaddress.IPv6Address], names: list[str], index: int) -> None:
        self.ips = ips
        self.names = names
        self.index = index  # 0 for the machine, then in the order added

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(str(ip.ipv4_mapped or ip) for ip in self.ips)

    @property
    def label(self) -> str:
        """How a person names the host: its first name, else its first address."""
        if self.names:
            return self.names[0]
        return self.addresses[0] if self.ips else f"host{self.index}"

    def address_of(self, v4: bool) -> ipaddress.IPv6Address | None:
        """The address it speaks from to another host (its first of the family that
        is not loopback, as Linux's source selection takes the outgoing interface's)."""
        for ip in self.ips:
            mapped = ip.ipv4_mapped
            if (mapped is not None) == v4 and not (mapped or ip).is_loopback:
                return ip
        return None

    def __repr__(self) -> str:
        names = f" names={self.names!r}" if self.names else ""
        return f"<Host {', '.join(self.addresses)}{names}>"
