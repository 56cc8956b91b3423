"""Oracle scenarios for what the differential fuzzer (``test_fuzz_differential.py``)
found: each pins one difference it reported, now fixed, so that the fix is checked on
every run and not only when a random sequence happens to reach it again.  Like every
scenario, they run on the kernel and through the layer (see ``scenarios``)."""

from __future__ import annotations

import fcntl
import os
import socket as _socket
import struct

import unix_daemon
from scenarios import (
    DGRAM,
    FIONREAD,
    INT,
    IP,
    IPPROTO_TCP,
    POLL_ALL,
    POLLIN,
    POLLOUT,
    SEQPACKET,
    SOCKOPTS,
    SOL_SOCKET,
    STREAM,
    TIMEVAL,
    WAIT_MS,
    Env,
    Recorder,
    closed_port,
    connected_pair,
    ip,
    listening,
    nonblocking,
    note_ephemeral,
    port_of,
    scenario,
    wait_for_hangup,
    wait_readable,
)
from unix_scenarios import UNIX, UNIX_FAMILY

IPPROTO_IP = _socket.IPPROTO_IP
MSG_OOB, MSG_DONTWAIT = _socket.MSG_OOB, _socket.MSG_DONTWAIT
MSG_PEEK, MSG_NOSIGNAL = _socket.MSG_PEEK, _socket.MSG_NOSIGNAL
SO_ERROR = _socket.SO_ERROR
SHUT_RD, SHUT_WR, SHUT_RDWR = _socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR
LINGER = struct.Struct("@ii")
SO_PASSCRED = getattr(_socket, "SO_PASSCRED", 16)
SO_PASSSEC = getattr(_socket, "SO_PASSSEC", 34)
SO_PASSPIDFD = getattr(_socket, "SO_PASSPIDFD", 76)
UNIX_TYPES = (STREAM, DGRAM, SEQPACKET)


@scenario(STREAM, DGRAM, families=IP)
def scenario_second_bind_to_a_foreign_address(api: Recorder, env: Env) -> None:
    """A bound socket binding again: IPv4 looks at the address first
    (EADDRNOTAVAIL for one this host lacks), IPv6 at the socket first (EINVAL)."""
    fd = api.socket(env.family, env.type)
    api.bind(fd, (ip(env).loopback, 0))
    api.bind(fd, (ip(env).foreign, 0))
    api.bind(fd, (ip(env).loopback, 0))
    api.bind(fd, (ip(env).wildcard, 0))


@scenario(STREAM, families=IP)
def scenario_tcp_receive_of_urgent_data_that_never_came(api: Recorder, env: Env) -> None:
    """recv(MSG_OOB) with no urgent byte: EINVAL, except on a listener (ENOTCONN); it
    never hands out ordinary data.  recv of 0 bytes is b'' without asking anything
    (the stdlib's shortcut), recvfrom of 0 bytes asks."""
    fd = api.socket(env.family, env.type)
    api.recv(fd, 1, MSG_OOB | MSG_DONTWAIT)
    api.recv(fd, 0)
    api.recv(fd, 0, MSG_OOB)
    api.recvfrom(fd, 0)
    api.recvmsg(fd, 0)
    api.bind(fd, (ip(env).loopback, 0))
    api.listen(fd, 1)
    api.recv(fd, 1, MSG_OOB | MSG_DONTWAIT)
    api.recv(fd, 0)
    client, server = connected_pair(api, env)
    api.send(client, b"abc")
    wait_readable(api, server)
    api.recv(server, 1, MSG_OOB | MSG_DONTWAIT)
    api.recvfrom(server, 1, MSG_OOB | MSG_DONTWAIT)
    api.recv(server, 0)
    api.recvfrom(server, 0)
    api.recv(server, 10)


@scenario(STREAM, families=IP)
def scenario_tcp_port_bound_after_a_refused_connect_stays(api: Recorder, env: Env) -> None:
    """A non-blocking connect is refused in the background, bind() then takes a port,
    and the next connect reports the refusal: the socket keeps that port (Linux
    gives a port back only when the state changes to CLOSE), so binding again is
    EINVAL."""
    target = closed_port(api, env)
    fd = api.socket(env.family, nonblocking(env))
    api.connect(fd, target)
    wait_for_hangup(api, fd)
    api.bind(fd, (ip(env).loopback, 0))
    api.connect(fd, target)
    api.getsockname(fd)
    api.bind(fd, (ip(env).loopback, 0))
    api.getsockname(fd)


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_multicast_ttl_and_interface_are_not_for_tcp(api: Recorder, env: Env) -> None:
    """A stream socket reads IP_MULTICAST_TTL and IP_MULTICAST_IF but may not set them
    (EINVAL); IP_MULTICAST_LOOP it may."""
    fd = api.socket(env.family, env.type)
    for option in (_socket.IP_MULTICAST_TTL, _socket.IP_MULTICAST_IF,
                   _socket.IP_MULTICAST_LOOP):
        api.getsockopt(fd, IPPROTO_IP, option)
        api.setsockopt(fd, IPPROTO_IP, option, 1)
        api.setsockopt(fd, IPPROTO_IP, option, 0)
        api.getsockopt(fd, IPPROTO_IP, option)
    api.getsockopt(fd, IPPROTO_TCP, _socket.TCP_NODELAY)


@scenario(STREAM, DGRAM, families=IP, needs=(SOCKOPTS,))
def scenario_credential_options_are_for_unix_sockets(api: Recorder, env: Env) -> None:
    """SO_PASSCRED, SO_PASSSEC and SO_PASSPIDFD on an IP socket: EOPNOTSUPP to read or
    set (Linux 6.x; a short value is EINVAL first)."""
    fd = api.socket(env.family, env.type)
    for option in (SO_PASSCRED, SO_PASSSEC, SO_PASSPIDFD):
        api.getsockopt(fd, SOL_SOCKET, option)
        api.setsockopt(fd, SOL_SOCKET, option, 1)
        api.setsockopt(fd, SOL_SOCKET, option, 0)
        api.setsockopt(fd, SOL_SOCKET, option, b"\1")


@scenario(STREAM, DGRAM, SEQPACKET, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_so_reuseport_reads_zero_and_cannot_be_set(api: Recorder,
                                                            env: Env) -> None:
    """Only IP sockets share ports: AF_UNIX reads SO_REUSEPORT as 0 and may set it to
    0, but not on (EOPNOTSUPP)."""
    fd = api.socket(env.family, env.type)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_REUSEPORT)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_REUSEPORT, 0)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_REUSEPORT, 1)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_REUSEPORT)


@scenario(DGRAM, SEQPACKET, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_unconnected_send_after_shutdown(api: Recorder, env: Env) -> None:
    """An unconnected datagram socket checks the size, then a shut sending side
    (EPIPE), then the missing peer (ENOTCONN); seqpacket says ENOTCONN first."""
    fd = api.socket(env.family, env.type)
    api.send(fd, b"x")
    api.send(fd, b"x" * 300_000)
    api.shutdown(fd, _socket.SHUT_WR)
    api.send(fd, b"x")
    api.send(fd, b"x" * 300_000)
    api.sendto(fd, b"x", 0, env.address())


@scenario(SEQPACKET, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_unread_empty_message_does_not_reset_the_peer(api: Recorder,
                                                               env: Env) -> None:
    """A seqpacket end closed with unread bytes resets its peer (ECONNRESET once);
    closed with only an empty message unread, it does not (Linux looks past one empty
    message at the head of the queue); with two, it does."""
    first, second = connected_pair(api, env)
    api.send(first, b"")
    api.close(second)
    api.poll([(first, POLL_ALL)], 0)
    api.recv(first, 10, MSG_DONTWAIT)
    first, second = connected_pair(api, env)
    api.send(first, b"data")
    api.close(second)
    api.poll([(first, POLL_ALL)], 0)
    api.recv(first, 10, MSG_DONTWAIT)
    api.recv(first, 10, MSG_DONTWAIT)
    first, second = connected_pair(api, env)  # two empty ones: past the first, reset
    api.send(first, b"")
    api.send(first, b"")
    api.close(second)
    api.poll([(first, POLL_ALL)], 0)
    api.recv(first, 10, MSG_DONTWAIT)


@scenario(STREAM, DGRAM, SEQPACKET, needs=(SOCKOPTS,))
def scenario_so_linger_off_keeps_its_time(api: Recorder, env: Env) -> None:
    """Turning SO_LINGER off clears the flag only: the time set before reads back."""
    fd = api.socket(env.family, env.type)
    for onoff, seconds in ((1, 7), (0, 0), (0, 3), (1, 0), (0, 5)):
        api.setsockopt(fd, SOL_SOCKET, _socket.SO_LINGER, LINGER.pack(onoff, seconds))
        api.getsockopt(fd, SOL_SOCKET, _socket.SO_LINGER, LINGER.size)


@scenario(STREAM, DGRAM, SEQPACKET, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_abstract_names_are_per_socket_type(api: Recorder, env: Env) -> None:
    """Linux keeps abstract names apart per socket type: one name may be bound once by
    each type, and a socket reaches only the one of its own type there (a name held
    only by another type is ECONNREFUSED, not EPROTOTYPE as a socket file of another
    type gives).  An autobound name may be bound by a socket of another type."""
    name = b"\0posix-socket-oracle-types-" + os.urandom(6).hex().encode()
    env.addresses.append(name)
    only_others = b"\0posix-socket-oracle-others-" + os.urandom(6).hex().encode()
    env.addresses.append(only_others)
    holders = {}
    for kind in (env.type, *(kind for kind in UNIX_TYPES if kind != env.type)):
        fd = api.socket(env.family, kind)
        api.bind(fd, name)
        api.bind(api.socket(env.family, kind), name)
        if kind != DGRAM:
            api.listen(fd, 4)
        holders[kind] = fd
        if kind != env.type:
            other = api.socket(env.family, kind)
            api.bind(other, only_others)
            if kind != DGRAM:
                api.listen(other, 4)
    client = api.socket(env.family, env.type)
    api.connect(client, name)
    api.getpeername(client)
    api.send(client, b"own type")
    if env.type == DGRAM:
        api.recvfrom(holders[DGRAM], 100, MSG_DONTWAIT)
    else:
        server, _ = api.accept(holders[env.type])
        api.recv(server, 100, MSG_DONTWAIT)
    stranger = api.socket(env.family, env.type)
    api.connect(stranger, only_others)
    api.sendto(stranger, b"x", 0, only_others)
    api.getsockname(stranger)
    api.close(holders[env.type])
    api.connect(api.socket(env.family, env.type), name)
    autobound = api.socket(env.family, env.type)
    api.bind(autobound, "")
    taken = api.getsockname(autobound)
    for kind in UNIX_TYPES:
        api.bind(api.socket(env.family, kind), taken)


def _stale_kernel_file(env: Env, kind: int) -> str:
    """A socket file whose kernel socket (a dead daemon's, say) closed."""
    path = env.address()
    leftover = _socket.socket(_socket.AF_UNIX, kind)
    leftover.bind(path)
    leftover.close()
    return path


@scenario(STREAM, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_connected_or_listening_stream_aimed_at_kernel_names(
        api: Recorder, env: Env) -> None:
    """connect on a connected (or listening) stream socket: Linux looks the name up
    first (ECONNREFUSED for a name nobody holds or a stale file, ENOENT, EPROTOTYPE)
    and answers EISCONN (EINVAL) only once it found a listener, here another
    process's."""
    nobody = b"\0posix-socket-oracle-nobody-" + os.urandom(6).hex().encode()
    stale = _stale_kernel_file(env, env.type)
    daemon = env.address()
    other_type = env.address()
    with unix_daemon.running(daemon, env.type), \
            unix_daemon.running(other_type, DGRAM):
        client, server = connected_pair(api, env)
        listener = api.socket(env.family, env.type)
        api.bind(listener, "")
        api.listen(listener, 1)
        for fd in (client, listener):
            for name in (nobody, stale, daemon, other_type, env.address()):
                api.connect(fd, name)
            api.getpeername(fd)
        api.send(client, b"still connected")
        api.recv(server, 100)
        api.close(client)
        api.connect(server, nobody)


@scenario(DGRAM, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_datagram_socket_others_depend_on_aimed_at_kernel_names(
        api: Recorder, env: Env) -> None:
    """A datagram socket virtual sockets are connected to, or with messages queued,
    aimed at names nobody holds: the kernel's answers (ECONNREFUSED, ENOENT,
    EPROTOTYPE), and the socket keeps working."""
    nobody = b"\0posix-socket-oracle-nobody-" + os.urandom(6).hex().encode()
    stale = _stale_kernel_file(env, DGRAM)
    other_type = env.address()
    with unix_daemon.running(other_type, STREAM):
        fd = api.socket(env.family, env.type)
        api.bind(fd, env.address())
        sender = api.socket(env.family, env.type)
        api.connect(sender, api.getsockname(fd))
        names = (nobody, stale, other_type, env.address())
        for name in names:
            api.sendto(fd, b"x", 0, name)
            api.connect(fd, name)
        api.send(sender, b"queued")
        api.close(sender)
        for name in names:
            api.sendto(fd, b"x", 0, name)
        api.getpeername(fd)
        api.recvfrom(fd, 100, MSG_DONTWAIT)
        api.sendto(fd, b"to myself", 0, api.getsockname(fd))
        api.recvfrom(fd, 100, MSG_DONTWAIT)


@scenario(STREAM, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_blocking_accept_on_a_listener_shut_for_reading(api: Recorder,
                                                                 env: Env) -> None:
    """A listener shut for reading polls readable and refuses new connections; a
    non-blocking accept says EAGAIN, a blocking one EINVAL at once (its SO_RCVTIMEO
    never runs out), after the connections queued before the shutdown."""
    listener = api.socket(env.family, env.type)
    api.setsockopt(listener, SOL_SOCKET, _socket.SO_RCVTIMEO, TIMEVAL.pack(5, 0))
    api.bind(listener, env.address())
    api.listen(listener, 4)
    client = api.socket(env.family, env.type)
    api.connect(client, api.getsockname(listener))
    api.shutdown(listener, _socket.SHUT_RD)
    api.poll([(listener, POLL_ALL)], 0)
    api.connect(api.socket(env.family, env.type), api.getsockname(listener))
    api.accept(listener)
    api.fcntl(listener, fcntl.F_SETFL, os.O_NONBLOCK)
    api.accept4(listener, _socket.SOCK_CLOEXEC)
    api.fcntl(listener, fcntl.F_SETFL, 0)
    api.accept(listener)
    api.accept(listener)
    api.listen(listener, 4)
    api.accept(listener)


SIOCATMARK = 0x8905


def _urgent_state(api: Recorder, fd: int) -> None:
    """What a receiver shows of out-of-band data: the mark, FIONREAD, poll (POLLPRI)."""
    api.ioctl(fd, SIOCATMARK, INT.pack(0))
    api.ioctl(fd, FIONREAD, INT.pack(0))
    api.poll([(fd, POLL_ALL)], 0)


@scenario(STREAM, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_out_of_band_byte(api: Recorder, env: Env) -> None:
    """Linux 5.15+ keeps one out-of-band byte per AF_UNIX stream: the last byte of a
    MSG_OOB send, taken by recv(MSG_OOB) (EINVAL when there is none or with
    SO_OOBINLINE), shown by POLLPRI and SIOCATMARK.  An ordinary read stops at the
    mark, then steps over the byte (lost) or over its emptied message; a newer byte
    makes the older ordinary; seqpacket and datagram sockets have none (EOPNOTSUPP)."""
    def pair() -> tuple[int, int]:
        return connected_pair(api, env)

    lone = api.socket(env.family, env.type)
    api.send(lone, b"x", MSG_OOB)
    api.send(lone, b"", MSG_OOB)
    api.recv(lone, 1, MSG_OOB | MSG_DONTWAIT)
    api.ioctl(lone, SIOCATMARK, INT.pack(0))
    sender, receiver = pair()
    api.recv(receiver, 10, MSG_OOB | MSG_DONTWAIT)
    _urgent_state(api, receiver)
    api.send(sender, b"", MSG_OOB)
    api.send(sender, b"abc", MSG_OOB)
    _urgent_state(api, receiver)
    api.recv(receiver, 10, MSG_DONTWAIT)
    _urgent_state(api, receiver)
    api.recv(receiver, 10, MSG_DONTWAIT)
    _urgent_state(api, receiver)
    api.recv(receiver, 10, MSG_OOB | MSG_DONTWAIT)
    # read the byte first, then the data around it
    api.send(sender, b"abc", MSG_OOB)
    api.send(sender, b"def")
    api.recv(receiver, 10, MSG_OOB | MSG_PEEK | MSG_DONTWAIT)
    api.recv(receiver, 10, MSG_PEEK | MSG_DONTWAIT)
    api.recvmsg(receiver, 10, 0, MSG_OOB | MSG_DONTWAIT)
    _urgent_state(api, receiver)
    api.recv(receiver, 10, MSG_DONTWAIT)
    _urgent_state(api, receiver)
    api.recv(receiver, 10, MSG_DONTWAIT)
    _urgent_state(api, receiver)
    # two bytes: the older becomes ordinary
    api.send(sender, b"ab", MSG_OOB)
    api.recv(receiver, 10, MSG_OOB | MSG_DONTWAIT)
    api.send(sender, b"cd", MSG_OOB)
    api.send(sender, b"ef", MSG_OOB)
    _urgent_state(api, receiver)
    api.recv(receiver, 1, MSG_PEEK | MSG_DONTWAIT)
    api.recv(receiver, 10, MSG_DONTWAIT)
    _urgent_state(api, receiver)
    api.recvfrom(receiver, 10, MSG_OOB | MSG_DONTWAIT)
    _urgent_state(api, receiver)
    api.recv(receiver, 10, MSG_DONTWAIT)
    # SO_OOBINLINE: the byte is ordinary data, the mark still stops a read
    api.setsockopt(receiver, SOL_SOCKET, _socket.SO_OOBINLINE, 1)
    api.send(sender, b"gh", MSG_OOB)
    api.send(sender, b"ij")
    _urgent_state(api, receiver)
    api.recv(receiver, 10, MSG_OOB | MSG_DONTWAIT)
    api.recv(receiver, 10, MSG_DONTWAIT)
    api.recv(receiver, 10, MSG_DONTWAIT)
    _urgent_state(api, receiver)
    api.setsockopt(receiver, SOL_SOCKET, _socket.SO_OOBINLINE, 0)
    # a byte at the head, peeked over and read over
    api.send(sender, b"k", MSG_OOB)
    api.send(sender, b"lm")
    _urgent_state(api, receiver)
    api.recv(receiver, 10, MSG_PEEK | MSG_DONTWAIT)
    api.recv(receiver, 10, MSG_DONTWAIT)
    _urgent_state(api, receiver)
    # a peer closed with the byte unread resets; with it read, it does not
    for take in (False, True):
        sender, receiver = pair()
        api.send(sender, b"n", MSG_OOB)
        if take:
            api.recv(receiver, 1, MSG_OOB)
        api.close(receiver)
        api.poll([(sender, POLL_ALL)], 0)
        api.getsockopt(sender, SOL_SOCKET, _socket.SO_ERROR)
    sender, receiver = pair()
    api.shutdown(receiver, _socket.SHUT_RD)
    api.send(sender, b"op", MSG_OOB | MSG_NOSIGNAL)
    api.sendto(sender, b"op", MSG_OOB, env.address())
    # MSG_WAITALL ends at the mark too
    sender, receiver = pair()
    api.setsockopt(receiver, SOL_SOCKET, _socket.SO_RCVTIMEO, TIMEVAL.pack(0, 50_000))
    api.send(sender, b"qrs", MSG_OOB)
    api.send(sender, b"tuv")
    api.recv(receiver, 5, _socket.MSG_WAITALL)
    api.recv(receiver, 5, _socket.MSG_WAITALL)
    api.send(sender, b"wx", MSG_OOB)
    api.recvmsg(receiver, 5, 0, _socket.MSG_WAITALL)
    api.recvfrom(receiver, 5, MSG_OOB)


@scenario(DGRAM, SEQPACKET, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_passcred_send_autobinds_before_its_checks(api: Recorder,
                                                            env: Env) -> None:
    """A datagram or seqpacket send from an unnamed socket with SO_PASSCRED autobinds
    it first, whatever the send then says (EMSGSIZE, EPIPE, ENOTCONN for an
    unconnected datagram socket; seqpacket says ENOTCONN and EOPNOTSUPP first)."""
    def credited(fd: int) -> int:
        api.setsockopt(fd, SOL_SOCKET, SO_PASSCRED, 1)
        return fd

    lone = credited(api.socket(env.family, env.type))
    api.send(lone, b"x")
    api.getsockname(lone)
    for case in ("ok", "oob", "huge", "shut", "empty"):
        first, second = api.socketpair(env.family, env.type)
        sender = credited(first)
        if case == "shut":
            api.shutdown(sender, _socket.SHUT_WR)
        data = {"huge": b"x" * 300_000, "empty": b""}.get(case, b"x")
        api.send(sender, data, (MSG_OOB if case == "oob" else 0) | MSG_NOSIGNAL
                 | MSG_DONTWAIT)
        api.getsockname(sender)
        api.getpeername(second)


@scenario(STREAM, DGRAM, SEQPACKET, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_stream_eof_passes_empty_credentials(api: Recorder, env: Env) -> None:
    """A stream read at EOF with SO_PASSCRED on still passes credentials (all zero):
    MSG_CTRUNC without a control buffer.  Datagram and seqpacket EOF passes none."""
    first, second = api.socketpair(env.family, env.type)
    api.setsockopt(first, SOL_SOCKET, SO_PASSCRED, 1)
    api.shutdown(first, _socket.SHUT_RD)
    api.recvmsg(first, 4, 0, _socket.MSG_PEEK)
    api.recvmsg(first, 4, 0)
    api.recvmsg(first, 4, _socket.CMSG_SPACE(12))
    api.recvmsg(first, 4, 0, MSG_DONTWAIT)
    api.recv(first, 4)
    api.close(second)
    api.recvmsg(first, 4, _socket.CMSG_SPACE(12), MSG_DONTWAIT)


@scenario(STREAM, families=IP)
def scenario_tcp_no_listen_or_bind_after_a_failed_connect(api: Recorder, env: Env) -> None:
    """Linux 6.18: once a connect failed and the socket took the outcome (a blocking
    connect, or the connect that reports it), it may bind and connect again but never
    listen: EINVAL, after listen took a port (odd, as listen picks) that the socket then
    keeps: getsockname shows it, others cannot bind it, bind is EINVAL, the next
    connect speaks from it.  While the outcome waits (SO_ERROR took only the error) it
    is still connecting: listen EINVAL before taking a port, bind works."""
    dead = closed_port(api, env)
    listener = api.socket(env.family, nonblocking(env))
    api.bind(listener, (ip(env).loopback, 0))
    api.listen(listener, 8)
    addr = api.getsockname(listener)
    for bound in (False, True):
        fd = api.socket(env.family, env.type)
        if bound:
            api.bind(fd, (ip(env).loopback, 0))
        api.connect(fd, dead)
        api.listen(fd, 1)
        name = api.getsockname(fd)
        note_ephemeral(api, "failed listen", name, "odd")
        other = api.socket(env.family, env.type)
        api.bind(other, (ip(env).loopback, port_of(name)))
        api.close(other)
        api.bind(fd, (ip(env).loopback, 0))
        api.poll([(fd, POLL_ALL)], 0)
        api.connect(fd, dead)
        api.listen(fd, 1)
        api.connect(fd, addr)  # connecting still works, from the port listen took
        api.getsockname(fd)
        api.listen(fd, 1)
        api.poll([(listener, POLLIN)], WAIT_MS)
        accepted = api.accept(listener)
        if isinstance(accepted, tuple):
            api.close(accepted[0])
        api.close(fd)
    fd = api.socket(env.family, nonblocking(env))
    api.connect(fd, dead)
    wait_for_hangup(api, fd)
    api.listen(fd, 1)
    api.connect(fd, dead)  # reports the refusal
    api.bind(fd, (ip(env).loopback, 0))  # bind works, listen does not
    api.getsockname(fd)
    api.listen(fd, 1)
    api.getsockname(fd)
    api.close(fd)
    fd = api.socket(env.family, nonblocking(env))
    api.connect(fd, dead)
    wait_for_hangup(api, fd)
    api.getsockopt(fd, SOL_SOCKET, SO_ERROR)
    api.listen(fd, 1)
    api.bind(fd, (ip(env).loopback, 0))
    api.connect(fd, dead)  # ECONNABORTED: the socket is reset
    api.listen(fd, 1)
    api.bind(fd, (ip(env).loopback, 0))
    api.getsockname(fd)
    api.close(fd)


@scenario(STREAM, families=IP)
def scenario_tcp_no_listen_or_bind_after_shutdown_of_a_connect_under_way(api: Recorder,
                                                                         env: Env) -> None:
    """A connect left waiting by a full accept queue and then shut down (Linux's
    tcp_disconnect, ECONNRESET for SO_ERROR) leaves a socket that may bind and connect
    again but not listen (EINVAL), as after a failed connect."""
    listener = api.socket(env.family, env.type)
    api.bind(listener, (ip(env).loopback, 0))
    api.listen(listener, 0)
    addr = api.getsockname(listener)
    first = api.socket(env.family, env.type)
    api.connect(first, addr)
    api.poll([(listener, POLLIN)], WAIT_MS)  # queued: the accept queue is full
    for how in (SHUT_RD, SHUT_WR, SHUT_RDWR):
        fd = api.socket(env.family, nonblocking(env))
        api.connect(fd, addr)
        api.connect(fd, addr)  # EALREADY: the SYN waits
        api.shutdown(fd, how)
        api.poll([(fd, POLL_ALL)], 0)
        api.getsockopt(fd, SOL_SOCKET, SO_ERROR)
        if how == SHUT_RD:
            api.bind(fd, (ip(env).loopback, 0))
        api.listen(fd, 1)
        api.bind(fd, (ip(env).loopback, 0))
        api.getsockname(fd)
        api.close(fd)


@scenario(STREAM, families=IP)
def scenario_tcp_no_connect_after_a_listener_was_shut_down(api: Recorder, env: Env) -> None:
    """Linux 6.18: a listener shut for reading stops listening, and from then on every
    connect() is EINVAL, before or after a bind; it may listen again (then connect is
    EISCONN, as for any listener).  SHUT_WR alone leaves it listening."""
    _listener, addr = listening(api, env)
    dead = closed_port(api, env)
    for how in (SHUT_RD, SHUT_WR, SHUT_RDWR):
        fd = api.socket(env.family, env.type)
        api.listen(fd, 1)
        api.shutdown(fd, how)
        api.connect(fd, addr)
        api.connect(fd, dead)
        api.bind(fd, (ip(env).loopback, 0))
        api.connect(fd, addr)
        api.listen(fd, 1)
        api.shutdown(fd, SHUT_RD)
        api.connect(fd, addr)
        api.listen(fd, 1)
        api.connect(fd, addr)
        api.close(fd)
    fd = api.socket(env.family, nonblocking(env))
    api.bind(fd, (ip(env).loopback, 0))
    api.listen(fd, 1)
    api.shutdown(fd, SHUT_RDWR)
    api.connect(fd, addr)
    api.getsockopt(fd, SOL_SOCKET, SO_ERROR)
    api.poll([(fd, POLL_ALL)], 0)
    api.send(fd, b"x", MSG_NOSIGNAL)
    api.recv(fd, 1)
    api.getpeername(fd)
    api.close(fd)


@scenario(STREAM, families=IP)
def scenario_tcp_shutdown_before_connect_reported_its_outcome(api: Recorder,
                                                              env: Env) -> None:
    """shutdown() of a socket whose non-blocking connect has not reported its outcome:
    an attempt that failed leaves Linux's socket SS_DISCONNECTING (ENOTCONN; the
    error stays for SO_ERROR; connect and listen EINVAL from then on, bind works); one
    that succeeded makes it connected (connect EISCONN)."""
    dead = closed_port(api, env)
    listener, addr = listening(api, env)
    for how in (SHUT_RD, SHUT_WR, SHUT_RDWR):
        fd = api.socket(env.family, nonblocking(env))
        api.connect(fd, dead)
        wait_for_hangup(api, fd)
        api.shutdown(fd, how)
        api.poll([(fd, POLL_ALL)], 0)
        api.getsockopt(fd, SOL_SOCKET, SO_ERROR)
        api.connect(fd, addr)
        api.connect(fd, dead)
        api.listen(fd, 1)
        api.bind(fd, (ip(env).loopback, 0))
        api.send(fd, b"x", MSG_NOSIGNAL)
        api.recv(fd, 1)
        api.poll([(fd, POLL_ALL)], 0)
        api.shutdown(fd, how)
        api.connect(fd, addr)
        api.close(fd)
    fd = api.socket(env.family, nonblocking(env))
    api.connect(fd, dead)
    wait_for_hangup(api, fd)
    api.getsockopt(fd, SOL_SOCKET, SO_ERROR)  # the error taken: still connecting
    api.shutdown(fd, SHUT_WR)
    api.connect(fd, addr)
    api.listen(fd, 1)
    api.close(fd)
    for how in (SHUT_RD, SHUT_WR, SHUT_RDWR):
        fd = api.socket(env.family, nonblocking(env))
        api.connect(fd, addr)
        api.poll([(fd, POLLOUT)], WAIT_MS)
        server, _ = api.accept(listener)
        api.shutdown(fd, how)
        api.connect(fd, addr)
        api.listen(fd, 1)
        api.poll([(fd, POLL_ALL)], 0)
        api.close(fd)
        api.close(server)
    fd = api.socket(env.family, env.type)
    api.connect(fd, dead)  # blocking: the outcome is taken, nothing is connecting
    api.shutdown(fd, SHUT_RDWR)
    api.connect(fd, addr)
    api.close(api.accept(listener)[0])
    api.close(fd)


@scenario(STREAM, families=IP)
def scenario_tcp_connect_to_itself(api: Recorder, env: Env) -> None:
    """A TCP socket connected to its own address and port (a simultaneous open with
    itself) is connected to itself: its own peer, what it sends comes back to it, its
    FIN closes it (TIME_WAIT keeps the port), unread data at close resets it (no
    TIME_WAIT).  Also from the wildcard address, and to it."""
    for source, target in ((ip(env).loopback, ip(env).loopback),
                           (ip(env).wildcard, ip(env).loopback),
                           (ip(env).wildcard, ip(env).wildcard)):
        fd = api.socket(env.family, env.type)
        api.bind(fd, (source, 0))
        port = api.getsockname(fd)[1]
        api.connect(fd, (target, port))
        api.getsockname(fd)
        api.getpeername(fd)
        api.poll([(fd, POLL_ALL)], 0)
        api.send(fd, b"hello")
        api.poll([(fd, POLLIN)], WAIT_MS)
        api.recv(fd, 3)
        api.recv(fd, 100, MSG_DONTWAIT)
        api.recv(fd, 100, MSG_DONTWAIT)
        api.listen(fd, 1)
        api.accept(fd)
        api.connect(fd, (target, port))
        api.shutdown(fd, SHUT_WR)
        wait_for_hangup(api, fd)
        api.poll([(fd, POLL_ALL)], 0)
        api.recv(fd, 10)
        api.send(fd, b"x", MSG_NOSIGNAL)
        api.getpeername(fd)
        api.shutdown(fd, SHUT_RD)
        other = api.socket(env.family, env.type)
        api.bind(other, (ip(env).loopback, port))  # TIME_WAIT holds it
        api.close(other)
        api.close(fd)
    fd = api.socket(env.family, nonblocking(env))
    api.bind(fd, (ip(env).loopback, 0))
    name = api.getsockname(fd)
    api.connect(fd, name)
    api.poll([(fd, POLLOUT)], WAIT_MS)
    api.connect(fd, name)
    api.connect(fd, name)
    api.getsockopt(fd, SOL_SOCKET, SO_ERROR)
    stranger = api.socket(env.family, env.type)
    api.connect(stranger, name)  # not a listener: refused
    api.close(stranger)
    api.shutdown(fd, SHUT_RD)
    api.poll([(fd, POLL_ALL)], 0)
    api.send(fd, b"abc")
    api.poll([(fd, POLLIN)], WAIT_MS)
    api.recv(fd, 10)
    api.shutdown(fd, SHUT_RDWR)
    wait_for_hangup(api, fd)
    api.poll([(fd, POLL_ALL)], 0)
    api.close(fd)
    fd = api.socket(env.family, env.type)
    api.bind(fd, (ip(env).loopback, 0))
    name = api.getsockname(fd)
    api.connect(fd, name)
    api.send(fd, b"unread")
    api.poll([(fd, POLLIN)], WAIT_MS)
    api.close(fd)  # a reset: no TIME_WAIT
    other = api.socket(env.family, env.type)
    api.bind(other, name)
    api.close(other)


@scenario(STREAM, families=IP)
def scenario_tcp_connect_to_itself_after_shutdown(api: Recorder, env: Env) -> None:
    """Shut down before connecting to itself: SHUT_RD connects (and reads EOF); a
    shut sending side sends its FIN as the simultaneous open completes, so the socket
    is closed before connect() reports (blocking: ECONNABORTED; non-blocking:
    EINPROGRESS, then ECONNABORTED), its port left in TIME_WAIT and the socket reset
    as after a failed connect (listen EINVAL)."""
    for how in (SHUT_RD, SHUT_WR, SHUT_RDWR):
        for flags in (env.type, nonblocking(env)):
            fd = api.socket(env.family, flags)
            api.bind(fd, (ip(env).loopback, 0))
            name = api.getsockname(fd)
            api.shutdown(fd, how)
            api.connect(fd, name)
            if how == SHUT_RD:
                api.poll([(fd, POLLOUT)], WAIT_MS)
            else:
                wait_for_hangup(api, fd)
            api.poll([(fd, POLL_ALL)], 0)
            api.getsockopt(fd, SOL_SOCKET, SO_ERROR)
            api.getpeername(fd)
            api.connect(fd, name)
            api.getsockname(fd)
            api.poll([(fd, POLL_ALL)], 0)
            api.recv(fd, 10, MSG_DONTWAIT)
            other = api.socket(env.family, env.type)
            api.bind(other, name)
            api.close(other)
            api.listen(fd, 1)
            api.close(fd)


@scenario(STREAM, DGRAM, families=IP, needs=(SOCKOPTS,))
def scenario_ip_tos_sets_the_priority(api: Recorder, env: Env) -> None:
    """IP_TOS sets SO_PRIORITY from its bits when the TOS changes (Linux's
    rt_tos2priority; the same TOS again leaves a priority set since); a TCP socket
    keeps its own ECN bits (the low two)."""
    fd = api.socket(env.family, env.type)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_PRIORITY)
    for tos in (0x10, 0x08, 0x04, 0x02, 0x12, 0x1C, 0xFF, 0x03, 0):
        api.setsockopt(fd, IPPROTO_IP, _socket.IP_TOS, tos)
        api.getsockopt(fd, IPPROTO_IP, _socket.IP_TOS)
        api.getsockopt(fd, SOL_SOCKET, _socket.SO_PRIORITY)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_PRIORITY, 3)
    api.setsockopt(fd, IPPROTO_IP, _socket.IP_TOS, 0x10)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_PRIORITY)
    api.setsockopt(fd, SOL_SOCKET, _socket.SO_PRIORITY, 2)
    api.setsockopt(fd, IPPROTO_IP, _socket.IP_TOS, 0x10)
    api.getsockopt(fd, SOL_SOCKET, _socket.SO_PRIORITY)


@scenario(DGRAM, families=IP)
def scenario_udp_connected_to_port_zero_takes_refusals_from_its_address(api: Recorder,
                                                                        env: Env) -> None:
    """A UDP socket connected to port 0 (getpeername: not connected) takes the ICMP
    port unreachable of a datagram it sent to any port of that address as an error,
    as Linux's lookup of the sender matches any port then; also when it connected to
    the wildcard address (loopback)."""
    dead = closed_port(api, env)
    for address in (ip(env).loopback, ip(env).wildcard):
        fd = api.socket(env.family, env.type)
        api.connect(fd, (address, 0))
        api.getpeername(fd)
        api.sendto(fd, b"x", 0, dead)
        api.poll([(fd, 0)], WAIT_MS)  # POLLERR
        api.getsockopt(fd, SOL_SOCKET, SO_ERROR)
        api.close(fd)


@scenario(DGRAM, families=IP)
def scenario_udp_send_to_a_peer_connected_at_port_zero(api: Recorder, env: Env) -> None:
    """send() on a UDP socket connected to port 0: an AF_INET socket sends (to port
    0), an AF_INET6 one connected to an IPv4-mapped address is EINVAL (udpv6_sendmsg
    hands udp_sendmsg the peer as an address, and port 0 there is invalid); sendto()
    to port 0 is EINVAL for both."""
    peers = [(ip(env).loopback, 0), (ip(env).wildcard, 0)]
    if env.family == _socket.AF_INET6:
        peers += [("::ffff:127.0.0.1", 0), ("::ffff:0.0.0.0", 0)]
    for peer in peers:
        fd = api.socket(env.family, env.type)
        api.connect(fd, peer)
        api.send(fd, b"x")
        api.sendto(fd, b"x", 0, peer)
        api.close(fd)


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_tcp_send_buffer_grows_once_established(api: Recorder, env: Env) -> None:
    """Linux grows SO_SNDBUF when a connection is established (tcp_sndbuf_expand: on
    loopback, room for the initial window of 64 KiB segments): the client, the accepted
    socket and a socket connected to itself read the grown size, a listener and a
    fresh socket tcp_wmem's default, and one whose program set SO_SNDBUF keeps that."""
    listener = api.socket(env.family, env.type)
    api.bind(listener, (ip(env).loopback, 0))
    api.listen(listener, 4)
    addr = api.getsockname(listener)
    client = api.socket(env.family, env.type)
    api.getsockopt(client, SOL_SOCKET, _socket.SO_SNDBUF)
    api.connect(client, addr)
    api.getsockopt(client, SOL_SOCKET, _socket.SO_SNDBUF)
    accepted, _ = api.accept(listener)
    api.getsockopt(accepted, SOL_SOCKET, _socket.SO_SNDBUF)
    api.getsockopt(listener, SOL_SOCKET, _socket.SO_SNDBUF)
    api.close(client)
    api.close(accepted)
    fixed = api.socket(env.family, env.type)
    api.setsockopt(fixed, SOL_SOCKET, _socket.SO_SNDBUF, 65536)
    api.connect(fixed, addr)
    api.getsockopt(fixed, SOL_SOCKET, _socket.SO_SNDBUF)
    api.close(api.accept(listener)[0])
    api.close(fixed)
    itself = api.socket(env.family, env.type)
    api.bind(itself, (ip(env).loopback, 0))
    api.connect(itself, api.getsockname(itself))
    api.getsockopt(itself, SOL_SOCKET, _socket.SO_SNDBUF)
    api.close(itself)


@scenario(STREAM, families=IP)
def scenario_tcp_zero_byte_recvfrom_waits_like_any_receive(api: Recorder, env: Env) -> None:
    """recvfrom and recvmsg of 0 bytes on a connected TCP socket with nothing queued:
    tcp_recvmsg waits for a byte as for any receive (EAGAIN without waiting, EAGAIN
    after SO_RCVTIMEO when blocking), while recv(0) is b'' at once (the stdlib's
    shortcut).  With data queued, or at EOF, they return b'' and take nothing."""
    client, server = connected_pair(api, env)
    api.recvfrom(server, 0, MSG_DONTWAIT)
    api.recvmsg(server, 0, 0, MSG_DONTWAIT)
    api.recvfrom(server, 0, MSG_DONTWAIT | MSG_PEEK)
    api.recv(server, 0, MSG_DONTWAIT)
    api.setsockopt(server, SOL_SOCKET, _socket.SO_RCVTIMEO, TIMEVAL.pack(0, 10_000))
    api.recvfrom(server, 0)
    api.recvmsg(server, 0)
    api.recv(server, 0)
    api.send(client, b"abc")
    wait_readable(api, server)
    api.recvfrom(server, 0, MSG_DONTWAIT)
    api.recvmsg(server, 0, 0, MSG_DONTWAIT)
    api.recvfrom(server, 0)
    api.recv(server, 10)
    api.shutdown(client, SHUT_WR)
    wait_readable(api, server)
    api.recvfrom(server, 0, MSG_DONTWAIT)
    api.recvmsg(server, 0)


_LISTENER_OPTIONS = (
    (SOL_SOCKET, _socket.SO_RCVTIMEO, TIMEVAL.pack(0, 10_000), TIMEVAL.size),
    (SOL_SOCKET, _socket.SO_SNDTIMEO, TIMEVAL.pack(1, 12_000), TIMEVAL.size),
    (SOL_SOCKET, _socket.SO_PRIORITY, 3, 0),
    (SOL_SOCKET, _socket.SO_KEEPALIVE, 1, 0),
    (SOL_SOCKET, _socket.SO_RCVBUF, 20_000, 0),
    (SOL_SOCKET, _socket.SO_LINGER, LINGER.pack(1, 5), LINGER.size),
    (SOL_SOCKET, _socket.SO_OOBINLINE, 1, 0),
    (IPPROTO_TCP, _socket.TCP_NODELAY, 1, 0),
    (IPPROTO_TCP, _socket.TCP_KEEPIDLE, 100, 0),
    (IPPROTO_TCP, _socket.TCP_KEEPINTVL, 20, 0),
    (IPPROTO_TCP, _socket.TCP_KEEPCNT, 4, 0),
    (IPPROTO_TCP, _socket.TCP_USER_TIMEOUT, 5000, 0),
)


@scenario(STREAM, families=IP, needs=(SOCKOPTS,))
def scenario_tcp_accepted_socket_starts_with_its_listeners_options(api: Recorder,
                                                                   env: Env) -> None:
    """Linux's accepted TCP socket is a copy of its listener (sk_clone): it starts with
    the listener's SO_RCVTIMEO and SO_SNDTIMEO, buffers, keepalive, linger and TCP
    options, and TOS, but SO_PRIORITY at 0 (whatever the listener's, set or derived
    from IP_TOS, and the client's); the client keeps its own."""
    listener = api.socket(env.family, env.type)
    for level, option, value, _ in _LISTENER_OPTIONS:
        api.setsockopt(listener, level, option, value)
    if env.family == _socket.AF_INET:
        api.setsockopt(listener, IPPROTO_IP, _socket.IP_TOS, 0x10)
    api.bind(listener, (ip(env).loopback, 0))
    api.listen(listener, 4)
    client = api.socket(env.family, env.type)
    api.setsockopt(client, SOL_SOCKET, _socket.SO_PRIORITY, 5)
    api.connect(client, api.getsockname(listener))
    accepted, _ = api.accept(listener)
    for fd in (accepted, client):
        for level, option, _, size in _LISTENER_OPTIONS:
            api.getsockopt(fd, level, option, size)
        if env.family == _socket.AF_INET:
            api.getsockopt(fd, IPPROTO_IP, _socket.IP_TOS)
    api.close(accepted)
    api.close(client)
    api.close(listener)


@scenario(STREAM, SEQPACKET, families=UNIX, needs=(UNIX_FAMILY,))
def scenario_unix_accepted_socket_has_its_own_timeouts(api: Recorder, env: Env) -> None:
    """Linux's AF_UNIX accept makes its socket afresh (unix_create1), not as a copy of
    the listener: no SO_RCVTIMEO or SO_SNDTIMEO from it."""
    listener = api.socket(env.family, env.type)
    for option in (_socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO):
        api.setsockopt(listener, SOL_SOCKET, option, TIMEVAL.pack(0, 10_000))
    api.bind(listener, env.address())
    api.listen(listener, 4)
    client = api.socket(env.family, env.type)
    api.connect(client, api.getsockname(listener))
    accepted, _ = api.accept(listener)
    for option in (_socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO):
        api.getsockopt(accepted, SOL_SOCKET, option, TIMEVAL.size)
    api.close(accepted)
    api.close(client)
    api.close(listener)


@scenario(STREAM, families=IP)
def scenario_tcp_failed_bind_after_a_refused_connect_clears_the_address(
        api: Recorder, env: Env) -> None:
    """A socket bound to an ephemeral port gives the port back when its connect is
    refused, but keeps its name; a bind that then fails (EADDRINUSE) clears the
    address and keeps the old port in the name (__inet_bind's error path)."""
    target = closed_port(api, env)
    taken = api.socket(env.family, env.type)
    api.bind(taken, (ip(env).loopback, 0))
    fd = api.socket(env.family, env.type)
    api.bind(fd, (ip(env).loopback, 0))
    api.connect(fd, target)
    api.getsockname(fd)
    api.bind(fd, api.getsockname(taken))
    api.getsockname(fd)
    api.getpeername(fd)
    api.bind(fd, (ip(env).loopback, 0))
    api.getsockname(fd)
    api.close(fd)
    api.close(taken)


@scenario(STREAM, families=IP)
def scenario_tcp_urgent_data(api: Recorder, env: Env) -> None:
    """TCP urgent data as Linux keeps it: the last byte of a MSG_OOB send is marked and
    kept apart, taken once by recv(MSG_OOB) (EINVAL when none, once taken, or with
    SO_OOBINLINE; MSG_PEEK; MSG_OOB in msg_flags), shown by POLLPRI and SIOCATMARK;
    FIONREAD counts up to the mark.  An ordinary read stops at the mark once it read
    something and at the mark steps over the byte (lost) unless SO_OOBINLINE; a
    newer mark makes the older byte ordinary data, or drops it when it is at the
    head of the queue.  A UDP socket has no mark (ENOTTY)."""
    udp = api.socket(env.family, _socket.SOCK_DGRAM)
    api.ioctl(udp, SIOCATMARK, INT.pack(0))
    lone = api.socket(env.family, env.type)
    api.send(lone, b"x", MSG_OOB | MSG_NOSIGNAL)
    api.recv(lone, 1, MSG_OOB | MSG_DONTWAIT)
    api.ioctl(lone, SIOCATMARK, INT.pack(0))
    for inline in (0, 1):
        sender, receiver = connected_pair(api, env)
        api.setsockopt(sender, IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        api.setsockopt(receiver, SOL_SOCKET, _socket.SO_OOBINLINE, inline)
        api.recv(receiver, 10, MSG_OOB | MSG_DONTWAIT)
        api.send(sender, b"", MSG_OOB)
        api.send(sender, b"abc", MSG_OOB)
        wait_readable(api, receiver)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_OOB | MSG_PEEK | MSG_DONTWAIT)
        api.recv(receiver, 10, MSG_PEEK | MSG_DONTWAIT)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.recvmsg(receiver, 10, 0, MSG_OOB | MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_OOB | MSG_DONTWAIT)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        # two marks in a row: the older byte is ordinary data
        api.send(sender, b"de", MSG_OOB)
        api.send(sender, b"fg", MSG_OOB)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        # the byte taken first, then the data around it; reads stop at the mark
        api.send(sender, b"hi", MSG_OOB)
        api.send(sender, b"jk")
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_PEEK | MSG_DONTWAIT)
        api.recvfrom(receiver, 10, MSG_OOB | MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_PEEK | MSG_DONTWAIT)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        # a newer mark while the older is at the head of the queue
        api.send(sender, b"lm", MSG_OOB)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.send(sender, b"no", MSG_OOB)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_OOB | MSG_PEEK | MSG_DONTWAIT)
        api.recv(receiver, 10, MSG_PEEK | MSG_DONTWAIT)
        api.recv(receiver, 1, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        # a lone byte taken with no room: MSG_TRUNC, and it is gone
        api.send(sender, b"p", MSG_OOB)
        _urgent_state(api, receiver)
        api.recvmsg(receiver, 0, 0, MSG_OOB | MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_OOB | MSG_DONTWAIT)
        api.recv(receiver, 10, MSG_DONTWAIT)
        # the peer's FIN behind the byte
        api.send(sender, b"qr", MSG_OOB)
        api.shutdown(sender, SHUT_WR)
        api.send(sender, b"s", MSG_OOB | MSG_NOSIGNAL)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.recv(receiver, 10, MSG_DONTWAIT)
        api.recv(receiver, 10, MSG_OOB | MSG_DONTWAIT)
        api.recv(receiver, 10, MSG_DONTWAIT)
        _urgent_state(api, receiver)
        api.close(sender)
        api.close(receiver)
    listener, _ = listening(api, env)
    api.recv(listener, 1, MSG_OOB | MSG_DONTWAIT)
    api.ioctl(listener, SIOCATMARK, INT.pack(0))
