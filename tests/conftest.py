"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VO2_DIR = REPO_ROOT.parent / "shared" / "data" / "real-decay" / "vo2"


@pytest.fixture
def vo2_dir() -> Path:
    """Measured VO2 relaxation traces beside the project root; skipped where that data is absent."""
    if not VO2_DIR.is_dir():
        pytest.skip(f"real VO2 decay data not found at {VO2_DIR} (it lives beside the project root)")
    return VO2_DIR
