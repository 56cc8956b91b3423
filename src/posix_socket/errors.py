"""Build the OSErrors the kernel would report, exactly as the stdlib raises them."""

from __future__ import annotations

import errno
import os

__all__ = ["oserror", "DriverFailure"]


def oserror(code: int, filename: object = None) -> OSError:
    """An OSError for `code`; Python picks the subclass (BlockingIOError, ...) itself."""
    if filename is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), filename)


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
