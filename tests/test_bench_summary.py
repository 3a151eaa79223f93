"""benchmarks/summary.py: a goal only on a figure marked as the default configuration."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SUMMARY = Path(__file__).resolve().parents[1] / "benchmarks" / "summary.py"


def _summary(results: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_summary", SUMMARY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.RESULTS = results
    return module


def _write(results: Path, *entries: dict[str, object]) -> None:
    (results / "x.json").write_text(json.dumps({"headline": list(entries)}))


def test_a_goal_on_a_figure_not_marked_default_is_refused(tmp_path: Path) -> None:
    summary = _summary(tmp_path)
    subset = {"name": "subset vs ideal", "value": 1.2, "unit": "x", "goal": "<= 1.5"}
    for mark in ({}, {"default_configuration": False}):
        _write(tmp_path, {**subset, **mark})
        with pytest.raises(SystemExit, match="not marked"):
            summary.collect()


def test_default_figures_keep_their_goal_and_come_first(tmp_path: Path) -> None:
    summary = _summary(tmp_path)
    _write(
        tmp_path,
        {"name": "subset", "value": 1.2, "unit": "x", "goal": None},
        {"name": "default", "value": 1.7, "unit": "x", "goal": "<= 1.5", "default_configuration": True},
    )
    rows = summary.collect()
    assert [r["met"] for r in rows] == [None, False]
    table = summary.markdown(rows).splitlines()
    assert "default" in table[2] and "**no**" in table[2]  # first row after the header
    assert "subset" in table[3]


def test_the_readme_block_holds_the_default_figures_and_leaves_the_rest(tmp_path: Path) -> None:
    """Written between the markers (appended when absent, replaced when present); subsets are left out."""
    summary = _summary(tmp_path)
    _write(
        tmp_path,
        {"name": "subset vs ideal", "value": 1.1, "unit": "x", "goal": None},
        {
            "name": "default vs ideal",
            "value": 1.4,
            "unit": "x",
            "goal": "<= 1.5",
            "default_configuration": True,
        },
    )
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\ntext\n")
    rows = summary.collect()
    summary.write_readme_block(readme, summary.readme_block(rows, "<!-- gen -->"))
    first = readme.read_text()
    assert first.startswith("# title\n\ntext\n\n<!-- bench:start -->\n<!-- gen -->\n")
    assert first.endswith("<!-- bench:end -->\n")
    assert "| x | default vs ideal | 1.4x | <= 1.5x | yes |" in first and "subset vs ideal" not in first
    readme.write_text(first + "\nlater text\n")
    summary.write_readme_block(readme, summary.readme_block(rows, "<!-- gen 2 -->"))
    second = readme.read_text()
    assert (
        second.count("<!-- bench:start -->") == 1
        and "<!-- gen 2 -->" in second
        and "<!-- gen -->" not in second
    )
    assert second.startswith("# title\n\ntext\n\n") and second.endswith("<!-- bench:end -->\n\nlater text\n")
