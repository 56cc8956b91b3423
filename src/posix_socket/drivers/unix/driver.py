"""UnixDriver: the ops table of the virtual AF_UNIX family.

``posix.socket(AF_UNIX, ...)`` and ``posix.socketpair(AF_UNIX, ...)`` under the
"virtual" preset give sockets that live in this driver: SOCK_STREAM, SOCK_DGRAM and
SOCK_SEQPACKET with Linux's semantics, path names that are real socket files on disk,
abstract names private to the driver instance, SO_PEERCRED/SO_PASSCRED and
SCM_CREDENTIALS, and SCM_RIGHTS passing any descriptor of the process.

Two things stay with the kernel on purpose:

* A name this driver's sockets do not own (a socket file bound by another process or
  the host driver, an abstract name not bound here) is the kernel's: connect/sendto to
  it makes the socket the stand-in of a kernel socket for the rest of its life
  (kernel.py), so programs keep talking to their agents and daemons.  The other way
  round cannot work: another process connecting to a path a virtual socket is bound
  to finds no kernel socket there (ECONNREFUSED).
* asyncio's self-pipe is a ``socket.socketpair()`` handed to ``signal.set_wakeup_fd``,
  and the C signal handler writes to that number directly, past any Python layer.  A
  virtual pair would swallow the wake-up, so the stdlib drop-in's ``socketpair`` keeps
  returning kernel pairs; ``posix.socketpair`` is the way to ask for a virtual one.

Not modelled: SIGURG for MSG_OOB, SO_PEEK_OFF, SO_PASSPIDFD/SO_PEERPIDFD, LSM labels,
and the garbage collector for sockets that are in flight inside themselves (a socket
sent over its own connection and then closed stays open, as with no unix_gc).

Every op takes the driver's lock, collects the sockets whose readiness changed and
notifies them after the lock is released.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from typing import Any

from ...driver import SocketDriver
from ...errors import oserror
from ...later import held_here, run_later
from . import names
from .base import (
    SCM_CREDENTIALS,
    SCM_RIGHTS,
    SOCK_DGRAM,
    SOCK_SEQPACKET,
    SOCK_STREAM,
    SOL_SOCKET,
    UCRED,
    UnixSocket,
    joined,
)
from .dgram import DgramSocket, other_waiters
from .kernel import connect_out, send_out
from .names import KernelName
from .stream import SeqpacketSocket, StreamSocket, pair

__all__ = ["UnixDriver"]

SIOCINQ = 0x541B  # FIONREAD
SIOCOUTQ = 0x5411
SIOCATMARK = 0x8905
_INT = struct.Struct("@i")
PF_UNIX = int(socket.AF_UNIX)
_KINDS = {SOCK_STREAM: StreamSocket, SOCK_DGRAM: DgramSocket,
          int(socket.SOCK_RAW): DgramSocket,  # Linux makes SOCK_RAW a datagram socket
          SOCK_SEQPACKET: SeqpacketSocket}


class UnixDriver(SocketDriver):
    """Virtual AF_UNIX sockets; each instance is its own abstract namespace."""

    name = "unix"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.space = names.Namespace()
        # Re-entrant: a finalizer run by the garbage collector inside an op may read
        # (``repr`` asks getsockname); its close is deferred instead (see ``close``).
        self.lock = threading.RLock()

    def _notify(self, touched: list) -> None:
        """Notify the sockets touched, then close the descriptors in flight dropped."""
        notify = self.notify
        dropped = []
        for item in dict.fromkeys(touched):
            if isinstance(item, UnixSocket):
                notify(item)
            else:
                dropped.append(item)
        for ref in dropped:
            ref.close()

    def _run(self, method: Any, *args: Any) -> Any:
        touched: list = []
        try:
            with self.lock:
                return method(*args, touched)
        finally:
            if touched:
                self._notify(touched)

    # -- creation ------------------------------------------------------------------

    def create(self, family: int, type: int, proto: int) -> UnixSocket:
        if family != socket.AF_UNIX:
            raise oserror(errno.EAFNOSUPPORT)
        if proto not in (0, PF_UNIX):
            raise oserror(errno.EPROTONOSUPPORT)
        kind = _KINDS.get(type)
        if kind is None:
            raise oserror(errno.ESOCKTNOSUPPORT)
        return kind(self.space, self.budget, SOCK_DGRAM if kind is DgramSocket else type,
                    proto)

    def socketpair(self, family: int, type: int, proto: int) -> tuple[Any, Any]:
        first = self.create(family, type, proto)
        second = self.create(family, type, proto)
        with self.lock:
            pair(first, second)
            other_waiters(first).add(second)
            other_waiters(second).add(first)
        return first, second

    def accept(self, sock: Any, flags: int) -> tuple[Any, Any]:
        if not isinstance(sock, StreamSocket):
            raise oserror(errno.EOPNOTSUPP)
        return self._run(sock.accept)

    def accept_blocking(self, sock: Any, flags: int) -> tuple[Any, Any]:
        if not isinstance(sock, StreamSocket):
            raise oserror(errno.EOPNOTSUPP)
        return self._run(sock.accept_waiting)

    # -- addressing and state ------------------------------------------------------

    def bind(self, sock: Any, addr: Any) -> None:
        raw = names.parse(addr)
        with self.lock:
            sock.bind(raw)

    def listen(self, sock: Any, backlog: int) -> None:
        if not isinstance(sock, StreamSocket):
            raise oserror(errno.EOPNOTSUPP)
        self._run(sock.listen, backlog)

    def connect(self, sock: Any, addr: Any) -> None:
        name = names.kernel_name(names.parse(addr))
        try:
            self._run(sock.connect, name)
        except KernelName:
            self._run(connect_out, sock, name)

    def shutdown(self, sock: Any, how: int) -> None:
        self._run(sock.shut, how + 1)  # SHUT_RD/WR/RDWR -> RCV/SEND/both bits

    def getsockname(self, sock: Any) -> Any:
        with self.lock:
            return sock.getsockname()

    def getpeername(self, sock: Any) -> Any:
        with self.lock:
            return sock.getpeername()

    def getsockopt(self, sock: Any, level: int, optname: int, buflen: int) -> int | bytes:
        if level != SOL_SOCKET:
            raise oserror(errno.EOPNOTSUPP)
        touched: list = [sock] if optname == socket.SO_ERROR else []
        try:
            with self.lock:
                return sock.getsockopt(optname, buflen)
        finally:
            if touched:
                self._notify(touched)

    def setsockopt(self, sock: Any, level: int, optname: int, value: int | bytes) -> None:
        if level != SOL_SOCKET:
            raise oserror(errno.EOPNOTSUPP)
        self._run(sock.setsockopt, optname, value)

    # -- data ----------------------------------------------------------------------

    def send(self, sock: Any, data: Any, flags: int) -> int:
        return self._run(sock.sendto, None, data if type(data) is bytes else bytes(data),
                         flags, None, None)

    def sendto(self, sock: Any, data: Any, flags: int, addr: Any) -> int:
        if addr is None:
            return self.send(sock, data, flags)
        # parsed as the stdlib does; what an address means is the socket type's business
        raw = names.parse(addr)
        data = bytes(data)
        try:
            return self._run(sock.sendto, raw, data, flags, None, None)
        except KernelName:
            return self._run(send_out, sock, raw, data, flags, None, None)

    def sendmsg(self, sock: Any, buffers: Any, ancdata: Any, flags: int, addr: Any) -> int:
        rights, creds = _control(ancdata)
        raw = None if addr is None else names.parse(addr)
        data = joined(buffers)
        try:
            return self._run(sock.sendto, raw, data, flags, rights, creds)
        except KernelName:
            return self._run(send_out, sock, raw, data, flags, rights, creds)

    def recv(self, sock: Any, bufsize: int, flags: int) -> bytes:
        if bufsize == 0:
            return b""  # like the stdlib's recv(0): no call, nothing consumed
        return self._run(sock.recvmsg, bufsize, flags, 0)[0]

    def recvfrom(self, sock: Any, bufsize: int, flags: int) -> tuple[bytes, Any]:
        data, _ancdata, _msg_flags, addr = self._run(sock.recvmsg, bufsize, flags, 0)
        return data, addr

    def recvmsg(self, sock: Any, bufsize: int, ancbufsize: int, flags: int):
        data, ancdata, msg_flags, addr = self._run(sock.recvmsg, bufsize, flags, ancbufsize)
        # recv and recvfrom grow their buffer to a MSG_TRUNC length; recvmsg does not
        return data[:bufsize], ancdata, msg_flags, addr

    def ioctl(self, sock: Any, request: int, arg: int | bytes) -> int | bytes:
        if request not in (SIOCINQ, SIOCOUTQ, SIOCATMARK):
            raise oserror(errno.ENOTTY)
        if request == SIOCATMARK and sock.type != SOCK_STREAM:
            raise oserror(errno.EOPNOTSUPP)
        if isinstance(arg, int):
            raise oserror(errno.EFAULT)  # the kernel writes through an int pointer
        with self.lock:
            if request == SIOCATMARK:
                value = sock.at_mark()
            else:
                value = sock.inq() if request == SIOCINQ else sock.outq()
        raw = bytes(arg)
        if len(raw) >= _INT.size:
            return _INT.pack(value) + raw[_INT.size:]
        return _INT.pack(value)[:len(raw)]

    def poll(self, sock: Any) -> int:
        return sock.poll()

    def kernel_number(self, sock: Any) -> int | None:
        link = sock.kernel
        return None if link is None else link.fd

    def close(self, sock: Any) -> None:
        if held_here(self.lock):
            # A finalizer inside one of our ops: closing now would change state that
            # op is in the middle of.  Close once the op lets go of the lock.
            run_later(self.close, sock)
            return
        self._run(sock.close)


def _control(ancdata: Any) -> tuple[list | None, tuple | None]:
    """Linux's __scm_send for AF_UNIX: SCM_RIGHTS (already references, from the core)
    and SCM_CREDENTIALS; other SOL_SOCKET types are EINVAL, other levels ignored."""
    rights = None
    creds = None
    for level, kind, data in ancdata:
        if level != SOL_SOCKET:
            continue
        if kind == SCM_RIGHTS:
            rights = list(data)
        elif kind == SCM_CREDENTIALS:
            if len(data) != UCRED.size:
                raise oserror(errno.EINVAL)
            creds = _checked_credentials(*UCRED.unpack(data))
        else:
            raise oserror(errno.EINVAL)
    return rights, creds


def _checked_credentials(pid: int, uid: int, gid: int) -> tuple[int, int, int]:
    """Credentials a process may claim (scm_check_creds): its own, or any when it has
    the capabilities, which here means root; the pid must exist (ESRCH)."""
    privileged = os.geteuid() == 0
    if not (pid == os.getpid() or privileged) or not (
            uid in os.getresuid() or privileged) or not (gid in os.getresgid() or privileged):
        raise oserror(errno.EPERM)
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise oserror(errno.ESRCH) from None
        except PermissionError:
            pass
    return pid, uid, gid
