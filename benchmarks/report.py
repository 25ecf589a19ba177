"""The table on the terminal and the Markdown page (docs/benchmarks.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .harness import Figure

HEADERS = ("bench", "case", "loop", "median", "min", "max", "unit", "same-run baseline", "target")

ANALYSIS = Path(__file__).with_name("analysis.md")


def number(value: float) -> str:
    if math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def verdict(fig: Figure) -> str:
    if fig.met is None:
        return fig.target
    return f"{fig.target}: {'MET' if fig.met else 'NOT MET'}"


def rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    return [
        (
            f.bench,
            f.case,
            f.loop,
            number(f.median),
            number(f.low),
            number(f.high),
            f.unit,
            "; ".join(filter(None, [f.baseline, f.note])),
            verdict(f),
        )
        for f in figures
    ]


def text_table(figures: Sequence[Figure]) -> str:
    table = [HEADERS, *rows(figures)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(figures: Sequence[Figure]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(HEADERS), line(["---"] * len(HEADERS))]
    out += [line(r) for r in rows(figures)]
    return "\n".join(out)


def markdown(
    figures: Sequence[Figure],
    *,
    machine: dict[str, str],
    date: str,
    command: str,
    elapsed_s: float,
    notes: Sequence[str],
    failures: Sequence[str],
) -> str:
    targets = [f for f in figures if f.met is not None]
    parts = [
        "# Benchmarks",
        "",
        f"Measured {date} by `{command}` in {elapsed_s:.0f} s. Every party is a separate OS "
        "process on 127.0.0.1. silo's figures and their baselines (a raw loopback socket, a raw "
        "aiohttp websocket) were measured in this same run, on the machine described at the end. "
        "RayFed is not installable here: its figures are quoted from measurements with RayFed "
        'on a 2-core machine elsewhere, and marked "measured elsewhere"; they were not taken '
        "in this run.",
        "",
        "## Targets",
        "",
    ]
    parts += [
        f"- **{'met' if f.met else 'NOT met'}**: {f.bench} / {f.case} ({f.loop}): "
        f"{number(f.median)} {f.unit} (min {number(f.low)}, max {number(f.high)}); "
        f"target {f.target}"
        for f in targets
    ] or ["- no target was measured in this run"]
    parts += ["", "## Figures", "", "Median of the runs, with min and max.", ""]
    parts += [markdown_table(figures), ""]
    if failures:
        parts += ["## Failures", ""]
        parts += [f"- {failure}" for failure in failures]
        parts += [""]
    parts += [ANALYSIS.read_text().rstrip(), ""]
    parts += ["## Method", ""]
    parts += [f"- {note}" for note in notes]
    parts += ["", "## Machine", ""]
    parts += [f"- {key}: {value}" for key, value in machine.items()]
    parts += [
        "",
        "## How to rerun",
        "",
        "```sh",
        "python -m benchmarks                      # full suite, writes this page",
        "python -m benchmarks --only tiny,error    # some benchmarks (names in the first column)",
        "python -m benchmarks --smoke --no-write   # quick check (small sizes, one run)",
        "python -m benchmarks --only tiny --profile /tmp/prof   # cProfile each party",
        "```",
        "",
        "Options: `--runs N` (default 5), `--loop uvloop|asyncio|both`, `--output PATH`.",
        "",
    ]
    return "\n".join(parts)
