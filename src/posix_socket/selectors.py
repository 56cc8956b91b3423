"""A drop-in for the stdlib ``selectors`` module over any mix of descriptors.

Each selector is the stdlib's own class, pointed at this package's ``select``
functions and objects, so the bookkeeping (keys, the mapping, event translation) is
exactly the stdlib's.  The one change: a drop-in socket (``posix_socket.socket``) is
registered under its number without ``fileno()``, so watching it in a selector does not
arm the kernel mirror that only the kernel's own pollers need.

As on Linux, there are SelectSelector, PollSelector and EpollSelector, and
DefaultSelector is EpollSelector.
"""

from __future__ import annotations

import selectors as _stdlib
from typing import Any

from . import select as _select
from . import socket as _dropin

__all__ = ["BaseSelector", "SelectorKey", "EVENT_READ", "EVENT_WRITE", "SelectSelector",
           "PollSelector", "EpollSelector", "DefaultSelector"]

# The same objects as the stdlib's: keys and events compare and isinstance-check alike.
BaseSelector = _stdlib.BaseSelector
SelectorKey = _stdlib.SelectorKey
EVENT_READ = _stdlib.EVENT_READ
EVENT_WRITE = _stdlib.EVENT_WRITE


class _LayerNumbers:
    """Finds a drop-in socket's number without arming its mirror; everything else
    (ints, other file objects, closed sockets) the stdlib's way."""

    def _fileobj_lookup(self, fileobj: Any) -> int:
        if (isinstance(fileobj, _dropin.socket)
                and type(fileobj).fileno is _select._DROPIN_FILENO):
            number = _select._C_FILENO(fileobj)
            if number >= 0:
                return number
        return super()._fileobj_lookup(fileobj)  # type: ignore[misc]


class SelectSelector(_LayerNumbers, _stdlib.SelectSelector):
    """The stdlib's SelectSelector over ``posix_socket.select.select``."""

    _select = staticmethod(_select.select)


class PollSelector(_LayerNumbers, _stdlib.PollSelector):
    """The stdlib's PollSelector over ``posix_socket.select.poll``."""

    _selector_cls = _select.poll


class EpollSelector(_LayerNumbers, _stdlib.EpollSelector):
    """The stdlib's EpollSelector over ``posix_socket.select.epoll``: a select over
    many idle virtual sockets costs what is ready."""

    _selector_cls = _select.epoll


DefaultSelector = EpollSelector
