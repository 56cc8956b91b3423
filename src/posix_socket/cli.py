"""The ``posix-socket`` command (also ``python -m posix_socket``)."""

from __future__ import annotations

import argparse
import math
import socket
import sys
from collections.abc import Sequence

from . import __version__, bench, registry
from . import run as runner

__all__ = ["main"]


def family_name(family: int) -> str:
    try:
        return socket.AddressFamily(family).name
    except ValueError:
        return "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines)


def families(_args: argparse.Namespace) -> int:
    drivers = registry.registered_families()
    sources = registry.family_sources()
    rows = [[str(family), family_name(family), drivers[family].name,
             sources.get(family, "-")] for family in sorted(drivers)]
    print(_table(["family", "name", "driver", "registered by"], rows))
    return 0


def _duration(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e3:.2f} ms"


def _bytes(amount: float) -> str:
    return f"{amount:.0f} B" if amount < 1024 else f"{amount / 1024:.2f} KiB"


def run_bench(args: argparse.Namespace) -> int:
    interactive = sys.stderr.isatty()

    def progress(message: str) -> None:
        # One updating line on a terminal; plain lines in logs.
        if interactive:
            print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)
        else:
            print(message, file=sys.stderr, flush=True)

    rows = bench.ROWS
    if args.only:
        rows = [row for row in rows if args.only.lower() in row.name.lower()]
        if not rows:
            print(f"no benchmark row matches {args.only!r}", file=sys.stderr)
            return 2
    results = list(bench.run(rows, rounds=args.rounds, scale=args.scale, progress=progress))
    if interactive:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    table = []
    for r in results:
        if r.unavailable is not None:
            table.append([r.row.name, "-", "-", "-", r.row.goal,
                          f"not measured: {r.unavailable}"])
            continue
        verdict = {True: "met", False: "MISSED", None: "-"}[r.met]
        amount = _bytes if r.row.kind == "bytes" else _duration
        table.append([r.row.name, f"{amount(r.layer)}/{r.row.unit}",
                      f"{amount(r.stdlib)}/{r.row.unit} {r.row.baseline}",
                      f"{r.ratio:.2f}x", r.row.goal, verdict])
    print(_table(["row", "layer", "compared with", "ratio", "goal", ""], table))
    return 0


def _rounds(text: str) -> int:
    """At least one round: with none there is no best time (the ratio would be nan)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _scale(text: str) -> float:
    """A positive, finite factor (0, a negative or nan would time nothing: inf or nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posix-socket",
        description="A POSIX socket layer with pluggable drivers per address family.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser(
        "families", help="list the registered address families and their drivers"
    ).set_defaults(handler=families)
    bench_parser = commands.add_parser(
        "bench", help="time the layer against the stdlib, same work, same run")
    bench_parser.add_argument("--rounds", type=_rounds, default=15,
                              help="interleaved rounds per row; the best counts (default 15)")
    bench_parser.add_argument("--scale", type=_scale, default=1.0,
                              help="multiply every row's iterations (e.g. 0.1 for a quick look)")
    bench_parser.add_argument("--only", metavar="TEXT", help="run rows whose name contains TEXT")
    bench_parser.set_defaults(handler=run_bench)
    # Listed for --help; its command line is parsed by run.main (see main below).
    commands.add_parser(
        "run", add_help=False, usage=runner.USAGE.removeprefix("usage: "),
        help="run a Python program (script.py or -m module) with every socket patched")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"]:
        # The program's arguments must reach it untouched, so run parses its own line.
        return runner.main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
