"""TCP sockets of the virtual network: a connection is two queues of immutable chunks.

State follows Linux's (the socket's ``sk_state`` and its ``SS_*`` state) closely enough
that poll masks, errnos, EOF, resets and who holds a port match the kernel's loopback.
Loopback answers at once, so the transient states are skipped: a handshake completes
inside connect (or waits in SYN_SENT while the listener's backlog is full), a FIN is
acknowledged at once (no FIN_WAIT1, CLOSING or LAST_ACK), and TIME_WAIT lives only in
the port table (the socket itself is CLOSE then, as Linux's full socket is)::

    ESTABLISHED --own FIN--> FIN_WAIT2 --peer's FIN--> CLOSE, TIME_WAIT entry left behind
    ESTABLISHED --peer's FIN--> CLOSE_WAIT --own FIN--> CLOSE
    any state --reset--> CLOSE, with the error the state calls for

A socket connecting to its own address and port is its own peer (Linux's
simultaneous open with itself): what it sends comes back to it.

A closed socket whose FIN is not answered yet lives on as an orphan in FIN_WAIT2,
holding its port, until the peer's FIN (TIME_WAIT) or a reset ends it; data arriving at
a FIN_WAIT2 socket that no longer reads resets the connection (RFC 1122, as Linux).

Data moves by reference (a ``bytes`` payload is never copied on the way), each receive
queue is bounded by the receiver's SO_RCVBUF, and closing with unread data resets the
peer, as Linux does.

Over an imperfect path (``path.perfect`` false: latency, loss, a partition...) the
same states are reached at the times Linux's would be: the SYN, the SYN-ACK and the ACK
travel (connect returns after a round trip, the listener's queue gets the connection
half a trip later), data, FINs and resets travel as segments (wire.py), and Linux's
timers decide when retrying ends with ETIMEDOUT (SYN retries, tcp_retries2,
TCP_USER_TIMEOUT, keepalive; tcp_timers.py).  An end whose FIN is still in flight
takes its next state at once, as above (no FIN_WAIT1 or LAST_ACK to see).  The perfect
path pays one check per send: nothing of this end in flight and its path perfect.

Urgent data is Linux's (tcp_check_urg, tcp_urg, tcp_recvmsg, tcp_recv_urg): the last
byte a MSG_OOB send queues is marked on the receiver (``urgent``: its distance from the
read head, the byte, and whether recv(MSG_OOB) may still take it).  The byte stays in
the stream: an ordinary read stops at the mark once it has read something, and at the
mark steps over the byte (it is lost) unless SO_OOBINLINE is on; recv(MSG_OOB) takes it
(EINVAL when none, once taken, or with SO_OOBINLINE).  A newer mark makes the older byte
ordinary data, except at the head of the queue without SO_OOBINLINE, where it goes.
POLLPRI while the byte waits, SIOCATMARK at the mark, FIONREAD counts up to the mark
(without SO_OOBINLINE).  The mark is set when its byte arrives (no TCP_URG_NOTYET: a
recv(MSG_OOB) before that says EINVAL where Linux says EAGAIN); SIGURG is not sent.
Without a mark, a read pays one check of ``urgent``.

Every method runs under the network's lock and appends the sockets whose readiness
changed to ``touched``; the driver notifies them after the lock is released (also when
the method raises, e.g. EINPROGRESS from a connect that did change things).
"""

from __future__ import annotations

import collections
import errno
import select
import socket
import struct

from ...errors import oserror
from . import tcp_timers
from .addresses import ANY, ANY4, Endpoint, is_v4, is_wildcard, to_tuple
from .network import Binding, VirtualNetwork
from .options import TCP_RMEM, Options, kernel_setting
from .pcap import ACK, FIN
from .wire import EndState, Flow, Handshake

__all__ = ["TcpSocket"]

# sk_state (Linux's names; only the states loopback lets a caller see)
CLOSE, LISTEN, SYN_SENT, ESTABLISHED = "CLOSE", "LISTEN", "SYN_SENT", "ESTABLISHED"
FIN_WAIT2, CLOSE_WAIT = "FIN_WAIT2", "CLOSE_WAIT"
# sock->state: whether connect() has been called and its outcome collected
SS_UNCONNECTED, SS_CONNECTING, SS_CONNECTED, SS_DISCONNECTING = 0, 1, 2, 3
# What Linux 6.18's tcp_disconnect leaves behind (seen on the kernel; older kernels
# differ): a socket reset after a connect (refused, or shut down while under way) may
# bind and connect again but never listen (EINVAL, after listen took its port); one
# reset from listening may listen again but never connect (EINVAL).
WAS_CONNECTING, WAS_LISTENING = 1, 2
# sk_userlocks: what bind() fixed, so a connection's end does not give it back
BINDADDR_LOCK, BINDPORT_LOCK = 4, 8
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
SHUTDOWN_MASK = RCV_SHUTDOWN | SEND_SHUTDOWN
POLLIN_SET = select.POLLIN | select.POLLRDNORM
POLLOUT_SET = select.POLLOUT | select.POLLWRNORM
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
SOMAXCONN = 4096
# Linux grows an untouched loopback window towards tcp_rmem's maximum (a few MiB seen).
AUTOTUNED_WINDOW = min(kernel_setting("net/ipv4/tcp_rmem", [4096, 131072, 6291456])[2],
                       4 * 1024 * 1024)
MSG_PEEK = int(socket.MSG_PEEK)  # a plain int: enum arithmetic is slow on the hot path
MSG_OOB = int(socket.MSG_OOB)
POLLPRI = select.POLLPRI
_OOBINLINE = (socket.SOL_SOCKET, socket.SO_OOBINLINE)
_KEEPALIVE = (socket.SOL_SOCKET, socket.SO_KEEPALIVE)
_KEEPIDLE = (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
_KEEPINTVL = (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
_KEEPCNT = (socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
_SYNCNT = (socket.IPPROTO_TCP, socket.TCP_SYNCNT)
_USER_TIMEOUT = (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
_SYSCTL_OPTIONS = {_KEEPIDLE: "tcp_keepalive_time", _KEEPINTVL: "tcp_keepalive_intvl",
                   _KEEPCNT: "tcp_keepalive_probes", _SYNCNT: "tcp_syn_retries"}
_INT = struct.Struct("@i")


class TcpSocket:
    __slots__ = ("net", "family", "opts", "state", "sock_state", "past", "userlocks", "orphan",
                 "binding", "local", "remote", "peer", "rx", "rx_size", "shutdown", "error",
                 "backlog", "max_backlog", "waiting", "listener", "done", "host", "path", "out",
                 "wire", "urgent", "__weakref__")

    def __init__(self, net: VirtualNetwork, family: int, opts: Options | None = None) -> None:
        self.net = net
        self.family = family
        self.opts = opts if opts is not None else Options(family, tcp=True)
        self.state = CLOSE
        self.sock_state = SS_UNCONNECTED
        self.past = 0  # WAS_CONNECTING, WAS_LISTENING: what a tcp_disconnect left
        self.userlocks = 0
        self.orphan = False  # closed by its owner, still finishing the connection
        self.binding: Binding | None = None  # the port table entry (Linux's inet_num)
        self.local: Endpoint | None = None  # the name (inet_saddr/inet_sport): may outlive it
        self.remote: Endpoint | None = None
        self.peer: TcpSocket | None = None
        self.rx: collections.deque[bytes] | None = None  # made on first data: idle is small
        self.rx_size = 0
        # The urgent mark: [bytes before it in rx, the byte, recv(MSG_OOB) may take it]
        self.urgent: list | None = None
        self.shutdown = 0
        self.error = 0
        self.backlog: collections.deque[TcpSocket] | None = None
        self.max_backlog = 0
        self.waiting: collections.deque[TcpSocket] | None = None  # connects beyond it
        self.listener: TcpSocket | None = None  # while waiting for room in its backlog
        self.done = False  # FIN received (SOCK_DONE): reads return EOF before any error
        self.host = net.current_host()  # where it lives: its bound address's host
        # The wire (see wire.py), used only while the path is imperfect:
        self.path = None  # the Path towards the peer, set at connect/accept
        self.out: Flow | None = None  # this end's bytes in flight, None when there are none
        self.wire: EndState | None = None  # timers and round trip, made when first needed

    # -- names ---------------------------------------------------------------------

    def _any(self) -> Endpoint:
        return Endpoint(ANY4 if self.family == socket.AF_INET else ANY, 0)

    def getsockname(self) -> tuple:
        return to_tuple(self.family, self.local or self._any())

    def getpeername(self) -> tuple:
        if self.state in (CLOSE, SYN_SENT, LISTEN) or self.remote is None:
            raise oserror(errno.ENOTCONN)
        return to_tuple(self.family, self.remote)

    def _v6only(self) -> bool:
        return self.family == socket.AF_INET6 and bool(
            self.opts.flag(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))

    def bind(self, where: Endpoint) -> None:
        # __inet_bind checks an IPv4 address before the socket's state (a second bind
        # to a foreign address is EADDRNOTAVAIL); __inet6_bind checks the state first.
        if self.family == socket.AF_INET and not self.net.is_local(where.ip):
            raise oserror(errno.EADDRNOTAVAIL)
        if self.state != CLOSE or self.binding is not None:
            raise oserror(errno.EINVAL)
        if self.family == socket.AF_INET6 and is_v4(where.ip) and self._v6only():
            raise oserror(errno.EINVAL)
        if not self.net.is_local(where.ip):
            raise oserror(errno.EADDRNOTAVAIL)
        v6only_before = self.opts.bound_to(where.ip)
        host = self.net.host_of(where.ip) or self.host  # where it lives once bound
        if self.opts.bind_without_port(where.port):
            self.local = Endpoint(where.ip, 0)  # no port until connect or listen
        else:
            try:
                self._claim(where.ip, where.port, host=host)
            except OSError:
                self.opts.unbound(v6only_before)
                if self.local is not None:  # the name a refused connect left behind:
                    # __inet_bind's failure clears the address and keeps the port.
                    self.local = Endpoint(ANY4 if self.family == socket.AF_INET else ANY,
                                          self.local.port)
                raise
        self.userlocks = (0 if is_wildcard(where.ip) else BINDADDR_LOCK) | (
            BINDPORT_LOCK if where.port else 0)
        self.host = host

    def _claim(self, ip, port: int, parity: int = 1, host=None) -> None:
        """Take ``port`` (0: an ephemeral one) on ``ip`` in the port space of ``host``
        (default: the socket's own, which a connect's source address belongs to)."""
        opts = self.opts
        host = host or self.host
        if opts.changed is None:  # every option at its default: V6ONLY, REUSE* all off
            binding = Binding(self, ip, False, False, False, host)
        else:
            binding = Binding(self, ip, self._v6only(),
                              bool(opts.flag(socket.SOL_SOCKET, socket.SO_REUSEADDR)),
                              bool(opts.flag(socket.SOL_SOCKET, socket.SO_REUSEPORT)), host)
        port = self.net.tcp.bind(binding, port, parity)
        self.binding = binding
        self.local = Endpoint(ip, port)

    def _release_port(self) -> None:
        """Leave the port table (Linux's inet_put_port); the name stays as it was."""
        if self.binding is not None and self.local is not None:
            self.net.tcp.unbind(self.binding, self.local.port)
        self.binding = None

    # -- connection setup ------------------------------------------------------------

    def listen(self, backlog: int, touched: list) -> None:
        # inet_listen looks at the states only: directions shut before (ENOTCONN, but
        # recorded) do not keep a socket from listening.
        if self.sock_state != SS_UNCONNECTED or self.state not in (CLOSE, LISTEN):
            raise oserror(errno.EINVAL)
        if self.binding is None:  # never bound, or its port given back: a new port
            self._claim((self.local or self._any()).ip, 0)  # on the address it kept
        elif self.state == CLOSE:
            self.binding.listening = True
            try:
                self.net.tcp.check(self.binding, self.local.port)
            except OSError:
                self.binding.listening = False
                raise
        if self.past & WAS_CONNECTING and self.state == CLOSE:
            # Linux 6.18 fails such a socket's listen after taking the port, and
            # keeps it (getsockname shows it, a later connect speaks from it).
            self.binding.listening = False
            raise oserror(errno.EINVAL)
        self.max_backlog = min(max(backlog, 0), SOMAXCONN)
        if self.state == CLOSE:
            self.net.tcp.listen(self.binding, self.local.port)
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

    def connect(self, where: Endpoint, touched: list, blocking: bool = False) -> None:
        """Linux's inet_stream_connect.  A new attempt raises EINPROGRESS, as a
        non-blocking connect on Linux's loopback does (the core waits for blocking
        callers); connecting again reports how it went.  ``blocking``: the caller
        would wait for the outcome, so a handshake that completes here returns
        connected at once (what the wait and the second connect would have found)."""
        if self.sock_state != SS_UNCONNECTED:
            if self.sock_state == SS_CONNECTING:
                self._connect_again(touched)
                return
            # SS_DISCONNECTING: shut down before a failed connect reported (see shut)
            raise oserror(errno.EISCONN if self.sock_state == SS_CONNECTED else errno.EINVAL)
        if self.state != CLOSE:
            raise oserror(errno.EISCONN)
        net = self.net
        target = where.ip
        route = net.route(target)
        if route.v4 and self.family == socket.AF_INET6 and self._v6only():
            raise oserror(errno.ENETUNREACH)
        if self.past & WAS_LISTENING:  # before the route: a foreign address too
            raise oserror(errno.EINVAL)
        if route.wildcard:  # Linux connects "any" to the loopback address
            target = net.loopback(route.v4 or self.family == socket.AF_INET)
            route = net.route(target)
        if not route.local:
            raise oserror(errno.ENETUNREACH)
        local = self.local
        if self.binding is None or is_wildcard(local.ip):
            # A port now, from the address bind() named if any; a socket bound to the
            # wildcard address speaks from the route's source (Linux's inet_saddr).
            named = local is not None and not is_wildcard(local.ip)
            if named:
                source = local.ip
            elif route.host is self.host:  # the usual case: a host talking to itself
                source = route.source
            else:
                source = net.source_for(self.host, route)
                if source is None:  # the host has no address of that family
                    raise oserror(errno.ENETUNREACH)
            if self.binding is None:
                self._claim(source, 0, parity=0)
            else:
                self.local = Endpoint(source, local.port)
        self.error = 0  # directions shut before connect stay shut, as on Linux
        self.done = False
        if target is where.ip and not where.flowinfo and not where.scope_id:
            self.remote = where  # as Endpoint(target, where.port), without making one
        else:
            self.remote = Endpoint(target, where.port)
        self.sock_state = SS_CONNECTING
        self.state = SYN_SENT
        path = self.path = net.path(self.host, route.host)
        back = net.path(route.host, self.host)  # what the listener's side will send on
        if not (path.perfect and back.perfect):  # the SYN travels: a round trip to wait
            self._send_syn(Handshake(target, where.port, route.v4, route.host,
                                     net.scheduler.now()), touched)
            raise oserror(errno.EINPROGRESS)
        if where.port == self.local.port and target == self.local.ip:
            self._open_with_itself(touched)
            if blocking:  # connected, or closed already by its own FIN: ECONNABORTED
                self._connect_again(touched)
                return
            raise oserror(errno.EINPROGRESS)
        listener = self._find_listener(target, where.port, route.v4, route.host)
        tap = net.tap
        if listener is None:
            if tap is not None:
                tap.syn(self)
                tap.tcp_reply_reset(self)
            self._receive_reset(touched)  # the SYN is answered with a reset: refused
        elif len(listener.backlog) > listener.max_backlog:
            self.listener = listener  # SYN_SENT until accept makes room
            listener.waiting.append(self)
            touched.append(self)
        else:
            self._join(listener, touched, back)  # touches self too
            if blocking:
                self.sock_state = SS_CONNECTED
                return
        raise oserror(errno.EINPROGRESS)

    def _open_with_itself(self, touched: list) -> None:
        """A connect to the socket's own address and port: its SYN reaches itself
        (before any listener sharing the port), and Linux's simultaneous open makes it
        its own peer: what it sends comes back to it, its FIN closes it.  Shut for
        writing before, it sends that FIN as it leaves SYN_RECV (tcp_rcv_state_process),
        and so is closed before connect() returns."""
        self.state = ESTABLISHED
        self.peer = self
        self.opts.established(self.path.mtu, self.family == socket.AF_INET6)
        if self.wire is not None:
            self.wire.last_heard = self.net.scheduler.now()
        touched.append(self)
        tap = self.net.tap
        if tap is not None:
            tap.syn(self)
            tap.syn_ack(self, self.local)
            tap.ack(self)
        if self.opts.changed is not None:
            self.keepalive_changed(touched)
        if self.shutdown & SEND_SHUTDOWN:
            self._send_fin(touched)

    def _connect_again(self, touched: list) -> None:
        """connect() once an attempt was made reports it, as Linux: EALREADY while it
        runs; once it failed, its error (ECONNABORTED if SO_ERROR took it already), the
        socket reset for a fresh attempt; once it succeeded, success, then EISCONN.
        A blocking connect in the core is this same sequence."""
        if self.state == SYN_SENT:
            raise oserror(errno.EALREADY)
        if self.state == CLOSE:
            code, self.error = self.error or errno.ECONNABORTED, 0
            self._disconnect(touched)
            raise oserror(code)
        self.sock_state = SS_CONNECTED

    def _find_listener(self, ip, port: int, v4: bool, host) -> TcpSocket | None:
        bindings = self.net.tcp.find(ip, port, v4, host)
        if len(bindings) == 1:  # the usual case: one listener on the port
            owner = bindings[0].owner
            return owner if owner.state == LISTEN else None
        listeners = [b.owner for b in bindings if b.owner.state == LISTEN]
        if len(listeners) < 2:
            return listeners[0] if listeners else None
        exact = [s for s in listeners if s.local.ip == ip]
        group = exact or listeners
        if len(group) > 1:  # SO_REUSEPORT: spread connections by the client's port
            return group[hash((self.local.ip, self.local.port)) % len(group)]
        return group[0]

    def _join(self, listener: TcpSocket, touched: list, back=None) -> None:
        """The handshake completes: a new socket for the listener's backlog, sharing
        the listener's port (and its bind locks) as an accepted socket does on Linux."""
        child = self._child_of(listener, back)
        listener.backlog.append(child)
        self.state = ESTABLISHED
        self.opts.established()
        touched += (listener, self)
        tap = self.net.tap
        if tap is not None:
            tap.syn(self)
            tap.syn_ack(self, child.local)
            tap.ack(self)
        if child.opts.changed is not None:  # SO_KEEPALIVE set on the listener
            child.keepalive_changed(touched)
            self.keepalive_changed(touched)
        elif self.opts.changed is not None:
            self.keepalive_changed(touched)
        if child.shutdown & SEND_SHUTDOWN:  # shut before listen: Linux's child sends
            child._send_fin(touched)  # its FIN once established (FIN_WAIT2)

    def _child_of(self, listener: TcpSocket, back=None) -> TcpSocket:
        """The accepted end of this connection: a new socket sharing the listener's
        port (and its bind locks), joined to this one."""
        child = TcpSocket(self.net, listener.family, listener.opts.copy())
        path = self.path
        child.opts.established(None if path.perfect else path.mtu,
                               child.family == socket.AF_INET6)
        child.local = self.remote  # the address connected to: the listener's port
        child.remote = self.local
        child.state = ESTABLISHED
        child.sock_state = SS_CONNECTED
        child.userlocks = listener.userlocks
        # The listener's host: a wildcard listener takes only its own host's traffic,
        # one bound to an address lives on that address's host.
        child.host = listener.host
        child.shutdown = listener.shutdown  # sk_clone copies directions shut before listen
        child.binding = Binding(child, child.local.ip, listener.binding.v6only,
                                listener.binding.reuseaddr, listener.binding.reuseport,
                                child.host)
        self.net.tcp.inherit(child.binding, child.local.port)
        child.peer, self.peer = self, child
        child.path = back if back is not None else self.net.path(child.host, self.host)
        return child

    def accept(self, touched: list) -> tuple[TcpSocket, tuple]:
        if self.state != LISTEN:
            raise oserror(errno.EINVAL)
        if not self.backlog:
            raise oserror(errno.EAGAIN)
        child = self.backlog.popleft()
        touched.append(self)
        if self.waiting:
            self._admit(touched)
        return child, to_tuple(self.family, child.remote)

    def window(self) -> int:
        """How many bytes may wait here unread.

        Data waits in the receiver's queue and in the sender's send queue; here both
        are the receiver's queue, so its bound is the connection's.  A sender that set
        SO_SNDBUF (Linux's SOCK_SNDBUF_LOCK) stops autotuning its queue: about that
        much fits, plus half the receiver's buffer (the window it advertises).
        Otherwise the sender's queue grows to megabytes, and the bound is SO_RCVBUF
        when the program set it, or Linux's autotuned loopback window (up to
        tcp_rmem's maximum), which ``AUTOTUNED_WINDOW`` stands for."""
        rcvbuf = self.opts.rcvbuf
        sender = self.peer
        if sender is not None and sender.opts.sndbuf_locked:
            return sender.opts.sndbuf + min(rcvbuf, TCP_RMEM) // 2
        return AUTOTUNED_WINDOW if rcvbuf == TCP_RMEM else rcvbuf

    # -- data ------------------------------------------------------------------------

    def send(self, data, flags: int, touched: list) -> int:
        if self.error:
            code, self.error = self.error, 0
            raise oserror(code)
        if self.shutdown & SEND_SHUTDOWN:
            raise oserror(errno.EPIPE)
        state = self.state
        if state != ESTABLISHED and state != CLOSE_WAIT:
            # sk_stream_wait_connect: a handshake under way may still end; else EPIPE
            raise oserror(errno.EAGAIN if state == SYN_SENT else errno.EPIPE)
        peer = self.peer
        if self.out is not None or not self.path.perfect or (
                peer is not None and not peer.path.perfect):  # (its ACKs would travel)
            return self._send_wired(data, flags, touched)
        if peer is None or (peer.shutdown & RCV_SHUTDOWN and peer.state in (FIN_WAIT2, CLOSE)):
            # Data for an end that sent its FIN and reads no more: it resets (RFC 1122).
            # What the call queued before the reset came back is what the send buffer
            # took, as on Linux.
            taken = min(len(data), self.opts.sndbuf)
            tap = self.net.tap
            if tap is not None:  # on the wire: the data, and the far end's answer
                tap.tcp_data(self, peer, bytes(memoryview(data)[:taken]), None, self._room())
                tap.reset_answer(self, peer)
            self._send_reset(touched, captured=tap is not None)
            return taken
        size = len(data)
        window = peer.window()
        room = window - peer.rx_size
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
        if flags & MSG_OOB:
            peer.take_urgent(chunk[-1], 0)
        touched.append(peer)
        tap = self.net.tap
        if tap is not None:
            tap.tcp_data(self, peer, chunk, None, self._room(), bool(flags & MSG_OOB))
            tap.ack(peer)
        if peer.rx_size >= window:
            touched.append(self)  # no longer writable
        return len(chunk)

    def recv(self, bufsize: int, flags: int, touched: list) -> bytes:
        if not self.rx:
            return self._recv_nothing(bufsize, touched)
        if self.urgent is not None:
            return self._recv_marked(bufsize, flags, touched)
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
        was_full = self.rx_size >= self.window()
        self.rx_size -= len(data)
        if not self.rx:
            touched.append(self)  # no longer readable
        peer = self.peer
        if peer is not None and (was_full or peer.out is not None):
            touched.append(peer)  # writable again
        return data

    def _recv_marked(self, bufsize: int, flags: int, touched: list) -> bytes:
        """tcp_recvmsg with an urgent mark in the queue: up to the mark; at the mark
        the byte is read as data (SO_OOBINLINE) or stepped over (lost), and the mark
        is gone once a read (not a peek) passes it."""
        urgent = self.urgent
        before = urgent[0]
        peek = flags & MSG_PEEK
        self.urgent = None  # the plain read below must not come back here
        try:
            if before:
                data = self.recv(min(bufsize, before), flags, touched)
                if not peek:
                    urgent[0] -= len(data)
                    if not urgent[0]:
                        touched.append(self)  # at the mark: maybe no longer readable
                return data
            if self._oob_inline():
                data = self.recv(bufsize, flags, touched)
                if not peek:
                    urgent = None  # read past the mark
                    touched.append(self)
                return data
            if peek:
                data = b"".join(self.rx)[1:1 + bufsize]
                return data if data else self._recv_nothing(bufsize, touched)
            self._drop_head_byte()
            urgent = None
            touched.append(self)
            if not self.rx:
                return self._recv_nothing(bufsize, touched)
            return self.recv(bufsize, flags, touched)
        finally:
            if self.rx is not None and self.urgent is None:
                self.urgent = urgent

    def _drop_head_byte(self) -> None:
        rx = self.rx
        head = rx[0]
        if len(head) == 1:
            rx.popleft()
        else:
            rx[0] = head[1:]
        self.rx_size -= 1

    def take_urgent(self, byte: int, behind: int) -> None:
        """tcp_check_urg: the byte ``behind`` bytes before the tail of the queue is the
        urgent one.  An older mark's byte at the head of the queue goes (it would be
        read again), unless SO_OOBINLINE; anywhere else it becomes ordinary data."""
        urgent = self.urgent
        if urgent is not None and not urgent[0] and not self._oob_inline():
            self._drop_head_byte()
        self.urgent = [self.rx_size - 1 - behind, byte, True]

    def recv_urgent(self, bufsize: int, flags: int, touched: list) -> bytes:
        """tcp_recv_urg (after tcp_recvmsg's ENOTCONN for a listener): the urgent
        byte, once; EINVAL when there is none, it was taken, or SO_OOBINLINE."""
        if self.state == LISTEN:
            raise oserror(errno.ENOTCONN)
        urgent = self.urgent
        if urgent is None or not urgent[2] or self._oob_inline():
            raise oserror(errno.EINVAL)
        if not flags & MSG_PEEK:
            urgent[2] = False
            touched.append(self)
        return bytes((urgent[1],)) if bufsize else b""

    def at_mark(self) -> int:
        """SIOCATMARK."""
        urgent = self.urgent
        return int(urgent is not None and not urgent[0])

    def _oob_inline(self) -> bool:
        changed = self.opts.changed
        return bool(changed and changed.get(_OOBINLINE))

    def _recv_nothing(self, bufsize: int, touched: list) -> bytes:
        """A receive with nothing queued, in tcp_recvmsg's order: EOF once a FIN came,
        then a pending error, then EOF after SHUT_RD, then "not connected"."""
        state = self.state
        if state == LISTEN:
            raise oserror(errno.ENOTCONN)
        if self.done:
            return b""
        if self.error:
            code, self.error = self.error, 0
            touched.append(self)
            raise oserror(code)
        if self.shutdown & RCV_SHUTDOWN:
            return b""
        if state == CLOSE:
            raise oserror(errno.ENOTCONN)
        # Even for 0 bytes (recvfrom/recvmsg make the call): tcp_recvmsg waits for one.
        raise oserror(errno.EAGAIN)

    def nread(self) -> int:
        """SIOCINQ (tcp_inq): up to the urgent mark, unless SO_OOBINLINE."""
        urgent = self.urgent
        if urgent is not None and not self._oob_inline():
            return urgent[0]
        return self.rx_size

    def unacknowledged(self) -> int:
        """SIOCOUTQ: bytes sent and not acknowledged yet (none on a perfect path,
        where the peer takes them at once)."""
        out = self.out
        return out.pending if out is not None else 0

    # -- teardown ------------------------------------------------------------------

    def shut(self, how: int, touched: list) -> None:
        """inet_shutdown: a listener stops listening on SHUT_RD, a connect under way
        is abandoned; otherwise the bits are set (even when unconnected: ENOTCONN, as
        Linux) and SHUT_WR sends the FIN."""
        touched.append(self)
        bits = how + 1  # SHUT_RD -> RCV_SHUTDOWN, SHUT_WR -> SEND_SHUTDOWN, both
        state = self.state
        if self.sock_state == SS_CONNECTING:  # the outcome not reported yet
            # inet_shutdown: a failed attempt leaves it SS_DISCONNECTING (connect and
            # listen are EINVAL from then on), one that succeeded connected.
            self.sock_state = SS_DISCONNECTING if state in (SYN_SENT, CLOSE) else SS_CONNECTED
        if state == LISTEN:
            if bits & RCV_SHUTDOWN:
                self._disconnect(touched)
            return
        if state == SYN_SENT:
            self._disconnect(touched)
            return
        self.shutdown |= bits
        if state == CLOSE:
            raise oserror(errno.ENOTCONN)
        if bits & SEND_SHUTDOWN and state in (ESTABLISHED, CLOSE_WAIT):
            self._send_fin(touched)

    def _room(self) -> int:
        """The receive window this end advertises (a capture shows it)."""
        return max(self.window() - self.rx_size, 0)

    def _send_fin(self, touched: list) -> None:
        """Our FIN, acknowledged at once: ESTABLISHED -> FIN_WAIT2, CLOSE_WAIT -> CLOSE.
        Over an imperfect path it follows the data in flight and reaches the peer
        when it arrives (this end takes its next state at once, see wire.py)."""
        peer = self.peer
        if self.out is not None or (self.path is not None and not self.path.perfect) or (
                peer is not None and not peer.path.perfect):
            if peer is not None:
                self._flow().finish(touched)
            peer = None
        elif self.net.tap is not None:
            self.net.tap.tcp(self, peer, FIN | ACK, window=self._room())
            if peer is not None:
                self.net.tap.ack(peer)
        if self.state == CLOSE_WAIT:
            self.shutdown = SHUTDOWN_MASK
            self.peer = None
            self._enter_close()
        else:
            self.state = FIN_WAIT2
        touched.append(self)
        if peer is not None:
            peer._receive_fin(touched)

    def _receive_fin(self, touched: list) -> None:
        """The peer will send nothing more: CLOSE_WAIT, or TIME_WAIT after our FIN."""
        self.done = True
        self.shutdown |= RCV_SHUTDOWN
        touched.append(self)
        if self.state == ESTABLISHED:
            self.state = CLOSE_WAIT
        elif self.state == FIN_WAIT2:
            if self.binding is not None:
                leaving = self.orphan or not self.userlocks & BINDPORT_LOCK  # _enter_close
                if self.net.tcp.hold_time_wait(self.binding, self.local.port, leaving):
                    self.binding = None
            self.shutdown = SHUTDOWN_MASK
            self.peer = None
            self._enter_close()

    def _send_reset(self, touched: list, captured: bool = False) -> None:
        """Abort the connection: the peer gets a reset, this socket one too.  Over an
        imperfect path the reset travels (what was in flight is dropped, as Linux
        purges its queues) and may be lost; the peer then learns at its next segment."""
        peer = self.peer
        if peer is not None and (self.out is not None or not self.path.perfect
                                 or not peer.path.perfect):
            if self.out is not None:
                self.out.kill()
                self.out = None
            self._send_rst(peer, self.path)
            self._receive_reset(touched, sever=False)
            return
        if self.net.tap is not None and not captured:
            self.net.tap.reset_from(self, peer)
        if peer is not None:
            peer._receive_reset(touched)
        self._receive_reset(touched)

    def _receive_reset(self, touched: list, sever: bool = True) -> None:
        """Linux's tcp_reset: the error depends on the state it finds.  ``sever``:
        the peer is told at once (a perfect path, or both ends reset together);
        else it learns from a reset that travels."""
        state = self.state
        if state == CLOSE:
            return
        if state == SYN_SENT:
            self._leave_waiting()
            self.error = errno.ECONNREFUSED
        else:
            self.error = errno.EPIPE if state == CLOSE_WAIT else errno.ECONNRESET
        if self.out is not None or self.wire is not None:
            self._stop_wire()
        peer, self.peer = self.peer, None
        if sever and peer is not None and peer.peer is self:
            peer.peer = None
        self.shutdown = SHUTDOWN_MASK
        self._enter_close()
        touched.append(self)

    def _enter_close(self) -> None:
        """sk_state becomes CLOSE: the port goes back unless bind() fixed it (and the
        socket is still open); the name stays, as getsockname shows on Linux."""
        self.state = CLOSE
        if self.wire is not None:
            self.wire.stop()  # no SYN or keepalive probe from a closed socket
        if self.binding is not None and (self.orphan or not self.userlocks & BINDPORT_LOCK):
            self._release_port()
        if self.orphan:
            self.rx = None
            self.rx_size = 0
            self.urgent = None

    def _disconnect(self, touched: list) -> None:
        """Linux's tcp_disconnect: back to a fresh socket that keeps what bind() fixed
        (a connect under way ends with ECONNRESET).  What it leaves: ``past``."""
        if self.state == LISTEN:
            self.past |= WAS_LISTENING
            self._stop_listening(touched)
        else:
            self.past |= WAS_CONNECTING  # refused, or shut while connecting
        if self.state == SYN_SENT:
            self._leave_waiting()
            self.error = errno.ECONNRESET
            if self.wire is not None:
                self._stop_wire()
        if self.state != CLOSE:  # tcp_set_state only on a change: a socket already
            self._enter_close()  # closed keeps the port a bind() took since
        self.shutdown = 0
        self.done = False
        self.rx = None
        self.rx_size = 0
        self.urgent = None
        self.remote = None
        self.sock_state = SS_UNCONNECTED
        if self.local is not None and not self.userlocks & BINDADDR_LOCK:
            self.local = Endpoint(self._any().ip, self.local.port)
        touched.append(self)

    def _leave_waiting(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None and listener.waiting and self in listener.waiting:
            listener.waiting.remove(self)

    def _stop_listening(self, touched: list) -> None:
        for child in list(self.backlog or ()):
            child.close(touched, reset=True)  # never accepted: the client is reset
        for client in list(self.waiting or ()):
            client._receive_reset(touched)  # refused
        self.backlog = collections.deque()
        self.waiting = collections.deque()
        if self.binding is not None:
            self.net.tcp.unlisten(self.binding, self.local.port)

    def close(self, touched: list, reset: bool = False) -> None:
        """close(2): a FIN (the socket lives on as an orphan in FIN_WAIT2 until the
        peer's FIN), or a reset when data is left unread or SO_LINGER is {1, 0}."""
        if self.state == LISTEN:
            self._stop_listening(touched)
        if self.listener is not None:
            self._leave_waiting()
        self.orphan = True
        if self.peer is not None:
            if reset or self.rx or self.opts.linger == (1, 0):
                self._send_reset(touched)
            else:
                self.shutdown = SHUTDOWN_MASK
                if self.state in (ESTABLISHED, CLOSE_WAIT):
                    self._send_fin(touched)
        if self.state != FIN_WAIT2:
            self.peer = None
            self._enter_close()

    def connection(self) -> tuple[TcpSocket, TcpSocket | None] | None:
        """Both ends of the connection this socket is an end of (the peer None while
        it is not known or gone), or None when it is not in one."""
        if self.state in (CLOSE, LISTEN):
            return None
        peer = self.peer
        if peer is None:
            return (self, None)
        return (self, peer) if id(self) < id(peer) else (peer, self)

    def abort(self, touched: list) -> None:
        """A reset reached this end (``VirtualNetwork.reset``)."""
        self._receive_reset(touched)

    def getsockopt(self, level: int, optname: int, buflen: int) -> int | bytes:
        """The option's value; the timer options a program never set read the
        network's sysctls, as Linux's (icsk_syn_retries ?: tcp_syn_retries...)."""
        key = (level, optname)
        sysctl = _SYSCTL_OPTIONS.get(key)
        if sysctl is not None and not (self.opts.changed and key in self.opts.changed):
            value = self.net.sysctl[sysctl]
            return _INT.pack(value)[:buflen] if buflen else value
        return self.opts.get(level, optname, buflen)

    # -- the wire: an imperfect path (see wire.py) ----------------------------------

    def _flow(self) -> Flow:
        out = self.out
        if out is None:
            peer = self.peer
            back = peer.path if peer.path is not None else self.net.path(peer.host, self.host)
            out = self.out = Flow(self, peer, self.path, back)
        return out

    def _send_wired(self, data, flags: int, touched: list) -> int:
        """send() while bytes travel: they take room until acknowledged."""
        peer = self.peer
        if peer is None:
            self._send_reset(touched)
            return min(len(data), self.opts.sndbuf)
        out = self._flow()
        room = peer.window() - peer.rx_size - out.pending
        if room <= 0:
            raise oserror(errno.EAGAIN)
        fits = type(data) is bytes and len(data) <= room
        chunk = data if fits else bytes(memoryview(data)[:room])
        if not chunk:
            return 0
        out.write(chunk, touched, bool(flags & MSG_OOB))
        if len(chunk) >= room:
            touched.append(self)  # no longer writable
        return len(chunk)

    def flow_idle(self, flow: Flow, touched: list) -> None:
        """Everything sent was acknowledged: a perfect path may carry the next bytes
        straight again."""
        if self.out is flow:
            self.out = None
            flow.keep_window(self.wire_state())
            touched.append(self)

    def accepts_from(self, sender: TcpSocket, data: bool) -> bool:
        """Would a new segment from ``sender`` be taken (else it is answered with a
        reset)?  Not at a closed end, nor data at one that reads no more."""
        return self.peer is sender and self.state != CLOSE and not (
            data and self.shutdown & RCV_SHUTDOWN and self.state == FIN_WAIT2)

    def refuse(self, sender: TcpSocket, flow: Flow, touched: list) -> None:
        """New data for an end that cannot take it: a reset, as Linux answers (RFC
        1122 for an end that reads no more)."""
        if self.peer is sender and self.state != CLOSE:
            self._send_reset(touched)
        else:
            self._send_rst(sender, flow.back)

    def take_data(self, data: bytes, sender: TcpSocket, touched: list,
                  urgent: int = -1) -> None:
        """``data`` arrived; ``urgent``: where in it the urgent byte is (-1: none)."""
        if self.rx is None:
            self.rx = collections.deque()
        self.rx.append(data)
        self.rx_size += len(data)
        if urgent >= 0:
            self.take_urgent(data[urgent], len(data) - 1 - urgent)
        touched.append(self)

    def take_fin(self, sender: TcpSocket, touched: list) -> None:
        if self.state in (ESTABLISHED, FIN_WAIT2):
            self._receive_fin(touched)

    def heard_from_peer(self, now: float) -> None:
        """Anything from the peer answers keepalive (tcp_ack clears probes_out)."""
        wire = self.wire_state()
        wire.last_heard = now
        wire.probes_out = 0

    def wire_state(self) -> EndState:
        wire = self.wire
        if wire is None:
            wire = self.wire = EndState()
        return wire

    def user_timeout(self) -> float:
        """TCP_USER_TIMEOUT in seconds (0: not set)."""
        changed = self.opts.changed
        return changed.get(_USER_TIMEOUT, 0) / 1000 if changed else 0.0

    def _option(self, key: tuple[int, int], sysctl: str) -> int:
        changed = self.opts.changed
        if changed and key in changed:
            return changed[key]
        return self.net.sysctl[sysctl]

    def timed_out(self, touched: list) -> None:
        """Linux's tcp_write_err: retrying lasted too long.  ETIMEDOUT, the socket
        CLOSE; the peer is not told (nothing reaches it)."""
        self._stop_wire()
        if self.state == CLOSE:
            return
        if self.state == SYN_SENT:
            self._leave_waiting()
        self.error = errno.ETIMEDOUT
        self.peer = None
        self.shutdown = SHUTDOWN_MASK
        self._enter_close()
        touched.append(self)

    def _stop_wire(self) -> None:
        """No more retransmissions, SYNs or probes from this end."""
        if self.out is not None:
            self.out.kill()
            self.out = None
        wire = self.wire
        if wire is not None:
            wire.stop()

    def _send_rst(self, target: TcpSocket, path, after: float = 0.0) -> None:
        """A reset towards ``target`` over ``path`` (lost with the path's luck)."""
        if self.net.tap is not None:
            self.net.tap.reset_from(self, target, path.mtu if path is not None else None)
        if path is None or path.lost():
            return
        scheduler = self.net.scheduler
        arrival = max(scheduler.now() + path.delay(), after)
        scheduler.call_at(arrival, target._rst_arrives, self)

    def _rst_arrives(self, touched: list, source: TcpSocket | None) -> None:
        """A reset from ``source`` (None: from a port nobody holds) arrives."""
        if self.peer is source:
            self._receive_reset(touched, sever=False)

    # -- the handshake over an imperfect path ----------------------------------------

    def _send_syn(self, handshake: Handshake, touched: list) -> None:
        """connect(): the SYN leaves now, its retransmission timer starts (1 s)."""
        self.wire_state().handshake = handshake
        self._transmit_syn(handshake)
        handshake.timer = self.net.scheduler.call_at(handshake.started + handshake.rto,
                                                     self._syn_expired, handshake)
        touched.append(self)

    def _transmit_syn(self, handshake: Handshake) -> None:
        path = self.path
        scheduler = self.net.scheduler
        now = handshake.sent_at = scheduler.now()
        leaves = path.depart(0, now)
        if self.net.tap is not None:
            self.net.tap.syn(self, path.mtu)
        if not path.lost():
            scheduler.call_at(leaves + path.delay(), self._syn_arrives, handshake)

    def _syn_expired(self, touched: list, handshake: Handshake) -> None:
        """The SYN went unanswered for an RTO: give up (tcp_syn_retries or TCP_SYNCNT
        used up, or their time, or TCP_USER_TIMEOUT), else send it again."""
        if self.wire is None or handshake is not self.wire.handshake or (
                self.state != SYN_SENT):
            return
        scheduler = self.net.scheduler
        now = scheduler.now()
        retries = self._option(_SYNCNT, "tcp_syn_retries")
        linear = self.net.sysctl.get("tcp_syn_linear_timeouts", 0)
        user_timeout = self.user_timeout()
        if tcp_timers.syn_expired(handshake.retransmits, retries, linear) or (
                tcp_timers.timed_out(now, handshake.retransmits, handshake.started, retries,
                                     user_timeout, tcp_timers.TIMEOUT_INIT)):
            self.timed_out(touched)
            return
        handshake.retransmits += 1
        self._transmit_syn(handshake)
        if handshake.retransmits > linear:  # tcp_syn_linear_timeouts: 1 s at first
            handshake.rto = min(handshake.rto * 2, tcp_timers.RTO_MAX)
        delay = tcp_timers.clamp_to_user_timeout(handshake.rto, now, handshake.started,
                                                 user_timeout)
        handshake.timer = scheduler.call_at(now + delay, self._syn_expired, handshake)

    def _syn_arrives(self, touched: list, handshake: Handshake) -> None:
        """At the listener's host: a SYN-ACK back, a reset (nobody listens), or
        nothing (a full accept queue drops the SYN, as Linux's tcp_conn_request)."""
        if self.wire is None or handshake is not self.wire.handshake:
            return
        net = self.net
        back = net.path(handshake.host, self.host)
        if handshake.port == self.local.port and handshake.ip == self.local.ip:
            # Its own SYN (see _open_with_itself): the SYN-ACK it answers itself with
            # completes the simultaneous open a trip later.
            if not back.lost():
                net.scheduler.call_at(net.scheduler.now() + back.delay(),
                                      self._own_synack_arrives, handshake)
            return
        listener = self._find_listener(handshake.ip, handshake.port, handshake.v4,
                                       handshake.host)
        tap = net.tap
        if listener is None:
            if tap is not None:
                tap.tcp_reply_reset(self, back.mtu)
            self._send_rst_from_nowhere(back)
            return
        if len(listener.backlog) > listener.max_backlog:
            return
        if tap is not None:
            tap.syn_ack(self, Endpoint(handshake.ip, handshake.port), back.mtu)
        if back.lost():
            return
        net.scheduler.call_at(net.scheduler.now() + back.delay(), self._synack_arrives,
                              handshake, listener)

    def _own_synack_arrives(self, touched: list, handshake: Handshake) -> None:
        wire = self.wire
        if wire is None or handshake is not wire.handshake or self.state != SYN_SENT:
            return
        if handshake.timer is not None:
            handshake.timer.cancel()
        wire.handshake = None
        wire.rtt.sample(self.net.scheduler.now() - handshake.sent_at)
        self._open_with_itself(touched)

    def _send_rst_from_nowhere(self, back) -> None:
        if not back.lost():
            scheduler = self.net.scheduler
            scheduler.call_at(scheduler.now() + back.delay(), self._rst_arrives, None)

    def _synack_arrives(self, touched: list, handshake: Handshake, listener: TcpSocket
                        ) -> None:
        """The SYN-ACK: connected (one round trip); the ACK goes to the listener,
        whose accept queue gets the connection when it arrives."""
        wire = self.wire
        if wire is None or handshake is not wire.handshake or self.state != SYN_SENT:
            return
        now = self.net.scheduler.now()
        if handshake.timer is not None:
            handshake.timer.cancel()
        wire.handshake = None
        # A sample even after retransmitted SYNs: Linux's timestamps tell which SYN
        # the answer is for (taken here as the last one sent).
        wire.rtt.sample(now - handshake.sent_at)
        self.state = ESTABLISHED
        self.opts.established(self.path.mtu, self.family == socket.AF_INET6)
        wire.last_heard = now
        touched.append(self)
        if listener.state != LISTEN:  # gone meanwhile: the ACK meets a reset
            self._send_rst_from_nowhere(self.net.path(handshake.host, self.host))
            return
        child = self._child_of(listener)
        child_wire = child.wire_state()
        child_wire.rtt.sample(now - handshake.sent_at)
        child_wire.last_heard = now
        if self.opts.changed is not None:
            self.keepalive_changed(touched)
        self._send_handshake_ack(child, listener, 0, touched)

    def _send_handshake_ack(self, child: TcpSocket, listener: TcpSocket, attempt: int,
                            touched: list) -> None:
        """The handshake's last ACK.  While the path is blocked the listener's
        SYN-ACK retransmissions (1 s, doubling, tcp_synack_retries) are what would
        bring it through: it is tried again at those times."""
        scheduler = self.net.scheduler
        path = self.path
        if self.net.tap is not None:
            self.net.tap.ack(self, path.mtu)
        if path.blocked:
            self._ack_again_later(child, listener, attempt, touched)
            return
        # Data may overtake the ACK (jitter): it waits in the new socket all the same.
        scheduler.call_at(scheduler.now() + path.conditions.latency, self._ack_arrives,
                          child, listener, attempt)

    def _ack_again_later(self, child: TcpSocket, listener: TcpSocket, attempt: int,
                         touched: list) -> None:
        """The ACK did not make it (a blocked path, a full accept queue): the
        listener's next SYN-ACK brings another, until tcp_synack_retries are used up;
        then the request is dropped and the client's next segment meets a reset."""
        if attempt >= self.net.sysctl["tcp_synack_retries"]:
            child.orphan = True  # never accepted: its port goes with it
            child._receive_reset(touched, sever=False)
            return
        self.net.scheduler.call_later(tcp_timers.TIMEOUT_INIT * (2 ** attempt),
                                      self._retry_ack, child, listener, attempt + 1)

    def _retry_ack(self, touched: list, child: TcpSocket, listener: TcpSocket,
                   attempt: int) -> None:
        if self.peer is child and child.state != CLOSE:
            self._send_handshake_ack(child, listener, attempt, touched)

    def _ack_arrives(self, touched: list, child: TcpSocket, listener: TcpSocket,
                     attempt: int) -> None:
        if child.state == CLOSE:
            return
        if listener.state != LISTEN:
            child._send_reset(touched)  # the listener is gone: the client is reset
            return
        if len(listener.backlog) > listener.max_backlog:  # full: the ACK is dropped
            self._ack_again_later(child, listener, attempt, touched)
            return
        listener.backlog.append(child)
        touched.append(listener)
        if child.opts.changed is not None:
            child.keepalive_changed(touched)
        if child.shutdown & SEND_SHUTDOWN:
            child._send_fin(touched)

    # -- keepalive ---------------------------------------------------------------------

    def keepalive_changed(self, touched: list) -> None:
        """SO_KEEPALIVE or TCP_KEEPIDLE changed, or the connection was established:
        (re)start or stop the keepalive timer (tcp_set_keepalive)."""
        wire = self.wire
        if wire is not None and wire.keepalive is not None:
            wire.keepalive.cancel()
            wire.keepalive = None
        if self.state in (CLOSE, LISTEN, SYN_SENT) or not self.opts.flag(*_KEEPALIVE):
            return
        wire = self.wire_state()
        scheduler = self.net.scheduler
        now = scheduler.now()
        if not wire.last_heard:
            wire.last_heard = now
        idle = self._option(_KEEPIDLE, "tcp_keepalive_time")
        when = max(wire.last_heard + idle, now)
        wire.keepalive = scheduler.call_at(when, self._keepalive_fired)

    def _keepalive_fired(self, touched: list) -> None:
        """tcp_keepalive_timer: probe an idle peer every TCP_KEEPINTVL; after
        TCP_KEEPCNT unanswered probes (or TCP_USER_TIMEOUT) the connection is dead."""
        wire = self.wire_state()
        wire.keepalive = None
        if self.state in (CLOSE, LISTEN, SYN_SENT) or not self.opts.flag(*_KEEPALIVE):
            return
        scheduler = self.net.scheduler
        now = scheduler.now()
        idle = self._option(_KEEPIDLE, "tcp_keepalive_time")
        out = self.out
        if out is not None and (out.queue or out.unsent):
            delay = idle  # data in flight: the retransmission timer watches the peer
        else:
            elapsed = now - wire.last_heard
            if elapsed >= idle - 1e-9:
                user_timeout = self.user_timeout()
                if (user_timeout and elapsed >= user_timeout and wire.probes_out > 0) or (
                        not user_timeout and
                        wire.probes_out >= self._option(_KEEPCNT, "tcp_keepalive_probes")):
                    peer = self.peer
                    if peer is not None:
                        self._send_rst(peer, self.path)  # tcp_send_active_reset
                    self.timed_out(touched)
                    return
                wire.probes_out += 1
                self._probe(now, touched)
                delay = self._option(_KEEPINTVL, "tcp_keepalive_intvl")
            else:
                delay = idle - elapsed
        wire.keepalive = scheduler.call_at(now + delay, self._keepalive_fired)

    def _probe(self, now: float, touched: list) -> None:
        """A keepalive probe (an old sequence number: the peer answers with an ACK,
        or a reset when it has no such connection)."""
        peer = self.peer
        path = self.path
        if peer is None:
            return
        if self.net.tap is not None:
            self.net.tap.keepalive_probe(self, path.mtu)
        if path.perfect and self.out is None:
            self._probe_arrives(touched, peer)
            return
        if path.lost():
            return
        self.net.scheduler.call_at(path.depart(0, now) + path.delay(), self._probe_arrives,
                                   peer)

    def _probe_arrives(self, touched: list, peer: TcpSocket) -> None:
        if self.state == CLOSE:
            return
        back = peer.path if peer.path is not None else self.net.path(peer.host, self.host)
        alive = peer.peer is self and peer.state != CLOSE
        if self.net.tap is not None and alive:
            self.net.tap.ack(peer, back.mtu)
        if back.perfect:
            if alive:
                self.heard_from_peer(self.net.scheduler.now())
            else:
                self._receive_reset(touched, sever=False)
            return
        if back.lost():
            return
        arrival = self.net.scheduler.now() + back.delay()
        if alive:
            self.net.scheduler.call_at(arrival, self._probe_answered, peer)
        else:
            self.net.scheduler.call_at(arrival, self._rst_arrives, peer)

    def _probe_answered(self, touched: list, peer: TcpSocket) -> None:
        if self.peer is peer:
            self.heard_from_peer(self.net.scheduler.now())

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
                urgent = self.urgent
                if urgent is None:
                    mask |= POLLIN_SET
                else:
                    # At the mark, the byte a read steps over is not enough to read.
                    if urgent[0] or self.rx_size > 1 or self._oob_inline():
                        mask |= POLLIN_SET
                    if urgent[2]:
                        mask |= POLLPRI
            peer = self.peer
            # An empty queue always has room (a window is never 0): no window() call.
            out = self.out
            if self.shutdown & SEND_SHUTDOWN or peer is None or (
                    out is None and (not peer.rx_size or peer.rx_size < peer.window())) or (
                    out is not None and peer.rx_size + out.pending < peer.window()):
                mask |= POLLOUT_SET
        if self.error:
            mask |= select.POLLERR
        return mask

    def take_error(self) -> int:
        code, self.error = self.error, 0
        return code
