"""Socket addresses of the virtual IP network, in and out of the stdlib's tuple forms.

Inside the network every address is an ``Endpoint``: an IPv6 address (IPv4 addresses
are kept IPv4-mapped, ``::ffff:a.b.c.d``, as a dual-stack kernel does) and a port.  The
parsing follows CPython's ``getsockaddrarg``: the same TypeErrors, the same
OverflowError for ports, ``""`` for the wildcard and ``"<broadcast>"``.  A host that is
not a plain numeric address (a name, ``127.1``, an IPv6 address with a ``%zone``) is
resolved as CPython's ``setipaddr`` resolves it: the network's getaddrinfo for the
socket's family, first answer (``hostnames.py``), never real DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import NamedTuple, Protocol

from .hostnames import inet_aton_exact

__all__ = ["Endpoint", "Resolver", "parse", "to_tuple", "text", "ANY", "mapped", "is_v4"]

_MAPPED_PREFIX = int(ipaddress.IPv6Address("::ffff:0.0.0.0"))
ANY = ipaddress.IPv6Address("::")
ANY4 = ipaddress.IPv6Address("::ffff:0.0.0.0")
BROADCAST = ipaddress.IPv6Address("::ffff:255.255.255.255")


class Endpoint(NamedTuple):
    ip: ipaddress.IPv6Address
    port: int
    flowinfo: int = 0
    scope_id: int = 0


class Resolver(Protocol):
    def lookup(self, name: str, family: int) -> ipaddress.IPv6Address: ...


def mapped(ip: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(_MAPPED_PREFIX | int(ip))


def is_v4(ip: ipaddress.IPv6Address) -> bool:
    return ip.ipv4_mapped is not None


def is_wildcard(ip: ipaddress.IPv6Address) -> bool:
    return ip in (ANY, ANY4)


def _host(value: object, op: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("ascii")
    raise TypeError(f"str, bytes or bytearray expected, not {type(value).__name__}")


def _int(value: object) -> int:
    if isinstance(value, float):
        raise TypeError("'float' object cannot be interpreted as an integer")
    try:
        return int(value.__index__())  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an "
                        "integer") from None


# (family, address) -> Endpoint, for plain (str, int) addresses with a numeric host: a
# program connects to and sends to the same few addresses over and over, and each
# parse costs several Python calls.  Only literal hosts are kept (a name's answer is
# the network's to give, every time); the cache starts over once full.
_parsed: dict[tuple[int, tuple], Endpoint] = {}


def parse(family: int, address: object, op: str, resolver: Resolver) -> Endpoint:
    """An address in the stdlib's form for ``family`` -> Endpoint (errors as CPython)."""
    if not (type(address) is tuple and len(address) == 2 and type(address[0]) is str
            and type(address[1]) is int):  # exact types: 1.0 == 1, but is no port
        return _parse(family, address, op, resolver)
    endpoint = _parsed.get((family, address))
    if endpoint is None:
        endpoint = _parse(family, address, op, resolver)
        if _literal(family, address[0]) is not None:
            if len(_parsed) >= 4096:
                _parsed.clear()
            _parsed[(family, address)] = endpoint
    return endpoint


def _parse(family: int, address: object, op: str, resolver: Resolver) -> Endpoint:
    if family == socket.AF_INET:
        if not isinstance(address, tuple):
            raise TypeError(f"{op}(): AF_INET address must be tuple, not "
                            f"{type(address).__name__}")
        if len(address) != 2:
            raise TypeError("AF_INET address must be a pair (host, port)")
        host, port = _host(address[0], op), _int(address[1])
        if not 0 <= port <= 0xFFFF:
            raise OverflowError(f"{op}(): port must be 0-65535.")
        return Endpoint(_ipv4(host, resolver), port)
    if not isinstance(address, tuple):
        raise TypeError(f"{op}(): AF_INET6 address must be tuple, not "
                        f"{type(address).__name__}")
    if not 2 <= len(address) <= 4:
        raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    host, port = _host(address[0], op), _int(address[1])
    # CPython reads flowinfo and scope id with the "I" format: unsigned, masked to 32
    # bits, never an overflow; then only flowinfo's range is checked.
    flowinfo = _int(address[2]) & 0xFFFFFFFF if len(address) > 2 else 0
    scope_id = _int(address[3]) & 0xFFFFFFFF if len(address) > 3 else 0
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{op}(): port must be 0-65535.")
    if flowinfo > 0xFFFFF:
        raise OverflowError(f"{op}(): flowinfo must be 0-1048575.")
    return Endpoint(_ipv6(host, resolver), port, flowinfo, scope_id)


# Numeric host strings already parsed (programs use a handful of addresses, many times).
_literals: dict[tuple[int, str], ipaddress.IPv6Address | None] = {}


def _literal(family: int, host: str) -> ipaddress.IPv6Address | None:
    key = (family, host)
    try:
        return _literals[key]
    except KeyError:
        pass
    ip: ipaddress.IPv6Address | None
    if family == socket.AF_INET:
        ip = inet_aton_exact(host)
    elif "%" in host:  # CPython leaves a zone to getaddrinfo, and so does the layer
        ip = None
    else:
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            ip = None
    if len(_literals) < 4096:
        _literals[key] = ip
    return ip


def _ipv4(host: str, resolver: Resolver) -> ipaddress.IPv6Address:
    if host == "":
        return ANY4
    if host == "<broadcast>":
        return BROADCAST
    ip = _literal(socket.AF_INET, host)
    return ip if ip is not None else resolver.lookup(host, socket.AF_INET)


def _ipv6(host: str, resolver: Resolver) -> ipaddress.IPv6Address:
    if host == "":
        return ANY
    if host in ("<broadcast>", "255.255.255.255"):
        raise OSError("address family mismatched")
    ip = _literal(socket.AF_INET6, host)
    return ip if ip is not None else resolver.lookup(host, socket.AF_INET6)


# IPv4-mapped address -> its dotted text, as an AF_INET socket names it: every accept
# names its peer, and ``ipaddress`` builds that text in Python.  Starts over once full.
_texts4: dict[ipaddress.IPv6Address, str] = {}
# The last of them, matched by identity (``ipaddress`` hashes in Python): a server's
# clients mostly speak from one address object, the route's source.
_last_text4: tuple[object, str] = (None, "")


def text(family: int, ip: ipaddress.IPv6Address) -> str:
    """An address as a socket of ``family`` names it (IPv4 in dotted form for AF_INET)."""
    if family == socket.AF_INET:
        v4 = ip.ipv4_mapped
        return str(v4 if v4 is not None else ipaddress.IPv4Address(0))
    return socket.inet_ntop(socket.AF_INET6, ip.packed)


def to_tuple(family: int, endpoint: Endpoint) -> tuple:
    """The stdlib's form of ``endpoint`` for a socket of ``family``."""
    global _last_text4
    ip = endpoint.ip
    if family == socket.AF_INET:
        last_ip, text = _last_text4
        if last_ip is ip:
            return (text, endpoint.port)
        text = _texts4.get(ip)
        if text is None:
            v4 = ip.ipv4_mapped
            text = str(v4 if v4 is not None else ipaddress.IPv4Address(0))
            if len(_texts4) >= 4096:
                _texts4.clear()
            _texts4[ip] = text
        _last_text4 = (ip, text)
        return (text, endpoint.port)
    text = socket.inet_ntop(socket.AF_INET6, ip.packed)  # ::ffff:127.0.0.1, as the kernel
    return (text, endpoint.port, endpoint.flowinfo, endpoint.scope_id)
