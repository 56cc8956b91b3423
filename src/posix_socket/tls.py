"""TLS on virtual sockets: ``ssl.SSLContext.wrap_socket`` for drop-in sockets.

The stdlib's ``SSLSocket`` hands ``fileno()`` to OpenSSL, which then reads and writes
that number with the kernel.  A virtual socket's number names a kernel object that
carries no data (only a mirror of readiness), so a handshake over it waits forever.

This module's ``SSLSocket`` subclasses the stdlib's (``isinstance`` holds, and every
method the stdlib defines keeps its exact behaviour: argument checks, ragged-EOF
suppression, ``sendall``, ``sendfile``, ``makefile``, ``unwrap``, the queries).  What it
changes is the object those methods call for TLS: instead of OpenSSL's C object bound to
a descriptor, a ``_TLSChannel`` -- an ``ssl.SSLObject`` over two ``ssl.MemoryBIO`` s --
which moves ciphertext through the drop-in socket's own ``send``/``recv``, so the
layer's blocking, timeouts, non-blocking mode and wake-ups apply.  The channel keeps
the C object's contract: blocking calls finish, a timeout bounds each operation
(``TimeoutError("The read operation timed out")`` and its siblings), and a
non-blocking socket gets ``SSLWantReadError``/``SSLWantWriteError`` where OpenSSL
would give them.

``replacements()`` says what ``patch()`` sets: ``SSLContext.wrap_socket`` becomes
``wrap_socket`` below, which hands anything but a virtual drop-in socket to the
stdlib's own (kernel sockets -- the host preset, kernel socketpairs -- get the stdlib's
``ssl.SSLSocket``, untouched) and wraps a virtual one with ``virtual_class()`` of the
context's ``sslsocket_class``.
"""

from __future__ import annotations

import _socket
import errno
import threading
import weakref
from typing import Any

from . import clock as _clock
from . import descriptors as _descriptors
from . import posix as _posix
from . import socket as _dropin_module
from .drivers.host import KernelSocket as _KernelSocket
from .socket import socket as _DropIn

try:
    import ssl as _stdssl
except ImportError:  # Python built without OpenSSL: nothing to patch
    _stdssl = None  # type: ignore[assignment]

__all__ = ["SSLSocket", "wrap_socket", "virtual_class", "is_virtual", "replacements"]

_POLLIN, _POLLOUT = 1, 4
_MSG_DONTWAIT = _socket.MSG_DONTWAIT
_HEADER = 5  # a TLS record header: type, version (2 bytes), length (2 bytes)
_RECORD = 16384  # the most plaintext one TLS record carries
# What a TLS record header starts with (change_cipher_spec, alert, handshake,
# application_data; major version 3) and the longest record body OpenSSL takes.
_RECORD_TYPES = frozenset((20, 21, 22, 23))
_MAX_RECORD = _RECORD + 2048
# Plaintext encrypted per send: a few records, so bulk writes make few sends while
# at most this much (and its record overhead) waits in memory when the socket is full.
_WRITE_BATCH = 4 * _RECORD


def is_virtual(sock: object) -> bool:
    """Whether ``sock`` is a drop-in socket whose number the kernel cannot serve I/O
    on (a virtual driver's), so OpenSSL must not be given it."""
    if not isinstance(sock, _DropIn):
        return False
    number = _socket.socket.fileno(sock)  # the C base's: does not arm the kernel mirror
    entry = _descriptors.lookup(number) if number >= 0 else None
    return entry is not None and entry.kernel is None


def replacements() -> list[tuple[object, str, object]]:
    """``(object, attribute, value)`` for ``patch()`` to set and later restore:

    * ``ssl.SSLContext.wrap_socket`` (so ``ssl.wrap_socket``, http.client, urllib,
      asyncio's blocking callers ... too): ``wrap_socket`` below;
    * ``ssl.create_connection``, which ``ssl`` imported from ``socket`` by name, so
      ``ssl.get_server_certificate`` connects on the registered drivers too.
    """
    if _stdssl is None:
        return []
    return [(_stdssl.SSLContext, "wrap_socket", wrap_socket),
            (_stdssl, "create_connection", _dropin_module.create_connection)]


def wrap_socket(self: Any, sock: Any, server_side: bool = False,
                do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                server_hostname: str | None = None, session: Any = None) -> Any:
    """``SSLContext.wrap_socket``: the stdlib's own for anything but a virtual
    socket; for a virtual one, the context's ``sslsocket_class`` made to work on it
    (``virtual_class``), so a program's own SSLSocket subclass stays its class.

    ``sock`` may also be an object standing in for a socket (CPython's test_asyncio
    wraps its server's sockets in a proxy that forwards every attribute): the
    stdlib's ``_create`` only asks it for ``fileno()``, ``detach()`` and the like, so
    such a proxy over a layer socket is first traded for a drop-in on its number.
    """
    sock = _socket_behind(sock, context=self, server_side=server_side,
                          server_hostname=server_hostname, session=session)
    if not is_virtual(sock):
        if isinstance(sock, _DropIn) and not issubclass(self.sslsocket_class, _DropIn):
            sock = _handed_to_the_kernel(sock)
        return _STDLIB_WRAP_SOCKET(self, sock, server_side, do_handshake_on_connect,
                                   suppress_ragged_eofs, server_hostname, session)
    return virtual_class(self.sslsocket_class)._create(
        sock=sock, server_side=server_side, do_handshake_on_connect=do_handshake_on_connect,
        suppress_ragged_eofs=suppress_ragged_eofs, server_hostname=server_hostname,
        context=self, session=session)


def _check_wrap_arguments(sock: Any, context: Any, server_side: bool,
                          server_hostname: str | None, session: Any) -> None:
    """What the stdlib's ``SSLSocket._create`` rejects before it takes the socket,
    in its order (the socket is still the caller's when these raise)."""
    if sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_TYPE) != _socket.SOCK_STREAM:
        raise NotImplementedError("only stream sockets are supported")
    if server_side and server_hostname:
        raise ValueError("server_hostname can only be specified in client mode")
    if server_side and session is not None:
        raise ValueError("session can only be specified in client mode")
    if context.check_hostname and not server_hostname:
        raise ValueError("check_hostname requires server_hostname")


def _socket_behind(sock: Any, context: Any, server_side: bool,
                   server_hostname: str | None, session: Any) -> Any:
    """A drop-in socket for an object that only stands in for a layer socket.

    Handed such a proxy, the stdlib would give OpenSSL its number (a virtual socket's
    carries no data: the handshake waits forever) or, for a kernel socket of the
    layer, let the C object close the number while the layer's own descriptor of it
    keeps the connection open (the peer never sees EOF).  So the proxy gives its
    number up (``detach()``, as the stdlib's ``_create`` would make it) to a drop-in,
    which the layer then wraps as it wraps its own sockets.  Anything else -- a real
    socket object, a number the layer does not own -- is returned as it is.
    """
    if isinstance(sock, _socket.socket):
        return sock
    try:
        number = sock.fileno()
    except Exception:
        return sock  # the stdlib's _create raises for it, as it would
    if not isinstance(number, int) or number < 0 or _descriptors.lookup(number) is None:
        return sock
    _check_wrap_arguments(sock, context, server_side, server_hostname, session)
    family, kind, proto = sock.family, sock.type, sock.proto
    timeout = sock.gettimeout()
    number = sock.detach()
    plain = _DropIn(family, kind, proto, fileno=number)
    plain.settimeout(timeout)
    return plain


def _handed_to_the_kernel(sock: Any) -> Any:
    """A kernel socket of the layer, as a plain kernel socket object the layer lets go.

    ``ssl`` imported before ``patch()`` derives its SSLSocket from the stdlib's own
    class, which reads, writes and closes the number in C, past the layer.  Such a
    close would leave the layer's table naming a number the kernel gives out again,
    with the host driver's object on it.  So the number leaves the table first (the
    object lets go of it), and the SSLSocket alone holds it, as on the kernel.
    """
    timeout = sock.gettimeout()
    family, kind, proto = sock.family, sock.type, sock.proto
    number = sock.detach()
    _descriptors.forget(number)  # the number itself still names the kernel socket
    plain = _KernelSocket(family, kind, proto, fileno=number)
    plain.settimeout(timeout)
    return plain


# A program's SSLSocket subclass -> the class virtual_class() made for it (which keeps
# it alive as its base: one class per subclass a program defines, for its lifetime).
_combined: dict[type, type] = {}


def virtual_class(cls: type) -> type:
    """The class to wrap a virtual socket with, for a context's ``sslsocket_class``.

    The stdlib's ``SSLSocket`` becomes this module's.  A program's subclass ``C`` of
    it becomes a class deriving from both ``C`` and this module's, named as ``C``:
    ``C``'s methods come first and ``isinstance(s, C)`` holds, while the socket's TLS
    goes through the drop-in.  (CPython's test_ssl sets such a class.)
    """
    if cls is _stdssl.SSLSocket:
        return SSLSocket
    if (not isinstance(cls, type) or not issubclass(cls, _stdssl.SSLSocket)
            or issubclass(cls, SSLSocket)):
        return cls  # not an SSLSocket at all (its own business), or ready already
    found = _combined.get(cls)
    if found is None:
        try:
            found = type(cls.__name__, (cls, SSLSocket),
                         {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                          "__doc__": cls.__doc__})
        except TypeError:  # its __slots__ cannot sit beside the drop-in's
            found = SSLSocket
        _combined[cls] = found
    return found


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000 + 0.999))


def _want_write() -> Exception:
    exc = _stdssl.SSLWantWriteError(_stdssl.SSL_ERROR_WANT_WRITE,
                                 "The operation did not complete (write)")
    exc.library = None
    exc.reason = None
    return exc


class _Deadline:
    """One operation's time budget, as the C object's: the socket's timeout at the
    start bounds the whole operation (handshake, read, write or shutdown)."""

    __slots__ = ("end",)

    def __init__(self, timeout: float | None) -> None:
        self.end = None if not timeout else _clock.now() + timeout

    def wait(self, number: int, events: int, what: str) -> None:
        """For a socket with a timeout: wait until ready or raise the timeout."""
        remaining = self.end - _clock.now() if self.end is not None else 0.0
        if remaining <= 0 or not _posix.poll([(number, events)], _ms(remaining)):
            raise TimeoutError(f"The {what} operation timed out")


class _TLSChannel:
    """What ``ssl.SSLSocket``'s methods call as ``self._sslobj``: the C object's
    methods, done by an ``ssl.SSLObject`` whose ciphertext goes through the owner's
    drop-in ``send``/``recv``.

    Reads hand OpenSSL what has arrived, waiting only while nothing has (see
    ``_fill``), and never read past the end of the current TLS record, as OpenSSL on a
    descriptor: after ``unwrap()`` the plaintext that follows the peer's close_notify
    is still in the socket.  Writes encrypt a few records
    (``_WRITE_BATCH``) and send them before the next, so little waits in memory when
    the socket pushes back.
    """

    def __init__(self, owner: SSLSocket, server_side: bool, server_hostname: str | None,
                 session: Any) -> None:
        self._owner = weakref.ref(owner)
        self._incoming = _stdssl.MemoryBIO()
        self._outgoing = _stdssl.MemoryBIO()
        self._tls = owner._context.wrap_bio(self._incoming, self._outgoing,
                                            server_side=server_side,
                                            server_hostname=server_hostname,
                                            session=session)
        # Callbacks (SNI, message tracing) receive the C object's owner: make it the
        # SSLSocket, as on a descriptor, so ``ssl_sock.context = ...`` in an SNI
        # callback reaches the socket.
        inner = getattr(self._tls, "_sslobj", None)
        if inner is not None and hasattr(inner, "owner"):
            inner.owner = owner
        self._state = threading.Lock()  # the SSLObject and BIOs: one thread at a time
        self._sending = threading.Lock()  # ciphertext leaves in the order it was made
        self._receiving = threading.Lock()  # one reader walks the record framing
        self._unsent = b""
        self._header = b""  # the part of the next record's header read so far
        self._body_left = 0  # bytes of the current record's body not yet read
        self._written = 0  # plaintext taken by a write that then had to give up

    # -- moving ciphertext ----------------------------------------------------------

    def _sock(self) -> SSLSocket:
        owner = self._owner()
        if owner is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return owner

    def _flush(self, deadline: _Deadline, what: str, wait: bool = True) -> bool:
        """Send all ciphertext made so far; False if a non-blocking socket is full.

        With ``wait`` false (a reader), ciphertext another thread is already sending
        is left to that thread: a reader must not queue behind a writer the peer is
        not reading from, or neither would move.  The sender checks again after
        letting go, so nothing made meanwhile is stranded.
        """
        while self._unsent or self._outgoing.pending:
            if not self._sending.acquire(blocking=wait):
                return True
            try:
                if not self._send_all(deadline, what):
                    return False
            finally:
                self._sending.release()
        return True

    def _send_all(self, deadline: _Deadline, what: str) -> bool:
        sock = self._sock()
        while True:
            if not self._unsent:
                with self._state:
                    self._unsent = self._outgoing.read()
                if not self._unsent:
                    return True
            if deadline.end is not None:
                deadline.wait(_DropIn._number(sock), _POLLOUT, what)
            try:
                sent = _DropIn.send(sock, self._unsent)
            except BlockingIOError:
                return False
            except TimeoutError:
                raise TimeoutError(f"The {what} operation timed out") from None
            self._unsent = self._unsent[sent:]

    def _flush_quietly(self, deadline: _Deadline, what: str) -> None:
        """Send what OpenSSL wrote before failing (an alert), so the peer learns why."""
        try:
            self._flush(deadline, what)
        except OSError:
            pass

    def _fill(self, deadline: _Deadline, what: str) -> bool:
        """Hand the incoming BIO what has arrived of the TLS stream, waiting only while
        nothing has: OpenSSL asked for more bytes, not for a whole record, and may
        fail on the first five (a peer answering in plaintext: "wrong version number"
        at once, as on a descriptor, not after a "record" whose length came from the
        bytes ``HTTP/``).  False when a non-blocking socket has nothing there: the caller
        raises OpenSSL's SSLWantReadError (raised here, the exception held by this frame
        would hold the frame through its traceback: a cycle keeping the SSLSocket).

        What has arrived is read without waiting, up to the end of the current record
        as its header states (its 5-byte header, then its body): OpenSSL reads a
        descriptor so, and nothing past the TLS stream is consumed -- after ``unwrap()``
        the plaintext that follows the peer's close_notify is still in the socket.
        A bulk transfer so costs two reads per record, as with OpenSSL on the kernel.
        """
        sock = self._sock()
        number = _DropIn._number(sock)
        with self._receiving:
            wanted = self._body_left or _HEADER - len(self._header)
            try:
                if deadline.end is not None:
                    deadline.wait(number, _POLLIN, what)
                data = _DropIn.recv(sock, wanted)
            except BlockingIOError:
                return False
            except TimeoutError:
                raise TimeoutError(f"The {what} operation timed out") from None
            while self._took(data):
                wanted = self._body_left or _HEADER - len(self._header)
                try:
                    data = _posix.recv(number, wanted, _MSG_DONTWAIT)
                except BlockingIOError:
                    break
            return True

    def _took(self, data: bytes) -> bool:
        """Put ``data`` read from the socket into the incoming BIO and follow the
        record framing; whether the current record still has bytes to come."""
        with self._state:
            if not data:
                self._incoming.write_eof()
                return False
            self._incoming.write(data)
        if self._body_left:
            self._body_left -= len(data)
            return self._body_left > 0
        header = self._header + data
        if len(header) < _HEADER:
            self._header = header
            return True
        self._header = b""
        self._body_left = int.from_bytes(header[3:5], "big")
        # A header OpenSSL may reject (not TLS: an HTTP answer, say) goes to it alone,
        # as it reads a descriptor; one it accepts has its body read on at once.
        return (header[0] in _RECORD_TYPES and header[1] == 3
                and 0 < self._body_left <= _MAX_RECORD)

    def _run(self, what: str, op: Any, *args: Any, reading: bool = False) -> Any:
        """``op(*args)`` on the SSLObject until it stops asking for ciphertext.

        What the op makes is sent before waiting for the peer; a writer (handshake,
        shutdown) that cannot send it on a non-blocking socket gets SSLWantWriteError,
        a reader leaves it for the next call (see ``_flush``).
        """
        deadline = _Deadline(self._sock().gettimeout())
        while True:
            if not self._flush(deadline, what, wait=not reading) and not reading:
                raise _want_write()
            try:
                with self._state:
                    result = op(*args)
            except _stdssl.SSLWantReadError as exc:
                want_read = exc
            except _stdssl.SSLError:
                self._flush_quietly(deadline, what)
                raise
            else:
                if not self._flush(deadline, what, wait=not reading) and not reading:
                    raise _want_write()
                return result
            try:
                if not self._flush(deadline, what, wait=not reading) and not reading:
                    raise _want_write()
                if not self._fill(deadline, what):
                    raise want_read
            finally:
                # The exception's traceback holds this frame: keeping it in a local
                # would make a cycle that keeps the SSLSocket alive until the cyclic
                # collector runs (a late ResourceWarning, a number held open).
                del want_read

    # -- the C object's I/O methods ---------------------------------------------------

    def do_handshake(self) -> None:
        self._run("handshake", self._tls.do_handshake)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        if buffer is None:
            return self._run("read", self._tls.read, len, reading=True)
        return self._run("read", self._tls.read, len, buffer, reading=True)

    def write(self, data: Any) -> int:
        """All of ``data``, as OpenSSL without partial writes: when the socket pushes
        back, SSLWantWriteError (non-blocking) or the timeout, and the caller's retry
        with the same data carries on where this one stopped."""
        with memoryview(data) as view, view.cast("B") as octets:
            total = len(octets)
            if not total:
                return self._run("write", self._tls.write, b"")
            deadline = _Deadline(self._sock().gettimeout())
            done = min(self._written, total)
            self._written = 0
            while True:
                try:
                    flushed = self._flush(deadline, "write")
                except TimeoutError:
                    self._written = done
                    raise
                if not flushed:
                    self._written = done
                    raise _want_write()
                if done == total:
                    return total
                with self._state:
                    done += self._tls.write(octets[done:done + _WRITE_BATCH])

    def shutdown(self) -> SSLSocket:
        """Send close_notify and wait for the peer's (``unwrap``); the socket."""
        sock = self._sock()
        deadline = _Deadline(sock.gettimeout())
        while True:
            if not self._flush(deadline, "write"):
                raise _want_write()
            try:
                with self._state:
                    self._tls.unwrap()
            except _stdssl.SSLWantReadError:
                if not self._flush(deadline, "write"):
                    raise _want_write() from None
                if not self._fill(deadline, "read"):
                    raise
                continue
            except _stdssl.SSLError:
                self._flush_quietly(deadline, "write")
                raise
            if not self._flush(deadline, "write"):
                raise _want_write()
            return sock

    def verify_client_post_handshake(self) -> None:
        with self._state:
            self._tls.verify_client_post_handshake()

    # -- queries: the SSLObject answers them -----------------------------------------

    def pending(self) -> int:
        return self._tls.pending()

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._tls.getpeercert(binary_form)

    def cipher(self) -> tuple[str, str, int] | None:
        return self._tls.cipher()

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        return self._tls.shared_ciphers()

    def compression(self) -> str | None:
        return self._tls.compression()

    def version(self) -> str | None:
        return self._tls.version()

    def selected_alpn_protocol(self) -> str | None:
        return self._tls.selected_alpn_protocol()

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        return self._tls.get_channel_binding(cb_type)

    @property
    def context(self) -> Any:
        return self._tls.context

    @context.setter
    def context(self, ctx: Any) -> None:
        self._tls.context = ctx

    @property
    def session(self) -> Any:
        return self._tls.session

    @session.setter
    def session(self, session: Any) -> None:
        self._tls.session = session

    @property
    def session_reused(self) -> bool:
        return self._tls.session_reused

    @property
    def server_side(self) -> bool:
        return self._tls.server_side

    @property
    def server_hostname(self) -> str | None:
        return self._tls.server_hostname

    def __getattr__(self, name: str) -> Any:
        # What the C object offers beyond the methods above (get_verified_chain, which
        # test_ssl calls through ``_sslobj``, or what later Pythons add): this object
        # stands for the C one, so the C object under the SSLObject answers first.
        # (SSLObject's own methods may differ: from 3.13 its get_verified_chain gives
        # DER bytes where SSLSocket expects the C object's certificates.)
        inner = self.__dict__.get("_tls")
        if inner is None:
            raise AttributeError(name)
        try:
            return getattr(inner._sslobj, name)
        except AttributeError:
            return getattr(inner, name)


if _stdssl is not None:
    _STDLIB_WRAP_SOCKET = _stdssl.SSLContext.wrap_socket

    class SSLSocket(_stdssl.SSLSocket, _DropIn):
        """``ssl.SSLSocket`` on a virtual drop-in socket (see the module docstring).

        Only what would hand the number to OpenSSL is redefined: making the TLS
        object (``_create``, connecting an unconnected socket) and ``accept``, whose
        connections are drop-in sockets wrapped in turn.
        """

        @classmethod
        def _create(cls, sock: Any, server_side: bool = False,
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: str | None = None, context: Any = None,
                    session: Any = None) -> Any:
            if not is_virtual(sock):
                return _stdssl.SSLSocket._create(
                    sock, server_side=server_side,
                    do_handshake_on_connect=do_handshake_on_connect,
                    suppress_ragged_eofs=suppress_ragged_eofs,
                    server_hostname=server_hostname, context=context, session=session)
            _check_wrap_arguments(sock, context, server_side, server_hostname, session)

            number = _DropIn._number(sock)
            self = cls.__new__(cls)
            _DropIn.__init__(self, sock.family, sock.type, sock.proto, fileno=number)
            timeout = sock.gettimeout()
            # The C base's detach: the number moves to this object without arming
            # the kernel mirror (the drop-in's detach arms it, for owners outside the
            # layer); ``fileno()`` arms it when a poller outside may watch it.
            _socket.socket.detach(sock)
            sock._closed = True
            # The number is this object's now: whatever fails closes it (a hostname
            # IDNA rejects, a failed handshake), as CPython 3.13 does; before, only
            # OSError/ValueError closed it and the rest left a ResourceWarning.
            try:
                self._context = context
                self._session = session
                self._closed = False
                self._sslobj = None
                self.server_side = server_side
                self.server_hostname = context._encode_hostname(server_hostname)
                self.do_handshake_on_connect = do_handshake_on_connect
                self.suppress_ragged_eofs = suppress_ragged_eofs
                connected = self._connected_now()
                self.settimeout(timeout)
                self._connected = connected
                if connected:
                    self._sslobj = _TLSChannel(self, server_side, self.server_hostname,
                                               session)
                    if do_handshake_on_connect:
                        if timeout == 0.0:
                            raise ValueError("do_handshake_on_connect should not be "
                                             "specified for non-blocking sockets")
                        self.do_handshake()
            except BaseException:
                try:
                    self.close()
                except OSError:
                    pass
                raise
            return self

        def _connected_now(self) -> bool:
            """Whether the socket has a peer.  An unconnected one must not have bytes
            waiting (left by a connection that closed before the handshake): they
            would pass for TLS-protected data, so that is an SSLError, as in CPython."""
            try:
                self.getpeername()
                return True
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:
                    raise
            blocking = self.getblocking()
            self.setblocking(False)
            try:
                early = _DropIn.recv(self, 1)
            except OSError as exc:
                if exc.errno not in (errno.ENOTCONN, errno.EINVAL):
                    raise
                early = b""
            finally:
                self.setblocking(blocking)
            if early:
                reason = "Closed before TLS handshake with data in recv buffer."
                error = _stdssl.SSLError(errno.ENOTCONN, reason)
                error.reason = reason
                error.library = None
                try:
                    self.close()
                except OSError:
                    pass
                raise error
            return False

        def _real_connect(self, addr: Any, connect_ex: bool) -> int | None:
            if self.server_side:
                raise ValueError("can't connect in server-side mode")
            if self._connected or self._sslobj is not None:
                raise ValueError("attempt to connect already-connected SSLSocket!")
            self._sslobj = _TLSChannel(self, False, self.server_hostname, self._session)
            try:
                if connect_ex:
                    code = _DropIn.connect_ex(self, addr)
                else:
                    _DropIn.connect(self, addr)
                    code = None
                if not code:
                    self._connected = True
                    if self.do_handshake_on_connect:
                        self.do_handshake()
                return code
            except (OSError, ValueError):
                self._sslobj = None
                raise

        def accept(self) -> tuple[Any, Any]:
            """A connection as a drop-in socket, wrapped server-side like this one."""
            number, address = self._accept()
            conn = _DropIn(self.family, self.type, self.proto, fileno=number)
            if _socket.getdefaulttimeout() is None and self.gettimeout():
                conn.setblocking(True)
            wrapped = self.context.wrap_socket(
                conn, do_handshake_on_connect=self.do_handshake_on_connect,
                suppress_ragged_eofs=self.suppress_ragged_eofs, server_side=True)
            return wrapped, address
