"""Name resolution for the stdlib drop-in: answered by the registered driver.

A driver that serves AF_INET or AF_INET6 and has a ``resolve(name, family, flags)``
method (the virtual network's does) answers every lookup: no real DNS, so a program
under test sees only the hosts its network has, plus ``localhost`` and the machine's
own name as this machine's /etc/hosts gives them (``drivers/inet/hostnames.py`` says
exactly how).  Without such a driver (the host preset) the stdlib's resolver answers.

getaddrinfo is CPython's over glibc's, step for step: the same argument conversions
(a port number is written out and read back as glibc reads it, so 123456 is port
57920), the same gaierror codes in the same order of checks, one entry per socket type
a service exists for, and several addresses in glibc's RFC 3484 order.  AI_ADDRCONFIG
removes nothing: the virtual network has IPv4 and IPv6.  Answers are kept (a program
resolves the same few addresses over and over): a numeric host's for good, a name's
until the network's hosts or /etc/hosts change.
"""

from __future__ import annotations

import errno as _errno
import os as _os
import socket as _stdlib
import sys as _sys
from typing import Any

from . import registry
from .drivers.inet import hostnames as _hostnames

__all__ = ["getaddrinfo", "getnameinfo", "gethostbyname", "gethostbyname_ex",
           "gethostbyaddr", "getfqdn", "gethostname", "if_nameindex", "if_nametoindex",
           "if_indextoname"]

# The stdlib's resolver, captured at import (before any patch() can replace it).
_kernel_getaddrinfo = _stdlib.getaddrinfo
_kernel_getnameinfo = _stdlib.getnameinfo
_kernel_gethostbyname = _stdlib.gethostbyname
_kernel_gethostbyname_ex = _stdlib.gethostbyname_ex
_kernel_gethostbyaddr = _stdlib.gethostbyaddr
_kernel_gethostname = _stdlib.gethostname
_kernel_if_nameindex = _stdlib.if_nameindex
_kernel_if_nametoindex = _stdlib.if_nametoindex
_kernel_if_indextoname = _stdlib.if_indextoname

# CPython before 3.12 converted an int port to a C long first (gh-74895).
_PORT_MUST_FIT_A_LONG = _sys.version_info < (3, 12)

_AF_INET, _AF_INET6 = int(_stdlib.AF_INET), int(_stdlib.AF_INET6)
_AI_PASSIVE, _AI_CANONNAME = int(_stdlib.AI_PASSIVE), int(_stdlib.AI_CANONNAME)
_AI_NUMERICSERV = int(_stdlib.AI_NUMERICSERV)
_AI_KNOWN = 0x7FF  # glibc's flags: PASSIVE ... NUMERICSERV, the IDN ones included
_SOCK_DCCP, _IPPROTO_DCCP, _IPPROTO_UDPLITE = 6, 33, 136
_IPPROTO_SCTP = 132

# glibc's gaih_inet_typeproto: (socket type, protocol, raw: any protocol and no service,
# listed when no type is asked for, name in /etc/services)
_TYPES = ((int(_stdlib.SOCK_STREAM), int(_stdlib.IPPROTO_TCP), False, True, "tcp"),
          (int(_stdlib.SOCK_DGRAM), int(_stdlib.IPPROTO_UDP), False, True, "udp"),
          (_SOCK_DCCP, _IPPROTO_DCCP, False, False, "dccp"),
          (int(_stdlib.SOCK_DGRAM), _IPPROTO_UDPLITE, False, False, "udplite"),
          (int(_stdlib.SOCK_STREAM), _IPPROTO_SCTP, False, False, "sctp"),
          (int(_stdlib.SOCK_SEQPACKET), _IPPROTO_SCTP, False, False, "sctp"),
          (int(_stdlib.SOCK_RAW), 0, True, True, "raw"))


def _resolver() -> Any:
    """The driver that answers names, or None when the stdlib should."""
    driver = registry.driver_for(_AF_INET)
    if driver is not None and hasattr(driver, "resolve"):
        return driver
    driver = registry.driver_for(_AF_INET6)
    if driver is not None and hasattr(driver, "resolve"):
        return driver
    return None


def _c_int(value: Any) -> int:
    """A C int argument, converted and checked as CPython's "i" format does."""
    if type(value) is int and -2**31 <= value < 2**31:
        return value
    import operator
    number = operator.index(value)
    if number >= 2**31:
        raise OverflowError("signed integer is greater than maximum")
    if number < -2**31:
        raise OverflowError("signed integer is less than minimum")
    return number


def _host_text(host: object) -> str | None:
    """The host as glibc gets it from CPython: IDNA-encoded, up to the first NUL."""
    if host is None:
        return None
    if isinstance(host, str):
        data = host.encode("idna")
    elif isinstance(host, bytes):
        data = host
    else:
        raise TypeError("getaddrinfo() argument 1 must be string or None")
    return data.split(b"\0", 1)[0].decode("latin-1")


def _service_text(port: object) -> str | None:
    """The service as glibc gets it from CPython: an int written out in decimal.
    Before 3.12 CPython first made the int a C long, so a port outside that range was
    an OverflowError; from 3.12 it writes any int out and glibc's reading decides."""
    if type(port) is int:
        if _PORT_MUST_FIT_A_LONG and not -2**63 <= port < 2**63:
            raise OverflowError("Python int too large to convert to C long")
        return str(port)
    if isinstance(port, str):
        return port.encode("utf-8").split(b"\0", 1)[0].decode("latin-1")
    if isinstance(port, bytes):
        return port.split(b"\0", 1)[0].decode("latin-1")
    if port is None:
        return None
    raise OSError("Int or String expected")


def _services(service: str | None, kind: int, proto: int) -> list[tuple[int, int, int]]:
    """(socket type, protocol, port) per glibc's gaih_inet: which socket types the
    service exists for and its port; gaierror in glibc's order."""
    chosen = None
    if kind or proto:
        for entry in _TYPES:
            if (kind and kind != entry[0]) or (proto and not entry[2] and proto != entry[1]):
                continue
            chosen = entry
            break
        else:
            raise _hostnames.gaierror(_stdlib.EAI_SOCKTYPE if kind else _stdlib.EAI_SERVICE)
    port = 0
    if service:
        if chosen is not None and chosen[2]:
            raise _hostnames.gaierror(_stdlib.EAI_SERVICE)
        number = _hostnames.strtoul_exact(service)
        if number is not None:
            number &= 0xFFFFFFFF  # glibc keeps it in an int
        if number is None or number >= 2**31:  # not a number, or negative: a name
            if chosen is not None:
                return [(chosen[0], proto if chosen[2] else chosen[1],
                         _port_of(service, chosen[4]))]
            found = []
            for entry in _TYPES:
                if entry[2]:
                    continue
                try:
                    found.append((entry[0], entry[1], _port_of(service, entry[4])))
                except OSError:
                    continue
            if not found:
                raise _hostnames.gaierror(_stdlib.EAI_SERVICE)
            return found
        port = number & 0xFFFF  # glibc's htons
    if chosen is not None:
        return [(chosen[0], proto if chosen[2] else chosen[1], port)]
    return [(entry[0], entry[1], port) for entry in _TYPES if entry[3]]


def _port_of(service: str, protocol: str) -> int:
    try:
        return _stdlib.getservbyname(service, protocol)
    except (OSError, UnicodeError, ValueError):
        raise _hostnames.gaierror(_stdlib.EAI_SERVICE) from None


def _enum(value: int, kind: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        return value


# (host, port, family, type, proto, flags, and the class of each) -> (resolver, whether
# the host is a name, version or None, answers): version None when nothing can change
# the answer (a numeric host, a numeric port), else what it depends on (see
# ``_version``).  Only calls whose arguments all have classes that convert alike are
# kept (``_cacheable``), so a call finding its arguments and their classes here is
# one of them: it skips the checks.
_answers: dict[tuple, tuple[Any, bool, Any, tuple]] = {}
_drivers = registry._drivers  # read directly: every lookup starts by asking it


def getaddrinfo(host: Any, port: Any, family: Any = 0, type: Any = 0, proto: Any = 0,
                flags: Any = 0) -> list[tuple]:
    resolver = _drivers.get(_AF_INET)
    if resolver is None or not hasattr(resolver, "resolve"):
        resolver = _resolver()
        if resolver is None:
            return _kernel_getaddrinfo(host, port, family, type, proto, flags)
    key = (host, port, family, type, proto, flags, host.__class__, port.__class__,
           family.__class__, type.__class__, proto.__class__, flags.__class__)
    try:
        kept = _answers.get(key)
    except Exception:  # an argument that cannot be a key (unhashable): never kept
        kept = None
    if kept is not None and kept[0] is resolver and (
            kept[2] is None or kept[2] == _version(resolver, kept[1], port)):
        return list(kept[3])
    answers, numeric = _getaddrinfo(resolver, host, port, family, type, proto, flags)
    if _cacheable(host, port, family, type, proto, flags):
        if len(_answers) >= 1024:
            _answers.clear()
        named = not numeric
        version = _version(resolver, named, port) if named or port.__class__ is str else None
        _answers[key] = (resolver, named, version, answers)
    return list(answers)


def _cacheable(host: Any, port: Any, family: Any, type: Any, proto: Any,
               flags: Any) -> bool:
    """Exact types for host and port (True == 1, but is no port); any int for the
    rest, which CPython takes as C ints (the SocketKind and AddressFamily members
    too)."""
    return ((host is None or host.__class__ is str)
            and (port is None or port.__class__ is int or port.__class__ is str)
            and isinstance(family, int)
            and isinstance(type, int) and isinstance(proto, int)
            and isinstance(flags, int))


def _version(resolver: Any, named: bool, port: Any) -> tuple:
    """What a kept answer depends on: the network's names (for a host name) and
    /etc/services (for a service given as text)."""
    return (resolver.names_version() if named else None,
            _services_stamp() if port.__class__ is str else None)


def _services_stamp() -> tuple:
    try:
        status = _os.stat("/etc/services")
    except OSError as exc:
        return (exc.errno,)
    return status.st_ino, status.st_size, status.st_mtime_ns


def _getaddrinfo(resolver: Any, host: Any, port: Any, family: Any, kind: Any, proto: Any,
                 flags: Any) -> tuple[tuple, bool]:
    """getaddrinfo's answers, and whether they hold whatever the network's names are."""
    family, kind, proto, flags = (_c_int(v) for v in (family, kind, proto, flags))
    name, service = _host_text(host), _service_text(port)
    if name == "*":
        name = None
    if service == "*":
        service = None
    if name is None and service is None:
        raise _hostnames.gaierror(_stdlib.EAI_NONAME)
    if flags & ~_AI_KNOWN or (flags & _AI_CANONNAME and name is None):
        raise _hostnames.gaierror(_stdlib.EAI_BADFLAGS)
    if family not in (0, _AF_INET, _AF_INET6):
        raise _hostnames.gaierror(_stdlib.EAI_FAMILY)
    if (service and flags & _AI_NUMERICSERV
            and _hostnames.strtoul_exact(service) is None):
        raise _hostnames.gaierror(_stdlib.EAI_NONAME)
    services = _services(service, kind, proto)
    numeric = True
    canonical = ""
    if name is None:
        passive = flags & _AI_PASSIVE
        found = [(_AF_INET, "0.0.0.0" if passive else "127.0.0.1", 0),
                 (_AF_INET6, "::" if passive else "::1", 0)]
        if not passive:
            found.reverse()  # glibc's RFC 3484 sort: ::1 first, but 0.0.0.0 before ::
        found = [entry for entry in found if family in (0, entry[0])]
    else:
        numeric = _is_numeric(name)
        canonical, found = resolver.resolve(name, family, flags)
    answers = []
    for answer_family, text, scope_id in found:
        target: tuple = ((text, 0) if answer_family == _AF_INET else (text, 0, 0, scope_id))
        for socket_type, protocol, number in services:
            sockaddr = (target[0], number, *target[2:])
            answers.append((_enum(answer_family, _stdlib.AddressFamily),
                            _enum(socket_type, _stdlib.SocketKind), protocol,
                            canonical if flags & _AI_CANONNAME and not answers else "",
                            sockaddr))
    return tuple(answers), numeric


def _is_numeric(name: str) -> bool:
    """Whether glibc takes ``name`` as an address, not a name to look up."""
    if _hostnames.inet_aton_exact(name) is not None:
        return True
    try:
        _stdlib.inet_pton(_stdlib.AF_INET6, name.partition("%")[0])
        return True
    except (OSError, ValueError):
        return False


def gethostname() -> str:
    return _kernel_gethostname()


def gethostbyname(name: Any) -> str:
    """As CPython's: the address a socket of AF_INET given ``name`` would use."""
    resolver = _resolver()
    if resolver is None:
        return _kernel_gethostbyname(name)
    text = _idna_argument(name, "gethostbyname")
    if text == "":
        return "0.0.0.0"
    if text in ("<broadcast>", "255.255.255.255"):
        return "255.255.255.255"
    return resolver.resolve(text, _AF_INET, 0)[1][0][1]


def gethostbyname_ex(name: Any) -> tuple[str, list[str], list[str]]:
    """As CPython's: the name checked as gethostbyname does, then glibc's hostent of
    its AF_INET lookup (every matching line's address, the later lines' names added to
    the aliases)."""
    resolver = _resolver()
    if resolver is None:
        return _kernel_gethostbyname_ex(name)
    text = _idna_argument(name, "gethostbyname_ex")
    if text not in ("", "<broadcast>", "255.255.255.255"):
        resolver.resolve(text, _AF_INET, 0)
    return resolver.host_entry(text)


def _idna_argument(name: Any, function: str) -> str:
    if isinstance(name, str):
        return name.encode("idna").decode("ascii")
    if isinstance(name, (bytes, bytearray)):
        return bytes(name).decode("latin-1")
    raise TypeError(f"{function}() argument 1 must be str, bytes or bytearray, not "
                    f"{type(name).__name__}")


def gethostbyaddr(address: Any) -> tuple[str, list[str], list[str]]:
    """As CPython's: ``address`` (or a name) resolved as getaddrinfo's first answer,
    then the name of that address; herror when it has none."""
    resolver = _resolver()
    if resolver is None:
        return _kernel_gethostbyaddr(address)
    text = _idna_argument(address, "gethostbyaddr")
    ip = resolver.resolve(text, 0, 0)[1][0][1] if text else "0.0.0.0"
    names = resolver.names_of(ip)
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
    if not isinstance(host, str) or not _is_numeric(host):
        raise _hostnames.gaierror(_stdlib.EAI_NONAME)
    family, host, zone = resolver.resolve(host, 0, _stdlib.AI_NUMERICHOST)[1][0]
    scope_id = scope_id or zone
    names = [] if flags & _stdlib.NI_NUMERICHOST else resolver.names_of(host)
    if not names and flags & _stdlib.NI_NAMEREQD:
        raise _hostnames.gaierror(_stdlib.EAI_NONAME)
    service = str(port)
    if not flags & _stdlib.NI_NUMERICSERV:
        try:
            service = _stdlib.getservbyport(port, "udp" if flags & _stdlib.NI_DGRAM else "tcp")
        except OSError:
            pass
    if not names and scope_id and family == _AF_INET6 and _link_scoped(host):
        try:
            host += "%" + if_indextoname(scope_id)
        except OSError:
            host += f"%{scope_id}"
    return (names[0] if names else host), service


def _link_scoped(text: str) -> bool:
    """Addresses whose scope id getnameinfo shows (link-local, link-local multicast)."""
    packed = _stdlib.inet_pton(_stdlib.AF_INET6, text)
    return (packed[0] == 0xFE and packed[1] & 0xC0 == 0x80) or (
        packed[0] == 0xFF and packed[1] & 0x0F == 0x02)


def if_nameindex() -> list[tuple[int, str]]:
    """The network's interfaces, as (index, name)."""
    resolver = _resolver()
    if resolver is None:
        return _kernel_if_nameindex()
    return list(resolver.interfaces())


def if_nametoindex(name: Any) -> int:
    """The index of the network's interface ``name``; OSError as CPython's if none."""
    resolver = _resolver()
    if resolver is None:
        return _kernel_if_nametoindex(name)
    try:  # the stdlib checks the argument (its errors are per Python version)
        _kernel_if_nametoindex(name)
    except OSError:
        pass
    wanted = _os.fsdecode(name)
    for index, interface in resolver.interfaces():
        if interface == wanted:
            return index
    raise OSError("no interface with this name")


def if_indextoname(index: Any) -> str:
    """The name of the network's interface numbered ``index``; ENXIO if none."""
    resolver = _resolver()
    if resolver is None:
        return _kernel_if_indextoname(index)
    try:  # the stdlib checks and converts the argument (per Python version)
        _kernel_if_indextoname(index)
    except OSError as exc:
        if exc.errno != _errno.ENXIO:
            raise
    number = int(index) & 0xFFFFFFFF  # the C unsigned int it passes on
    for interface_index, interface in resolver.interfaces():
        if interface_index == number:
            return interface
    raise OSError(_errno.ENXIO, _os.strerror(_errno.ENXIO))


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
