"""A virtual network described in one JSON file: hosts, links, defaults, a partition, a seed.

``posix-socket run --net-config FILE.json`` reads such a file, and so can a program or a
test, from a file or from a dict of the same shape::

    config = posix_socket.load_network_config("network.json")
    with posix_socket.use("virtual", seed=config.seed) as preset:
        config.apply(preset.network)

The format (every key optional; units: seconds, bytes per second, probabilities in 0..1)::

    {
      "seed": 7,
      "hosts": {
        "db.test": ["10.0.0.2", "fd00::2"],
        "cache.test": {"addresses": ["10.0.0.3"], "aliases": ["cache"]}
      },
      "defaults": {"latency": 0.001},
      "links": [
        {"between": ["localhost", "db.test"], "latency": 0.05, "jitter": 0.01,
         "bandwidth": 1000000, "loss": 0.01}
      ],
      "partition": [["db.test"]],
      "sysctl": {"tcp_syn_retries": 2}
    }

- ``seed``: an integer fixing the network's random choices (``use("virtual", seed=)``);
  ``--seed`` on the command line wins over it.
- ``hosts``: name -> its address, a list of addresses, or ``{"addresses": [...],
  "aliases": [...]}`` (more names), as ``net.add_host(*addresses, names=[name, *aliases])``.
- ``defaults``: conditions for every path without a link of its own (``net.conditions``).
- ``links``: each ``{"between": [a, b], <conditions>, "both_ways": true}`` is one
  ``net.link(a, b, ...)``; ``a`` and ``b`` are host names or addresses (the file's hosts,
  or ``localhost`` and the machine's name for the first host), the same twice for that
  host's loopback path; ``"both_ways": false`` conditions only the way from a to b.
- conditions: ``latency``, ``jitter`` (seconds), ``bandwidth`` (bytes per second; null:
  unlimited), ``loss``, ``duplicate``, ``reorder`` (probabilities), ``mtu`` (bytes),
  ``down`` (true: nothing passes).
- ``partition``: groups of hosts (a group may be one host), as ``net.partition(*groups)``.
- ``sysctl``: Linux's TCP timer settings for this network (``net.sysctl``), e.g.
  ``tcp_syn_retries``.

Everything is checked before anything changes: ``load_network_config`` checks the shape,
types and values, ``apply`` checks what needs the network (which hosts a name means,
addresses already taken), then applies it all.  A problem is a ``NetworkConfigError``
naming the file, the place in it (``links[1].loss``) and what is wrong.  Only the
network's public calls are used, so a config does nothing a program could not do.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .drivers.inet import Conditions, Host, VirtualNetwork

__all__ = ["NetworkConfig", "NetworkConfigError", "load_network_config"]

CONDITIONS = tuple(Conditions().values())  # latency, jitter, bandwidth, ...
_TOP_KEYS = ("seed", "hosts", "defaults", "links", "partition", "sysctl")
_LINK_KEYS = ("between", "both_ways", *CONDITIONS)
_HOST_KEYS = ("addresses", "aliases")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


class NetworkConfigError(ValueError):
    """A network configuration that cannot be applied: ``source`` (the file, or None for
    a dict), ``place`` (``links[1].loss``; None for the whole) and ``problem``."""

    def __init__(self, source: str | None, place: str | None, problem: str) -> None:
        self.source, self.place, self.problem = source, place, problem
        super().__init__(": ".join(part for part in (source, place, problem) if part))


@dataclass(frozen=True)
class HostEntry:
    names: tuple[str, ...]  # the key first, then the aliases
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class LinkEntry:
    between: tuple[str, str]
    both_ways: bool
    conditions: Mapping[str, Any]


@dataclass(frozen=True)
class NetworkConfig:
    """A checked configuration; ``apply(net)`` puts it on a network."""

    seed: int | None = None
    hosts: tuple[HostEntry, ...] = ()
    defaults: Mapping[str, Any] | None = None
    links: tuple[LinkEntry, ...] = ()
    partition: tuple[str | tuple[str, ...], ...] | None = None
    sysctl: Mapping[str, int] = field(default_factory=dict)
    source: str | None = None  # the file it came from

    def apply(self, net: VirtualNetwork) -> None:
        """Add the hosts, then set the defaults, the links, the partition and the
        sysctls on ``net``.  Everything is checked first: on a NetworkConfigError the
        network is as it was."""
        _Applier(self, net).check()
        for entry in self.hosts:
            net.add_host(*entry.addresses, names=list(entry.names))
        if self.defaults is not None:
            net.conditions(**self.defaults)
        for link in self.links:
            net.link(*link.between, both_ways=link.both_ways, **link.conditions)
        if self.partition is not None:
            net.partition(*self.partition)
        net.sysctl.update(self.sysctl)


def load_network_config(source: str | os.PathLike[str] | Mapping[str, Any]
                        ) -> NetworkConfig:
    """Read and check a network configuration: a JSON file's path, or a dict of the
    same shape (see the module's docstring).  NetworkConfigError says what is wrong and
    where; nothing is applied here (``NetworkConfig.apply`` does that)."""
    if isinstance(source, Mapping):
        return _Reader(None).config(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"a network configuration is a path or a dict, not "
                        f"{type(source).__name__}")
    name = os.fsdecode(source)
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise NetworkConfigError(name, None, f"can't open file: [Errno {exc.errno}] "
                                 f"{exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise NetworkConfigError(name, None, f"not UTF-8 text ({exc.reason} at byte "
                                 f"{exc.start})") from None
    try:
        document = json.loads(text, object_pairs_hook=_Object)
    except json.JSONDecodeError as exc:
        raise NetworkConfigError(name, f"line {exc.lineno} column {exc.colno}",
                                 f"malformed JSON: {exc.msg}") from None
    return _Reader(name).config(document)


class _Object(dict):  # type: ignore[type-arg]
    """A JSON object that remembers keys it was given twice (json keeps the last)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.repeated: list[str] = []
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                self.repeated.append(key)
            seen.add(key)


def _key(place: str, key: str) -> str:
    return f"{place}.{key}" if key.isidentifier() else f"{place}[{json.dumps(key)}]"


def _type_name(value: Any) -> str:
    """What a JSON reader calls the value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


class _Reader:
    """The shape, type and value checks that need no network."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def error(self, place: str | None, problem: str) -> NetworkConfigError:
        return NetworkConfigError(self.source, place, problem)

    def object(self, value: Any, place: str | None, known: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(place, f"expected an object, not {_type_name(value)}")
        for key in getattr(value, "repeated", ()):
            raise self.error(_key(place, key) if place else key, "given twice")
        for key in value:
            if not isinstance(key, str) or key not in known:
                where = _key(place, str(key)) if place else str(key)
                raise self.error(where, f"unknown key (known: {', '.join(known)})")
        return value

    def list(self, value: Any, place: str) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise self.error(place, f"expected a list, not {_type_name(value)}")
        return list(value)

    def string(self, value: Any, place: str) -> str:
        if not isinstance(value, str):
            raise self.error(place, f"expected a string, not {_type_name(value)}")
        return value

    def config(self, document: Any) -> NetworkConfig:
        top = self.object(document, None, _TOP_KEYS)
        seed = top.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise self.error("seed", f"expected an integer or null, not {_type_name(seed)}")
        return NetworkConfig(
            seed=seed, hosts=self.hosts(top.get("hosts", {})),
            defaults=(None if top.get("defaults") is None
                      else self.conditions(top["defaults"], "defaults", CONDITIONS)),
            links=tuple(self.link(link, f"links[{number}]") for number, link
                        in enumerate(self.list(top.get("links", []), "links"))),
            partition=(None if top.get("partition") is None
                       else self.partition(top["partition"])),
            sysctl=self.sysctl(top.get("sysctl", {})), source=self.source)

    def hosts(self, value: Any) -> tuple[HostEntry, ...]:
        if not isinstance(value, Mapping):
            raise self.error("hosts", f"expected an object (name: addresses), not "
                             f"{_type_name(value)}")
        for key in getattr(value, "repeated", ()):
            raise self.error(_key("hosts", key), "given twice")
        entries: list[HostEntry] = []
        names: dict[str, str] = {}  # a name (lowercase, no trailing dot) -> its host's place
        owners: dict[ipaddress.IPv6Address, str] = {}  # an address -> its host's place
        for name, spec in value.items():
            place = _key("hosts", name)
            aliases: list[Any] = []
            addresses_place = place
            if isinstance(spec, str):
                addresses: list[Any] = [spec]
            elif isinstance(spec, Mapping):
                self.object(spec, place, _HOST_KEYS)
                if "addresses" not in spec:
                    raise self.error(place, "no addresses (a host needs at least one)")
                addresses_place = f"{place}.addresses"
                addresses = self.list(spec["addresses"], addresses_place)
                aliases = self.list(spec.get("aliases", []), f"{place}.aliases")
            else:
                addresses = self.list(spec, place)
            if not addresses:
                raise self.error(addresses_place, "no addresses (a host needs at least one)")
            for number, alias in enumerate([name, *aliases]):
                where = place if number == 0 else f"{place}.aliases[{number - 1}]"
                self.host_name(alias, where)
                key = alias.lower().rstrip(".")
                if key in names:
                    raise self.error(where, f"the name {alias!r} is {names[key]}'s already")
                names[key] = place
            for number, address in enumerate(addresses):
                where = f"{addresses_place}[{number}]"
                ip = self.address(address, where)
                if ip in owners:
                    raise self.error(where, f"{address} is {owners[ip]}'s already")
                owners[ip] = place
            entries.append(HostEntry((name, *aliases), tuple(addresses)))
        return tuple(entries)

    def host_name(self, name: Any, place: str) -> None:
        self.string(name, place)
        if not name or any(character.isspace() for character in name):
            raise self.error(place, f"{name!r} is not a host name (empty, or has spaces)")
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return
        raise self.error(place, f"{name!r} is an address, not a name (a host's name is "
                         "its key; its addresses are the value)")

    def address(self, value: Any, place: str) -> ipaddress.IPv6Address:
        """The address as the network files it (IPv4 ones mapped), if a host may have it."""
        text = self.string(value, place)
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise self.error(place, f"{text!r} is not an IP address") from None
        # An IPv4-mapped address is judged as its IPv4 address on every Python (3.13's
        # ipaddress does so for is_loopback only, earlier ones not at all).
        plain = (ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else ip
        kind = ("unspecified" if plain.is_unspecified else "multicast" if plain.is_multicast
                else "broadcast" if plain == _BROADCAST else "loopback" if plain.is_loopback
                else None)
        if kind is not None:
            raise self.error(place, f"{text} is a {kind} address, not one a host can have")
        if isinstance(ip, ipaddress.IPv4Address):
            return ipaddress.IPv6Address(f"::ffff:{ip}")
        return ip

    def conditions(self, value: Any, place: str, known: tuple[str, ...]) -> dict[str, Any]:
        settled = {}
        for name, setting in self.object(value, place, known).items():
            if name not in CONDITIONS:
                continue
            try:
                Conditions(**{name: setting})  # the network's own checks, one by one
            except (TypeError, ValueError) as exc:
                raise self.error(_key(place, name), _json_words(exc, setting)) from None
            settled[name] = setting
        return settled

    def link(self, value: Any, place: str) -> LinkEntry:
        conditions = self.conditions(value, place, _LINK_KEYS)
        if "between" not in value:
            raise self.error(place, 'no "between": [host, host]')
        ends = self.list(value["between"], f"{place}.between")
        if len(ends) != 2:
            raise self.error(f"{place}.between", f"expected two hosts, not {len(ends)}")
        for number, end in enumerate(ends):
            self.string(end, f"{place}.between[{number}]")
        both_ways = value.get("both_ways", True)
        if not isinstance(both_ways, bool):
            raise self.error(f"{place}.both_ways",
                             f"expected true or false, not {_type_name(both_ways)}")
        return LinkEntry((ends[0], ends[1]), both_ways, conditions)

    def partition(self, value: Any) -> tuple[str | tuple[str, ...], ...]:
        groups = self.list(value, "partition")
        if not groups:
            raise self.error("partition", "no groups (leave it out, or null, for none)")
        settled: list[str | tuple[str, ...]] = []
        for number, group in enumerate(groups):
            place = f"partition[{number}]"
            if isinstance(group, str):
                settled.append(group)
                continue
            members = self.list(group, place)
            if not members:
                raise self.error(place, "an empty group")
            for index, member in enumerate(members):
                self.string(member, f"{place}[{index}]")
            settled.append(tuple(members))
        return tuple(settled)

    def sysctl(self, value: Any) -> dict[str, int]:
        if not isinstance(value, Mapping):
            raise self.error("sysctl", f"expected an object, not {_type_name(value)}")
        for key in getattr(value, "repeated", ()):
            raise self.error(_key("sysctl", key), "given twice")
        for name, setting in value.items():
            if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
                raise self.error(_key("sysctl", name),
                                 f"expected an integer >= 0, not {setting!r}")
        return dict(value)


def _json_words(exc: Exception, value: Any) -> str:
    """The network's message in the file's words: the value as JSON writes it, not
    its Python type, and ``null`` for ``None``."""
    message = str(exc).replace("(None: unlimited)", "(null: unlimited)")
    if isinstance(exc, TypeError):
        message = message.rpartition(", not ")[0] + f", not {json.dumps(value)}"
    return message


class _Applier:
    """The checks that need the network: what each host name means there, and whether
    the file's hosts collide with the network's."""

    def __init__(self, config: NetworkConfig, net: VirtualNetwork) -> None:
        self.config, self.net = config, net
        # The file's hosts, by each name (lowercase, no trailing dot) and address.
        self.own: dict[str, int] = {}
        for number, entry in enumerate(config.hosts):
            for name in entry.names:
                self.own[name.lower().rstrip(".")] = number
            for address in entry.addresses:
                self.own[str(_plain(address))] = number

    def error(self, place: str | None, problem: str) -> NetworkConfigError:
        return NetworkConfigError(self.config.source, place, problem)

    def check(self) -> None:
        for entry in self.config.hosts:
            place = _key("hosts", entry.names[0])
            for name in entry.names:
                if self.existing(name) is not None:
                    raise self.error(place, f"the network has a host named {name!r} already")
            for address in entry.addresses:
                host = self.existing(address)
                if host is not None:
                    raise self.error(place, f"{address} belongs to a host of the network "
                                     f"already ({host.label})")
        for number, link in enumerate(self.config.links):
            for end, which in enumerate(link.between):
                self.host(which, f"links[{number}].between[{end}]")
        if self.config.partition is not None:
            group_of: dict[object, int] = {}
            for number, group in enumerate(self.config.partition):
                members = [group] if isinstance(group, str) else group
                for index, which in enumerate(members):
                    place = (f"partition[{number}]" if isinstance(group, str)
                             else f"partition[{number}][{index}]")
                    who = self.host(which, place)
                    if group_of.setdefault(who, number) != number:
                        raise self.error(place, f"{which!r} is in partition"
                                         f"[{group_of[who]}] too (a host is in one group)")
        for name in self.config.sysctl:
            if name not in self.net.sysctl:
                raise self.error(_key("sysctl", name), f"unknown setting (known: "
                                 f"{', '.join(sorted(self.net.sysctl))})")

    def existing(self, which: str) -> Host | None:
        try:
            return self.net.find_host(which)
        except (LookupError, ValueError, TypeError):
            return None

    def host(self, which: str, place: str) -> object:
        """Who ``which`` means: one of the file's hosts (its number) or the network's."""
        key = which.lower().rstrip(".")
        try:
            key = str(_plain(which))
        except ValueError:
            pass
        if key in self.own:
            return self.own[key]
        host = self.existing(which)
        if host is None:
            raise self.error(place, f"no host {which!r} (neither in \"hosts\" nor on "
                             "the network)")
        return host


def _plain(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """One spelling per address: IPv4-mapped IPv6 as the IPv4 address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
