import os

import pytest
from memory_driver import AF_MEMORY, MemoryDriver

import posix_socket as ps


@pytest.fixture
def memory():
    """A fresh in-memory driver registered for AF_MEMORY for one test."""
    driver = MemoryDriver(capacity=4096)
    ps.register_family(AF_MEMORY, driver, replace=True)
    yield driver
    ps.unregister_family(AF_MEMORY)


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}
