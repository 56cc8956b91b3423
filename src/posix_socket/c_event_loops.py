"""C event loops under ``posix-socket run``: refused at import, with the reason.

uvloop (libuv) and gevent (libev/libuv) do their sockets' I/O and their polling in C,
on the descriptor numbers.  A virtual socket's number carries no data, so such a loop
waits forever (or fails somewhere unrelated); under ``--net host`` their loops hang
as well, beside the layer's own.  So while ``run`` runs a program, importing them
fails at once, naming the limit, before anything of theirs runs.

The failure is an ImportError (``ModuleNotFoundError``, which ``except ImportError``
catches too): many programs treat a missing uvloop as "use asyncio's own loop" --
``try: import uvloop`` / ``except ImportError`` -- and so keep working on the virtual
network; one that needs the loop stops at its import with the message below.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["REFUSED", "Refuser", "install", "uninstall"]

# Top-level packages whose event loop does the I/O in C, and what that loop is.
REFUSED = {
    "uvloop": "uvloop's event loop (libuv)",
    "gevent": "gevent's event loop (libev/libuv)",
}


def message(name: str) -> str:
    top = name.partition(".")[0]
    return (f"{name} is not available under posix-socket run: {REFUSED[top]} does its "
            f"sockets' I/O in C on the descriptor numbers, past the layer (its network, its "
            f"trace and its capture never see it: a known limit). Use asyncio's own event loop "
            f"(or threads) instead.")


class Refuser:
    """A meta path finder that refuses the packages in ``REFUSED``."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(message(fullname), name=fullname)
        return None

    def invalidate_caches(self) -> None:
        pass


_REFUSER = Refuser()


def install() -> None:
    """Refuse the C event loops from now on (first on ``sys.meta_path``).

    Already imported (by a ``sitecustomize``, say), they stay: nothing of the program
    has run yet, and taking modules away from under code that holds them breaks it.
    """
    if _REFUSER not in sys.meta_path:
        sys.meta_path.insert(0, _REFUSER)


def uninstall() -> None:
    while _REFUSER in sys.meta_path:
        sys.meta_path.remove(_REFUSER)
