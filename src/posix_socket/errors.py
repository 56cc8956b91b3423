"""Build the OSErrors the kernel would report, exactly as the stdlib raises them."""

from __future__ import annotations

import _locale
import errno
import os
import signal
import threading

__all__ = ["oserror", "DriverFailure", "raised_by_signal_handler"]

# os.strerror's text per errno, kept while LC_MESSAGES is a locale that does not
# translate (the C locale, which every program that never calls setlocale for
# LC_MESSAGES or LC_ALL runs in).  strerror(3) costs about as much as building the
# OSError, and a non-blocking program raises EAGAIN on most of its receives.  Under a
# translating locale the text depends on LC_MESSAGES and, for its encoding, LC_CTYPE:
# then it is asked for every time, as the stdlib does; the one locale query per error
# is what keeps a program's setlocale() effective at once.
_UNTRANSLATED = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8"})
_messages: dict[int, str] = {}
_current_locale = _locale.setlocale
_LC_MESSAGES = _locale.LC_MESSAGES


def _strerror(code: int) -> str:
    if _current_locale(_LC_MESSAGES) not in _UNTRANSLATED:
        return os.strerror(code)
    message = _messages.get(code)
    if message is None:
        message = os.strerror(code)
        if len(_messages) < 4096:  # errno values are few; odd codes cannot fill memory
            _messages[code] = message
    return message


def oserror(code: int, filename: object = None) -> OSError:
    """An OSError for `code`; Python picks the subclass (BlockingIOError, ...) itself."""
    if filename is None:
        return OSError(code, _strerror(code))
    return OSError(code, _strerror(code), filename)


class DriverFailure(OSError):
    """A driver raised something that is not an OSError (a bug in the driver).

    The call fails with EIO so callers that handle socket errors keep working, the
    descriptor table stays consistent, and the original exception is kept as
    ``__cause__`` so the bug is still visible.
    """

    def __init__(self, driver_name: str, op: str, exc: BaseException) -> None:
        super().__init__(errno.EIO, f"driver {driver_name!r} failed in {op}: {exc!r}")
        self.driver_name = driver_name
        self.op = op


def raised_by_signal_handler(exc: BaseException) -> bool:
    """Whether ``exc`` came from a program's Python signal handler that ran while a
    driver's code did (between two of its bytecodes), not from the driver itself.

    The stdlib passes such an exception through whatever call was under way (CPython's
    test_socket raises ZeroDivisionError from SIGALRM during sendto); it is the
    program's, not a driver bug.  Asked only on the failure path: it looks up the
    installed handlers and looks for one of their code objects in the traceback.
    """
    if threading.current_thread() is not threading.main_thread():
        return False  # Python runs signal handlers in the main thread only
    codes = set()
    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
        except (OSError, ValueError):
            continue
        handler = getattr(handler, "__func__", handler)  # a bound method's function
        code = getattr(handler, "__code__", None)
        if code is None:  # an object with a __call__ method
            method = vars(type(handler)).get("__call__")
            code = getattr(method, "__code__", None)
        if code is not None:
            codes.add(code)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False
