"""The reading example of docs/campaign-format.md runs as written on a campaign file and finds the data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from calibration.storage import CampaignFile

DOC = Path(__file__).resolve().parents[1] / "docs" / "campaign-format.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def read_with_the_doc(tmp_path: Path, n_blocks: int) -> tuple[dict[str, object], np.ndarray]:
    """Write a small campaign, run the doc's first ``n_blocks`` examples on it; (their scope, g written)."""
    path = tmp_path / "c.h5"
    t = 10.0 + np.arange(5) * 0.5  # controller timestamps, s
    g = np.array([[5.0, 4.0, 3.0, 2.5, 2.2], [9.0, 7.0, 6.0, 5.5, 5.2]]) * 1e-9
    with CampaignFile.create(path, config={}, shape=(2, 2), safety_limits={}) as store:
        columns = {"device": [3, 0], "condition": [0, 0], "cycle": [0, 0], "amplitude_v": [1.5, 1.5]}
        columns |= {"width_s": [1e-3] * 2, "n_pulses": [20, 20], "read_v": [0.2, 0.2], "every_s": [0.5] * 2}
        columns |= {"delay_s": [0.01] * 2, "pulse_energy_j": [1e-12] * 2, "baseline_g_siemens": [2e-9, 5e-9]}
        store.append("decay", columns, {"t_s": np.stack([t, t]), "g_siemens": g})
        store.flush()
    scope: dict[str, object] = {"path": path}
    for code in blocks()[:n_blocks]:
        exec(code, scope)  # the documentation's own example
    return scope, g


def test_the_documented_h5py_example_reads_a_campaign(tmp_path: Path) -> None:
    scope, g = read_with_the_doc(tmp_path, 1)
    np.testing.assert_array_equal(scope["trace"], g[1])  # device 0 is the second row written
    np.testing.assert_allclose(scope["t"][1], 0.01 + np.arange(5) * 0.5)  # s since the train


def test_the_documented_pandas_example_reads_a_campaign(tmp_path: Path) -> None:
    pytest.importorskip("pandas")  # not a dependency of hwloop
    scope, _ = read_with_the_doc(tmp_path, 2)
    assert list(scope["table"]["device"]) == [3, 0]
