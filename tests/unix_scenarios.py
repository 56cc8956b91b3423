"""Oracle scenarios for AF_UNIX: names on disk, abstract names, credentials, datagram
back-pressure, seqpacket, descriptor passing.  Each runs on the kernel and through the
layer (see ``scenarios``), so they describe Linux, not the driver."""

from __future__ import annotations
