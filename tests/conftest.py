"""Shared test fixtures."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import tomli_w

REPO_ROOT = Path(__file__).resolve().parents[1]
VO2_DIR = REPO_ROOT.parent / "shared" / "data" / "real-decay" / "vo2"


@pytest.fixture
def quiet_card(tmp_path: Path) -> Path:
    """The shipped card without stuck devices (each backend would otherwise lose a few synapses)."""
    from device_models.card import DEFAULT_CARD

    data = tomllib.loads(DEFAULT_CARD.read_text())
    data["variability"].update(stuck_on_fraction=0.0, stuck_off_fraction=0.0)
    path = tmp_path / "card.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.fixture
def vo2_dir() -> Path:
    """Measured VO2 relaxation traces beside the project root; skipped where that data is absent."""
    if not VO2_DIR.is_dir():
        pytest.skip(f"real VO2 decay data not found at {VO2_DIR} (it lives beside the project root)")
    return VO2_DIR


class CliResult(NamedTuple):
    """What one in-process ``hwloop`` run left: its exit code and what it printed."""

    code: int
    out: str
    err: str


@pytest.fixture
def hwloop_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """Run ``hwloop ARGS`` in-process through ``hwloop.cli.main``; returns ``CliResult(code, out, err)``.

    The exit code is 0 when ``main`` returns, else that of its ``SystemExit``; out and err are everything
    printed since the previous run (or the start of the test).
    """

    from hwloop.cli import main  # here, not at the top: the other test files need not import the CLI

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["hwloop", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def hwloop_process() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m hwloop.cli ARGS`` in a real process (optional ``cwd``, ``timeout`` in s, default 300).

    Returns the ``CompletedProcess`` (text stdout / stderr) and asserts nothing: callers check returncode.
    """

    def run(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hwloop.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )

    return run
