"""requests against a WSGI application served by wsgiref.simple_server.

An ordinary program (stdlib plus requests): it prints "ok requests ..." when every
check passed.
"""

import hashlib
import json
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests

BODY = bytes(range(256)) * 4096  # 1 MiB


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(BODY)))])
        return [BODY]
    if path == "/upload":
        data = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        reply = json.dumps({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        start_response("200 OK", [("Content-Type", "application/json")])
        return [reply.encode()]
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"nothing here"]
    query = environ.get("QUERY_STRING", "")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['REQUEST_METHOD']} {path} {query}".encode()]


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


server = make_server("127.0.0.1", 0, application, server_class=ThreadingWSGIServer,
                     handler_class=QuietHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_port}"

with requests.Session() as session:
    response = session.get(f"{base}/big", timeout=30)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(BODY).digest()
    reply = session.post(f"{base}/upload", data=BODY, timeout=30).json()
    assert reply == {"size": len(BODY), "sha256": hashlib.sha256(BODY).hexdigest()}
    assert session.get(f"{base}/missing", timeout=30).status_code == 404
    for i in range(30):
        text = session.get(f"{base}/echo", params={"i": i}, timeout=30).text
        assert text == f"GET /echo i={i}", text
    streamed = hashlib.sha256()
    with session.get(f"{base}/big", stream=True, timeout=30) as response:
        for chunk in response.iter_content(65536):
            streamed.update(chunk)
    assert streamed.digest() == hashlib.sha256(BODY).digest()
assert requests.get(f"http://localhost:{server.server_port}/by-name", timeout=30).ok

server.shutdown()
server.server_close()
print("ok requests: GET and POST of 1 MiB, 404, 30 queries, a streamed download, by name")
