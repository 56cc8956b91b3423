"""A small in-memory stream driver for testing the core's waiting and readiness.

Its sockets live in Python, so everything the kernel does for host sockets (blocking,
timeouts, wake-ups, readiness visible to select/poll/epoll) must be done by the layer.
Semantics follow Linux AF_UNIX SOCK_STREAM, so scenarios can compare it to the kernel:
names are strings, ``connect`` completes at once into the listener's backlog, a closed
peer reads as EOF and writes as EPIPE, and each socket buffers at most ``capacity``
bytes it has received (senders see back-pressure).
"""

from __future__ import annotations

import errno
import select
import socket
import threading

from posix_socket import SocketDriver
from posix_socket.errors import oserror

AF_MEMORY = 250

POLLIN = select.POLLIN | select.POLLRDNORM
POLLOUT = select.POLLOUT | select.POLLWRNORM | select.POLLWRBAND
POLLHUP, POLLERR = select.POLLHUP, select.POLLERR
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)


class MemorySocket:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.inbox = bytearray()
        self.name: str | None = None
        self.peer: MemorySocket | None = None
        self.backlog: list[MemorySocket] | None = None  # set when listening
        self.max_backlog = 0
        self.rd_shut = False  # nothing more will arrive (peer closed or shut its writes)
        self.shut_rd_called = False  # this side called shutdown(SHUT_RD): peers get EPIPE
        self.wr_shut = False
        self.connected = False
        self.closed = False
        self.error = 0  # pending error (ECONNRESET), reported once, as sk_err


class MemoryDriver(SocketDriver):
    name = "memory"

    def __init__(self, capacity: int = 64 * 1024, **kwargs) -> None:
        super().__init__(**kwargs)
        self.capacity = capacity
        self.names: dict[str, MemorySocket] = {}
        self.lock = threading.RLock()
        self.init_calls = 0

    def init(self) -> None:
        self.init_calls += 1

    def create(self, family, type, proto):
        if type != socket.SOCK_STREAM:
            raise oserror(errno.ESOCKTNOSUPPORT)
        if proto:
            raise oserror(errno.EPROTONOSUPPORT)
        return MemorySocket(self.capacity)

    def socketpair(self, family, type, proto):
        a, b = self.create(family, type, proto), self.create(family, type, proto)
        self._join(a, b)
        return a, b

    def _join(self, a: MemorySocket, b: MemorySocket) -> None:
        a.peer, b.peer = b, a
        a.connected = b.connected = True

    def bind(self, sock, addr):
        if not isinstance(addr, str):
            raise TypeError(f"memory address must be str, not {type(addr).__name__}")
        with self.lock:
            if sock.name is not None:
                raise oserror(errno.EINVAL)
            if addr in self.names:
                raise oserror(errno.EADDRINUSE)
            sock.name = addr
            self.names[addr] = sock

    def listen(self, sock, backlog):
        with self.lock:
            if sock.connected:
                raise oserror(errno.EINVAL)
            if sock.name is None:
                raise oserror(errno.EINVAL)
            if sock.backlog is None:
                sock.backlog = []
            sock.max_backlog = max(backlog, 0) + 1
        self.notify(sock)

    def connect(self, sock, addr):
        if not isinstance(addr, str):
            raise TypeError(f"memory address must be str, not {type(addr).__name__}")
        with self.lock:  # Linux looks at the listener first, then at this socket
            listener = self.names.get(addr)
            if listener is None or listener.backlog is None or listener.rd_shut:
                raise oserror(errno.ECONNREFUSED)
            if len(listener.backlog) >= listener.max_backlog:
                raise oserror(errno.EAGAIN)
            if sock.connected:
                raise oserror(errno.EISCONN)
            if sock.backlog is not None:
                raise oserror(errno.EINVAL)
            server_side = MemorySocket(self.capacity)
            server_side.name = listener.name  # an accepted socket has the listener's name
            self._join(sock, server_side)
            listener.backlog.append(server_side)
        self.notify(sock)
        self.notify(listener)

    def accept(self, sock, flags):
        with self.lock:
            if sock.backlog is None:
                raise oserror(errno.EINVAL)
            if not sock.backlog:
                raise oserror(errno.EAGAIN)
            new = sock.backlog.pop(0)
        self.notify(sock)
        return new, new.peer.name or ""

    def getsockname(self, sock):
        return sock.name or ""

    def getpeername(self, sock):
        if not sock.connected:
            raise oserror(errno.ENOTCONN)
        return sock.peer.name or ""

    def getsockopt(self, sock, level, optname, buflen):
        if level == socket.SOL_SOCKET and optname == socket.SO_ERROR:
            with self.lock:
                error, sock.error = sock.error, 0
            if error:
                self.notify(sock)
            return error
        raise oserror(errno.ENOPROTOOPT)

    def setsockopt(self, sock, level, optname, value):
        raise oserror(errno.ENOPROTOOPT)

    def send(self, sock, data, flags):
        with self.lock:
            if not sock.connected:
                raise oserror(errno.ENOTCONN)
            peer = sock.peer
            if sock.wr_shut or peer is None or peer.closed or peer.shut_rd_called:
                raise oserror(errno.EPIPE)
            room = peer.capacity - len(peer.inbox)
            if room <= 0:
                raise oserror(errno.EAGAIN)
            chunk = bytes(memoryview(data)[:room])
            self.budget.charge(len(chunk))
            peer.inbox += chunk
            filled = len(peer.inbox) >= peer.capacity
        self.notify(peer)
        if filled:
            self.notify(sock)  # no longer writable
        return len(chunk)

    def recv(self, sock, bufsize, flags):
        with self.lock:
            if not sock.connected:
                raise oserror(errno.EINVAL)
            if not sock.inbox and sock.error:
                error, sock.error = sock.error, 0
                raise oserror(error)
            if not sock.inbox:
                if sock.rd_shut or bufsize == 0:
                    return b""
                raise oserror(errno.EAGAIN)
            data = bytes(sock.inbox[:bufsize])
            if not flags & socket.MSG_PEEK:
                del sock.inbox[:bufsize]
                self.budget.release(len(data))
            peer = sock.peer
        if not flags & socket.MSG_PEEK:
            self.notify(sock)  # maybe no longer readable
            if peer is not None:
                self.notify(peer)  # room again
        return data

    def shutdown(self, sock, how):
        with self.lock:  # AF_UNIX shuts down unconnected sockets too
            peer = sock.peer
            if how in (socket.SHUT_RD, socket.SHUT_RDWR):
                sock.shut_rd_called = True
                sock.rd_shut = True
            if how in (socket.SHUT_WR, socket.SHUT_RDWR):
                sock.wr_shut = True
                if peer is not None:
                    peer.rd_shut = True
        self.notify(sock)
        if peer is not None:
            self.notify(peer)

    def poll(self, sock):
        with self.lock:
            if sock.backlog is not None:
                return POLLIN if sock.backlog else 0
            if not sock.connected:
                return POLLOUT | POLLHUP | (POLLIN | POLLRDHUP if sock.rd_shut else 0)
            mask = POLLERR if sock.error else 0
            if sock.inbox or sock.rd_shut:
                mask |= POLLIN
            if sock.rd_shut:
                mask |= POLLRDHUP
            if sock.rd_shut and sock.wr_shut:
                mask |= POLLHUP
            peer = sock.peer
            if (sock.wr_shut or peer is None or peer.closed or peer.shut_rd_called
                    or len(peer.inbox) < peer.capacity):  # a send would not block
                mask |= POLLOUT
            return mask

    def close(self, sock):
        with self.lock:
            sock.closed = True
            if sock.name is not None and self.names.get(sock.name) is sock:
                del self.names[sock.name]
            pending = sock.backlog or []
            for orphan in pending:  # never accepted: their clients are reset, as on Linux
                orphan.peer.error = errno.ECONNRESET
            sock.backlog = None
            unread = bool(sock.inbox)
            self.budget.release(len(sock.inbox))
            sock.inbox.clear()
            peer = sock.peer
            if peer is not None:
                if unread:
                    peer.error = errno.ECONNRESET
                peer.rd_shut = True
                peer.wr_shut = True
        for orphan in pending:
            self.close(orphan)
        if peer is not None:
            self.notify(peer)

