"""``hwloop --help`` and ``hwloop <group> --help`` import no heavy module (not timed: the wall-clock
figure is benchmarks/bench_cli_startup.py), and the option defaults the command modules mirror to stay
light still equal their owners' values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    "torch",
    "numpy",
    "scipy",
    "h5py",
    "matplotlib",
    "aihwkit",
    "ray",
    "numba",
    "safetensors",
    "experiments",
    "calibration",
    "drivers",
)
HELPS = [[], ["art"], ["pong"], ["calibrate"], ["devices"], ["instruments"], ["view"]]

# Runs every --help in one fresh interpreter and reports, per command, the heavy modules it loaded.
PROBE = """
import json, sys
from hwloop.cli import main
heavy = {heavy!r}
report = {{}}
for args in {helps!r}:
    sys.argv = ["hwloop", *args, "--help"]
    try:
        main()
    except SystemExit:
        pass
    report[" ".join(["hwloop", *args, "--help"])] = sorted(
        m for m in sys.modules if m.split(".")[0] in heavy
    )
sys.stderr.write("REPORT" + json.dumps(report) + "\\n")
"""


def test_help_imports_no_heavy_module() -> None:
    code = PROBE.format(heavy=HEAVY, helps=HELPS)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("REPORT"))
    report = json.loads(line.removeprefix("REPORT"))
    assert len(report) == len(HELPS)
    assert "Commands" in proc.stdout  # the helps really printed
    loaded = {command: modules for command, modules in report.items() if modules}
    assert not loaded, f"--help imported heavy modules: {loaded}"


def test_mirrored_option_defaults_match_their_owners() -> None:
    from calibration.fit import MODELS
    from experiments.art import DEFAULT_CHECKPOINT
    from experiments.art.evaluate import TEST_SEED, TEST_SIZE
    from experiments.art.model import ARCHS
    from experiments.art.train import BATCH_SIZE, EPOCHS, TRAIN_SIZE
    from experiments.pong.env import STICKY
    from hwloop.commands import art, calibrate, pong

    assert art.ARCHS == ARCHS
    assert (art.BATCH_SIZE, art.EPOCHS, art.TRAIN_SIZE) == (BATCH_SIZE, EPOCHS, TRAIN_SIZE)
    assert (art.TEST_SEED, art.TEST_SIZE) == (TEST_SEED, TEST_SIZE)
    assert art.DEFAULT_CHECKPOINT.resolve() == Path(DEFAULT_CHECKPOINT).resolve()
    assert pong.STICKY == STICKY
    assert calibrate.MODELS == MODELS, (
        "update MODELS in hwloop/commands/calibrate.py (the --model help) to calibration.fit.MODELS"
    )
