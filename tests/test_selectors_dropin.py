"""The ``posix_socket.selectors`` drop-in, and ``patch()`` routing select/selectors.

The selector scenarios run on the stdlib's selectors over kernel socket objects (the
oracle) and on the drop-in's over drop-in socket objects (virtual, and a mix with kernel
ones), and the logs must be equal.
"""

from __future__ import annotations

import asyncio
import os
import select
import selectors
import socket
import sys
import threading
from typing import Any

import pytest

import posix_socket as ps
from posix_socket import descriptors, posix
from posix_socket import select as dropin_select
from posix_socket import selectors as dropin
from posix_socket import socket as dropin_socket
from posix_socket.patching import patch

R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
CLASSES = ["SelectSelector", "PollSelector", "EpollSelector", "DefaultSelector"]


class KernelObjects:
    """The oracle: the stdlib's selectors over kernel socket objects."""

    module: Any = selectors

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def pair(self) -> tuple[Any, Any]:
        a, b = socket.socketpair()
        self.socks += [a, b]
        return a, b

    def finish(self) -> None:
        for sock in self.socks:
            sock.close()


class DropinObjects(KernelObjects):
    """The drop-in's selectors over drop-in socket objects: virtual AF_UNIX pairs from
    the virtual preset, every other one a kernel pair when ``mixed``."""

    module = dropin

    def __init__(self, mixed: bool = False) -> None:
        super().__init__()
        self.mixed = mixed
        self.preset = ps.use("virtual")

    def pair(self) -> tuple[Any, Any]:
        if self.mixed and len(self.socks) % 4 == 2:
            a, b = dropin_socket.socketpair()  # the kernel's
        else:
            numbers = posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC,
                                       visible=False)
            a, b = (dropin_socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=n)
                    for n in numbers)
        self.socks += [a, b]
        return a, b

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.preset.__exit__(None, None, None)


def _names(objects: list) -> dict[int, str]:
    return {id(sock): f"s{index}" for index, sock in enumerate(objects)}


def _outcome(call) -> Any:
    try:
        return call()
    except (KeyError, ValueError, TypeError, OSError) as exc:
        return type(exc).__name__


def selector_scenario(side, name: str) -> list:
    """Register, select, modify, unregister, keys and mistakes, logged by name."""
    log: list = []
    (a, b), (c, _) = side.pair(), side.pair()
    labels = _names(side.socks)

    def ready(found) -> list:
        return sorted((labels[id(key.fileobj)], key.data, events) for key, events in found)

    sel = getattr(side.module, name)()
    with sel:
        log.append(sel.register(b, R, "b").events)
        log.append(_outcome(lambda: sel.register(b, R)))
        log.append(_outcome(lambda: sel.register(b._number() if hasattr(b, "_number")
                                                 else b.fileno(), R)))
        log.append(_outcome(lambda: sel.register(-10, R)))
        log.append(_outcome(lambda: sel.register(0, 999999)))
        log.append(_outcome(lambda: sel.register("x", R)))
        sel.register(c, W, "c")
        log.append(ready(sel.select(0)))
        a.send(b"x")
        log.append(ready(sel.select(0)))
        log.append(ready(sel.select(1)))
        sel.modify(c, R | W, "c2")
        sel.modify(b, R, "b2")  # the data only
        log.append(ready(sel.select(0)))
        log.append(_outcome(lambda: sel.modify(a, R)))
        log.append(sorted(labels[id(key.fileobj)] for key in sel.get_map().values()))
        log.append(sel.get_key(b).data)
        log.append(_outcome(lambda: sel.get_key(a)))
        log.append(len(sel.get_map()))
        log.append(b in sel.get_map())
        sel.unregister(c)
        log.append(_outcome(lambda: sel.unregister(c)))
        log.append(ready(sel.select(0)))
        b.close()  # a closed socket object is still found by the selector
        log.append(sel.unregister(b).data)
        log.append(ready(sel.select(0.01)))
        log.append(_outcome(lambda: sel.unregister(999999)))
    log.append(_outcome(lambda: sel.get_map()))
    return log


@pytest.mark.parametrize("mixed", [False, True], ids=["virtual", "mixed"])
@pytest.mark.parametrize("name", CLASSES)
def test_dropin_selectors_report_what_the_stdlibs_report(name: str, mixed: bool) -> None:
    kernel, layer = KernelObjects(), DropinObjects(mixed)
    try:
        expected = selector_scenario(kernel, name)
    finally:
        kernel.finish()
    try:
        assert selector_scenario(layer, name) == expected
    finally:
        layer.finish()


@pytest.mark.parametrize("name", CLASSES)
def test_registering_a_dropin_socket_does_not_arm_its_mirror(name: str) -> None:
    side = DropinObjects()
    try:
        a, b = side.pair()
        sel = getattr(dropin, name)()
        key = sel.register(b, R | W)
        a.send(b"x")
        assert sel.select(0) == [(key, R | W)]
        assert key.fd == b._number()
        assert descriptors.lookup(key.fd).watch.mirror is None
        sel.close()
    finally:
        side.finish()


def test_a_subclass_with_its_own_fileno_is_asked_for_it() -> None:
    class Special(dropin_socket.socket):
        asked = 0

        def fileno(self) -> int:
            Special.asked += 1
            return super().fileno()

    with ps.use("virtual"):
        sock = Special(socket.AF_INET, socket.SOCK_STREAM)
        with sock, dropin.DefaultSelector() as sel:
            assert sel.register(sock, W).fd == sock._number()
            assert Special.asked == 1


def test_the_module_has_every_public_name_of_the_stdlibs() -> None:
    public = {"BaseSelector", "SelectorKey", "EVENT_READ", "EVENT_WRITE", "SelectSelector",
              "PollSelector", "EpollSelector", "DefaultSelector"}
    assert set(dropin.__all__) == public
    for name in public:
        assert hasattr(selectors, name)
    for name in ("KqueueSelector", "DevpollSelector"):
        assert hasattr(dropin, name) == hasattr(selectors, name)
    assert dropin.DefaultSelector is dropin.EpollSelector
    for name in ("SelectSelector", "PollSelector", "EpollSelector"):
        assert issubclass(getattr(dropin, name), getattr(selectors, name))


# -- patch() ---------------------------------------------------------------------------

def _stdlib_names() -> dict[str, Any]:
    import socketserver
    return {"select.select": select.select, "select.poll": select.poll,
            "select.epoll": select.epoll,
            **{f"selectors.{name}": getattr(selectors, name) for name in CLASSES},
            "socketserver._ServerSelector": socketserver._ServerSelector}


def test_patch_routes_select_and_selectors_and_restores_exactly() -> None:
    before = _stdlib_names()
    with patch():
        during = _stdlib_names()
        with patch():  # idempotent: nothing more replaced, nothing restored early
            assert _stdlib_names() == during
        assert _stdlib_names() == during
    assert _stdlib_names() == before
    assert during["select.select"] is dropin_select.select
    assert during["select.poll"] is dropin_select.poll
    assert during["select.epoll"] is dropin_select.epoll
    for name in CLASSES:
        assert during[f"selectors.{name}"] is getattr(dropin, name)
    assert during["socketserver._ServerSelector"] is dropin.PollSelector


def test_asyncio_loops_made_while_patched_wait_through_the_layer() -> None:
    async def echo_once() -> bytes:
        async def handle(reader, writer) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        data = await reader.read(100)
        writer.close()
        server.close()
        await server.wait_closed()
        return data

    with ps.use("virtual"), patch():
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop._selector, dropin.EpollSelector)
            assert loop.run_until_complete(echo_once()) == b"ping"
        finally:
            loop.close()


def test_socketserver_serves_through_the_dropin_selector() -> None:
    import socketserver

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(self.request.recv(100))

    with ps.use("virtual"), patch(), socketserver.TCPServer(("127.0.0.1", 0), Echo) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        try:
            with socket.create_connection(server.server_address) as client:
                client.sendall(b"hello")
                assert client.recv(100) == b"hello"
            assert isinstance(server.socket, dropin_socket.socket)
        finally:
            server.shutdown()
            thread.join(10)


def test_references_captured_before_patching_still_see_virtual_sockets() -> None:
    captured_epoll, captured_poll = select.epoll, select.poll
    captured_selector = selectors.DefaultSelector
    with ps.use("virtual"), patch():
        a, b = (dropin_socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=n)
                for n in posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM, visible=False))
        with a, b:
            a.send(b"x")
            ep = captured_epoll()
            ep.register(b.fileno(), select.EPOLLIN)  # fileno() arms the kernel mirror
            assert ep.poll(1) == [(b.fileno(), select.EPOLLIN)]
            ep.close()
            p = captured_poll()
            p.register(b, select.POLLIN)
            assert p.poll(1000) == [(b.fileno(), select.POLLIN)]
            with captured_selector() as sel:
                key = sel.register(b, R)
                assert sel.select(1) == [(key, R)]


def test_patch_inside_a_child_routes_a_program_unchanged() -> None:
    """A program that imports select/selectors after patch() sees only drop-ins."""
    import subprocess
    code = (
        "import posix_socket as ps\n"
        "from posix_socket.patching import patch\n"
        "ps.use('virtual'); patch()\n"
        "import select, selectors, socket, socketserver\n"
        "from posix_socket import select as s, selectors as d\n"
        "assert socketserver._ServerSelector is d.PollSelector\n"
        "assert select.epoll is s.epoll and selectors.DefaultSelector is d.EpollSelector\n"
        "srv = socket.create_server(('127.0.0.1', 0))\n"
        "c = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()\n"
        "c.send(b'x')\n"
        "sel = selectors.DefaultSelector(); k = sel.register(conn, selectors.EVENT_READ)\n"
        "assert sel.select(1) == [(k, selectors.EVENT_READ)]\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


# With patch(kernel_pollers=None), what a program captured before patching decides
# whether numbers handed out by fileno() are still shown to the kernel: each case runs
# in a fresh interpreter.
_CAPTURES = {
    "nothing": "",
    "a module global": "from select import epoll as captured\n",
    "a class attribute": "import selectors\nclass Server:\n"
                         "    selector = selectors.PollSelector\n",
    "a selector object": "import selectors\nkept = selectors.DefaultSelector()\n",
    "a subclass": "import selectors\nclass Mine(selectors.EpollSelector): pass\n",
    "an epoll object": "import select\nkept = select.epoll()\n",
}
_CHILD = """
import posix_socket as ps
from posix_socket import descriptors, posix
from posix_socket.patching import patch
import select, socket
{capture}
def main():
    with ps.use("virtual"), patch(kernel_pollers=None):
        a, b = socket.socketpair()  # kernel pairs: make a virtual one
        a.close(); b.close()
        left, right = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=n)
                       for n in posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM,
                                                 visible=False))
        number = left.fileno()
        armed = descriptors.lookup(number).watch.mirror is not None
        right.send(b"x")
        seen = select.select([left], [], [], 0)[0] == [left]  # the drop-in: always
        left.close(); right.close()
    print(armed, seen)
main()
"""


@pytest.mark.parametrize("capture", list(_CAPTURES))
def test_numbers_are_shown_to_the_kernel_only_while_something_may_poll_them(
        capture: str) -> None:
    import subprocess
    done = subprocess.run([sys.executable, "-c", _CHILD.format(capture=_CAPTURES[capture])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    armed, seen = done.stdout.split()
    assert seen == "True"
    assert armed == str(capture != "nothing")


def test_by_default_numbers_handed_out_are_shown_to_the_kernel() -> None:
    with ps.use("virtual"), patch():
        a, b = (dropin_socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=n)
                for n in posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM, visible=False))
        with a, b:
            assert descriptors.lookup(a.fileno()).watch.mirror is not None


def test_restore_shows_what_was_handed_out_meanwhile() -> None:
    import subprocess
    code = (
        "import posix_socket as ps, select, socket\n"
        "from posix_socket import descriptors, posix\n"
        "from posix_socket.patching import patch\n"
        "with ps.use('virtual'):\n"
        "    p = patch(kernel_pollers=False)\n"
        "    a, b = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=n) for n in\n"
        "            posix.socketpair(socket.AF_UNIX, socket.SOCK_STREAM, visible=False))\n"
        "    fd = a.fileno()\n"
        "    before = descriptors.lookup(fd).watch.mirror is not None\n"
        "    p.restore()\n"
        "    b.send(b'x')\n"
        "    print(before, select.select([fd], [], [], 1)[0] == [fd])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["False", "True"], done.stderr[-2000:]
