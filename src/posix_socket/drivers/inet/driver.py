"""InetDriver: the ops table of the virtual IP network, for AF_INET and AF_INET6.

Like Linux's inet_stream_ops / inet_dgram_ops, each op checks what is common (address
parsing, the socket kind) and hands over to the TCP or UDP socket.  Every op takes the
network's lock, collects the sockets whose readiness changed, and notifies them after
the lock is released.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from ...driver import SocketDriver
from ...errors import oserror
from ...later import held_here, run_later
from ...options import SO_BINDTODEVICE, device_answer, device_index
from . import addresses
from .network import INTERFACE_INDEX, INTERFACE_NAME, VirtualNetwork
from .options import SO_RXQ_OVFL
from .tcp import TcpSocket
from .udp import UdpSocket

_MSG_OOB = int(socket.MSG_OOB)  # a plain int: ``flags & IntFlag`` is a slow Python call

__all__ = ["InetDriver"]

SIOCINQ = 0x541B  # FIONREAD
SIOCOUTQ = 0x5411
SIOCATMARK = 0x8905
_INT = struct.Struct("@i")
_UINT = struct.Struct("@I")
_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_KEEPALIVE_OPTIONS = frozenset({(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                                (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)})
DEVICES = {b"lo": INTERFACE_INDEX}  # the network's one interface, for SO_BINDTODEVICE


class InetDriver(SocketDriver):
    name = "inet"
    accept_inherits_timeouts = True  # TCP's accept copies its listener (sk_clone)
    empty_stream_receive_waits_once = True  # as tcp_recvmsg: see SocketDriver

    def __init__(self, network: VirtualNetwork | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network = network if network is not None else VirtualNetwork()

    def resolve(self, name: str, family: int = 0, flags: int = 0
                ) -> tuple[str, list[tuple[int, str, int]]]:
        """getaddrinfo's host part on this network, never real DNS: (canonical name,
        [(family, address text, scope id)]) in glibc's order, or glibc's gaierror.
        What the stdlib drop-in's getaddrinfo answers from; sockets given a host name
        use the first answer for their family, so the two always agree."""
        canonical, found = self.network.resolve(name, family, flags)
        return canonical, [(answer_family, addresses.text(answer_family, ip), scope_id)
                           for answer_family, ip, scope_id in found]

    def names_of(self, address: str) -> list[str]:
        """The names a reverse lookup of ``address`` (numeric text) finds."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            ip = self.network.resolve(address, family, socket.AI_NUMERICHOST)[1][0][1]
        except OSError:
            return []
        return list(self.network.names_of(ip, family == socket.AF_INET))

    def host_entry(self, name: str) -> tuple[str, list[str], list[str]]:
        """gethostbyname_ex's (name, aliases, IPv4 addresses) for ``name``."""
        return self.network.host_entry(name)

    def names_version(self) -> int:
        """Changes whenever a name may answer differently (answers are kept till then)."""
        return self.network.current_names_version()

    def interfaces(self) -> list[tuple[int, str]]:
        """The network's interfaces, (index, name), as if_nameindex lists them."""
        return [(INTERFACE_INDEX, INTERFACE_NAME)]

    # -- helpers -------------------------------------------------------------------

    def _where(self, sock: Any, addr: object, op: str) -> addresses.Endpoint:
        return addresses.parse(sock.family, addr, op, self.network)

    def _notify(self, touched: list) -> None:
        notify = self.notify
        for sock in touched:
            notify(sock)

    # -- creation ------------------------------------------------------------------

    def create(self, family: int, type: int, proto: int) -> Any:
        if family not in _FAMILIES:
            raise oserror(errno.EAFNOSUPPORT)
        if type == socket.SOCK_STREAM:
            if proto not in (0, socket.IPPROTO_TCP):
                raise oserror(errno.EPROTONOSUPPORT)
            return TcpSocket(self.network, family)
        if type == socket.SOCK_DGRAM:
            if proto not in (0, socket.IPPROTO_UDP):
                raise oserror(errno.EPROTONOSUPPORT)
            return UdpSocket(self.network, family)
        raise oserror(errno.ESOCKTNOSUPPORT)

    def socketpair(self, family: int, type: int, proto: int) -> tuple[Any, Any]:
        self.create(family, type, proto)  # same errors first, as Linux
        raise oserror(errno.EOPNOTSUPP)

    def accept(self, sock: Any, flags: int) -> tuple[Any, Any]:
        if not isinstance(sock, TcpSocket):
            raise oserror(errno.EOPNOTSUPP)
        touched: list = []
        try:
            with self.network.lock:
                return sock.accept(touched)
        finally:
            for changed in touched:
                self.notify(changed)

    # -- addressing and state ------------------------------------------------------

    def bind(self, sock: Any, addr: Any) -> None:
        where = self._where(sock, addr, "bind")
        with self.network.lock:
            sock.bind(where)

    def listen(self, sock: Any, backlog: int) -> None:
        if not isinstance(sock, TcpSocket):
            raise oserror(errno.EOPNOTSUPP)
        touched: list = []
        try:
            with self.network.lock:
                sock.listen(backlog, touched)
        finally:
            self._notify(touched)

    def connect(self, sock: Any, addr: Any) -> None:
        self._connect(sock, addr, False)

    def connect_blocking(self, sock: Any, addr: Any) -> None:
        """A loopback handshake with room in the backlog ends inside the call: return
        connected, as Linux's blocking connect does after its wait."""
        self._connect(sock, addr, True)

    def _connect(self, sock: Any, addr: Any, blocking: bool) -> None:
        where = addresses.parse(sock.family, addr, "connect", self.network)
        touched: list = []
        try:
            with self.network.lock:
                if type(sock) is TcpSocket:
                    sock.connect(where, touched, blocking)
                else:
                    sock.connect(where, touched)
        finally:
            for changed in touched:  # inline: every connect passes through here
                self.notify(changed)

    def shutdown(self, sock: Any, how: int) -> None:
        touched: list = []
        try:
            with self.network.lock:
                sock.shut(how, touched)
        finally:
            self._notify(touched)

    def getsockname(self, sock: Any) -> Any:
        with self.network.lock:
            return sock.getsockname()

    def getpeername(self, sock: Any) -> Any:
        with self.network.lock:
            return sock.getpeername()

    def getsockopt(self, sock: Any, level: int, optname: int, buflen: int) -> int | bytes:
        if level == socket.SOL_SOCKET:
            if optname == SO_BINDTODEVICE:
                return device_answer(self._device(sock), DEVICES, buflen)
            special = self._socket_level(sock, optname)
            if special is not None:
                return _INT.pack(special)[:buflen] if buflen else special
        with self.network.lock:
            return sock.getsockopt(level, optname, buflen)

    def _device(self, sock: Any) -> int:
        """The device the socket is bound to (Linux's sk_bound_dev_if; 0: none)."""
        if type(sock) is UdpSocket:
            return sock.bound_device
        return sock.opts.device()

    def _socket_level(self, sock: Any, optname: int) -> int | None:
        if optname == socket.SO_ERROR:
            touched: list = [sock]
            try:
                with self.network.lock:
                    return sock.take_error()
            finally:
                self._notify(touched)
        if optname == socket.SO_ACCEPTCONN:
            return int(isinstance(sock, TcpSocket) and sock.state == "LISTEN")
        if optname == socket.SO_PROTOCOL:
            return socket.IPPROTO_TCP if isinstance(sock, TcpSocket) else socket.IPPROTO_UDP
        return None

    def setsockopt(self, sock: Any, level: int, optname: int, value: int | bytes) -> None:
        if level == socket.SOL_SOCKET and optname in (socket.SO_ERROR, socket.SO_ACCEPTCONN,
                                                      socket.SO_PROTOCOL):
            raise oserror(errno.ENOPROTOOPT)
        if (level, optname) == (socket.SOL_SOCKET, SO_BINDTODEVICE):
            index = device_index(value, DEVICES)
            with self.network.lock:
                if type(sock) is UdpSocket:
                    sock.bound_device = index
                else:
                    sock.opts.set_device(index)
            return
        touched: list = []
        try:
            with self.network.lock:
                if (level, optname) == (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) and (
                        sock.binding is not None and sock.family == socket.AF_INET6):
                    raise oserror(errno.EINVAL)  # fixed once bound, as Linux
                if type(sock) is UdpSocket:
                    return sock.setsockopt(level, optname, value, touched)
                sock.opts.set(level, optname, value)
                if (level, optname) in _KEEPALIVE_OPTIONS:
                    sock.keepalive_changed(touched)  # Linux starts or moves the timer
        finally:
            if touched:
                self._notify(touched)

    # -- data ----------------------------------------------------------------------

    def send(self, sock: Any, data: Any, flags: int) -> int:
        touched: list = []
        try:
            with self.network.lock:
                if type(sock) is TcpSocket:
                    return sock.send(data, flags, touched)
                return sock.sendto(data, flags, None, touched)
        finally:
            for changed in touched:  # inline: this is every send's path
                self.notify(changed)

    def keep_error(self, sock: Any, code: int) -> None:
        """A reset (or timeout) that cut a blocking send short stays pending, as
        Linux's sk_err: the next send reports ECONNRESET, then EPIPE."""
        if type(sock) is TcpSocket and code != errno.EPIPE:
            touched: list = [sock]
            try:
                with self.network.lock:
                    if not sock.error:
                        sock.error = code
            finally:
                self._notify(touched)

    def sendto(self, sock: Any, data: Any, flags: int, addr: Any,
               op: str = "sendto") -> int:
        if addr is None:
            return self.send(sock, data, flags)
        where = self._where(sock, addr, op)  # parsed (and checked) even where unused
        if type(sock) is TcpSocket:  # TCP ignores the address, as Linux
            return self.send(sock, data, flags)
        touched: list = []
        try:
            with self.network.lock:
                return sock.sendto(data, flags, where, touched)
        finally:
            self._notify(touched)

    def sendmsg(self, sock: Any, buffers: Any, ancdata: Any, flags: int, addr: Any) -> int:
        if ancdata:
            raise oserror(errno.EINVAL)
        data = b"".join(buffers) if len(buffers) != 1 else buffers[0]
        return self.sendto(sock, data, flags, addr, "sendmsg")

    def recv(self, sock: Any, bufsize: int, flags: int) -> bytes:
        if bufsize == 0:
            return b""  # like the stdlib's recv(0): no call, nothing consumed
        touched: list = []
        try:
            with self.network.lock:
                if type(sock) is TcpSocket:
                    if flags & _MSG_OOB:
                        return sock.recv_urgent(bufsize, flags, touched)
                    return sock.recv(bufsize, flags, touched)
                return sock.recvfrom(bufsize, flags, touched)[0]
        finally:
            for changed in touched:  # inline: this is every receive's path
                if changed is sock and type(sock) is TcpSocket:
                    # A TCP receive only takes from its own socket (data, an error).
                    self.notify_faded(changed)
                else:
                    self.notify(changed)

    def _tcp_receive(self, sock: TcpSocket, bufsize: int, flags: int) -> bytes:
        """A TCP recvfrom/recvmsg: recv without the shortcut for 0 bytes (the stdlib's
        recvfrom and recvmsg make the call even then)."""
        touched: list = []
        try:
            with self.network.lock:
                if flags & _MSG_OOB:
                    return sock.recv_urgent(bufsize, flags, touched)
                return sock.recv(bufsize, flags, touched)
        finally:
            self._notify(touched)

    def recvfrom(self, sock: Any, bufsize: int, flags: int) -> tuple[bytes, Any]:
        if type(sock) is TcpSocket:
            return self._tcp_receive(sock, bufsize, flags), None
        data, source, _msg_flags = self._recvfrom(sock, bufsize, flags)
        return data, source

    def _recvfrom(self, sock: Any, bufsize: int, flags: int) -> tuple[bytes, Any, int]:
        touched: list = []
        try:
            with self.network.lock:
                return sock.recvfrom(bufsize, flags, touched)
        finally:
            self._notify(touched)

    def recvmsg(self, sock: Any, bufsize: int, ancbufsize: int, flags: int):
        if type(sock) is TcpSocket:
            data = self._tcp_receive(sock, bufsize, flags)
            # tcp_recv_urg: the urgent byte comes with MSG_OOB, MSG_TRUNC without room
            msg_flags = 0 if not flags & _MSG_OOB else _MSG_OOB if bufsize else (
                _MSG_OOB | socket.MSG_TRUNC)
            return data, [], msg_flags, None
        touched: list = []
        ancdata = []
        try:
            with self.network.lock:
                data, source, msg_flags = sock.recvfrom(bufsize, flags, touched)
                drops = sock.recv_drops
        finally:
            self._notify(touched)
        if drops:  # SO_RXQ_OVFL: the drop count rides along when it is not zero
            if ancbufsize >= socket.CMSG_LEN(_UINT.size):
                ancdata.append((socket.SOL_SOCKET, SO_RXQ_OVFL, _UINT.pack(drops)))
            else:
                msg_flags |= socket.MSG_CTRUNC
        return data[:bufsize], ancdata, msg_flags, source

    def ioctl(self, sock: Any, request: int, arg: int | bytes) -> int | bytes:
        if request not in (SIOCINQ, SIOCOUTQ) and (
                request != SIOCATMARK or type(sock) is not TcpSocket):
            raise oserror(errno.ENOTTY)
        if isinstance(arg, int):
            raise oserror(errno.EFAULT)  # the kernel writes through an int pointer
        with self.network.lock:
            if request == SIOCINQ and isinstance(sock, TcpSocket) and sock.state == "LISTEN":
                raise oserror(errno.EINVAL)
            if request == SIOCINQ:
                value = sock.nread()
            elif request == SIOCATMARK:
                value = sock.at_mark()
            else:
                value = sock.unacknowledged() if type(sock) is TcpSocket else 0
        raw = bytes(arg)
        return _INT.pack(value) + raw[_INT.size:] if len(raw) >= _INT.size else _INT.pack(
            value)[:len(raw)]

    def poll(self, sock: Any) -> int:
        return sock.poll()

    def close(self, sock: Any) -> None:
        if held_here(self.network.lock):
            # A finalizer inside one of the network's ops: closing now would change
            # state that op is in the middle of.  Close once it lets go of the lock.
            run_later(self.close, sock)
            return
        touched: list = []
        try:
            with self.network.lock:
                sock.close(touched)
        finally:
            for changed in touched:
                # A TCP socket its owner closed (this one, or an orphan finishing its
                # connection) has no descriptor left: nobody can be watching it.
                if not (type(changed) is TcpSocket and changed.orphan):
                    self.notify(changed)
