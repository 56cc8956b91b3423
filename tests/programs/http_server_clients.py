"""http.server with urllib and http.client: 1 MiB bodies both ways, keep-alive.

An ordinary stdlib program: it prints "ok http ..." when every check passed.
"""

import hashlib
import http.client
import http.server
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

BODY = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(BODY).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self):
        body = BODY if self.path == "/big" else f"path={self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Client-Port", str(self.client_address[1]))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        reply = f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.send_header("X-Client-Port", str(self.client_address[1]))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
port = server.server_address[1]
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{port}"

# urllib: a fresh connection per request.
with urllib.request.urlopen(f"{base}/big", timeout=30) as response:
    got = response.read()
assert hashlib.sha256(got).hexdigest() == DIGEST, len(got)
request = urllib.request.Request(f"{base}/upload", data=BODY, method="POST")
with urllib.request.urlopen(request, timeout=30) as response:
    assert response.read().decode() == f"{len(BODY)} {DIGEST}"
with urllib.request.urlopen(f"http://localhost:{port}/by-name", timeout=30) as response:
    assert response.read() == b"path=/by-name"


# Many threads at once, each its own connections.
def fetch(n):
    with urllib.request.urlopen(f"{base}/thread/{n}", timeout=30) as response:
        return response.read()


with ThreadPoolExecutor(16) as pool:
    answers = list(pool.map(fetch, range(128)))
assert answers == [f"path=/thread/{n}".encode() for n in range(128)]

# http.client: many requests on one kept-alive connection.
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
client_ports = set()
for i in range(20):
    if i % 5 == 4:
        connection.request("POST", "/upload", body=BODY)
        response = connection.getresponse()
        assert response.read().decode() == f"{len(BODY)} {DIGEST}"
    elif i % 5 == 3:
        connection.request("GET", "/big")
        response = connection.getresponse()
        assert hashlib.sha256(response.read()).hexdigest() == DIGEST
    else:
        connection.request("GET", f"/item/{i}")
        response = connection.getresponse()
        assert response.read() == f"path=/item/{i}".encode()
    assert response.status == 200
    client_ports.add(response.getheader("X-Client-Port"))
assert len(client_ports) == 1, client_ports  # one connection served them all
connection.close()

server.shutdown()
server.server_close()
print("ok http: urllib 3 requests and 128 from 16 threads, http.client 20 requests on "
      "1 connection, 1 MiB bodies")
