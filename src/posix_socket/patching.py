"""``patch()``: route the stdlib's socket, select and selectors modules through the registry.

Replaces, in the stdlib modules, the names that make, name or wait on sockets with the
drop-ins' (``posix_socket.socket``, ``.select``, ``.selectors``):

* ``socket``: the class and every function that makes or names sockets.  The drop-in's
  class subclasses the stdlib's, so ``isinstance`` checks against a class captured
  before patching still hold.
* ``select``: ``select``, ``poll`` and ``epoll``.
* ``selectors``: the selector classes and ``DefaultSelector``.  asyncio's selector
  event loop looks ``selectors.DefaultSelector`` up when a loop is made, so new loops
  wait on virtual sockets through the layer's interest lists.
* ``socketserver``, if imported already: its ``_ServerSelector``, chosen at its import.
  Imported while patched, it picks the drop-in's selector itself, and keeps it after
  ``restore()`` (the drop-in's selectors serve kernel descriptors too).

Code that looks names up at call time (``socket.socket(...)``, asyncio, socketserver,
http.client) then gets sockets of the registered drivers and waits through the layer.
References captured before patching keep working: the stdlib's own select, poll,
epoll and selectors see a virtual socket's readiness through the kernel mirror that
``fileno()`` arms.

Idempotent: a second ``patch()`` while one is active changes nothing, and only the
outermost restores.  Used as a context manager it restores exactly what it replaced.
"""

from __future__ import annotations

import select as _select_module
import selectors as _selectors_module
import socket as _socket_module
import sys
import threading
from types import ModuleType

from . import select as dropin_select
from . import selectors as dropin_selectors
from . import socket as dropin

__all__ = ["patch", "SOCKET_NAMES", "SELECT_NAMES", "SELECTORS_NAMES"]

# The stdlib modules' names the drop-ins replace.
SOCKET_NAMES = ("socket", "socketpair", "fromfd", "dup", "close",
                "send_fds", "recv_fds", "create_connection", "create_server",
                "has_dualstack_ipv6", "getaddrinfo", "getnameinfo", "gethostbyname",
                "gethostbyname_ex", "gethostbyaddr", "getfqdn", "gethostname")
SELECT_NAMES = ("select", "poll", "epoll")
SELECTORS_NAMES = ("SelectSelector", "PollSelector", "EpollSelector", "DefaultSelector")

# socketserver's choice at import (the stdlib's class) -> the drop-in's counterpart.
_SERVER_SELECTORS = {
    _selectors_module.PollSelector: dropin_selectors.PollSelector,
    _selectors_module.SelectSelector: dropin_selectors.SelectSelector,
}

_lock = threading.Lock()
_depth = 0
_saved: list[tuple[ModuleType, str, object]] = []


def _replacements() -> list[tuple[ModuleType, str, object]]:
    found = [(module, name, getattr(source, name))
             for module, source, names in ((_socket_module, dropin, SOCKET_NAMES),
                                           (_select_module, dropin_select, SELECT_NAMES),
                                           (_selectors_module, dropin_selectors,
                                            SELECTORS_NAMES))
             for name in names if hasattr(module, name)]
    server = sys.modules.get("socketserver")
    chosen = getattr(server, "_ServerSelector", None)
    if server is not None and chosen in _SERVER_SELECTORS:
        found.append((server, "_ServerSelector", _SERVER_SELECTORS[chosen]))
    return found


class patch:
    """Patch the stdlib at the call; restore on ``restore()`` or leaving ``with``."""

    def __init__(self) -> None:
        global _depth
        with _lock:
            if _depth == 0:
                for module, name, value in _replacements():
                    _saved.append((module, name, getattr(module, name)))
                    setattr(module, name, value)
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
