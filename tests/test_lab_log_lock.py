"""One writer per step log: a second run pointed at a log a live process is writing is refused naming
that run; a log left by a killed process keeps its "crashed" message (readable, h5clear to append).

The first writer is a real second process (the lock must hold across processes, not just objects)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from hwloop.backends.lab_log import LabLog
from hwloop.errors import HwloopError

WRITER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from hwloop.backends.lab_log import LabLog\n"
    "log = LabLog(Path(sys.argv[1]), rows=1, cols=1, device_cols=2, pulses_per_row=1, attrs={})\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "log.close()\n"
    "print('closed', flush=True)\n"
)


def _open(path: Path) -> LabLog:
    return LabLog(path, rows=1, cols=1, device_cols=2, pulses_per_row=1, attrs={})


def _writer(tmp_path: Path, log: Path) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(log)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_log_a_live_run_is_writing_is_refused_naming_that_run(tmp_path: Path) -> None:
    log = tmp_path / "lab.h5"
    proc = _writer(tmp_path, log)
    try:
        with pytest.raises(
            HwloopError, match=rf"being written by another run that is still going \(pid {proc.pid} "
        ):
            _open(log)
        with pytest.raises(HwloopError) as info:
            _open(log)
        assert "crashed" not in str(info.value)
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        proc.wait(timeout=30)
    second = _open(log)  # the first run ended: the log takes the next run
    assert second.run_name == "0001"
    second.close()


def test_a_log_left_by_a_killed_run_keeps_the_crashed_message(tmp_path: Path) -> None:
    log = tmp_path / "lab.h5"
    proc = _writer(tmp_path, log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with h5py.File(log, "r", swmr=True) as f:
        assert "0000" in f["runs"]
    with pytest.raises(HwloopError, match="was left open by a run that crashed"):
        _open(log)
    with pytest.raises(HwloopError, match="was left open by a run that crashed"):
        _open(log)  # the refused open released the lock again
