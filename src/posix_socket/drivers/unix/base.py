"""What every virtual AF_UNIX socket has: a name, a peer, a receive queue of messages,
options, and the accounting Linux's back-pressure is made of.

A message is one ``Message`` (Linux's skb): its bytes, the socket that sent it (its
address is read when the message is received, as Linux does), the descriptors it
carries (``InFlight`` references from the core) and its credentials.  While a message
waits unread its sender is charged its ``truesize`` (sk_wmem_alloc): a sender may queue
while that is below SO_SNDBUF, and polls writable while it is at most a quarter of it.

Every method runs under the driver's lock and appends the sockets whose readiness may
have changed to ``touched``; the driver notifies them once the lock is released.
Descriptors in flight that a method drops go to ``touched`` too: the driver closes
them after the lock, since closing the last reference to a socket of this driver
runs the driver's close.
"""

from __future__ import annotations

import collections
import errno
import os
import select
import socket
import struct
from collections.abc import Iterable
from typing import Any

from ...errors import oserror
from ...options import SO_BINDTODEVICE, device_answer, device_index
from .names import Namespace, to_stdlib

__all__ = ["UnixSocket", "Message", "truesize", "setting"]

CLOSE, LISTEN, ESTABLISHED = "CLOSE", "LISTEN", "ESTABLISHED"  # Linux's sk_state names
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
SHUTDOWN_MASK = RCV_SHUTDOWN | SEND_SHUTDOWN
SOCK_STREAM, SOCK_DGRAM = int(socket.SOCK_STREAM), int(socket.SOCK_DGRAM)
SOCK_SEQPACKET = int(socket.SOCK_SEQPACKET)
MSG_PEEK, MSG_DONTWAIT = int(socket.MSG_PEEK), int(socket.MSG_DONTWAIT)
MSG_TRUNC, MSG_CTRUNC = int(socket.MSG_TRUNC), int(socket.MSG_CTRUNC)
MSG_OOB = int(socket.MSG_OOB)
SOL_SOCKET = socket.SOL_SOCKET
SCM_RIGHTS = socket.SCM_RIGHTS
SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)
SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
SO_PEERCRED = getattr(socket, "SO_PEERCRED", 17)
DEVICES = {b"lo": 1}  # the virtual world's one network device, for SO_BINDTODEVICE
POLLIN_SET = select.POLLIN | select.POLLRDNORM
POLLOUT_SET = select.POLLOUT | select.POLLWRNORM | select.POLLWRBAND
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
POLLHUP, POLLERR, POLLPRI = select.POLLHUP, select.POLLERR, select.POLLPRI
UCRED = struct.Struct("@iII")  # struct ucred: pid, uid, gid
INT = struct.Struct("@i")
LINGER = struct.Struct("@ii")
CMSG_HEADER = socket.CMSG_LEN(0)


def setting(path: str, default: int) -> int:
    """A sysctl of the running kernel, or Linux's default where it cannot be read."""
    try:
        with open(f"/proc/sys/{path}") as file:
            return int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


WMEM_DEFAULT = setting("net/core/wmem_default", 212992)
RMEM_DEFAULT = setting("net/core/rmem_default", 212992)
WMEM_MAX = setting("net/core/wmem_max", 212992)
RMEM_MAX = setting("net/core/rmem_max", 212992)
SOCK_MIN_SNDBUF, SOCK_MIN_RCVBUF = 4608, 2304
SOMAXCONN = setting("net/core/somaxconn", 4096)
MAX_DGRAM_QLEN = setting("net/unix/max_dgram_qlen", 10)
OVERFLOW_UID = setting("kernel/overflowuid", 65534)
OVERFLOW_GID = setting("kernel/overflowgid", 65534)
# Credentials a message carries when nobody asked for them as it was sent.
NO_CREDENTIALS = (0, OVERFLOW_UID, OVERFLOW_GID)
UNCONNECTED_PEERCRED = UCRED.pack(0, 0xFFFFFFFF, 0xFFFFFFFF)


def own_credentials() -> tuple[int, int, int]:
    return os.getpid(), os.geteuid(), os.getegid()


# -- skb sizes -------------------------------------------------------------------------

SKB_OVERHEAD = 256  # the sk_buff itself, as truesize counts it (x86-64)
SHARED_INFO = 320  # skb_shared_info after the data, cache-line aligned
PAGE = 4096
SKB_MAX_HEAD = PAGE - SHARED_INFO  # linear data that fits one page with its shared info
SKB_MAX_ALLOC = 4 * PAGE - SHARED_INFO  # an order-2 allocation
STREAM_FRAGS = 32768  # UNIX_SKB_FRAGS_SZ: page fragments per stream skb


def _slab(head: int) -> int:
    """kmalloc's size for a linear buffer of ``head`` bytes plus the shared info."""
    need = ((head + 63) & ~63) + SHARED_INFO
    return max(512, 1 << (need - 1).bit_length())


def _page_align(size: int) -> int:
    return (size + PAGE - 1) & ~(PAGE - 1)


def truesize(length: int, stream: bool) -> int:
    """skb->truesize of a message of ``length`` bytes, as Linux 6.x on x86-64 charges
    it (measured with SIOCOUTQ): a kmalloc'ed head and, for big messages, pages."""
    if stream:
        paged = min(length, _page_align(max(0, length - SKB_MAX_HEAD)))
    elif length > SKB_MAX_ALLOC:
        paged = _page_align(length - SKB_MAX_ALLOC)
    else:
        paged = 0
    return _slab(length - paged) + SKB_OVERHEAD + _page_align(paged)


def stream_chunk(length: int, sndbuf: int) -> int:
    """How much of a stream send goes into one skb (unix_stream_sendmsg)."""
    return max(1, min(length, (sndbuf >> 1) - 64, SKB_MAX_HEAD + STREAM_FRAGS))


class Message:
    """One queued message (Linux's skb on a receive queue)."""

    __slots__ = ("data", "offset", "sender", "rights", "creds", "truesize")

    def __init__(self, data: bytes, sender: UnixSocket, rights: list | None,
                 creds: tuple[int, int, int] | None, size: int) -> None:
        self.data = data
        self.offset = 0  # bytes of a stream message already read
        self.sender = sender
        self.rights = rights or None
        self.creds = creds
        self.truesize = size

    def remaining(self) -> int:
        return len(self.data) - self.offset

    def drop_rights(self, touched: list) -> None:
        """The message goes unread: its descriptors are closed once the driver's lock
        is released (closing the last reference to one of our sockets closes it)."""
        rights, self.rights = self.rights, None
        touched.extend(rights or ())


class UnixSocket:
    """State every AF_UNIX socket has; stream.py and dgram.py add the protocols."""

    __slots__ = ("space", "budget", "type", "proto", "name", "inode", "inode_fd", "peer",
                 "state", "shutdown", "error", "rx", "rx_bytes", "wmem", "sndbuf",
                 "rcvbuf", "passcred", "peercred", "options", "linger", "dead",
                 "kernel", "__weakref__")

    def __init__(self, space: Namespace, budget: Any, type: int, proto: int) -> None:
        self.space = space
        self.budget = budget
        self.type = type
        self.proto = proto
        self.name: bytes | None = None
        self.inode: tuple[int, int] | None = None
        self.inode_fd = -1
        self.peer: UnixSocket | None = None
        self.state = CLOSE
        self.shutdown = 0
        self.error = 0
        self.rx: collections.deque[Message] = collections.deque()
        self.rx_bytes = 0
        self.wmem = 0  # truesize of this socket's messages still unread (sk_wmem_alloc)
        self.sndbuf = WMEM_DEFAULT
        self.rcvbuf = RMEM_DEFAULT
        self.passcred = False
        self.peercred: tuple[int, int, int] | None = None
        self.options: dict[int, int] | None = None  # plain SOL_SOCKET options changed
        self.linger = (0, 0)
        self.dead = False  # closed (SOCK_DEAD)
        self.kernel: Any = None  # the kernel socket it delegates to (kernel.py), if any

    # -- names -----------------------------------------------------------------------

    def bind(self, raw: bytes) -> None:
        self.space.bind(self, raw)

    def getsockname(self) -> str | bytes:
        return to_stdlib(self.name)

    def getpeername(self) -> str | bytes:
        if self.peer is None:
            raise oserror(errno.ENOTCONN)
        return to_stdlib(self.peer.name)

    def sender_address(self, sender: UnixSocket) -> str | bytes | None:
        """The address recvfrom reports: None for an unnamed sender, as the kernel
        reports no address at all then."""
        return to_stdlib(sender.name) if sender.name else None

    # -- the receive queue -------------------------------------------------------------

    def enqueue(self, message: Message, touched: list) -> None:
        self.budget.charge(len(message.data))
        message.sender.wmem += message.truesize
        self.rx.append(message)
        self.rx_bytes += len(message.data)
        touched.append(self)
        if message.sender is not self:
            touched.append(message.sender)

    def consume(self, message: Message, touched: list) -> None:
        """The head message is read up (or dropped): its sender gets its room back."""
        self.rx.popleft()
        self.rx_bytes -= message.remaining()
        self.forget(message, touched)

    def forget(self, message: Message, touched: list) -> None:
        self.budget.release(len(message.data))
        message.sender.wmem -= message.truesize
        message.drop_rights(touched)
        touched.append(self)
        touched.append(message.sender)

    def purge(self, touched: list) -> None:
        """Drop everything queued: descriptors in flight are closed, senders freed."""
        while self.rx:
            self.consume(self.rx[0], touched)

    # -- ancillary data ------------------------------------------------------------------

    def control(self, message: Message, rights: list | None, ancbufsize: int,
                msg_flags: int, touched: list) -> tuple[list, int]:
        """Linux's scm_recv: SCM_CREDENTIALS (when SO_PASSCRED is on), then
        SCM_RIGHTS, as far as ``ancbufsize`` holds them; descriptors that do not fit
        are closed and MSG_CTRUNC says so."""
        items: list = []
        if not self.passcred and not rights:
            return items, msg_flags
        if not ancbufsize:  # no control buffer at all
            touched.extend(rights or ())
            return items, msg_flags | MSG_CTRUNC
        room = ancbufsize
        if self.passcred:
            creds = UCRED.pack(*(message.creds or NO_CREDENTIALS))
            if room < CMSG_HEADER:
                msg_flags |= MSG_CTRUNC
            else:
                if room < socket.CMSG_LEN(UCRED.size):
                    msg_flags |= MSG_CTRUNC
                items.append((SOL_SOCKET, SCM_CREDENTIALS, creds[:room - CMSG_HEADER]))
                room -= min(socket.CMSG_SPACE(UCRED.size), room)
        if rights:
            fit = (room - CMSG_HEADER) // INT.size if room > CMSG_HEADER else 0
            if fit < len(rights):
                msg_flags |= MSG_CTRUNC
                touched.extend(rights[fit:])
                rights = rights[:fit]
            if rights:
                items.append((SOL_SOCKET, SCM_RIGHTS, rights))
        return items, msg_flags

    def credentials_for(self, receiver: UnixSocket, given: tuple | None) -> tuple | None:
        """What a message carries (maybe_add_creds): explicit SCM_CREDENTIALS, else the
        sender's own when either end has SO_PASSCRED, else nothing."""
        if given is not None:
            return given
        if self.passcred or receiver.passcred:
            return own_credentials()
        return None

    # -- options ---------------------------------------------------------------------

    def getsockopt(self, optname: int, buflen: int) -> int | bytes:
        if optname == socket.SO_ERROR:
            value = self.take_error()
        elif optname == socket.SO_ACCEPTCONN:
            value = int(self.state == LISTEN)
        elif optname == SO_PASSCRED:
            value = int(self.passcred)
        elif optname == SO_PEERCRED:
            raw = UCRED.pack(*self.peercred) if self.peercred else UNCONNECTED_PEERCRED
            return raw[:buflen] if buflen else INT.unpack(raw[:INT.size])[0]
        elif optname == socket.SO_SNDBUF:
            value = self.sndbuf
        elif optname == socket.SO_RCVBUF:
            value = self.rcvbuf
        elif optname == socket.SO_LINGER:
            raw = LINGER.pack(*self.linger)
            return raw[:buflen] if buflen else INT.unpack(raw[:INT.size])[0]
        elif optname == SO_BINDTODEVICE:
            return device_answer((self.options or {}).get(optname, 0), DEVICES, buflen)
        elif optname == socket.SO_PROTOCOL:
            value = self.proto
        elif optname in PLAIN_OPTIONS:
            value = (self.options or {}).get(optname, PLAIN_OPTIONS[optname][1])
        else:
            raise oserror(errno.ENOPROTOOPT)
        return INT.pack(value)[:buflen] if buflen else value

    def setsockopt(self, optname: int, value: int | bytes, touched: list) -> None:
        if optname == SO_BINDTODEVICE:  # accepted as Linux does; it changes nothing here
            if self.options is None:
                self.options = {}
            self.options[optname] = device_index(value, DEVICES)
            return
        if optname == socket.SO_LINGER:
            if isinstance(value, int) or len(value) < LINGER.size:
                raise oserror(errno.EINVAL)
            onoff, seconds = LINGER.unpack(value[:LINGER.size])
            # l_onoff 0 clears the flag only: the time stays (sk_lingertime)
            self.linger = (1, seconds) if onoff else (0, self.linger[1])
            return
        if optname not in SETTABLE:
            raise oserror(errno.ENOPROTOOPT)
        number = int_value(value)
        if optname == socket.SO_REUSEPORT and number:
            raise oserror(errno.EOPNOTSUPP)  # sk_setsockopt: only inet sockets reuse ports
        if optname == SO_PASSCRED:
            self.passcred = bool(number)
        elif optname == socket.SO_SNDBUF:
            self.sndbuf = max(min(number, WMEM_MAX) * 2, SOCK_MIN_SNDBUF)
            touched.append(self)
        elif optname == socket.SO_RCVBUF:
            self.rcvbuf = max(min(number, RMEM_MAX) * 2, SOCK_MIN_RCVBUF)
        else:
            kind = PLAIN_OPTIONS[optname][0]
            if self.options is None:
                self.options = {}
            self.options[optname] = (1 if number else 0) if kind == "bool" else number

    def take_error(self) -> int:
        code, self.error = self.error, 0
        return code

    def raise_error(self) -> None:
        raise oserror(self.take_error())

    # -- ioctl -------------------------------------------------------------------------

    def inq(self) -> int:
        if self.state == LISTEN:
            raise oserror(errno.EINVAL)
        return self.rx_bytes

    def outq(self) -> int:
        return self.wmem

    # -- readiness ---------------------------------------------------------------------

    def writable(self) -> bool:
        """unix_writable: not a listener, and at most a quarter of SO_SNDBUF in use."""
        return self.state != LISTEN and self.wmem << 2 <= self.sndbuf

    def can_queue(self) -> bool:
        """sock_alloc_send_pskb's test: another message may be charged."""
        return self.wmem < self.sndbuf


# Plain SOL_SOCKET options every socket stores: name -> (kind, default).
PLAIN_OPTIONS = {
    socket.SO_REUSEADDR: ("bool", 0),
    socket.SO_KEEPALIVE: ("bool", 0),
    socket.SO_BROADCAST: ("bool", 0),
    socket.SO_OOBINLINE: ("bool", 0),
    socket.SO_DONTROUTE: ("bool", 0),
    socket.SO_DEBUG: ("bool", 0),
    socket.SO_REUSEPORT: ("bool", 0),  # reads 0; only 0 can be set (EOPNOTSUPP)
    socket.SO_PRIORITY: ("int", 0),
    socket.SO_RCVLOWAT: ("int", 1),
    socket.SO_SNDLOWAT: ("int", 1),
}
SETTABLE = (set(PLAIN_OPTIONS) - {socket.SO_SNDLOWAT}) | {
    SO_PASSCRED, socket.SO_SNDBUF, socket.SO_RCVBUF}


def int_value(value: int | bytes) -> int:
    if isinstance(value, int):
        return value
    if len(value) < INT.size:
        raise oserror(errno.EINVAL)
    return INT.unpack(value[:INT.size])[0]


def joined(buffers: Iterable[Any]) -> bytes:
    parts = list(buffers)
    if len(parts) == 1 and type(parts[0]) is bytes:
        return parts[0]
    return b"".join(bytes(memoryview(part)) for part in parts)
