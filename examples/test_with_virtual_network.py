"""Tests on a virtual network, with the posix-socket pytest plugin.

Run with ``python -m pytest examples/test_with_virtual_network.py`` (add ``-n 2`` with
pytest-xdist: each worker has its own networks).  Nothing here reaches the kernel's
network: fixed ports never collide, and each test starts on a fresh network.
"""

import http.server
import json
import socket
import threading
import urllib.request

import pytest


class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.virtual_network(hosts={"api.test": "10.0.0.80"})
def test_a_client_calls_a_named_service_on_port_80():
    server = http.server.HTTPServer(("api.test", 80), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen("http://api.test/users/1", timeout=5) as response:
            assert json.load(response) == {"path": "/users/1"}
    finally:
        server.shutdown()
        server.server_close()


def test_the_next_test_has_a_fresh_network(virtual_network):
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("api.test", 80)  # the host above was that test's only
    virtual_network.add_host("10.0.0.9", names=["db.test"])
    assert socket.gethostbyname("db.test") == "10.0.0.9"


def test_without_the_plugin_sockets_are_the_kernels():
    with socket.socket() as sock:
        assert type(sock) is socket.socket
