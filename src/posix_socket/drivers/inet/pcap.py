"""Packets as bytes on a wire: IPv4, IPv6, TCP and UDP headers, and the pcap file format.

Pure functions, no state: ``capture.py`` decides what goes over the wire, this module
only encodes it the way Linux would put it on an interface (network byte order, real
checksums, IPv4 fragments and IPv6 fragment headers when a packet is larger than the
path's MTU), in pcap files with nanosecond timestamps and raw-IP link type, which
Wireshark and tcpdump read as a capture of a real interface.
"""

from __future__ import annotations

import array
import struct
import sys

__all__ = ["file_header", "record", "ipv4_packets", "ipv6_packets", "tcp_segment",
           "udp_datagram", "icmp_unreachable", "checksum",
           "FIN", "SYN", "RST", "PSH", "ACK", "URG", "PROTO_TCP", "PROTO_UDP"]

MAGIC_NANOSECONDS = 0xA1B23C4D
LINKTYPE_RAW = 101  # each record is an IPv4 or IPv6 packet, no link-layer header
SNAPLEN = 262144
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6 = 6, 17, 1, 58
_IPV6_FRAGMENT = 44
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_LITTLE = sys.byteorder == "little"


def file_header() -> bytes:
    """A pcap file's global header: version 2.4, nanosecond timestamps, raw IP."""
    return _FILE_HEADER.pack(MAGIC_NANOSECONDS, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW)


def record(timestamp_ns: int, packet: bytes) -> bytes:
    """One packet record: its time (nanoseconds since the epoch) and its bytes."""
    seconds, nanoseconds = divmod(timestamp_ns, 1_000_000_000)
    return _RECORD_HEADER.pack(seconds, nanoseconds, len(packet), len(packet)) + packet


def checksum(*parts: bytes) -> int:
    """The Internet checksum (RFC 1071) of the concatenated parts."""
    data = b"".join(parts)
    if len(data) % 2:
        data += b"\0"
    total = sum(array.array("H", data))  # native order: the fold is order-independent
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    total = ~total & 0xFFFF
    if _LITTLE:  # back to network order
        total = ((total & 0xFF) << 8) | (total >> 8)
    return total


def _pseudo_header(source: bytes, destination: bytes, protocol: int, length: int) -> bytes:
    if len(source) == 4:
        return source + destination + struct.pack("!BBH", 0, protocol, length)
    return source + destination + struct.pack("!IxxxB", length, protocol)


def tcp_segment(source: bytes, destination: bytes, source_port: int, destination_port: int,
                seq: int, ack: int, flags: int, window: int, payload: bytes = b"",
                options: bytes = b"", urgent: int = 0) -> bytes:
    """A TCP segment with its checksum (``source``/``destination``: packed addresses,
    4 or 16 bytes, for the pseudo-header); ``urgent``, when not 0, is the urgent
    pointer (URG set)."""
    if urgent:
        flags |= URG
    if len(options) % 4:
        options += b"\0" * (4 - len(options) % 4)
    offset = (20 + len(options)) // 4
    header = _TCP.pack(source_port, destination_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                       offset << 4, flags, min(window, 0xFFFF), 0, urgent) + options
    total = checksum(_pseudo_header(source, destination, PROTO_TCP,
                                    len(header) + len(payload)), header, payload)
    return header[:16] + struct.pack("!H", total) + header[18:] + payload


def udp_datagram(source: bytes, destination: bytes, source_port: int,
                 destination_port: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    header = _UDP.pack(source_port, destination_port, length if length <= 0xFFFF else 0, 0)
    total = checksum(_pseudo_header(source, destination, PROTO_UDP, length), header, payload)
    return _UDP.pack(source_port, destination_port, length if length <= 0xFFFF else 0,
                     total or 0xFFFF) + payload


def ipv4_packets(source: bytes, destination: bytes, protocol: int, payload: bytes,
                 ident: int, mtu: int = 65536, ttl: int = 64,
                 dont_fragment: bool = True) -> list[bytes]:
    """The IPv4 packets carrying ``payload``: one, or fragments of at most ``mtu``
    bytes (offsets in 8-byte units) when it does not fit and may be fragmented."""
    limit = min(mtu, 65535)
    if 20 + len(payload) <= limit:
        return [_ipv4(source, destination, protocol, payload, ident, ttl,
                      0x4000 if dont_fragment else 0)]
    step = (limit - 20) // 8 * 8
    packets = []
    for start in range(0, len(payload), step):
        chunk = payload[start:start + step]
        more = 0x2000 if start + step < len(payload) else 0
        packets.append(_ipv4(source, destination, protocol, chunk, ident, ttl,
                             more | (start // 8)))
    return packets


def _ipv4(source: bytes, destination: bytes, protocol: int, payload: bytes, ident: int,
          ttl: int, fragment: int) -> bytes:
    header = _IPV4.pack(0x45, 0, 20 + len(payload), ident & 0xFFFF, fragment, ttl, protocol,
                        0, source, destination)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def ipv6_packets(source: bytes, destination: bytes, next_header: int, payload: bytes,
                 ident: int, mtu: int = 65536, hop_limit: int = 64) -> list[bytes]:
    """The IPv6 packets carrying ``payload``: one, or fragments (a fragment header
    each, offsets in 8-byte units) when 40 + payload exceeds ``mtu``."""
    if 40 + len(payload) <= mtu and len(payload) <= 0xFFFF:
        return [_IPV6.pack(6 << 28, len(payload), next_header, hop_limit, source,
                           destination) + payload]
    step = (min(mtu, 65575) - 48) // 8 * 8
    packets = []
    for start in range(0, len(payload), step):
        chunk = payload[start:start + step]
        more = 1 if start + step < len(payload) else 0
        fragment = struct.pack("!BBHI", next_header, 0, start | more, ident & 0xFFFFFFFF)
        packets.append(_IPV6.pack(6 << 28, len(chunk) + 8, _IPV6_FRAGMENT, hop_limit, source,
                                  destination) + fragment + chunk)
    return packets


def icmp_unreachable(original: bytes, v6: bool) -> bytes:
    """The ICMP (ICMPv6) "port unreachable" message answering the packet ``original``
    (as much of it as the message carries); its IP header is the caller's."""
    if not v6:
        quoted = original[:576 - 28]
        header = struct.pack("!BBHI", 3, 3, 0, 0)
        return header[:2] + struct.pack("!H", checksum(header, quoted)) + header[4:] + quoted
    quoted = original[:1280 - 48]
    source, destination = original[24:40], original[8:24]  # the reply goes back
    header = struct.pack("!BBHI", 1, 4, 0, 0)
    total = checksum(_pseudo_header(source, destination, PROTO_ICMPV6,
                                    len(header) + len(quoted)), header, quoted)
    return header[:2] + struct.pack("!H", total) + header[4:] + quoted
