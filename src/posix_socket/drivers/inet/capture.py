"""Captures: every packet of the virtual network in a pcap file Wireshark reads.

The network knows every byte and every state change, so it can write what tcpdump on a
real interface would have seen: TCP handshakes, data segments no larger than the path's
MTU allows, acknowledgements, FIN and RST where the states put them, UDP datagrams
(fragmented as IP fragments when larger than the MTU), ICMP "port unreachable".
Sequence numbers start at an initial sequence number drawn from the network's seed and
count the bytes delivered; each segment advertises its sender's receive window.

``Tap`` is the network's single encoder: TCP and UDP call it (under the network's lock)
only while a capture is open (``net.tap`` is None otherwise: a perfect network without a
capture pays one attribute test per packet-making call).  It builds each packet once and
hands it to every open ``Capture``.  Timestamps come from the network's clock, so a
capture on a virtual clock is reproducible.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import weakref
from typing import IO, Any

from . import pcap
from .pcap import ACK, FIN, PSH, RST, SYN

__all__ = ["Capture", "Tap", "mss"]

LOOPBACK_MTU = 65536  # Linux's lo


def mss(mtu: int | None, v4: bool) -> int:
    """The largest TCP payload a packet on a path of ``mtu`` carries (no TCP options
    in data segments here): an IPv4 packet's length field stops at 65535 (Linux's lo
    says MSS 65495), IPv6's payload length does not count its header (65476)."""
    mtu = mtu or LOOPBACK_MTU
    return min(mtu, 65535) - 40 if v4 else min(mtu - 40, 65535) - 20
_WINDOW_SCALE = 7  # what Linux offers in its SYN on a default setup
_SYN_OPTIONS_HEAD = b"\x02\x04"  # MSS, then: NOP NOP SACK-permitted, NOP window scale 7
_SYN_OPTIONS_TAIL = b"\x01\x01\x04\x02\x01\x03\x03" + bytes([_WINDOW_SCALE])


class Capture:
    """A pcap file being written: ``net.capture(path_or_binary_file)`` opens one.

    Closing it (``close()`` or the end of a ``with`` block) stops the capture and
    closes the file it opened (a file object handed in is flushed, left open)."""

    def __init__(self, target: str | os.PathLike[str] | IO[bytes], detach: Any) -> None:
        if isinstance(target, (str, bytes, os.PathLike)):
            self._file: IO[bytes] = open(target, "wb")  # noqa: SIM115 - closed by close()
            self._owned = True
        elif hasattr(target, "write"):
            self._file = target
            self._owned = False
        else:
            raise TypeError(f"capture() takes a path or a binary file, not "
                            f"{type(target).__name__}")
        self._detach = detach
        self._lock = threading.Lock()
        self.closed = False
        self.packets = 0
        self._file.write(pcap.file_header())

    def write(self, timestamp_ns: int, packets: list[bytes]) -> None:
        with self._lock:
            if self.closed:
                return
            for packet in packets:
                self._file.write(pcap.record(timestamp_ns, packet))
            self.packets += len(packets)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self._detach(self)
        with self._lock:
            self._file.flush()
            if self._owned:
                self._file.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        name = getattr(self._file, "name", "a file")
        return f"<Capture {name!r} {state}, {self.packets} packets>"


class _Flow:
    """One direction of a TCP connection as the wire shows it."""

    __slots__ = ("isn", "next", "__weakref__")

    def __init__(self, isn: int) -> None:
        self.isn = isn
        self.next = isn  # sequence number of the next thing sent (SYN and FIN count 1)


class Tap:
    """Encodes the network's packets for its open captures (see the module doc)."""

    def __init__(self, clock: Any, rng: Any) -> None:
        self.captures: list[Capture] = []
        self._clock = clock
        self._random = rng  # initial sequence numbers, from the network's seed
        # The wall's time when the capture began, the network's clock after that: a
        # virtual clock's epoch is fixed, so its captures are the same every run.
        self._epoch_ns = int(clock.time() * 1e9)
        self._start = clock.now()
        self._flows: weakref.WeakKeyDictionary[Any, _Flow] = weakref.WeakKeyDictionary()
        # A wire Flow's offsets start at 0 when it is made: where that is in the
        # sender's sequence space.
        self._bases: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        # The ISN a SYN-ACK announced for the socket a listener will make: by client.
        self._answer_isn: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._ident = 0

    # -- plumbing ------------------------------------------------------------------------

    def _now_ns(self) -> int:
        return self._epoch_ns + int((self._clock.now() - self._start) * 1e9)

    def _emit(self, packets: list[bytes]) -> None:
        stamp = self._now_ns()
        for capture in self.captures:
            capture.write(stamp, packets)

    def _ip(self, source: Any, destination: Any, protocol: int, payload: bytes,
            mtu: int | None, dont_fragment: bool = True) -> list[bytes]:
        """``source``/``destination``: IPv6Address objects (IPv4 ones mapped)."""
        self._ident = (self._ident + 1) & 0xFFFF
        mtu = mtu or LOOPBACK_MTU
        v4_source, v4_destination = source.ipv4_mapped, destination.ipv4_mapped
        if v4_source is not None and v4_destination is not None:
            return pcap.ipv4_packets(v4_source.packed, v4_destination.packed, protocol,
                                     payload, self._ident, mtu, dont_fragment=dont_fragment)
        return pcap.ipv6_packets(_v6(source), _v6(destination), protocol, payload,
                                 self._ident, mtu)

    @staticmethod
    def _packed(ip: Any, v4: bool) -> bytes:
        return ip.ipv4_mapped.packed if v4 else _v6(ip)

    def _flow(self, sock: Any) -> _Flow:
        flow = self._flows.get(sock)
        if flow is None:
            peer = getattr(sock, "peer", None)
            announced = self._answer_isn.pop(peer, None) if peer is not None else None
            if announced is None:
                flow = _Flow(self._random.getrandbits(32))
            else:  # a listener's new socket: its SYN-ACK went out already
                flow = _Flow(announced)
                flow.next = (announced + 1) & 0xFFFFFFFF
            self._flows[sock] = flow
        return flow

    def _segment(self, source: Any, destination: Any, seq: int, ack: int, flags: int,
                 window: int, payload: bytes = b"", options: bytes = b"",
                 mtu: int | None = None, urgent: int = 0) -> None:
        """One segment between two endpoints, numbers given."""
        v4 = destination.ip.ipv4_mapped is not None
        segment = pcap.tcp_segment(self._packed(source.ip, v4),
                                   self._packed(destination.ip, v4), source.port,
                                   destination.port, seq, ack, flags, window, payload,
                                   options, urgent)
        self._emit(self._ip(source.ip, destination.ip, pcap.PROTO_TCP, segment, mtu))

    # -- TCP over an imperfect path (wire.py): every transmission, lost or not ---------

    def syn(self, client: Any, mtu: int | None = None) -> None:
        """A SYN (or its retransmission) from ``client``."""
        flow = self._flow(client)
        flow.next = (flow.isn + 1) & 0xFFFFFFFF
        self._segment(client.local, client.remote, flow.isn, 0, SYN, 65535,
                      options=_syn_options(mtu, client.remote), mtu=mtu)

    def syn_ack(self, client: Any, source: Any, mtu: int | None = None) -> None:
        """The SYN-ACK the listener at ``source`` sends ``client`` (the socket it will
        make takes the ISN announced here)."""
        isn = self._answer_isn.get(client)
        if isn is None:
            isn = self._answer_isn[client] = self._random.getrandbits(32)
        self._segment(source, client.local, isn, self._flow(client).next, SYN | ACK, 65535,
                      options=_syn_options(mtu, client.local), mtu=mtu)

    def reset_from(self, source: Any, target: Any, mtu: int | None = None) -> None:
        """A reset from ``source`` (a TCP socket) to ``target``."""
        if source.local is None or source.remote is None:
            return
        ack = self._flow(target).next if target is not None else 0
        self._segment(source.local, source.remote, self._flow(source).next, ack,
                      RST | ACK, 0, mtu=mtu)

    def reset_answer(self, sender: Any, peer: Any | None) -> None:
        """The reset a closed end answers ``sender``'s data with (RFC 1122)."""
        if sender.local is None or sender.remote is None:
            return
        seq = self._flow(peer).next if peer is not None else 0
        self._segment(sender.remote, sender.local, seq, 0, RST, 0)

    def wire_segment(self, flow: Any, segment: Any) -> None:
        """A data or FIN segment of a wire Flow leaving (first time or again)."""
        sender, receiver = flow.sender, flow.receiver
        if sender.local is None or sender.remote is None:
            return
        state = self._flow(sender)
        base = self._bases.get(flow)
        if base is None:
            base = self._bases[flow] = (state.next - segment.seq) & 0xFFFFFFFF
        seq = (base + segment.seq) & 0xFFFFFFFF
        end = (base + segment.end) & 0xFFFFFFFF
        if 0 < (end - state.next) & 0xFFFFFFFF < 0x80000000:
            state.next = end
        flags = ACK | (FIN if segment.fin else 0) | (PSH if segment.data else 0)
        ack = self._flow(receiver).next if receiver is not None else 0
        # Linux's urgent pointer: one past the urgent byte, on every segment before it
        urgent = min(max(flow.urgent + 1 - segment.seq, 0), 0xFFFF)
        self._segment(sender.local, sender.remote, seq, ack, flags, _window(sender),
                      segment.data, mtu=flow.path.mtu, urgent=urgent)

    def wire_ack(self, flow: Any, received: int) -> None:
        """The receiver of ``flow`` acknowledges the offsets below ``received``."""
        sender, receiver = flow.sender, flow.receiver
        if receiver is None or receiver.local is None or receiver.remote is None:
            return
        base = self._bases.get(flow)
        if base is None:
            base = self._bases[flow] = self._flow(sender).next
        self._segment(receiver.local, receiver.remote, self._flow(receiver).next,
                      (base + received) & 0xFFFFFFFF, ACK, _window(receiver),
                      mtu=flow.back.mtu)

    def keepalive_probe(self, sender: Any, mtu: int | None = None) -> None:
        """A keepalive probe: an ACK carrying the sequence number before the next."""
        if sender.local is None or sender.remote is None:
            return
        peer = sender.peer
        self._segment(sender.local, sender.remote, (self._flow(sender).next - 1) & 0xFFFFFFFF,
                      self._flow(peer).next if peer is not None else 0, ACK, _window(sender),
                      mtu=mtu)

    def ack(self, sender: Any, mtu: int | None = None) -> None:
        """A bare ACK from ``sender`` (the handshake's last, a keepalive's answer)."""
        if sender.local is None or sender.remote is None:
            return
        peer = sender.peer
        self._segment(sender.local, sender.remote, self._flow(sender).next,
                      self._flow(peer).next if peer is not None else 0, ACK, _window(sender),
                      mtu=mtu)

    # -- TCP -----------------------------------------------------------------------------

    def tcp(self, sender: Any, receiver: Any | None, flags: int, payload: bytes = b"",
            mtu: int | None = None, seq: int | None = None, window: int | None = None,
            syn_options: bool = False, urgent: int = 0) -> None:
        """One segment from ``sender`` (a TCP socket: its local and remote ends) to its
        peer ``receiver`` (None when there is no socket at the other end).  The sequence
        number is the sender's next unless ``seq`` is given (a retransmission); the
        acknowledgement is everything the receiver has sent."""
        local, remote = sender.local, sender.remote
        if local is None or remote is None:
            return
        flow = self._flow(sender)
        if seq is None:
            seq = flow.next
            flow.next = (flow.next + len(payload) + (1 if flags & (SYN | FIN) else 0)
                         ) & 0xFFFFFFFF
        ack = self._flow(receiver).next if receiver is not None and flags & ACK else 0
        v4 = remote.ip.ipv4_mapped is not None
        options = b""
        if syn_options:
            options = _SYN_OPTIONS_HEAD + mss(mtu, v4).to_bytes(2, "big") + _SYN_OPTIONS_TAIL
            window = min(window if window is not None else 65535, 0xFFFF)
        elif window is None:
            window = 65535
        else:
            window >>= _WINDOW_SCALE
        segment = pcap.tcp_segment(self._packed(local.ip, v4), self._packed(remote.ip, v4),
                                   local.port, remote.port, seq, ack, flags, window, payload,
                                   options, urgent)
        self._emit(self._ip(local.ip, remote.ip, pcap.PROTO_TCP, segment, mtu))

    def tcp_data(self, sender: Any, receiver: Any | None, data: bytes, mtu: int | None,
                 window: int | None = None, urgent: bool = False) -> None:
        """``data`` sent by ``sender``, in segments no larger than the path's MSS;
        ``urgent``: its last byte is urgent (every segment points past it)."""
        v4 = sender.remote is not None and sender.remote.ip.ipv4_mapped is not None
        size = mss(mtu, v4)
        view = memoryview(data)
        for start in range(0, len(data), size):
            chunk = bytes(view[start:start + size])
            last = start + size >= len(data)
            self.tcp(sender, receiver, ACK | (PSH if last else 0), chunk, mtu, window=window,
                     urgent=min(len(data) - start, 0xFFFF) if urgent else 0)

    def tcp_reply_reset(self, sender: Any, mtu: int | None = None) -> None:
        """The RST a closed port answers ``sender``'s SYN with (RST|ACK, seq 0)."""
        local, remote = sender.local, sender.remote
        if local is None or remote is None:
            return
        v4 = remote.ip.ipv4_mapped is not None
        segment = pcap.tcp_segment(self._packed(remote.ip, v4), self._packed(local.ip, v4),
                                   remote.port, local.port, 0, self._flow(sender).next,
                                   RST | ACK, 0)
        self._emit(self._ip(remote.ip, local.ip, pcap.PROTO_TCP, segment, mtu))

    # -- UDP -----------------------------------------------------------------------------

    def udp(self, source: Any, destination: Any, payload: bytes,
            mtu: int | None = None) -> None:
        """A datagram from endpoint ``source`` to ``destination``."""
        self._emit(self._udp_packets(source, destination, payload, mtu))

    def _udp_packets(self, source: Any, destination: Any, payload: bytes,
                     mtu: int | None) -> list[bytes]:
        v4 = destination.ip.ipv4_mapped is not None and source.ip.ipv4_mapped is not None
        datagram = pcap.udp_datagram(self._packed(source.ip, v4),
                                     self._packed(destination.ip, v4), source.port,
                                     destination.port, payload)
        return self._ip(source.ip, destination.ip, pcap.PROTO_UDP, datagram, mtu,
                        dont_fragment=False)

    def port_unreachable_for(self, source: Any, destination: Any, payload: bytes) -> None:
        """The ICMP error answering the datagram ``source`` sent ``destination``."""
        self.port_unreachable(self._udp_packets(source, destination, payload, None)[0])

    def port_unreachable(self, packet: bytes) -> None:
        """The ICMP error a host without a receiver answers the datagram ``packet`` with."""
        if packet[0] >> 4 == 6:
            source = ipaddress.IPv6Address(packet[8:24])
            destination = ipaddress.IPv6Address(packet[24:40])
            message = pcap.icmp_unreachable(packet, True)
            self._emit(self._ip(destination, source, pcap.PROTO_ICMPV6, message, None))
            return
        source = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + packet[12:16])
        destination = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + packet[16:20])
        message = pcap.icmp_unreachable(packet, False)
        self._emit(self._ip(destination, source, pcap.PROTO_ICMP, message, None))


def _syn_options(mtu: int | None, toward: Any) -> bytes:
    v4 = toward.ip.ipv4_mapped is not None
    return _SYN_OPTIONS_HEAD + mss(mtu, v4).to_bytes(2, "big") + _SYN_OPTIONS_TAIL


def _window(sock: Any) -> int:
    """The window field ``sock`` advertises (scaled by the SYN's shift)."""
    room = getattr(sock, "_room", None)
    return (room() if room is not None else 65535 << _WINDOW_SCALE) >> _WINDOW_SCALE


def _v6(ip: Any) -> bytes:
    """An IPv6 address's 16 bytes (an IPv4-mapped one as ::ffff:a.b.c.d)."""
    return ip.packed
