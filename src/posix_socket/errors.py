"""Build the OSErrors the kernel would report, exactly as the stdlib raises them."""

from __future__ import annotations

import _locale
import errno
import os

__all__ = ["oserror", "DriverFailure"]

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
