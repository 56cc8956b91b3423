"""errors.oserror: the stdlib's OSErrors, with strerror's text for the current locale."""

from __future__ import annotations

import errno
import locale
import os

import pytest

from posix_socket import errors


@pytest.mark.parametrize("code", [errno.EAGAIN, errno.EINPROGRESS, errno.ECONNREFUSED,
                                  errno.EBADF, 99999])
def test_oserror_matches_the_stdlib(code):
    for _ in range(2):  # the first fills the cache, the second reads it
        exc = errors.oserror(code)
        assert type(exc) is type(OSError(code, os.strerror(code)))
        assert (exc.errno, exc.strerror) == (code, os.strerror(code))
    exc = errors.oserror(code, "name")
    assert (exc.errno, exc.strerror, exc.filename) == (code, os.strerror(code), "name")


def test_messages_follow_a_translating_locale(monkeypatch):
    """Under a locale that translates, the text is asked for each time (never taken
    from the C-locale cache)."""
    asked = []
    monkeypatch.setattr(errors, "_current_locale", lambda category: "de_DE.UTF-8")
    monkeypatch.setattr(errors.os, "strerror", lambda code: asked.append(code) or "übersetzt")
    assert errors.oserror(errno.EAGAIN).strerror == "übersetzt"
    assert errors.oserror(errno.EAGAIN).strerror == "übersetzt"
    assert asked == [errno.EAGAIN, errno.EAGAIN]
    assert locale.setlocale(locale.LC_MESSAGES)  # the real query is untouched
