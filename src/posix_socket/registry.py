"""The family registry: which driver serves which address family.

The Python form of Linux's ``sock_register()`` and of a unikernel's registration macro.
Drivers in other installed packages register through the entry-point group
``posix_socket.drivers`` (the counterpart of collecting registrations at link time):
the entry point's name is the family (a number or an ``AF_*`` name) and its object a
``SocketDriver`` subclass or instance.
"""

from __future__ import annotations

import inspect
import operator
import socket
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from . import clock as _clock
from .driver import SocketDriver
from .stacked import MakeLayer, StackedDriver

if TYPE_CHECKING:
    from .drivers.host import HostDriver
    from .drivers.inet import InetDriver, VirtualNetwork
    from .drivers.unix import UnixDriver

__all__ = [
    "register_family", "unregister_family", "registered_families", "driver_for",
    "family_sources", "use", "presets", "add_preset", "load_entry_points",
    "ENTRY_POINT_GROUP", "VirtualDrivers", "network", "stack", "layered",
]

ENTRY_POINT_GROUP = "posix_socket.drivers"
PRESET_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)

_drivers: dict[int, SocketDriver] = {}
_sources: dict[int, str] = {}
# Drivers whose init() ran, by identity (a driver need not be hashable), held weakly.
_initialized: dict[int, weakref.ref[SocketDriver]] = {}
_lock = threading.RLock()


def _family(family: object) -> int:
    value = operator.index(family)  # TypeError for non-integers, as the stdlib
    if not -(2**31) <= value < 2**31:
        raise OverflowError("Python int too large to convert to C int")
    return value


def _init_once(driver: SocketDriver) -> None:
    key = id(driver)
    ref = _initialized.get(key)
    if ref is not None and ref() is driver:
        return
    driver.init()

    def forget(dead: weakref.ref[SocketDriver]) -> None:
        if _initialized.get(key) is dead:
            del _initialized[key]

    _initialized[key] = weakref.ref(driver, forget)


def register_family(family: int, driver: SocketDriver, *, replace: bool = False,
                    source: str = "register_family") -> None:
    """Make ``driver`` serve new sockets of ``family`` (any integer).

    FileExistsError if the family is taken, unless ``replace``.  ``driver.init()`` runs
    exactly once per driver, the first time it is registered.
    """
    family = _family(family)
    if not isinstance(driver, SocketDriver):
        raise TypeError(f"driver must be a SocketDriver, not {type(driver).__name__!r}")
    with _lock:
        current = _drivers.get(family)
        if current is not None and not replace and current is not driver:
            raise FileExistsError(
                f"address family {family} is already served by {current.name!r}")
        _init_once(driver)
        _drivers[family] = layered(driver)  # under the active stacks (a trace), if any
        _sources[family] = source


def unregister_family(family: int) -> SocketDriver:
    """Stop serving ``family``: new sockets get EAFNOSUPPORT, open ones keep their driver.

    KeyError if nothing serves it.  Returns the driver that did.
    """
    family = _family(family)
    with _lock:
        driver = _drivers.pop(family)
        _sources.pop(family, None)
        return driver


def registered_families() -> dict[int, SocketDriver]:
    """A snapshot ``{family: driver}``."""
    with _lock:
        return dict(_drivers)


def family_sources() -> dict[int, str]:
    """Where each registration came from (preset, entry point, register_family)."""
    with _lock:
        return dict(_sources)


def driver_for(family: int) -> SocketDriver | None:
    return _drivers.get(family)


# -- presets -----------------------------------------------------------------------------

_presets: dict[str, Callable[..., dict[int, SocketDriver]]] = {}


def add_preset(name: str, factory: Callable[..., dict[int, SocketDriver]]) -> None:
    """Make ``use(name, **options)`` available; ``factory(**options)`` returns
    ``{family: driver}``."""
    _presets[name] = factory


def presets() -> list[str]:
    return sorted(_presets)


_InetFamily = Literal[socket.AddressFamily.AF_INET, socket.AddressFamily.AF_INET6, 2, 10]
_UnixFamily = Literal[socket.AddressFamily.AF_UNIX, 1]


class VirtualDrivers(dict[int, SocketDriver]):
    """What ``use("virtual")`` registers: one ``InetDriver`` (its ``.network`` the
    virtual network) for AF_INET and AF_INET6, a ``UnixDriver`` for AF_UNIX.

    A plain dict at run time; for type checkers, indexing it with those families
    gives those classes, so ``preset.drivers[AF_INET].network`` type-checks.
    """

    if TYPE_CHECKING:
        @overload
        def __getitem__(self, family: _InetFamily) -> InetDriver: ...
        @overload
        def __getitem__(self, family: _UnixFamily) -> UnixDriver: ...
        @overload
        def __getitem__(self, family: int) -> SocketDriver: ...
        def __getitem__(self, family: int) -> SocketDriver: ...


_Drivers = TypeVar("_Drivers", bound=Mapping[int, SocketDriver])
_Use = TypeVar("_Use", bound="use[Any]")


class use(Generic[_Drivers]):
    """Register a preset's drivers (AF_INET, AF_INET6, AF_UNIX), replacing what is there.

    Takes effect at the call.  Used as a context manager it restores, on exit, exactly
    the registrations it replaced::

        with posix_socket.use("virtual") as preset:
            network = preset.drivers[socket.AF_INET].network

    ``drivers`` is the preset's ``{family: driver}``: ``VirtualDrivers`` for
    "virtual", HostDriver values for "host".
    """

    drivers: _Drivers

    @overload
    def __init__(self: use[VirtualDrivers], name: Literal["virtual"], *,
                 seed: int | None = None, clock: str = "real") -> None: ...
    @overload
    def __init__(self: use[dict[int, HostDriver]], name: Literal["host"]) -> None: ...
    @overload
    def __init__(self: use[dict[int, SocketDriver]], name: str, **options: Any) -> None: ...

    def __init__(self, name: str, **options: Any) -> None:
        try:
            factory = _presets[name]
        except KeyError:
            known = ", ".join(presets()) or "none"
            raise ValueError(f"unknown preset {name!r} (known: {known})") from None
        if options:
            accepted = inspect.signature(factory).parameters
            takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
            for option in options:
                if not takes_any and option not in accepted:
                    raise TypeError(f"preset {name!r} has no option {option!r}")
        drivers = factory(**options)
        self.drivers = drivers  # type: ignore[assignment]  # the overloads name the type
        with _lock:
            self._saved = {f: (_drivers.get(f), _sources.get(f)) for f in drivers}
            for family, driver in drivers.items():
                register_family(family, driver, replace=True, source=f"preset {name}")
            # The layer's own waits keep the time of the network now in use.
            self._clock = _clock.use_clock(self.clock)
        self.name = name

    @property
    def clock(self) -> _clock.RealClock | _clock.VirtualClock:
        """The clock of this preset's network (``.now()``: its seconds); the wall's
        when it has none."""
        network = self.network
        return network.clock if network is not None else _clock.REAL

    @property
    def network(self) -> VirtualNetwork | None:
        """The virtual network serving AF_INET/AF_INET6 in this preset (None: the
        kernel's, or a driver without one)."""
        return getattr(self.drivers.get(socket.AF_INET), "network", None)

    def __enter__(self: _Use) -> _Use:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    def restore(self) -> None:
        with _lock:
            self._clock.restore()
            network = self.network
            if network is not None and network.clock is not _clock.REAL:
                network.scheduler.close()
            for family, (driver, source) in self._saved.items():
                if driver is None:
                    _drivers.pop(family, None)
                    _sources.pop(family, None)
                else:
                    _drivers[family] = driver
                    _sources[family] = source or "register_family"

    def __repr__(self) -> str:
        return f"use({self.name!r})"


def network() -> VirtualNetwork:
    """The virtual network serving AF_INET now: how a program (also one under
    ``posix-socket run``) reaches the network it runs on.  LookupError when the
    kernel, or a driver without a network, serves AF_INET."""
    driver = _drivers.get(socket.AF_INET)
    found = getattr(driver, "network", None)
    if found is None:
        raise LookupError(f"AF_INET is served by {driver!r}, not by a virtual network")
    return found


# -- stacked drivers ---------------------------------------------------------------------

_stacks: list[stack] = []


class stack:
    """Put a layer over every registered driver, and over the open sockets' drivers.

    ``make_layer(inner)`` returns a ``StackedDriver`` over ``inner``; one layer is made
    per distinct driver (AF_INET and AF_INET6 share the virtual network's driver, so
    they share its layer).  Sockets already open are served by the layer from now on
    too, so an observer sees them; ``close`` (or leaving the ``with`` block) puts back
    exactly the drivers that were registered, under every socket as well, sockets made
    meanwhile included.  A driver registered while the stack is active (a ``use()``
    inside a trace) gets its layer too.  Stacks nest; close them in reverse order.
    """

    def __init__(self, make_layer: MakeLayer) -> None:
        self._make_layer = make_layer
        self._layers: dict[int, StackedDriver] = {}  # id(inner) -> its layer
        from . import descriptors  # the table is on this floor too; no cycle at import
        with _lock:
            for family, driver in _drivers.items():
                _drivers[family] = self.layer_for(driver)
            _stacks.append(self)
            descriptors.restack(self._over)
        self.closed = False

    def layer_for(self, driver: SocketDriver) -> SocketDriver:
        """This stack's layer over ``driver`` (made on first use), for a driver asked
        for by name rather than through the registry (the drop-in's kernel pairs)."""
        with _lock:
            if any(layer is driver for layer in self._layers.values()):
                return driver  # already this stack's layer
            layer = self._layers.get(id(driver))
            if layer is None or layer.inner is not driver:
                layer = self._layers[id(driver)] = self._make_layer(driver)
            return layer

    def layers(self) -> list[StackedDriver]:
        with _lock:
            return list(self._layers.values())

    def _over(self, driver: SocketDriver) -> SocketDriver | None:
        # Every open socket gets a layer, also one whose driver no registration names
        # (the drop-in's kernel pairs, an unregistered family's sockets).
        return self.layer_for(driver)

    def _under(self, driver: SocketDriver) -> SocketDriver | None:
        layer = self._layers.get(id(getattr(driver, "inner", None)))
        return layer.inner if layer is not None and layer is driver else None

    def close(self) -> None:
        from . import descriptors
        with _lock:
            if self.closed:
                return
            self.closed = True
            # What it replaced, and what was registered over it meanwhile.
            ours = {id(layer): layer for layer in self._layers.values()}
            for family, driver in list(_drivers.items()):
                if ours.get(id(driver)) is driver:
                    _drivers[family] = driver.inner
            if self in _stacks:
                _stacks.remove(self)
            descriptors.restack(self._under)

    def __enter__(self) -> stack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def layered(driver: SocketDriver) -> SocketDriver:
    """``driver`` under the active stacks' layers: what a call that names its driver
    (rather than a family) must use so that the layers see it.  ``driver`` itself when
    no stack is active."""
    if not _stacks:
        return driver
    with _lock:
        for active in _stacks:
            driver = active.layer_for(driver)
    return driver


# -- entry points ------------------------------------------------------------------------

def _entry_points() -> Iterator[object]:
    from importlib import metadata
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return iter(eps.select(group=ENTRY_POINT_GROUP))
    return iter(eps.get(ENTRY_POINT_GROUP, ()))  # Python 3.10 without select on dicts


def _family_from_name(name: str) -> int:
    name = name.strip()
    if name.lstrip("-").isdigit():
        return int(name)
    value = getattr(socket, name, None)
    if not name.startswith("AF_") or not isinstance(value, int):
        raise ValueError(f"entry point name {name!r} is neither a number nor an AF_* name")
    return int(value)


def load_entry_points() -> list[tuple[str, str]]:
    """Register every driver advertised in the ``posix_socket.drivers`` group.

    A family already taken is left alone (explicit registrations and presets win).
    A broken entry point is reported with a warning and skipped.  Returns
    ``[(entry point, outcome)]`` for diagnostics.
    """
    outcomes = []
    for ep in _entry_points():
        label = f"{ep.name} = {ep.value}"
        try:
            family = _family_from_name(ep.name)
            if family in _drivers:  # checked first: a skipped driver is not even built
                outcomes.append((label, "skipped: family taken"))
                continue
            obj = ep.load()
            driver = obj() if isinstance(obj, type) else obj
            dist = getattr(getattr(ep, "dist", None), "name", None) or ep.value
            with _lock:
                if family in _drivers:
                    outcomes.append((label, "skipped: family taken"))
                    continue
                register_family(family, driver, source=f"entry point {dist}")
            outcomes.append((label, "registered"))
        except Exception as exc:
            warnings.warn(f"posix_socket: cannot load driver entry point {label}: {exc!r}",
                          RuntimeWarning, stacklevel=2)
            outcomes.append((label, f"failed: {exc!r}"))
    return outcomes
