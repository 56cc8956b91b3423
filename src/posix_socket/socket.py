"""A drop-in for the stdlib ``socket`` module whose sockets go through the registry.

``socket`` subclasses the stdlib's class, so ``isinstance`` checks against a
``socket.socket`` captured before patching still hold, but every method is routed
through ``posix``: the driver registered for the family serves the socket, whatever
it is.  The descriptor number of a virtual socket stays inside the layer (no kernel
mirror, no system call per readiness change) until ``fileno()`` hands it out.

Timeouts work as in CPython: a socket with a timeout has a non-blocking description,
and each call tries, then waits for readiness until the deadline, then raises
``TimeoutError("timed out")``.  A blocking socket lets the layer wait.

What is not a socket call (constants, byte-order helpers, ``inet_*``) is the stdlib's
own, re-exported.
"""

from __future__ import annotations

import errno as _errno
import fcntl as _fcntl
import io as _io
import os as _os
import socket as _stdlib
import struct as _struct
import threading as _threading
import warnings as _warnings
from collections.abc import Iterable
from typing import Any

from . import clock as _clock
from . import descriptors as _descriptors
from . import posix as _posix
from .drivers.host import HostDriver as _HostDriver
from .names import getaddrinfo as getaddrinfo
from .names import getfqdn as getfqdn
from .names import gethostbyaddr as gethostbyaddr
from .names import gethostbyname as gethostbyname
from .names import gethostbyname_ex as gethostbyname_ex
from .names import gethostname as gethostname
from .names import getnameinfo as getnameinfo
from .names import if_indextoname as if_indextoname
from .names import if_nameindex as if_nameindex
from .names import if_nametoindex as if_nametoindex
from .stacked import innermost as _innermost

__all__ = list(_stdlib.__all__)

# Everything the stdlib exports that is not about sockets themselves is the same here;
# what is defined below replaces the rest.
globals().update({name: getattr(_stdlib, name) for name in _stdlib.__all__
                  if name not in ("getaddrinfo", "getfqdn", "gethostbyaddr", "gethostbyname",
                                  "gethostbyname_ex", "gethostname", "getnameinfo",
                                  "if_nameindex", "if_nametoindex", "if_indextoname")})

error = OSError
timeout = TimeoutError
_POLLIN, _POLLOUT = 1, 4
_NONBLOCKING_TYPE = int(_stdlib.SOCK_NONBLOCK)
_CLOEXEC = int(_stdlib.SOCK_CLOEXEC)
_SOCK_TYPE_MASK = 0xF
_C = _stdlib._socket.socket  # the C base: holds the number, family, type and proto
_fileno = _C.fileno  # the number as the C base holds it, without arming anything
_KERNEL = _HostDriver()
_files = _descriptors._files
_kernel_unlinks = _descriptors.kernel_unlinks
# The C base's own calls, for sockets whose number is the kernel's (see _kernel_number).
_kernel_send, _kernel_recv = _C.send, _C.recv
_c_family, _c_type = _C.family.__get__, _C.type.__get__
# What the stdlib's family/type properties give (its _intenum_converter: the member, or
# the number itself), as lookups: calling an IntEnum costs a microsecond.
_FAMILIES = {member.value: member for member in _stdlib.AddressFamily}
_KINDS = {member.value: member for member in _stdlib.SocketKind}


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000 + 0.999))  # rounded up, as CPython's waits


class socket(_stdlib.socket):
    """A socket object over a layer descriptor (see the module docstring)."""

    # ``_kernel``: the description of the number when it was made, if the plain host
    # driver serves it (a kernel socket), else None.  ``_kernel_checked``: the
    # ``descriptors.kernel_unlinks`` int seen when the number was last found to still
    # name it (see _kernel_number), else None.
    __slots__ = ("_timeout", "_kernel", "_kernel_checked")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None) -> None:
        if fileno is None:
            family = _stdlib.AF_INET if family == -1 else family
            type = _stdlib.SOCK_STREAM if type == -1 else type
            proto = 0 if proto == -1 else proto
            number = _posix.socket(family, type | _CLOEXEC, proto, visible=False)
        else:
            number = fileno if fileno.__class__ is int and fileno >= 0 else _number_of(fileno)
            if family == -1:
                family = _posix.getsockopt(number, _stdlib.SOL_SOCKET, _stdlib.SO_DOMAIN)
            if type == -1:
                type = _posix.getsockopt(number, _stdlib.SOL_SOCKET, _stdlib.SO_TYPE)
            if proto == -1:
                proto = _posix.getsockopt(number, _stdlib.SOL_SOCKET, _stdlib.SO_PROTOCOL)
        try:
            _C.__init__(self, family, type & _SOCK_TYPE_MASK, proto, number)
        except BaseException:
            if fileno is None:
                _posix.close(number)
            raise
        self._io_refs = 0
        self._closed = False
        self._timeout: float | None = None
        checked = _kernel_unlinks[0]
        entry = _files.get(number)
        if entry is not None and entry.kernel is not None and (
                _innermost(entry.driver).__class__ is _HostDriver):
            self._kernel: Any = entry
            # Stacked (a trace): the calls go through the layer, asked anew each time.
            self._kernel_checked: int | None = (
                checked if entry.driver.__class__ is _HostDriver else None)
        else:
            self._kernel = self._kernel_checked = None
        # As CPython: SOCK_NONBLOCK means a zero timeout, else the default timeout.
        initial = 0.0 if type & _NONBLOCKING_TYPE else _stdlib.getdefaulttimeout()
        if initial is not None:
            self.settimeout(initial)

    # -- the number ----------------------------------------------------------------

    def _number(self) -> int:
        """The descriptor number, without showing it to the kernel's pollers."""
        number = _C.fileno(self)
        if number < 0:
            raise OSError(_errno.EBADF, "Bad file descriptor")
        return number

    def _kernel_number(self) -> bool:
        """Whether the number still names the kernel socket it named when this object
        was made.  Once it does not (closed, detached, replaced by dup2), the layer's
        table decides from then on.

        Such a number is the kernel socket itself (the host driver's object works on
        its numbers too): the C base's methods on it are the stdlib's calls on the
        same kernel socket, under the C base's timeout (which settimeout keeps), so
        the hot methods call them directly and skip the layer, which would only hand
        them to the kernel too.
        ``_kernel_checked`` caches the answer until a kernel socket's number goes
        anywhere (``descriptors.kernel_unlinks``).

        While a driver is stacked over the host driver (a trace), the answer is no,
        uncached: the calls go through the layer, so that the stack sees them.
        """
        checked = _kernel_unlinks[0]
        if not self._names_kernel_socket():
            return False
        if self._kernel.driver.__class__ is not _HostDriver:
            return False
        self._kernel_checked = checked
        return True

    def _names_kernel_socket(self) -> bool:
        """Whether the number still names the kernel socket it named when this object
        was made (forgotten for good once it does not)."""
        entry = self._kernel
        if entry is None:
            return False
        if _files.get(_fileno(self)) is not entry:
            self._kernel = self._kernel_checked = None
            return False
        return True

    def fileno(self) -> int:
        """The number, now also showing the socket's readiness to the kernel's
        select/poll/epoll, since the caller may hand it to them."""
        number = _C.fileno(self)
        if number >= 0:
            try:
                _posix.make_visible(number)
            except OSError:
                pass  # closed behind our back (os.close): the stdlib still answers it
        return number

    def detach(self) -> int:
        number = _C.fileno(self)
        if number >= 0:
            try:
                _posix.make_visible(number)  # the new owner may poll it anywhere
            except OSError:
                pass  # closed behind our back: detach still hands the number over
        self._closed = True
        return _C.detach(self)

    def _real_close(self) -> None:
        number = _C.detach(self)
        if number >= 0:
            _posix.close(number)

    def __del__(self) -> None:
        number = _C.fileno(self)
        if number >= 0:
            _warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            _C.detach(self)
            try:
                _posix.close(number)
            except OSError:
                pass

    def __repr__(self) -> str:
        closed = getattr(self, "_closed", False)
        # str() of the enums, as the stdlib's "%s": "AddressFamily.AF_INET" before 3.11.
        text = (f"<{type(self).__module__}.{type(self).__qualname__}"
                f"{' [closed]' if closed else ''} fd={_C.fileno(self)}, "
                f"family={self.family!s}, type={self.type!s}, proto={self.proto}")
        if not closed:
            for label, method in (("laddr", self.getsockname), ("raddr", self.getpeername)):
                try:
                    address = method()
                except OSError:
                    continue
                if address:
                    text += f", {label}={address}"
        return text + ">"

    def dup(self) -> socket:
        sock = type(self)(self.family, self.type, self.proto, fileno=dup(self._number()))
        sock.settimeout(self.gettimeout())
        return sock

    def get_inheritable(self) -> bool:
        return _os.get_inheritable(self._number())

    def set_inheritable(self, inheritable: bool) -> None:
        _os.set_inheritable(self._number(), inheritable)

    # -- blocking and timeouts -------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        return self._timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            try:
                value = float(value)
            except TypeError:
                raise TypeError("Timeout value must be int, float or None") from None
            if value != value:
                raise ValueError("Invalid value NaN (not a number)")
            if value < 0:
                raise ValueError("Timeout value out of range")
        # Kept even if the number turns out closed (EBADF), as CPython keeps it.
        self._timeout = value
        if self._names_kernel_socket():  # the C base's timeout is the one its calls use
            _C.settimeout(self, value)
        else:
            _set_nonblocking(self._number(), value is not None)

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def _call(self, events: int, op: Any, *args: Any) -> Any:
        """``op(number, *args)`` under this socket's timeout, as CPython's sock_call."""
        number = self._number()
        timeout = self._timeout
        if not timeout:  # blocking (the layer waits) or non-blocking (it does not)
            return op(number, *args)
        deadline = _clock.now() + timeout
        while True:
            try:
                return op(number, *args)
            except BlockingIOError:
                pass
            remaining = deadline - _clock.now()
            if remaining <= 0 or not _posix.poll([(number, events)], _ms(remaining)):
                raise TimeoutError("timed out")
            # Closed by another thread meanwhile: -1 (EBADF), as CPython retries on
            # the object's number, never on one the process may have reused.
            number = _fileno(self)

    # -- connections ------------------------------------------------------------------

    def bind(self, address: Any) -> None:
        _posix.bind(self._number(), address)

    def listen(self, backlog: int = min(_stdlib.SOMAXCONN, 128)) -> None:
        _posix.listen(self._number(), max(backlog, 0))

    @property
    def family(self) -> Any:
        """Read-only access to the address family for this socket."""
        family = _c_family(self)
        return _FAMILIES.get(family, family)

    @property
    def type(self) -> Any:
        """Read-only access to the socket type."""
        kind = _c_type(self)
        return _KINDS.get(kind, kind)

    def _accept(self) -> tuple[int, Any]:
        if not self._timeout:  # a closed socket's -1 gets EBADF, as from _number
            return _posix.accept4(_fileno(self), _CLOEXEC, visible=False)
        return self._call(_POLLIN, _accept_number)

    def accept(self) -> tuple[socket, Any]:
        number, address = self._accept()
        # The module's class, as CPython's accept does: an SSLSocket (which has no
        # public constructor) accepts a plain socket and wraps it itself.
        sock = _socket_class()(self.family, self.type, self.proto, fileno=number)
        if _stdlib.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, address

    def connect(self, address: Any) -> None:
        code = self._connect(address, raising=True)
        assert code == 0

    def connect_ex(self, address: Any) -> int:
        try:
            return self._connect(address, raising=False)
        except (TypeError, OverflowError) as exc:
            _name_the_caller(exc, "connect", "connect_ex")
            raise

    def _connect(self, address: Any, raising: bool) -> int:
        number = self._number()
        try:
            _posix.connect(number, address)
            return 0
        except BlockingIOError as exc:
            if exc.errno != _errno.EINPROGRESS or not self._timeout:
                if raising:
                    raise
                return exc.errno
        except OSError as exc:
            # connect_ex returns the connect's own errno; a name that does not
            # resolve fails before any connect, and raises, as in CPython.
            if raising or exc.errno is None or isinstance(exc, _stdlib.gaierror):
                raise
            return exc.errno
        # A connect under a timeout: wait for it to finish, then read its outcome.
        timeout = self._timeout
        ready = _posix.poll([(number, _POLLOUT)], -1 if timeout is None else _ms(timeout))
        if not ready:
            if raising:
                raise TimeoutError("timed out")
            return _errno.EWOULDBLOCK
        code = _posix.getsockopt(number, _stdlib.SOL_SOCKET, _stdlib.SO_ERROR)
        if code and raising:
            raise OSError(code, _os.strerror(code))
        return code

    def shutdown(self, how: int) -> None:
        _posix.shutdown(self._number(), how)

    def getsockname(self) -> Any:
        return _posix.getsockname(self._number())

    def getpeername(self) -> Any:
        return _posix.getpeername(self._number())

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> int | bytes:
        return _posix.getsockopt(self._number(), level, optname, buflen)

    def setsockopt(self, level: int, optname: int, value: Any, *optlen: Any) -> None:
        if optlen:  # (level, optname, None, optlen): the stdlib's four-argument form
            if len(optlen) > 1 or optlen[0] is None:
                raise TypeError(f"setsockopt() takes exactly 3 arguments "
                                f"({3 + len(optlen)} given)")
            _posix.setsockopt(self._number(), level, optname, value, optlen[0])
            return
        _posix.setsockopt(self._number(), level, optname, value)

    # -- data ---------------------------------------------------------------------------

    # send and recv are the hot path: on a kernel socket's number the C base's call;
    # else, without a timeout, one posix call (a closed socket's number is -1, which
    # posix answers with EBADF as _number does).

    def send(self, data: Any, flags: int = 0) -> int:
        if self._kernel_checked is _kernel_unlinks[0] or (
                self._kernel is not None and self._kernel_number()):
            return _kernel_send(self, data, flags)
        if self._timeout:
            return self._call(_POLLOUT, _posix.send, data, flags)
        return _posix.send(_fileno(self), data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send everything; a timeout bounds the whole call, as in CPython."""
        if self._kernel_checked is _kernel_unlinks[0] or (
                self._kernel is not None and self._kernel_number()):
            return _C.sendall(self, data, flags)
        view = memoryview(data).cast("B") if type(data) is not bytes else data
        total = len(view)
        number = self._number()
        timeout = self._timeout
        deadline = None if not timeout else _clock.now() + timeout
        sent = 0
        while sent < total:
            chunk = view[sent:] if sent else view
            if deadline is None:
                sent += _posix.send(number, chunk, flags)
                continue
            try:
                sent += _posix.send(number, chunk, flags)
                continue
            except BlockingIOError:
                pass
            remaining = deadline - _clock.now()
            if remaining <= 0 or not _posix.poll([(number, _POLLOUT)], _ms(remaining)):
                raise TimeoutError("timed out")

    def sendto(self, *args: Any) -> int:
        """sendto(data[, flags], address)"""
        if len(args) == 2:
            (data, target), flags = args, 0
        elif len(args) == 3:
            data, flags, target = args
        else:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args)} given)")
        if self._kernel_checked is _kernel_unlinks[0] or (
                self._kernel is not None and self._kernel_number()):
            return _C.sendto(self, *args)
        return self._call(_POLLOUT, _posix.sendto, data, flags, target)

    def sendmsg(self, buffers: Iterable[Any], ancdata: Iterable[Any] = (), flags: int = 0,
                address: Any = None) -> int:
        entry = _descriptors.lookup(self._number())
        if entry is None or entry.kernel is None or not ancdata:
            return self._call(_POLLOUT, _posix.sendmsg, buffers, ancdata, flags, address)
        try:
            ancdata = list(ancdata)
        except TypeError:  # posix.sendmsg raises the stdlib's error for it
            return self._call(_POLLOUT, _posix.sendmsg, buffers, ancdata, flags, address)
        passing = _virtual_rights_out(ancdata)
        try:
            sent = self._call(_POLLOUT, _posix.sendmsg, buffers, ancdata, flags, address)
        except BaseException:
            _virtual_rights_dropped(passing)
            raise
        _virtual_rights_sent(passing)
        return sent

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._kernel_checked is _kernel_unlinks[0] or (
                self._kernel is not None and self._kernel_number()):
            return _kernel_recv(self, bufsize, flags)
        if self._timeout:
            return self._call(_POLLIN, _posix.recv, bufsize, flags)
        return _posix.recv(_fileno(self), bufsize, flags)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        if self._kernel_checked is _kernel_unlinks[0] or (
                self._kernel is not None and self._kernel_number()):
            return _C.recvfrom(self, bufsize, flags)
        return self._call(_POLLIN, _posix.recvfrom, bufsize, flags)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0,
                flags: int = 0) -> tuple[bytes, list, int, Any]:
        data, ancdata, msg_flags, address = self._call(
            _POLLIN, _posix.recvmsg, bufsize, ancbufsize, flags)
        if ancdata and _passed:
            entry = _descriptors.lookup(self._number())
            if entry is not None and entry.kernel is not None:
                ancdata = _virtual_rights_in(ancdata, flags)
        return data, ancdata, msg_flags, address

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self._kernel_checked is _kernel_unlinks[0] or (
                self._kernel is not None and self._kernel_number()):
            return _C.recv_into(self, buffer, nbytes, flags)
        view = _writable(buffer, "recv_into")
        nbytes = _wanted(nbytes, len(view), "recv_into", "buffer too small for requested bytes")
        data = self.recv(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        if self._kernel_checked is _kernel_unlinks[0] or (
                self._kernel is not None and self._kernel_number()):
            return _C.recvfrom_into(self, buffer, nbytes, flags)
        view = _writable(buffer, "recvfrom_into")
        nbytes = _wanted(nbytes, len(view), "recvfrom_into",
                         "nbytes is greater than the length of the buffer")
        data, address = self.recvfrom(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data), address

    def recvmsg_into(self, buffers: Iterable[Any], ancbufsize: int = 0,
                     flags: int = 0) -> tuple[int, list, int, Any]:
        try:
            views = [_writable(b, "recvmsg_into") for b in buffers]
        except TypeError:
            raise TypeError("recvmsg_into() argument 1 must be an iterable") from None
        size = sum(len(v) for v in views)
        data, ancdata, msg_flags, address = self.recvmsg(size, ancbufsize, flags)
        position = 0
        for view in views:
            piece = data[position:position + len(view)]
            view[:len(piece)] = piece
            position += len(piece)
        return len(data), ancdata, msg_flags, address

    def sendmsg_afalg(self, *args: Any, **kwargs: Any) -> int:
        raise OSError(_errno.EOPNOTSUPP, "sendmsg_afalg is for the kernel's AF_ALG sockets")

    # -- sendfile: os.sendfile needs a kernel socket --------------------------------

    def _sendfile_use_sendfile(self, file: Any, offset: int = 0,
                               count: int | None = None) -> int:
        """os.sendfile for kernel sockets; a virtual socket has no kernel file to
        send to, so it reads and sends, with the same results."""
        entry = _descriptors.lookup(self._number())
        if entry is not None and entry.kernel is None:
            return self._sendfile_virtual(file, offset, count)
        return super()._sendfile_use_sendfile(file, offset, count)

    def _sendfile_virtual(self, file: Any, offset: int, count: int | None) -> int:
        """os.sendfile's contract (a regular file's descriptor, read from ``offset``
        without moving it, the file object's position set after), done with pread
        and sendall: a virtual socket has no kernel file to send to."""
        self._check_sendfile_params(file, offset, count)
        try:
            fileno = file.fileno()
        except (AttributeError, _io.UnsupportedOperation) as err:
            raise _stdlib._GiveupOnSendfile(err) from None  # not a regular file
        try:
            size = _os.fstat(fileno).st_size
        except OSError as err:
            raise _stdlib._GiveupOnSendfile(err) from None  # not a regular file
        if not size:
            return 0
        if self.gettimeout() == 0:
            raise ValueError("non-blocking sockets are not supported")
        total = 0
        try:
            while count is None or total < count:
                wanted = 65536 if count is None else min(65536, count - total)
                data = _os.pread(fileno, wanted, offset + total)
                if not data:
                    break
                self.sendall(data)
                total += len(data)
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)


# -- virtual sockets passed through kernel AF_UNIX sockets ---------------------------
#
# socketpair() gives kernel pairs (see there), and programs pass sockets over them
# (send_fds, multiprocessing.reduction, a server handing connections to workers).
# The kernel can only carry a kernel object: for a virtual socket that is its mirror,
# the socketpair end its numbers name once armed.  So the sender arms the mirror and
# holds the socket (the message keeps it open, as on Linux, even if the sender closes
# its number); a receiver that gets a descriptor of that mirror is given a number of
# the virtual socket instead.  Within this process only: another process gets the
# bare mirror.  A message never received keeps its sockets open, and so do descriptors
# the kernel dropped because the receiver's ancillary buffer was too small for them.

_passed: dict[tuple[int, int], list[Any]] = {}  # mirror's (st_dev, st_ino) -> held
_passed_lock = _threading.Lock()
_INT = _struct.calcsize("@i")


def _identity(number: int) -> tuple[int, int]:
    status = _os.fstat(number)
    return status.st_dev, status.st_ino


def _rights_numbers(ancdata: list) -> list[int]:
    numbers: list[int] = []
    for item in ancdata:
        try:
            level, kind, data = item
        except (TypeError, ValueError):
            continue  # posix.sendmsg raises the stdlib's error for it
        if level == _stdlib.SOL_SOCKET and kind == _stdlib.SCM_RIGHTS:
            try:
                view = memoryview(data).cast("B")
            except TypeError:
                continue  # likewise
            count = len(view) // _INT
            numbers += _struct.unpack(f"@{count}i", view[:count * _INT])
    return numbers


def _virtual_rights_out(ancdata: list) -> list[tuple[tuple[int, int], Any]]:
    """Arm and hold each virtual socket in the SCM_RIGHTS items (see above)."""
    passing: list[tuple[tuple[int, int], Any]] = []
    try:
        for number in _rights_numbers(ancdata):
            entry = _descriptors.lookup(number)
            if entry is None or entry.kernel is not None:
                continue  # the kernel's own: it passes as it is
            # Its own kernel object, whatever patch() decided about mirrors: the
            # receiver finds the socket by it.
            _descriptors.arm(entry)
            if entry.watch.mirror is None:
                continue  # closed meanwhile: the kernel passes what the number names
            _descriptors.hold(entry)
            passing.append((_identity(number), entry))
    except BaseException:
        _virtual_rights_dropped(passing)
        raise
    return passing


def _virtual_rights_sent(passing: list[tuple[tuple[int, int], Any]]) -> None:
    """The kernel took the message: its holds wait for the receiver."""
    with _passed_lock:
        for key, entry in passing:
            _passed.setdefault(key, []).append(entry)


def _virtual_rights_dropped(passing: list[tuple[tuple[int, int], Any]]) -> None:
    """The message was not sent: give back its holds."""
    for _key, entry in passing:
        _descriptors.drop(entry)


def _virtual_rights_in(ancdata: list, flags: int) -> list:
    """Swap each received descriptor of a passed virtual socket's mirror for a number
    of the virtual socket (same place in the list; MSG_PEEK leaves the hold)."""
    cloexec = bool(flags & _MSG_CMSG_CLOEXEC)
    peek = bool(flags & _stdlib.MSG_PEEK)
    items = []
    for level, kind, data in ancdata:
        if level != _stdlib.SOL_SOCKET or kind != _stdlib.SCM_RIGHTS:
            items.append((level, kind, data))
            continue
        count = len(data) // _INT
        numbers = list(_struct.unpack(f"@{count}i", data[:count * _INT]))
        for index, number in enumerate(numbers):
            try:
                key = _identity(number)
            except OSError:
                continue
            with _passed_lock:
                held = _passed.get(key)
                if not held:
                    continue
                entry = held[0] if peek else held.pop(0)
                if not held:
                    del _passed[key]
            _os.close(number)  # the bare mirror: its number goes to the socket
            numbers[index] = _descriptors.give_number(entry, cloexec)
            if not peek:
                _descriptors.drop(entry)
        items.append((level, kind, _struct.pack(f"@{count}i", *numbers)
                      + data[count * _INT:]))
    return items


_MSG_CMSG_CLOEXEC = getattr(_stdlib, "MSG_CMSG_CLOEXEC", 0x40000000)


def _set_nonblocking(number: int, on: bool) -> None:
    flags = _posix.fcntl(number, _fcntl.F_GETFL)
    wanted = flags | _os.O_NONBLOCK if on else flags & ~_os.O_NONBLOCK
    if wanted != flags:
        _posix.fcntl(number, _fcntl.F_SETFL, wanted)


def _accept_number(number: int) -> tuple[int, Any]:
    return _posix.accept4(number, _CLOEXEC, visible=False)


def _number_of(fileno: Any) -> int:
    try:
        number = int(fileno.__index__())
    except AttributeError:
        raise TypeError(f"'{type(fileno).__name__}' object cannot be interpreted as an "
                        "integer") from None
    if number < 0:
        raise ValueError("negative file descriptor")
    return number


def _writable(buffer: Any, name: str) -> memoryview:
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(f"{name}() argument 1 must be read-write bytes-like object, "
                        f"not {type(buffer).__name__}") from None
    if view.readonly:
        raise TypeError(f"{name}() argument 1 must be read-write bytes-like object, "
                        f"not {type(buffer).__name__}")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _wanted(nbytes: int, available: int, name: str, too_big: str) -> int:
    if nbytes < 0:
        raise ValueError(f"negative buffersize in {name}")
    if nbytes > available:
        raise ValueError(too_big)
    return nbytes


SocketType = _stdlib.SocketType  # the C base, which the class above derives from


# -- module functions over descriptors ---------------------------------------------------

def fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket:
    """A socket object on a duplicate of ``fd`` (a layer number or a kernel socket)."""
    return socket(family, type, proto, fileno=dup(fd))


def socketpair(family: int | None = None, type: int = _stdlib.SOCK_STREAM,
               proto: int = 0) -> tuple[socket, socket]:
    """As the stdlib's; an AF_UNIX pair is always the kernel's.

    asyncio's self-pipe is ``socketpair()``, and its write end goes to
    ``signal.set_wakeup_fd``, whose C handler writes to the kernel number past any
    Python layer: a virtual pair would swallow the wake-up and signal handlers would
    never run.  ``posix.socketpair(AF_UNIX, ...)`` gives a virtual pair under the
    virtual preset.
    """
    if family is None:
        family = _stdlib.AF_UNIX
    driver = _KERNEL if family == _stdlib.AF_UNIX else None
    a, b = _posix.socketpair(family, type | _CLOEXEC, proto, visible=False, driver=driver)
    return (socket(family, type, proto, fileno=a), socket(family, type, proto, fileno=b))


def dup(fd: int) -> int:
    """As ``_socket.dup``: a non-inheritable duplicate."""
    return _posix.fcntl(fd, _fcntl.F_DUPFD_CLOEXEC, 0)


def close(fd: int) -> None:
    _posix.close(fd)


def send_fds(sock: socket, buffers: Iterable[Any], fds: Iterable[int], flags: int = 0,
             address: Any = None) -> int:
    import array
    return sock.sendmsg(buffers, [(_stdlib.SOL_SOCKET, _stdlib.SCM_RIGHTS,
                                   array.array("i", fds))], flags, address)


def recv_fds(sock: socket, bufsize: int, maxfds: int, flags: int = 0
             ) -> tuple[bytes, list[int], int, Any]:
    import array
    fds = array.array("i")
    msg, ancdata, msg_flags, address = sock.recvmsg(
        bufsize, _stdlib.CMSG_LEN(maxfds * fds.itemsize), flags)
    for level, kind, data in ancdata:
        if level == _stdlib.SOL_SOCKET and kind == _stdlib.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds), msg_flags, address


def _name_the_caller(exc: BaseException, called: str, caller: str) -> None:
    """CPython words an address error with the method's name (``connect_ex(): port must
    be 0-65535.``); the layer's call underneath names itself, so say the caller's."""
    prefix = called + "(): "
    if exc.args and isinstance(exc.args[0], str) and exc.args[0].startswith(prefix):
        exc.args = (caller + exc.args[0][len(called):], *exc.args[1:])


def _socket_class() -> type[socket]:
    """The class to make sockets with: the stdlib module's, when it names ours or a
    subclass (patched, perhaps mocked further by a test), else ours."""
    current = _stdlib.socket
    return current if isinstance(current, type) and issubclass(current, socket) else socket


def create_connection(address: tuple[str, int], timeout: Any = _stdlib._GLOBAL_DEFAULT_TIMEOUT,
                      source_address: Any = None, *, all_errors: bool = False) -> socket:
    """As the stdlib's: try each address ``getaddrinfo`` gives until one connects."""
    host, port = address
    errors: list[OSError] = []
    for family, kind, proto, _, target in getaddrinfo(host, port, 0, _stdlib.SOCK_STREAM):
        sock = None
        try:
            sock = _socket_class()(family, kind, proto)
            if timeout is not _stdlib._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(target)
            errors.clear()
            return sock
        except OSError as exc:
            errors.append(exc)
            if sock is not None:
                sock.close()
    if not errors:
        raise OSError("getaddrinfo returns an empty list")
    try:
        if not all_errors:
            raise errors[0]
        raise ExceptionGroup("create_connection failed", errors)  # noqa: F821 (3.11+)
    finally:
        errors.clear()


def has_dualstack_ipv6() -> bool:
    try:
        with socket(_stdlib.AF_INET6, _stdlib.SOCK_STREAM) as sock:
            sock.setsockopt(_stdlib.IPPROTO_IPV6, _stdlib.IPV6_V6ONLY, 0)
            return True
    except OSError:
        return False


def create_server(address: tuple, *, family: int = _stdlib.AF_INET, backlog: int | None = None,
                  reuse_port: bool = False, dualstack_ipv6: bool = False) -> socket:
    """As the stdlib's: a bound, listening TCP socket."""
    if reuse_port and not hasattr(_stdlib, "SO_REUSEPORT"):
        raise ValueError("SO_REUSEPORT not supported on this platform")
    if dualstack_ipv6:
        if not has_dualstack_ipv6():
            raise ValueError("dualstack_ipv6 not supported on this platform")
        if family != _stdlib.AF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = _socket_class()(family, _stdlib.SOCK_STREAM)
    try:
        sock.setsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_REUSEPORT, 1)
        if family == _stdlib.AF_INET6:
            sock.setsockopt(_stdlib.IPPROTO_IPV6, _stdlib.IPV6_V6ONLY, int(not dualstack_ipv6))
        try:
            sock.bind(address)
        except OSError as exc:
            raise OSError(exc.errno, f"{exc.strerror} (while attempting to bind on "
                                     f"address {address!r})") from None
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise
