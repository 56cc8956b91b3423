"""The ``posix-socket`` command and the README's example."""

import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import posix_socket
from posix_socket import bench, cli, run

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_families_lists_the_host_preset(capsys):
    assert cli.main(["families"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["family", "name", "driver", "registered", "by"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    for number, name in (("1", "AF_UNIX"), ("2", "AF_INET"), ("10", "AF_INET6")):
        assert rows[number][1:5] == [name, "host", "preset", "host"]


def test_families_shows_a_new_family_number_and_where_it_came_from(capsys, memory):
    assert cli.main(["families"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("250 "))
    assert row.split() == ["250", "-", "memory", "register_family"]


def test_python_dash_m_is_the_same_command():
    via_module = subprocess.run([sys.executable, "-m", "posix_socket", "families"],
                                capture_output=True, text=True, check=True)
    in_process = subprocess.run(
        [sys.executable, "-c", "import sys, posix_socket.cli as c; sys.exit(c.main())",
         "families"], capture_output=True, text=True, check=True)
    assert via_module.stdout == in_process.stdout
    assert "AF_INET6" in via_module.stdout


def test_bench_prints_a_row_with_both_timings_and_the_ratio(capsys):
    assert cli.main(["bench", "--rounds", "1", "--scale", "0.005",
                     "--only", "host 1-byte"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("host 1-byte"))
    assert re.search(r"µs/round trip +[\d.]+ µs/round trip stdlib +\d+\.\d\dx +<= 1\.15x", row)


def test_bench_drop_in_rows_time_the_objects_programs_call_against_the_stdlib(capsys):
    assert cli.main(["bench", "--rounds", "1", "--scale", "0.005", "--only", "drop-in"]) == 0
    out = capsys.readouterr().out
    ping_pong = next(line for line in out.splitlines()
                     if line.startswith("drop-in socketpair() 1-byte ping-pong"))
    assert re.search(r"µs/round trip stdlib +\d+\.\d\dx +<= 1\.15x stdlib time", ping_pong)
    connections = next(line for line in out.splitlines()
                       if line.startswith("drop-in create_connection + accept + close"))
    assert re.search(r"µs/connection stdlib +\d+\.\d\dx +<= 0\.33x kernel time", connections)


def test_every_bench_row_measures_both_sides(monkeypatch):
    monkeypatch.setattr(bench, "IDLE_SOCKETS", 40)  # the row's point, not its size
    monkeypatch.setattr(bench, "_MB", 50_000)  # the same for the link rows' megabytes
    results = list(bench.run(rounds=1, scale=0.002))
    assert [r.row for r in results] == bench.ROWS
    assert all(r.unavailable is None and r.layer > 0 and r.stdlib > 0 for r in results)


def test_bench_link_rows_stand_next_to_what_the_link_promises(capsys, monkeypatch):
    monkeypatch.setattr(bench, "_MB", 100_000)  # a tenth of the bytes: the rows' shape
    assert cli.main(["bench", "--rounds", "1", "--scale", "0.05", "--only", "link"]) == 0
    lines = capsys.readouterr().out.splitlines()

    def row(start: str) -> str:
        return next(line for line in lines if line.startswith(start))

    throughput = re.search(r"ms/MB +120\.00 ms/MB ideal +(\d+\.\d\d)x",  # 0.1 s + 20 ms
                           row("virtual TCP over a 1 MB/s link, 20 ms latency, MTU 1500"))
    round_trip = re.search(r"ms/round trip +20\.00 ms/round trip ideal +(\d+\.\d\d)x",
                           row("virtual TCP 1-byte round trip over a link with 10 ms"))
    cpu = re.search(r"/MB +[\d.]+ .s/MB perfect path +\d+\.\d\dx +- +-$",
                    row("virtual TCP CPU per MB delivered over a 5% lossy link"))
    assert throughput and round_trip and cpu
    # No link beats its own promise: the bytes take their time, a round trip two latencies.
    assert float(round_trip.group(1)) >= 0.99
    assert float(throughput.group(1)) >= 0.99


def test_bench_rejects_an_unknown_row(capsys):
    assert cli.main(["bench", "--only", "no such row"]) == 2
    assert "no such row" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    try:
        cli.main(["frobnicate"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("argparse accepted an unknown command")


def checkout_environment() -> dict[str, str]:
    """The environment for a child that must import this checkout's package, whatever
    its working directory (an installed copy elsewhere would otherwise win)."""
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
# What each block prints, in the README's order (its comments say the same).
README_OUTPUT = ["200 b'hello'\n", "b'hello'\n", "10.0.0.3 b'select 1'\n",
                 "True True ETIMEDOUT\n", "b'a pipe' b'through the pipe'\n",
                 "66 66 68\nTrue\ntimed out\n", "[Link(127.0.0.1 <-> db.test: latency=0.05)]\n",
                 ""]  # the pytest plugin's block: test functions, run by pytest


def test_the_readme_has_the_python_blocks_this_test_knows() -> None:
    assert len(README_BLOCKS) == len(README_OUTPUT)


@pytest.mark.parametrize(("block", "output"), list(zip(README_BLOCKS, README_OUTPUT, strict=False)),
                         ids=[f"block{n}" for n in range(1, len(README_BLOCKS) + 1)])
def test_each_readme_python_block_runs_alone_and_prints_what_it_says(
        block: str, output: str, tmp_path: pathlib.Path) -> None:
    """A reader copies one block into a file and runs it: no block may lean on
    another's imports or names."""
    script = tmp_path / "block.py"
    script.write_text(block)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env=checkout_environment())
    assert result.returncode == 0, result.stderr
    assert result.stdout == output


def test_help_lists_run_and_run_takes_its_own_command_line(capsys, tmp_path, monkeypatch):
    try:
        cli.main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "run a Python program" in capsys.readouterr().out
    # Words after the script are the program's, even ones that look like ours.
    assert run.parse_args(["--net", "host", "x.py", "--net", "-m", "y"]) == run.Options(
        "x.py", ["--net", "-m", "y"], net="host")
    assert run.parse_args(["-mpkg.mod", "-h"]) == run.Options("pkg.mod", ["-h"], module=True)
    assert run.parse_args(["--host=a,b=10.0.0.2,fd00::2", "--", "-odd.py"]) == run.Options(
        "-odd.py", [], hosts=[(["a", "b"], ["10.0.0.2", "fd00::2"])])


def test_version_prints_the_installed_version():
    result = subprocess.run([sys.executable, "-m", "posix_socket", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"posix-socket {posix_socket.__version__}\n"
    assert posix_socket.__version__ == importlib.metadata.version("posix-socket")


@pytest.mark.parametrize("args", [["--rounds", "0"], ["--rounds", "-2"], ["--rounds", "x"],
                                  ["--scale", "0"], ["--scale", "-1"], ["--scale", "nan"],
                                  ["--scale", "inf"], ["--scale", "x"],
                                  ["--rounds", "0", "--scale", "-1"]])
def test_bench_rejects_counts_that_would_print_nan_or_inf(args, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", *args])
    assert info.value.code == 2  # argparse's usage error
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: posix-socket bench")
    assert f"error: argument {args[0]}: " in err or f"error: argument {args[2]}: " in err


@pytest.mark.parametrize(("value", "why"), [
    ("db=0.0.0.0", "unspecified"), ("db=::", "unspecified"), ("db=224.0.0.1", "multicast"),
    ("db=ff02::1", "multicast"), ("db=255.255.255.255", "broadcast"),
    ("my db=10.0.0.2", "a name has no spaces"),
    ("db=10.0.0.2 cache=10.0.0.3", "one NAME=ADDRESS per --host"),
    ("db=10.0.0.2,cache=10.0.0.3", "one NAME=ADDRESS per --host"),
    ("db\t2=10.0.0.2", "a name has no spaces"), ("=10.0.0.2", "expected NAME=ADDRESS"),
    ("db=", "expected NAME=ADDRESS"), ("db=example.com", "not an IP address"),
])
def test_run_rejects_a_host_no_network_could_have(value, why, capsys):
    assert run.main(["--host", value, "prog.py"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(run.USAGE + "\nposix-socket run: error: argument --host: ")
    assert why in err


def test_run_usage_says_one_host_per_flag(capsys):
    assert "[--host NAME=ADDRESS]..." in run.USAGE
    assert run.main(["--help"]) == 0
    assert "One\n                 host per flag; repeat the flag" in capsys.readouterr().out
    assert run.parse_args(["--host", "a=10.0.0.2", "--host=b,c=10.0.0.3,fd00::3", "-c",
                           "pass", "x"]) == run.Options(
        "pass", ["x"], command=True,
        hosts=[(["a"], ["10.0.0.2"]), (["b", "c"], ["10.0.0.3", "fd00::3"])])


# -- run --seed / --net-config ------------------------------------------------------------

NET_PROBE = """\
import socket
import posix_socket as ps
net = ps.network()
db = net.find_host("db.test")
print(net.seed, db.addresses, db.names, socket.gethostbyname("db.test"))
print([(link.a.label, link.b.label, link.latency, link.loss) for link in net.links()])
with net.lock:
    path = net.path(net.first_host, net.first_host)
    print(path.conditions.latency, net.path(db, net.first_host).blocked)
"""
NET_CONFIG = {"seed": 7, "hosts": {"db.test": ["10.0.0.2", "fd00::2"]},
              "defaults": {"latency": 0.01},
              "links": [{"between": ["localhost", "db.test"], "latency": 0.05,
                         "loss": 0.01}],
              "partition": [["db.test"]]}


def run_command(args, cwd):
    """``posix-socket run`` of this checkout, in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "posix_socket", "run", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd,
                          env=checkout_environment())


def test_run_parses_the_seed_and_the_network_configuration():
    assert run.parse_args(["--seed", "5", "--net-config=n.json", "x.py", "--seed", "y"]) == (
        run.Options("x.py", ["--seed", "y"], seed=5, net_config="n.json"))
    assert run.parse_args(["--seed=-3", "-c", "pass"]) == run.Options(
        "pass", [], command=True, seed=-3)


@pytest.mark.parametrize(("args", "error"), [
    (["--seed", "x", "p.py"], "argument --seed: invalid int value: 'x'"),
    (["--seed"], "argument --seed: expected one argument"),
    (["--net-config"], "argument --net-config: expected one argument"),
    (["--net-config=", "p.py"], "argument --net-config: expected a file name"),
    (["--net", "host", "--seed", "1", "p.py"], "argument --seed: not allowed with --net host"),
    (["--seed", "1", "--net", "host", "p.py"], "argument --seed: not allowed with --net host"),
    (["--net", "host", "--net-config", "n.json", "p.py"],
     "argument --net-config: not allowed with --net host"),
])
def test_run_rejects_a_bad_seed_or_one_for_the_kernel(args, error, capsys):
    assert run.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(run.USAGE + "\nposix-socket run: error: ")
    assert error in err


@pytest.mark.parametrize(("config", "where"), [
    ('{"links": [{"between": ["a", "b"]}, {"between": ["a", "b"], "loss": 1.5}]}',
     "links[1].loss: loss must be a probability in 0..1, not 1.5"),
    ('{"links": [{"between": ["localhost", "db.test"]}]}',
     "links[0].between[1]: no host 'db.test'"),
    ('{"hosts": {"db.test": "10.0.0.2"}}',
     'hosts["db.test"]: 10.0.0.2 belongs to a host of the network already (db)'),
    ('{"defaults": {"latency": -1}}', "defaults.latency: latency must be >= 0 seconds"),
    ('{"seed": 1 2}', "line 1 column 12: malformed JSON"),  # 3.13 words ',}' its own way
    (None, "can't open file: [Errno 2] No such file or directory"),
])
def test_run_refuses_a_bad_network_configuration_before_the_program_runs(
        config, where, tmp_path, capsys):
    path = tmp_path / "net.json"
    if config is not None:
        path.write_text(config)
    program = tmp_path / "prog.py"
    program.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    before = posix_socket.registry.registered_families()
    assert run.main(["--host", "db=10.0.0.2", "--net-config", str(path), str(program)]) == 2
    err = capsys.readouterr().err
    assert err == (f"{run.USAGE}\nposix-socket run: error: argument --net-config: "
                   f"{path}: {where}" + err.partition(where)[2])
    assert err.endswith("\n") and err.count("\n") == 2
    assert not (tmp_path / "ran").exists()
    assert posix_socket.registry.registered_families() == before  # the preset is undone


def test_a_program_run_with_a_network_configuration_finds_it_through_network(tmp_path):
    (tmp_path / "net.json").write_text(json.dumps(NET_CONFIG))
    (tmp_path / "prog.py").write_text(NET_PROBE)
    result = run_command(["--net-config", "net.json", "prog.py"], tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == ("7 ('10.0.0.2', 'fd00::2') ['db.test'] 10.0.0.2\n"
                             "[('127.0.0.1', 'db.test', 0.05, 0.01)]\n"
                             "0.01 True\n")
    # --seed wins over the file's; --host hosts come first, so the file's links name them.
    (tmp_path / "net.json").write_text(json.dumps(
        {**NET_CONFIG, "hosts": {}, "links": [{"between": ["db", "localhost"], "loss": 0.5}]}))
    result = run_command(["--seed", "12", "--host", "db.test,db=10.0.0.2,fd00::2",
                          "--net-config", "net.json", "prog.py"], tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[:2] == [
        "12 ('10.0.0.2', 'fd00::2') ['db.test', 'db'] 10.0.0.2",
        "[('db.test', '127.0.0.1', 0.0, 0.5)]"]


def test_a_program_run_on_the_kernel_has_no_network_to_find(tmp_path):
    code = ("import posix_socket as ps\ntry:\n    ps.network()\n"
            "except LookupError as exc:\n    print('LookupError', exc)\n")
    result = run_command(["--net", "host", "-c", code], tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("LookupError AF_INET is served by")
    result = run_command(["--seed", "3", "-c", "import posix_socket as ps\n"
                          "print(ps.network().seed)"], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "3\n", "")


LEFT_OPEN = """
import socket
socket.socket().detach()  # a number the program leaves open: the kernel closes it at exit
a, b = socket.socketpair()
a.detach(), b.detach()
print("done")
"""


@pytest.mark.parametrize("net", [[], ["--net", "host"]], ids=["virtual", "host"])
def test_numbers_left_open_at_exit_are_closed_silently_as_by_the_kernel(net, tmp_path):
    """A detached number the program never closes: at exit the kernel closes it without
    a word; the layer's own object behind it must not warn "unclosed" either."""
    program = tmp_path / "left_open.py"
    program.write_text(LEFT_OPEN)
    warn = ["-W", "default"]
    kernel = subprocess.run([sys.executable, *warn, str(program)],
                            capture_output=True, text=True, timeout=60)
    layer = subprocess.run([sys.executable, *warn, "-m", "posix_socket", "run", *net,
                            str(program)], capture_output=True, text=True, timeout=60,
                           env=checkout_environment())
    assert (layer.returncode, layer.stdout, layer.stderr) == (
        kernel.returncode, kernel.stdout, kernel.stderr) == (0, "done\n", "")
