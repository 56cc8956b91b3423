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

Out-of-band data is Linux's (5.15+, as 6.18 has it): a stream send with MSG_OOB queues
its last byte as a message of its own that the receiver marks (``oob``; a newer one
makes the older an ordinary byte).  recv(MSG_OOB) takes it (EINVAL if there is none, or
with SO_OOBINLINE) and leaves its emptied message in the queue; an ordinary read stops
at the mark once it has read something, and otherwise steps over the byte, which is
then lost (unless SO_OOBINLINE), or over an emptied message.  The mark shows as
POLLPRI and SIOCATMARK.  SIGURG is not sent.
"""

from __future__ import annotations

import errno
import socket

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
    POLLPRI,
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

SO_OOBINLINE = socket.SO_OOBINLINE
# The flags of a read the layer completes with more reads (MSG_WAITALL, blocking).
GATHERED = socket.MSG_WAITALL | socket.MSG_DONTWAIT | MSG_PEEK

__all__ = ["StreamSocket", "SeqpacketSocket", "pair"]

# What EOF carries: no data and credentials of nobody (Linux's empty scm_cookie).
_EOF = Message(b"", None, None, (0, 0, 0), 0)  # type: ignore[arg-type]

RCV_TO_PEER = {RCV_SHUTDOWN: SEND_SHUTDOWN, SEND_SHUTDOWN: RCV_SHUTDOWN}


def pair(first: StreamSocket | UnixSocket, second: StreamSocket | UnixSocket) -> None:
    """socketpair: two connected ends, each knowing the other's credentials."""
    first.peer, second.peer = second, first
    first.state = second.state = ESTABLISHED
    first.peercred = second.peercred = own_credentials()


class StreamSocket(UnixSocket):
    __slots__ = ("pending", "max_backlog", "oob", "lost_oob", "mark_ends_read")

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.pending = None  # a listener's connections not yet accepted
        self.max_backlog = 0
        self.oob: Message | None = None  # the out-of-band byte's message (u->oob_skb)
        # Out-of-band bytes a read stepped over: Linux 6.18 drops them without taking
        # them off its SIOCINQ count (u->inq_len), which FIONREAD keeps showing.
        self.lost_oob = 0
        self.mark_ends_read = False  # see recvmsg

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
        urgent = flags & MSG_OOB
        if urgent and not data:
            raise oserror(errno.EOPNOTSUPP)
        if raw is not None:
            raise oserror(errno.EISCONN if self.state == ESTABLISHED else errno.EOPNOTSUPP)
        peer = self.peer
        if peer is None:
            raise oserror(errno.ENOTCONN)
        if self.shutdown & SEND_SHUTDOWN:
            raise oserror(errno.EPIPE)
        sent = 0
        size = len(data) - 1 if urgent else len(data)  # MSG_OOB: the last byte apart
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
            piece = data if chunk == len(data) else data[sent:sent + chunk]
            message = Message(piece, self, None if sent else rights,
                              self.credentials_for(peer, creds), truesize(chunk, stream=True))
            peer.enqueue(message, touched)
            sent += chunk
        if urgent:
            try:
                sent += self._send_urgent(peer, data[-1:], None if sent else rights, creds,
                                          touched)
            except OSError:
                if sent:
                    return sent
                raise
        if not sent:
            touched.extend(rights or ())  # nothing sent: no descriptors either
        return sent

    def _send_urgent(self, peer: UnixSocket, byte: bytes, rights: list | None,
                     creds: tuple | None, touched: list) -> int:
        """queue_oob: the byte as a message of its own, marked on the receiver."""
        if not self.can_queue():
            raise oserror(errno.EAGAIN)
        if peer.dead or peer.shutdown & RCV_SHUTDOWN:
            raise oserror(errno.EPIPE)
        message = Message(byte, self, rights, self.credentials_for(peer, creds),
                          truesize(1, stream=True))
        peer.enqueue(message, touched)
        peer.oob = message
        return 1

    def recvmsg(self, bufsize: int, flags: int, ancbufsize: int, touched: list):
        """unix_stream_read_generic."""
        if self.state != ESTABLISHED:
            raise oserror(errno.EINVAL)
        if flags & MSG_OOB:
            return self._receive_urgent(flags, touched)
        gathered = flags & GATHERED == socket.MSG_WAITALL
        if self.mark_ends_read:
            # Linux ends even a MSG_WAITALL read at the mark, where the layer would
            # read on (posix._gather): its next read is told the read is over.
            self.mark_ends_read = False
            if gathered:
                return b"", [], 0, None
        peek = flags & MSG_PEEK
        rx = self.rx
        parts: list[bytes] = []
        want = bufsize
        copied = 0
        rights = None
        first: Message | None = None
        index = 0  # where a peek has got to; a read always takes the head
        oob = self.oob
        while True:
            at = None
            if index < len(rx):
                message = rx[index]
                if message is oob or message.offset == len(message.data):
                    at = self._manage_oob(index, peek, copied, touched)
                    oob = self.oob
                else:
                    at = index  # the common case: data, no mark
            if at is None:
                self.mark_ends_read = gathered and bool(copied) and index < len(rx)
                break
            message = rx[at]
            if first is None:
                first = message
            elif self.passcred and message.creds != first.creds:
                break  # never glue messages from different writers
            start = message.offset
            piece = message.data[start:start + want]
            parts.append(piece)
            want -= len(piece)
            copied += len(piece)
            if peek:
                if message.rights:
                    rights = [ref.clone() for ref in message.rights]
                    break
                index = at + 1
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
        if first is None:  # nothing to read
            if self.error:
                self.raise_error()
            if self.shutdown & RCV_SHUTDOWN:
                # EOF still passes the (empty) credentials SO_PASSCRED asks for
                ancdata, msg_flags = self.control(_EOF, None, ancbufsize, 0, touched)
                return b"", ancdata, msg_flags, None
            raise oserror(errno.EAGAIN)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        ancdata, msg_flags = self.control(first, rights, ancbufsize, 0, touched)
        return data, ancdata, msg_flags, self.sender_address(first.sender)

    def _manage_oob(self, at: int, peek: int, copied: int, touched: list) -> int | None:
        """Linux's manage_oob: where a read goes on from the message at ``at`` of the
        queue (the head unless peeking), None where it stops.  It stops at the mark,
        or at an emptied out-of-band message, once it has read something; otherwise it
        steps over (a read: drops) an emptied one, and over the out-of-band byte, which
        a read loses (SO_OOBINLINE: reads it, the mark gone)."""
        rx = self.rx
        message = rx[at]
        oob = self.oob
        if message is not oob and message.remaining():
            return at
        if not message.remaining():
            if copied and (oob is None or message is oob):
                return None
            if peek:
                at += 1
            else:
                self.consume(message, touched)
            if at >= len(rx):
                return None
            message = rx[at]
        if message is not oob:
            return at
        if copied:
            return None
        inline = self._oob_inline()
        if not peek:
            self.oob = None
            touched.append(self)
            if not inline:
                rx.popleft()
                self.rx_bytes -= message.remaining()
                self.lost_oob += message.remaining()
                self.forget(message, touched)
                return 0 if rx else None
        elif not inline:
            at += 1
            return at if at < len(rx) else None
        return at

    def _receive_urgent(self, flags: int, touched: list):
        """unix_stream_recv_urg: the out-of-band byte, whatever the buffer's size.  Its
        emptied message stays queued, and one emptied before it goes."""
        message = self.oob
        if message is None or self._oob_inline():
            raise oserror(errno.EINVAL)
        data = message.data[message.offset:message.offset + 1]
        if not flags & MSG_PEEK:
            self.oob = None
            message.offset += 1
            self.rx_bytes -= 1
            rx = self.rx
            at = rx.index(message)
            if at and not rx[at - 1].remaining():
                before = rx[at - 1]
                del rx[at - 1]
                self.forget(before, touched)
            touched.append(self)
        return data, [], MSG_OOB, None

    def _oob_inline(self) -> bool:
        return bool((self.options or {}).get(SO_OOBINLINE))

    def at_mark(self) -> int:
        """SIOCATMARK: the head is the out-of-band byte, or an emptied message with no
        mark or the mark right after it (a listener's queued connection counts as
        one, as Linux keeps it as an empty message)."""
        if self.pending:
            return 1
        rx = self.rx
        if not rx:
            return 0
        head = rx[0]
        if head is self.oob:
            return 1
        return int(not head.remaining() and (
            self.oob is None or (len(rx) > 1 and rx[1] is self.oob)))

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
        self.oob = None
        state = self.state
        self.state = CLOSE
        self.shutdown = SHUTDOWN_MASK
        peer = self.peer
        if peer is not None:
            peer.shutdown = SHUTDOWN_MASK
            rx = self.rx
            # Something left unread resets the peer; Linux looks past one empty message
            # at the head (an emptied out-of-band one, an empty record), not further.
            if embryo or (rx and (rx[0].remaining() or len(rx) > 1)):
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
        if self.oob is not None:
            mask |= POLLPRI
        if self.state == CLOSE:
            mask |= POLLHUP
        if self.writable():
            mask |= POLLOUT_SET
        return mask

    def inq(self) -> int:
        if self.state == LISTEN:
            raise oserror(errno.EINVAL)
        return self.rx_bytes + self.lost_oob


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
        if self.passcred and self.name is None:
            self.space.autobind(self)  # unix_dgram_sendmsg, before its other checks
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
