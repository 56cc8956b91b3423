"""Host names on the virtual network, answered the way glibc's getaddrinfo answers them.

Where the names come from:

* a host added to the network (``add_host(..., names=[...])``) answers its names with its
  addresses (a trailing dot and letter case do not matter);
* ``localhost`` and the machine's own name (``socket.gethostname()``) answer what they
  answer on this machine's kernel: the lines of /etc/hosts that name them, read as
  glibc's "files" source reads them (every matching line, in file order, duplicates
  kept).  With /etc/hosts giving ``localhost`` only 127.0.0.1, an IPv6 lookup of it
  fails with EAI_NONAME, as on the kernel.  Other loopback lines (127.0.0.0/8, ::1) are
  the machine's too, with all their names; lines for other machines are not read: the
  network is isolated.  If no line names ``localhost`` it answers 127.0.0.1 and ::1
  (what resolvers synthesize); if none names the machine, its name answers as
  ``localhost`` does.  The file is read again when it changes.
* nothing else: no DNS.

What is looked up and how the answer is ordered follows glibc: numeric forms first
(``inet_aton``'s, ``127.1`` included, then IPv6 with a ``%zone``), an AF_INET lookup
reads ``::1`` lines as 127.0.0.1, AI_V4MAPPED/AI_ALL map IPv4 answers for AF_INET6, and
several answers are sorted by RFC 3484's rules as glibc applies them with this
network's source addresses (precedence, then scope, then the longest prefix shared
with the source address, then the file's order).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple

__all__ = ["Line", "MachineNames", "machine_names", "resolve_host", "lines_of_host",
           "reverse", "host_entry", "gaierror", "inet_aton_exact", "strtoul_exact"]

HOSTS_PATH = "/etc/hosts"

AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
_MAPPED = int(ipaddress.IPv6Address("::ffff:0.0.0.0"))
_LOOPBACK4_MAPPED = ipaddress.IPv6Address("::ffff:127.0.0.1")
_LOOPBACK6 = ipaddress.IPv6Address("::1")
_WHITESPACE = " \t\n\v\f\r"

# gai_strerror's texts (glibc, untranslated).
_GAI_TEXT = {
    socket.EAI_BADFLAGS: "Bad value for ai_flags",
    socket.EAI_NONAME: "Name or service not known",
    socket.EAI_FAMILY: "ai_family not supported",
    socket.EAI_SOCKTYPE: "ai_socktype not supported",
    socket.EAI_SERVICE: "Servname not supported for ai_socktype",
    socket.EAI_ADDRFAMILY: "Address family for hostname not supported",
}


def gaierror(code: int) -> socket.gaierror:
    return socket.gaierror(code, _GAI_TEXT[code])


class Line(NamedTuple):
    """One line of a hosts table: an address and its names (the canonical one first)."""

    ip: ipaddress.IPv6Address  # IPv4 addresses IPv4-mapped, as inside the network
    v4: bool  # written as an IPv4 address (``::ffff:a.b.c.d`` is an IPv6 line)
    names: tuple[str, ...]
    keys: frozenset[str]  # the names, lower-cased


def _line(ip: ipaddress.IPv6Address, v4: bool, names: Iterable[str]) -> Line:
    names = tuple(names)
    return Line(ip, v4, names, frozenset(name.lower() for name in names))


def _parse_hosts(text: str) -> list[Line]:
    """Lines of /etc/hosts as glibc parses them: ``#`` starts a comment, an address that
    ``inet_pton`` does not take drops its line."""
    lines = []
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        address, names = fields[0], fields[1:]
        try:
            packed = socket.inet_pton(AF_INET, address)
            lines.append(_line(ipaddress.IPv6Address(_MAPPED | int.from_bytes(packed, "big")),
                               True, names))
            continue
        except OSError:
            pass
        try:
            lines.append(_line(ipaddress.IPv6Address(socket.inet_pton(AF_INET6, address)),
                               False, names))
        except OSError:
            continue
    return lines


def _is_loopback(line: Line) -> bool:
    v4 = line.ip.ipv4_mapped
    return v4.is_loopback if v4 is not None else line.ip == _LOOPBACK6


class MachineNames(NamedTuple):
    """The machine's lines of /etc/hosts (see the module docstring), read at one time."""

    lines: tuple[Line, ...]
    addresses: frozenset[ipaddress.IPv6Address]  # where they point: the machine's own


def _machine_names(text: str, hostname: str) -> MachineNames:
    keys = {"localhost", hostname.lower()}
    lines = [line for line in _parse_hosts(text) if _is_loopback(line) or keys & line.keys]
    if not any("localhost" in line.keys for line in lines):
        lines += [_line(_LOOPBACK4_MAPPED, True, ["localhost"]),
                  _line(_LOOPBACK6, False, ["localhost"])]
    if hostname and not any(hostname.lower() in line.keys for line in lines):
        lines += [_line(line.ip, line.v4, [hostname]) for line in lines
                  if "localhost" in line.keys]
    return MachineNames(tuple(lines), frozenset(line.ip for line in lines))


_cache_lock = threading.Lock()
# ((path, st_ino, st_size, st_mtime_ns) or the error, hostname) -> MachineNames
_cached: tuple[object, MachineNames] | None = None


def machine_names(path: str | None = None) -> MachineNames:
    """The machine's names now: /etc/hosts is parsed again only when its inode, size or
    modification time changed, or the host name did (glibc reads it on every lookup)."""
    global _cached
    path = path or HOSTS_PATH
    hostname = socket.gethostname()
    try:
        status = os.stat(path)
        stamp: object = (path, status.st_ino, status.st_size, status.st_mtime_ns, hostname)
    except OSError as exc:
        stamp = (path, exc.errno, hostname)
    cached = _cached
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as file:
            text = file.read()
    except OSError:
        text = ""
    names = _machine_names(text, hostname)
    with _cache_lock:
        _cached = (stamp, names)
    return names


def lines_of_host(addresses: Iterable[ipaddress.IPv6Address], names: Iterable[str]
                  ) -> list[Line]:
    """An added host as hosts-table lines; its names match without a trailing dot."""
    names = [name.rstrip(".") for name in names]
    keys = frozenset(key for name in names for key in (name.lower(), name.lower() + "."))
    return [Line(ip, ip.ipv4_mapped is not None, tuple(names), keys) for ip in addresses]


# -- numeric hosts ---------------------------------------------------------------------

def inet_aton_exact(text: str) -> ipaddress.IPv6Address | None:
    """``inet_aton``'s forms (``127.1``, ``0x7f.1``, ``2130706433``), nothing after them:
    what glibc's getaddrinfo takes as an IPv4 address.  IPv4-mapped, or None."""
    if not text or any(c in _WHITESPACE for c in text) or not text.isascii():
        return None
    try:
        packed = socket.inet_aton(text)
    except (OSError, ValueError):
        return None
    return ipaddress.IPv6Address(_MAPPED | int.from_bytes(packed, "big"))


def strtoul_exact(text: str) -> int | None:
    """C's ``strtoul(text, &end, 10)`` (leading blanks, a sign, a minus negating modulo
    2**64, a magnitude past ULONG_MAX giving ULONG_MAX whatever the sign) when it reads
    all of ``text``, else None."""
    stripped = text.lstrip(_WHITESPACE)
    sign = -1 if stripped[:1] == "-" else 1
    digits = stripped[1:] if stripped[:1] in ("+", "-") else stripped
    if not digits:
        return None if text else 0
    if not (digits.isascii() and digits.isdigit()):
        return None
    magnitude = int(digits)
    return 2**64 - 1 if magnitude >= 2**64 else (magnitude * sign) % 2**64


def _link_local(ip: ipaddress.IPv6Address) -> bool:
    packed = ip.packed
    return (packed[0] == 0xFE and packed[1] & 0xC0 == 0x80) or (
        packed[0] == 0xFF and packed[1] & 0x0F == 0x02)


def _numeric(name: str, family: int, flags: int, interface_index: Callable[[str], int]
             ) -> tuple[int, ipaddress.IPv6Address, int] | None:
    """(family, address, scope id) of a numeric host, None for a name; gaierror as glibc."""
    ip = inet_aton_exact(name)
    if ip is not None:
        if family in (0, AF_INET):
            return AF_INET, ip, 0
        if family == AF_INET6 and flags & socket.AI_V4MAPPED:
            return AF_INET6, ip, 0
        raise gaierror(socket.EAI_ADDRFAMILY)
    address, delimiter, zone = name.partition("%")
    try:
        ip = ipaddress.IPv6Address(socket.inet_pton(AF_INET6, address))
    except (OSError, ValueError):
        return None
    if family in (0, AF_INET6):
        result_family = AF_INET6
    elif family == AF_INET and ip.ipv4_mapped is not None:
        result_family = AF_INET
    else:
        raise gaierror(socket.EAI_ADDRFAMILY)
    scope_id = 0
    if delimiter:  # glibc's __inet6_scopeid_pton: an interface name (link-local only),
        # else a number of 32 bits, in decimal digits only
        scope_id = interface_index(zone) if _link_local(ip) else 0
        if not scope_id:
            if not (zone.isascii() and zone.isdigit() and int(zone) <= 0xFFFFFFFF):
                raise gaierror(socket.EAI_NONAME)
            scope_id = int(zone)
    return result_family, ip, scope_id


# -- names -----------------------------------------------------------------------------

def _as_v4(line: Line) -> ipaddress.IPv6Address | None:
    """A line read by an AF_INET lookup: IPv4 lines, IPv4-mapped ones, ::1 as 127.0.0.1."""
    if line.v4 or line.ip.ipv4_mapped is not None:
        return line.ip
    return _LOOPBACK4_MAPPED if line.ip == _LOOPBACK6 else None


Answer = list[tuple[int, ipaddress.IPv6Address, int]]  # (family, address, scope id)


def _lookup(lines: Iterable[Line], name: str, family: int, flags: int
            ) -> tuple[str | None, Answer]:
    key = name.lower()
    matching = [line for line in lines if key in line.keys]
    if family == 0:
        found = [(AF_INET if line.v4 else AF_INET6, line.ip, 0) for line in matching]
        return (matching[0].names[0] if matching else None), found
    v4_lines = [(line, ip) for line in matching if (ip := _as_v4(line)) is not None]
    if family == AF_INET:
        return (v4_lines[0][0].names[0] if v4_lines else None), [
            (AF_INET, ip, 0) for _, ip in v4_lines]
    v6_lines = [line for line in matching if not line.v4]
    canonical = v6_lines[0].names[0] if v6_lines else None
    found = [(AF_INET6, line.ip, 0) for line in v6_lines]
    mapped_wanted = flags & socket.AI_V4MAPPED
    if mapped_wanted and (flags & socket.AI_ALL or not v6_lines):
        found += [(AF_INET6, ip, 0) for _, ip in v4_lines]
        if canonical is None and v4_lines:
            canonical = v4_lines[0][0].names[0]
    if v6_lines and mapped_wanted and not flags & socket.AI_ALL:
        found = [entry for entry in found if entry[1].ipv4_mapped is None]
    return canonical, found


def resolve_host(name: str, family: int, flags: int, lines: Iterable[Line],
                 interface_index: Callable[[str], int]) -> tuple[str, Answer]:
    """getaddrinfo's host part for a name that is not None: (canonical name, answers in
    glibc's order).  gaierror when nothing answers."""
    numeric = _numeric(name, family, flags, interface_index)
    if numeric is not None:
        return name, [numeric]
    if flags & socket.AI_NUMERICHOST:
        raise gaierror(socket.EAI_NONAME)
    canonical, found = _lookup(lines, name, family, flags)
    if not found:
        raise gaierror(socket.EAI_NONAME)
    if len(found) > 1:
        order = sorted(range(len(found)), key=functools.cmp_to_key(
            lambda a, b: _compare(found[a], found[b]) or (a > b) - (a < b)))
        found = [found[i] for i in order]
    return canonical or name, found


def host_entry(lines: Iterable[Line], name: str) -> tuple[str, list[str], list[str]]:
    """glibc's hostent for an AF_INET lookup of ``name`` (gethostbyname_ex): the first
    matching line's names, then each later line's aliases and canonical name (when not
    the first's), every matching line's address in file order."""
    ip = inet_aton_exact(name)
    if ip is not None:
        return name, [], [str(ip.ipv4_mapped)]
    key = name.lower()
    matching = [(line, ip) for line in lines
                if key in line.keys and (ip := _as_v4(line)) is not None]
    if not matching:
        raise gaierror(socket.EAI_NONAME)
    canonical = matching[0][0].names[0]
    aliases = list(matching[0][0].names[1:])
    for line, _ in matching[1:]:
        aliases += [alias for alias in (*line.names[1:], line.names[0]) if alias != canonical]
    return canonical, aliases, [str(ip.ipv4_mapped) for _, ip in matching]


def reverse(lines: Iterable[Line], ip: ipaddress.IPv6Address, v4: bool) -> tuple[str, ...]:
    """The names of the first line with ``ip`` (gethostbyaddr's "files" lookup)."""
    for line in lines:
        if (_as_v4(line) if v4 else (None if line.v4 else line.ip)) == ip:
            return line.names
    return ()


# -- RFC 3484 order, as glibc's rfc3484_sort with this network's source addresses ------
# Every address of the network is local, so a destination is its own source, except
# that 127.0.0.0/8 is reached from 127.0.0.1 (lo's /8); rules 1-5 and 7 then never
# decide, and the order is: precedence, scope, longest prefix shared with the source.

_PRECEDENCE = [(ipaddress.IPv6Network("::1/128"), 50), (ipaddress.IPv6Network("2002::/16"), 30),
               (ipaddress.IPv6Network("::/96"), 20), (ipaddress.IPv6Network("::ffff:0:0/96"), 10)]


def _precedence(family: int, ip: ipaddress.IPv6Address) -> int:
    for network, value in _PRECEDENCE:
        if ip in network:
            return value
    return 40


def _scope(family: int, ip: ipaddress.IPv6Address) -> int:
    if family == AF_INET:
        v4 = ip.ipv4_mapped
        return 2 if v4 is not None and (v4.is_loopback or v4.is_link_local) else 14
    packed = ip.packed
    if packed[0] == 0xFF:
        return packed[1] & 0x0F
    if (packed[0] == 0xFE and packed[1] & 0xC0 == 0x80) or ip == _LOOPBACK6:
        return 2
    if packed[0] == 0xFE and packed[1] & 0xC0 == 0xC0:
        return 5
    return 14


def _source(ip: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    v4 = ip.ipv4_mapped
    return _LOOPBACK4_MAPPED if v4 is not None and v4.is_loopback else ip


def _leading_zeros(value: int) -> int:
    return 32 - value.bit_length()


def _shared_bits(family: int, first: ipaddress.IPv6Address, second: ipaddress.IPv6Address
                 ) -> tuple[int, int]:
    """glibc's rule 9 inputs for two destinations of one family."""
    if family == AF_INET:  # IPv4: only inside the source's subnet (lo's /8 or itself)
        return tuple(_leading_zeros((int(ip) ^ int(_source(ip))) & 0xFFFFFFFF)
                     for ip in (first, second))  # type: ignore[return-value]
    a = int(first) ^ int(_source(first))
    b = int(second) ^ int(_source(second))
    for shift in (96, 64, 32, 0):  # the first 32-bit word where either pair differs
        word_a, word_b = (a >> shift) & 0xFFFFFFFF, (b >> shift) & 0xFFFFFFFF
        if word_a or word_b:
            return _leading_zeros(word_a), _leading_zeros(word_b)
    return 0, 0


def _compare(first: tuple[int, ipaddress.IPv6Address, int],
             second: tuple[int, ipaddress.IPv6Address, int]) -> int:
    (family_a, ip_a, _), (family_b, ip_b, _) = first, second
    precedence_a, precedence_b = _precedence(family_a, ip_a), _precedence(family_b, ip_b)
    if precedence_a != precedence_b:
        return -1 if precedence_a > precedence_b else 1
    scope_a, scope_b = _scope(family_a, ip_a), _scope(family_b, ip_b)
    if scope_a != scope_b:
        return -1 if scope_a < scope_b else 1
    if family_a == family_b:
        bits_a, bits_b = _shared_bits(family_a, ip_a, ip_b)
        if bits_a != bits_b:
            return -1 if bits_a > bits_b else 1
    return 0
