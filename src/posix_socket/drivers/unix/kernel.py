"""Virtual AF_UNIX sockets that reach the kernel's: another process's daemon or agent.

AF_UNIX is local IPC, not the network: under the virtual preset a program still talks
to its ssh-agent, its database's socket, its session bus.  When ``connect`` or
``sendto`` names a socket file or an abstract name that no socket of the driver owns
(``Namespace.find`` raises ``KernelName``), the socket becomes the stand-in of a kernel
socket of its own for the rest of its life: its class changes to one whose methods are
that kernel socket's calls (the host driver's ops), so virtual sockets pay nothing for
the possibility.  What Linux would answer, the kernel answers: ENOENT, ECONNREFUSED for
a stale socket file, EPROTOTYPE, EAGAIN for a full backlog, getpeername, SO_PEERCRED,
EOF, shutdown.

Decisions (the README's "Unix sockets of other processes" says them for users):

* A name moves with its socket.  A socket bound (or autobound) virtually before it
  reaches the kernel gives its name to its kernel socket: the virtual socket file is
  replaced by the kernel's (same path, same mode), an abstract name is bound in the
  kernel.  The peer then sees the name, as on Linux, and its replies arrive.  A file
  unlinked or replaced meanwhile stays as it is and the kernel socket is unnamed.  From
  then on the name is the kernel's: a virtual socket addressing it goes to the kernel.
* A socket whose first kernel call fails (the kernel refuses the name) goes back to
  being virtual, its name too (the kernel socket's file becomes its binding), so a
  later connect to a virtual name works.  Would-block (a full backlog) is no failure:
  the socket stays the kernel's and the retry is the kernel's.
* One world per socket.  A datagram socket that virtual sockets depend on (one is
  connected to it, or messages wait in its queue) cannot move, and a socket that moved
  cannot reach virtual names: both are EOPNOTSUPP with a message saying so, never a
  message silently lost.  A socket that cannot move is still told what Linux tells
  it when no kernel socket would take it (ECONNREFUSED for a name nobody holds,
  ENOENT, EPROTOTYPE, EPERM): the kernel is asked with a throwaway socket in the
  same state (``_ask_kernel``), so EOPNOTSUPP only comes where a peer is really
  there.  A connected or listening stream socket is answered the same way (EISCONN,
  EINVAL once the kernel found a listener with room).
* SCM_RIGHTS over a kernel-backed socket carries kernel descriptors: files, pipes,
  kernel sockets, kernel-backed sockets (their kernel socket).  A virtual socket lives
  in this process only: EOPNOTSUPP.  Descriptors received are installed by the kernel.
* Readiness: one thread (the pump) waits on every kernel-backed socket with an
  edge-triggered epoll and calls ``notify`` when the kernel reports a change; the
  layer's waits, polls, selectors and kernel mirrors then work as for any socket of
  the driver.  A blocking ``sendto`` to a kernel receiver whose queue is full cannot
  be woken by the receiver draining (Linux sleeps on the receiver, which is not ours
  to watch): the socket polls unwritable and retries after a pause, 1 ms doubling up
  to 20 ms.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import heapq
import itertools
import os
import select
import socket
import stat
import struct
import threading
import time
from typing import Any

from ...clock import KERNEL_READINESS_THREAD
from ...driver import SocketDriver
from ...errors import oserror
from ...parking import park
from ..host import HostDriver, KernelSocket
from .base import (
    CLOSE,
    ESTABLISHED,
    LINGER,
    POLLOUT_SET,
    RMEM_DEFAULT,
    SCM_CREDENTIALS,
    SCM_RIGHTS,
    SO_PASSCRED,
    SOL_SOCKET,
    UCRED,
    WMEM_DEFAULT,
    UnixSocket,
)
from .dgram import DgramSocket, disconnect
from .names import kernel_name
from .stream import SeqpacketSocket, StreamSocket

__all__ = ["KernelBacked", "connect_out", "send_out", "start_pump"]

_HOST = HostDriver()
_KERNEL_EPOLL = select.epoll  # the kernel's: patch() puts the drop-in in the select module
_SIOCINQ, _SIOCOUTQ, _SIOCATMARK = 0x541B, 0x5411, 0x8905
_INT = struct.Struct("@i")
_EVENTS = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
_PAUSE, _PAUSE_MAX = 0.001, 0.02  # seconds: retries of a sendto into a full receiver


def crossing(detail: str) -> OSError:
    """The error for what would mix the two worlds in one socket."""
    return OSError(errno.EOPNOTSUPP, f"{os.strerror(errno.EOPNOTSUPP)}: {detail} "
                   "(posix-socket: a virtual AF_UNIX socket talks either to virtual "
                   "sockets or, once it reached another process's socket, to the kernel)")


class Link:
    """A kernel-backed socket's kernel side."""

    __slots__ = ("socket", "fd", "stalled", "pause", "took_name")

    def __init__(self, sock: socket.socket, took_name: bool = False) -> None:
        self.socket = sock
        self.fd = sock.fileno()
        self.took_name = took_name  # the virtual socket's name went to the kernel socket
        self.stalled = False  # a sendto found the receiver full: poll says unwritable
        self.pause = _PAUSE


def _kernel_socket(type: int, proto: int, fd: int | None = None) -> socket.socket:
    """A non-blocking kernel AF_UNIX socket at a parked number (out of the way of the
    program's lowest-free numbers, as Linux would have no number for it)."""
    if fd is None:
        fd = KernelSocket(socket.AF_UNIX, type | socket.SOCK_CLOEXEC, proto).detach()
    sock = KernelSocket(socket.AF_UNIX, type, proto, fileno=park(fd))
    sock.setblocking(False)
    return sock


class KernelBacked:
    """The methods of a kernel-backed socket: the kernel socket's own calls.  Each
    runs under the driver's lock and lists the socket in ``touched`` when its
    readiness may have changed, as the virtual methods do."""

    __slots__ = ()
    kernel: Link
    space: Any
    budget: Any
    type: int
    proto: int
    dead: bool

    def bind(self, raw: bytes) -> None:
        _HOST.bind(self.kernel.socket, raw)

    def listen(self, backlog: int, touched: list) -> None:
        _HOST.listen(self.kernel.socket, backlog)
        touched.append(self)

    def connect(self, name: bytes, touched: list) -> None:
        try:
            _HOST.connect(self.kernel.socket, name)
        except OSError as exc:
            _refine(self, exc, name)
            raise
        touched.append(self)

    def accept(self, touched: list) -> tuple[Any, Any]:
        fd, addr = self.kernel.socket._accept()
        new = type(self)(self.space, self.budget, self.type, self.proto)
        try:
            new.kernel = Link(_kernel_socket(self.type, self.proto, fd))
        except BaseException:
            os.close(fd)
            raise
        new.state = ESTABLISHED
        _PUMP.add(new)
        touched.append(self)
        return new, addr

    def sendto(self, raw: bytes | None, data: bytes, flags: int, rights: list | None,
               creds: tuple | None, touched: list) -> int:
        link = self.kernel
        ancdata = []
        if creds is not None:
            ancdata.append((SOL_SOCKET, SCM_CREDENTIALS, UCRED.pack(*creds)))
        if rights:
            numbers = [_kernel_number(ref) for ref in rights]
            ancdata.append((SOL_SOCKET, SCM_RIGHTS, struct.pack(f"@{len(numbers)}i",
                                                                *numbers)))
        try:
            if ancdata:
                sent = _HOST.sendmsg(link.socket, [data], ancdata, flags, raw)
            elif raw is None:
                sent = _HOST.send(link.socket, data, flags)
            else:
                sent = link.socket.sendto(data, flags, raw)
        except BlockingIOError:
            if raw is not None and isinstance(self, DgramSocket):
                _stall(self)
            raise
        except OSError as exc:
            if raw is not None:
                _refine(self, exc, kernel_name(raw) if raw else raw)
            raise
        link.pause = _PAUSE
        for ref in rights or ():
            ref.close()  # the kernel holds its own references now
        touched.append(self)
        return sent

    def recvmsg(self, bufsize: int, flags: int, ancbufsize: int, touched: list):
        buffer = bytearray(bufsize)
        length, ancdata, msg_flags, addr = self.kernel.socket.recvmsg_into(
            [buffer], ancbufsize, flags)
        touched.append(self)
        if length > bufsize:  # MSG_TRUNC asked: recv and recvfrom return the length
            return bytes(buffer) + bytes(length - bufsize), ancdata, msg_flags, addr
        return bytes(memoryview(buffer)[:length]), ancdata, msg_flags, addr

    def shut(self, how: int, touched: list) -> None:
        _HOST.shutdown(self.kernel.socket, how - 1)  # RCV/SEND bits -> SHUT_RD/WR/RDWR
        touched.append(self)

    def close(self, touched: list) -> None:
        self.dead = True
        _PUMP.remove(self)
        self.kernel.socket.close()
        touched.append(self)

    def getsockname(self) -> Any:
        return _HOST.getsockname(self.kernel.socket)

    def getpeername(self) -> Any:
        return _HOST.getpeername(self.kernel.socket)

    def getsockopt(self, optname: int, buflen: int) -> int | bytes:
        return _HOST.getsockopt(self.kernel.socket, SOL_SOCKET, optname, buflen)

    def setsockopt(self, optname: int, value: int | bytes, touched: list) -> None:
        _HOST.setsockopt(self.kernel.socket, SOL_SOCKET, optname, value)
        touched.append(self)

    def inq(self) -> int:
        return _INT.unpack(fcntl.ioctl(self.kernel.fd, _SIOCINQ, bytes(_INT.size)))[0]

    def outq(self) -> int:
        return _INT.unpack(fcntl.ioctl(self.kernel.fd, _SIOCOUTQ, bytes(_INT.size)))[0]

    def at_mark(self) -> int:
        return _INT.unpack(fcntl.ioctl(self.kernel.fd, _SIOCATMARK, bytes(_INT.size)))[0]

    def poll(self) -> int:
        link = self.kernel
        mask = _HOST.poll(link.socket)
        return mask & ~POLLOUT_SET if link.stalled else mask


class KernelStream(KernelBacked, StreamSocket):
    __slots__ = ()


class KernelSeqpacket(KernelBacked, SeqpacketSocket):
    __slots__ = ()


class KernelDgram(KernelBacked, DgramSocket):
    __slots__ = ()


_KERNEL_KIND: dict[type, type] = {StreamSocket: KernelStream, SeqpacketSocket: KernelSeqpacket,
                                  DgramSocket: KernelDgram}
_VIRTUAL_KIND = {kernel: virtual for virtual, kernel in _KERNEL_KIND.items()}


def _refine(sock: Any, exc: OSError, name: bytes | None) -> None:
    """The kernel refused a name that a virtual socket of this driver holds: say that
    this socket cannot reach it, rather than a bare ECONNREFUSED."""
    if exc.errno == errno.ECONNREFUSED and name and sock.space.owns(name, sock.type):
        raise crossing("this socket reached another process's socket, so it cannot "
                       f"reach the virtual socket bound to {name!r}") from None


def _kernel_number(ref: Any) -> int:
    number = ref.kernel_number()
    if number is None:
        raise crossing("a virtual socket cannot be passed to another process")
    return number


def _stall(sock: Any) -> None:
    """A sendto found its kernel receiver full: unwritable until a pause has passed."""
    link = sock.kernel
    link.stalled = True
    _PUMP.later(sock, link.pause)
    link.pause = min(link.pause * 2, _PAUSE_MAX)


# -- moving a socket to the kernel --------------------------------------------------------

def connect_out(sock: UnixSocket, name: bytes, touched: list) -> None:
    """``connect`` to a name only the kernel has (the driver caught KernelName)."""
    if isinstance(sock, StreamSocket):
        if sock.state != CLOSE:
            # Linux looks at the socket's own state last, after finding a listener
            # with room: only the kernel can say what comes first for its name.
            _ask_kernel(sock, name)
            raise oserror(errno.EISCONN if sock.state == ESTABLISHED else errno.EINVAL)
    else:
        _check_movable(sock, name, connecting=True)
    _reach(sock, touched, lambda: sock.connect(name, touched))
    if sock.peer is not None:  # a datagram socket's new peer: the old one is dropped
        disconnect(sock, touched)
    sock.state = ESTABLISHED


def send_out(sock: UnixSocket, raw: bytes, data: bytes, flags: int, rights: list | None,
             creds: tuple | None, touched: list) -> int:
    """A datagram ``sendto`` to a name only the kernel has."""
    _check_movable(sock, kernel_name(raw), connecting=False)
    return _reach(sock, touched, lambda: sock.sendto(raw, data, flags, rights, creds,
                                                     touched))


def _check_movable(sock: Any, name: bytes, connecting: bool) -> None:
    """A datagram socket moves only when no virtual socket depends on it.  One that
    cannot move still gets the kernel's refusal of a name nobody holds."""
    if sock.waiters:
        reason = "virtual sockets are connected to this datagram socket"
    elif sock.peer is not None and not connecting:
        reason = "this datagram socket is connected to a virtual socket"
    elif sock.rx and (sock.peer is None or not connecting):
        reason = "messages from virtual sockets wait in this socket's queue"
    else:
        return
    _ask_kernel(sock, name)
    raise crossing(reason)


def _ask_kernel(sock: Any, name: bytes) -> None:
    """Raise what Linux answers ``sock`` aimed at ``name`` (a name no virtual socket
    holds) when ``sock`` cannot become a kernel socket: nobody holds the name
    (ECONNREFUSED), no file is there (ENOENT), a socket file of another type
    (EPROTOTYPE), a datagram socket connected elsewhere (EPERM).  The kernel is asked
    with a throwaway socket of the same type in the same state, whose connect reaches
    nothing: a connected or listening stream fails after the lookup
    (EISCONN, EINVAL; EAGAIN for a full backlog, which a blocking caller retries), a
    datagram connect only picks a peer.  Returns when the name's socket would take
    ``sock`` (the caller then refuses to mix the worlds)."""
    family, kind = socket.AF_UNIX, sock.type | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    probes: list = []
    try:
        if isinstance(sock, StreamSocket) and sock.state == ESTABLISHED:
            probes.extend(_socket.socketpair(family, kind))
        else:
            probes.append(_socket.socket(family, kind))
            if isinstance(sock, StreamSocket):  # a listener
                probes[0].bind(b"")
                probes[0].listen(0)
        probes[0].connect(name)
    except OSError as exc:
        raise oserror(exc.errno) from None
    finally:
        for probe in probes:
            probe.close()


def _reach(sock: Any, touched: list, attempt: Any) -> Any:
    """Back ``sock`` with a kernel socket and make its first kernel call.  If that call
    fails (not merely would block) the socket goes back to being virtual, its name
    with it: nothing of it is the kernel's yet."""
    _become(sock, touched)
    try:
        return attempt()
    except BlockingIOError:
        raise
    except BaseException:
        _leave(sock)
        raise


def _become(sock: Any, touched: list) -> None:
    ksock = _kernel_socket(sock.type, sock.proto)
    try:
        _copy_options(sock, ksock)
        took_name = sock.name is not None and _move_name(sock, ksock)
    except BaseException:
        ksock.close()
        raise
    sock.kernel = Link(ksock, took_name)
    sock.__class__ = _KERNEL_KIND[type(sock)]
    _PUMP.add(sock)
    touched.append(sock)


def _leave(sock: Any) -> None:
    """Undo ``_become``: the kernel socket closes; a name it took comes back (its file
    stays, as every socket file does, and becomes the virtual socket's again)."""
    link = sock.kernel
    _PUMP.remove(sock)
    link.socket.close()
    sock.kernel = None
    sock.__class__ = _VIRTUAL_KIND[type(sock)]
    name = sock.name
    if link.took_name and name:
        if name[0] == 0:
            sock.space.abstract[name, sock.type] = sock
        else:
            try:
                sock.space.hold_file(sock, name)
            except OSError:
                pass  # replaced meanwhile: a name nobody reaches, as after unlink


def _copy_options(sock: UnixSocket, ksock: socket.socket) -> None:
    """What was set on the virtual socket holds for its kernel socket."""
    if sock.passcred:
        ksock.setsockopt(SOL_SOCKET, SO_PASSCRED, 1)
    if sock.sndbuf != WMEM_DEFAULT:
        ksock.setsockopt(SOL_SOCKET, socket.SO_SNDBUF, sock.sndbuf // 2)
    if sock.rcvbuf != RMEM_DEFAULT:
        ksock.setsockopt(SOL_SOCKET, socket.SO_RCVBUF, sock.rcvbuf // 2)
    if sock.linger != (0, 0):
        ksock.setsockopt(SOL_SOCKET, socket.SO_LINGER, LINGER.pack(*sock.linger))
    for optname, value in (sock.options or {}).items():
        ksock.setsockopt(SOL_SOCKET, optname, value)


def _move_name(sock: UnixSocket, ksock: socket.socket) -> bool:
    """Give the virtual socket's name to its kernel socket (see the module docstring);
    False if the name stays behind, its file gone or replaced."""
    name = sock.name
    space = sock.space
    assert name is not None
    if name[0] == 0:
        space.unbind(sock)
        try:
            ksock.bind(name)
        except OSError:
            space.abstract[name, sock.type] = sock  # still the virtual socket's
            raise
        return True
    try:
        info = os.lstat(name)
    except OSError:
        info = None
    ours = info is not None and (info.st_dev, info.st_ino) == sock.inode
    space.unbind(sock)
    if not ours or info is None:
        return False  # unlinked or replaced: Linux's socket keeps a name nobody reaches
    os.unlink(name)
    try:
        ksock.bind(name)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_IMODE(os.lstat(name).st_mode) != mode:
            os.chmod(name, mode)
    except OSError:  # lost a race for the path: the name stays behind, as above
        return False
    return True


# -- the pump: kernel readiness -> notify ---------------------------------------------------

class _Pump:
    """One daemon thread that turns kernel readiness changes of kernel-backed sockets
    into the driver's ``notify``, plus the timers that end a stalled sendto's pause.
    Started with the first kernel-backed socket; a forked child starts its own."""

    def __init__(self) -> None:
        # Re-entrant: a finalizer run by the garbage collector in the middle of the
        # pump's own bookkeeping may close a kernel-backed socket (remove).
        self._lock = threading.RLock()
        self._owners: dict[int, Any] = {}
        self._timers: list[tuple[float, int, Any]] = []
        self._order = itertools.count()
        self._epoll: Any = None
        self._wake = -1
        os.register_at_fork(after_in_child=self._after_fork)

    def add(self, sock: Any) -> None:
        with self._lock:
            self._start()
            self._owners[sock.kernel.fd] = sock
            self._epoll.register(sock.kernel.fd, _EVENTS)

    def remove(self, sock: Any) -> None:
        fd = sock.kernel.fd
        with self._lock:
            if self._owners.get(fd) is sock:
                del self._owners[fd]
                try:
                    self._epoll.unregister(fd)
                except OSError:
                    pass

    def later(self, sock: Any, delay: float) -> None:
        with self._lock:
            self._start()
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), sock))
            wake = self._wake
        os.eventfd_write(wake, 1)

    def _start(self) -> None:
        if self._epoll is not None:
            return
        made = _KERNEL_EPOLL()
        epoll = _KERNEL_EPOLL.fromfd(park(os.dup(made.fileno())))
        made.close()
        wake = park(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
        epoll.register(wake, select.EPOLLIN)
        self._epoll, self._wake = epoll, wake
        threading.Thread(target=self._run, args=(epoll, wake), daemon=True,
                         name=KERNEL_READINESS_THREAD).start()

    def _run(self, epoll: Any, wake: int) -> None:
        notify = SocketDriver.notify
        while True:
            with self._lock:
                timers = self._timers
                timeout = max(0.0, timers[0][0] - time.monotonic()) if timers else -1
            try:
                events = epoll.poll(timeout)
            except OSError:  # closed: this process forked, the child runs its own
                return
            ready = []
            with self._lock:
                if self._epoll is not epoll:
                    return
                for fd, _bits in events:
                    if fd == wake:
                        try:
                            os.eventfd_read(wake)
                        except OSError:
                            pass
                    elif fd in self._owners:
                        ready.append(self._owners[fd])
                now = time.monotonic()
                while timers and timers[0][0] <= now:
                    sock = heapq.heappop(timers)[2]
                    sock.kernel.stalled = False
                    ready.append(sock)
            for sock in ready:
                try:
                    notify(sock)
                except Exception:  # one socket's failure must not stop the others
                    pass

    def _after_fork(self) -> None:
        """The child has the kernel sockets but not the thread; the epoll it inherited
        is the parent's, so it is let go without touching its registrations."""
        self._lock = threading.RLock()
        owners, self._owners = self._owners, {}
        timers, self._timers = self._timers, []
        if self._epoll is not None:
            self._epoll.close()
            os.close(self._wake)
        self._epoll, self._wake = None, -1
        for sock in owners.values():
            try:
                self.add(sock)
            except OSError:
                pass
        for _when, _order, sock in timers:
            sock.kernel.stalled = False


_PUMP = _Pump()


def start_pump() -> None:
    """Start the pump now: it is started with the first kernel-backed socket and keeps
    its two descriptors (an epoll and an eventfd) for the life of the process, which
    a leak check started before that would otherwise count as leaked."""
    with _PUMP._lock:
        _PUMP._start()
