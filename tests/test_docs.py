"""The documentation site builds strictly and its CLI reference lists every command of ``hwloop.cli``."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")


def test_site_builds_strictly_with_every_command(tmp_path: Path) -> None:
    mkdocs = str(MKDOCS) if MKDOCS.exists() else shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]' installs mkdocs-material)")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    run = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(site)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    page = html.unescape((site / "reference" / "cli" / "index.html").read_text())
    sys.path.insert(0, str(REPO_ROOT / "docs" / "hooks"))
    try:
        import cli_reference
    finally:
        sys.path.pop(0)
    paths = [" ".join(["hwloop", *p]) for p in cli_reference.command_paths()]
    assert len(paths) > 10
    missing = [p for p in paths if f"Usage: {p} " not in page]
    assert not missing, f"commands missing from the CLI reference: {missing}"
