"""Name resolution for the stdlib drop-in: answered by the registered driver.

A driver that serves AF_INET or AF_INET6 and has a ``resolve(name) -> [address text]``
method (the virtual network's does) answers every lookup: no real DNS, no
/etc/hosts, so a program under test sees only the hosts its network has.  The
machine's own host name resolves to the loopback addresses there, as many Linux
systems set it up, so ``getfqdn()`` and ``gethostbyname(gethostname())`` work.
Without such a driver (the host preset) the stdlib's resolver answers.

The results have the shape glibc gives: one entry per socket type a service exists
for, IPv6 before IPv4 (RFC 6724 precedence), numeric hosts taken as they are.
"""

from __future__ import annotations

import socket as _stdlib
from typing import Any

from . import registry

__all__ = ["getaddrinfo", "getnameinfo", "gethostbyname", "gethostbyname_ex",
           "gethostbyaddr", "getfqdn", "gethostname"]

# The stdlib's resolver, captured at import (before any patch() can replace it).
_kernel_getaddrinfo = _stdlib.getaddrinfo
_kernel_getnameinfo = _stdlib.getnameinfo
_kernel_gethostbyname_ex = _stdlib.gethostbyname_ex
_kernel_gethostbyaddr = _stdlib.gethostbyaddr
_kernel_gethostname = _stdlib.gethostname

_KINDS = ((_stdlib.SOCK_STREAM, _stdlib.IPPROTO_TCP, "tcp"),
          (_stdlib.SOCK_DGRAM, _stdlib.IPPROTO_UDP, "udp"),
          (_stdlib.SOCK_RAW, 0, None))


def _resolver() -> Any:
    """The driver that answers names, or None when the stdlib should."""
    for family in (_stdlib.AF_INET, _stdlib.AF_INET6):
        driver = registry.driver_for(family)
        if driver is not None and hasattr(driver, "resolve"):
            return driver
    return None


def _numeric(host: str) -> int | None:
    """The family of a numeric address (an IPv6 one may carry a %zone), else None."""
    for family in (_stdlib.AF_INET, _stdlib.AF_INET6):
        try:
            _stdlib.inet_pton(family, host.split("%", 1)[0] if family != 2 else host)
            return family
        except OSError:
            continue
    return None


def _canonical(host: str) -> tuple[str, int]:
    """A numeric address as the kernel writes it, and its zone's interface index.
    Interface names are the machine's own (``if_nameindex`` is not virtual)."""
    address, _, zone = host.partition("%")
    family = _numeric(address)
    text = _stdlib.inet_ntop(family, _stdlib.inet_pton(family, address))
    if not zone:
        return text, 0
    if zone.isdigit():
        return text, int(zone)
    try:
        return text, _stdlib.if_nametoindex(zone)
    except OSError:
        raise _stdlib.gaierror(_stdlib.EAI_NONAME, "Name or service not known") from None


def _link_scoped(text: str) -> bool:
    """Addresses whose scope id getnameinfo shows (link-local, link-local multicast)."""
    packed = _stdlib.inet_pton(_stdlib.AF_INET6, text)
    return (packed[0] == 0xFE and packed[1] & 0xC0 == 0x80) or (
        packed[0] == 0xFF and packed[1] & 0x0F == 0x02)


def _lookup(resolver: Any, name: str) -> list[str]:
    found = resolver.resolve(name)
    if not found and name.lower() == _kernel_gethostname().lower():
        found = resolver.resolve("localhost")
    return found


def _host_text(host: object) -> str | None:
    if host is None:
        return None
    if isinstance(host, str):
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    if isinstance(host, (bytes, bytearray)):
        return bytes(host).decode("ascii")
    raise TypeError("getaddrinfo() argument 1 must be string or None")


def _port_number(port: object, kinds: list[tuple[int, int, str | None]],
                 flags: int) -> list[tuple[int, int, int]]:
    """(type, proto, port) for each socket type the service exists for."""
    if port is None:
        return [(kind, proto, 0) for kind, proto, _ in kinds]
    if isinstance(port, int):
        return [(kind, proto, port) for kind, proto, _ in kinds]
    if isinstance(port, (str, bytes)):
        text = port.decode("ascii") if isinstance(port, bytes) else port
        if text.isdigit():
            return [(kind, proto, int(text)) for kind, proto, _ in kinds]
        if not flags & _stdlib.AI_NUMERICSERV:
            found = []
            for kind, proto, name in kinds:
                if name is None:
                    continue
                try:
                    found.append((kind, proto, _stdlib.getservbyname(text, name)))
                except OSError:
                    continue
            if found:
                return found
        raise _stdlib.gaierror(_stdlib.EAI_SERVICE,
                               "Servname not supported for ai_socktype")
    raise OSError("Int or String expected")


def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                flags: int = 0) -> list[tuple]:
    resolver = _resolver()
    if resolver is None:
        return _kernel_getaddrinfo(host, port, family, type, proto, flags)
    name = _host_text(host)
    kinds = [k for k in _KINDS if (not type or k[0] == type) and (not proto or k[1] == proto)]
    if type and not kinds:
        kinds = [(type, proto, None)]
    ports = _port_number(port, kinds, flags)
    if name is None:
        if port is None:
            raise _stdlib.gaierror(_stdlib.EAI_NONAME, "Name or service not known")
        passive = bool(flags & _stdlib.AI_PASSIVE)
        addresses = ["0.0.0.0", "::"] if passive else ["::1", "127.0.0.1"]
    elif _numeric(name) is not None:
        addresses = [name]
    elif flags & _stdlib.AI_NUMERICHOST:
        raise _stdlib.gaierror(_stdlib.EAI_NONAME, "Name or service not known")
    else:
        found = _lookup(resolver, name)
        if not found:
            raise _stdlib.gaierror(_stdlib.EAI_NONAME, "Name or service not known")
        addresses = ([a for a in found if ":" in a] + [a for a in found if ":" not in a])
    wanted = [a for a in addresses if family in (0, _numeric(a))]
    if not wanted:
        if name is not None and _numeric(name) is not None:
            raise _stdlib.gaierror(_stdlib.EAI_ADDRFAMILY,
                                   "Address family for hostname not supported")
        raise _stdlib.gaierror(_stdlib.EAI_NONAME, "Name or service not known")
    results = []
    for address in wanted:
        address_family = _stdlib.AddressFamily(_numeric(address))
        text, scope_id = _canonical(address)
        for kind, kind_proto, number in ports:
            target: tuple = ((text, number) if address_family == _stdlib.AF_INET
                             else (text, number, 0, scope_id))
            canonical = name if flags & _stdlib.AI_CANONNAME and not results else ""
            results.append((address_family, _stdlib.SocketKind(kind), kind_proto or proto,
                            canonical or "", target))
    return results


def gethostname() -> str:
    return _kernel_gethostname()


def gethostbyname(name: str) -> str:
    return gethostbyname_ex(name)[2][0]


def gethostbyname_ex(name: str) -> tuple[str, list[str], list[str]]:
    resolver = _resolver()
    if resolver is None:
        return _kernel_gethostbyname_ex(name)
    text = _host_text(name) or ""
    if _numeric(text) == _stdlib.AF_INET:
        return text, [], [text]
    found = [a for a in _lookup(resolver, text) if ":" not in a] if text else []
    if not found:
        raise _stdlib.gaierror(_stdlib.EAI_NONAME, "Name or service not known")
    return text, [], found


def _names_of(resolver: Any, address: str) -> list[str]:
    names_of = getattr(resolver, "names_of", None)
    return names_of(address) if names_of is not None else []


def gethostbyaddr(address: str) -> tuple[str, list[str], list[str]]:
    resolver = _resolver()
    if resolver is None:
        return _kernel_gethostbyaddr(address)
    ip = address if _numeric(address) is not None else gethostbyname(address)
    names = _names_of(resolver, ip)
    if not names:
        raise _stdlib.herror(1, "Unknown host")
    return names[0], names[1:], [ip]


def getnameinfo(sockaddr: tuple, flags: int) -> tuple[str, str]:
    if not isinstance(sockaddr, tuple):
        del sockaddr  # the traceback must not keep the caller's object alive
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    resolver = _resolver()
    if resolver is None:
        return _kernel_getnameinfo(sockaddr, flags)
    if not 2 <= len(sockaddr) <= 4:
        raise TypeError("getnameinfo(): illegal sockaddr argument")
    host, port = sockaddr[0], sockaddr[1]
    flowinfo = sockaddr[2] if len(sockaddr) > 2 else 0
    scope_id = sockaddr[3] if len(sockaddr) > 3 else 0
    if not 0 <= flowinfo <= 0xFFFFF:
        raise OverflowError("getnameinfo(): flowinfo must be 0-1048575.")
    if _numeric(host) is None:
        raise _stdlib.gaierror(_stdlib.EAI_NONAME, "Name or service not known")
    host, zone = _canonical(host)
    scope_id = scope_id or zone
    names = [] if flags & _stdlib.NI_NUMERICHOST else _names_of(resolver, host)
    if not names and flags & _stdlib.NI_NAMEREQD:
        raise _stdlib.gaierror(_stdlib.EAI_NONAME, "Name or service not known")
    service = str(port)
    if not flags & _stdlib.NI_NUMERICSERV:
        try:
            service = _stdlib.getservbyport(port, "udp" if flags & _stdlib.NI_DGRAM else "tcp")
        except OSError:
            pass
    if not names and scope_id and ":" in host and _link_scoped(host):
        try:
            host += "%" + _stdlib.if_indextoname(scope_id)
        except OSError:
            host += f"%{scope_id}"
    return (names[0] if names else host), service


def getfqdn(name: str = "") -> str:
    """As the stdlib's: the first name with a dot among the host's names."""
    name = name.strip()
    if not name or name in ("0.0.0.0", "::"):
        name = gethostname()
    try:
        hostname, aliases, _ = gethostbyaddr(name)
    except OSError:
        return name
    for candidate in [hostname, *aliases]:
        if "." in candidate:
            return candidate
    return hostname
