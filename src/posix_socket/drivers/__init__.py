"""Drivers: the implementations behind families.  ``host`` is the kernel."""

from .host import HostDriver

__all__ = ["HostDriver"]
