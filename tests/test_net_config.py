"""The network configuration file: what it sets up, and every way it is refused.

A configuration is checked whole before anything changes: a refused one names the file,
the place in it and the problem, and leaves the network as it was.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

import posix_socket as ps
from posix_socket import NetworkConfigError, load_network_config

ROOT = pathlib.Path(__file__).resolve().parent.parent

FULL = {
    "seed": 7,
    "hosts": {
        "db.test": ["10.0.0.2", "fd00::2"],
        "cache.test": {"addresses": ["10.0.0.3"], "aliases": ["cache"]},
        "web.test": "10.0.0.4",
    },
    "defaults": {"latency": 0.001},
    "links": [
        {"between": ["localhost", "db.test"], "latency": 0.05, "jitter": 0.01,
         "bandwidth": 1000000, "loss": 0.01},
        {"between": ["CACHE", "10.0.0.2"], "down": True, "both_ways": False},
        {"between": ["web.test", "web.test"], "mtu": 1500},
    ],
    "partition": [["db.test", "cache.test"], "web.test"],
    "sysctl": {"tcp_syn_retries": 2},
}


def state(net: ps.VirtualNetwork) -> tuple:
    """What a configuration can change, to compare before and after."""
    with net.lock:
        paths = {(a.index, b.index): (net.path(a, b).perfect, net.path(a, b).blocked,
                                      net.path(a, b).conditions.values())
                 for a in net.hosts for b in net.hosts}
    return ([(h.addresses, list(h.names)) for h in net.hosts], net.links(), paths,
            dict(net.sysctl))


def test_a_full_configuration_sets_hosts_links_defaults_partition_and_sysctls(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(FULL))
    config = load_network_config(path)
    assert config.source == str(path)
    assert dataclasses.replace(config, source=None) == load_network_config(FULL)
    assert config.seed == 7
    with ps.use("virtual", seed=config.seed) as preset:
        net = preset.network
        config.apply(net)
        db, cache, web = (net.find_host(name) for name in ("db.test", "cache", "web.test"))
        assert db.addresses == ("10.0.0.2", "fd00::2") and db.names == ["db.test"]
        assert cache.names == ["cache.test", "cache"] and web.addresses == ("10.0.0.4",)
        here = net.first_host
        to_db, down, loop = net.links()
        assert (to_db.a, to_db.b, to_db.both_ways) == (here, db, True)
        assert (to_db.latency, to_db.jitter, to_db.bandwidth, to_db.loss) == (
            0.05, 0.01, 1000000, 0.01)
        assert (down.a, down.b, down.both_ways, down.down) == (cache, db, False, True)
        assert (loop.a, loop.b, loop.mtu) == (web, web, 1500)
        with net.lock:
            assert net.path(here, web).conditions.latency == 0.001  # the defaults
            assert net.path(db, cache).conditions.latency == 0.001  # down is one way
            assert net.path(cache, db).blocked
            assert not net.path(db, cache).blocked  # the same group
            assert net.path(db, web).blocked and net.path(here, web).blocked
            assert net.path(here, db).blocked  # one group per listed group; here: others
        assert net.sysctl["tcp_syn_retries"] == 2


def test_the_shipped_example_loads_and_applies():
    config = load_network_config(ROOT / "examples" / "lossy-network.json")
    with ps.use("virtual", seed=config.seed) as preset:
        config.apply(preset.network)
        assert preset.network.links()


def test_an_empty_configuration_changes_nothing():
    config = load_network_config({})
    assert config.seed is None
    with ps.use("virtual") as preset:
        before = state(preset.network)
        config.apply(preset.network)
        assert state(preset.network) == before


def test_the_same_seed_from_a_configuration_gives_the_same_fates():
    def fates(seed):
        config = load_network_config({"seed": seed, "hosts": {"b.test": "10.0.0.2"},
                                      "links": [{"between": ["localhost", "b.test"],
                                                 "loss": 0.5}]})
        with ps.use("virtual", seed=config.seed) as preset:
            config.apply(preset.network)
            net = preset.network
            with net.lock:
                path = net.path(net.first_host, net.find_host("b.test"))
                return [path.lost() for _ in range(64)]
    assert fates(11) == fates(11)
    assert fates(11) != fates(12)


# (document, place, words in the problem)
REFUSED = [
    ({"sed": 1}, "sed", "unknown key (known: seed, hosts"),
    ({"seed": True}, "seed", "expected an integer or null, not a boolean"),
    ({"seed": "7"}, "seed", "not a string"),
    ({"seed": 7.5}, "seed", "not a number"),
    ({"hosts": ["10.0.0.2"]}, "hosts", "expected an object (name: addresses)"),
    ({"hosts": {"db": []}}, "hosts.db", "no addresses"),
    ({"hosts": {"db": 5}}, "hosts.db", "expected a list, not a number"),
    ({"hosts": {"db": ["10.0.0.2", "nowhere"]}}, "hosts.db[1]", "'nowhere' is not an IP"),
    ({"hosts": {"db": "127.0.0.2"}}, "hosts.db[0]", "loopback address"),
    ({"hosts": {"db": "0.0.0.0"}}, "hosts.db[0]", "unspecified address"),
    ({"hosts": {"db": "ff02::1"}}, "hosts.db[0]", "multicast address"),
    ({"hosts": {"db": "255.255.255.255"}}, "hosts.db[0]", "broadcast address"),
    ({"hosts": {"db": "::ffff:127.0.0.1"}}, "hosts.db[0]", "loopback address"),
    ({"hosts": {"db": "::ffff:0.0.0.0"}}, "hosts.db[0]", "unspecified address"),
    ({"hosts": {"db": "::ffff:224.0.0.1"}}, "hosts.db[0]", "multicast address"),
    ({"hosts": {"db": "::ffff:255.255.255.255"}}, "hosts.db[0]", "broadcast address"),
    ({"hosts": {"db": [7]}}, "hosts.db[0]", "expected a string, not a number"),
    ({"hosts": {"a": "10.0.0.2", "b": "::ffff:10.0.0.2"}}, "hosts.b[0]", "is hosts.a's"),
    ({"hosts": {"my db": "10.0.0.2"}}, 'hosts["my db"]', "not a host name"),
    ({"hosts": {"10.0.0.9": "10.0.0.2"}}, 'hosts["10.0.0.9"]', "an address, not a name"),
    ({"hosts": {"a": "10.0.0.2", "A.": "10.0.0.3"}}, 'hosts["A."]', "is hosts.a's already"),
    ({"hosts": {"a": {"address": ["10.0.0.2"]}}}, "hosts.a.address", "unknown key"),
    ({"hosts": {"a": {"aliases": ["b"]}}}, "hosts.a", "no addresses"),
    ({"hosts": {"a": {"addresses": ["10.0.0.2"], "aliases": ["a b"]}}},
     "hosts.a.aliases[0]", "not a host name"),
    ({"defaults": {"latency": -0.1}}, "defaults.latency", "latency must be >= 0 seconds"),
    ({"defaults": {"latency": math.nan}}, "defaults.latency", "must be finite"),
    ({"defaults": {"jitter": math.inf}}, "defaults.jitter", "must be finite"),
    ({"defaults": {"latency": "50ms"}}, "defaults.latency", 'a number, not "50ms"'),
    ({"defaults": {"latancy": 0.1}}, "defaults.latancy", "unknown key (known: latency"),
    ({"defaults": [0.1]}, "defaults", "expected an object, not a list"),
    ({"defaults": {"bandwidth": 0}}, "defaults.bandwidth", "(null: unlimited)"),
    ({"defaults": {"mtu": 1500.0}}, "defaults.mtu", "mtu must be an int, not 1500.0"),
    ({"defaults": {"down": 1}}, "defaults.down", "down must be a bool, not 1"),
    ({"links": {}}, "links", "expected a list, not an object"),
    ({"links": [{"between": ["a", "b"]}, {"between": ["a", "b"], "loss": 1.5}]},
     "links[1].loss", "loss must be a probability in 0..1, not 1.5"),
    ({"links": [{"between": ["a", "b"], "duplicate": -0.01}]}, "links[0].duplicate",
     "probability in 0..1"),
    ({"links": [{"between": ["a", "b"], "reorder": 2}]}, "links[0].reorder", "0..1"),
    ({"links": [{"latency": 0.1}]}, "links[0]", 'no "between"'),
    ({"links": [{"between": ["a"]}]}, "links[0].between", "expected two hosts, not 1"),
    ({"links": [{"between": "a"}]}, "links[0].between", "expected a list, not a string"),
    ({"links": [{"between": ["a", 2]}]}, "links[0].between[1]", "expected a string"),
    ({"links": [{"between": ["a", "b"], "both_ways": "yes"}]}, "links[0].both_ways",
     "expected true or false"),
    ({"links": [{"between": ["a", "b"], "speed": 1}]}, "links[0].speed", "unknown key"),
    ({"links": ["a"]}, "links[0]", "expected an object, not a string"),
    ({"partition": []}, "partition", "no groups"),
    ({"partition": "a"}, "partition", "expected a list"),
    ({"partition": [["a"], []]}, "partition[1]", "an empty group"),
    ({"partition": [["a", 1]]}, "partition[0][1]", "expected a string"),
    ({"sysctl": {"tcp_syn_retries": -1}}, "sysctl.tcp_syn_retries", "integer >= 0"),
    ({"sysctl": {"tcp_syn_retries": True}}, "sysctl.tcp_syn_retries", "integer >= 0"),
]


@pytest.mark.parametrize(("document", "place", "problem"), REFUSED,
                         ids=[f"{n}-{p}" for n, (_, p, _) in enumerate(REFUSED)])
def test_a_bad_configuration_names_the_place_and_the_problem(document, place, problem,
                                                              tmp_path):
    with pytest.raises(NetworkConfigError) as raised:
        load_network_config(document)
    assert (raised.value.source, raised.value.place) == (None, place)
    assert problem in raised.value.problem
    # The same from a file: its name comes first.
    path = tmp_path / "net.json"
    path.write_text(json.dumps(document))
    with pytest.raises(NetworkConfigError) as raised:
        load_network_config(str(path))
    assert raised.value.place == place
    assert str(raised.value).startswith(f"{path}: {place}: " if place else f"{path}: ")


@pytest.mark.parametrize(("text", "place", "problem"), [
    ('{"seed": 7,\n  "hosts": {]\n}', "line 2 column 13", "malformed JSON: Expecting"),
    ("", "line 1 column 1", "malformed JSON: Expecting value"),
    ("[]", None, "expected an object, not a list"),
    ('{"seed": 1, "seed": 2}', "seed", "given twice"),
    ('{"hosts": {"a": "10.0.0.2", "a": "10.0.0.3"}}', "hosts.a", "given twice"),
    ('{"links": [{"between": ["a", "b"], "loss": 0.1, "loss": 0.2}]}', "links[0].loss",
     "given twice"),
    ('{"defaults": {"latency": NaN}}', "defaults.latency", "must be finite"),
    ('{"defaults": {"latency": -Infinity}}', "defaults.latency", "must be finite"),
])
def test_malformed_json_names_the_line_and_keys_given_twice_are_refused(
        text, place, problem, tmp_path):
    path = tmp_path / "net.json"
    path.write_text(text)
    with pytest.raises(NetworkConfigError) as raised:
        load_network_config(path)
    assert (raised.value.source, raised.value.place) == (str(path), place)
    assert problem in raised.value.problem


def test_a_file_that_cannot_be_read_is_refused_with_its_name(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(NetworkConfigError) as raised:
        load_network_config(missing)
    assert str(raised.value) == (f"{missing}: can't open file: [Errno 2] "
                                 "No such file or directory")
    with pytest.raises(NetworkConfigError, match=r"can't open file: .*Is a directory"):
        load_network_config(tmp_path)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"seed": "\xff"}')
    with pytest.raises(NetworkConfigError, match=r"binary\.json: not UTF-8 text"):
        load_network_config(binary)
    with pytest.raises(TypeError):
        load_network_config(7)  # type: ignore[arg-type]


# Refused only once the network is known: (document, place, words in the problem).
REFUSED_BY_THE_NETWORK = [
    ({"links": [{"between": ["localhost", "nowhere.test"]}]}, "links[0].between[1]",
     "no host 'nowhere.test'"),
    ({"hosts": {"b.test": "10.0.0.3"},
      "links": [{"between": ["b.test", "10.0.0.9"]}]}, "links[0].between[1]", "no host"),
    ({"partition": [["10.0.0.2"], ["ghost.test"]]}, "partition[1][0]", "no host"),
    ({"partition": [["a.test"], ["10.0.0.2"]]}, "partition[1][0]",
     "is in partition[0] too"),
    ({"hosts": {"b.test": "10.0.0.3"}, "partition": [["b.test"], "B.TEST."]},
     "partition[1]", "is in partition[0] too"),
    ({"hosts": {"b.test": "10.0.0.2"}}, 'hosts["b.test"]',
     "10.0.0.2 belongs to a host of the network already (a.test)"),
    ({"hosts": {"a.test": "10.0.0.5"}}, 'hosts["a.test"]', "has a host named 'a.test'"),
    ({"hosts": {"localhost": "10.0.0.5"}}, "hosts.localhost", "named 'localhost'"),
    ({"hosts": {"b.test": "::ffff:10.0.0.2"}}, 'hosts["b.test"]', "belongs to a host"),
    ({"sysctl": {"tcp_no_such_thing": 1}}, "sysctl.tcp_no_such_thing", "unknown setting"),
]


@pytest.mark.parametrize(("document", "place", "problem"), REFUSED_BY_THE_NETWORK)
def test_what_only_the_network_can_refuse_is_refused_before_anything_changes(
        document, place, problem):
    # Each refused document also carries changes that would apply, had it been checked
    # piece by piece.
    document = {"defaults": {"latency": 0.2}, "sysctl": {"tcp_retries2": 3}, **document}
    document["hosts"] = {"c.test": ["10.0.0.7"], **document.get("hosts", {})}
    document["links"] = [*document.get("links", []),
                         {"between": ["a.test", "c.test"], "loss": 0.5}]
    config = load_network_config(document)
    with ps.use("virtual") as preset:
        net = preset.network
        net.add_host("10.0.0.2", names=["a.test"])
        before = state(net)
        with pytest.raises(NetworkConfigError) as raised:
            config.apply(net)
        assert (raised.value.place, problem in raised.value.problem) == (place, True)
        assert state(net) == before


def test_links_and_partitions_name_hosts_as_the_network_does():
    config = load_network_config({
        "hosts": {"db.test": {"addresses": ["10.0.0.2", "fd00::2"], "aliases": ["db"]}},
        "links": [{"between": ["DB.", "::1"], "latency": 0.1},
                  {"between": ["fd00::2", "db.test"], "latency": 0.2},
                  {"between": ["::ffff:10.0.0.2", "127.0.0.5"], "latency": 0.3,
                   "both_ways": False}],
        "partition": ["fd00:0::2"]})
    with ps.use("virtual") as preset:
        net = preset.network
        config.apply(net)
        db, here = net.find_host("db"), net.first_host
        with net.lock:
            assert net.path(here, db).conditions.latency == 0.1
            assert net.path(db, db).conditions.latency == 0.2  # its loopback
            assert net.path(db, here).conditions.latency == 0.3  # the later link wins
            assert net.path(here, db).blocked and not net.path(db, db).blocked


def test_a_configuration_is_a_value_that_can_be_applied_to_several_networks():
    config = load_network_config({"hosts": {"b.test": "10.0.0.2"},
                                  "links": [{"between": ["localhost", "b.test"],
                                             "latency": 0.01}]})
    for _ in range(2):
        with ps.use("virtual") as preset:
            config.apply(preset.network)
            assert preset.network.links()[0].latency == 0.01
    with pytest.raises(AttributeError):
        config.seed = 3  # type: ignore[misc]


def run_example(*flags: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "posix_socket", "run", *flags, "--net-config",
         "examples/lossy-network.json", "examples/retrying_client.py"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=environment)


def test_the_example_prints_the_readmes_lines_on_virtual_time():
    """On the virtual clock the example's times are the network's: the README shows
    what it prints, line for line."""
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"examples/retrying_client\.py\n```\n\nprints .*?```\n(.*?)```",
                      readme, re.S)
    assert shown is not None
    result = run_example("--virtual-time")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == shown.group(1)


def test_the_example_client_retries_over_the_lossy_link_and_times_out_across_a_partition():
    result = run_example()
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    answers = [line.split()[-4:] for line in lines[:6]]  # forecast, after, N, tries
    assert [forecast for forecast, *_ in answers] == [
        "sunny", "windy", "rain", "fog", "clouds", "drizzle"]
    tries = [int(count) for _, _, count, _ in answers]
    assert all(1 <= count <= 5 for count in tries)
    assert max(tries) > 1  # 20% loss each way: some question was asked again
    assert lines[6].startswith("radar     65536 bytes, intact, in ")
    assert lines[7] == "partition connect: timed out after 1.0 s"
    assert lines[8].startswith("healed    connected in ")


def test_the_readmes_configuration_file_loads_and_applies():
    [block] = re.findall(r"```json\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    config = load_network_config(json.loads(block))
    with ps.use("virtual", seed=config.seed) as preset:
        config.apply(preset.network)
        assert [host.names for host in preset.network.hosts[1:]] == [
            ["db.test"], ["cache.test", "cache"]]
        assert len(preset.network.links()) == 2
