"""Sweeps on Ray: a local head started with ``ray start --head`` on 127.0.0.1 (one per module, stopped at
the end) runs a small ART sweep through ``hwloop sweep run --address`` with the same numbers as a local
``ray.init()`` run and as evaluating each point in this process; a Ray worker killed mid-point has its
point retried and the sweep completes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from experiments.sweeps.point import evaluate_point
from experiments.sweeps.spec import load_spec
from experiments.sweeps.store import read_results

pytest.importorskip("ray")

REPO_ROOT = Path(__file__).resolve().parents[1]
TASK_TITLE = b"ray::hwloop-sweep-point"  # Ray's process title of a worker running a sweep point

SPEC = """
name = "ray-test"
[task]
kind = "art-eval"
n = 100
[backend]
name = "emulated"
[[grid]]
param = "variability.read_noise_rel"
values = [0.0, 0.05]
[[grid]]
param = "variability.d2d_tau_rel"
values = [0.0, 0.4]
[seeds]
chip = [0, 1]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session_pids(sid: int) -> list[int]:
    """Processes of session ``sid`` (the head and everything it started, workers included)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # after "pid (comm)": state, ppid, pgrp, session
                pids.append(int(entry.name))
    return pids


def _title(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class Head:
    """A Ray head of this module: its address and the environment a client needs (auth token)."""

    def __init__(self, address: str, env: dict[str, str], pid: int) -> None:
        self.address, self.env, self.pid = address, env, pid

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hwloop.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """``ray start --head`` on 127.0.0.1 and a free port, with its own auth token; stopped afterwards by
    signalling only the processes of its own session."""
    tmp = tmp_path_factory.mktemp("ray-head")
    token = tmp / "token"
    token.write_text(uuid.uuid4().hex)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    port = _free_port()
    log = tmp / "head.log"
    command = [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--head"]
    command += ["--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--block"]
    command += ["--include-dashboard=false", "--disable-usage-stats"]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield Head(f"127.0.0.1:{port}", env, proc.pid)
    finally:
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for pid in _session_pids(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and [p for p in _session_pids(proc.pid) if _alive(p)]:
                time.sleep(0.2)
        proc.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _values(root: Path) -> dict[str, Any]:
    _, table = read_results(root)
    return {row["point_id"]: row for row in table.to_pylist()}


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "ray_test.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def local_rows(spec_path: Path) -> dict[str, Any]:
    """Each point evaluated here, in the test process: the reference every executor must reproduce."""
    spec = load_spec(spec_path)
    return {p.id: evaluate_point(spec, p) for p in spec.points()}


def test_sweep_on_a_cluster_by_address_matches_a_local_ray_run(
    head: Head, spec_path: Path, local_rows: dict[str, Any], tmp_path: Path
) -> None:
    remote = head.run("sweep", "run", str(spec_path), "--address", head.address, "--out", str(tmp_path / "a"))
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "8 done, 0 failed" in remote.stderr and "on ray" in remote.stderr
    local = head.run("sweep", "run", str(spec_path), "--executor", "ray", "--out", str(tmp_path / "b"))
    assert local.returncode == 0, local.stderr[-3000:]
    on_cluster, on_local = _values(tmp_path / "a"), _values(tmp_path / "b")
    assert set(on_cluster) == set(on_local) == set(local_rows)
    for pid, reference in local_rows.items():
        assert on_cluster[pid]["status"] == on_local[pid]["status"] == "ok"
        assert on_cluster[pid]["accuracy"] == on_local[pid]["accuracy"] == reference["accuracy"]
        assert on_cluster[pid]["energy_j"] == pytest.approx(reference["energy_j"], rel=1e-9)
    # the points really ran on the head's workers (host:pid of processes in its session)
    workers = {int(row["worker"].rsplit(":", 1)[1]) for row in on_cluster.values()}
    assert workers and not workers & {os.getpid()}


def test_a_killed_ray_worker_has_its_point_retried_and_the_sweep_completes(
    head: Head, spec_path: Path, local_rows: dict[str, Any], tmp_path: Path
) -> None:
    killed: list[int] = []
    stop = threading.Event()

    def kill_first_running_point() -> None:
        while not stop.is_set() and not killed:
            for pid in _session_pids(head.pid):
                if _title(pid).startswith(TASK_TITLE):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_first_running_point, daemon=True)
    killer.start()
    try:
        result = head.run(
            "sweep", "run", str(spec_path), "--address", head.address, "--out", str(tmp_path / "k"), "--json"
        )
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker running a sweep point was found to kill"
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout)
    assert outcome["retried"] >= 1 and outcome["failed"] == 0 and outcome["done"] == 8
    rows = _values(tmp_path / "k")
    assert all(row["status"] == "ok" for row in rows.values())
    retried = [row for row in rows.values() if row["attempts"] == 2]
    assert retried and all(not row["worker"].endswith(f":{killed[0]}") for row in retried)
    for pid, reference in local_rows.items():  # the retried point's numbers are the same as anywhere
        assert rows[pid]["accuracy"] == reference["accuracy"]
