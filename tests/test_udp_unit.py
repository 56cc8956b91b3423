"""UdpSocket on its own: a VirtualNetwork, sockets, calls under the network's lock.

The expected numbers and errnos are what Linux 6.18 gives over loopback (checked with
the stdlib on the kernel); the oracle suite compares the whole driver with the kernel.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import functools
import ipaddress
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from socket import AF_INET, AF_INET6

import pytest
import scenarios

import posix_socket as ps
from posix_socket.drivers.inet import InetDriver, addresses
from posix_socket.drivers.inet.network import VirtualNetwork
from posix_socket.drivers.inet.udp import SO_RXQ_OVFL, UdpSocket, truesize

POLLIN, POLLOUT, POLLERR = select.POLLIN, select.POLLOUT, select.POLLERR
POLLHUP, POLLRDNORM = select.POLLHUP, select.POLLRDNORM
POLLWRNORM, POLLWRBAND = select.POLLWRNORM, select.POLLWRBAND
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
WRITABLE = POLLOUT | POLLWRNORM | POLLWRBAND
READABLE = POLLIN | POLLRDNORM
OPTIONS = {
    "reuseaddr": (socket.SOL_SOCKET, socket.SO_REUSEADDR),
    "reuseport": (socket.SOL_SOCKET, socket.SO_REUSEPORT),
    "broadcast": (socket.SOL_SOCKET, socket.SO_BROADCAST),
    "rcvbuf": (socket.SOL_SOCKET, socket.SO_RCVBUF),
    "v6only": (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
}


class Sock:
    """A UdpSocket plus the driver's chores: parse addresses, take the lock, collect
    the sockets each call touched."""

    def __init__(self, net: VirtualNetwork, family: int = AF_INET, **options: int) -> None:
        self.net = net
        self.udp = UdpSocket(net, family)
        self.touched: list = []
        for name, value in options.items():
            self.udp.opts.set(*OPTIONS[name], value)

    def _where(self, address):
        return addresses.parse(self.udp.family, address, "op", self.net)

    def _do(self, method, *args):
        self.touched = []
        with self.net.lock:
            return method(*args, self.touched)

    def bind(self, *address):
        with self.net.lock:
            self.udp.bind(self._where(address))

    def connect(self, *address):
        self._do(self.udp.connect, self._where(address))

    def sendto(self, data, address=None, flags=0):
        where = None if address is None else self._where(address)
        return self._do(self.udp.sendto, data, flags, where)

    def recv(self, bufsize=70000, flags=0):
        return self._do(self.udp.recvfrom, bufsize, flags)

    def data(self, bufsize=70000, flags=0):
        return self.recv(bufsize, flags)[0]

    def shut(self, how):
        self._do(self.udp.shut, how)

    def setopt(self, level, name, value):
        self._do(self.udp.setsockopt, level, name, value)

    def getopt(self, level, name, buflen=0):
        with self.net.lock:
            return self.udp.getsockopt(level, name, buflen)

    def close(self):
        self._do(self.udp.close)

    def name(self):
        return self.udp.getsockname()

    def peer(self):
        return self.udp.getpeername()

    def poll(self):
        return self.udp.poll()

    def drain(self) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(self.data())
            except BlockingIOError:
                return got


def errno_of(call, *args) -> int:
    with pytest.raises(OSError) as info:
        call(*args)
    return info.value.errno


@pytest.fixture
def net() -> VirtualNetwork:
    return VirtualNetwork()


def bound(net, host="127.0.0.1", family=AF_INET, **options) -> Sock:
    sock = Sock(net, family, **options)
    sock.bind(host, 0)
    return sock


# -- binding ---------------------------------------------------------------------------

def test_bind_errors(net):
    sock = bound(net)
    assert errno_of(sock.bind, "127.0.0.1", 0) == errno.EINVAL
    assert errno_of(Sock(net).bind, "10.9.9.9", 0) == errno.EADDRNOTAVAIL
    assert errno_of(Sock(net).bind, "127.0.0.1", sock.name()[1]) == errno.EADDRINUSE
    v6only = Sock(net, AF_INET6, v6only=1)
    assert errno_of(v6only.bind, "::ffff:127.0.0.1", 0) == errno.EINVAL
    Sock(net).bind("255.255.255.255", 0)  # Linux lets a socket bind a broadcast address
    Sock(net).bind("127.255.255.255", 0)


def test_close_releases_the_port_and_the_queue(net):
    receiver, sender = bound(net), Sock(net)
    sender.sendto(b"x", receiver.name())
    port = receiver.name()[1]
    receiver.close()
    assert receiver.udp.rx is None and receiver.udp.charged == 0
    Sock(net).bind("127.0.0.1", port)


def test_networks_are_isolated():
    one, two = VirtualNetwork(), VirtualNetwork()
    a, b = bound(one), Sock(two)
    b.bind("127.0.0.1", a.name()[1])  # the same port, another network
    Sock(one).sendto(b"to one", a.name())
    assert b.drain() == [] and a.drain() == [b"to one"]


# -- sending -------------------------------------------------------------------------------

def test_send_without_destination_autobinds_then_fails(net):
    sock = Sock(net)
    assert errno_of(sock.sendto, b"x") == errno.EDESTADDRREQ
    host, port = sock.name()
    assert host == "0.0.0.0" and 32768 <= port <= 60999
    # IPv4 checks the 64 KiB limit before the destination, IPv6 does not.
    assert errno_of(Sock(net).sendto, b"x" * 65536) == errno.EMSGSIZE
    assert errno_of(Sock(net, AF_INET6).sendto, b"x" * 70000) == errno.EDESTADDRREQ


@pytest.mark.parametrize(("family", "host", "limit"), [
    (AF_INET, "127.0.0.1", 65507), (AF_INET6, "::1", 65527),
    (AF_INET6, "::ffff:127.0.0.1", 65507)])
def test_largest_datagram(net, family, host, limit):
    receiver = bound(net, "::" if family == AF_INET6 else "127.0.0.1", family)
    sender = Sock(net, family)
    target = (host, receiver.name()[1])
    assert sender.sendto(b"x" * limit, target) == limit
    assert errno_of(sender.sendto, b"x" * (limit + 1), target) == errno.EMSGSIZE
    assert len(receiver.data()) == limit
    assert receiver.drain() == []


def test_port_zero_and_out_of_band(net):
    assert errno_of(Sock(net).sendto, b"x", ("127.0.0.1", 0)) == errno.EINVAL
    assert errno_of(Sock(net).sendto, b"x", ("10.9.9.9", 0)) == errno.EINVAL
    assert errno_of(Sock(net).sendto, b"x", ("127.0.0.1", 9), socket.MSG_OOB) == \
        errno.EOPNOTSUPP
    assert errno_of(Sock(net).sendto, b"x", ("10.9.9.9", 9)) == errno.ENETUNREACH


def test_payload_travels_by_reference_and_source_is_reported(net):
    receiver = bound(net)
    sender = bound(net, "127.0.0.9")
    payload = b"immutable" * 10
    assert sender.sendto(payload, receiver.name()) == len(payload)
    assert receiver.touched == [] and receiver.udp in sender.touched
    data, source, flags = receiver.recv()
    assert data is payload and source == sender.name() and flags == 0
    mutable = bytearray(b"abc")
    sender.sendto(memoryview(mutable), receiver.name())
    mutable[0] = ord("z")
    assert receiver.data() == b"abc"


def test_source_address_of_a_wildcard_sender(net):
    receiver = bound(net, "0.0.0.0")
    port = receiver.name()[1]
    sender = Sock(net)
    sender.sendto(b"x", ("127.0.0.5", port))
    assert receiver.recv()[1] == ("127.0.0.1", sender.name()[1])  # lo's routes: src .1
    sender.sendto(b"x", ("0.0.0.0", port))  # 0.0.0.0 means this host
    assert receiver.recv()[1][0] == "127.0.0.1"
    specific = bound(net, "127.0.0.9")
    specific.sendto(b"x", ("0.0.0.0", port))
    assert receiver.recv()[1] == specific.name()
    dual = bound(net, "::", AF_INET6)
    Sock(net).sendto(b"v4", ("127.0.0.1", dual.name()[1]))
    assert dual.recv()[1][0] == "::ffff:127.0.0.1"
    v6 = Sock(net, AF_INET6)
    v6.sendto(b"v6", ("::", dual.name()[1]))  # :: means ::1
    assert dual.recv()[1] == ("::1", v6.name()[1], 0, 0)


def test_ipv6_socket_and_ipv4_destinations(net):
    v6only = Sock(net, AF_INET6, v6only=1)
    assert errno_of(v6only.sendto, b"x", ("::ffff:127.0.0.1", 9)) == errno.ENETUNREACH
    assert v6only.name()[1] != 0  # autobound all the same
    on_v6 = bound(net, "::1", AF_INET6)
    assert errno_of(on_v6.sendto, b"x", ("::ffff:127.0.0.1", 9)) == errno.ENETUNREACH
    on_v4 = bound(net, "::ffff:127.0.0.1", AF_INET6)
    assert errno_of(on_v4.sendto, b"x", ("::1", 9)) == errno.EAFNOSUPPORT
    assert errno_of(on_v4.connect, "::1", 9) == errno.EAFNOSUPPORT


# -- connected sockets ---------------------------------------------------------------------

def test_connect_names(net):
    sock = Sock(net)
    assert errno_of(sock.peer) == errno.ENOTCONN
    sock.connect("0.0.0.0", 5000)  # the wildcard means loopback
    assert sock.peer() == ("127.0.0.1", 5000)
    assert sock.name()[0] == "127.0.0.1"  # the route's source fixes the address
    wildcard = bound(net, "0.0.0.0")
    wildcard.connect("127.0.0.5", 5000)
    assert wildcard.name()[0] == "127.0.0.1"
    six = Sock(net, AF_INET6)
    six.connect("::1", 5000, 7, 0)
    assert six.peer() == ("::1", 5000, 0, 0) and six.name()[0] == "::1"
    port_zero = Sock(net)
    port_zero.connect("127.0.0.1", 0)
    assert errno_of(port_zero.peer) == errno.ENOTCONN  # inet_dport 0 on Linux


def test_connect_errors_keep_the_autobind_and_the_old_peer(net):
    v6only = Sock(net, AF_INET6, v6only=1)
    assert errno_of(v6only.connect, "::ffff:127.0.0.1", 9) == errno.ENETUNREACH
    assert v6only.name()[1] != 0
    sock = Sock(net)
    sock.connect("127.0.0.1", 9)
    assert errno_of(sock.connect, "10.9.9.9", 9) == errno.ENETUNREACH
    assert errno_of(sock.connect, "127.255.255.255", 9) == errno.EACCES
    assert sock.peer() == ("127.0.0.1", 9)


def test_connected_socket_receives_only_from_its_peer(net):
    receiver, peer, stranger = bound(net), bound(net), bound(net)
    stranger.sendto(b"early", receiver.name())  # queued before connect: kept
    receiver.connect(*peer.name())
    stranger.sendto(b"stranger", receiver.name())
    peer.sendto(b"peer", receiver.name())
    assert receiver.drain() == [b"early", b"peer"]
    assert stranger.udp.error == 0  # unconnected senders never hear of it


def test_econnrefused_after_sending_to_a_closed_port(net):
    gone = bound(net)
    port = gone.name()[1]
    gone.close()
    sock = Sock(net)
    sock.connect("127.0.0.1", port)
    assert sock.sendto(b"x") == 1
    assert sock.udp in sock.touched
    assert sock.poll() == WRITABLE | POLLERR
    assert errno_of(sock.sendto, b"y") == errno.ECONNREFUSED  # reported once ...
    assert sock.poll() == WRITABLE
    assert sock.sendto(b"z") == 1
    assert errno_of(sock.recv) == errno.ECONNREFUSED  # ... by a send or a receive
    assert errno_of(sock.recv) == errno.EAGAIN
    sock.sendto(b"again")
    assert sock.udp.take_error() == errno.ECONNREFUSED and sock.udp.take_error() == 0


def test_pending_error_order(net):
    server, receiver = bound(net), bound(net)
    client = bound(net)
    client.connect(*server.name())
    server.sendto(b"queued", client.name())
    server.close()
    client.sendto(b"x")
    # EMSGSIZE comes first and keeps the error; the error comes before queued data
    # and the failed send delivers nothing.
    assert errno_of(client.sendto, b"x" * 65508) == errno.EMSGSIZE
    assert errno_of(client.sendto, b"x", receiver.name()) == errno.ECONNREFUSED
    assert receiver.drain() == []
    client.sendto(b"x")
    assert errno_of(client.recv) == errno.ECONNREFUSED
    assert client.data() == b"queued"


def test_no_error_unless_sent_to_the_peer(net):
    listener, gone = bound(net), bound(net)
    dead = gone.name()
    gone.close()
    sock = Sock(net)
    sock.connect(*listener.name())
    sock.sendto(b"x", dead)
    assert sock.udp.error == 0
    elsewhere = bound(net)
    elsewhere.connect(*listener.name())
    towards = Sock(net)
    towards.connect(*elsewhere.name())  # its receiver only takes its own peer
    towards.sendto(b"x")
    assert towards.udp.error == errno.ECONNREFUSED and elsewhere.drain() == []


# -- who receives ----------------------------------------------------------------------

def test_lookup_preferences(net):
    first = bound(net, "127.0.0.1", reuseaddr=1)
    port = first.name()[1]
    last = Sock(net, reuseaddr=1)
    last.bind("127.0.0.1", port)
    wildcard = Sock(net, reuseaddr=1)
    wildcard.bind("0.0.0.0", port)
    sender = Sock(net)
    for _ in range(3):
        sender.sendto(b"x", ("127.0.0.1", port))
    sender.sendto(b"y", ("127.0.0.2", port))
    assert (len(first.drain()), len(last.drain()), wildcard.drain()) == (0, 3, [b"y"])

    dual = Sock(net, AF_INET6, reuseaddr=1)
    dual.bind("::", 0)
    v4 = Sock(net, reuseaddr=1)
    v4.bind("0.0.0.0", dual.name()[1])
    sender.sendto(b"v4", ("127.0.0.1", v4.name()[1]))
    assert (dual.drain(), v4.drain()) == ([], [b"v4"])

    server = bound(net, reuseaddr=1)
    client = bound(net)
    connected = Sock(net, reuseaddr=1)
    connected.bind(*server.name())
    connected.connect(*client.name())
    newest = Sock(net, reuseaddr=1)
    newest.bind(*server.name())
    client.sendto(b"c", server.name())
    sender.sendto(b"s", server.name())
    assert (server.drain(), connected.drain(), newest.drain()) == ([], [b"c"], [b"s"])


def test_reuseport_group_spreads_by_source(net):
    group = [Sock(net, reuseport=1) for _ in range(4)]
    group[0].bind("127.0.0.1", 0)
    port = group[0].name()[1]
    for sock in group[1:]:
        sock.bind("127.0.0.1", port)
    for _ in range(40):
        sender = Sock(net)
        sender.sendto(b"a", ("127.0.0.1", port))
        sender.sendto(b"b", ("127.0.0.1", port))
    counts = [len(sock.drain()) for sock in group]
    assert sum(counts) == 80 and sum(1 for n in counts if n) > 1
    assert all(n % 2 == 0 for n in counts)  # one sender, one member


def test_broadcast(net):
    plain = Sock(net)
    for host in ("255.255.255.255", "127.255.255.255", "<broadcast>"):
        assert errno_of(plain.sendto, b"x", (host, 9)) == errno.EACCES
    any1 = bound(net, "0.0.0.0", reuseaddr=1)
    port = any1.name()[1]
    receivers = {"any2": ("0.0.0.0", AF_INET, {}), "lo": ("127.0.0.1", AF_INET, {}),
                 "lo-broadcast": ("127.255.255.255", AF_INET, {}),
                 "dual": ("::", AF_INET6, {}), "v6only": ("::", AF_INET6, {"v6only": 1})}
    socks = {"any1": any1}
    for name, (host, family, options) in receivers.items():
        socks[name] = Sock(net, family, reuseaddr=1, **options)
        socks[name].bind(host, port)
    socks["connected"] = Sock(net, reuseaddr=1)
    socks["connected"].bind("0.0.0.0", port)
    socks["connected"].connect("127.0.0.1", 9)
    sender = Sock(net, broadcast=1)
    sender.sendto(b"all", ("127.255.255.255", port))
    got = {name for name, sock in socks.items() if sock.drain()}
    assert got == {"any1", "any2", "lo-broadcast", "dual"}
    sender.sendto(b"all", ("255.255.255.255", port))
    got = {name for name, sock in socks.items() if sock.drain()}
    assert got == {"any1", "any2", "dual"}
    sender.connect("127.255.255.255", 9)  # nobody there: no error for a broadcast
    sender.sendto(b"x")
    assert sender.udp.error == 0 and sender.name()[0] == "127.0.0.1"


# -- multicast (IPv4) ---------------------------------------------------------------------

GROUP = "239.1.2.3"
IP = socket.IPPROTO_IP


def mreq(group=GROUP, interface="0.0.0.0", ifindex=None) -> bytes:
    raw = socket.inet_aton(group) + socket.inet_aton(interface)
    return raw if ifindex is None else raw + ifindex.to_bytes(4, "little")


def join(sock, group=GROUP, *interface):
    sock.setopt(IP, socket.IP_ADD_MEMBERSHIP, mreq(group, *interface))


def leave(sock, group=GROUP, *interface):
    sock.setopt(IP, socket.IP_DROP_MEMBERSHIP, mreq(group, *interface))


def test_multicast_membership_errnos(net):
    sock = Sock(net)
    join(sock)
    assert errno_of(join, sock) == errno.EADDRINUSE
    join(sock, "239.1.2.4", "127.0.0.1")
    join(sock, "239.1.2.5", "0.0.0.0", 1)  # ip_mreqn
    assert errno_of(join, sock, "10.1.1.1") == errno.EINVAL
    assert errno_of(join, sock, "255.255.255.255") == errno.EINVAL
    assert errno_of(join, sock, "239.1.2.6", "10.9.9.9") == errno.ENODEV
    assert errno_of(join, sock, "239.1.2.6", "0.0.0.0", 99) == errno.ENODEV
    for short in (1, b"", socket.inet_aton(GROUP), mreq()[:7]):
        assert errno_of(sock.setopt, IP, socket.IP_ADD_MEMBERSHIP, short) == errno.EINVAL
    assert errno_of(leave, sock, "239.9.9.9") == errno.EADDRNOTAVAIL
    assert errno_of(leave, sock, "10.1.1.1") == errno.EADDRNOTAVAIL  # not EINVAL
    leave(sock, GROUP, "127.0.0.1")  # the network's one interface, however named
    assert errno_of(leave, sock) == errno.EADDRNOTAVAIL
    for n in range(18):
        join(sock, f"239.3.3.{n}")
    assert errno_of(join, sock, "239.4.4.4") == errno.ENOBUFS  # igmp_max_memberships


def multicast_party(net):
    """Sockets on one port: bound to the group, to the wildcard (a dual-stack one
    too), to 127.0.0.1 (never reached), a v6only one (never reached)."""
    first = bound(net, GROUP, reuseaddr=1)
    port = first.name()[1]
    socks = {"group": first}
    for name, host, family, options in (
            ("any", "0.0.0.0", AF_INET, {}), ("lo", "127.0.0.1", AF_INET, {}),
            ("dual", "::", AF_INET6, {}), ("v6only", "::", AF_INET6, {"v6only": 1})):
        socks[name] = Sock(net, family, reuseaddr=1, **options)
        socks[name].bind(host, port)
    return socks, port


def received(socks) -> set:
    return {name for name, sock in socks.items() if sock.drain()}


def test_multicast_reaches_the_port_once_the_network_joined(net):
    socks, port = multicast_party(net)
    sender = Sock(net)  # no SO_BROADCAST needed
    assert sender.sendto(b"m", (GROUP, port)) == 1
    assert received(socks) == set()  # nobody joined: nobody gets it
    join(socks["any"])
    sender.sendto(b"m", (GROUP, port))
    # Linux's IP_MULTICAST_ALL (default 1): a socket that did not join takes it too;
    # but an AF_INET6 socket starts with it off (checked on Linux 6.18 in unshare -n).
    assert received(socks) == {"group", "any"}
    assert socks["dual"].udp.opts.flag(IP, 49) == 0
    source = (sender.udp.getsockname()[0], sender.udp.getsockname()[1])
    assert source == ("0.0.0.0", sender.name()[1])
    join(socks["dual"])
    sender.sendto(b"m", (GROUP, port))
    assert socks["any"].recv()[1] == ("127.0.0.1", sender.name()[1])
    assert socks["dual"].recv()[1][0] == "::ffff:127.0.0.1"
    assert socks["group"].drain() == [b"m"]


def test_multicast_to_members_only_and_leave(net):
    socks, port = multicast_party(net)
    for sock in socks.values():
        sock.udp.opts.set(IP, 49, 0)  # IP_MULTICAST_ALL off: only its own groups
    join(socks["any"])
    join(socks["lo"])  # bound to 127.0.0.1: a group datagram never reaches it
    join(socks["v6only"])  # cannot take IPv4
    sender = Sock(net)
    sender.sendto(b"m", (GROUP, port))
    assert received(socks) == {"any"}
    sender.sendto(b"m", ("239.9.9.9", port))  # another group
    assert received(socks) == set()
    join(socks["group"])
    join(socks["dual"])
    sender.sendto(b"m", (GROUP, port))
    assert received(socks) == {"any", "group", "dual"}
    leave(socks["any"])
    sender.sendto(b"m", (GROUP, port))
    assert received(socks) == {"group", "dual"}
    socks["group"].close()
    socks["dual"].close()  # closing leaves its groups
    sender.sendto(b"m", (GROUP, port))
    assert received(socks) == set()
    assert sum(multicast_counts(net).values()) == 2  # "lo" and "v6only" still joined
    socks["lo"].close()
    socks["v6only"].close()
    assert multicast_counts(net) == {}


def test_multicast_memberships_belong_to_one_network():
    one, two = VirtualNetwork(), VirtualNetwork()
    member = bound(one, "0.0.0.0")
    port = member.name()[1]
    join(member)
    stranger = Sock(two)
    stranger.bind("0.0.0.0", port)
    Sock(two).sendto(b"m", (GROUP, port))  # the group has no member in this network
    assert stranger.drain() == [] and multicast_counts(two) == {}
    Sock(one).sendto(b"m", (GROUP, port))
    assert member.drain() == [b"m"]
    assert multicast_counts(one) == {addresses.mapped(ipaddress.IPv4Address(GROUP)): 1}


def multicast_counts(net):
    return net.multicast_groups.joined()


def test_multicast_loop_and_the_sender_itself(net):
    member = bound(net, "0.0.0.0")
    port = member.name()[1]
    join(member)
    member.sendto(b"self", (GROUP, port))  # the sender's own membership gets a copy
    assert member.drain() == [b"self"]
    member.udp.opts.set(IP, socket.IP_MULTICAST_LOOP, 0)
    member.sendto(b"self", (GROUP, port))
    assert member.drain() == []
    other = Sock(net)
    other.udp.opts.set(IP, socket.IP_MULTICAST_LOOP, b"\x00")  # one byte will do
    assert other.sendto(b"x", (GROUP, port)) == 1
    assert member.drain() == []
    other.udp.opts.set(IP, socket.IP_MULTICAST_LOOP, 1)
    other.connect(GROUP, port)
    assert other.peer() == (GROUP, port) and other.name()[0] == "127.0.0.1"
    other.sendto(b"connected")
    assert member.drain() == [b"connected"]


def test_multicast_options_read_back_as_linux(net):
    from posix_socket.drivers.inet import InetDriver
    driver = InetDriver(net)
    sock = driver.create(AF_INET, socket.SOCK_DGRAM, 0)
    get = driver.getsockopt
    for name in (socket.IP_MULTICAST_TTL, socket.IP_MULTICAST_LOOP, 49):
        assert get(sock, IP, name, 0) == 1
        assert get(sock, IP, name, 1) == b"\x01" == get(sock, IP, name, 3)
        assert get(sock, IP, name, 4) == b"\x01\0\0\0"
    assert get(sock, IP, socket.IP_TTL, 2) == b"@"  # any IP int option, as ip_getsockopt
    assert get(sock, IP, socket.IP_MULTICAST_IF, 0) == 0
    assert get(sock, IP, socket.IP_MULTICAST_IF, 2) == b"\0\0"
    driver.setsockopt(sock, IP, socket.IP_MULTICAST_TTL, 255)
    assert get(sock, IP, socket.IP_MULTICAST_TTL, 0) == 255
    driver.setsockopt(sock, IP, socket.IP_MULTICAST_TTL, -1)  # back to the default
    assert get(sock, IP, socket.IP_MULTICAST_TTL, 0) == 1
    driver.setsockopt(sock, IP, socket.IP_MULTICAST_TTL, b"\x07")
    assert get(sock, IP, socket.IP_MULTICAST_TTL, 0) == 7
    driver.setsockopt(sock, IP, socket.IP_MULTICAST_LOOP, 5)
    assert get(sock, IP, socket.IP_MULTICAST_LOOP, 0) == 1
    for name, value in ((socket.IP_MULTICAST_TTL, 256), (socket.IP_MULTICAST_TTL, -2),
                        (socket.IP_MULTICAST_TTL, b""), (socket.IP_MULTICAST_LOOP, b""),
                        (49, 5), (socket.IP_MULTICAST_IF, b"\0\0")):
        assert errno_of(driver.setsockopt, sock, IP, name, value) == errno.EINVAL
    driver.setsockopt(sock, IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    assert get(sock, IP, socket.IP_MULTICAST_IF, 4) == socket.inet_aton("127.0.0.1")
    assert get(sock, IP, socket.IP_MULTICAST_IF, 0) == 16777343  # native int, as Linux
    for bad in (socket.inet_aton("10.9.9.9"), socket.inet_aton("224.0.0.1"),
                mreq("0.0.0.0", ifindex=99)):
        assert errno_of(driver.setsockopt, sock, IP, socket.IP_MULTICAST_IF,
                        bad) == errno.EADDRNOTAVAIL
    driver.setsockopt(sock, IP, socket.IP_MULTICAST_IF, mreq("0.0.0.0", ifindex=1))
    assert get(sock, IP, socket.IP_MULTICAST_IF, 0) == 0
    assert errno_of(get, sock, IP, socket.IP_ADD_MEMBERSHIP, 0) == errno.ENOPROTOOPT
    driver.setsockopt(sock, IP, socket.IP_ADD_MEMBERSHIP, mreq())
    assert errno_of(driver.setsockopt, sock, IP, socket.IP_ADD_MEMBERSHIP,
                    mreq()) == errno.EADDRINUSE
    driver.setsockopt(sock, IP, socket.IP_DROP_MEMBERSHIP, mreq())
    tcp = driver.create(AF_INET, socket.SOCK_STREAM, 0)
    assert errno_of(driver.setsockopt, tcp, IP, socket.IP_ADD_MEMBERSHIP,
                    mreq()) == errno.EPROTO
    assert get(tcp, IP, socket.IP_MULTICAST_TTL, 0) == 1
    dual = driver.create(AF_INET6, socket.SOCK_DGRAM, 0)
    driver.setsockopt(dual, IP, socket.IP_ADD_MEMBERSHIP, mreq())  # IPv4 group, v6 socket
    Sock(net, AF_INET6).bind("::ffff:" + GROUP, 0)  # inet_addr_type: RTN_MULTICAST


# -- multicast (IPv6); the expected values were checked on Linux 6.18 in unshare -n ------

V6 = socket.IPPROTO_IPV6
GROUP6 = "ff0e::5"
IPV6_MULTICAST_ALL = 29


def mreq6(group: str = GROUP6, ifindex: int = 0) -> bytes:
    return socket.inet_pton(AF_INET6, group) + ifindex.to_bytes(4, "little", signed=True)


def join6(sock, group=GROUP6, ifindex=0):
    sock.setopt(V6, socket.IPV6_JOIN_GROUP, mreq6(group, ifindex))


def leave6(sock, group=GROUP6, ifindex=0):
    sock.setopt(V6, socket.IPV6_LEAVE_GROUP, mreq6(group, ifindex))


def test_ipv6_membership_errnos(net):
    sock = Sock(net, AF_INET6)
    join6(sock, "ff02::1")
    assert errno_of(join6, sock, "ff02::1", 1) == errno.EADDRINUSE  # 0 meant interface 1
    join6(sock, GROUP6, 1)
    assert errno_of(join6, sock, GROUP6, 0) == errno.EADDRINUSE
    assert errno_of(join6, sock, GROUP6, 99) == errno.ENODEV
    for group in ("::1", "::", "::ffff:239.1.1.1"):
        assert errno_of(join6, sock, group) == errno.EINVAL
        assert errno_of(leave6, sock, group) == errno.EINVAL
    for short in (5, b"", mreq6()[:19]):
        assert errno_of(sock.setopt, V6, socket.IPV6_JOIN_GROUP, short) == errno.EINVAL
    sock.setopt(V6, socket.IPV6_JOIN_GROUP, mreq6("ff05::9") + b"extra")
    assert errno_of(leave6, sock, "ff02::9") == errno.EADDRNOTAVAIL
    assert errno_of(leave6, sock, GROUP6, 99) == errno.EADDRNOTAVAIL
    leave6(sock, GROUP6, 0)
    assert errno_of(leave6, sock, GROUP6, 1) == errno.EADDRNOTAVAIL
    assert errno_of(sock.getopt, V6, socket.IPV6_JOIN_GROUP) == errno.ENOPROTOOPT
    assert errno_of(Sock(net).setopt, V6, socket.IPV6_JOIN_GROUP, mreq6()) == \
        errno.ENOPROTOOPT  # an IPv4 socket has no IPv6 options


def test_ipv6_memberships_are_limited_by_option_memory(net, monkeypatch):
    from posix_socket.drivers.inet import multicast
    monkeypatch.setattr(multicast, "OPTION_MEMORY", 131072)  # Linux's default optmem_max
    sock = Sock(net, AF_INET6)
    for n in range(2340):  # 56 bytes each, as struct ipv6_mc_socklist
        join6(sock, f"ff0e::1:{n:x}")
    assert errno_of(join6, sock) == errno.ENOMEM
    sock.close()
    assert multicast_counts(net) == {}


def test_ipv6_multicast_options_read_back_as_linux(net):
    sock = Sock(net, AF_INET6)
    defaults = {socket.IPV6_MULTICAST_HOPS: 1, socket.IPV6_MULTICAST_LOOP: 1,
                socket.IPV6_MULTICAST_IF: 0, IPV6_MULTICAST_ALL: 1}
    for name, value in defaults.items():
        assert sock.getopt(V6, name) == value
        assert sock.getopt(V6, name, 1) == bytes([value])
        assert sock.getopt(V6, name, 8) == value.to_bytes(4, "little")
    for name, value, reads in ((socket.IPV6_MULTICAST_HOPS, 255, 255),
                               (socket.IPV6_MULTICAST_HOPS, -1, 1),
                               (socket.IPV6_MULTICAST_LOOP, 0, 0),
                               (IPV6_MULTICAST_ALL, -2, 1), (IPV6_MULTICAST_ALL, 0, 0),
                               (socket.IPV6_MULTICAST_IF, 1, 1),
                               (socket.IPV6_MULTICAST_IF, b"\0\0\0\0", 0)):
        sock.setopt(V6, name, value)
        assert sock.getopt(V6, name) == reads
    for name, value, code in ((socket.IPV6_MULTICAST_HOPS, 256, errno.EINVAL),
                              (socket.IPV6_MULTICAST_HOPS, -2, errno.EINVAL),
                              (socket.IPV6_MULTICAST_HOPS, b"\x01", errno.EINVAL),
                              (socket.IPV6_MULTICAST_LOOP, 2, errno.EINVAL),
                              (socket.IPV6_MULTICAST_LOOP, -1, errno.EINVAL),
                              (IPV6_MULTICAST_ALL, b"", errno.EINVAL),
                              (socket.IPV6_MULTICAST_IF, 2, errno.ENODEV),
                              (socket.IPV6_MULTICAST_IF, -1, errno.ENODEV),
                              (socket.IPV6_MULTICAST_IF, b"\x01", errno.EINVAL)):
        assert errno_of(sock.setopt, V6, name, value) == code


def test_tcp_sockets_have_no_groups(net):
    from posix_socket.drivers.inet.options import Options
    tcp = Options(AF_INET6, tcp=True)
    assert errno_of(tcp.set, V6, socket.IPV6_JOIN_GROUP, mreq6()) == errno.EPROTO
    assert errno_of(tcp.set, V6, socket.IPV6_LEAVE_GROUP, b"x") == errno.EINVAL
    assert errno_of(tcp.set, IP, socket.IP_ADD_MEMBERSHIP, b"x") == errno.EPROTO
    assert errno_of(tcp.set, V6, socket.IPV6_MULTICAST_HOPS, 5) == errno.ENOPROTOOPT
    assert errno_of(tcp.set, V6, socket.IPV6_MULTICAST_IF, 0) == errno.ENOPROTOOPT
    assert tcp.get(V6, socket.IPV6_MULTICAST_HOPS, 0) == 1
    tcp.set(V6, socket.IPV6_MULTICAST_LOOP, 0)
    assert errno_of(Options(AF_INET, tcp=True).set, V6, socket.IPV6_JOIN_GROUP,
                    b"") == errno.ENOPROTOOPT


def ipv6_party(net):
    """Sockets on one port: on ::, on :: with IPV6_V6ONLY, on ::1 (never reached),
    on the group, on ff02::1%1, on ::ffff:0.0.0.0 and an AF_INET one on 0.0.0.0
    (never reached by IPv6 groups)."""
    first = bound(net, "::", AF_INET6, reuseaddr=1)
    port = first.name()[1]
    socks = {"dual": first}
    for name, host, family, options in (
            ("v6only", ("::", port), AF_INET6, {"v6only": 1}),
            ("lo", ("::1", port), AF_INET6, {}), ("group", (GROUP6, port), AF_INET6, {}),
            ("all-nodes", ("ff02::1", port, 0, 1), AF_INET6, {}),
            ("mapped", ("::ffff:0.0.0.0", port), AF_INET6, {}),
            ("four", ("0.0.0.0", port), AF_INET, {})):
        socks[name] = Sock(net, family, reuseaddr=1, **options)
        socks[name].bind(*host)
    return socks, port


def test_ipv6_group_reaches_members_and_takers_of_all(net):
    socks, port = ipv6_party(net)
    sender = Sock(net, AF_INET6)
    sender.sendto(b"m", (GROUP6, port))
    assert received(socks) == set()  # the interface is not in the group
    sender.sendto(b"m", ("ff02::1", port))  # it is in the all-nodes groups
    assert received(socks) == {"dual", "v6only", "all-nodes"}
    sender.sendto(b"m", ("ff01::1", port))
    assert received(socks) == {"dual", "v6only"}
    join6(socks["v6only"])
    socks["dual"].setopt(V6, IPV6_MULTICAST_ALL, 0)
    sender.sendto(b"m", (GROUP6, port))
    data, source, _flags = socks["v6only"].recv()
    assert data == b"m" and source == ("::1", sender.name()[1], 0, 0)  # Linux: mc0's
    assert received(socks) == {"group"}
    sender.setopt(V6, socket.IPV6_MULTICAST_LOOP, 0)
    sender.sendto(b"m", (GROUP6, port))
    assert received(socks) == set()
    leave6(socks["v6only"])
    assert multicast_counts(net) == {}


def test_multicast_loop_follows_the_socket_family(net):
    member = bound(net, "0.0.0.0")
    port = member.name()[1]
    join(member)
    six = Sock(net, AF_INET6)
    six.setopt(IP, socket.IP_MULTICAST_LOOP, 0)  # not the AF_INET6 socket's switch
    six.sendto(b"a", ("::ffff:" + GROUP, port))
    six.setopt(IP, socket.IP_MULTICAST_LOOP, 1)
    six.setopt(V6, socket.IPV6_MULTICAST_LOOP, 0)
    six.sendto(b"b", ("::ffff:" + GROUP, port))
    assert member.drain() == [b"a"]


def test_link_local_addresses_bind_the_socket_to_the_interface(net):
    sock = Sock(net, AF_INET6)
    assert errno_of(sock.bind, "ff02::1", 0) == errno.EINVAL  # which interface?
    assert errno_of(sock.bind, "ff02::1", 0, 0, 99) == errno.ENODEV
    assert errno_of(sock.bind, "::1", 0) == errno.ENODEV  # still bound to device 99
    assert errno_of(sock.sendto, b"x", ("::1", 9)) == errno.ENETUNREACH
    group = Sock(net, AF_INET6)
    group.bind("ff02::1", 0, 0, 1)
    assert group.name()[2:] == (0, 1)
    client = Sock(net, AF_INET6)
    assert errno_of(client.connect, "ff02::1", 9) == errno.EINVAL
    assert errno_of(client.connect, "fe80::1", 9) == errno.EINVAL
    client.connect("ff0e::1", 9, 0, 99)  # a global group ignores the scope id
    assert client.peer() == ("ff0e::1", 9, 0, 0) and client.name()[0] == "::1"
    client.connect("ff02::1", 9, 0, 1)
    assert client.peer() == ("ff02::1", 9, 0, 1)
    assert errno_of(client.connect, "ff02::1", 9, 0, 2) == errno.EINVAL
    client.connect("ff02::1", 9)  # the device it is bound to
    chosen = Sock(net, AF_INET6)
    chosen.setopt(V6, socket.IPV6_MULTICAST_IF, 1)
    chosen.connect("ff02::1", 9)
    assert chosen.peer() == ("ff02::1", 9, 0, 1)
    assert errno_of(chosen.sendto, b"x", ("ff02::1", 9, 0, 99)) == errno.ENETUNREACH


# -- receiving -------------------------------------------------------------------------

def test_truncation_peek_and_empty_datagrams(net):
    receiver, sender = bound(net), Sock(net)
    for payload in (b"0123456789", b"", b"abc", b"0123456789", b"0123456789"):
        sender.sendto(payload, receiver.name())
    assert receiver.udp.nread() == 10
    assert receiver.recv(4)[::2] == (b"0123", socket.MSG_TRUNC)
    assert receiver.udp.nread() == 0 and receiver.poll() & READABLE  # the empty one
    assert receiver.recv(10)[::2] == (b"", 0)
    assert receiver.recv(2, socket.MSG_PEEK)[::2] == (b"ab", socket.MSG_TRUNC)
    assert receiver.recv(10, socket.MSG_PEEK)[0] == b"abc"
    assert receiver.touched == []
    assert receiver.data() == b"abc"
    # With MSG_TRUNC Linux returns the full length: the whole datagram comes back.
    assert receiver.recv(4, socket.MSG_TRUNC)[::2] == (b"0123456789", socket.MSG_TRUNC)
    assert receiver.recv(0)[::2] == (b"", socket.MSG_TRUNC)  # consumed all the same
    assert errno_of(receiver.recv) == errno.EAGAIN
    assert not receiver.poll() & READABLE


def test_poll_and_touched(net):
    receiver, sender = bound(net), Sock(net)
    assert receiver.poll() == WRITABLE
    sender.sendto(b"x", receiver.name())
    assert receiver.poll() == WRITABLE | READABLE
    receiver.recv()
    assert receiver.udp in receiver.touched and receiver.poll() == WRITABLE


@pytest.mark.parametrize(("how", "mask"), [
    (socket.SHUT_RD, WRITABLE | READABLE | POLLRDHUP),
    (socket.SHUT_WR, WRITABLE),
    (socket.SHUT_RDWR, WRITABLE | READABLE | POLLRDHUP | POLLHUP)])
def test_shutdown(net, how, mask):
    unconnected = bound(net)
    assert errno_of(unconnected.shut, how) == errno.ENOTCONN  # but the bits are set
    assert unconnected.udp in unconnected.touched
    assert unconnected.poll() == mask
    connected = Sock(net)
    connected.connect(*unconnected.name())
    connected.shut(how)
    assert connected.poll() == mask
    if how != socket.SHUT_RD:
        assert errno_of(connected.sendto, b"x") == errno.EPIPE
    else:
        assert connected.sendto(b"x") == 1
    if how != socket.SHUT_WR:
        assert connected.recv() == (b"", None, 0)  # a blocking receive returns at once
        assert errno_of(connected.recv, 10, socket.MSG_DONTWAIT) == errno.EAGAIN


def test_datagrams_still_arrive_after_shut_rd(net):
    receiver = bound(net)
    errno_of(receiver.shut, socket.SHUT_RD)
    Sock(net).sendto(b"late", receiver.name())
    assert receiver.data() == b"late"


def test_cork_with_msg_more(net):
    receiver, other, sender = bound(net), bound(net), Sock(net)
    sender.sendto(b"a", receiver.name(), socket.MSG_MORE)
    sender.sendto(b"b", other.name(), socket.MSG_MORE)  # the address no longer counts
    assert receiver.drain() == []
    sender.sendto(b"c")  # not even a missing one
    assert receiver.drain() == [b"abc"] and other.drain() == []
    sender.sendto(b"x" * 65000, receiver.name(), socket.MSG_MORE)
    assert errno_of(sender.sendto, b"x" * 600, receiver.name()) == errno.EMSGSIZE
    sender.sendto(b"fresh", receiver.name())  # the cork was discarded
    assert receiver.drain() == [b"fresh"]


def test_udp_cork_holds_sends_until_released(net):
    receiver, sender = bound(net), Sock(net)
    sender.setopt(socket.IPPROTO_UDP, 1, 7)  # UDP_CORK; any non-zero int is on
    assert sender.getopt(socket.IPPROTO_UDP, 1) == 1
    assert sender.sendto(b"a", receiver.name()) == 1
    assert sender.sendto(b"b", receiver.name()) == 1  # no MSG_MORE: still held
    assert receiver.drain() == [] and receiver.touched == []
    sender.setopt(socket.IPPROTO_UDP, 1, 0)
    assert receiver.udp in sender.touched  # the driver wakes the receiver
    assert receiver.drain() == [b"ab"]
    sender.sendto(b"c", receiver.name(), socket.MSG_MORE)
    sender.setopt(socket.IPPROTO_UDP, 1, 0)  # turning it off releases MSG_MORE's too
    assert receiver.drain() == [b"c"]
    assert errno_of(sender.setopt, socket.IPPROTO_UDP, 1, b"\x01") == errno.EINVAL


def test_connect_reaims_or_loses_the_pending_datagram(net):
    """Checked on Linux 6.18 (in unshare -n, as the lost datagram goes astray): an
    IPv4 connect routes into the cork, so a pending IPv4 datagram follows the new
    peer and a pending IPv6 one is lost; an IPv6 connect changes nothing."""
    first, second = bound(net), bound(net)
    sender = Sock(net)
    sender.sendto(b"1", first.name(), socket.MSG_MORE)
    sender.connect(*second.name())
    sender.sendto(b"2")
    assert (first.drain(), second.drain()) == ([], [b"12"])
    six = bound(net, "::1", AF_INET6)
    dual = Sock(net, AF_INET6)
    dual.sendto(b"3", six.name(), socket.MSG_MORE)
    dual.connect("::ffff:127.0.0.1", first.name()[1])
    assert dual.sendto(b"4") == 1  # appended to the lost datagram, which goes nowhere
    assert (six.drain(), first.drain()) == ([], [])
    dual.sendto(b"5")
    assert first.drain() == [b"5"]


# -- the receive queue's budget ------------------------------------------------------------

def test_truesize_matches_linux_loopback():
    assert [truesize(n, False) for n in (0, 197, 198, 645, 646, 1669, 1670, 16004, 16005,
                                         65507)] == \
        [832, 832, 1280, 1280, 2304, 2304, 4352, 16640, 16837, 66339]
    assert [truesize(n, True) for n in (184, 185, 15991, 15992, 65488, 65489, 65527)] == \
        [832, 1280, 16640, 16824, 66320, 67144, 67144]


@pytest.mark.parametrize(("rcvbuf", "sizes", "kept"), [
    (1, [100, 100, 100], 2),  # SO_RCVBUF 2304: 2 x 832 fit, the third would not
    (1, [3000, 1], 1),  # an empty queue takes any datagram
    (1, [1000, 1], 1),
    (1500, [1000, 100, 100], 1),  # 3000: 2304 + 832 > 3000
    (100000, [65507] * 5, 3),
])
def test_full_queue_drops_and_counts(net, rcvbuf, sizes, kept):
    receiver = bound(net, rcvbuf=rcvbuf)
    sender = Sock(net)
    for size in sizes:
        assert sender.sendto(b"x" * size, receiver.name()) == size
    assert len(receiver.drain()) == kept
    assert receiver.udp.drops == net.udp_drops == len(sizes) - kept


@pytest.mark.parametrize(("reads", "taken"), [(0, 0), (1, 0), (2, 2), (3, 2), (6, 6), (7, 7)])
def test_reading_releases_the_charge_in_batches(net, reads, taken):
    """SO_RCVBUF 6000 holds 7 small datagrams; what was read is released a quarter of
    the buffer at a time, or when everything the reader took over is read."""
    receiver, sender = bound(net, rcvbuf=3000), Sock(net)
    for _ in range(10):
        sender.sendto(b"a", receiver.name())
    for _ in range(reads):
        receiver.data()
    for _ in range(10):
        sender.sendto(b"b", receiver.name())
    assert receiver.drain().count(b"b") == taken


def test_drop_count_stamped_with_so_rxq_ovfl(net, monkeypatch):
    receiver = bound(net, rcvbuf=1)
    try:
        receiver.udp.opts.set(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    except OSError:  # an options table without it: switch it on underneath
        monkeypatch.setattr(UdpSocket, "_counts_drops", lambda self: True)
    sender = Sock(net)
    for index in range(5):
        sender.sendto(b"%d" % index, receiver.name())
    receiver.drain()
    assert receiver.udp.recv_drops == 0  # queued before anything was dropped
    sender.sendto(b"late", receiver.name())
    assert receiver.data() == b"late" and receiver.udp.recv_drops == 3


# == multicast, checked against the kernel inside a network namespace =====================
#
# Multicast on the host depends on its routes, so these scenarios (scenarios.py's form:
# a function of (api, env) whose calls are logged) run their kernel side in a fresh
# network namespace (``unshare -n``, as root), set up like the virtual network: one
# multicast interface.  Linux's lo carries IPv4 multicast once a route sends the groups
# there, and is index 1 like the virtual interface, so the "lo" scenarios log every
# call as it is.  But lo drops IPv6 multicast and, being a loopback device, ignores the
# loop options and drops TTL 0; so delivery is checked on one end of a veth pair (a
# real multicast interface, which loops copies back to local members).  Its index is
# not 1 (scenarios take it from ``env.ifindex``) and its addresses are not loopback,
# so the "veth" scenarios log who received what, not from which address.

NAMESPACE_SETUPS = {
    "lo": ("ip link set lo up",
           "ip route add 224.0.0.0/4 dev lo src 127.0.0.1",
           "ip -6 route add multicast ff00::/8 dev lo table local"),
    "veth": ("ip link set lo up",
             "ip link add mc0 type veth peer name mc1",
             "sysctl -qw net.ipv6.conf.mc1.disable_ipv6=1",  # the far end stays quiet
             "sysctl -qw net.ipv6.conf.mc0.accept_dad=0",  # mc0's address usable at once
             "ip link set mc1 up",
             "ip link set mc0 up",
             "ip addr add 10.0.0.1/24 dev mc0",
             "ip route add 224.0.0.0/4 dev mc0"),
}
INTERFACE_OF_SETUP = {"lo": "lo", "veth": "mc0"}
SETUP_FAILED = 97  # the exit status of a namespace that could not be set up

# name -> the setup its kernel side runs in
NAMESPACE_SCENARIOS: dict[str, str] = {}

KERNEL_SIDE = """
import socket, sys
sys.path.insert(0, sys.argv[1])
import test_udp_unit
ifindex = socket.if_nametoindex(sys.argv[2])
print(repr({name: test_udp_unit.kernel_log(name, ifindex) for name in sys.argv[3:]}))
"""


def in_namespace(setup: str):
    """Register a scenario whose kernel side runs in a namespace set up as ``setup``."""
    def register(function):
        NAMESPACE_SCENARIOS[function.__name__] = setup
        return function
    return register


def make_ns_env(ifindex: int) -> scenarios.Env:
    env = scenarios.make_env(AF_INET6, socket.SOCK_DGRAM)
    env.ifindex = ifindex  # the multicast interface's index, 1 in the virtual network
    return env


def kernel_log(name: str, ifindex: int) -> list:
    """The kernel's log of scenario ``name`` (run inside the namespace)."""
    return scenarios.run(globals()[name], scenarios.KernelAPI, make_ns_env(ifindex))


@functools.cache
def kernel_logs(setup: str) -> dict[str, list] | str:
    """The kernel's logs of every scenario of ``setup``, from one child process in a
    fresh namespace; or why there are none."""
    if shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0:
        return "needs root, unshare(1) and ip(8) to make a network namespace"
    steps = "\n".join(f"{step} || exit {SETUP_FAILED}" for step in NAMESPACE_SETUPS[setup])
    names = [name for name, where in NAMESPACE_SCENARIOS.items() if where == setup]
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", steps + '\nexec "$@"', "sh", sys.executable, "-c",
         KERNEL_SIDE, os.path.dirname(__file__), INTERFACE_OF_SETUP[setup], *names],
        capture_output=True, text=True, timeout=120)
    if result.returncode == SETUP_FAILED:
        return f"namespace setup {setup!r} failed: {result.stderr.strip()}"
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout)


@contextlib.contextmanager
def virtual_inet():
    """A fresh virtual network serving AF_INET and AF_INET6 for a while, then exactly
    what was registered before."""
    registered = ps.registered_families()
    previous = {family: registered.get(family) for family in (AF_INET, AF_INET6)}
    driver = InetDriver(VirtualNetwork())
    for family in previous:
        ps.register_family(family, driver, replace=True)
    try:
        yield driver
    finally:
        for family, old in previous.items():
            if old is None:
                ps.unregister_family(family)
            else:
                ps.register_family(family, old, replace=True)



# -- scenario helpers ----------------------------------------------------------------------

DGRAM = socket.SOCK_DGRAM
IP_MULTICAST_ALL = 49  # Linux's number; older Pythons do not name it


def ns_socket(api, family: int, host: str, port: int, *, v6only: int | None = None,
              scope: int | None = None) -> int:
    """A datagram socket bound to (host, port), sharing the port (SO_REUSEADDR)."""
    fd = api.socket(family, DGRAM)
    api.setsockopt(fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only is not None:
        api.setsockopt(fd, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    api.bind(fd, (host, port) if scope is None else (host, port, 0, scope))
    return fd


def note_received(api, what: str, receivers: dict[str, int]) -> None:
    """Log which receivers hold which payloads, draining them.  A looped-back multicast
    copy is delivered before sendto returns (the softirq runs as the sender leaves the
    device); the pause only covers a busy machine."""
    time.sleep(0.01)
    got = {}
    for name, fd in receivers.items():
        payloads = []
        while True:
            try:
                payloads.append(api.quietly("recv", fd, 100, socket.MSG_DONTWAIT))
            except BlockingIOError:
                break
        if payloads:
            got[name] = payloads
    api.note(what, got)


def ip_party(api, group: str = GROUP) -> tuple[dict[str, int], int]:
    """Sockets on one port for IPv4 group traffic: on the wildcard, on the group, on
    127.0.0.1, and AF_INET6 ones on ::, on :: with IPV6_V6ONLY, on ::ffff:0.0.0.0."""
    first = ns_socket(api, AF_INET, "0.0.0.0", 0)
    port = scenarios.port_of(api.getsockname(first))
    receivers = {"any": first}
    for name, family, host, v6only in (
            ("group", AF_INET, group, None), ("lo", AF_INET, "127.0.0.1", None),
            ("dual", AF_INET6, "::", None), ("v6only", AF_INET6, "::", 1),
            ("mapped", AF_INET6, "::ffff:0.0.0.0", None)):
        receivers[name] = ns_socket(api, family, host, port, v6only=v6only)
    return receivers, port


# -- IPv4 ----------------------------------------------------------------------------------

@in_namespace("lo")
def ns_ipv4_group_reaches_members_and_takers_of_all(api, env) -> None:
    """An IPv4 group's datagram reaches nobody until a socket joins it; then every
    socket bound to the port on a wildcard covering IPv4 or on the group that joined it
    or keeps IP_MULTICAST_ALL on, which AF_INET sockets start with and AF_INET6 ones
    without.  224.0.0.1 needs no join (the interface is in it); the source is
    127.0.0.1, or the IP_MULTICAST_IF address."""
    receivers, port = ip_party(api)
    target = (GROUP, port)
    sender = api.socket(AF_INET, DGRAM)
    api.sendto(sender, b"nobody joined", 0, target)
    note_received(api, "nobody joined", receivers)
    api.setsockopt(receivers["any"], IP, socket.IP_ADD_MEMBERSHIP, mreq())
    api.sendto(sender, b"one joined", 0, target)
    note_received(api, "one joined", receivers)
    for name in ("any", "dual", "mapped", "v6only"):
        api.getsockopt(receivers[name], IP, IP_MULTICAST_ALL)
    api.setsockopt(receivers["dual"], IP, IP_MULTICAST_ALL, 1)
    api.sendto(sender, b"dual takes all", 0, target)
    note_received(api, "dual takes all", receivers)
    api.setsockopt(receivers["dual"], IP, IP_MULTICAST_ALL, 0)
    for name in ("mapped", "v6only", "lo"):
        api.setsockopt(receivers[name], IP, socket.IP_ADD_MEMBERSHIP, mreq())
    api.setsockopt(receivers["group"], IP, IP_MULTICAST_ALL, 0)
    api.sendto(sender, b"members", 0, target)
    note_received(api, "members", receivers)
    api.sendto(sender, b"all hosts", 0, ("224.0.0.1", port))
    note_received(api, "all hosts", receivers)
    api.sendto(sender, b"other group", 0, ("239.9.9.9", port))
    note_received(api, "other group", receivers)

    api.sendto(sender, b"whence", 0, target)
    api.recvfrom(receivers["any"], 100)
    api.recvfrom(receivers["mapped"], 100)
    note_received(api, "whence", receivers)
    six = api.socket(AF_INET6, DGRAM)
    api.sendto(six, b"from AF_INET6", 0, ("::ffff:" + GROUP, port))
    api.recvfrom(receivers["any"], 100)
    note_received(api, "from AF_INET6", receivers)
    api.sendto(receivers["group"], b"from the group's socket", 0, target)
    api.recvfrom(receivers["any"], 100)
    note_received(api, "from the group's socket", receivers)
    api.setsockopt(sender, IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.5"))
    api.sendto(sender, b"via 127.0.0.5", 0, target)
    api.recvfrom(receivers["any"], 100)
    note_received(api, "via 127.0.0.5", receivers)
    connected = api.socket(AF_INET, DGRAM)
    api.connect(connected, target)
    api.getsockname(connected)
    api.getpeername(connected)
    api.send(connected, b"connected")
    note_received(api, "connected", receivers)

    api.setsockopt(receivers["any"], IP, socket.IP_DROP_MEMBERSHIP, mreq())
    api.setsockopt(receivers["any"], IP, socket.IP_DROP_MEMBERSHIP, mreq())
    api.close(receivers.pop("mapped"))
    api.sendto(sender, b"after leaving", 0, target)
    note_received(api, "after leaving", receivers)



# -- IPv6 ----------------------------------------------------------------------------------

MULTICAST6_INTS = {"hops": socket.IPV6_MULTICAST_HOPS, "loop": socket.IPV6_MULTICAST_LOOP,
                   "if": socket.IPV6_MULTICAST_IF, "all": IPV6_MULTICAST_ALL}


@in_namespace("lo")
def ns_ipv6_multicast_options_read_back_as_linux(api, env) -> None:
    """IPV6_MULTICAST_HOPS (-1..255, -1: the default 1), _LOOP (0 or 1 only), _IF (an
    interface index: ENODEV for none), _ALL (any int, read back 0/1): an int's worth
    of bytes or EINVAL, read back into short buffers by their first bytes.  A TCP
    socket reads them all but cannot set HOPS or IF; an IPv4 socket has none."""
    fd = api.socket(AF_INET6, DGRAM)
    for option in MULTICAST6_INTS.values():
        for buflen in (0, 1, 3, 4, 8):
            api.getsockopt(fd, V6, option, buflen)
    values = (0, 1, 2, -1, -2, 255, 256, env.ifindex, 99, b"", b"\x01", b"\x01\0\0",
              b"\x02\0\0\0\0", b"\0\0\0\0")
    for option in MULTICAST6_INTS.values():
        for value in values:
            api.setsockopt(fd, V6, option, value)
            api.getsockopt(fd, V6, option)
    for family, kind in ((AF_INET6, socket.SOCK_STREAM), (AF_INET, DGRAM)):
        other = api.socket(family, kind)
        for option in MULTICAST6_INTS.values():
            api.getsockopt(other, V6, option)
            api.setsockopt(other, V6, option, 0)
            api.setsockopt(other, V6, option, b"")
            api.getsockopt(other, V6, option)
    api.getsockopt(fd, IP, socket.IP_MULTICAST_LOOP)
    api.getsockopt(fd, IP, socket.IP_MULTICAST_TTL)


@in_namespace("lo")
def ns_ipv6_memberships_and_their_errnos(api, env) -> None:
    """IPV6_JOIN_GROUP / IPV6_LEAVE_GROUP: an ipv6_mreq or EINVAL; ff00::/8 groups only
    (EINVAL both ways); twice EADDRINUSE, interface 0 meaning the route's; an unknown
    interface ENODEV to join, EADDRNOTAVAIL to leave; no count limit but option memory
    (ENOMEM).  TCP sockets: EINVAL for a short struct, else EPROTO."""
    fd = api.socket(AF_INET6, DGRAM)
    api.getsockopt(fd, V6, socket.IPV6_JOIN_GROUP)
    joins = (mreq6("ff02::1"), mreq6("ff02::1", env.ifindex), mreq6(GROUP6, env.ifindex),
             mreq6(GROUP6), mreq6("ff01::1", env.ifindex), mreq6("ff00::1"),
             mreq6("ff02::1:2", 99), mreq6("ff02::1:3", -1), mreq6("::1"), mreq6("::"),
             mreq6("::ffff:239.1.1.1"), mreq6()[:19], mreq6("ff05::9") + b"\0\0\0\0", 5)
    for value in joins:
        api.setsockopt(fd, V6, socket.IPV6_JOIN_GROUP, value)
    leaves = (mreq6("ff02::9"), mreq6("::1"), mreq6(GROUP6, 99), mreq6(GROUP6),
              mreq6(GROUP6, env.ifindex), mreq6("ff02::1", env.ifindex), mreq6()[:19], 5)
    for value in leaves:
        api.setsockopt(fd, V6, socket.IPV6_LEAVE_GROUP, value)
    api.setsockopt(fd, IP, socket.IP_ADD_MEMBERSHIP, mreq())  # IPv4 groups too
    api.setsockopt(fd, IP, socket.IP_ADD_MEMBERSHIP, mreq())
    tcp = api.socket(AF_INET6, socket.SOCK_STREAM)
    for option in (socket.IPV6_JOIN_GROUP, socket.IPV6_LEAVE_GROUP):
        api.setsockopt(tcp, V6, option, mreq6())
        api.setsockopt(tcp, V6, option, b"x")
    api.setsockopt(tcp, IP, socket.IP_ADD_MEMBERSHIP, b"x")
    four = api.socket(AF_INET, DGRAM)
    api.setsockopt(four, V6, socket.IPV6_JOIN_GROUP, mreq6())

    many = api.socket(AF_INET6, DGRAM)
    joined = 0
    while joined < 100_000:
        try:
            api.quietly("setsockopt", many, V6, socket.IPV6_JOIN_GROUP,
                        mreq6(f"ff0e::1:{joined + 1:x}"))
        except OSError as exc:
            api.note("a join fails at last", errno.errorcode[exc.errno])
            break
        joined += 1
    with open("/proc/sys/net/core/optmem_max") as file:  # the namespace's own value
        option_memory = int(file.read())
    api.note("memberships per socket: 56 bytes each of optmem_max",
             joined * 56 < option_memory <= (joined + 1) * 56)
    api.setsockopt(many, V6, socket.IPV6_LEAVE_GROUP, mreq6("ff0e::1:1"))
    api.setsockopt(many, V6, socket.IPV6_JOIN_GROUP, mreq6(GROUP6))
    api.setsockopt(many, V6, socket.IPV6_JOIN_GROUP, mreq6("ff0e::6"))


@in_namespace("lo")
def ns_ipv6_link_local_addresses_need_an_interface(api, env) -> None:
    """Binding or connecting to an interface- or link-local address (ff01::, ff02::,
    fe80::) takes the interface from the scope id (or, to connect to a group, from
    IPV6_MULTICAST_IF): EINVAL without one, ENODEV / ENETUNREACH for one that does not
    exist, and the socket stays bound to it, even when the call failed.  Names show
    the interface as their scope id; global groups ignore scope ids."""
    port = 4242
    fd = api.socket(AF_INET6, DGRAM)
    api.bind(fd, ("ff02::1", port))
    api.bind(fd, ("fe80::1", port))
    api.bind(fd, ("ff02::1", port, 0, env.ifindex))
    api.getsockname(fd)
    api.getsockopt(fd, V6, socket.IPV6_V6ONLY)
    group = api.socket(AF_INET6, DGRAM)
    api.bind(group, (GROUP6, port, 0, 99))
    api.getsockname(group)
    api.getsockopt(group, V6, socket.IPV6_V6ONLY)
    api.sendto(group, b"x", 0, ("::1", port))
    lost = api.socket(AF_INET6, DGRAM)
    api.bind(lost, ("ff02::1", port, 0, 99))
    api.bind(lost, ("::1", 0))
    api.setsockopt(lost, V6, socket.IPV6_MULTICAST_IF, env.ifindex)
    api.sendto(lost, b"x", 0, ("::1", port))
    api.bind(lost, ("::", 0))
    api.getsockname(lost)

    client = api.socket(AF_INET6, DGRAM)
    api.connect(client, ("ff02::1", port))
    api.connect(client, ("ff01::1", port))
    api.connect(client, ("fe80::1", port))
    api.getsockname(client)
    api.getpeername(client)
    api.connect(client, (GROUP6, port, 0, 99))
    api.getsockname(client)
    api.getpeername(client)
    api.sendto(client, b"x", 0, ("ff02::1", port, 0, 99))
    api.sendto(client, b"x", 0, ("ff02::1", port, 0, env.ifindex))
    api.sendto(client, b"x", 0, ("ff02::1", port))
    api.sendto(client, b"x", 0, ("ff01::1", port))
    api.sendto(client, b"x", 0, ("ff05::1", port, 0, 99))
    api.connect(client, ("ff02::1", port, 0, env.ifindex))
    api.getpeername(client)
    api.getsockname(client)
    api.connect(client, ("::1", port))
    api.getpeername(client)
    api.connect(client, ("ff02::1", port))
    api.getpeername(client)
    api.connect(client, ("ff02::1", port, 0, 99))
    api.setsockopt(client, V6, socket.IPV6_MULTICAST_IF, 0)
    api.setsockopt(client, V6, socket.IPV6_MULTICAST_IF, env.ifindex)
    chosen = api.socket(AF_INET6, DGRAM)
    api.setsockopt(chosen, V6, socket.IPV6_MULTICAST_IF, env.ifindex)
    api.connect(chosen, ("ff02::1", port))
    api.getpeername(chosen)
    astray = api.socket(AF_INET6, DGRAM)
    api.connect(astray, ("ff02::1", port, 0, 99))
    api.getsockname(astray)
    api.sendto(astray, b"x", 0, ("::1", port))
    api.connect(astray, ("::1", port))
    api.setsockopt(astray, V6, socket.IPV6_MULTICAST_IF, env.ifindex)
    mapped = api.socket(AF_INET6, DGRAM)
    api.bind(mapped, ("::ffff:127.0.0.1", 0))
    api.sendto(mapped, b"x", 0, (GROUP6, port))
    api.setsockopt(mapped, V6, socket.IPV6_JOIN_GROUP, mreq6())
    api.bind(api.socket(AF_INET6, DGRAM), ("::ffff:" + GROUP, port))
    api.bind(api.socket(AF_INET6, DGRAM), ("::ffff:224.0.0.1", port))


def ip6_party(api, env) -> tuple[dict[str, int], int]:
    """Sockets on one port for IPv6 group traffic: on ::, on :: with IPV6_V6ONLY, on
    ::1, on the group ff0e::5, on ff02::1, on ::ffff:0.0.0.0, an AF_INET one on
    0.0.0.0, and one on :: connected to someone else."""
    first = ns_socket(api, AF_INET6, "::", 0)
    port = scenarios.port_of(api.getsockname(first))
    receivers = {"dual": first}
    for name, family, host, v6only, scope in (
            ("v6only", AF_INET6, "::", 1, None), ("lo", AF_INET6, "::1", None, None),
            ("group", AF_INET6, GROUP6, None, None),
            ("all-nodes", AF_INET6, "ff02::1", None, env.ifindex),
            ("mapped", AF_INET6, "::ffff:0.0.0.0", None, None),
            ("four", AF_INET, "0.0.0.0", None, None), ("taken", AF_INET6, "::", None, None)):
        receivers[name] = ns_socket(api, family, host, port, v6only=v6only, scope=scope)
    api.connect(receivers["taken"], ("::1", 9))
    return receivers, port


@in_namespace("veth")
def ns_ipv6_group_reaches_members_and_takers_of_all(api, env) -> None:
    """An IPv6 group's datagram reaches the AF_INET6 sockets on the port bound to ::
    (IPV6_V6ONLY or not) or to the group, not connected elsewhere, that joined it or
    keep IPV6_MULTICAST_ALL on; and only while the interface is in the group: always
    for the all-nodes groups ff01::1 and ff02::1, else while some socket joined it.
    IPV6_MULTICAST_LOOP off on the sender: no copy at all; hops 0: copies still."""
    receivers, port = ip6_party(api, env)
    sender = api.socket(AF_INET6, DGRAM)
    for group in (GROUP6, "ff02::1", "ff01::1", "ff02::2", "ff05::1"):
        api.sendto(sender, b"nobody joined", 0, (group, port))
        note_received(api, f"{group}, nobody joined", receivers)
    api.setsockopt(receivers["dual"], V6, socket.IPV6_JOIN_GROUP, mreq6())
    api.sendto(sender, b"one joined", 0, (GROUP6, port))
    note_received(api, "one joined", receivers)
    for name in ("v6only", "lo", "group"):
        api.setsockopt(receivers[name], V6, IPV6_MULTICAST_ALL, 0)
    api.sendto(sender, b"v6only takes its own", 0, (GROUP6, port))
    note_received(api, "v6only takes its own", receivers)
    api.sendto(sender, b"all nodes", 0, ("ff02::1", port, 0, env.ifindex))
    note_received(api, "all nodes", receivers)
    api.setsockopt(receivers["v6only"], V6, socket.IPV6_JOIN_GROUP, mreq6(GROUP6, env.ifindex))
    api.setsockopt(receivers["dual"], V6, socket.IPV6_LEAVE_GROUP, mreq6())
    api.sendto(sender, b"the other joined", 0, (GROUP6, port))
    note_received(api, "the other joined", receivers)
    api.setsockopt(receivers["v6only"], V6, socket.IPV6_LEAVE_GROUP, mreq6())
    api.sendto(sender, b"all left", 0, (GROUP6, port))
    note_received(api, "all left", receivers)

    api.setsockopt(receivers["dual"], V6, socket.IPV6_JOIN_GROUP, mreq6())
    api.setsockopt(sender, V6, socket.IPV6_MULTICAST_LOOP, 0)
    api.sendto(sender, b"no loop", 0, (GROUP6, port))
    api.sendto(sender, b"no loop", 0, ("ff02::1", port))
    note_received(api, "no loop", receivers)
    api.setsockopt(sender, V6, socket.IPV6_MULTICAST_LOOP, 1)
    api.setsockopt(sender, V6, socket.IPV6_MULTICAST_HOPS, 0)
    api.sendto(sender, b"hops 0", 0, (GROUP6, port))
    note_received(api, "hops 0", receivers)
    api.sendto(receivers["dual"], b"to itself", 0, (GROUP6, port))
    note_received(api, "to itself", receivers)
    api.setsockopt(receivers["dual"], V6, socket.IPV6_MULTICAST_LOOP, 0)
    api.sendto(receivers["dual"], b"not even to itself", 0, (GROUP6, port))
    note_received(api, "not even to itself", receivers)
    connected = api.socket(AF_INET6, DGRAM)
    api.connect(connected, (GROUP6, port))
    api.send(connected, b"connected")
    note_received(api, "connected", receivers)
    api.close(receivers.pop("dual"))
    api.sendto(sender, b"member closed", 0, (GROUP6, port))
    note_received(api, "member closed", receivers)


@in_namespace("veth")
def ns_multicast_loop_follows_the_socket_family(api, env) -> None:
    """IP_MULTICAST_LOOP off: an AF_INET sender's group datagrams reach no socket of
    the host; an AF_INET6 sender's IPv4 ones follow IPV6_MULTICAST_LOOP instead.  TTL 0
    still loops back; a sender that joined gets its own datagram."""
    member = ns_socket(api, AF_INET, "0.0.0.0", 0)
    port = scenarios.port_of(api.getsockname(member))
    api.setsockopt(member, IP, socket.IP_ADD_MEMBERSHIP, mreq())
    receivers = {"member": member}
    four = api.socket(AF_INET, DGRAM)
    api.sendto(four, b"loop", 0, (GROUP, port))
    api.setsockopt(four, IP, socket.IP_MULTICAST_LOOP, 0)
    api.sendto(four, b"no loop", 0, (GROUP, port))
    api.sendto(four, b"no loop", 0, ("224.0.0.1", port))
    note_received(api, "AF_INET", receivers)
    api.setsockopt(four, IP, socket.IP_MULTICAST_LOOP, 1)
    api.setsockopt(four, IP, socket.IP_MULTICAST_TTL, 0)
    api.sendto(four, b"ttl 0", 0, (GROUP, port))
    note_received(api, "ttl 0", receivers)
    six = api.socket(AF_INET6, DGRAM)
    api.getsockopt(six, IP, socket.IP_MULTICAST_LOOP)
    api.setsockopt(six, IP, socket.IP_MULTICAST_LOOP, 0)
    api.sendto(six, b"IP_MULTICAST_LOOP 0", 0, ("::ffff:" + GROUP, port))
    api.setsockopt(six, IP, socket.IP_MULTICAST_LOOP, 1)
    api.setsockopt(six, V6, socket.IPV6_MULTICAST_LOOP, 0)
    api.sendto(six, b"IPV6_MULTICAST_LOOP 0", 0, ("::ffff:" + GROUP, port))
    note_received(api, "AF_INET6", receivers)
    api.sendto(member, b"to itself", 0, (GROUP, port))
    note_received(api, "to itself", receivers)


# -- the comparison --------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(NAMESPACE_SCENARIOS))
def test_multicast_matches_the_kernel_in_a_namespace(name: str) -> None:
    logs = kernel_logs(NAMESPACE_SCENARIOS[name])
    if isinstance(logs, str):
        pytest.skip(logs)
    expected = logs[name]
    assert expected[-1][0] != "scenario raised", f"scenario broken on the kernel: {expected}"
    with virtual_inet():
        actual = scenarios.run(globals()[name], scenarios.LayerAPI, make_ns_env(1))
    difference = scenarios.first_difference(expected, actual)
    assert difference is None, difference
