"""SOCK_DGRAM: whole messages between named or connected sockets (unix_dgram_*).

Back-pressure is Linux's: a sender may have SO_SNDBUF worth of messages unread, and a
receiver that is not connected back to the sender takes at most max_dgram_qlen + 1
messages (10 + 1 by default) before senders get EAGAIN or wait; a connected sender
blocked that way polls not writable.  A sendto that must wait for a full receiver
it is not connected to marks itself ``blocked_on`` it, so that its wait ends when the
receiver drains (Linux sleeps on the receiver's peer_wait); a non-blocking sender does
not know it is non-blocking here, so it too polls not writable until that receiver
drains, where Linux reports it writable.

The record functions here serve SOCK_SEQPACKET too, which is a connection carrying
datagrams (unix_seqpacket_sendmsg/recvmsg call the datagram ones).
"""

from __future__ import annotations

import errno

from ...errors import oserror
from .base import (
    CLOSE,
    ESTABLISHED,
    MAX_DGRAM_QLEN,
    MSG_DONTWAIT,
    MSG_OOB,
    MSG_PEEK,
    MSG_TRUNC,
    POLLERR,
    POLLHUP,
    POLLIN_SET,
    POLLOUT_SET,
    POLLRDHUP,
    RCV_SHUTDOWN,
    SEND_SHUTDOWN,
    SHUTDOWN_MASK,
    SOCK_SEQPACKET,
    Message,
    UnixSocket,
    truesize,
)
from .names import kernel_name

__all__ = ["DgramSocket", "send_record", "receive_record", "record_poll"]


def recvq_full(sock: UnixSocket) -> bool:
    return len(sock.rx) > MAX_DGRAM_QLEN


def send_record(sock: UnixSocket, other: UnixSocket | None, name: bytes | None,
                data: bytes, flags: int, rights: list | None, creds: tuple | None,
                touched: list) -> int:
    """unix_dgram_sendmsg from the size check on; ``other`` is the connected peer,
    or None to look ``name`` up."""
    if len(data) > sock.sndbuf - 32:
        raise oserror(errno.EMSGSIZE)
    if sock.error:
        sock.raise_error()
    if sock.shutdown & SEND_SHUTDOWN:
        raise oserror(errno.EPIPE)
    if not sock.can_queue():
        raise oserror(errno.EAGAIN)
    if other is None:
        other = sock.space.find(name, sock.type)
    if other.peer is not None and other.peer is not sock:
        raise oserror(errno.EPERM)  # it hears only the socket it is connected to
    if other.dead:
        if sock.type == SOCK_SEQPACKET:
            raise oserror(errno.EPIPE)
        if sock.peer is other:  # the peer closed: disconnected, once refused
            disconnect(sock, touched)
            raise oserror(errno.ECONNREFUSED)
        raise oserror(errno.ECONNRESET)
    if other.shutdown & RCV_SHUTDOWN:
        raise oserror(errno.EPIPE)
    if other is not sock and other.peer is not sock and recvq_full(other):
        if not flags & MSG_DONTWAIT and isinstance(sock, DgramSocket):
            sock.blocked_on = other
            other_waiters(other).add(sock)
        raise oserror(errno.EAGAIN)
    if isinstance(sock, DgramSocket):
        sock.blocked_on = None
    message = Message(data, sock, rights, sock.credentials_for(other, creds),
                      truesize(len(data), stream=False))
    other.enqueue(message, touched)
    if recvq_full(other):
        touched.extend(other_waiters(other))  # connected senders stop being writable
    return len(data)


def other_waiters(sock: UnixSocket) -> set:
    """Sockets whose writability depends on ``sock``'s queue length."""
    waiters = getattr(sock, "waiters", None)
    return waiters if waiters is not None else set()


def receive_record(sock: UnixSocket, bufsize: int, flags: int, ancbufsize: int,
                   touched: list) -> tuple[bytes, list, int, object]:
    """unix_dgram_recvmsg: the head message, truncated to ``bufsize`` (MSG_TRUNC in
    the flags; the full length returned when asked with MSG_TRUNC)."""
    if flags & MSG_OOB:
        raise oserror(errno.EOPNOTSUPP)
    if sock.error:  # a pending error comes first, even before queued messages
        sock.raise_error()
    if not sock.rx:
        if sock.shutdown & RCV_SHUTDOWN and (
                not flags & MSG_DONTWAIT or sock.type == SOCK_SEQPACKET):
            return b"", [], 0, None  # EOF (a blocking wait would end at once)
        raise oserror(errno.EAGAIN)
    message = sock.rx[0]
    was_full = recvq_full(sock)
    length = len(message.data)
    data = message.data if length <= bufsize else message.data[:bufsize]
    msg_flags = MSG_TRUNC if length > bufsize else 0
    if flags & MSG_PEEK:
        rights = [ref.clone() for ref in message.rights] if message.rights else None
    else:
        rights, message.rights = message.rights, None
        sock.consume(message, touched)
        if was_full and not recvq_full(sock):
            waiters = other_waiters(sock)
            touched.extend(waiters)
            waiters.clear()
    if flags & MSG_TRUNC and length > bufsize:
        data = data + bytes(length - bufsize)  # the stdlib grows the buffer to the length
    ancdata, msg_flags = sock.control(message, rights, ancbufsize, msg_flags, touched)
    return data, ancdata, msg_flags, sock.sender_address(message.sender)


def record_poll(sock: UnixSocket, seqpacket: bool) -> int:
    """unix_dgram_poll."""
    mask = POLLERR if sock.error else 0
    shutdown = sock.shutdown
    if shutdown & RCV_SHUTDOWN:
        mask |= POLLRDHUP | POLLIN_SET
    if shutdown == SHUTDOWN_MASK:
        mask |= POLLHUP
    if sock.rx:
        mask |= POLLIN_SET
    if seqpacket and sock.state == CLOSE:
        mask |= POLLHUP
    writable = sock.writable()
    if writable:
        other = sock.peer
        if other is not None and other.peer is not sock and recvq_full(other):
            writable = False
        blocked_on = getattr(sock, "blocked_on", None)
        if blocked_on is not None and not blocked_on.dead and recvq_full(blocked_on):
            writable = False
    if writable:
        mask |= POLLOUT_SET
    return mask


def disconnect(sock: UnixSocket, touched: list) -> None:
    """A datagram socket leaves its peer (re-connect, or the peer closed):
    unix_dgram_disconnected purges what it had queued, and a peer connected back to
    it learns of the lost messages (ECONNRESET)."""
    old, sock.peer = sock.peer, None
    sock.state = CLOSE
    if old is None:
        return
    other_waiters(old).discard(sock)
    if sock.rx:
        sock.purge(touched)
        if not old.dead and old.peer is sock:
            old.error = errno.ECONNRESET
            touched.append(old)
    touched.append(sock)


class DgramSocket(UnixSocket):
    __slots__ = ("blocked_on", "waiters")

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.blocked_on: UnixSocket | None = None
        self.waiters: set[UnixSocket] = set()  # connected to us, or waiting for room

    def connect(self, name: bytes, touched: list) -> None:
        if self.passcred and self.name is None:
            self.space.autobind(self)
        other = self.space.find(name, self.type)
        if other.peer is not None and other.peer is not self:
            raise oserror(errno.EPERM)
        old = self.peer
        if old is not None and old is not other:
            disconnect(self, touched)
        self.peer = other
        self.state = ESTABLISHED
        other_waiters(other).add(self)
        touched.append(self)

    def sendto(self, raw: bytes | None, data: bytes, flags: int, rights: list | None,
               creds: tuple | None, touched: list) -> int:
        if flags & MSG_OOB:
            raise oserror(errno.EOPNOTSUPP)
        other = None
        name = None if raw is None else kernel_name(raw)
        if self.passcred and self.name is None:
            self.space.autobind(self)  # before any check of the size or the peer
        if name is None:
            other = self.peer
            if other is None:
                # Linux 6.x checks the size and a shut sending side before the peer.
                if len(data) > self.sndbuf - 32:
                    raise oserror(errno.EMSGSIZE)
                if self.shutdown & SEND_SHUTDOWN:
                    raise oserror(errno.EPIPE)
                raise oserror(errno.ENOTCONN)
        return send_record(self, other, name, data, flags, rights, creds, touched)

    def recvmsg(self, bufsize: int, flags: int, ancbufsize: int, touched: list):
        return receive_record(self, bufsize, flags, ancbufsize, touched)

    def shut(self, how: int, touched: list) -> None:
        self.shutdown |= how
        touched.append(self)

    def poll(self) -> int:
        return record_poll(self, seqpacket=False)

    def inq(self) -> int:
        return len(self.rx[0].data) if self.rx else 0  # the next datagram's size

    def close(self, touched: list) -> None:
        self.dead = True
        self.space.unbind(self)
        peer, self.peer = self.peer, None
        if peer is not None:
            other_waiters(peer).discard(self)
        self.state = CLOSE
        self.shutdown = SHUTDOWN_MASK
        self.purge(touched)
        touched.extend(self.waiters)  # sockets waiting for our queue: now refused
        self.waiters.clear()
