"""What the TLS oracle tests share: a certificate, the two networks, a server thread,
and a trace that records results and exception types call by call."""

from __future__ import annotations

import contextlib
import pathlib
import random
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import posix_socket as ps
from posix_socket import tls
from posix_socket.patching import patch

HOST = "127.0.0.1"
NAME = "localhost"


class Certificate:
    """A server certificate for ``localhost``/127.0.0.1 and the file that trusts it."""

    def __init__(self, certfile: str, keyfile: str | None, cafile: str) -> None:
        self.certfile, self.keyfile, self.cafile = certfile, keyfile, cafile

    def server_context(self, **settings: Any) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certfile, self.keyfile)
        for name, value in settings.items():
            setattr(context, name, value)
        return context

    def client_context(self, **settings: Any) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        for name, value in settings.items():
            setattr(context, name, value)
        return context


def make_certificate(directory: pathlib.Path) -> Certificate:
    """A fresh self-signed one from the ``openssl`` CLI, else CPython's test certs."""
    if shutil.which("openssl"):
        cert, key = directory / "cert.pem", directory / "key.pem"
        result = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)], capture_output=True)
        if result.returncode == 0:
            return Certificate(str(cert), str(key), str(cert))
    import test
    data = pathlib.Path(test.__file__).parent / "certdata"
    if not data.is_dir():
        data = data.parent
    return Certificate(str(data / "keycert3.pem"), None, str(data / "pycacert.pem"))


@contextlib.contextmanager
def tls_hook() -> Iterator[None]:
    """Set what ``tls.replacements()`` names for a while (what patch() will do)."""
    saved = [(target, name, getattr(target, name)) for target, name, _ in tls.replacements()]
    for target, name, value in tls.replacements():
        setattr(target, name, value)
    try:
        yield
    finally:
        for target, name, value in reversed(saved):
            setattr(target, name, value)


@contextlib.contextmanager
def network(kind: str) -> Iterator[None]:
    """``kernel``: the stdlib as it is, over loopback.  ``virtual``: the virtual preset,
    the stdlib patched, and TLS hooked."""
    if kind == "kernel":
        yield
        return
    with ps.use("virtual"), patch(), tls_hook():
        yield


class Trace(list):
    """Call by call: ``(label, result)`` or ``(label, exception type name)``."""

    def call(self, label: str, function: Callable[[], Any],
             shown: Callable[[Any], Any] = lambda value: value) -> Any:
        try:
            value = function()
        except Exception as exc:
            self.append((label, type(exc).__name__))
            return exc
        self.append((label, shown(value)))
        return value


class Server:
    """A thread that accepts connections on a listener and runs ``handler(conn, trace)``
    for each; its trace and any error are kept for the test to compare and raise."""

    def __init__(self, handler: Callable[[Any, Trace], None], connections: int = 1,
                 listener: Any = None) -> None:
        self.listener = listener or socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.trace = Trace()
        self.error: BaseException | None = None
        self._handler, self._connections = handler, connections
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            for _ in range(self._connections):
                conn, _ = self.listener.accept()
                with conn:
                    self._handler(conn, self.trace)
        except BaseException as exc:  # handed to the test thread in join()
            self.error = exc

    def join(self, timeout: float = 20) -> Trace:
        self._thread.join(timeout)
        self.listener.close()
        assert not self._thread.is_alive(), "the server thread is stuck"
        if self.error is not None:
            raise self.error
        return self.trace


def random_bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)
