"""The virtual network's imperfect paths against Linux's, scenario by scenario.

Each scenario of ``imperfect_scenarios`` runs twice, in child processes started all at
once: on the kernel, inside a fresh network namespace where nftables drops packets and
the namespace's sysctls shorten the TCP timers (``kernel_netns``), and on a fresh virtual
network (``ps.use("virtual")``) given the same conditions through its public API.
The logs must be equal call by call (results, errno names, poll masks, SO_ERROR), and
each call must take as long as on the kernel within 15 % of the kernel's time plus
0.3 s (``RELATIVE``, ``ABSOLUTE``): that absorbs scheduling noise, and catches a timer
step missing or added from about 0.5 s up (a SYN retry, a keepalive probe, the third
RTO and later), not a single 0.2 s RTO early on.  On a loaded machine a call now and
then stalls for a third of a second on either side, so a scenario whose logs agree but
whose times do not is run again, alone, once; it fails if the second run disagrees too.

The 1 MB transfer over a lossy link is compared only for integrity and roughly in time.
Its time under random loss varies from run to run on both sides: 30 kernel runs here
took 0.07-2.7 s (median 0.8 s), 30 virtual runs with the same seed 0.28-1.7 s (median
1.0 s; ACK timing moves the draws).  So the kernel transfers it ``LOSSY_KERNEL_RUNS``
times in parallel and the virtual transfer must take between a quarter of the fastest
(much faster than that, nothing was lost) and ``3 x the slowest + 2 s``.
"""

from __future__ import annotations

import json
import os

import imperfect_scenarios
import kernel_netns
import pytest
from imperfect_scenarios import HOSTS, SCENARIOS
from scenarios import first_difference

RELATIVE, ABSOLUTE = 0.15, 0.3
LOSSY = "lossy_link_delivers_a_megabyte_intact"
LOSSY_FACTOR, LOSSY_SLACK, LOSSY_AT_LEAST, LOSSY_KERNEL_RUNS = 3.0, 2.0, 0.25, 3

# What the virtual network does not do yet, scenario by scenario (strict: one that
# starts passing must leave the list).  To see those failures:
# pytest --runxfail tests/test_imperfect_oracle.py
VIRTUAL_LACKS: dict[str, str] = {}


class Runs:
    """Every timed scenario's two runs, all started together (one forking child per
    side) at the first test that needs one; the lossy transfer's runs after those, so
    that its time is not the time of a machine busy with 50 other runs."""

    def __init__(self) -> None:
        self.unavailable = kernel_netns.missing()
        self.timed: dict[str, kernel_netns.Child] = {}
        self.lossy: dict[str, kernel_netns.Child] = {}
        self._start(self.timed, [(name,) for name in TIMED], kernel_repeats=1)

    def _start(self, into: dict, calls: list[tuple], kernel_repeats: int) -> None:
        if self.unavailable is None:
            into["kernel"] = kernel_netns.start_many(
                "imperfect_scenarios:on_kernel", calls * kernel_repeats, addresses=HOSTS)
        into["virtual"] = kernel_netns.start_many(
            "imperfect_scenarios:on_virtual", calls, netns=False)

    def result(self, side: str, name: str) -> dict:
        return self.timed[side].result(TIMED.index(name), timeout=90)

    def again(self, name: str) -> tuple[dict, dict]:
        """Run ``name`` once more on both sides, now (the batch is over by then)."""
        again: dict[str, kernel_netns.Child] = {}
        self._start(again, [(name,)], kernel_repeats=1)
        try:
            return again["kernel"].result(timeout=90), again["virtual"].result(timeout=90)
        finally:
            for child in again.values():
                child.kill()

    def lossy_results(self) -> tuple[list[dict], dict]:
        """LOSSY_KERNEL_RUNS kernel runs and one virtual run of the lossy transfer."""
        if not self.lossy:
            for child in self.timed.values():
                child.results(timeout=90)
            self._start(self.lossy, [(LOSSY,)], kernel_repeats=LOSSY_KERNEL_RUNS)
        kernel = [self.lossy["kernel"].result(index, timeout=90)
                  for index in range(LOSSY_KERNEL_RUNS)]
        return kernel, self.lossy["virtual"].result(timeout=90)

    def close(self) -> None:
        for child in [*self.timed.values(), *self.lossy.values()]:
            child.kill()


@pytest.fixture(scope="module")
def runs():
    started = Runs()
    yield started
    started.close()


def _both(runs: Runs, name: str) -> tuple[dict, dict]:
    if runs.unavailable:
        pytest.fail(f"cannot run the kernel half: {runs.unavailable}")
    return runs.result("kernel", name), runs.result("virtual", name)


def _slower_calls(kernel: dict, virtual: dict) -> list[str]:
    """The calls whose virtual time is off the kernel's by more than the tolerance."""
    off = []
    for index, (entry, want, got) in enumerate(zip(kernel["log"], kernel["times"],
                                                   virtual["times"], strict=True)):
        if abs(got - want) > RELATIVE * want + ABSOLUTE:
            off.append(f"call {index} {entry[0]}: kernel {want:.3f} s, virtual {got:.3f} s")
    return off


def _report(kernel: dict, virtual: dict) -> str:
    """Both logs with each call's time, for the failure message."""
    lines = [""]
    for side, run in (("kernel", kernel), ("virtual", virtual)):
        lines.append(f"{side}:")
        lines += [f"  {seconds:7.3f}  {json.dumps(entry)}"
                  for entry, seconds in zip(run["log"], run["times"], strict=True)]
    return "\n".join(lines)


def _params(names: list[str]) -> list:
    return [pytest.param(name, id=name, marks=(
        [pytest.mark.xfail(strict=True, reason=VIRTUAL_LACKS[name])]
        if name in VIRTUAL_LACKS else [])) for name in names]


TIMED = [name for name in SCENARIOS if name != LOSSY]


@pytest.mark.parametrize("name", _params(TIMED))
def test_virtual_network_gives_the_kernels_calls_and_times(runs: Runs, name: str) -> None:
    kernel, virtual = _both(runs, name)
    difference = first_difference(kernel["log"], virtual["log"])
    assert difference is None, difference + _report(kernel, virtual)
    off = _slower_calls(kernel, virtual)
    if off:
        for child in runs.timed.values():
            child.results(timeout=90)  # the batch over: run again on a quieter machine
        kernel_again, virtual_again = runs.again(name)
        again = _slower_calls(kernel_again, virtual_again)
        difference = first_difference(kernel_again["log"], virtual_again["log"])
        assert difference is None and not again, (
            "; ".join(off) + _report(kernel, virtual) + "\nand again: " +
            ("; ".join(again) if difference is None else difference) +
            _report(kernel_again, virtual_again))


@pytest.mark.parametrize("name", _params([LOSSY]))
def test_lossy_link_delivers_everything_in_about_the_kernels_time(runs: Runs,
                                                                   name: str) -> None:
    if runs.unavailable:
        pytest.fail(f"cannot run the kernel half: {runs.unavailable}")
    kernels, virtual = runs.lossy_results()
    kernel = kernels[0]
    assert kernel["log"][-3:-2] == [["note", ["intact, in order", True]]], _report(kernel,
                                                                                   virtual)
    difference = first_difference(kernel["log"], virtual["log"])
    assert difference is None, difference + _report(kernel, virtual)
    kernel_times = [run["transfer_seconds"] for run in kernels]
    shortest = LOSSY_AT_LEAST * min(kernel_times)
    longest = LOSSY_FACTOR * max(kernel_times) + LOSSY_SLACK
    assert shortest <= virtual["transfer_seconds"] <= longest, (
        f"virtual transfer {virtual['transfer_seconds']} s, kernel {kernel_times} s "
        f"(allowed {shortest:.2f}-{longest:.2f} s)")


# -- the harness itself -------------------------------------------------------------------

def _namespace_probe(namespace: kernel_netns.Namespace) -> dict:
    namespace.sysctl("tcp_syn_retries", 1)
    handle = namespace.add("ip daddr 10.0.0.2 tcp dport 9 drop")
    listed = namespace.nft("list ruleset")
    namespace.delete(handle)
    return {"syn_retries": namespace.read_sysctl("tcp_syn_retries"),
            "rule_listed": "tcp dport 9 drop" in listed,
            "rule_deleted": "tcp dport 9" not in namespace.nft("list ruleset")}


def test_namespace_changes_stay_in_the_namespace() -> None:
    reason = kernel_netns.missing()
    if reason:
        pytest.fail(reason)
    with open("/proc/sys/net/ipv4/tcp_syn_retries") as file:
        before = file.read()
    seen = kernel_netns.run(f"{__name__}:_namespace_probe", addresses=HOSTS, timeout=30)
    assert seen == {"syn_retries": "1", "rule_listed": True, "rule_deleted": True}
    with open("/proc/sys/net/ipv4/tcp_syn_retries") as file:
        assert file.read() == before
    if os.geteuid() == 0:
        assert "oracle" not in kernel_netns.Namespace.nft("list tables")


def test_every_scenario_is_compared() -> None:
    assert set(TIMED) | {LOSSY} == set(SCENARIOS)
    assert imperfect_scenarios.SCENARIOS is SCENARIOS
