"""Descriptors kept out of the way of the process's lowest-free-number allocation.

Some descriptors the layer holds stand for things Linux keeps without a number: a file
in flight in an SCM_RIGHTS message, the inode a path-bound virtual AF_UNIX socket pins.
Were they kept at low numbers, the program's next ``socket()`` or ``open()`` would get a
different number than on Linux.  They are therefore duplicated (close-on-exec) into the
top quarter of the process's descriptor limit (at most from 49152 up); only a program
that already uses that many descriptors can tell.  When that range is full the lowest
free number is used instead.
"""

from __future__ import annotations

import fcntl
import os
import resource

__all__ = ["park", "parked_copy"]

_CEILING = 1 << 16


def _floor() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 0 or soft > _CEILING:  # RLIM_INFINITY or a generous limit
        soft = _CEILING
    return soft * 3 // 4


def park(fd: int) -> int:
    """Move ``fd`` to a close-on-exec number in the parking range; ``fd`` is closed."""
    parked = parked_copy(fd)
    os.close(fd)
    return parked


def parked_copy(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` in the parking range; ``fd`` stays open."""
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _floor())
    except OSError:  # the range is full (EMFILE) or beyond the limit (EINVAL)
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)
