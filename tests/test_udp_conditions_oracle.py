"""UDP over a path with an MTU, against the kernel: the same calls on Linux's loopback
set to a 1500-byte MTU in a network namespace, and on the virtual network's loopback
path given ``mtu=1500``.

Compared call by call: IP_MTU_DISCOVER's default and range, which sends pass and
which fail with EMSGSIZE at each discovery mode (a corked datagram too), IP_MTU and
IPV6_MTU of a connected socket, what arrives.  The fragments a large datagram
leaves in (captured on lo with an AF_PACKET socket) are compared with the virtual
network's ``packet_sizes``, and per-fragment loss with a drop of 10 % of the UDP
packets before reassembly (an nftables ``numgen random`` rule at prerouting, which
sees each fragment: defragmentation happens later, in ip_local_deliver): small
datagrams survive 90 %, six-fragment ones 0.9 ** 6 = 53 %, on both.
"""

from __future__ import annotations

import errno
import math
import socket

import kernel_netns
import pytest

IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IP_MTU, IPV6_MTU = getattr(socket, "IP_MTU", 14), getattr(socket, "IPV6_MTU", 24)
MSG_MORE = getattr(socket, "MSG_MORE", 0x8000)
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
FAMILIES = {"v4": (socket.AF_INET, "127.0.0.1", socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_MTU),
            "v6": (socket.AF_INET6, "::1", socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_MTU)}
LOSS_ROUNDS = 400


def _log_calls(api, family_name: str) -> list:
    """The MTU calls on ``api`` (the stdlib socket module, kernel's or patched)."""
    family, host, level, discover, mtu_option = FAMILIES[family_name]
    fits = 1500 - (28 if family == socket.AF_INET else 48)
    log: list = []

    def do(label, call, *args):
        try:
            result = call(*args)
        except OSError as exc:
            result = errno.errorcode.get(exc.errno, exc.errno)
        log.append([label, result])

    receiver = api.socket(family, api.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.settimeout(2)
    where = receiver.getsockname()[:2]
    sender = api.socket(family, api.SOCK_DGRAM)
    do("default", sender.getsockopt, level, discover)
    do("mtu unconnected", sender.getsockopt, level, mtu_option)
    for bad in (-1, 6):
        do(f"set {bad}", sender.setsockopt, level, discover, bad)
    for mode in (0, 1, 2, 3, 4, 5):  # DONT, WANT, DO, PROBE, INTERFACE, OMIT
        sender.setsockopt(level, discover, mode)
        for size in (fits, fits + 1, 8000):
            do(f"mode {mode} send {size}", sender.sendto, bytes(size), where)
    sender.setsockopt(level, discover, 2)
    do("cork 1000", sender.sendto, bytes(1000), MSG_MORE, where)
    do("cork past the mtu", sender.sendto, bytes(fits - 999), where)
    do("after the cork", sender.sendto, b"end", where)
    received = []
    while True:
        try:
            received.append(len(receiver.recv(65536)))
        except (TimeoutError, BlockingIOError):
            break
        if received[-1] == 3:
            break
    log.append(["received", received])
    sender.connect(where)
    do("mtu connected", sender.getsockopt, level, mtu_option)
    for sock in (sender, receiver):
        sock.close()
    return log


def _loss_rates(api, net_loss) -> list[int]:
    """How many of LOSS_ROUNDS 100-byte and 8000-byte datagrams arrive with 10 % of
    the packets lost (``net_loss`` turns the loss on)."""
    receiver = api.socket(api.AF_INET, api.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(api.SOL_SOCKET, api.SO_RCVBUF, 1 << 20)
    where = receiver.getsockname()
    sender = api.socket(api.AF_INET, api.SOCK_DGRAM)
    net_loss()
    small = large = 0
    for _ in range(LOSS_ROUNDS):
        sender.sendto(bytes(100), where)
        sender.sendto(bytes(8000), where)
        receiver.setblocking(False)
        try:
            while True:
                if len(receiver.recv(65536)) == 100:
                    small += 1
                else:
                    large += 1
        except BlockingIOError:
            pass
    return [small, large]


def on_kernel(namespace, family_name: str) -> dict:
    namespace.wire(1500)  # lo as a 1500-byte wire, one segment per packet
    capture = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM,
                            socket.htons(ETH_P_IP if family_name == "v4" else ETH_P_IPV6))
    capture.bind(("lo", 0))
    capture.settimeout(0.2)
    sender = socket.socket(FAMILIES[family_name][0], socket.SOCK_DGRAM)
    sender.sendto(bytes(8000), (FAMILIES[family_name][1], 9))
    fragments = []
    try:
        while len(fragments) < 64:
            packet = capture.recv(65536)
            # UDP or (IPv6) a fragment header: not the ICMP error port 9 sends back
            if (packet[9] == 17) if family_name == "v4" else (packet[6] in (17, 44)):
                fragments.append(len(packet))
    except TimeoutError:
        pass
    capture.close()
    sender.close()
    log = _log_calls(socket, family_name)
    rates = None
    if family_name == "v4":
        def lose():
            namespace.nft("add chain inet oracle pre { type filter hook prerouting "
                          "priority -300; policy accept; }")
            namespace.nft("add rule inet oracle pre ip protocol udp "
                          "numgen random mod 100 < 10 drop")
        rates = _loss_rates(socket, lose)
    return {"log": log, "fragments": fragments, "rates": rates}


def on_virtual(_namespace, family_name: str) -> dict:
    import posix_socket as ps
    from posix_socket.drivers.inet import udp_path
    from posix_socket.patching import patch

    with ps.use("virtual", seed=5) as preset, patch():
        net = preset.network
        link = net.link("localhost", "localhost", mtu=1500)
        log = _log_calls(socket, family_name)
        rates = None
        if family_name == "v4":
            rates = _loss_rates(socket, lambda: setattr(link, "loss", 0.1))
    return {"log": log, "fragments": udp_path.packet_sizes(8000, family_name == "v6", 1500),
            "rates": rates}


@pytest.fixture(scope="module")
def results():
    reason = kernel_netns.missing()
    if reason:
        pytest.skip(reason)
    names = list(FAMILIES)
    kernel = kernel_netns.start_many("test_udp_conditions_oracle:on_kernel",
                                     [(name,) for name in names])
    virtual = kernel_netns.start_many("test_udp_conditions_oracle:on_virtual",
                                      [(name,) for name in names], netns=False)
    return {name: (kernel.result(index), virtual.result(index))
            for index, name in enumerate(names)}


@pytest.mark.parametrize("family_name", list(FAMILIES))
def test_mtu_calls_give_the_kernels_results(results, family_name):
    kernel, virtual = results[family_name]
    assert virtual["log"] == kernel["log"]


@pytest.mark.parametrize("family_name", list(FAMILIES))
def test_a_large_datagram_leaves_in_the_kernels_fragments(results, family_name):
    kernel, virtual = results[family_name]
    assert virtual["fragments"] == kernel["fragments"]


def test_each_fragment_meets_loss_as_on_the_kernel(results):
    kernel, virtual = results["v4"]
    for rates in (kernel["rates"], virtual["rates"]):
        small, large = rates
        for got, share in ((small, 0.9), (large, 0.9 ** 6)):
            sigma = math.sqrt(LOSS_ROUNDS * share * (1 - share))
            assert abs(got - LOSS_ROUNDS * share) <= 5 * sigma, (rates, share)
