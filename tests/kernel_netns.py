"""Run Python code in a child process, optionally inside a fresh network namespace.

The kernel half of the imperfect-network oracle: Linux's TCP timers (SYN retries, data
retries, TCP_USER_TIMEOUT, keepalive) are the reference, and a private namespace is
where they can be shortened and packets dropped without touching the machine.  Inside
``unshare -n``, the namespace's own sysctls under /proc/sys/net/ipv4 shorten the timers
to seconds and nftables rules drop packets (a partition by address, loss with
``numgen random``), which is what netem would do if this kernel had it.

``start("module:function", *args)`` launches a child that imports ``function`` and calls
``function(namespace, *args)``; its return value (anything JSON can carry) is what
``Child.result()`` gives back.  With ``netns=False`` the child is a plain process
(``namespace`` is None): the virtual half of a comparison runs that way, so both halves
can run in parallel and neither leaks registrations into the test process.

Needs root (or user namespaces: then ``unshare -r -n``), util-linux's ``unshare``,
nftables' ``nft`` and iproute2's ``ip`` (for lo's segment size under loss);
``missing()`` says in a sentence what is absent.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from functools import cache
from typing import Any

TESTS = os.path.dirname(os.path.abspath(__file__))
TABLE = "inet oracle"
CHAIN = "input"  # every packet on lo passes here once, whatever its direction; dropping
#                  here, after the sender's output, is loss on the wire: a drop at output
#                  would fail the sender's own send with EPERM, which no partition does
INSTALL_HINT = ("the kernel oracle for imperfect networks needs root (or user namespaces), "
                "util-linux's `unshare`, nftables' `nft` and iproute2's `ip` (Debian: "
                "apt-get install -y nftables iproute2)")

SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCSIFADDR, SIOCSIFNETMASK = 0x8916, 0x891C
IFF_UP = 0x1


# -- inside the namespace --------------------------------------------------------------

def _ifreq_address(name: str, address: str) -> bytes:
    """A struct ifreq carrying a sockaddr_in (what SIOCSIFADDR/SIOCSIFNETMASK read)."""
    sockaddr = struct.pack("=H2s4s8x", socket.AF_INET, b"\0\0", socket.inet_aton(address))
    return struct.pack("16s16s", name.encode(), sockaddr)


def _bring_up_loopback(addresses: tuple[str, ...]) -> None:
    """Set lo up and give it ``addresses``: IPv4 ones as /32 aliases lo:1, lo:2... by
    ioctl, IPv6 ones as /128 with iproute2 (a new namespace's lo is down and has
    127.0.0.1 and ::1 only once it is up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))
        for index, address in enumerate(addresses, start=1):
            if ":" in address:
                done = subprocess.run(["ip", "-6", "addr", "add", f"{address}/128", "dev",
                                       "lo", "nodad"], capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"ip -6 addr add {address}: {done.stderr.strip()}")
                continue
            fcntl.ioctl(sock, SIOCSIFADDR, _ifreq_address(f"lo:{index}", address))
            fcntl.ioctl(sock, SIOCSIFNETMASK, _ifreq_address(f"lo:{index}", "255.255.255.255"))


def _cut_into_wire_segments(mtu: int) -> None:
    """Give lo a wire's MTU and one segment per packet (GSO at most ``mtu``, one
    segment), so each packet nftables sees is one segment of at most ``mtu`` bytes: lo
    otherwise carries 64 KB super-packets, and a rule dropping 7 % of them is not 7 %
    loss on a wire.  (lo's offloads are fixed, so ethtool cannot switch them off.)"""
    if shutil.which("ip") is None:
        raise RuntimeError("`ip` (iproute2) is needed to set lo's gso_max_size")
    done = subprocess.run(["ip", "link", "set", "dev", "lo", "mtu", str(mtu),
                           "gso_max_size", str(mtu), "gso_max_segs", "1"],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip link set lo mtu {mtu} failed: {done.stderr.strip()}")


class Namespace:
    """What a function run in the namespace may change: its sysctls and its nftables
    rules (one table, ``inet oracle``, with one chain hooked at input).

    Rules are nft rule bodies such as ``"ip saddr 10.0.0.1 ip daddr 10.0.0.2 drop"``;
    ``add`` returns the rule's handle so it can be deleted again mid-scenario.
    """

    def __init__(self, addresses: tuple[str, ...] = ()) -> None:
        if not os.path.exists("/proc/self/ns/net"):
            raise RuntimeError("no network namespaces here: " + INSTALL_HINT)
        _bring_up_loopback(addresses)
        for address in addresses:
            _wait_until_reachable(address)
        self.addresses = addresses
        self.nft(f"add table {TABLE}")
        self.nft(f"add chain {TABLE} {CHAIN} {{ type filter hook input priority 0; "
                 "policy accept; }")

    @staticmethod
    def nft(command: str, echo: bool = False) -> str:
        """Run one nft command (``echo``: print what it added, with handles); its
        output, or RuntimeError with nft's message."""
        return _Nftables.shared().run(command, echo)

    def add(self, rule: str) -> int:
        """Append ``rule`` to the chain; returns its handle."""
        out = self.nft(f"add rule {TABLE} {CHAIN} {rule}", echo=True)
        return int(out.rsplit("# handle", 1)[1].split()[0])

    def delete(self, handle: int) -> None:
        self.nft(f"delete rule {TABLE} {CHAIN} handle {handle}")

    def flush(self) -> None:
        """Remove every rule: the network is perfect again."""
        self.nft(f"flush chain {TABLE} {CHAIN}")

    @staticmethod
    def wire(mtu: int = 1500) -> None:
        """Make lo behave as a wire of ``mtu`` for loss: see _cut_into_wire_segments."""
        _cut_into_wire_segments(mtu)

    @staticmethod
    def sysctl(name: str, value: int | str) -> None:
        """Set net.ipv4.``name`` in this namespace only (tcp_syn_retries, tcp_retries2
        and tcp_keepalive_* are per namespace)."""
        with open(f"/proc/sys/net/ipv4/{name}", "w") as file:
            file.write(f"{value}\n")

    @staticmethod
    def read_sysctl(name: str) -> str:
        with open(f"/proc/sys/net/ipv4/{name}") as file:
            return file.read().strip()


def _wait_until_reachable(address: str, within: float = 10.0) -> None:
    """Return once a datagram sent from ``address`` to itself arrives.

    An IPv6 address is usable (its local route in place) only when the kernel's
    address-configuration work has run, which on a loaded machine can come after
    ``ip addr add`` returned: a scenario starting before that saw its datagrams vanish
    as if partitioned."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.bind((address, 0))
                sock.settimeout(0.2)
                sock.sendto(b"ping", sock.getsockname())
                if sock.recv(8) == b"ping":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{address} still unreachable on lo after {within} s")
        time.sleep(0.05)


class _Nftables:
    """nft commands through libnftables in this process when it loads (a rule is in
    force within a millisecond: a scenario's partition starts when it says, even on a
    loaded machine where starting the nft program takes a large part of a second),
    else through the nft program."""

    OUTPUT_HANDLE, OUTPUT_ECHO = 1 << 3, 1 << 5  # enum nft_output_flags
    _shared: _Nftables | None = None

    def __init__(self) -> None:
        try:
            library = ctypes.CDLL("libnftables.so.1")
        except OSError:
            self._library = None
            return
        library.nft_ctx_new.restype = ctypes.c_void_p
        library.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        library.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer",
                     "nft_ctx_buffer_output", "nft_ctx_buffer_error",
                     "nft_ctx_output_get_flags"):
            getattr(library, name).argtypes = [ctypes.c_void_p]
        library.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        library.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._library = library
        self._context = library.nft_ctx_new(0)
        library.nft_ctx_buffer_output(self._context)
        library.nft_ctx_buffer_error(self._context)

    @classmethod
    def shared(cls) -> _Nftables:
        """One per process (a forked scenario makes its own, in its own namespace)."""
        if cls._shared is None or cls._shared._pid != os.getpid():
            cls._shared = cls()
            cls._shared._pid = os.getpid()
        return cls._shared

    def run(self, command: str, echo: bool) -> str:
        if self._library is None:
            options = ["--echo", "--handle"] if echo else []
            done = subprocess.run(["nft", *options, command], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"nft {command!r} failed: {done.stderr.strip()}")
            return done.stdout
        library, context = self._library, self._context
        library.nft_ctx_output_set_flags(
            context, (self.OUTPUT_HANDLE | self.OUTPUT_ECHO) if echo else 0)
        failed = library.nft_run_cmd_from_buffer(context, command.encode())
        output = (library.nft_ctx_get_output_buffer(context) or b"").decode()
        error = (library.nft_ctx_get_error_buffer(context) or b"").decode()
        if failed:
            raise RuntimeError(f"nft {command!r} failed: {error.strip()}")
        return output


# -- from the test process ---------------------------------------------------------------

@cache
def missing() -> str | None:
    """None when namespaces with nftables can be made here; else why not, with the fix."""
    for tool in ("unshare", "nft", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed: {INSTALL_HINT}"
    probe = subprocess.run([*_unshare(), "nft", "list", "ruleset"], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode:
        return f"`unshare -n nft list ruleset` failed ({probe.stderr.strip()}): {INSTALL_HINT}"
    return None


def _unshare() -> list[str]:
    """Root makes a plain network namespace; anyone else needs a user namespace too."""
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]


class Child:
    """A running child process making one or more calls of ``target``.

    The child imports ``target`` once and forks once per call, so the calls run in
    parallel without paying for a Python start each; with ``netns`` every fork first
    enters a network namespace of its own (the child itself runs under ``unshare -n``,
    or ``unshare -r -n`` for a user who is not root, which gives it the right to).
    ``results()`` waits and returns one value per call.
    """

    def __init__(self, target: str, calls: list[tuple], netns: bool,
                 addresses: tuple[str, ...]) -> None:
        self.target = target
        self._results: list | None = None
        handle, self._path = tempfile.mkstemp(prefix="netns-", suffix=".json")
        os.close(handle)
        command = [sys.executable, os.path.join(TESTS, "kernel_netns.py"), target, self._path,
                   json.dumps({"calls": [list(args) for args in calls], "netns": netns,
                               "addresses": list(addresses)})]
        if netns:
            command = [*_unshare(), *command]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [TESTS, *filter(None, [env.get("PYTHONPATH")])])
        self._process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)

    def kill(self) -> None:
        """Stop the child if it still runs (a test run cut short) and forget its file."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate()
        if os.path.exists(self._path):
            os.unlink(self._path)

    def results(self, timeout: float = 120.0) -> list:
        """One entry per call: the value it returned, or RuntimeError if it raised."""
        if self._results is not None:
            return self._results
        try:
            output, _ = self._process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            output, _ = self._process.communicate()
            raise RuntimeError(
                f"{self.target} still running after {timeout} s:\n{output}") from None
        try:
            with open(self._path) as file:
                text = file.read()
        finally:
            os.unlink(self._path)
        if self._process.returncode or not text:
            raise RuntimeError(f"{self.target} failed (exit {self._process.returncode}):\n"
                               f"{output}")
        self._results = [entry["value"] if "value" in entry else
                         RuntimeError(f"{self.target} raised:\n{entry['error']}\n{output}")
                         for entry in json.loads(text)]
        return self._results

    def result(self, index: int = 0, timeout: float = 120.0) -> Any:
        """The value call ``index`` returned; raises if it raised."""
        value = self.results(timeout)[index]
        if isinstance(value, RuntimeError):
            raise value
        return value


def start_many(target: str, calls: list[tuple], *, netns: bool = True,
               addresses: tuple[str, ...] = ()) -> Child:
    """Launch ``target`` ("module:function", a module importable from tests/) once per
    entry of ``calls`` (its JSON arguments after the namespace), all in parallel: each
    in a fresh network namespace whose lo is up with ``addresses`` added, or (``netns``
    False) in a plain forked process."""
    if netns:
        reason = missing()
        if reason:
            raise RuntimeError(reason)
    return Child(target, calls, netns, addresses)


def start(target: str, *args: Any, netns: bool = True,
          addresses: tuple[str, ...] = ()) -> Child:
    """``start_many`` for one call."""
    return start_many(target, [args], netns=netns, addresses=addresses)


def run(target: str, *args: Any, netns: bool = True, addresses: tuple[str, ...] = (),
        timeout: float = 120.0) -> Any:
    return start(target, *args, netns=netns, addresses=addresses).result(timeout=timeout)


# -- the child ----------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000


def _enter_new_namespace() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare(CLONE_NEWNET): {os.strerror(code)}")


def _one_call(function: Any, args: list, config: dict, path: str) -> None:
    """In a forked process: the namespace, the call, its value (or traceback) to ``path``."""
    try:
        namespace = None
        if config["netns"]:
            _enter_new_namespace()
            namespace = Namespace(tuple(config["addresses"]))
        entry = {"value": function(namespace, *args)}
    except BaseException:
        entry = {"error": traceback.format_exc()}
    with open(path, "w") as file:
        json.dump(entry, file)


def _child_main(target: str, result_path: str, config_text: str) -> None:
    config = json.loads(config_text)
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    sys.stdout.flush()
    paths, forks = [], []
    for index, args in enumerate(config["calls"]):
        paths.append(f"{result_path}.{index}")
        pid = os.fork()
        if pid == 0:
            try:
                _one_call(function, args, config, paths[-1])
            finally:
                sys.stdout.flush()
                os._exit(0)
        forks.append(pid)
    for pid in forks:
        os.waitpid(pid, 0)
    entries = []
    for path in paths:
        try:
            with open(path) as file:
                entries.append(json.load(file))
            os.unlink(path)
        except (OSError, ValueError) as exc:
            entries.append({"error": f"no result ({exc})"})
    with open(result_path, "w") as file:
        json.dump(entries, file)


if __name__ == "__main__":
    _child_main(*sys.argv[1:4])
