"""What an exception out of a blocked call shows: the program's frames, not the layer's.

With the stdlib, Ctrl-C in a blocking ``recv`` shows the program's frames and nothing
more: the call is C.  Through the layer the same call runs a dozen Python frames
(the drop-in method, ``posix``, the waiting) and waits inside the ``except
BlockingIOError`` that found the socket empty, so the KeyboardInterrupt would show
those frames and, chained to it, the BlockingIOError ("During handling of the above
exception ...") -- the layer's business, not the program's.

``unchain`` is applied where the layer waits (``readiness.wait``): whatever a signal
handler raises there loses the contexts the layer itself handled, whoever reports it.
``trimmed`` is applied by ``posix-socket run`` to the traceback of an uncaught
KeyboardInterrupt: each run of this package's frames is cut to its first, the method
the program called (a Python frame, so one is the least a traceback can show).
"""

from __future__ import annotations

import os
import types

__all__ = ["unchain", "trimmed", "is_ours"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def is_ours(frame: types.FrameType) -> bool:
    """Whether ``frame`` runs this package's code."""
    filename = frame.f_code.co_filename
    return filename.startswith(_PACKAGE) or (
        not os.path.isabs(filename) and os.path.abspath(filename).startswith(_PACKAGE))


def unchain(exc: BaseException) -> None:
    """Drop from ``exc``'s context the exceptions the layer raised and handled itself
    (a BlockingIOError it waits after); a context the program was handling stays."""
    context = exc.__context__
    while context is not None and _handled_by_us(context):
        context = context.__context__
    if context is not exc.__context__:
        exc.__context__ = context


def _handled_by_us(exc: BaseException) -> bool:
    # A caught exception's traceback starts at the frame that caught it.
    head = exc.__traceback__
    return head is not None and is_ours(head.tb_frame)


def trimmed(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` with each run of this package's frames cut to its first one; every
    other frame (the program's, the stdlib's, a signal handler's) is kept."""
    entries = []
    previous_ours = False
    while tb is not None:
        ours = is_ours(tb.tb_frame)
        if not (ours and previous_ours):
            entries.append(tb)
        previous_ours = ours
        tb = tb.tb_next
    result = None
    for entry in reversed(entries):
        result = types.TracebackType(result, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return result
