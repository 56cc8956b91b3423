"""``patch()``: route the stdlib's socket, select and selectors (and the os and fcntl
calls programs make on a socket's number) through the registry.

Replaces, in the stdlib modules, the names that make, name or wait on sockets with the
drop-ins' (``posix_socket.socket``, ``.select``, ``.selectors``):

* ``socket``: the class and every function that makes or names sockets.  The drop-in's
  class subclasses the stdlib's, so ``isinstance`` checks against a class captured
  before patching still hold.
* ``select``: ``select``, ``poll`` and ``epoll``.
* ``selectors``: the selector classes and ``DefaultSelector``.  asyncio's selector
  event loop looks ``selectors.DefaultSelector`` up when a loop is made, so new loops
  wait on virtual sockets through the layer's interest lists.
* ``os`` (read, write, close, sendfile) and ``fcntl`` (fcntl, ioctl): on a virtual
  socket's number they go to ``posix`` (see ``fd_calls``), because programs do I/O and
  read flags on ``fileno()`` directly (multiprocessing.connection, asyncio's sendfile).
* ``ssl``: ``SSLContext.wrap_socket`` wraps a virtual socket with ``tls.SSLSocket``
  (OpenSSL cannot do I/O on its number), anything else with the stdlib's own.
* the stdlib modules that choose a selector class at their import, if imported
  already: ``socketserver._ServerSelector``, ``subprocess._PopenSelector``,
  ``multiprocessing.connection._WaitSelector``.  Imported while patched, they pick the
  drop-in's selector themselves, and keep it after ``restore()`` (the drop-in's
  selectors serve kernel descriptors too).

``kernel_pollers`` says whether numbers handed out by ``fileno()`` are still shown to
the kernel's own pollers (a kernel mirror per socket, a system call per readiness
change, which asyncio and socketserver then pay for every event):

* ``True`` (the default): always, so anything at all may still poll them;
* ``None``: only if something captured before patching may hand them to the kernel's
  pollers (the stdlib's select, poll or epoll, its selector classes or their objects,
  found in module globals, module classes' attributes, running functions' locals and
  live selector objects; closures and C code are not looked into);
* ``False``: never.

Not shown, a number names a placeholder in the kernel: the patched ``os`` and ``fcntl``
calls still reach the socket, but C code doing I/O or polling on the number does not,
which is why it is not the default (``posix-socket run`` patches with ``None`` before
the program's first line, when nothing can have been captured yet).  ``restore()``
shows what was handed out meanwhile.

Code that looks names up at call time (``socket.socket(...)``, asyncio, socketserver,
http.client) then gets sockets of the registered drivers and waits through the layer.
References captured before patching keep working: while there are any, the stdlib's
own select, poll, epoll and selectors see a virtual socket's readiness through the
kernel mirror that ``fileno()`` arms.

Idempotent: a second ``patch()`` while one is active changes nothing, and only the
outermost restores.  Used as a context manager it restores exactly what it replaced.
"""

from __future__ import annotations

import fcntl as _fcntl_module
import gc
import os as _os_module
import select as _select_module
import selectors as _selectors_module
import socket as _socket_module
import sys
import threading
from types import ModuleType

from . import clock as _clock
from . import descriptors, fd_calls, tls, virtual_time
from . import select as dropin_select
from . import selectors as dropin_selectors
from . import socket as dropin

__all__ = ["patch", "SOCKET_NAMES", "SELECT_NAMES", "SELECTORS_NAMES", "CHOSEN_SELECTORS"]

# The stdlib modules' names the drop-ins replace.
SOCKET_NAMES = ("socket", "socketpair", "fromfd", "dup", "close",
                "send_fds", "recv_fds", "create_connection", "create_server",
                "has_dualstack_ipv6", "getaddrinfo", "getnameinfo", "gethostbyname",
                "gethostbyname_ex", "gethostbyaddr", "getfqdn", "gethostname",
                "if_nameindex", "if_nametoindex", "if_indextoname")
SELECT_NAMES = ("select", "poll", "epoll")
SELECTORS_NAMES = ("SelectSelector", "PollSelector", "EpollSelector", "DefaultSelector")

# Stdlib modules' selector classes chosen at their import, and the drop-in's
# counterparts of what they choose.
CHOSEN_SELECTORS = (("socketserver", "_ServerSelector"), ("subprocess", "_PopenSelector"),
                    ("multiprocessing.connection", "_WaitSelector"))
_COUNTERPARTS = {
    _selectors_module.PollSelector: dropin_selectors.PollSelector,
    _selectors_module.SelectSelector: dropin_selectors.SelectSelector,
    _selectors_module.EpollSelector: dropin_selectors.EpollSelector,
}
# What a kernel poller captured before patching looks like.
_KERNEL_POLLERS = (_select_module.select, _select_module.poll, _select_module.epoll)
_KERNEL_POLL_OBJECTS = (_select_module.epoll, type(_select_module.poll()))
_STDLIB_SELECTORS = tuple(value for value in vars(_selectors_module).values()
                          if isinstance(value, type)
                          and issubclass(value, _selectors_module.BaseSelector)
                          and value is not _selectors_module.BaseSelector)
_DROPIN_SELECTORS = (dropin_selectors.SelectSelector, dropin_selectors.PollSelector,
                     dropin_selectors.EpollSelector)

_lock = threading.Lock()
_depth = 0
_saved: list[tuple[ModuleType, str, object]] = []
_hidden = False  # whether the active patch told the layer no kernel poller is left


def _replacements() -> list[tuple[ModuleType, str, object]]:
    found = [(module, name, getattr(source, name))
             for module, source, names in ((_socket_module, dropin, SOCKET_NAMES),
                                           (_select_module, dropin_select, SELECT_NAMES),
                                           (_selectors_module, dropin_selectors,
                                            SELECTORS_NAMES),
                                           (_os_module, fd_calls, fd_calls.OS_NAMES),
                                           (_fcntl_module, fd_calls, fd_calls.FCNTL_NAMES))
             for name in names if hasattr(module, name)]
    found += tls.replacements()
    if _clock.current is not _clock.REAL:  # the network in use runs on virtual time
        found += virtual_time.replacements()
    for module_name, name in CHOSEN_SELECTORS:
        module = sys.modules.get(module_name)
        chosen = getattr(module, name, None)
        if module is not None and chosen in _COUNTERPARTS:
            found.append((module, name, _COUNTERPARTS[chosen]))
    return found


def _kernel_pollers_remain() -> bool:
    """Whether something captured before patching may still hand layer numbers to the
    kernel's pollers: the stdlib's select/poll/epoll, one of its selector classes (or a
    class derived from one), or an object made by them, held in a module global, a class
    attribute of a module's class, or a local of a running function; or an object of
    the stdlib's selector classes anywhere.  Not looked for: closures and default
    arguments.  The stdlib's select and selectors modules and this package do not count.
    """
    for name, module in list(sys.modules.items()):
        if name in ("select", "selectors") or name.split(".")[0] == __package__:
            continue
        for value in list(getattr(module, "__dict__", {}).values()):
            if _is_kernel_poller(value):
                return True
            if isinstance(value, type) and any(
                    _is_kernel_poller(attribute) for attribute in list(vars(value).values())):
                return True
    for frame in sys._current_frames().values():
        while frame is not None:
            if (str(frame.f_globals.get("__name__")).split(".")[0] != __package__
                    and any(_is_kernel_poller(value) for value in frame.f_locals.values())):
                return True
            frame = frame.f_back
    stdlib = frozenset(_STDLIB_SELECTORS)  # type() only: ABC isinstance checks are slow
    return any(type(obj) in stdlib for obj in gc.get_objects())


def _is_kernel_poller(value: object) -> bool:
    if any(value is poller for poller in _KERNEL_POLLERS):
        return True
    if isinstance(value, _KERNEL_POLL_OBJECTS):
        return True
    try:
        return (isinstance(value, type) and issubclass(value, _STDLIB_SELECTORS)
                and not issubclass(value, _DROPIN_SELECTORS))
    except TypeError:  # 3.10: a generic alias (list[int]) passes isinstance(_, type)
        return False


class patch:
    """Patch the stdlib at the call; restore on ``restore()`` or leaving ``with``.
    ``kernel_pollers``: see the module docstring (an inner patch() changes nothing)."""

    def __init__(self, *, kernel_pollers: bool | None = True) -> None:
        global _depth, _hidden
        with _lock:
            if _depth == 0:
                for module, name, value in _replacements():
                    _saved.append((module, name, getattr(module, name)))
                    setattr(module, name, value)
                if kernel_pollers is None:
                    kernel_pollers = _kernel_pollers_remain()
                _hidden = not kernel_pollers
                if _hidden:
                    descriptors.outside_pollers(False)
            _depth += 1
        self._active = True

    def __enter__(self) -> patch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    def restore(self) -> None:
        global _depth
        with _lock:
            if not self._active:
                return
            self._active = False
            _depth -= 1
            if _depth == 0:
                for module, name, value in reversed(_saved):
                    setattr(module, name, value)
                _saved.clear()
                if _hidden:
                    descriptors.outside_pollers(True)  # the stdlib's pollers are back
