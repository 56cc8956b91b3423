"""``patch()``: route the stdlib's socket module through the registry.

Replaces, in the stdlib ``socket`` module, the class and every function that makes or
names sockets with the drop-in's (``posix_socket.socket``).  Code that looks names
up at call time (``socket.socket(...)``, asyncio, socketserver, http.client) then
gets sockets of the registered drivers.  The drop-in's class subclasses the stdlib's,
so ``isinstance`` checks against a class captured before patching still hold.

Idempotent: a second ``patch()`` while one is active changes nothing, and only the
outermost restores.  Used as a context manager it restores exactly what it replaced.

Not yet routed (the rest of issue 5): ``select``/``selectors`` and asyncio's
event loop; the stdlib's own pollers still see virtual sockets through the kernel
mirror that ``fileno()`` arms.
"""

from __future__ import annotations

import socket as _stdlib
import threading

from . import socket as dropin

__all__ = ["patch", "SOCKET_NAMES"]

# The stdlib socket module's names the drop-in replaces.
SOCKET_NAMES = ("socket", "socketpair", "fromfd", "dup", "close",
                "send_fds", "recv_fds", "create_connection", "create_server",
                "has_dualstack_ipv6", "getaddrinfo", "getnameinfo", "gethostbyname",
                "gethostbyname_ex", "gethostbyaddr", "getfqdn", "gethostname")

_lock = threading.Lock()
_depth = 0
_saved: dict[str, object] = {}


class patch:
    """Patch the stdlib at the call; restore on ``restore()`` or leaving ``with``."""

    def __init__(self) -> None:
        global _depth
        with _lock:
            if _depth == 0:
                for name in SOCKET_NAMES:
                    if hasattr(_stdlib, name):
                        _saved[name] = getattr(_stdlib, name)
                        setattr(_stdlib, name, getattr(dropin, name))
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
                for name, value in _saved.items():
                    setattr(_stdlib, name, value)
                _saved.clear()
