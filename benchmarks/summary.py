"""Collect every benchmark's headline figures into one JSON summary and one markdown table.

Reads every ``benchmarks/results/*.json`` that has a top-level ``"headline"`` list (see
benchmarks/README.md for the convention), checks each figure against its goal, and writes
``benchmarks/results/summary.json`` and ``benchmarks/results/summary.md`` (every figure, also into
docs/benchmarks.md between ``docs-bench:start`` / ``docs-bench:end``), and README's
benchmark block (between ``<!-- bench:start -->`` and ``<!-- bench:end -->``, at its end): the default
configuration's figures, the headline.
A goal is accepted only on a figure marked ``"default_configuration": true`` (it measures what users
get by default); a goal on any other figure is refused with an error, so a goal cannot land on a
subset of the defaults. With ``--since UNIX_TIME`` (``make bench`` passes its start time), a result
file older than that is
marked stale: it was not re-measured in this run, so its figures are not side by side with the others.

    python benchmarks/summary.py [--since 1764460000]
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"
DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"
DOCS_START, DOCS_END = "<!-- docs-bench:start -->", "<!-- docs-bench:end -->"
SKIP = {"summary.json"}
_GOAL = re.compile(r"^\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def goal_met(value: float, goal: str | None) -> bool | None:
    """Whether ``value`` meets ``goal`` (">= 50", "< 10", ...); None without a goal."""
    if goal is None:
        return None
    match = _GOAL.match(goal)
    if match is None:
        raise ValueError(f"goal {goal!r}: expected a comparison like '>= 50' or '< 10'")
    return bool(_OPS[match.group(1)](value, float(match.group(2))))


def collect(since: float | None = None) -> list[dict[str, Any]]:
    """Every headline figure of every results file, with its benchmark, goal verdict and freshness."""
    rows: list[dict[str, Any]] = []
    for path in sorted(RESULTS.glob("*.json")):
        if path.name in SKIP:
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}: not valid JSON ({exc})") from None
        headline = data.get("headline") if isinstance(data, dict) else None
        if not isinstance(headline, list):
            continue
        measured = path.stat().st_mtime
        for item in headline:
            missing = {"name", "value", "unit", "goal"} - set(item)
            if missing:
                raise SystemExit(f"{path}: headline entry {item} lacks {sorted(missing)}")
            if item["goal"] is not None and item.get("default_configuration") is not True:
                raise SystemExit(
                    f"{path}: goal {item['goal']!r} on {item['name']!r}, a figure not marked "
                    '"default_configuration": true; goals are for the default configuration only'
                )
            rows.append(
                {
                    "benchmark": path.stem,
                    "name": item["name"],
                    "value": item["value"],
                    "unit": item["unit"],
                    "goal": item["goal"],
                    "default_configuration": item.get("default_configuration") is True,
                    "met": goal_met(float(item["value"]), item["goal"]),
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(measured)),
                    "stale": since is not None and measured < since,
                }
            )
    return rows


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 1e5:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value:.3g}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README table: benchmark, figure, value with unit, goal, verdict; the default configuration's
    figures (the ones with goals) first."""
    lines = ["| benchmark | figure | value | goal | met |", "| --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: not r.get("default_configuration")):  # the defaults first
        verdict = {True: "yes", False: "**no**", None: ""}[r["met"]]
        stale = " (stale: not re-run)" if r["stale"] else ""
        unit = r["unit"] if r["unit"] != "x" else "x"
        value = f"{_fmt(float(r['value']))} {unit}".replace(" x", "x")
        goal = f"{r['goal']} {unit}".replace(" x", "x") if r["goal"] else ""
        lines.append(f"| {r['benchmark']}{stale} | {r['name']} | {value} | {goal} | {verdict} |")
    return "\n".join(lines) + "\n"


def readme_block(rows: list[dict[str, Any]], header: str) -> str:
    """README's benchmark block: the default configuration's figures (the ones with goals) as the
    headline table, between the ``bench:start`` / ``bench:end`` markers."""
    defaults = [r for r in rows if r.get("default_configuration")]
    return (
        f"{BENCH_START}\n{header}\n## Benchmarks (default configuration)\n\n"
        "What users get by default, measured by `make bench` (one thread); every figure, subsets "
        "included: [benchmarks/results/summary.md](benchmarks/results/summary.md).\n\n"
        f"{markdown(defaults)}{BENCH_END}\n"
    )


def write_readme_block(readme: Path, block: str, markers: tuple[str, str] = (BENCH_START, BENCH_END)) -> None:
    """Replace the file's text from the start marker to the end marker with ``block`` (appended at the
    end if the markers are missing); the rest of the file is left as it is."""
    text = readme.read_text()
    start, end = text.find(markers[0]), text.find(markers[1])
    if start >= 0 and end > start:
        after = text[end + len(markers[1]) :]
        text = text[:start] + block + after.removeprefix("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    readme.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", type=float, default=None, help="unix time the benchmark run started")
    args = parser.parse_args()
    rows = collect(args.since)
    summary = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "load_average_at_summary": list(os.getloadavg()),
        },
        "run_started_at": None
        if args.since is None
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.since)),
        "figures": rows,
        "goals_missed": [r["name"] for r in rows if r["met"] is False],
        "stale": sorted({r["benchmark"] for r in rows if r["stale"]}),
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown(rows)
    header = (
        f"<!-- generated by benchmarks/summary.py ({summary['generated_at']}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}); do not edit: run `make bench` -->\n"
    )
    (RESULTS / "summary.md").write_text(header + table)
    write_readme_block(README, readme_block(rows, header.rstrip("\n")))
    write_readme_block(DOCS_PAGE, f"{DOCS_START}\n{header}\n{table}{DOCS_END}\n", (DOCS_START, DOCS_END))
    print(table, end="")
    print(
        f"wrote {RESULTS / 'summary.json'}, {RESULTS / 'summary.md'}"
        f" and the benchmark blocks of {README} and {DOCS_PAGE}"
    )
    if summary["stale"]:
        print(f"stale (not re-run in this run): {', '.join(summary['stale'])}")


if __name__ == "__main__":
    main()
