"""Names on the virtual network resolve as the kernel resolves them on this machine.

The oracle is the stdlib's own getaddrinfo (CPython over glibc, reading this machine's
/etc/hosts): every row of the tables below runs on it and on the drop-in's getaddrinfo
under the virtual preset, and the results (or the exception's type, errno and text)
must be equal.  Names /etc/hosts does not list would go to DNS on the kernel; the
virtual network has no DNS, so for them the virtual answer must be EAI_NONAME and the
kernel is not asked.  A second oracle runs both sides inside ``unshare -rmu`` with test
/etc/hosts files and host names bind-mounted over the machine's, so glibc's reading of
the file (order, duplicates, AF_INET's ::1, AI_V4MAPPED, canonical names, sorting) is
compared on files that show it.  Sockets given names (bind, connect) are compared too.
"""

from __future__ import annotations

import errno
import json
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest

import posix_socket as ps
from posix_socket import names
from posix_socket.drivers.inet import hostnames
from posix_socket.socket import socket as dropin_socket

HOSTNAME = socket.gethostname()
V4, V6 = socket.AF_INET, socket.AF_INET6
STREAM, DGRAM, RAW = socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW
SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def _names_in_hosts_file() -> set[str]:
    try:
        text = pathlib.Path("/etc/hosts").read_text(errors="replace")
    except OSError:
        return set()
    return {name.lower() for line in text.splitlines()
            for name in line.split("#", 1)[0].split()[1:]}


IN_HOSTS_FILE = _names_in_hosts_file()


def _numeric(host: object) -> bool:
    text = host.decode() if isinstance(host, bytes) else host
    if not isinstance(text, str):
        return True
    return hostnames.inet_aton_exact(text) is not None or _pton6(text.partition("%")[0])


def _pton6(text: str) -> bool:
    try:
        socket.inet_pton(V6, text)
        return True
    except (OSError, ValueError):
        return False


def outcome(call, *args):
    try:
        return call(*args)
    except Exception as exc:
        return (type(exc).__name__, getattr(exc, "errno", None), str(exc))


def kernel_asked(host: object) -> bool:
    """Whether the kernel's answer for ``host`` comes from this machine (numeric, or in
    /etc/hosts), not from DNS (which the virtual network does not have)."""
    if host is None or _numeric(host):
        return True
    text = host.decode() if isinstance(host, bytes) else host
    text = text.split("\0", 1)[0]
    return text in ("", "*") or text.lower() in IN_HOSTS_FILE


def compare(rows: list[tuple]) -> None:
    """Every row on the kernel and on the virtual network; all differences at once."""
    differences = []
    with ps.use("virtual"):
        for row in rows:
            ours = outcome(names.getaddrinfo, *row)
            if kernel_asked(row[0]):
                kernel = outcome(socket.getaddrinfo, *row)
                if row[-1] & socket.AI_ADDRCONFIG:
                    # The virtual network counts as configured for both families.
                    plain = outcome(socket.getaddrinfo, *row[:-1],
                                    row[-1] & ~int(socket.AI_ADDRCONFIG))
                    kernel = plain if kernel != plain else kernel
            else:
                kernel = ("gaierror", socket.EAI_NONAME,
                          f"[Errno {socket.EAI_NONAME}] Name or service not known")
            if ours != kernel:
                differences.append((row, kernel, ours))
    assert not differences, "\n".join(f"{row}:\n  kernel  {k}\n  virtual {o}"
                                      for row, k, o in differences)


HOSTS = ["localhost", HOSTNAME, HOSTNAME.upper(), None, "", "*", "127.0.0.1", "::1", "127.1",
         "0x7f000001", "2130706433", "017.0.0.1", "127.0.0.1 x", " 127.0.0.1", "127.0.0.1\t",
         "LocalHost", "::ffff:127.0.0.1", "fe80::1%lo", "fe80::1%1", "fe80::1%", "::1%lo",
         "::1%1", "::1%x1", "ff02::1%lo", "::1%", "fe80::1%+1", "fe80::1%4294967296",
         "fe80::1%4294967295", "ff05::1%lo", "0.0.0.0", "::", b"localhost", b"127.0.0.1",
         "256.1.1.1", "1.2.3", "4294967296", "localhost\0junk", "nosuch.invalid",
         "localhost."]
PORTS = [80, "80", None, "", "*", "http", "echo", "domain", "-1", -1, -5, 123456, "123456",
         2**32 + 80, "4294967376", "4294967295", "2147483648", "18446744073709551616",
         "-4294967295", " 80", "\t80", "+80", "80 ", " ", "+", "-", "0x50", "08",
         "nosuchservice", 0, 65535, 65536, b"80", b"http", "80\0x", 2**63 - 1]
FLAGS = [0, socket.AI_PASSIVE, socket.AI_CANONNAME, socket.AI_NUMERICHOST,
         socket.AI_NUMERICSERV, socket.AI_V4MAPPED, socket.AI_V4MAPPED | socket.AI_ALL,
         socket.AI_ALL, socket.AI_ADDRCONFIG, socket.AI_CANONNAME | socket.AI_PASSIVE,
         socket.AI_CANONNAME | socket.AI_V4MAPPED | socket.AI_ALL, 0x40, 0x800, 0x10000, -1]


def test_hosts_and_families_answer_as_the_kernel():
    compare([(host, port, family, 0, 0, 0) for host in HOSTS
             for port in (80, "http", None) for family in (0, V4, V6)])


def test_services_and_port_numbers_answer_as_glibc():
    """AI_NUMERICSERV with a name: EAI_NONAME; -1: EAI_SERVICE; past 65535 it wraps."""
    compare([("127.0.0.1", port, 0, kind, 0, flags) for port in PORTS
             for flags in (0, socket.AI_NUMERICSERV) for kind in (0, STREAM, DGRAM, RAW)])


def test_socket_types_and_protocols_answer_as_glibc():
    kinds = [0, STREAM, DGRAM, RAW, socket.SOCK_SEQPACKET, 6, 99]
    protos = [0, socket.IPPROTO_TCP, socket.IPPROTO_UDP, 132, 136, 33, 99]
    compare([("127.0.0.1", port, family, kind, proto, 0)
             for family in (0, V4, V6, socket.AF_UNIX, 99) for kind in kinds
             for proto in protos for port in (80, "echo", None)])


def test_flags_answer_as_glibc():
    compare([(host, 80, family, STREAM, 0, flags)
             for host in ("localhost", HOSTNAME, None, "127.0.0.1", "::1", "::ffff:127.0.0.1")
             for flags in FLAGS for family in (0, V4, V6)])


@pytest.mark.parametrize("args", [
    (1, 80), (1.5, 80), (["localhost"], 80), ("localhost", 80.0), ("localhost", True),
    ("localhost", bytearray(b"80")), ("localhost", 80, "2"), ("localhost", 80, 2.0),
    ("localhost", 80, 2**31), ("localhost", 80, 0, -2**31 - 1), ("localhost", 80, 0, 0, 0, 2**40),
    ("localhost", 2**63), ("localhost", -2**63 - 1), ("localhost", 2**64 + 80),
    ("localhost", -2**64 + 80), ("localhost", -10**29), ("localhost", "-" + "9" * 29),
    ("a..b", 80), ("x" * 64, 80),
    ("localhost", "\udcff"),
], ids=repr)
def test_bad_arguments_raise_what_the_stdlib_raises(args):
    with ps.use("virtual"):
        assert outcome(names.getaddrinfo, *args) == outcome(socket.getaddrinfo, *args)


def test_a_port_past_65535_is_refused_by_create_connection_not_overflowing():
    """glibc keeps 123456 as port 57920: nothing listens there, the connect is refused."""
    with ps.use("host"):
        kernel = outcome(ps_socket_create_connection, ("127.0.0.1", 123456))
    with ps.use("virtual"):
        ours = outcome(ps_socket_create_connection, ("127.0.0.1", 123456))
    assert ours[:2] == kernel[:2] == ("ConnectionRefusedError", errno.ECONNREFUSED)


def ps_socket_create_connection(address):
    from posix_socket import socket as dropin
    with dropin.create_connection(address, timeout=5):
        return "connected"


def test_answers_are_kept_but_follow_added_hosts():
    with ps.use("virtual"):
        network = ps.registered_families()[V4].network
        with pytest.raises(socket.gaierror):
            names.getaddrinfo("db.test", 80)
        network.add_host("10.0.0.7", "fd00::7", names=["db.test"])
        first = names.getaddrinfo("db.test", 80, 0, STREAM)
        assert first == names.getaddrinfo("db.test", 80, 0, STREAM)
        assert [entry[4][0] for entry in first] == ["fd00::7", "10.0.0.7"]
        first.clear()  # the caller's list is its own
        assert names.getaddrinfo("db.test.", 80, 0, STREAM, 0, socket.AI_CANONNAME)[0][3] == \
            "db.test"


# -- the machine's names, from a hosts file of the test's choosing -----------------

@pytest.fixture
def hosts_file(tmp_path, monkeypatch):
    """Write a hosts file (and pick the host name) for the virtual network to read."""
    path = tmp_path / "hosts"
    monkeypatch.setattr(hostnames, "HOSTS_PATH", str(path))

    def write(text: str, hostname: str = "box") -> None:
        path.write_text(text)
        monkeypatch.setattr(hostnames.socket, "gethostname", lambda: hostname)
    return write


def addresses(host, family=0):
    return [entry[4][0] for entry in names.getaddrinfo(host, 80, family, STREAM)]


def test_without_a_localhost_line_localhost_is_both_loopbacks(hosts_file):
    hosts_file("127.0.1.1 box\n")
    with ps.use("virtual"):
        assert addresses("localhost") == ["::1", "127.0.0.1"]
        assert addresses("box") == ["127.0.1.1"]


def test_without_a_line_for_the_machine_its_name_answers_as_localhost(hosts_file):
    hosts_file("127.0.0.1 localhost\n::1 localhost\n10.1.2.3 elsewhere\n", hostname="Box")
    with ps.use("virtual"):
        assert addresses("box") == addresses("localhost") == ["::1", "127.0.0.1"]
        with pytest.raises(socket.gaierror) as error:  # another machine's line
            addresses("elsewhere")
        assert error.value.errno == socket.EAI_NONAME


def test_the_hosts_file_is_read_again_when_it_changes(hosts_file):
    hosts_file("127.0.0.1 localhost\n")
    with ps.use("virtual"):
        with pytest.raises(socket.gaierror):
            addresses("localhost", V6)
        hosts_file("127.0.0.1 localhost\n::1 localhost\n# changed\n")
        assert addresses("localhost", V6) == ["::1"]


def test_the_machine_names_own_address_is_local_on_the_network(hosts_file):
    """A host name /etc/hosts gives a LAN address: binding and connecting to it work,
    as on the machine that has that address."""
    hosts_file("127.0.0.1 localhost\n192.0.2.77 box.example box\n")
    with ps.use("virtual"):
        with dropin_socket(V4, STREAM) as server, dropin_socket(V4, STREAM) as client:
            server.bind(("box", 0))
            server.listen()
            assert server.getsockname()[0] == "192.0.2.77"
            client.connect(("box.example", server.getsockname()[1]))
            assert client.getpeername() == server.getsockname()
        assert names.gethostbyaddr("192.0.2.77") == ("box.example", ["box"], ["192.0.2.77"])
        assert names.getfqdn("box") == "box.example"


# -- sockets given names: host vs virtual -------------------------------------------

# (Not fe80::1%lo: a link-local address with scope id 0 is the kernel's EINVAL, the
# virtual network's EADDRNOTAVAIL/ENETUNREACH, whatever the name.)
NAMES_FOR_SOCKETS = ["localhost", HOSTNAME, "127.0.0.1", "::1", "::ffff:127.0.0.1", "127.1",
                     "", "::1%lo", "::1%1", "::1%", "<broadcast>", "255.255.255.255",
                     "LOCALHOST", "127.0.0.1 x", "0x7f.1"]


def _bind_outcome(family, v6only, name):
    with dropin_socket(family, DGRAM) as sock:  # (UDP: TCP's bind to broadcast differs)
        if family == V6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        result = outcome(sock.bind, (name, 0))
        return result if result is not None else sock.getsockname()[0]


def _connect_outcome(family, v6only, name):
    with dropin_socket(V6, STREAM) as listener, dropin_socket(family, STREAM) as client:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
        listener.listen()
        if family == V6:
            client.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        result = outcome(client.connect, (name, listener.getsockname()[1]))
        return result if result is not None else client.getpeername()[0]


@pytest.mark.parametrize("call", [_bind_outcome, _connect_outcome], ids=["bind", "connect"])
@pytest.mark.parametrize(("family", "v6only"), [(V4, 0), (V6, 0), (V6, 1)],
                         ids=["AF_INET", "AF_INET6", "AF_INET6 v6only"])
def test_a_socket_given_a_name_uses_what_getaddrinfo_answers_for_its_family(call, family,
                                                                            v6only):
    rows = [name for name in NAMES_FOR_SOCKETS if kernel_asked(name) or name == "<broadcast>"]
    with ps.use("host"):
        kernel = [outcome(call, family, v6only, name) for name in rows]
    with ps.use("virtual"):
        ours = [outcome(call, family, v6only, name) for name in rows]
    assert dict(zip(rows, ours, strict=True)) == dict(zip(rows, kernel, strict=True))


# -- the same inside a mount namespace, over test /etc/hosts files --------------------

HOSTS_FILES = {
    "debian": ("box", "127.0.0.1\tlocalhost\n127.0.1.1\tbox.example.org\tbox\n\n"
               "# IPv6\n::1     localhost ip6-localhost ip6-loopback\n"
               "ff02::1 ip6-allnodes\n"),
    "fedora": ("localhost", "127.0.0.1 localhost localhost.localdomain localhost4\n"
               "::1 localhost localhost.localdomain localhost6\n"),
    "ipv4 only": ("box", "127.0.0.1 localhost\n127.0.0.1 box\n"),
    "merged lines": ("box", "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
                     "127.0.0.1 localhost\n127.0.1.1 box.example box\n::1 box\n"
                     "::ffff:127.0.0.3 mapped\n::1 onlysix\n"
                     "  127.0.0.5\tTabbed  Spaced # comment\n127.1 short\n"),
    "sorting": ("box", "127.0.0.5 box\n127.0.1.1 box\n127.0.0.1 box\n::1 box\n"
                "::ffff:127.0.0.9 box\n127.0.0.1 localhost\n"),
}
ORACLE_NAMES = ["localhost", "LOCALHOST", "box", "Box", "box.example", "box.example.org",
                "localhost.localdomain", "localhost6", "ip6-localhost", "ip6-loopback",
                "mapped", "onlysix", "tabbed", "spaced", "127.0.0.1", "::1", "127.0.1.1"]
CHILD = r"""
import json, socket, sys
import posix_socket as ps
from posix_socket import names
from posix_socket.socket import socket as dropin_socket
known = {n.lower() for line in open("/etc/hosts") for n in line.split("#")[0].split()[1:]}
def outcome(call, *args):
    try:
        return call(*args)
    except Exception as exc:
        return [type(exc).__name__, getattr(exc, "errno", None), str(exc)]
def every_answer_on_one_port():
    # A server binding each getaddrinfo answer for its name on one port.
    port, bound = 0, []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
                "localhost", port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(("localhost", port))
            port = sock.getsockname()[1]
        return [sock.getsockname()[0] for sock in bound]
    finally:
        for sock in bound:
            sock.close()
def run(resolve, name_of, bind):
    rows = {}
    for name in sys.argv[1:]:
        if name.lower() not in known and not name[0].isdigit() and ":" not in name:
            continue
        for family in (0, socket.AF_INET, socket.AF_INET6):
            for flags in (0, socket.AI_CANONNAME, socket.AI_V4MAPPED,
                          socket.AI_V4MAPPED | socket.AI_ALL | socket.AI_CANONNAME):
                rows[f"{name} {family} {flags}"] = outcome(
                    resolve, name, 80, family, socket.SOCK_STREAM, 0, flags)
        for call in name_of:
            rows[f"{call.__name__} {name}"] = outcome(call, name)
    rows["every answer on one port"] = outcome(bind)
    return json.loads(json.dumps(rows, default=str))
kernel = run(socket.getaddrinfo, (socket.gethostbyname, socket.gethostbyname_ex,
                                  socket.gethostbyaddr), every_answer_on_one_port)
with ps.use("virtual"), ps.patch():
    ours = run(names.getaddrinfo, (names.gethostbyname, names.gethostbyname_ex,
                                   names.gethostbyaddr), every_answer_on_one_port)
print(json.dumps({key: [kernel[key], ours[key]] for key in kernel if kernel[key] != ours[key]}))
"""


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rmu", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _namespaces_work(),
                    reason="needs unprivileged user and mount namespaces (unshare -rmu) to "
                           "put a test /etc/hosts in place")
@pytest.mark.parametrize("case", HOSTS_FILES)
def test_names_read_from_a_hosts_file_answer_as_glibc(case, tmp_path):
    hostname, text = HOSTS_FILES[case]
    hosts = tmp_path / "hosts"
    hosts.write_text(text)
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    script = ('mount --bind "$1" /etc/hosts && hostname "$2" && shift 2 && '
              f'PYTHONPATH={SRC} exec {sys.executable} "$@"')
    done = subprocess.run(["unshare", "-rmu", "sh", "-c", script, "sh", str(hosts), hostname,
                           str(child), *ORACLE_NAMES], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    differences = json.loads(done.stdout)
    assert differences == {}, json.dumps(differences, indent=1)
