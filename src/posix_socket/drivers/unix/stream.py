"""SOCK_STREAM and SOCK_SEQPACKET: connections (unix_stream_connect and friends).

Connecting never waits for the listener: like Linux, connect makes the server's end at
once and queues it on the listener, so a connect succeeds (or fails) on the spot, and
only a full backlog (more than ``backlog`` waiting) makes it wait (EAGAIN; the core
retries a blocking connect).  A stream carries bytes: a send is cut into messages as
Linux cuts skbs, a read runs across messages but stops after one that carried
descriptors, and never glues messages with different credentials when SO_PASSCRED is
on.  A seqpacket connection carries datagrams (see dgram.py).

Closing a connected end shuts the peer down both ways (it reads EOF, sends EPIPE); if
data was left unread the peer also gets ECONNRESET, once.  A listener closed with
connections not yet accepted resets their clients.
"""

from __future__ import annotations

import errno

from ...errors import oserror
from .base import (
    CLOSE,
    ESTABLISHED,
    LISTEN,
    MSG_OOB,
    MSG_PEEK,
    POLLERR,
    POLLHUP,
    POLLIN_SET,
    POLLOUT_SET,
    POLLRDHUP,
    RCV_SHUTDOWN,
    SEND_SHUTDOWN,
    SHUTDOWN_MASK,
    SOMAXCONN,
    Message,
    UnixSocket,
    own_credentials,
    stream_chunk,
    truesize,
)
from .dgram import receive_record, record_poll, send_record

__all__ = ["StreamSocket", "SeqpacketSocket", "pair"]

RCV_TO_PEER = {RCV_SHUTDOWN: SEND_SHUTDOWN, SEND_SHUTDOWN: RCV_SHUTDOWN}


def pair(first: StreamSocket | UnixSocket, second: StreamSocket | UnixSocket) -> None:
    """socketpair: two connected ends, each knowing the other's credentials."""
    first.peer, second.peer = second, first
    first.state = second.state = ESTABLISHED
    first.peercred = second.peercred = own_credentials()


class StreamSocket(UnixSocket):
    __slots__ = ("pending", "max_backlog")

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.pending = None  # a listener's connections not yet accepted
        self.max_backlog = 0

    # -- connection setup ----------------------------------------------------------------

    def listen(self, backlog: int, touched: list) -> None:
        if self.name is None or self.state not in (CLOSE, LISTEN):
            raise oserror(errno.EINVAL)
        self.max_backlog = min(max(backlog, 0), SOMAXCONN)
        if self.state == CLOSE:
            self.state = LISTEN
            self.pending = []
            self.peercred = own_credentials()
        touched.append(self)

    def connect(self, name: bytes, touched: list) -> None:
        if self.passcred and self.name is None:
            self.space.autobind(self)
        other = self.space.find(name, self.type)
        if other.state != LISTEN or other.shutdown & RCV_SHUTDOWN:
            raise oserror(errno.ECONNREFUSED)
        if len(other.pending) > other.max_backlog:
            raise oserror(errno.EAGAIN)  # the core retries a blocking connect
        if self.state == ESTABLISHED:
            raise oserror(errno.EISCONN)
        if self.state != CLOSE:
            raise oserror(errno.EINVAL)
        server = type(self)(self.space, self.budget, self.type, self.proto)
        server.name = other.name  # the listener's name, not its file: it owns none
        server.state = self.state = ESTABLISHED
        server.peer, self.peer = self, server
        server.peercred = own_credentials()
        self.peercred = other.peercred
        other.pending.append(server)
        touched += (other, self)

    def accept(self, touched: list) -> tuple[StreamSocket, str | bytes]:
        if self.state != LISTEN:
            raise oserror(errno.EINVAL)
        if not self.pending:
            raise oserror(errno.EAGAIN)
        server = self.pending.pop(0)
        server.passcred = self.passcred  # unix_sock_inherit_flags
        touched.append(self)
        return server, server.getpeername()

    def accept_waiting(self, touched: list) -> tuple[StreamSocket, str | bytes]:
        """accept for a caller that waits.  Linux's unix_accept sleeps in
        skb_recv_datagram, which gives up at once on a listener shut for reading
        (EINVAL), while poll says readable and a non-blocking accept says EAGAIN."""
        if self.state == LISTEN and not self.pending and self.shutdown & RCV_SHUTDOWN:
            raise oserror(errno.EINVAL)
        return self.accept(touched)

    # -- data ----------------------------------------------------------------------------

    def sendto(self, raw: bytes | None, data: bytes, flags: int, rights: list | None,
               creds: tuple | None, touched: list) -> int:
        """unix_stream_sendmsg."""
        if flags & MSG_OOB:
            raise oserror(errno.EOPNOTSUPP)
        if raw is not None:
            raise oserror(errno.EISCONN if self.state == ESTABLISHED else errno.EOPNOTSUPP)
        peer = self.peer
        if peer is None:
            raise oserror(errno.ENOTCONN)
        if self.shutdown & SEND_SHUTDOWN:
            raise oserror(errno.EPIPE)
        sent = 0
        size = len(data)
        while sent < size:
            try:
                if self.error:
                    self.raise_error()
                if self.shutdown & SEND_SHUTDOWN or peer.dead or peer.shutdown & RCV_SHUTDOWN:
                    raise oserror(errno.EPIPE)
                if not self.can_queue():
                    raise oserror(errno.EAGAIN)
            except OSError:
                if sent:
                    return sent
                raise
            chunk = stream_chunk(size - sent, self.sndbuf)
            piece = data if chunk == size else data[sent:sent + chunk]
            message = Message(piece, self, None if sent else rights,
                              self.credentials_for(peer, creds), truesize(chunk, stream=True))
            peer.enqueue(message, touched)
            sent += chunk
        if not sent:
            touched.extend(rights or ())  # nothing sent: no descriptors either
        return sent

    def recvmsg(self, bufsize: int, flags: int, ancbufsize: int, touched: list):
        """unix_stream_read_generic."""
        if self.state != ESTABLISHED:
            raise oserror(errno.EINVAL)
        if flags & MSG_OOB:
            raise oserror(errno.EOPNOTSUPP)
        if not self.rx:
            if self.error:
                self.raise_error()
            if self.shutdown & RCV_SHUTDOWN:
                return b"", [], 0, None
            raise oserror(errno.EAGAIN)
        peek = flags & MSG_PEEK
        parts: list[bytes] = []
        want = bufsize
        rights = None
        first = self.rx[0]
        creds = first.creds
        index = 0
        while True:
            if peek:
                if index >= len(self.rx):
                    break
                message = self.rx[index]
            else:
                if not self.rx:
                    break
                message = self.rx[0]
            if self.passcred and message.creds != creds:
                break  # never glue messages from different writers
            start = message.offset
            piece = message.data[start:start + want]
            parts.append(piece)
            want -= len(piece)
            if peek:
                if message.rights:
                    rights = [ref.clone() for ref in message.rights]
                    break
                index += 1
            else:
                message.offset += len(piece)
                self.rx_bytes -= len(piece)
                if message.rights:
                    rights, message.rights = message.rights, None
                if message.remaining():
                    break
                self.consume(message, touched)
                if rights:
                    break
            if want <= 0:
                break
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        ancdata, msg_flags = self.control(first, rights, ancbufsize, 0, touched)
        return data, ancdata, msg_flags, self.sender_address(first.sender)

    # -- shutdown and close --------------------------------------------------------------

    def shut(self, how: int, touched: list) -> None:
        self.shutdown |= how
        touched.append(self)
        peer = self.peer
        if peer is not None:
            peer.shutdown |= (SEND_SHUTDOWN if how & RCV_SHUTDOWN else 0) | (
                RCV_SHUTDOWN if how & SEND_SHUTDOWN else 0)
            touched.append(peer)

    def close(self, touched: list, embryo: bool = False) -> None:
        """unix_release_sock."""
        self.dead = True
        self.space.unbind(self)
        state = self.state
        self.state = CLOSE
        self.shutdown = SHUTDOWN_MASK
        peer = self.peer
        if peer is not None:
            peer.shutdown = SHUTDOWN_MASK
            if self.rx_bytes or embryo:  # unread bytes: empty messages do not count
                peer.error = errno.ECONNRESET
            touched.append(peer)
        self.purge(touched)
        if state == LISTEN:
            for server in self.pending:
                server.close(touched, embryo=True)
            self.pending = []
        touched.append(self)

    def poll(self) -> int:
        """unix_poll."""
        mask = POLLERR if self.error else 0
        shutdown = self.shutdown
        if shutdown == SHUTDOWN_MASK:
            mask |= POLLHUP
        if shutdown & RCV_SHUTDOWN:
            mask |= POLLRDHUP | POLLIN_SET
        if self.rx or self.pending:
            mask |= POLLIN_SET
        if self.state == CLOSE:
            mask |= POLLHUP
        if self.writable():
            mask |= POLLOUT_SET
        return mask

    def inq(self) -> int:
        if self.state == LISTEN:
            raise oserror(errno.EINVAL)
        return self.rx_bytes


class SeqpacketSocket(StreamSocket):
    """A connection of datagrams: stream's setup, dgram's messages and poll."""

    __slots__ = ()

    def sendto(self, raw: bytes | None, data: bytes, flags: int, rights: list | None,
               creds: tuple | None, touched: list) -> int:
        """unix_seqpacket_sendmsg: the address, if any, is ignored."""
        if self.error:
            self.raise_error()
        if self.state != ESTABLISHED:
            raise oserror(errno.ENOTCONN)
        if flags & MSG_OOB:
            raise oserror(errno.EOPNOTSUPP)
        return send_record(self, self.peer, None, data, flags, rights, creds, touched)

    def recvmsg(self, bufsize: int, flags: int, ancbufsize: int, touched: list):
        if self.state != ESTABLISHED:
            raise oserror(errno.ENOTCONN)
        return receive_record(self, bufsize, flags, ancbufsize, touched)

    def poll(self) -> int:
        mask = record_poll(self, seqpacket=True)
        if self.pending:
            mask |= POLLIN_SET
        return mask
