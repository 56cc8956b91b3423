"""Captures, judged by Wireshark's own reader: every capture a test makes is read by
``tshark``, which must find no malformed packet and no expert error, count the
handshakes, FINs and RSTs the program's calls imply, and reassemble each TCP stream into
exactly the bytes the program sent.
"""

from __future__ import annotations

import http.server
import io
import os
import select
import shutil
import socket
import subprocess
import threading
import urllib.request

import pytest

import posix_socket as ps

TSHARK = shutil.which("tshark")
if TSHARK is None:
    if os.environ.get("POSIX_SOCKET_REQUIRE_TSHARK"):
        raise RuntimeError("tshark is required (CI installs it: apt-get install tshark)")
    pytest.skip("tshark (Wireshark's reader) is not installed: apt-get install tshark",
                allow_module_level=True)


def tshark(path, *args: str) -> str:
    result = subprocess.run([TSHARK, "-r", str(path), *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def counts(path, *display_filters: str) -> list[int]:
    """How many frames match each display filter (one pass of tshark's io,stat)."""
    out = tshark(path, "-q", "-z", "io,stat,0," + ",".join(display_filters))
    row = [line for line in out.splitlines() if "<>" in line][-1]
    cells = [cell.strip() for cell in row.split("|")[2:-1]]
    return [int(cells[index * 2]) for index in range(len(display_filters))]


def count(path, display_filter: str) -> int:
    return counts(path, display_filter)[0]


def expert_problems(path) -> list[str]:
    """Expert infos of severity warning or error, except the resets the test expects
    (Wireshark files every RST under "Connection reset" as a warning)."""
    lines = tshark(path, "-Y", "_ws.expert.severity >= 6291456", "-T", "fields",
                   "-e", "_ws.expert.message").splitlines()
    return [line for line in lines if line and "Connection reset (RST)" not in line]


def stream_bytes(path, stream: int, direction: int) -> bytes:
    """The bytes tshark reassembles for one direction (0: client to server) of a stream."""
    out = tshark(path, "-q", "-z", f"follow,tcp,raw,{stream}")
    body = out.split("===================================================================")[1]
    lines = [line for line in body.splitlines()[5:] if line.strip()]
    chunks = [(line.startswith("\t"), bytes.fromhex(line.strip())) for line in lines]
    return b"".join(chunk for server, chunk in chunks if server == bool(direction))


@pytest.fixture
def network():
    with ps.use("virtual", seed=11) as preset, ps.patch():
        yield preset.network


def test_a_perfect_tcp_exchange_reads_clean_and_reassembles(network, tmp_path):
    path = tmp_path / "tcp.pcap"
    request, reply = b"ping" * 1000, bytes(range(256)) * 800  # reply spans 4 segments
    with network.capture(path):
        server = socket.create_server(("127.0.0.1", 47000))
        client = socket.create_connection(("127.0.0.1", 47000))
        conn, _ = server.accept()
        client.sendall(request)
        got = b""
        while len(got) < len(request):
            got += conn.recv(65536)
        conn.sendall(reply)
        received = b""
        while len(received) < len(reply):
            received += client.recv(1 << 20)
        client.close()
        conn.close()
        server.close()
    assert counts(path, "tcp.flags.syn == 1 && tcp.flags.ack == 0",
                  "tcp.flags.syn == 1 && tcp.flags.ack == 1", "tcp.flags.fin == 1",
                  "tcp.flags.reset == 1", "tcp.analysis.retransmission",
                  "tcp.len > 65495",  # no segment past lo's MSS
                  "_ws.malformed") == [1, 1, 2, 0, 0, 0, 0]
    assert expert_problems(path) == []
    assert stream_bytes(path, 0, 0) == request
    assert stream_bytes(path, 0, 1) == reply


def test_http_over_ipv6_udp_and_a_refused_connect_are_all_on_the_wire(network, tmp_path):
    path = tmp_path / "mixed.pcap"

    class Server(http.server.HTTPServer):
        address_family = socket.AF_INET6

    with network.capture(path):
        server = Server(("::1", 8080), http.server.SimpleHTTPRequestHandler)
        thread = threading.Thread(target=server.handle_request)
        thread.start()
        with urllib.request.urlopen("http://[::1]:8080/", timeout=10) as response:
            assert response.status == 200
        thread.join()
        server.server_close()
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 49999))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"datagram", ("127.0.0.1", 49999))
        sender.sendto(b"nobody", ("127.0.0.1", 49998))
        assert receiver.recv(100) == b"datagram"
        receiver.close()
        sender.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", 1))
    assert counts(path, "http.response.code == 200 && ipv6", "http.request.method == \"GET\"",
                  "udp && ip && !icmp", "icmp.type == 3 && icmp.code == 3",
                  "tcp.flags.reset == 1 && tcp.srcport == 1", "_ws.malformed"
                  ) == [1, 1, 2, 1, 1, 0]
    assert expert_problems(path) == []


def test_a_reset_shows_as_one_rst(network, tmp_path):
    path = tmp_path / "reset.pcap"
    with network.capture(path):
        server = socket.create_server(("127.0.0.1", 47001))
        client = socket.create_connection(("127.0.0.1", 47001))
        conn, _ = server.accept()
        client.sendall(b"unread")
        conn.close()  # data left unread: Linux answers with a reset
        with pytest.raises(ConnectionResetError):
            client.recv(10)
        client.close()
        server.close()
    assert counts(path, "tcp.flags.reset == 1 && tcp.srcport == 47001",
                  "_ws.malformed") == [1, 0]
    assert expert_problems(path) == []


def test_a_capture_takes_a_binary_file_and_stops_when_closed(network):
    buffer = io.BytesIO()
    capture = network.capture(buffer)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 49000))
    receiver.sendto(b"one", ("127.0.0.1", 49000))
    capture.close()
    size = len(buffer.getvalue())
    receiver.sendto(b"two", ("127.0.0.1", 49000))
    assert len(buffer.getvalue()) == size and not buffer.closed
    assert capture.packets == 1 and network.tap is None
    receiver.close()
    with pytest.raises(TypeError):
        network.capture(42)


def test_the_same_seed_gives_the_same_sequence_numbers(tmp_path):
    def isns(seed):
        path = tmp_path / f"{seed}.pcap"
        with ps.use("virtual", seed=seed) as preset, ps.patch(), preset.network.capture(path):
            server = socket.create_server(("127.0.0.1", 47002))
            client = socket.create_connection(("127.0.0.1", 47002))
            conn, _ = server.accept()
            for sock in (client, conn, server):
                sock.close()
        return tshark(path, "-Y", "tcp.flags.syn == 1", "-T", "fields",
                      "-e", "tcp.seq_raw", "-e", "tcp.srcport")
    assert isns(3) == isns(3)
    assert isns(3) != isns(4)


def test_a_lossy_link_shows_each_lost_segment_and_its_retransmission(tmp_path):
    """Captured as on the sender's interface: a segment the link loses is in the file,
    and so is its retransmission; the stream still reassembles to the bytes sent."""
    path = tmp_path / "lossy.pcap"
    data = bytes(range(256)) * 400
    with ps.use("virtual", seed=3) as preset, ps.patch():
        net = preset.network
        net.add_host("10.0.0.2", names=["far.test"])
        net.link("localhost", "far.test", latency=0.005, loss=0.1, mtu=1500)
        with net.capture(path):
            server = socket.create_server(("far.test", 47003))
            client = socket.create_connection(("far.test", 47003))
            conn, _ = server.accept()
            sender = threading.Thread(target=client.sendall, args=(data,))
            sender.start()
            received = b""
            while len(received) < len(data):
                received += conn.recv(65536)
            sender.join()
            client.close()
            assert conn.recv(10) == b""
            conn.close()
            server.close()
    assert received == data
    retransmitted, too_big, malformed = counts(
        path, "tcp.analysis.retransmission || tcp.analysis.fast_retransmission",
        "ip.len > 1500", "_ws.malformed")
    assert retransmitted > 0 and too_big == 0 and malformed == 0
    assert stream_bytes(path, 0, 0) == data


ORDINARY_PROGRAM = """\
import http.server, socket, threading, urllib.request

server = http.server.HTTPServer(("127.0.0.1", 48080), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=server.handle_request).start()
with urllib.request.urlopen("http://127.0.0.1:48080/", timeout=10) as response:
    print(response.status)
server.server_close()
six = socket.create_server(("::1", 48081), family=socket.AF_INET6)
client = socket.create_connection(("::1", 48081))
conn, _ = six.accept()
client.sendall(b"over IPv6")
print(conn.recv(100))
for sock in (client, conn, six):
    sock.close()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 48082))
udp.sendto(b"datagram", ("127.0.0.1", 48082))
print(udp.recv(100))
udp.close()
try:
    socket.create_connection(("127.0.0.1", 48083))
except ConnectionRefusedError:
    print("refused")
"""


def test_run_pcap_captures_an_ordinary_program(tmp_path):
    import sys
    (tmp_path / "prog.py").write_text(ORDINARY_PROGRAM)
    pcap = tmp_path / "out.pcap"
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    result = subprocess.run([sys.executable, "-m", "posix_socket", "run", "--pcap", str(pcap),
                             "prog.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": src})
    assert result.returncode == 0, result.stderr  # (http.server logs the GET there)
    assert result.stdout == "200\nb'over IPv6'\nb'datagram'\nrefused\n"
    assert counts(pcap, "http.response.code == 200", "ipv6 && tcp.len == 9",
                  "udp && !icmp", "tcp.flags.reset == 1 && tcp.srcport == 48083",
                  "_ws.malformed", "tcp.flags.syn == 1 && tcp.flags.ack == 0"
                  ) == [1, 1, 1, 1, 0, 3]
    assert expert_problems(pcap) == []
    assert stream_bytes(pcap, 1, 0) == b"over IPv6"


@pytest.mark.parametrize("lossy", [False, True])
def test_urgent_data_carries_urg_and_a_pointer_past_its_byte(tmp_path, lossy):
    """Every segment of a MSG_OOB send points past its last byte (Linux's snd_up), on
    a perfect path and on a lossy one (retransmissions too); later data has no URG."""
    path = tmp_path / "urgent.pcap"
    data = bytes(range(256)) * 12  # 3072 bytes: several segments on a 1000-byte MTU
    with ps.use("virtual", seed=3) as preset, ps.patch():
        net = preset.network
        net.add_host("10.0.0.2", names=["far.test"])
        if lossy:
            net.link("localhost", "far.test", latency=0.005, loss=0.1, mtu=1000)
        else:
            net.link("localhost", "far.test", mtu=1000)
        with net.capture(path):
            server = socket.create_server(("far.test", 47004))
            client = socket.create_connection(("far.test", 47004))
            conn, _ = server.accept()
            assert client.send(data, socket.MSG_OOB) == len(data)
            client.sendall(b"after")
            client.shutdown(socket.SHUT_WR)
            assert select.select([], [], [conn], 5)[2] == [conn]  # POLLPRI: it arrived
            assert conn.recv(1, socket.MSG_OOB) == data[-1:]
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
            client.close()
            conn.close()
            server.close()
    assert received == data[:-1] + b"after"
    rows = [line.split("\t") for line in tshark(
        path, "-Y", "tcp.flags.urg == 1", "-T", "fields", "-e", "tcp.seq",
        "-e", "tcp.urgent_pointer").splitlines()]
    assert rows and all(int(seq) + int(pointer) == len(data) + 1 for seq, pointer in rows)
    assert count(path, "_ws.malformed") == 0
    assert stream_bytes(path, 0, 0) == data + b"after"
