"""The ops table: what every socket implementation fills in.

A driver is a class whose methods are the operations on its sockets, like Linux's
``struct proto_ops`` or Unikraft's ``posix_socket_ops``.  ``sock`` is whatever the driver's
own ``create``/``accept``/``socketpair`` returned; the layer never looks inside it.

Rules every op follows:

* Ops never block.  Where the call would have to wait they raise ``BlockingIOError``
  (EAGAIN, or EINPROGRESS from ``connect``); the layer does the waiting, the timeouts and
  the wake-ups, once, for every driver.  A driver whose sockets are kernel sockets
  (``fileno`` returns a number) is the exception: the kernel blocks for it.
* Errors are ``OSError`` with the errno Linux gives for the same call.
* Whenever ``poll(sock)`` may have changed, the driver calls ``self.notify(sock)``; that
  one call wakes blocked callers and keeps the kernel-visible readiness up to date.

An op left out fails with EOPNOTSUPP, except these fallbacks, which mirror how Linux
funnels the calls: read -> recv, write -> send, send -> sendto -> sendmsg,
recv -> recvfrom -> recvmsg.
"""

from __future__ import annotations

import errno
import select
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from . import readiness
from .errors import oserror

__all__ = ["SocketDriver", "Budget", "Address", "AncData", "NullBuffer"]

Address = Any
AncData = Sequence[tuple[int, int, bytes]]

DEFAULT_BUDGET = 64 * 1024 * 1024
# Linux's DEFAULT_POLLMASK: what a file that cannot tell reports.
DEFAULT_POLLMASK = select.POLLIN | select.POLLOUT | select.POLLRDNORM | select.POLLWRNORM


class NullBuffer:
    """The option value of ``setsockopt(level, name, None, optlen)``: no buffer at all,
    claiming ``optlen`` bytes (the stdlib passes a NULL pointer).

    Linux hands the NULL pointer to the option's own code, so what happens depends on
    when that code reads: an option that checks the length, or does not read, answers
    as for any buffer of that length (SO_BINDTODEVICE with length 0 unbinds); one that
    reads gets EFAULT.  A driver therefore sees ``len()`` as it would for bytes, and
    any read of the contents (indexing, slicing, ``bytes()``, iteration) is EFAULT.
    The layer passes ``b""`` for length 0, which Linux treats the same way.
    """

    __slots__ = ("optlen",)

    def __init__(self, optlen: int) -> None:
        self.optlen = optlen

    def __len__(self) -> int:
        return self.optlen

    def __repr__(self) -> str:
        return f"NullBuffer({self.optlen})"

    def _fault(self, *_args: Any) -> Any:
        raise oserror(errno.EFAULT)

    __getitem__ = __bytes__ = __iter__ = __buffer__ = _fault


class Budget:
    """Bounds how many bytes a driver holds in buffers; ENOBUFS past the limit.

    Drivers ``charge`` when they queue data and ``release`` when it leaves, so one
    runaway socket cannot exhaust the process.
    """

    def __init__(self, limit: int = DEFAULT_BUDGET) -> None:
        if limit < 0:
            raise ValueError("budget limit must be non-negative")
        self.limit = limit
        self.used = 0
        # Re-entrant: a socket a finalizer closes inside ``charge`` releases its bytes.
        self._lock = threading.RLock()

    def charge(self, nbytes: int) -> None:
        with self._lock:
            if self.used + nbytes > self.limit:
                raise oserror(errno.ENOBUFS)
            self.used += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.used = max(0, self.used - nbytes)

    def __repr__(self) -> str:
        return f"Budget(used={self.used}, limit={self.limit})"


def _unsupported() -> OSError:
    return oserror(errno.EOPNOTSUPP)


class SocketDriver:
    """Base class of every driver: subclass it and implement the ops your sockets support.

    ``name`` labels the driver in tables and errors; ``budget`` is its allocator.  Private
    state is simply attributes of the subclass.
    """

    name: str = ""

    def __init__(self, name: str | None = None, *, budget: Budget | None = None) -> None:
        self.name = name or self.name or type(self).__name__
        self.budget = budget if budget is not None else Budget()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- life cycle ------------------------------------------------------------------

    def init(self) -> None:
        """Called once, when the driver is first registered for a family."""

    # notify(sock): report that ``poll(sock)`` may have changed; cheap when nobody
    # is watching.  The core's function itself, so that drivers pay no extra frame.
    notify = staticmethod(readiness.changed)
    # notify_faded(sock): ``poll(sock)`` can only have lost bits (data read, an error
    # taken): kernel mirrors follow, nobody is woken.  ``notify`` is always correct too.
    notify_faded = staticmethod(readiness.faded)

    # True for a driver over kernel sockets (``fileno`` names each of them).  Such a
    # socket costs one descriptor, as on Linux: the layer lets the kernel pick its
    # number, hands that very number to the program, and moves the driver's socket to
    # another number of the same open file (``renumber``) when the program closes the
    # one it held while others remain.
    kernel_sockets: bool = False

    # True when an accepted socket starts with its listener's SO_RCVTIMEO and
    # SO_SNDTIMEO, which the layer keeps for every virtual socket: Linux's TCP copies
    # the listener (sk_clone), its AF_UNIX makes the accepted socket afresh.
    accept_inherits_timeouts: bool = False

    # True when a blocking recvfrom/recvmsg of 0 bytes on a stream socket with nothing
    # queued waits once (for data, an error, the end or SO_RCVTIMEO) and then returns
    # 0 bytes, as Linux's TCP does (tcp_recvmsg asks for at least a byte, but stops
    # once 0 are left to copy); otherwise it is any receive (AF_UNIX: EAGAIN).
    empty_stream_receive_waits_once: bool = False

    def fileno(self, sock: Any) -> int | None:
        """The kernel descriptor that *is* this socket, for drivers over kernel sockets.

        Return None (the default) for sockets that live in Python: the layer then gives
        the socket a descriptor of its own and mirrors its readiness to the kernel.
        A driver that returns a number sets ``kernel_sockets`` and implements
        ``renumber``.
        """
        return None

    def renumber(self, sock: Any, fd: int | None) -> None:
        """Point a kernel socket at ``fd``, another descriptor of its open file, without
        closing the one it held (the layer closes or hands that over itself); None:
        at no descriptor (its number was closed or replaced behind its back), so that
        ``close`` closes nothing.  Only for drivers with ``kernel_sockets``."""
        raise NotImplementedError(f"{self.name} has no kernel sockets to renumber")

    def kernel_number(self, sock: Any) -> int | None:
        """The kernel descriptor a Python socket has come to stand for, if any (a
        virtual AF_UNIX socket connected to another process's socket).  SCM_RIGHTS
        across a kernel socket carries that descriptor; a socket without one cannot
        leave the process."""
        return None

    # -- creation ----------------------------------------------------------------------

    def create(self, family: int, type: int, proto: int) -> Any:
        raise _unsupported()

    def socketpair(self, family: int, type: int, proto: int) -> tuple[Any, Any]:
        raise _unsupported()

    def accept(self, sock: Any, flags: int) -> tuple[Any, Address]:
        raise _unsupported()

    def accept_blocking(self, sock: Any, flags: int) -> tuple[Any, Address]:
        """accept for a caller that waits for a connection (a blocking socket).

        The default is ``accept``: BlockingIOError while nothing is queued, and the
        layer waits for the socket to poll readable and asks again (with this op).  A
        driver whose blocking accept fails where a non-blocking one would block
        overrides it (Linux's AF_UNIX listener shut for reading polls readable, says
        EAGAIN to a non-blocking accept and EINVAL at once to a blocking one).
        """
        return self.accept(sock, flags)

    # -- addressing and state ----------------------------------------------------------

    def bind(self, sock: Any, addr: Address) -> None:
        raise _unsupported()

    def listen(self, sock: Any, backlog: int) -> None:
        raise _unsupported()

    def connect(self, sock: Any, addr: Address) -> None:
        """Connect, or raise BlockingIOError EINPROGRESS while the attempt runs.

        As on Linux, calling connect again reports the attempt: EALREADY while it
        runs, then once its outcome (success or the error), then EISCONN.  A blocking
        caller's connect is exactly that sequence, run by the layer.
        """
        raise _unsupported()

    def connect_blocking(self, sock: Any, addr: Address) -> None:
        """connect for a caller that waits for the outcome (a blocking socket).

        The default is ``connect``: the layer then runs the sequence ``connect``
        describes.  A driver whose handshake can end inside the call overrides it to
        return once connected, sparing the EINPROGRESS exception and the second
        connect that would only collect the same success.  Anything it cannot finish
        at once it reports exactly as ``connect`` does.
        """
        self.connect(sock, addr)

    def shutdown(self, sock: Any, how: int) -> None:
        raise _unsupported()

    def getsockname(self, sock: Any) -> Address:
        raise _unsupported()

    def getpeername(self, sock: Any) -> Address:
        raise _unsupported()

    def getsockopt(self, sock: Any, level: int, optname: int, buflen: int) -> int | bytes:
        raise _unsupported()

    def setsockopt(self, sock: Any, level: int, optname: int,
                   value: int | bytes | NullBuffer) -> None:
        """``value`` is an int, bytes, or a NullBuffer (the stdlib's four-argument form).

        For SOL_SOCKET options but SO_BINDTODEVICE the layer has already checked, as
        Linux does for every family, that the value is an int or at least four bytes."""
        raise _unsupported()

    # -- data: the fallbacks funnel everything into sendmsg/recvmsg ----------------------

    def keep_error(self, sock: Any, code: int) -> None:
        """A blocking send that had queued part of its data then failed with ``code``
        returns the count; Linux leaves such an error pending for the next call
        (tcp_sendmsg reports sk_err only when it copied nothing).  A driver whose
        sockets keep a pending error puts it back here; by default it is dropped."""


    def send(self, sock: Any, data: bytes, flags: int) -> int:
        return self.sendto(sock, data, flags, None)

    def sendto(self, sock: Any, data: bytes, flags: int, addr: Address | None) -> int:
        return self.sendmsg(sock, [data], (), flags, addr)

    def sendmsg(
        self,
        sock: Any,
        buffers: Iterable[bytes],
        ancdata: AncData,
        flags: int,
        addr: Address | None,
    ) -> int:
        raise _unsupported()

    def recv(self, sock: Any, bufsize: int, flags: int) -> bytes:
        return self.recvfrom(sock, bufsize, flags)[0]

    def recvfrom(self, sock: Any, bufsize: int, flags: int) -> tuple[bytes, Address]:
        data, _ancdata, _msg_flags, addr = self.recvmsg(sock, bufsize, 0, flags)
        return data, addr

    def recvmsg(
        self, sock: Any, bufsize: int, ancbufsize: int, flags: int
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Address]:
        raise _unsupported()

    def read(self, sock: Any, n: int) -> bytes:
        return self.recv(sock, n, 0)

    def write(self, sock: Any, data: bytes) -> int:
        return self.send(sock, data, 0)

    def ioctl(self, sock: Any, request: int, arg: int | bytes) -> int | bytes:
        raise _unsupported()

    def poll(self, sock: Any) -> int:
        """Current readiness as poll(2) revents (POLLIN, POLLOUT, POLLERR, POLLHUP, ...).

        Without it a socket is always ready, as Linux treats a file without a poll
        method; such a driver's ops should then never raise BlockingIOError.
        """
        return DEFAULT_POLLMASK

    def close(self, sock: Any) -> None:
        """Release the socket; called once, when its last descriptor is closed (for a
        kernel socket: with that descriptor, which it closes)."""
