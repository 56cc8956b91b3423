"""socketserver's ThreadingTCPServer and UDPServer serving echo clients.

An ordinary stdlib program: it prints "ok socketserver ..." when every check passed.
"""

import hashlib
import socket
import socketserver
import threading

CLIENTS = 20
ROUNDS = 50


class Upper(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.upper())


class Reverse(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data[::-1], self.client_address)


tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Upper)
tcp.daemon_threads = True
udp = socketserver.UDPServer(("127.0.0.1", 0), Reverse)
for server in (tcp, udp):
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

results = {}


def tcp_client(n):
    digest = hashlib.sha256()
    with socket.create_connection(tcp.server_address, timeout=30) as sock:
        reader = sock.makefile("rb")
        for i in range(ROUNDS):
            line = f"client {n} line {i} {'x' * (n * 97 % 1000)}\n".encode()
            sock.sendall(line)
            answer = reader.readline()
            assert answer == line.upper(), (answer, line)
            digest.update(answer)
        reader.close()
    results[n] = digest.hexdigest()


threads = [threading.Thread(target=tcp_client, args=(n,)) for n in range(CLIENTS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert len(results) == CLIENTS

with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.settimeout(30)
    for i in range(200):
        message = f"datagram {i} ".encode() * (1 + i % 40)
        sock.sendto(message, udp.server_address)
        data, source = sock.recvfrom(65536)
        assert data == message[::-1] and source == udp.server_address, (data, source)

for server in (tcp, udp):
    server.shutdown()
    server.server_close()
combined = hashlib.sha256("".join(results[n] for n in range(CLIENTS)).encode()).hexdigest()
print(f"ok socketserver: {CLIENTS} TCP clients x {ROUNDS} lines (sha256 {combined[:16]}), "
      "200 UDP datagrams")
