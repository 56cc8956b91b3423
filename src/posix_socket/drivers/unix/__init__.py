"""The virtual AF_UNIX family: stream, datagram and seqpacket sockets in Python."""

from .driver import UnixDriver

__all__ = ["UnixDriver"]
