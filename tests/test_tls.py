"""TLS on virtual sockets, with Linux/CPython as the oracle.

Each scenario runs once on the kernel (the stdlib unpatched, over loopback) and once on
the virtual network (``ps.use("virtual")``, ``patch()`` and the TLS hook); the client's
and the server's traces -- results and exception types, call by call -- must be equal.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import http.server
import os
import pathlib
import select
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
import urllib.request
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from tls_helpers import (
    HOST,
    NAME,
    Certificate,
    Server,
    Trace,
    make_certificate,
    network,
    random_bytes,
    tls_hook,
)

import posix_socket as ps
from posix_socket import tls
from posix_socket.patching import patch

MiB = 1 << 20
SCENARIOS: dict[str, Callable[[Certificate], dict[str, Any]]] = {}


def scenario(function: Callable[[Certificate], dict[str, Any]]) -> Callable:
    SCENARIOS[function.__name__] = function
    return function


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def timed_out(exc: object) -> str:
    """The timeout's message without the C source location CPython puts first."""
    return f"{type(exc).__name__}: {str(exc).rsplit(': ', 1)[-1]}"


def recv_exactly(sock: Any, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def wait_for(sock: Any, exc: BaseException, timeout: float = 10) -> None:
    """Wait as a non-blocking TLS program does: readable for SSLWantReadError,
    writable for SSLWantWriteError (on the number, with the stdlib's select)."""
    if isinstance(exc, ssl.SSLWantWriteError):
        select.select([], [sock], [], timeout)
    else:
        select.select([sock], [], [], timeout)


# -- scenarios ---------------------------------------------------------------------------

@scenario
def handshake_and_queries(cert: Certificate) -> dict[str, Any]:
    server_context = cert.server_context()
    server_context.set_alpn_protocols(["h2", "http/1.1"])

    def handler(conn: Any, trace: Trace) -> None:
        with server_context.wrap_socket(conn, server_side=True) as s:
            trace.call("isinstance", lambda: isinstance(s, ssl.SSLSocket))
            trace.call("server_side", lambda: s.server_side)
            trace.call("server_hostname", lambda: s.server_hostname)
            trace.call("version", s.version)
            trace.call("alpn", s.selected_alpn_protocol)
            trace.call("shared_ciphers", s.shared_ciphers, lambda v: bool(v))
            trace.call("peercert", s.getpeercert)
            trace.call("recv", lambda: s.recv(100))
            trace.call("sendall", lambda: s.sendall(b"pong"))
            buffer = bytearray(10)
            trace.call("recv_into", lambda: (s.recv_into(buffer, 3), bytes(buffer)))
            trace.call("read", lambda: s.read(2))
            trace.call("write", lambda: s.write(memoryview(b"abc")))
            trace.call("send empty", lambda: s.send(b""))
            trace.call("eof", lambda: s.recv(10))

    server = Server(handler)
    context = cert.client_context()
    context.set_alpn_protocols(["http/1.1"])
    trace = Trace()
    raw = socket.create_connection((HOST, server.port))
    with context.wrap_socket(raw, server_hostname=NAME) as s:
        trace.call("isinstance", lambda: isinstance(s, ssl.SSLSocket))
        trace.call("raw detached", raw.fileno)
        trace.call("version", s.version)
        trace.call("cipher", s.cipher)
        trace.call("compression", s.compression)
        trace.call("alpn", s.selected_alpn_protocol)
        trace.call("peercert subject", lambda: s.getpeercert()["subject"])
        trace.call("peercert san", lambda: s.getpeercert()["subjectAltName"])
        trace.call("peercert der", lambda: digest(s.getpeercert(True)))
        trace.call("shared_ciphers", s.shared_ciphers)
        trace.call("tls-unique", lambda: type(s.get_channel_binding()).__name__)
        trace.call("bad binding", lambda: s.get_channel_binding("nope"))
        trace.call("pending", s.pending)
        trace.call("context", lambda: s.context is context)
        trace.call("server_side", lambda: s.server_side)
        trace.call("server_hostname", lambda: s.server_hostname)
        trace.call("session_reused", lambda: s.session_reused)
        trace.call("timeout", s.gettimeout)
        trace.call("send", lambda: s.send(b"ping"))
        trace.call("recv", lambda: s.recv(100))
        trace.call("sendall", lambda: s.sendall(b"1234"))
        trace.call("recv 1", lambda: s.recv(1))
        trace.call("pending after 1", s.pending)
        trace.call("recv rest", lambda: s.recv(100))
        trace.call("send flags", lambda: s.send(b"x", socket.MSG_DONTWAIT))
        trace.call("sendall flags", lambda: s.sendall(b"x", socket.MSG_DONTWAIT))
        trace.call("recv flags", lambda: s.recv(1, socket.MSG_PEEK))
        trace.call("recv_into flags", lambda: s.recv_into(bytearray(1), 1, socket.MSG_PEEK))
        trace.call("recvfrom", lambda: s.recvfrom(1))
        trace.call("recvfrom_into", lambda: s.recvfrom_into(bytearray(1)))
        trace.call("sendto", lambda: s.sendto(b"x", (HOST, 9)))
        trace.call("sendmsg", lambda: s.sendmsg([b"x"]))
        trace.call("recvmsg", lambda: s.recvmsg(1))
        trace.call("recvmsg_into", lambda: s.recvmsg_into([bytearray(1)]))
        trace.call("dup", s.dup)
        trace.call("getpeername", lambda: s.getpeername() == (HOST, server.port))
    trace.call("closed fileno", s.fileno)
    trace.call("closed recv", lambda: s.recv(1))
    trace.call("closed version", s.version)
    trace.call("closed cipher", s.cipher)
    return {"client": trace, "server": server.join()}


@scenario
def large_transfers_checksummed(cert: Certificate) -> dict[str, Any]:
    upload, download = random_bytes(MiB, 1), random_bytes(MiB + 12345, 2)

    def handler(conn: Any, trace: Trace) -> None:
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            reader = s.makefile("rb")
            trace.call("upload", lambda: digest(reader.read(len(upload))))
            reader.close()
            trace.call("sendall", lambda: s.sendall(download))
            trace.call("eof", lambda: s.recv(1))

    server = Server(handler)
    trace = Trace()
    with cert.client_context().wrap_socket(socket.create_connection((HOST, server.port)),
                                           server_hostname=NAME) as s:
        sender = threading.Thread(target=s.sendall, args=(memoryview(upload),))
        sender.start()
        received = bytearray(len(download))
        view, got = memoryview(received), 0
        while got < len(download):
            n = s.recv_into(view[got:])
            if not n:
                break
            got += n
        sender.join()
        trace.append(("download", got, digest(bytes(received)) == digest(download)))
    return {"client": trace, "server": server.join()}


@scenario
def unwrap_back_to_plaintext(cert: Certificate) -> dict[str, Any]:
    def handler(conn: Any, trace: Trace) -> None:
        s = cert.server_context().wrap_socket(conn, server_side=True)
        trace.call("recv", lambda: s.recv(100))
        trace.call("close_notify", lambda: s.recv(100))
        plain = trace.call("unwrap", s.unwrap, lambda p: p is s)
        # Plaintext right behind our close_notify: the client's unwrap must leave it.
        trace.call("plain send", lambda: plain.sendall(b"clear text"))
        trace.call("plain recv", lambda: recv_exactly(plain, 5))
        trace.call("version", s.version)
        s.close()

    server = Server(handler)
    trace = Trace()
    s = cert.client_context().wrap_socket(socket.create_connection((HOST, server.port)),
                                          server_hostname=NAME)
    trace.call("send", lambda: s.sendall(b"ENDTLS"))
    plain = trace.call("unwrap", s.unwrap, lambda p: (p is s, isinstance(p, ssl.SSLSocket)))
    trace.call("plain recv", lambda: recv_exactly(plain, 10))
    trace.call("plain send", lambda: plain.sendall(b"hello"))
    trace.call("version", s.version)
    trace.call("cipher", s.cipher)
    trace.call("pending", s.pending)
    trace.call("unwrap again", s.unwrap)
    trace.call("read", lambda: s.read(1))
    trace.call("write", lambda: s.write(b"x"))
    trace.call("tls-unique", s.get_channel_binding)
    s.close()
    return {"client": trace, "server": server.join()}


@scenario
def close_notify_and_ragged_eofs(cert: Certificate) -> dict[str, Any]:
    endings = ["close", "close", "unwrap", "shutdown"]

    def handler(conn: Any, trace: Trace) -> None:
        ending = endings.pop(0)
        s = cert.server_context().wrap_socket(conn, server_side=True)
        trace.call("send", lambda: s.sendall(b"data"))
        if ending == "unwrap":
            trace.call("unwrap", lambda: s.unwrap() is s)
        elif ending == "shutdown":
            trace.call("shutdown", lambda: s.shutdown(socket.SHUT_WR))
            trace.call("after shutdown", lambda: s.recv(10)[:3])
        s.close()

    server = Server(handler, connections=4)
    trace = Trace()
    for suppress in (True, False, False, False):
        s = cert.client_context().wrap_socket(socket.create_connection((HOST, server.port)),
                                              server_hostname=NAME,
                                              suppress_ragged_eofs=suppress)
        with s:
            trace.call("data", lambda s=s: recv_exactly(s, 4))
            trace.call("end", lambda s=s: s.recv(10))
            trace.call("again", lambda s=s: s.recv(10))
            if suppress is False and trace[-1] == ("again", b""):
                trace.call("unwrap", lambda s=s: s.unwrap() is s)
    return {"client": trace, "server": server.join()}


@scenario
def nonblocking_want_read_and_want_write(cert: Certificate) -> dict[str, Any]:
    go = threading.Event()
    hello = threading.Event()  # the client's first handshake step has been taken
    chunk = random_bytes(MiB, 4)

    def handler(conn: Any, trace: Trace) -> None:
        # The server answers only after the client's first do_handshake, which so must
        # want to read on both networks (an instant answer would finish it at once).
        hello.wait(20)
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            go.wait(20)
            size = int(recv_exactly(s, 12))
            trace.call("received", lambda: digest(recv_exactly(s, size)))
            trace.call("reply", lambda: s.sendall(b"done"))

    server = Server(handler)
    trace = Trace()
    raw = socket.create_connection((HOST, server.port))
    raw.setblocking(False)
    context = cert.client_context()
    with socket.create_server((HOST, 0)) as other:
        early = socket.create_connection(other.getsockname())
        early.setblocking(False)
        trace.call("handshake on connect", lambda: context.wrap_socket(
            early, server_hostname=NAME, do_handshake_on_connect=True))
        trace.call("closed by wrap_socket", early.fileno)
        early.close()
    s = context.wrap_socket(raw, server_hostname=NAME, do_handshake_on_connect=False)
    trace.call("version before", s.version)
    seen = []
    while True:
        try:
            s.do_handshake()
            break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            seen.append(type(exc).__name__)
            hello.set()
            wait_for(s, exc)
    hello.set()
    trace.append(("handshake wants", seen[:1], sorted(set(seen))))
    trace.call("version", s.version)
    trace.call("recv nothing", lambda: s.recv(10))
    trace.call("read nothing", lambda: s.read(10))
    # The server reads nothing until `go`: sends succeed whole until one blocks.
    stream, sent, blocked, partial = [], 0, 0, False
    s.sendall(b"%12d" % (64 * MiB))
    while sent < 64 * MiB and not blocked:
        try:
            n = s.send(chunk)
        except ssl.SSLWantWriteError:
            blocked += 1
            break
        partial = partial or n != len(chunk)
        sent += n
        stream.append(chunk)
    trace.append(("blocked", blocked, "partial", partial))
    go.set()
    while sent < 64 * MiB:
        piece = chunk[: min(len(chunk), 64 * MiB - sent)]
        try:
            n = s.send(piece)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError) as exc:
            wait_for(s, exc)
            continue
        partial = partial or n != len(piece)
        sent += n
    trace.append(("sent", sent, "partial", partial))
    reply = b""
    while len(reply) < 4:
        try:
            reply += s.recv(4 - len(reply))
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            wait_for(s, exc)
    trace.append(("reply", reply))
    s.close()
    expected = hashlib.sha256()
    for _ in range(64):
        expected.update(chunk)
    result = server.join()
    result = Trace((label, value == expected.hexdigest()) if label == "received"
                   else (label, value) for label, value in result)
    return {"client": trace, "server": result}


@scenario
def nonblocking_blocking_handshake_and_unwrap(cert: Certificate) -> dict[str, Any]:
    release = threading.Event()

    def handler(conn: Any, trace: Trace) -> None:
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            trace.call("close_notify", lambda: s.recv(10))
            release.wait(20)
            trace.call("unwrap", lambda: s.unwrap() is s)

    server = Server(handler)
    trace = Trace()
    raw = socket.create_connection((HOST, server.port))
    raw.setblocking(False)
    s = cert.client_context().wrap_socket(raw, server_hostname=NAME,
                                          do_handshake_on_connect=False)
    trace.call("blocking handshake", lambda: s.do_handshake(block=True))
    trace.call("still non-blocking", s.getblocking)
    trace.call("unwrap", s.unwrap)  # close_notify sent, the server's not yet there
    release.set()
    while True:
        try:
            plain = s.unwrap()
            break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            wait_for(s, exc)
        except ValueError:  # the first unwrap finished after all
            plain = s
            break
    trace.call("unwrapped", lambda: plain is s and s.version() is None)
    s.close()
    return {"client": trace, "server": server.join()}


@scenario
def timeouts(cert: Certificate) -> dict[str, Any]:
    release = threading.Event()

    def handler(conn: Any, trace: Trace) -> None:
        if len(trace) == 0:  # first connection: never answers the handshake
            trace.append(("silent", True))
            release.wait(20)
            return
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            release.wait(20)
            trace.call("late", lambda: s.sendall(b"late"))
            trace.call("drain", lambda: len(recv_exactly(s, 1 << 30)) > 0)

    server = Server(handler, connections=2)
    trace = Trace()
    raw = socket.create_connection((HOST, server.port))
    raw.settimeout(0.3)
    began = time.monotonic()
    exc = trace.call("handshake", lambda: cert.client_context().wrap_socket(
        raw, server_hostname=NAME))
    trace.append(("message", timed_out(exc), time.monotonic() - began < 5))
    trace.call("raw after", raw.fileno)
    release.set()
    release.clear()

    raw = socket.create_connection((HOST, server.port))
    raw.settimeout(5)
    s = cert.client_context().wrap_socket(raw, server_hostname=NAME)
    s.settimeout(0.2)
    trace.call("timeout", s.gettimeout)
    exc = trace.call("recv", lambda: s.recv(10))
    trace.append(("message", timed_out(exc)))
    exc = trace.call("sendall", lambda: s.sendall(random_bytes(64 * MiB, 5)))
    trace.append(("message", timed_out(exc)))
    release.set()
    s.settimeout(10)
    trace.call("late", lambda: recv_exactly(s, 4))
    s.close()
    return {"client": trace, "server": server.join()}


@scenario
def connect_wraps_unconnected_sockets(cert: Certificate) -> dict[str, Any]:
    def handler(conn: Any, trace: Trace) -> None:
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            trace.call("echo", lambda: s.sendall(s.recv(100)))

    server = Server(handler, connections=2)
    trace = Trace()
    context = cert.client_context()
    s = context.wrap_socket(socket.socket(), server_hostname=NAME)
    trace.call("version before", s.version)
    trace.call("peercert before", s.getpeercert)
    trace.call("pending before", s.pending)
    trace.call("connect", lambda: s.connect((HOST, server.port)))
    trace.call("version", s.version)
    trace.call("echo", lambda: (s.sendall(b"one"), s.recv(100)))
    trace.call("connect again", lambda: s.connect((HOST, server.port)))
    s.close()
    s = context.wrap_socket(socket.socket(), server_hostname=NAME)
    trace.call("connect_ex", lambda: s.connect_ex((HOST, server.port)))
    trace.call("echo", lambda: (s.sendall(b"two"), s.recv(100)))
    s.close()
    closed = socket.create_server((HOST, 0))
    port = closed.getsockname()[1]
    closed.close()
    s = context.wrap_socket(socket.socket(), server_hostname=NAME)
    trace.call("connect_ex refused", lambda: s.connect_ex((HOST, port)))
    s.close()
    s = cert.server_context().wrap_socket(socket.socket(), server_side=True)
    trace.call("server-side connect", lambda: s.connect((HOST, server.port)))
    s.close()
    return {"client": trace, "server": server.join()}


@scenario
def accept_on_a_wrapped_listener(cert: Certificate) -> dict[str, Any]:
    listener = cert.server_context().wrap_socket(socket.create_server((HOST, 0)),
                                                 server_side=True)

    def handler(conn: Any, trace: Trace) -> None:
        trace.call("isinstance", lambda: isinstance(conn, ssl.SSLSocket))
        trace.call("version", conn.version)
        trace.call("server_side", lambda: conn.server_side)
        trace.call("echo", lambda: conn.sendall(conn.recv(100)))

    trace = Trace()
    trace.call("listener version", listener.version)
    trace.call("listener getpeercert", listener.getpeercert)
    server = Server(handler, listener=listener)
    with cert.client_context().wrap_socket(socket.create_connection((HOST, server.port)),
                                           server_hostname=NAME) as s:
        trace.call("echo", lambda: (s.sendall(b"hi"), s.recv(100)))
    return {"client": trace, "server": server.join()}


@scenario
def sessions_are_reused(cert: Certificate) -> dict[str, Any]:
    server_context = cert.server_context(maximum_version=ssl.TLSVersion.TLSv1_2)

    def handler(conn: Any, trace: Trace) -> None:
        with server_context.wrap_socket(conn, server_side=True) as s:
            trace.call("reused", lambda: s.session_reused)
            trace.call("send", lambda: s.sendall(b"x"))
            trace.call("eof", lambda: s.recv(1))

    server = Server(handler, connections=2)
    trace = Trace()
    context = cert.client_context()
    with context.wrap_socket(socket.create_connection((HOST, server.port)),
                             server_hostname=NAME) as s:
        trace.call("recv", lambda: s.recv(1))
        session = s.session
        trace.call("reused", lambda: s.session_reused)
        trace.call("session", lambda: isinstance(session, ssl.SSLSession))
    with context.wrap_socket(socket.create_connection((HOST, server.port)),
                             server_hostname=NAME, session=session) as s:
        trace.call("recv", lambda: s.recv(1))
        trace.call("reused", lambda: s.session_reused)
        trace.call("same session", lambda: s.session.id == session.id)
    raw = socket.socket()
    trace.call("server side session", lambda: server_context.wrap_socket(
        raw, server_side=True, session=session))
    trace.call("server side hostname", lambda: server_context.wrap_socket(
        raw, server_side=True, server_hostname=NAME))
    trace.call("check_hostname without name", lambda: context.wrap_socket(raw))
    raw.close()
    return {"client": trace, "server": server.join()}


@scenario
def verification_failures(cert: Certificate) -> dict[str, Any]:
    def handler(conn: Any, trace: Trace) -> None:
        exc = trace.call("handshake",
                         lambda: cert.server_context().wrap_socket(conn, server_side=True))
        trace.append(("reason", getattr(exc, "reason", None)))

    server = Server(handler, connections=2)
    trace = Trace()
    untrusting = ssl.create_default_context(cadata=_unrelated_ca())
    for context, name in ((untrusting, NAME), (cert.client_context(), "example.org")):
        raw = socket.create_connection((HOST, server.port))
        exc = trace.call("handshake", lambda c=context, r=raw, n=name: c.wrap_socket(
            r, server_hostname=n))
        trace.append(("verify", getattr(exc, "verify_code", None),
                      getattr(exc, "verify_message", None), getattr(exc, "reason", None)))
        raw.close()
    return {"client": trace, "server": server.join()}


def _unrelated_ca() -> str:
    """A CA certificate that did not sign the server's (CPython's test CA, or a fresh
    self-signed one); the verification fails as 'self-signed' either way."""
    import test
    for folder in ("certdata", ""):
        path = os.path.join(os.path.dirname(test.__file__), folder, "pycacert.pem")
        if os.path.exists(path):
            with open(path) as file:
                return file.read()
    if shutil.which("openssl") is None:
        pytest.skip("neither CPython's test CA (Lib/test/pycacert.pem) nor the openssl "
                    "CLI to make another certificate is on this machine")
    with tempfile.TemporaryDirectory() as folder:
        return pathlib.Path(make_certificate(pathlib.Path(folder)).certfile).read_text()


@scenario
def sni_callback_sees_the_sslsocket(cert: Certificate) -> dict[str, Any]:
    other = cert.server_context()
    server_context = cert.server_context()
    calls = []

    def callback(ssl_sock: Any, server_name: str, initial: Any) -> None:
        calls.append((isinstance(ssl_sock, ssl.SSLSocket), server_name, initial is
                      server_context))
        ssl_sock.context = other

    server_context.sni_callback = callback

    def handler(conn: Any, trace: Trace) -> None:
        with server_context.wrap_socket(conn, server_side=True) as s:
            trace.call("context switched", lambda: s.context is other)
            trace.call("echo", lambda: s.sendall(s.recv(10)))

    server = Server(handler)
    trace = Trace()
    with cert.client_context().wrap_socket(socket.create_connection((HOST, server.port)),
                                           server_hostname=NAME) as s:
        trace.call("echo", lambda: (s.sendall(b"sni"), s.recv(10)))
    result = {"client": trace, "server": server.join()}
    result["calls"] = calls
    return result


@scenario
def makefile_and_sendfile(cert: Certificate) -> dict[str, Any]:
    payload = random_bytes(300_000, 6)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"tls-sendfile-{os.getpid()}")
    with open(path, "wb") as file:
        file.write(payload)

    def handler(conn: Any, trace: Trace) -> None:
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            stream = s.makefile("rwb")
            trace.call("readline", stream.readline)
            trace.call("write", lambda: stream.write(b"200 OK\r\n"))
            trace.call("flush", stream.flush)
            trace.call("file", lambda: digest(stream.read(len(payload))))
            stream.close()

    server = Server(handler)
    trace = Trace()
    try:
        with cert.client_context().wrap_socket(
                socket.create_connection((HOST, server.port)), server_hostname=NAME) as s:
            trace.call("send line", lambda: s.sendall(b"GET /\r\n"))
            reader = s.makefile("rb")
            trace.call("readline", reader.readline)
            reader.close()
            with open(path, "rb") as file:
                trace.call("sendfile", lambda: s.sendfile(file))
                trace.call("position", file.tell)
    finally:
        os.unlink(path)
    return {"client": trace, "server": server.join()}


@scenario
def https_server_and_urllib(cert: Certificate) -> dict[str, Any]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello over https " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            reply = digest(body).encode()
            self.send_response(201)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    httpd.socket = cert.server_context().wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    trace = Trace()
    try:
        url = f"https://{NAME}:{httpd.server_address[1]}"
        context = cert.client_context()
        with urllib.request.urlopen(url + "/path", context=context, timeout=10) as reply:
            trace.append(("GET", reply.status, reply.read()))
        body = random_bytes(MiB, 8)
        request = urllib.request.Request(url + "/upload", data=body, method="POST")
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            trace.append(("POST", reply.status, reply.read() == digest(body).encode()))
        exc = trace.call("untrusted", lambda: urllib.request.urlopen(
            url, context=ssl.create_default_context(cadata=_unrelated_ca()), timeout=10))
        trace.append(("reason", type(getattr(exc, "reason", None)).__name__))
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
    return {"client": trace}


@scenario
def asyncio_client_against_a_blocking_server(cert: Certificate) -> dict[str, Any]:
    def handler(conn: Any, trace: Trace) -> None:
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            reader = s.makefile("rb")
            trace.call("line", reader.readline)
            trace.call("reply", lambda: s.sendall(b"pong " + random_bytes(200_000, 9)))
            trace.call("close_notify", lambda: s.recv(10))
            reader.close()

    server = Server(handler)

    async def main() -> list[Any]:
        reader, writer = await asyncio.open_connection(
            HOST, server.port, ssl=cert.client_context(), server_hostname=NAME)
        writer.write(b"ping\n")
        await writer.drain()
        data = await reader.readexactly(5 + 200_000)
        peer = writer.get_extra_info("peercert")["subject"]
        writer.close()
        await writer.wait_closed()
        return [data[:5], digest(data[5:]) == digest(random_bytes(200_000, 9)), peer]

    trace = Trace([("asyncio", asyncio.run(asyncio.wait_for(main(), 20)))])
    return {"client": trace, "server": server.join()}


class Proxy:
    """An object standing in for a socket, forwarding every attribute to it (as
    CPython's test_asyncio wraps its threaded servers' sockets)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@scenario
def a_proxy_of_the_socket_is_wrapped(cert: Certificate) -> dict[str, Any]:
    """``wrap_socket(proxy)``, then the sequence of CPython's
    test_shutdown_timeout_handler_leak: the asyncio client closes its transport
    (close_notify) and waits for connection_lost, which needs the server's close to
    reach it as EOF; then a blocking client sees the close as a ragged EOF."""
    def handler(conn: Any, trace: Trace) -> None:
        proxy = Proxy(conn)
        s = cert.server_context().wrap_socket(proxy, server_side=True)
        trace.call("isinstance", lambda: isinstance(s, ssl.SSLSocket))
        trace.call("proxy detached", proxy.fileno)
        trace.call("recv", lambda: s.recv(32))
        s.close()

    server = Server(handler, connections=2)

    async def main() -> list[Any]:
        lost = asyncio.get_running_loop().create_future()

        class Protocol(asyncio.Protocol):
            def connection_lost(self, exc: Exception | None) -> None:
                lost.set_result(type(exc).__name__)

        transport, _ = await asyncio.get_running_loop().create_connection(
            Protocol, HOST, server.port, ssl=cert.client_context(), server_hostname=NAME)
        transport.close()
        return [await asyncio.wait_for(lost, 10)]

    trace = Trace([("asyncio", asyncio.run(main()))])
    raw = socket.create_connection((HOST, server.port), timeout=10)
    with cert.client_context().wrap_socket(raw, server_hostname=NAME) as s:
        trace.call("send", lambda: s.sendall(b"hello"))
        trace.call("eof", lambda: s.recv(10))
    return {"client": trace, "server": server.join()}


@scenario
def asyncio_server_against_a_blocking_client(cert: Certificate) -> dict[str, Any]:
    async def main() -> list[Any]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, HOST, 0, ssl=cert.server_context())
        port = server.sockets[0].getsockname()[1]

        def client() -> list[Any]:
            trace = Trace()
            with cert.client_context().wrap_socket(socket.create_connection((HOST, port)),
                                                   server_hostname=NAME) as s:
                trace.call("send", lambda: s.sendall(b"quiet\n"))
                trace.call("reply", lambda: recv_exactly(s, 6))
                trace.call("end", lambda: s.recv(10))
            return trace

        try:
            return await asyncio.get_running_loop().run_in_executor(None, client)
        finally:
            server.close()
            await server.wait_closed()

    return {"client": asyncio.run(asyncio.wait_for(main(), 20))}


@scenario
def legacy_ssl_wrap_socket(cert: Certificate) -> dict[str, Any]:
    if not hasattr(ssl, "wrap_socket"):
        return {"absent": True}

    def handler(conn: Any, trace: Trace) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            s = ssl.wrap_socket(conn, server_side=True, certfile=cert.certfile,
                                keyfile=cert.keyfile)
        with s:
            trace.call("echo", lambda: s.sendall(s.recv(10)))

    server = Server(handler)
    trace = Trace()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        s = ssl.wrap_socket(socket.create_connection((HOST, server.port)),
                            cert_reqs=ssl.CERT_REQUIRED, ca_certs=cert.cafile)
    with s:
        trace.call("isinstance", lambda: isinstance(s, ssl.SSLSocket))
        trace.call("echo", lambda: (s.sendall(b"old"), s.recv(10)))
    return {"client": trace, "server": server.join()}


@scenario
def get_server_certificate(cert: Certificate) -> dict[str, Any]:
    def handler(conn: Any, trace: Trace) -> None:
        try:
            with cert.server_context().wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as exc:
            trace.append(("server", type(exc).__name__))

    server = Server(handler)
    pem = ssl.get_server_certificate((HOST, server.port), timeout=10)
    trace = Trace([("der", digest(ssl.PEM_cert_to_DER_cert(pem)))])
    server.join()
    return {"client": trace}


@scenario
def client_certificates(cert: Certificate) -> dict[str, Any]:
    server_context = cert.server_context(verify_mode=ssl.CERT_REQUIRED)
    server_context.load_verify_locations(cert.cafile)

    def handler(conn: Any, trace: Trace) -> None:
        exc = trace.call("wrap", lambda: server_context.wrap_socket(conn, server_side=True),
                         lambda s: s.getpeercert()["subject"])
        if isinstance(exc, ssl.SSLSocket):
            with exc:
                trace.call("echo", lambda: exc.sendall(exc.recv(10)))
        else:
            trace.append(("reason", getattr(exc, "reason", None)))

    server = Server(handler, connections=2)
    trace = Trace()
    context = cert.client_context()
    context.load_cert_chain(cert.certfile, cert.keyfile)
    with context.wrap_socket(socket.create_connection((HOST, server.port)),
                             server_hostname=NAME) as s:
        trace.call("echo", lambda: (s.sendall(b"cc"), s.recv(10)))
    with cert.client_context().wrap_socket(socket.create_connection((HOST, server.port)),
                                           server_hostname=NAME) as s:
        # TLS 1.3: the client's handshake ends first; the server's refusal comes after.
        trace.call("refused", lambda: s.recv(10))
    return {"client": trace, "server": server.join()}


PLAINTEXT_ANSWER = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/html\r\n"
                    b"Connection: close\r\n\r\n<html><body>Bad request</body></html>\n")
PROMPT = 4.0  # seconds: a failure that waits for the peer's close or a timeout is late


def tls_failure(function: Callable[[], Any]) -> tuple[Any, ...]:
    """What a failed TLS call shows a program: the exception's class, code, reason,
    library and message; and whether it came promptly."""
    start = time.monotonic()
    try:
        function()
        outcome: tuple[Any, ...] = ("returned",)
    except Exception as exc:
        outcome = (type(exc).__name__, exc.args[:1], getattr(exc, "reason", None),
                   getattr(exc, "library", None), str(exc))
    return (*outcome, "prompt" if time.monotonic() - start < PROMPT else "late")


def plaintext_server(trace: Trace, answer: bytes = PLAINTEXT_ANSWER) -> Server:
    """A server that answers whatever comes first in plaintext (an HTTP server that
    got a ClientHello) and then keeps the connection open until the client closes
    it (or ``2 * PROMPT`` passes), so a client waiting for more bytes is late."""
    def handler(conn: Any, trace: Trace) -> None:
        conn.settimeout(2 * PROMPT)
        trace.call("got something", lambda: len(conn.recv(4096)) > 0)
        conn.sendall(answer)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass

    return Server(handler, connections=4)


@scenario
def tls_client_to_a_plaintext_server(cert: Certificate) -> dict[str, Any]:
    """The peer answers the ClientHello in plaintext: OpenSSL fails on the first five
    bytes ("wrong version number"), at once, blocking, with a timeout, non-blocking
    and under asyncio."""
    server = plaintext_server(Trace())
    context = cert.client_context()
    trace = Trace()
    for timeout in (None, 3 * PROMPT):
        raw = socket.create_connection((HOST, server.port), timeout=timeout)
        trace.append(("blocking", timeout, tls_failure(
            lambda raw=raw: context.wrap_socket(raw, server_hostname=NAME))))
        trace.call("closed by wrap_socket", raw.fileno)
        raw.close()

    raw = socket.create_connection((HOST, server.port))
    raw.setblocking(False)
    s = context.wrap_socket(raw, server_hostname=NAME, do_handshake_on_connect=False)

    def handshake() -> None:
        while True:
            try:
                return s.do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
                wait_for(s, exc, 3 * PROMPT)

    trace.append(("non-blocking", tls_failure(handshake)))
    s.close()

    async def main() -> tuple[Any, ...]:
        async def connect() -> None:
            _, writer = await asyncio.open_connection(HOST, server.port, ssl=context,
                                                      server_hostname=NAME)
            writer.close()

        start = time.monotonic()
        try:
            await asyncio.wait_for(connect(), 3 * PROMPT)
            outcome: tuple[Any, ...] = ("returned",)
        except Exception as exc:
            outcome = (type(exc).__name__, getattr(exc, "reason", None))
        return (*outcome, "prompt" if time.monotonic() - start < PROMPT else "late")

    trace.append(("asyncio", asyncio.run(main())))
    return {"client": trace, "server": server.join()}


@scenario
def plaintext_client_to_a_tls_server(cert: Certificate) -> dict[str, Any]:
    """An HTTP request sent to a TLS server (which then waits for the answer): the
    server's handshake fails at once ("http request"), and the client sees why."""
    def handler(conn: Any, trace: Trace) -> None:
        conn.settimeout(3 * PROMPT)
        trace.append(("wrap", tls_failure(
            lambda: cert.server_context().wrap_socket(conn, server_side=True))))

    server = Server(handler)
    trace = Trace()
    with socket.create_connection((HOST, server.port), timeout=3 * PROMPT) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        trace.call("answer", lambda: recv_exactly(c, 1 << 16)[:3])
    return {"client": trace, "server": server.join()}


@scenario
def certificate_chains(cert: Certificate) -> dict[str, Any]:
    """The peer's chain, verified and as sent: the public methods (3.13+) give DER
    bytes, and the ``_sslobj`` underneath gives the C object's certificates, which
    test_ssl and the public methods themselves ask for."""
    def chains(s: Any, trace: Trace) -> None:
        for name in ("get_verified_chain", "get_unverified_chain"):
            if hasattr(ssl.SSLSocket, name):  # public from 3.13
                trace.call(name, lambda name=name: [digest(der) for der in
                                                    getattr(s, name)()])
            trace.call(f"_sslobj.{name}", lambda name=name: [
                digest(c.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]
                for c in getattr(s._sslobj, name)() or ()])

    def handler(conn: Any, trace: Trace) -> None:
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            chains(s, trace)
            s.sendall(b"x")

    server = Server(handler)
    trace = Trace()
    with cert.client_context().wrap_socket(socket.create_connection((HOST, server.port)),
                                           server_hostname=NAME) as s:
        chains(s, trace)
        trace.call("recv", lambda: s.recv(1))
    return {"client": trace, "server": server.join()}


@scenario
def ctrl_c_interrupts_a_blocked_recv(cert: Certificate) -> dict[str, Any]:
    release = threading.Event()

    def handler(conn: Any, trace: Trace) -> None:
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            release.wait(20)
            trace.call("send", lambda: s.sendall(b"after"))
            trace.call("eof", lambda: s.recv(1))

    server = Server(handler)
    trace = Trace()
    with cert.client_context().wrap_socket(socket.create_connection((HOST, server.port)),
                                           server_hostname=NAME) as s:
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            s.recv(10)
            trace.append(("recv", "returned"))
        except KeyboardInterrupt:
            trace.append(("recv", "KeyboardInterrupt"))
        timer.join()
        release.set()
        trace.call("then", lambda: recv_exactly(s, 5))
    return {"client": trace, "server": server.join()}


@scenario
def a_dropped_socket_is_freed_at_once(cert: Certificate) -> dict[str, Any]:
    """A handshake, a read that waited and a non-blocking read that wanted more leave
    no reference cycle: the last reference gone, the socket is freed without the
    cyclic collector, as the stdlib's is (a cycle kept it, and its number if
    unclosed, until a collection: a late ResourceWarning in an unrelated test)."""
    def freed(holder: list[Any]) -> bool:
        """Close and drop the only reference, held in ``holder``."""
        holder[0].close()
        ref = weakref.ref(holder.pop())
        return ref() is None

    def handler(conn: Any, trace: Trace) -> None:
        holder = [cert.server_context().wrap_socket(conn, server_side=True)]
        trace.append(("recv", holder[0].recv(2)))
        trace.append(("freed", freed(holder)))

    collecting = gc.isenabled()
    gc.disable()
    try:
        server = Server(handler)
        trace = Trace()
        holder = [cert.client_context().wrap_socket(
            socket.create_connection((HOST, server.port)), server_hostname=NAME)]
        holder[0].setblocking(False)
        try:
            holder[0].recv(1)
        except ssl.SSLWantReadError:
            trace.append(("recv", "SSLWantReadError"))
        holder[0].setblocking(True)
        holder[0].sendall(b"hi")
        trace.append(("freed", freed(holder)))
        return {"client": trace, "server": server.join()}
    finally:
        if collecting:
            gc.enable()


# -- the oracle ----------------------------------------------------------------------

def run(kind: str, name: str, cert: Certificate) -> dict[str, Any]:
    with network(kind):
        return SCENARIOS[name](cert)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_virtual_matches_kernel(name: str, cert: Certificate) -> None:
    kernel = run("kernel", name, cert)
    virtual = run("virtual", name, cert)
    assert virtual == kernel


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", ["a_proxy_of_the_socket_is_wrapped",
                                  "close_notify_and_ragged_eofs",
                                  "asyncio_client_against_a_blocking_server"])
def test_host_preset_matches_kernel(name: str, cert: Certificate) -> None:
    """The host preset puts kernel sockets behind the drop-ins; the stdlib's own
    SSLSocket serves them, and must end the connection when it closes."""
    kernel = run("kernel", name, cert)
    with ps.use("host"), patch(), tls_hook():
        host = SCENARIOS[name](cert)
    assert host == kernel


# -- what only the virtual side can show ----------------------------------------------

def test_virtual_sockets_get_this_packages_sslsocket(cert: Certificate) -> None:
    def handler(conn: Any, trace: Trace) -> None:
        with cert.server_context().wrap_socket(conn, server_side=True) as s:
            trace.append(("type", type(s)))
            s.sendall(b"x")

    with network("virtual"):
        server = Server(handler)
        with cert.client_context().wrap_socket(
                socket.create_connection((HOST, server.port)), server_hostname=NAME) as s:
            assert type(s) is tls.SSLSocket
            assert tls.is_virtual(s)
            assert s.recv(1) == b"x"
        assert server.join() == [("type", tls.SSLSocket)]


def test_kernel_sockets_keep_the_stdlib_sslsocket(cert: Certificate) -> None:
    """Under the virtual preset, a kernel socketpair; under the host preset, TCP."""
    def pair_handshake(a: Any, b: Any) -> tuple[type, type]:
        server_side: list[Any] = []
        thread = threading.Thread(target=lambda: server_side.append(
            cert.server_context().wrap_socket(b, server_side=True)))
        thread.start()
        client = cert.client_context().wrap_socket(a, server_hostname=NAME)
        thread.join(10)
        with client, server_side[0]:
            client.sendall(b"k")
            assert server_side[0].recv(1) == b"k"
            return type(client), type(server_side[0])

    with network("virtual"):
        a, b = socket.socketpair()
        assert not tls.is_virtual(a)
        assert pair_handshake(a, b) == (ssl.SSLSocket, ssl.SSLSocket)
    with ps.use("host"), patch(), tls_hook():
        listener = socket.create_server((HOST, 0))
        with listener:
            client = socket.create_connection(listener.getsockname())
            conn, _ = listener.accept()
            assert isinstance(client, ps.socket.socket) and not tls.is_virtual(client)
            assert pair_handshake(client, conn) == (ssl.SSLSocket, ssl.SSLSocket)


def test_the_hook_replaces_wrap_socket_and_restores_it() -> None:
    stdlib = ssl.SSLContext.wrap_socket
    assert (ssl.SSLContext, "wrap_socket", tls.wrap_socket) in tls.replacements()
    with tls_hook():
        assert ssl.SSLContext.wrap_socket is tls.wrap_socket
        assert ssl.SSLContext.sslsocket_class is ssl.SSLSocket
    assert ssl.SSLContext.wrap_socket is stdlib


def test_a_programs_own_sslsocket_class_is_kept_on_virtual_sockets(cert: Certificate) -> None:
    class MySSLSocket(ssl.SSLSocket):
        def hello(self) -> str:
            return "mine"

    context = cert.server_context()
    context.sslsocket_class = MySSLSocket
    with network("virtual"):
        with context.wrap_socket(socket.socket(), server_side=True) as s:
            assert isinstance(s, MySSLSocket) and isinstance(s, tls.SSLSocket)
            assert type(s).__name__ == "MySSLSocket" and s.hello() == "mine"
        assert tls.virtual_class(MySSLSocket) is type(s)
        def handler(conn: Any, trace: Trace) -> None:
            with context.wrap_socket(conn, server_side=True) as s:
                trace.append(("got", s.recv(2)))

        server = Server(handler)
        with cert.client_context().wrap_socket(
                socket.create_connection((HOST, server.port)), server_hostname=NAME) as c:
            c.sendall(b"ok")
        assert server.join() == [("got", b"ok")]


def test_no_descriptor_is_left_open(cert: Certificate) -> None:
    before = set(os.listdir("/proc/self/fd"))
    run("virtual", "handshake_and_queries", cert)
    run("virtual", "unwrap_back_to_plaintext", cert)
    time.sleep(0.05)
    assert set(os.listdir("/proc/self/fd")) <= before


def test_a_hostname_idna_rejects_closes_the_socket_it_took(cert: Certificate) -> None:
    """wrap_socket took the number before the hostname failed to encode: the new
    object closes it (CPython 3.13's test_check_hostname_idn asks for no
    ResourceWarning; 3.13's stdlib closes it the same way)."""
    context = cert.client_context()
    with network("virtual"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        socket.socket().close()  # what the first socket sets up for good is not a leak
        before = set(os.listdir("/proc/self/fd"))
        for hostname in (".pythontest.net", b"k\xf6nig.idn.pythontest.net"):
            with pytest.raises(UnicodeError):
                context.wrap_socket(socket.socket(), server_hostname=hostname)
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [f"{w.filename}:{w.lineno}: {w.message}" for w in leaks]
    assert set(os.listdir("/proc/self/fd")) <= before
