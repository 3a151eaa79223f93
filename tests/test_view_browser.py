"""``hwloop view`` in a real browser (headless Chromium from Debian's packages, over the DevTools
protocol): the page follows a file that a background process is still writing, the numbers it states
match what was written (ground truth known to the writer, not read back through the viewer's code), and
new rows appear within a few seconds. Skips with the reason where Chromium or the libraries are absent.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from chromium_cdp import Chromium, chromium_path

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="chromium not installed (apt-get install chromium)"),
    pytest.mark.timeout(120),
]
pytest.importorskip("bokeh", reason="bokeh not installed (the live page of hwloop view)")
pytest.importorskip("websocket", reason="websocket-client not installed (drives Chromium in these tests)")

# A campaign of 8 x 8 devices, one row-unit (8 relaxations) every 0.5 s; device d decays with
# tau = 2 + 0.05 d seconds, so the median tau of the whole array is 2 + 0.05 * 31.5 = 3.575 s.
CAMPAIGN_WRITER = """
import sys, time
import numpy as np
from calibration.storage import CampaignFile
path, pause = sys.argv[1], float(sys.argv[2])
cfg = {"decay": {"amplitudes_v": [1.5], "widths_s": [0.001], "cycles": 1}, "rows": None, "cols": None}
f = CampaignFile.create(path, config=cfg, shape=(8, 8), safety_limits={})
t = np.arange(200) * 0.05
rng = np.random.default_rng(0)
for r in range(8):
    dev = np.arange(8) + 8 * r
    tau = 2.0 + 0.05 * dev
    g = 1e-8 + 1e-8 * np.exp(-t[None, :] / tau[:, None]) + rng.normal(0, 1e-12, (8, t.size))
    cols = {"device": dev, "condition": np.zeros(8), "cycle": np.zeros(8), "amplitude_v": np.full(8, 1.5),
            "width_s": np.full(8, 1e-3), "n_pulses": np.full(8, 20), "read_v": np.full(8, 0.2),
            "every_s": np.full(8, 0.05), "delay_s": np.zeros(8), "pulse_energy_j": np.full(8, 1e-12),
            "baseline_g_siemens": np.full(8, 1e-8)}
    f.append("decay", cols, {"t_s": np.broadcast_to(t, (8, t.size)), "g_siemens": g})
    f.flush()
    print(r, flush=True)
    time.sleep(pause)
f.close()
"""

# A lab step log in the lab backend's format: 8 x 8 block, 10 steps/s for 80 steps, two games of 40
# steps (the model F is NaN at a game's first step, as the lab backend logs it); synapse (0, 0) is
# digital (left out of the fidelity). Step k sends (k % 5) row pulses, drops (k % 3) writes, and
# refreshes one row on every 10th step; step 40 ends 1 ms late.
LAB_WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from hwloop.backends.lab_log import LabLog
path, pause = Path(sys.argv[1]), float(sys.argv[2])
digital = np.zeros((8, 8), bool)
digital[0, 0] = True
log = LabLog(path, rows=8, cols=8, device_cols=16, pulses_per_row=2,
             attrs={"resource": "test://8x16", "digital_synapses": digital})
rng = np.random.default_rng(1)
for k in range(80):
    fm = rng.normal(0, 0.4, (8, 8))
    fo = 0.1 * fm + rng.normal(0, 0.02, (8, 8))
    fm[0, 0] = 50.0  # the digital synapse: would dominate the correlation if it were counted
    if k % 40 == 0:
        fo[:] = np.nan
    widths = np.zeros((2, 8))
    widths.ravel()[: k % 5] = 1e-4
    refreshed = np.zeros(8, np.int8)
    refreshed[0] = k % 10 == 0
    log.append_step(step=k, episode=k // 40, t_start_s=k / 15, t_end_s=k / 15 + 0.03,
                    lateness_s=0.001 * (k == 40), wall_s=time.time(), t_read_s=np.zeros(8),
                    current_a=np.zeros((8, 16)), z=np.zeros(8), h=np.zeros(8), f_measured=fm, f_target=fm,
                    f_model=fo, f_diff=fm - fo, row_scale=np.ones(8), row_norm=np.ones(8),
                    refreshed=refreshed, dropped=k % 3, pulse_width_s=widths,
                    pulse_amplitude_v=np.zeros((2, 8, 16)))
    time.sleep(pause)
log.close()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.fixture
def viewer() -> Iterator[object]:
    """Starts ``hwloop view FILE`` on a free port; yields a function returning the page URL."""
    procs: list[subprocess.Popen[str]] = []

    def start(path: Path) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hwloop.cli", "view", str(path), "--period-ms", "300"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "hwloop view: following FILE at URL ..."
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, f"no URL printed: {line!r}"
        return match.group(1)

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def _writer(script: str, path: Path, pause_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(path), str(pause_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _wait_file(path: Path, proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    if "campaign" in path.name:
        proc.stdout.readline()  # the first unit is committed
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, "the writer never created its file"
        time.sleep(0.1)
    time.sleep(0.3)


def _number(text: str, key: str) -> str:
    match = re.search(re.escape(key) + r" (\S+)", text)
    assert match, f"{key!r} not on the page: {text[:400]!r}"
    return match.group(1)


def test_campaign_page_follows_a_campaign_being_written(tmp_path: Path, viewer) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "campaign.h5"
    writer = _writer(CAMPAIGN_WRITER, path, 1.0)
    try:
        _wait_file(path, writer)
        url = viewer(path)
        with Chromium() as browser:
            browser.navigate(url)
            text = browser.wait_for(lambda t: "decay units" in t, 20)
            first = int(_number(text, "decay units"))
            assert 8 <= first < 64, text[:300]
            # New rows appear within a few seconds (one row-unit per second is written).
            browser.wait_for(lambda t: int(_number(t, "decay units")) > first, 6)
            assert writer.wait(timeout=30) == 0, writer.stderr.read() if writer.stderr else ""
            text = browser.wait_for(lambda t: "64 of 64" in t, 10)
            with h5py.File(path, "r") as f:
                assert int(f["decay"].attrs["rows"]) == 64
            assert float(_number(text, "median tau (s)")) == pytest.approx(3.575, rel=0.01)
            assert _number(text, "relaxations fitted ok") == "64"
            assert "ok 64" in text
            expected_lam = float(np.median(np.exp(-0.1 / (2.0 + 0.05 * np.arange(64)))))
            assert float(_number(text, "median lambda")) == pytest.approx(expected_lam, abs=2e-4)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)


def test_lab_page_follows_a_game_log_being_written(tmp_path: Path, viewer) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "game.h5"
    writer = _writer(LAB_WRITER, path, 0.25)  # 20 s of writing: Chromium opens on a loaded machine too
    try:
        _wait_file(path, writer)
        url = viewer(path)
        with Chromium() as browser:
            browser.navigate(url)
            text = browser.wait_for(lambda t: "steps" in t and "pulses sent" in t, 20)
            first = int(_number(text, "steps"))
            assert first < 80, "the writer finished before the page opened: slow machine"
            browser.wait_for(lambda t: int(_number(t, "steps")) > first, 5)
            assert writer.wait(timeout=40) == 0, writer.stderr.read() if writer.stderr else ""
            text = browser.wait_for(lambda t: _number(t, "steps") == "80", 10)
            # Ground truth from the writer: step k sent k % 5 row pulses and dropped k % 3 writes; one
            # step 1 ms late; a row refreshed every 10th step; two games.
            assert int(_number(text, "pulses sent")) == sum(k % 5 for k in range(80))
            assert int(_number(text, "dropped writes")) == sum(k % 3 for k in range(80))
            assert int(_number(text, "row refreshes")) == 8
            assert _number(text, "games") == "2"
            assert _number(text, "overruns") == "1"
            assert float(_number(text, "worst lateness (ms)")) == pytest.approx(1.0)
            # Fidelity against numpy's Pearson r over every analog pair of every step with a model F.
            with h5py.File(path, "r") as f:
                run = f["runs/0000"]
                fm, fo = run["f_measured"][:], run["f_model"][:]
            analog = np.ones((80, 8, 8), bool)
            analog[:, 0, 0] = False
            pairs = analog & np.isfinite(fo)
            assert int(_number(text, "fidelity synapse-steps")) == pairs.sum() == 78 * 63
            assert float(_number(text, "fidelity correlation r")) == pytest.approx(
                np.corrcoef(fm[pairs], fo[pairs])[0, 1], abs=1e-4
            )
            rms_ratio = np.sqrt(np.mean(fm[pairs] ** 2)) / np.sqrt(np.mean(fo[pairs] ** 2))
            assert float(_number(text, "fidelity RMS ratio")) == pytest.approx(rms_ratio, abs=1e-4)
            last = analog[-1]
            assert float(_number(text, "latest correlation r")) == pytest.approx(
                np.corrcoef(fm[-1][last], fo[-1][last])[0, 1], abs=1e-4
            )
            assert "no score dataset" in text
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)
