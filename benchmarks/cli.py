"""``python -m benchmarks``: options, running the selected benchmarks, printing and writing."""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from . import (
    error_latency,
    executors,
    fanin,
    machine,
    memory,
    peer_loss,
    report,
    scale,
    startup,
    tiny,
    transfer,
)
from .harness import ROOT, BenchError, Figure, Settings

#: In the order they run: the latency benchmarks first, before the transfers of up to 1 GiB,
#: after which the kernel reclaims memory for a while (error tails of 6-11 ms measured right
#: after them, 1.2-1.7 ms on their own).
MODULES: dict[str, ModuleType] = {
    m.NAME: m
    for m in (tiny, error_latency, startup, transfer, fanin, peer_loss, memory, scale, executors)
}
RUNNERS: dict[str, Callable[[Settings], list[Figure]]] = {
    name: module.run for name, module in MODULES.items()
}
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="silo's performance suite; each party is a separate process on loopback.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, few rounds, one run")
    parser.add_argument(
        "--only", default="", help=f"comma-separated benchmarks among {', '.join(MODULES)}"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 5)")
    parser.add_argument(
        "--loop", choices=("both", "uvloop", "asyncio"), default="both", help="event loops to run"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown page")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile parties into DIR")
    parser.add_argument("--note", default="", help="a line added to the page's method notes")
    return parser


def _selected(only: str) -> list[str]:
    names = [n.strip() for n in only.split(",") if n.strip()] or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    return names


def _method_notes(names: Sequence[str], settings: Settings) -> list[str]:
    notes = [
        f"{settings.runs} run(s) per figure; the median is shown with min and max"
        + ("" if settings.runs >= 5 or settings.smoke else " (fewer than the 5 the issue asks)")
        + (" (smoke mode: small sizes, few rounds)." if settings.smoke else "."),
        "Loops: `uvloop` and `asyncio` are the same programs run with "
        "`silo.loop.run(..., use_uvloop=True/False)` (and `SILO_UVLOOP=1/0`); "
        "the raw socket baseline uses blocking sockets, so it has no loop.",
        "Parties run `silo.init(..., logging_level='warning')`; ports are chosen by binding "
        "port 0; peak RSS is VmHWM from /proc/self/status of each party process.",
        f"Order: {', '.join(f'`{n}`' for n in names)}. The latency benchmarks run before the "
        "transfers of up to 1 GiB, after which the kernel reclaims memory for a while (error "
        "tails of 6-11 ms were measured right after them, 1.2-1.7 ms on their own).",
    ]
    for name in names:
        doc = (MODULES[name].__doc__ or "").strip().replace("``", "`")
        notes.append(f"`{name}`: " + " ".join(doc.split()))
    return notes


def _summary(failure: str) -> str:
    """First and last line of a failure (the last is the party's exception)."""
    lines = [line.strip() for line in failure.strip().splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} ... `{lines[-1]}`"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = _selected(args.only)
    runs = args.runs if args.runs is not None else (1 if args.smoke else 5)
    if runs < 1:
        raise SystemExit("--runs must be at least 1")
    loops = {"both": (True, False), "uvloop": (True,), "asyncio": (False,)}[args.loop]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    settings = Settings(runs=runs, smoke=args.smoke, loops=loops, profile_dir=args.profile)
    started = time.monotonic()
    load_before = machine.load_average()
    figures: list[Figure] = []
    failures: list[str] = []
    for name in names:
        t0 = time.monotonic()
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        try:
            figures += RUNNERS[name](settings)
        except (BenchError, OSError, ValueError, KeyError, AssertionError) as exc:
            failures.append(f"{name}: {exc}")
            print(f"[benchmarks] {name} FAILED: {exc}", file=sys.stderr, flush=True)
        else:
            print(f"[benchmarks] {name} done in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    elapsed = time.monotonic() - started
    print(report.text_table(figures))
    for failure in failures:
        print(f"FAILED {failure}")
    if not args.no_write:
        given = list(argv if argv is not None else sys.argv[1:])
        command = "python -m benchmarks " + shlex.join(given)
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        page = report.markdown(
            figures,
            machine={
                **machine.describe(),
                "load average (1/5/15 min) at start": load_before,
                "load average at end": machine.load_average(),
            },
            date=date,
            command=command.strip(),
            elapsed_s=elapsed,
            notes=[*_method_notes(names, settings), *filter(None, [args.note])],
            failures=[_summary(f) for f in failures],
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(page)
        print(f"wrote {args.output}", file=sys.stderr)
    print(f"[benchmarks] total {elapsed:.0f} s", file=sys.stderr)
    return 1 if failures else 0
