"""Oracle scenarios for AF_UNIX: names on disk, abstract names, credentials, datagram
back-pressure, seqpacket, descriptor passing.  Each runs on the kernel and through the
layer (see ``scenarios``), so they describe Linux, not the driver."""

from __future__ import annotations

import array
import errno
import os
import re
import socket as _socket
import stat
import struct
from typing import Any

import unix_daemon
from scenarios import (
    DGRAM,
    FIONREAD,
    INT,
    POLL_ALL,
    POLLIN,
    POLLOUT,
    SEQPACKET,
    SOL_SOCKET,
    STREAM,
    WAIT_MS,
    Env,
    Recorder,
    connected_pair,
    scenario,
)

UNIX = (_socket.AF_UNIX,)
# What these scenarios need beyond a stream: AF_UNIX itself (paths on disk, abstract
# names, credentials, SCM_RIGHTS); drivers that only imitate AF_UNIX streams lack it.
UNIX_FAMILY = "AF_UNIX names, credentials and descriptor passing"
ALL = (STREAM, DGRAM, SEQPACKET)
CONNECTIONS = (STREAM, SEQPACKET)
MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC = _socket.MSG_DONTWAIT, _socket.MSG_PEEK, _socket.MSG_TRUNC
MSG_NOSIGNAL, MSG_CTRUNC = _socket.MSG_NOSIGNAL, _socket.MSG_CTRUNC
MSG_CMSG_CLOEXEC = getattr(_socket, "MSG_CMSG_CLOEXEC", 0x40000000)
SCM_RIGHTS, SCM_CREDENTIALS = _socket.SCM_RIGHTS, getattr(_socket, "SCM_CREDENTIALS", 2)
SO_PASSCRED = getattr(_socket, "SO_PASSCRED", 16)
SO_PEERCRED = getattr(_socket, "SO_PEERCRED", 17)
SIOCOUTQ = 0x5411
UCRED = struct.Struct("@iII")
AUTOBIND_NAME = re.compile(rb"\0[0-9a-f]{5}\Z")


def directory(env: Env) -> str:
    """The scenario's private temp directory (where env.address() makes paths)."""
    return os.path.dirname(env.address())


def file_facts(path: str) -> Any:
    """What ``stat`` says of ``path``, in terms that do not vary between runs."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return ("socket" if stat.S_ISSOCK(info.st_mode) else "other", oct(info.st_mode & 0o777))


def server_and_client(api: Recorder, env: Env, addr: Any) -> None:
    """Show that ``addr`` reaches a socket: a connection (and a message) for
    connection types, one datagram otherwise."""
    client = api.socket(env.family, env.type)
    api.connect(client, addr)
    api.send(client, b"knock")


# -- names on disk ------------------------------------------------------------------------

@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_bind_makes_a_socket_file_with_the_umask(api: Recorder, env: Env) -> None:
    """bind creates a socket file (mode 0777 less the umask) that outlives the socket;
    the path is then taken (EADDRINUSE) until it is unlinked."""
    path = env.address()
    old = os.umask(0o027)
    try:
        fd = api.socket(env.family, env.type)
        api.bind(fd, path)
    finally:
        os.umask(old)
    api.note("file after bind", file_facts(path))
    other = api.socket(env.family, env.type)
    api.bind(other, path)
    api.close(fd)
    api.note("file after close", file_facts(path))
    api.bind(other, path)
    os.unlink(path)
    api.bind(other, path)
    api.getsockname(other)
    api.note("file after unlink and bind", file_facts(path))


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_path_errors(api: Recorder, env: Env) -> None:
    """Paths that cannot be bound or reached: a missing directory (ENOENT), a regular
    file (EADDRINUSE to bind, ECONNREFUSED to connect), a path nobody bound (ENOENT),
    a bound socket that does not listen (ECONNREFUSED), a path too long, an empty one."""
    base = directory(env)
    regular = os.path.join(base, "plain")
    with open(regular, "w"):
        pass
    fd = api.socket(env.family, env.type)
    api.bind(fd, os.path.join(base, "missing", "s"))
    api.bind(fd, regular)
    api.connect(fd, os.path.join(base, "missing", "s"))
    api.connect(fd, os.path.join(base, "nobody"))
    api.connect(fd, regular)
    api.connect(fd, "x" * 108)
    api.bind(fd, "x" * 200)
    api.connect(fd, "")
    api.sendto(fd, b"x", 0, "")
    api.sendto(fd, b"x", 0, os.path.join(base, "nobody"))
    api.connect(fd, 42)
    bound = api.socket(env.family, env.type)
    api.bind(bound, env.address())
    api.connect(fd, api.getsockname(bound))
    bound_elsewhere = api.socket(env.family, STREAM if env.type != STREAM else DGRAM)
    api.bind(bound_elsewhere, env.address())
    api.connect(fd, api.getsockname(bound_elsewhere))


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_sockets_are_found_by_file_not_by_name(api: Recorder, env: Env) -> None:
    """A renamed socket file still reaches its socket (which keeps reporting the name
    it bound); a file unlinked and made again by another bind reaches the new one."""
    first = api.socket(env.family, env.type)
    path = env.address()
    api.bind(first, path)
    renamed = env.address()
    os.rename(path, renamed)
    second = api.socket(env.family, env.type)
    api.bind(second, path)
    os.unlink(path)
    third = api.socket(env.family, env.type)
    api.bind(third, path)
    for fd in (first, second, third):
        if env.type != DGRAM:
            api.listen(fd, 4)
        api.getsockname(fd)
    for target in (renamed, path):
        client = api.socket(env.family, env.type)
        api.connect(client, target)
        api.getpeername(client)
        api.send(client, b"which?")
    if env.type == DGRAM:
        for fd in (first, second, third):
            api.recvfrom(fd, 100, MSG_DONTWAIT)
    else:
        for fd in (first, second, third):
            api.poll([(fd, POLL_ALL)], 0)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_abstract_names(api: Recorder, env: Env) -> None:
    """Abstract names are bytes, exact to the last byte, taken until the socket closes,
    and reach their socket; bind on a named socket is EINVAL for them, bind to ""
    leaves a name alone."""
    name = b"\0posix-socket-oracle-" + os.urandom(6).hex().encode()
    fd = api.socket(env.family, env.type)
    api.bind(fd, name)
    api.getsockname(fd)
    api.bind(fd, name + b"x")
    api.bind(fd, "")
    api.getsockname(fd)
    other = api.socket(env.family, env.type)
    api.bind(other, name)
    api.bind(other, name + b"\0")
    if env.type != DGRAM:
        api.listen(fd, 1)
    client = api.socket(env.family, env.type)
    api.connect(client, name)
    api.getpeername(client)
    api.connect(api.socket(env.family, env.type), name + b"\0\0")
    api.close(fd)
    api.bind(api.socket(env.family, env.type), name)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_autobind_names_are_five_hex_digits(api: Recorder, env: Env) -> None:
    """Binding to "" picks b"\\0" and five hex digits; so does sending or connecting
    with SO_PASSCRED on an unnamed socket (and only then)."""
    fd = api.socket(env.family, env.type)
    api.bind(fd, "")
    name = api.getsockname(fd)
    api.note("autobind name", bool(isinstance(name, bytes) and AUTOBIND_NAME.match(name)))
    receiver = api.socket(env.family, env.type)
    api.bind(receiver, env.address())
    if env.type != DGRAM:
        api.listen(receiver, 4)
    plain = api.socket(env.family, env.type)
    api.connect(plain, api.getsockname(receiver))
    api.getsockname(plain)
    passing = api.socket(env.family, env.type)
    api.setsockopt(passing, SOL_SOCKET, SO_PASSCRED, 1)
    api.connect(passing, api.getsockname(receiver))
    name = api.getsockname(passing)
    api.note("SO_PASSCRED connect autobinds",
             bool(isinstance(name, bytes) and AUTOBIND_NAME.match(name)))
    if env.type == DGRAM:
        sender = api.socket(env.family, env.type)
        api.setsockopt(sender, SOL_SOCKET, SO_PASSCRED, 1)
        api.sendto(sender, b"hi", 0, api.getsockname(receiver))
        api.getsockname(sender)
        api.send(plain, b"from plain")
        for _ in range(2):
            api.recvfrom(receiver, 100)
    else:
        server, _ = api.accept(receiver)
        api.getpeername(server)
        server, _ = api.accept(receiver)
        api.getpeername(server)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_address_forms(api: Recorder, env: Env) -> None:
    """Names come back as str (paths), bytes (abstract) or '' (unnamed), and recvfrom
    reports None for an unnamed sender."""
    first, second = api.socketpair(env.family, env.type)
    api.getsockname(first)
    api.getpeername(first)
    api.send(first, b"unnamed")
    api.recvfrom(second, 100)
    listener = api.socket(env.family, env.type)
    api.bind(listener, env.address())
    api.getsockname(listener)
    api.getpeername(listener)
    if env.type != DGRAM:
        api.listen(listener, 2)
        client = api.socket(env.family, env.type)
        api.bind(client, b"\0posix-socket-form-" + os.urandom(4).hex().encode())
        api.connect(client, api.getsockname(listener))
        server, _ = api.accept(listener)
        api.getsockname(server)
        api.getpeername(server)
        api.send(client, b"named")
        api.recvfrom(server, 100)
        api.send(server, b"back")
        api.recvfrom(client, 100)
    else:
        api.sendto(first, b"to a path", 0, api.getsockname(listener))
        api.recvfrom(listener, 100)


# -- options and credentials ---------------------------------------------------------------

def _peercred(api: Recorder, fd: int) -> None:
    value = api.quietly("getsockopt", fd, SOL_SOCKET, SO_PEERCRED, UCRED.size)
    pid, uid, gid = UCRED.unpack(value)
    api.note("SO_PEERCRED", ("self" if pid == os.getpid() else pid, uid, gid))


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_socket_options(api: Recorder, env: Env) -> None:
    """SO_PEERCRED (this process once connected, "nobody" before), SO_PASSCRED,
    buffer sizes read back doubled, SO_ACCEPTCONN, and no options at other levels."""
    fd = api.socket(env.family, env.type)
    _peercred(api, fd)
    api.getsockopt(fd, SOL_SOCKET, SO_PEERCRED)
    api.getsockopt(fd, SOL_SOCKET, SO_PASSCRED)
    api.setsockopt(fd, SOL_SOCKET, SO_PASSCRED, 5)
    api.getsockopt(fd, SOL_SOCKET, SO_PASSCRED)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_SNDBUF)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_RCVBUF)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_SNDBUF, 10000)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_RCVBUF, 1)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_SNDBUF)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_RCVBUF)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_SNDBUF, b"\1")
    api.setsockopt(fd, SOL_SOCKET, SO_PEERCRED, 1)
    api.getsockopt(fd, _socket.IPPROTO_TCP, _socket.TCP_NODELAY)
    api.setsockopt(fd, _socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_ACCEPTCONN)
    api.bind(fd, env.address())
    if env.type != DGRAM:
        api.listen(fd, 1)
        _peercred(api, fd)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_ACCEPTCONN)
    first, _second = api.socketpair(env.family, env.type)
    _peercred(api, first)
    client = api.socket(env.family, env.type)
    api.connect(client, api.getsockname(fd))
    _peercred(api, client)
    if env.type != DGRAM:
        server, _ = api.accept(fd)
        _peercred(api, server)
        api.getsockopt(server, SOL_SOCKET, _socket.SO_ACCEPTCONN)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_credentials_ride_along_with_so_passcred(api: Recorder, env: Env) -> None:
    """With SO_PASSCRED on the receiver every message carries SCM_CREDENTIALS (the
    sender's, or "nobody" for a message sent before anyone asked); without room for
    them the message says MSG_CTRUNC."""
    first, second = api.socketpair(env.family, env.type)
    api.send(first, b"before")
    api.setsockopt(second, SOL_SOCKET, SO_PASSCRED, 1)
    api.send(first, b"after")
    for ancbufsize in (_socket.CMSG_SPACE(UCRED.size), 0):
        result = api.quietly("recvmsg", second, 100, ancbufsize)
        data, ancdata, flags, _addr = result
        creds = [(level, kind, ("self" if UCRED.unpack(raw)[0] == os.getpid()
                                else UCRED.unpack(raw)))
                 for level, kind, raw in ancdata]
        api.note("recvmsg", (data, creds, flags))
    api.sendmsg(first, [b"explicit"], [(SOL_SOCKET, SCM_CREDENTIALS,
                                        UCRED.pack(os.getpid(), os.geteuid(),
                                                   os.getegid()))])
    api.sendmsg(first, [b"short"], [(SOL_SOCKET, SCM_CREDENTIALS, b"\0" * 8)])
    api.sendmsg(first, [b"unknown type"], [(SOL_SOCKET, 99, b"\0" * 4)])
    api.sendmsg(first, [b"other level"], [(_socket.IPPROTO_TCP, 1, b"\0" * 4)])
    api.recv(second, 100, MSG_DONTWAIT)
    api.recv(second, 100, MSG_DONTWAIT)


# -- connections ------------------------------------------------------------------------

@scenario(*CONNECTIONS, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_backlog_takes_one_more_than_asked(api: Recorder, env: Env) -> None:
    """listen(n) queues n + 1 connections; the next non-blocking connect is EAGAIN,
    and room comes back with accept.  A listener shut for reading refuses."""
    listener = api.socket(env.family, env.type)
    api.bind(listener, env.address())
    api.listen(listener, 1)
    addr = api.getsockname(listener)
    for _ in range(3):
        api.connect(api.socket(env.family, env.type | _socket.SOCK_NONBLOCK), addr)
    api.accept(listener)
    api.connect(api.socket(env.family, env.type | _socket.SOCK_NONBLOCK), addr)
    api.listen(listener, 0)
    api.shutdown(listener, _socket.SHUT_RD)
    api.connect(api.socket(env.family, env.type), addr)
    api.poll([(listener, POLL_ALL)], 0)


@scenario(*CONNECTIONS, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_peer_close_and_reset(api: Recorder, env: Env) -> None:
    """The peer's close: EOF, EPIPE, POLLHUP; with data left unread, ECONNRESET once."""
    first, second = connected_pair(api, env)
    api.send(first, b"unread")
    api.poll([(second, POLL_ALL)], 0)
    api.close(second)
    api.poll([(first, POLL_ALL)], 0)
    api.recv(first, 10, MSG_DONTWAIT)
    api.recv(first, 10, MSG_DONTWAIT)
    api.send(first, b"x", MSG_NOSIGNAL)
    api.getpeername(first)
    third, fourth = connected_pair(api, env)
    api.send(third, b"read")
    api.recv(fourth, 10)
    api.close(fourth)
    api.poll([(third, POLL_ALL)], 0)
    api.recv(third, 10)
    api.recv(third, 10, MSG_DONTWAIT)
    api.getsockopt(third, SOL_SOCKET, _socket.SO_ERROR)


@scenario(SEQPACKET, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_seqpacket_keeps_records(api: Recorder, env: Env) -> None:
    """A seqpacket connection keeps message boundaries, truncates (MSG_TRUNC), ignores
    sendto's address, and reads EOF after the peer's shutdown even non-blocking."""
    first, second = connected_pair(api, env)
    api.send(first, b"one")
    api.send(first, b"two two")
    api.send(first, b"")
    api.recv(second, 100)
    api.recvmsg(second, 3)
    api.recvmsg(second, 100)
    api.sendto(first, b"addressed", 0, "/nonexistent/path")
    api.recv_truncating(second, 2, MSG_TRUNC)
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.send(first, b"a")
    api.send(first, b"bc")
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.recv(second, 100, MSG_PEEK)
    api.recv(second, 100)
    api.recv(second, 100)
    api.shutdown(first, _socket.SHUT_WR)
    api.recv(second, 100, MSG_DONTWAIT)
    api.poll([(first, POLL_ALL), (second, POLL_ALL)], 0)
    fresh = api.socket(env.family, env.type)
    api.poll([(fresh, POLL_ALL)], 0)
    api.send(fresh, b"x", MSG_NOSIGNAL)
    api.recv(fresh, 10, MSG_DONTWAIT)


# -- datagrams ------------------------------------------------------------------------

def fill(api: Recorder, fd: int, target: Any = None) -> int:
    """Send one-byte datagrams until EAGAIN (quietly); the count sent."""
    count = 0
    while count < 100_000:
        try:
            if target is None:
                api.quietly("send", fd, b"x", MSG_DONTWAIT)
            else:
                api.quietly("sendto", fd, b"x", MSG_DONTWAIT, target)
        except BlockingIOError:
            return count
        count += 1
    return count


@scenario(DGRAM, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_dgram_receive_queue_limit(api: Recorder, env: Env) -> None:
    """A receiver not connected back takes max_dgram_qlen + 1 datagrams; then senders
    get EAGAIN, and a connected one polls not writable until the receiver reads."""
    receiver = api.socket(env.family, env.type)
    api.bind(receiver, env.address())
    addr = api.getsockname(receiver)
    sender = api.socket(env.family, env.type)
    api.note("datagrams queued", fill(api, sender, addr))
    api.sendto(sender, b"more", MSG_DONTWAIT, addr)
    connected = api.socket(env.family, env.type)
    api.connect(connected, addr)
    api.poll([(connected, POLL_ALL), (sender, POLL_ALL)], 0)
    api.send(connected, b"more", MSG_DONTWAIT)
    api.ioctl(receiver, FIONREAD, INT.pack(0))
    api.recv(receiver, 10)
    api.poll([(connected, POLL_ALL)], 0)
    api.send(connected, b"fits", MSG_DONTWAIT)
    api.send(connected, b"full", MSG_DONTWAIT)
    first, second = api.socketpair(env.family, env.type)
    queued = fill(api, first)
    api.note("a pair has no queue limit", queued > 11)
    api.poll([(first, POLLOUT)], 0)
    outq = INT.unpack(api.quietly("ioctl", first, SIOCOUTQ, INT.pack(0)))[0]
    api.note("SIOCOUTQ at least SO_SNDBUF", outq >= api.quietly(
        "getsockopt", first, SOL_SOCKET, _socket.SO_SNDBUF))
    for _ in range(queued):
        api.quietly("recv", second, 10)
    api.ioctl(first, SIOCOUTQ, INT.pack(0))
    api.poll([(first, POLLOUT)], 0)


@scenario(DGRAM, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_dgram_connect_rules(api: Recorder, env: Env) -> None:
    """A socket connected elsewhere hears nobody else (EPERM); connecting elsewhere
    drops what was queued; a closed peer is refused once, then not connected."""
    a, b, c = (api.socket(env.family, env.type) for _ in range(3))
    for fd in (a, b, c):
        api.bind(fd, env.address())
    api.connect(a, api.getsockname(b))
    api.sendto(c, b"to a", 0, api.getsockname(a))
    api.connect(c, api.getsockname(a))
    api.sendto(b, b"to a", 0, api.getsockname(a))
    api.sendto(c, b"to b", 0, api.getsockname(b))
    api.send(a, b"a to b")
    api.ioctl(b, FIONREAD, INT.pack(0))
    api.connect(b, api.getsockname(c))
    api.recv(b, 100, MSG_DONTWAIT)
    api.connect(b, api.getsockname(b))
    api.send(b, b"to myself")
    api.recvfrom(b, 100)
    api.close(b)
    api.send(a, b"gone?")
    api.send(a, b"gone?")
    api.getpeername(a)
    api.poll([(a, POLL_ALL)], 0)
    api.shutdown(a, _socket.SHUT_RD)
    api.recv(a, 10)
    api.shutdown(a, _socket.SHUT_WR)
    api.sendto(a, b"x", 0, api.getsockname(c))
    api.poll([(a, POLL_ALL)], 0)
    api.sendto(c, b"big", 0, api.getsockname(c))
    api.sendto(c, bytes(300_000), 0, api.getsockname(c))


@scenario(DGRAM, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_dgram_peek_and_truncate(api: Recorder, env: Env) -> None:
    """MSG_PEEK leaves the datagram, a short buffer truncates it (MSG_TRUNC in the
    flags; with MSG_TRUNC asked, the full length), FIONREAD is the next one's size."""
    first, second = api.socketpair(env.family, env.type)
    api.send(first, b"datagram one")
    api.send(first, b"two")
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.recv(second, 4, MSG_PEEK)
    api.recvmsg(second, 4)
    api.recv_truncating(second, 1, MSG_TRUNC | MSG_PEEK)
    api.recvmsg(second, 1, 0, MSG_TRUNC)
    api.ioctl(second, FIONREAD, INT.pack(0))


@scenario(STREAM, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_stream_counters(api: Recorder, env: Env) -> None:
    """FIONREAD counts every queued byte; SIOCOUTQ counts what is unread at the peer."""
    first, second = api.socketpair(env.family, env.type)
    api.ioctl(first, SIOCOUTQ, INT.pack(0))
    api.send(first, b"abc")
    api.send(first, b"defgh")
    api.ioctl(second, FIONREAD, INT.pack(0))
    api.note("SIOCOUTQ after sends", INT.unpack(api.quietly(
        "ioctl", first, SIOCOUTQ, INT.pack(0)))[0] > 0)
    api.recv(second, 4)
    api.recv(second, 100, MSG_PEEK)
    api.recv(second, 100)
    api.ioctl(first, SIOCOUTQ, INT.pack(0))


# -- descriptor passing ----------------------------------------------------------------------

def recv_rights(api: Recorder, fd: int, bufsize: int, ancbufsize: int,
                flags: int = 0) -> list[int]:
    """recvmsg, logged with the received descriptors as new fd labels (the numbers
    themselves differ between the kernel and the layer runs)."""
    try:
        data, ancdata, msg_flags, _addr = api.quietly("recvmsg", fd, bufsize, ancbufsize,
                                                      flags)
    except OSError as exc:
        api.note("recvmsg", errno.errorcode.get(exc.errno))
        return []
    received: list[int] = []
    items = []
    for level, kind, raw in ancdata:
        if (level, kind) == (SOL_SOCKET, SCM_RIGHTS):
            numbers = array.array("i", raw[:len(raw) - len(raw) % 4]).tolist()
            for number in numbers:
                if stat.S_ISSOCK(os.fstat(number).st_mode) and hasattr(api.impl, "_keep"):
                    api.impl._keep(number)  # the kernel adapter keeps its sockets
            received += numbers
            items.append(("SCM_RIGHTS", [api._new_fd(n) for n in numbers]))
        else:
            items.append((level, kind, len(raw)))
    api.note("recvmsg", (data, items, msg_flags))
    return received


def same_file(api: Recorder, what: str, fd: int, original: int) -> None:
    a, b = os.fstat(fd), os.fstat(original)
    api.note(what, (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_scm_rights_passes_descriptors(api: Recorder, env: Env) -> None:
    """Descriptors sent with SCM_RIGHTS arrive as new numbers on the same open files: a
    pipe and a socket, shared O_NONBLOCK, MSG_CMSG_CLOEXEC, and MSG_PEEK's copies."""
    first, second = api.socketpair(env.family, env.type)
    read_end, write_end = os.pipe()
    api.open.update((read_end, write_end))
    passed = api.socket(env.family, env.type)
    api.bind(passed, env.address())
    fds = array.array("i", [read_end, passed]).tobytes()
    api.sendmsg(first, [b"two fds"], [(SOL_SOCKET, SCM_RIGHTS, fds)])
    peeked = recv_rights(api, second, 100, _socket.CMSG_SPACE(8), MSG_PEEK)
    got = recv_rights(api, second, 100, _socket.CMSG_SPACE(8), MSG_CMSG_CLOEXEC)
    for fd in got[:1] + peeked[:1]:
        same_file(api, "the pipe arrived", fd, read_end)
    if len(got) == 2:
        api.fcntl(got[0], 2)  # F_GETFD: MSG_CMSG_CLOEXEC
        api.getsockname(got[1])
        api.fcntl(passed, 4, os.O_NONBLOCK)  # F_SETFL on the original...
        api.fcntl(got[1], 3)  # ... shows in the copy (F_GETFL)
        os.write(write_end, b"through the pipe")
        api.note("read from the passed pipe", os.read(got[0], 100))
    api.close(passed)
    if len(got) == 2:
        api.getsockname(got[1])
    api.sendmsg(first, [b"bad"], [(SOL_SOCKET, SCM_RIGHTS, array.array("i", [9999]).tobytes())])
    api.sendmsg(first, [b"none"], [(SOL_SOCKET, SCM_RIGHTS, b"")])
    api.recv(second, 100, MSG_DONTWAIT)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_scm_rights_that_do_not_fit_are_closed(api: Recorder, env: Env) -> None:
    """A control buffer too short for every descriptor: MSG_CTRUNC, the ones that did
    not fit are closed (the pipe's writer sees no reader left), none with recv()."""
    first, second = api.socketpair(env.family, env.type)
    read_end, write_end = os.pipe()
    api.open.add(write_end)
    fds = array.array("i", [read_end, read_end, read_end]).tobytes()
    api.sendmsg(first, [b"three"], [(SOL_SOCKET, SCM_RIGHTS, fds)])
    api.sendmsg(first, [b"three again"], [(SOL_SOCKET, SCM_RIGHTS, fds)])
    api.sendmsg(first, [b"and again"], [(SOL_SOCKET, SCM_RIGHTS, fds)])
    os.close(read_end)
    got = recv_rights(api, second, 100, _socket.CMSG_LEN(4))
    got += recv_rights(api, second, 100, _socket.CMSG_SPACE(4))
    api.recv(second, 100)
    for fd in got:
        api.close(fd)
    try:
        os.write(write_end, b"x")
        api.note("pipe write", "ok")
    except BrokenPipeError:
        api.note("pipe write", "EPIPE")


@scenario(*CONNECTIONS, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_stream_read_stops_after_passed_descriptors(api: Recorder,
                                                             env: Env) -> None:
    """A stream read runs across sends but ends with the one that carried descriptors."""
    first, second = api.socketpair(env.family, env.type)
    read_end, write_end = os.pipe()
    api.open.update((read_end, write_end))
    api.send(first, b"plain ")
    api.sendmsg(first, [b"with fd "], [(SOL_SOCKET, SCM_RIGHTS,
                                        array.array("i", [write_end]).tobytes())])
    api.send(first, b"after")
    api.poll([(second, POLLIN)], WAIT_MS)
    recv_rights(api, second, 100, _socket.CMSG_SPACE(4))
    recv_rights(api, second, 100, _socket.CMSG_SPACE(4))


# -- sockets of other processes ---------------------------------------------------------------
#
# The daemon is a plain Python process serving a kernel socket (unix_daemon.py).  On the
# kernel run the client is a kernel socket; through a virtual driver the client is a
# virtual socket, which must reach the daemon as the kernel's would (issue 14, item 15).

def daemon_reply(api: Recorder, fd: int, what: str, expected: bytes) -> None:
    """A reply whose bytes vary between runs (a temp path): logged as matching or not."""
    try:
        data = api.quietly("recv", fd, 300)
    except OSError as exc:
        api.note(what, errno.errorcode.get(exc.errno))
        return
    api.note(what, data == expected or data)


def peer_credentials(api: Recorder, fd: int, daemon: Any) -> None:
    try:
        raw = api.quietly("getsockopt", fd, SOL_SOCKET, SO_PEERCRED, UCRED.size)
    except OSError as exc:
        api.note("SO_PEERCRED", errno.errorcode.get(exc.errno))
        return
    pid, uid, gid = UCRED.unpack(raw)
    api.note("SO_PEERCRED is the daemon's",
             (pid == daemon.pid, uid == os.geteuid(), gid == os.getegid()))


@scenario(*CONNECTIONS, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_kernel_daemon_connection(api: Recorder, env: Env) -> None:
    """A connection to another process's socket: names, credentials both ways, data
    both ways, readiness, the daemon's shutdown (EOF), ours, and its close (HUP)."""
    address = env.address()
    with unix_daemon.running(address, env.type) as daemon:
        fd = api.socket(env.family, env.type)
        api.connect(fd, address)
        api.getpeername(fd)
        api.getsockname(fd)
        api.connect(fd, address)
        peer_credentials(api, fd, daemon)
        api.poll([(fd, POLL_ALL)], 0)
        api.send(fd, b"echo:hello")
        api.poll([(fd, POLLIN)], WAIT_MS)
        api.ioctl(fd, FIONREAD, INT.pack(0))
        api.recv(fd, 100)
        api.recv(fd, 100, MSG_DONTWAIT)
        api.send(fd, b"cred")
        api.recv(fd, 100)
        api.send(fd, b"peer")
        api.recv(fd, 100)
        api.send(fd, b"shut")
        api.recv(fd, 100)
        api.poll([(fd, POLL_ALL)], 0)
        api.send(fd, b"echo:after the daemon's shutdown")
        api.shutdown(fd, _socket.SHUT_WR)
        api.poll([(fd, 0)], WAIT_MS)
        api.send(fd, b"x", MSG_NOSIGNAL)
        api.recv(fd, 100)
        api.close(fd)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_kernel_daemon_sees_our_name(api: Recorder, env: Env) -> None:
    """A socket bound (to a path, or an abstract name) before it reaches another
    process's socket keeps its name there: the daemon sees it, its replies arrive,
    the file stays a socket file with the mode it was given."""
    address = env.address()
    with unix_daemon.running(address, env.type):
        mine = env.address()
        abstract = b"\0posix-socket-test-%d-%d" % (os.getpid(), len(env.addresses))
        for name in (mine, abstract):
            fd = api.socket(env.family, env.type)
            api.bind(fd, name)
            if name is mine:
                os.chmod(mine, 0o700)
            api.connect(fd, address)
            api.send(fd, b"peer")
            daemon_reply(api, fd, "the daemon sees our name", repr(name).encode())
            api.getsockname(fd)
            api.getpeername(fd)
            if env.type == DGRAM:
                api.send(fd, b"echo:back to our name")
                api.recvfrom(fd, 100)
        api.note("our socket file", file_facts(mine))
        api.bind(api.socket(env.family, env.type), mine)


@scenario(DGRAM, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_kernel_daemon_datagrams(api: Recorder, env: Env) -> None:
    """Datagrams to another process's socket: an unnamed sender gets no reply, a named
    one does (recvfrom names the daemon), SO_PASSCRED autobinds, MSG_TRUNC."""
    address = env.address()
    with unix_daemon.running(address, DGRAM):
        unnamed = api.socket(env.family, env.type)
        api.sendto(unnamed, b"echo:nobody can answer", 0, address)
        api.getsockname(unnamed)
        api.recvfrom(unnamed, 100, MSG_DONTWAIT)
        named = api.socket(env.family, env.type)
        api.bind(named, env.address())
        api.sendto(named, b"echo:one", 0, address)
        api.recvfrom(named, 100)
        api.sendto(named, b"echo:" + b"x" * 3000, 0, address)
        api.poll([(named, POLLIN)], WAIT_MS)
        api.recv_truncating(named, 10, MSG_TRUNC)
        api.poll([(named, POLL_ALL)], 0)
        credited = api.socket(env.family, env.type)
        api.setsockopt(credited, SOL_SOCKET, SO_PASSCRED, 1)
        api.sendto(credited, b"echo:autobound", 0, address)
        api.getsockname(credited)
        api.recvfrom(credited, 100)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_kernel_daemon_passes_descriptors(api: Recorder, env: Env) -> None:
    """SCM_RIGHTS with another process: a pipe from the daemon arrives as a new
    number; a pipe we pass is read by the daemon."""
    address = env.address()
    with unix_daemon.running(address, env.type):
        fd = api.socket(env.family, env.type)
        if env.type == DGRAM:
            api.bind(fd, env.address())
        api.connect(fd, address)
        api.send(fd, b"rights")
        api.poll([(fd, POLLIN)], WAIT_MS)
        got = recv_rights(api, fd, 100, _socket.CMSG_SPACE(4))
        for number in got:
            api.note("read from the daemon's pipe", os.read(number, 100))
            os.close(number)
            api.open.discard(number)
        read_end, write_end = os.pipe()
        api.open.update((read_end, write_end))
        os.write(write_end, b"from the client")
        api.sendmsg(fd, [b"read"], [(SOL_SOCKET, SCM_RIGHTS,
                                     array.array("i", [read_end]).tobytes())])
        api.recv(fd, 100)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_kernel_names_the_kernel_refuses(api: Recorder, env: Env) -> None:
    """Names no socket here owns are the kernel's, and it refuses a stale socket file
    (another process's, closed), an abstract name nobody bound and a socket of another
    type; the socket that was refused still reaches a name of ours afterwards."""
    stale = env.address()
    leftover = _socket.socket(_socket.AF_UNIX, env.type)  # the kernel's, as a dead daemon's
    leftover.bind(stale)
    leftover.close()
    other_type = env.address()
    with unix_daemon.running(other_type, STREAM if env.type != STREAM else DGRAM):
        fd = api.socket(env.family, env.type)
        api.connect(fd, stale)
        api.sendto(fd, b"x", 0, stale)
        api.connect(fd, b"\0posix-socket-test-nobody-%d" % os.getpid())
        api.connect(fd, other_type)
        api.getsockname(fd)
        ours = api.socket(env.family, env.type)
        api.bind(ours, env.address())
        if env.type != DGRAM:
            api.listen(ours, 4)
        api.connect(fd, api.getsockname(ours))
        api.send(fd, b"a virtual name still works")
        if env.type == DGRAM:
            api.recv(ours, 100)
        else:
            server, _peer = api.accept(ours)
            api.recv(server, 100)


@scenario(*CONNECTIONS, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_kernel_daemon_full_backlog(api: Recorder, env: Env) -> None:
    """A daemon that does not accept: its backlog takes one more than asked, then a
    non-blocking connect is EAGAIN; the connected client can already send."""
    address = env.address()
    with unix_daemon.running(address, env.type, backlog=0, mode="hold"):
        first = api.socket(env.family, env.type | _socket.SOCK_NONBLOCK)
        api.connect(first, address)
        second = api.socket(env.family, env.type | _socket.SOCK_NONBLOCK)
        api.connect(second, address)
        api.connect(second, address)
        api.send(first, b"queued before accept")
        api.poll([(first, POLL_ALL), (second, POLL_ALL)], 0)
        api.getpeername(first)
        api.getpeername(second)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_kernel_refusal_leaves_a_bound_socket_as_it_was(api: Recorder,
                                                                  env: Env) -> None:
    """A bound socket (path or abstract) that the kernel refuses (a stale socket file
    of another process) keeps its name, its file and its mode, and is reached there."""
    stale = env.address()
    leftover = _socket.socket(_socket.AF_UNIX, env.type)
    leftover.bind(stale)
    leftover.close()
    mine = env.address()
    abstract = b"\0posix-socket-test-refused-%d" % os.getpid()
    for name in (mine, abstract):
        fd = api.socket(env.family, env.type)
        api.bind(fd, name)
        if name is mine:
            os.chmod(mine, 0o750)
        if env.type == DGRAM:
            api.sendto(fd, b"x", 0, stale)
        api.connect(fd, stale)
        api.getsockname(fd)
        if name is mine:
            api.note("our socket file", file_facts(mine))
        if env.type != DGRAM:
            api.listen(fd, 4)
        client = api.socket(env.family, env.type)
        api.connect(client, name)
        api.send(client, b"still reached")
        if env.type == DGRAM:
            api.recvfrom(fd, 100)
        else:
            server, _peer = api.accept(fd)
            api.recv(server, 100)
        api.close(fd)


@scenario(*ALL, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_kernel_daemon_abstract_name(api: Recorder, env: Env) -> None:
    """Another process's abstract name: taken for bind (EADDRINUSE), reached by
    connect, named by getpeername and recvfrom."""
    name = b"\0posix-socket-test-daemon-%d" % os.getpid()
    with unix_daemon.running(name, env.type):
        taken = api.socket(env.family, env.type)
        api.bind(taken, name)
        fd = api.socket(env.family, env.type)
        if env.type == DGRAM:
            api.bind(fd, env.address())
        api.connect(fd, name)
        api.getpeername(fd)
        api.send(fd, b"echo:abstract")
        api.recvfrom(fd, 100)
