"""Leak checks shared by the tests: which descriptors and table entries are open."""

from __future__ import annotations

import gc
import os

import pytest
from conftest import open_fds as listed_fds

from posix_socket import descriptors


def open_fds() -> set[int]:
    """The process's open descriptors, without the one that listed them."""
    return {fd for fd in listed_fds() if is_open(fd)}


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def leftovers(fds: set[int], numbers: set[int]) -> tuple[set[int], set[int]]:
    """Descriptors and table entries that appeared since the snapshot.  The (slow)
    garbage collector runs only when there are some, in case a cycle holds them."""
    def new():
        return open_fds() - fds, set(descriptors.open_numbers()) - numbers
    found = new()
    if any(found):
        gc.collect()
        found = new()
    return found


def errno_of(call) -> int:
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno
