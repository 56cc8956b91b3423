"""TCP sockets of the virtual network: a connection is two queues of immutable chunks.

State follows Linux closely enough that poll masks, errnos and EOF/reset behaviour
match the kernel's loopback: a handshake completes at once (or waits in the
listener's queue while its backlog is full), data moves by reference (a ``bytes``
payload is never copied on the way), each receive queue is bounded by the receiver's
SO_RCVBUF, and closing with unread data resets the peer, as Linux does.

Every method runs under the network's lock and appends the sockets whose readiness
changed to ``touched``; the driver notifies them after the lock is released (also when
the method raises, e.g. EINPROGRESS from a connect that did change things).
"""

from __future__ import annotations

import collections
import errno
import select
import socket

from ...errors import oserror
from .addresses import ANY, ANY4, Endpoint, is_v4, to_tuple
from .network import Binding, VirtualNetwork
from .options import Options

__all__ = ["TcpSocket"]

CLOSE, LISTEN, SYN_SENT, ESTABLISHED = "CLOSE", "LISTEN", "SYN_SENT", "ESTABLISHED"
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
SHUTDOWN_MASK = RCV_SHUTDOWN | SEND_SHUTDOWN
POLLIN_SET = select.POLLIN | select.POLLRDNORM
POLLOUT_SET = select.POLLOUT | select.POLLWRNORM
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
SOMAXCONN = 4096
MSG_PEEK = int(socket.MSG_PEEK)  # a plain int: enum arithmetic is slow on the hot path


class TcpSocket:
    __slots__ = ("net", "family", "opts", "state", "binding", "local", "remote", "peer",
                 "rx", "rx_size", "shutdown", "error", "backlog", "max_backlog",
                 "waiting", "listener", "autobound", "done", "__weakref__")

    def __init__(self, net: VirtualNetwork, family: int) -> None:
        self.net = net
        self.family = family
        self.opts = Options(family, tcp=True)
        self.state = CLOSE
        self.binding: Binding | None = None
        self.local: Endpoint | None = None
        self.remote: Endpoint | None = None
        self.peer: TcpSocket | None = None
        self.rx: collections.deque[bytes] | None = None  # made on first data: idle is small
        self.rx_size = 0
        self.shutdown = 0
        self.error = 0
        self.backlog: collections.deque[TcpSocket] | None = None
        self.max_backlog = 0
        self.waiting: collections.deque[TcpSocket] | None = None  # connects beyond it
        self.listener: TcpSocket | None = None  # while waiting for room in its backlog
        self.autobound = False
        self.done = False  # FIN received: reads return EOF before any error

    # -- names ---------------------------------------------------------------------

    def _any(self) -> Endpoint:
        return Endpoint(ANY4 if self.family == socket.AF_INET else ANY, 0)

    def getsockname(self) -> tuple:
        return to_tuple(self.family, self.local or self._any())

    def getpeername(self) -> tuple:
        if self.state != ESTABLISHED or self.remote is None:
            raise oserror(errno.ENOTCONN)
        return to_tuple(self.family, self.remote)

    def _v6only(self) -> bool:
        return self.family == socket.AF_INET6 and bool(
            self.opts.flag(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))

    def bind(self, where: Endpoint) -> None:
        if self.binding is not None:
            raise oserror(errno.EINVAL)
        if self.family == socket.AF_INET6 and is_v4(where.ip) and self._v6only():
            raise oserror(errno.EINVAL)
        if not self.net.is_local(where.ip):
            raise oserror(errno.EADDRNOTAVAIL)
        self._claim(where.ip, where.port)

    def _claim(self, ip, port: int, parity: int = 1) -> None:
        opts = self.opts
        binding = Binding(self, ip, self._v6only(),
                          bool(opts.flag(socket.SOL_SOCKET, socket.SO_REUSEADDR)),
                          bool(opts.flag(socket.SOL_SOCKET, socket.SO_REUSEPORT)))
        port = self.net.tcp.bind(binding, port, parity)
        self.binding = binding
        self.local = Endpoint(ip, port)

    def _release_port(self) -> None:
        if self.binding is not None and self.local is not None:
            self.net.tcp.unbind(self.binding, self.local.port)
        self.binding = None
        self.local = None

    # -- connection setup ------------------------------------------------------------

    def listen(self, backlog: int, touched: list) -> None:
        if self.state not in (CLOSE, LISTEN) or self.shutdown:
            raise oserror(errno.EINVAL)
        if self.binding is None:
            self._claim(self._any().ip, 0)
            self.autobound = True
        elif self.state == CLOSE:
            self.binding.listening = True
            try:
                self.net.tcp.check(self.binding, self.local.port)
            except OSError:
                self.binding.listening = False
                raise
        self.binding.listening = True
        self.max_backlog = min(max(backlog, 0), SOMAXCONN)
        if self.state == CLOSE:
            self.state = LISTEN
            self.backlog = collections.deque()
            self.waiting = collections.deque()
        self._admit(touched)

    def _admit(self, touched: list) -> None:
        """Move connects that waited for room into the backlog (their handshake ends)."""
        while self.waiting and len(self.backlog) <= self.max_backlog:
            client = self.waiting.popleft()
            client.listener = None
            client._join(self, touched)

    def connect(self, where: Endpoint, touched: list) -> None:
        """Raises EINPROGRESS once the attempt is under way, as a non-blocking
        connect on Linux's loopback does; the core waits for blocking callers."""
        if self.state == ESTABLISHED:
            raise oserror(errno.EISCONN)
        if self.state == SYN_SENT:
            raise oserror(errno.EALREADY)
        if self.state == LISTEN:
            raise oserror(errno.EISCONN)
        target = where.ip
        if self.family == socket.AF_INET6 and is_v4(target) and self._v6only():
            raise oserror(errno.ENETUNREACH)
        if target in (ANY, ANY4):  # Linux connects "any" to the loopback address
            target = self.net.loopback(is_v4(target) or self.family == socket.AF_INET)
        if not self.net.is_local(target):
            raise oserror(errno.ENETUNREACH)
        if self.binding is None:
            # The route's source: lo's routes say 127.0.0.1 for all of 127/8; any other
            # address of this network is reached from itself.
            v4 = target.ipv4_mapped
            loopback = v4 is not None and v4.is_loopback
            self._claim(self.net.loopback(True) if loopback else target, 0, parity=0)
            self.autobound = True
        self.shutdown = 0
        self.error = 0
        self.remote = Endpoint(target, where.port)
        listener = self._find_listener(target, where.port)
        if listener is None:
            self.error = errno.ECONNREFUSED
            self._fail_connect()
            raise oserror(errno.EINPROGRESS)
        self.state = SYN_SENT
        if len(listener.backlog) > listener.max_backlog:
            self.listener = listener
            listener.waiting.append(self)
            raise oserror(errno.EINPROGRESS)
        self._join(listener, touched)
        raise oserror(errno.EINPROGRESS)

    def _find_listener(self, ip, port: int) -> TcpSocket | None:
        listeners = [b.owner for b in self.net.tcp.find(ip, port)
                     if b.owner.state == LISTEN and not b.owner.shutdown & RCV_SHUTDOWN]
        if not listeners:
            return None
        exact = [s for s in listeners if s.local.ip == ip]
        group = exact or listeners
        if len(group) > 1:  # SO_REUSEPORT: spread connections by the client's port
            return group[hash((self.local.ip, self.local.port)) % len(group)]
        return group[0]

    def _fail_connect(self) -> None:
        self.state = CLOSE
        self.remote = None
        if self.autobound:
            self._release_port()
            self.autobound = False

    def _join(self, listener: TcpSocket, touched: list) -> None:
        child = TcpSocket(self.net, listener.family)
        child.opts.inherit(listener.opts)
        child.local = Endpoint(self.remote.ip, listener.local.port)
        child.remote = self.local
        child.state = ESTABLISHED
        child.peer, self.peer = self, child
        listener.backlog.append(child)
        self.state = ESTABLISHED
        touched += (listener, self)

    def accept(self, touched: list) -> tuple[TcpSocket, tuple]:
        if self.state != LISTEN:
            raise oserror(errno.EINVAL)
        if not self.backlog:
            raise oserror(errno.EAGAIN)
        child = self.backlog.popleft()
        touched.append(self)
        self._admit(touched)
        return child, to_tuple(self.family, child.remote)

    # -- data ------------------------------------------------------------------------

    def send(self, data, flags: int, touched: list) -> int:
        if self.error:
            code, self.error = self.error, 0
            raise oserror(code)
        if self.shutdown & SEND_SHUTDOWN:
            raise oserror(errno.EPIPE)
        if self.state != ESTABLISHED:
            raise oserror(errno.EPIPE if self.state == CLOSE else errno.ENOTCONN)
        peer = self.peer
        if peer is None:  # the peer is gone: its kernel answers with a reset
            self._reset(errno.EPIPE if self.done else errno.ECONNRESET)
            touched.append(self)
            return len(data)
        size = len(data)
        room = peer.opts.rcvbuf - peer.rx_size
        if room <= 0:
            raise oserror(errno.EAGAIN)
        # An immutable payload that fits travels by reference, anything else is copied.
        fits = type(data) is bytes and size <= room
        chunk = data if fits else bytes(memoryview(data)[:room])
        if not chunk:
            return 0
        if peer.rx is None:
            peer.rx = collections.deque()
        peer.rx.append(chunk)
        peer.rx_size += len(chunk)
        touched.append(peer)
        if peer.rx_size >= peer.opts.rcvbuf:
            touched.append(self)  # no longer writable
        return len(chunk)

    def recv(self, bufsize: int, flags: int, touched: list) -> bytes:
        if self.state == LISTEN or (self.state != ESTABLISHED and not self.rx
                                    and not self.error and not self.shutdown):
            raise oserror(errno.ENOTCONN)
        if not self.rx:
            if self.done or (self.shutdown & RCV_SHUTDOWN and not self.error):
                return b""
            if self.error:
                code, self.error = self.error, 0
                touched.append(self)
                raise oserror(code)
            if bufsize == 0:
                return b""
            raise oserror(errno.EAGAIN)
        peek = flags & MSG_PEEK
        first = self.rx[0]
        if len(first) <= bufsize and (len(first) == bufsize or len(self.rx) == 1):
            data = first
            if not peek:
                self.rx.popleft()
        else:
            parts, want = [], bufsize
            for chunk in self.rx:
                if want <= 0:
                    break
                parts.append(chunk[:want] if len(chunk) > want else chunk)
                want -= len(parts[-1])
            data = b"".join(parts)
            if not peek:
                taken = len(data)
                while taken:
                    chunk = self.rx[0]
                    if len(chunk) <= taken:
                        self.rx.popleft()
                        taken -= len(chunk)
                    else:
                        self.rx[0] = chunk[taken:]
                        taken = 0
        if peek:
            return data
        was_full = self.rx_size >= self.opts.rcvbuf
        self.rx_size -= len(data)
        if not self.rx:
            touched.append(self)  # no longer readable
        if was_full and self.peer is not None:
            touched.append(self.peer)  # writable again
        return data

    def nread(self) -> int:
        return self.rx_size

    # -- teardown ------------------------------------------------------------------

    def shut(self, how: int, touched: list) -> None:
        """shutdown(2): ENOTCONN unless connected, but the bits are set anyway (Linux)."""
        touched.append(self)
        connected = self.state == ESTABLISHED
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self.shutdown |= RCV_SHUTDOWN
            if self.state == LISTEN:
                self._stop_listening(touched)
                self.state = CLOSE
                if self.binding is not None:
                    self.binding.listening = False
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            if connected and not self.shutdown & SEND_SHUTDOWN and self.peer is not None:
                self.peer._fin(touched)
            self.shutdown |= SEND_SHUTDOWN
        if not connected and self.state != SYN_SENT:
            raise oserror(errno.ENOTCONN)

    def _fin(self, touched: list) -> None:
        """The peer will send nothing more."""
        self.done = True
        self.shutdown |= RCV_SHUTDOWN
        touched.append(self)

    def _reset(self, code: int) -> None:
        self.error = code
        self.shutdown = SHUTDOWN_MASK
        self.state = CLOSE
        self.peer = None

    def _stop_listening(self, touched: list) -> None:
        for child in list(self.backlog or ()):
            child.close(touched, reset=True)  # never accepted: the client is reset
        for client in list(self.waiting or ()):
            client.error = errno.ECONNREFUSED
            client.listener = None
            client._fail_connect()
            touched.append(client)
        self.backlog = collections.deque()
        self.waiting = collections.deque()

    def close(self, touched: list, reset: bool = False) -> None:
        if self.state == LISTEN:
            self._stop_listening(touched)
        if self.listener is not None and self.listener.waiting is not None:
            if self in self.listener.waiting:
                self.listener.waiting.remove(self)
            self.listener = None
        peer = self.peer
        if peer is not None:
            linger_zero = self.opts.linger == (1, 0)
            if reset or self.rx or linger_zero:
                peer._reset(errno.ECONNRESET)
            else:
                peer._fin(touched)
                peer.peer = None
            touched.append(peer)
        self.peer = None
        self.state = CLOSE
        self.rx = None
        self.rx_size = 0
        self._release_port()

    # -- readiness -----------------------------------------------------------------

    def poll(self) -> int:
        """Linux's tcp_poll."""
        state = self.state
        if state == LISTEN:
            return POLLIN_SET if self.backlog else 0
        mask = 0
        if self.shutdown == SHUTDOWN_MASK or state == CLOSE:
            mask |= select.POLLHUP
        if self.shutdown & RCV_SHUTDOWN:
            mask |= POLLIN_SET | POLLRDHUP
        if state != SYN_SENT:
            if self.rx:
                mask |= POLLIN_SET
            if self.shutdown & SEND_SHUTDOWN or self.peer is None or (
                    self.peer.rx_size < self.peer.opts.rcvbuf):
                mask |= POLLOUT_SET
        if self.error:
            mask |= select.POLLERR
        return mask

    def take_error(self) -> int:
        code, self.error = self.error, 0
        return code
