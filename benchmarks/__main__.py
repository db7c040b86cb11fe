"""``python -m benchmarks``: run every system, print the table, save JSON and a PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import report
from .run import PHASES, Options
from .suite import collect
from .systems import select

__all__ = ["main"]


def _options(args: argparse.Namespace) -> Options:
    quick = args.quick
    return Options(
        n=args.n if args.n is not None else (1000 if quick else 5000),
        probes=args.probes if args.probes is not None else (50 if quick else 200),
        idle_s=args.idle_seconds if args.idle_seconds is not None else (3.0 if quick else 10.0),
        settle_s=0.5 if quick else 1.0,
        phases=tuple(args.phases.split(",")) if args.phases else PHASES,
        keep=args.keep,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure litetasks, django-tasks-db and huey on this machine, side by side.",
    )
    parser.add_argument("--n", type=int, help="Tasks per throughput test (default 5000).")
    parser.add_argument("--json", type=Path, help="Write the full results here.")
    parser.add_argument("--png", type=Path, help="Draw a bar chart here (needs matplotlib).")
    parser.add_argument(
        "--only",
        help="Comma-separated families (litetasks, dtdb, huey) or systems "
        "(litetasks-full, dtdb-wal, huey-normal, ...).",
    )
    parser.add_argument("--quick", action="store_true", help="N=1000, 50 probes, 3 s idle.")
    parser.add_argument("--idle-seconds", type=float, help="Idle CPU window (default 10).")
    parser.add_argument("--probes", type=int, help="Latency probes (default 200).")
    parser.add_argument("--phases", help=f"Comma-separated subset of {','.join(PHASES)}.")
    parser.add_argument(
        "--repeat", type=int, default=1, help="Rounds over all systems; medians are shown."
    )
    parser.add_argument("--keep", action="store_true", help="Keep each system's temp folder.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line; return the exit code."""
    args = _parser().parse_args(argv)
    options = _options(args)
    unknown = set(options.phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"Unknown phase(s): {', '.join(sorted(unknown))}. Choose from {PHASES}.")
    results = collect(select(args.only), options, repeat=args.repeat)
    report.print_table(results)
    if args.json:
        report.write_json(results, args.json)
    if args.png and not report.write_png(results, args.png):
        print("matplotlib is not installed: no PNG (pip install -e '.[bench]').", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
