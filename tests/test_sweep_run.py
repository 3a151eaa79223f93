"""Running sweeps on the local process pool: an interrupted
sweep resumes without repeating finished points, failures are retried then recorded, and a worker that
dies mid-point is replaced and its point retried. The points here compute a known function of their
parameters (these tests are about the runner); real ART points run in tests/test_sweep_ray.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from experiments.sweeps.runner import run_sweep
from experiments.sweeps.spec import Point, SweepSpec, spec_from_mapping
from experiments.sweeps.store import read_results


def tiny_spec(**execution: Any) -> SweepSpec:
    """2 x 2 grid x 2 chips of ART on emulated."""
    return spec_from_mapping(
        {
            "name": "tiny",
            "task": {"kind": "art-eval", "n": 60},
            "backend": {"name": "emulated"},
            "grid": [
                {"param": "variability.read_noise_rel", "values": [0.0, 0.05]},
                {"param": "variability.d2d_tau_rel", "values": [0.0, 0.4]},
            ],
            "seeds": {"chip": [0, 1]},
            "execution": {"retries": 2, **execution},
        }
    )


def by_point(root: Path) -> dict[str, dict[str, Any]]:
    _, table = read_results(root)
    return {row["point_id"]: row for row in table.to_pylist()}


def test_interrupted_sweep_resumes_without_repeating_finished_points(tmp_path: Path) -> None:
    spec = tiny_spec()
    out = tmp_path / "res"
    stored: list[str] = []

    def interrupt_after_three(row: dict[str, Any]) -> None:
        stored.append(row["point_id"])
        if len(stored) == 3:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a sweep

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, executor="pool", workers=1, on_row=interrupt_after_three, point_fn=known_point)
    first = by_point(out)
    assert set(first) == set(stored) and len(first) == 3  # finished points were flushed as they came

    resumed: list[str] = []
    outcome = run_sweep(
        spec,
        out,
        executor="pool",
        workers=2,
        on_row=lambda row: resumed.append(row["point_id"]),
        point_fn=known_point,
    )
    assert outcome.skipped == 3 and outcome.done == len(spec.points()) - 3 and outcome.failed == 0
    assert not set(resumed) & set(stored)  # nothing finished before ran again
    rows = by_point(out)
    assert set(rows) == {p.id for p in spec.points()}
    for pid in stored:  # the first run's rows are kept as they were
        assert rows[pid]["run_id"] == first[pid]["run_id"] != rows[resumed[0]]["run_id"]
    for point in spec.points():
        assert rows[point.id]["accuracy"] == known_accuracy(point)
    assert len(list(out.glob("*.parquet"))) == 1  # compacted at the end of the run


# Point functions for the pool's spawned workers must be importable: module level, plain data in and out.
# They return a known function of the point instead of running ART: these tests are about the runner.
def known_point(spec_json: dict[str, Any], point_json: dict[str, Any]) -> dict[str, Any]:
    """accuracy = 1 - read_noise - 0.1 d2d_tau + 0.01 chip_seed, as a worker reports it."""
    params = point_json["params"]
    value = 1 - params["variability.read_noise_rel"] - 0.1 * params["variability.d2d_tau_rel"]
    value += 0.01 * point_json["chip_seed"]
    return {"metrics": {"accuracy": value}, "seconds": 0.0, "worker": f"test:{os.getpid()}"}


def known_accuracy(point: Point) -> float:
    return float(known_point({}, point.model_dump())["metrics"]["accuracy"])


def fail_high_noise(spec_json: dict[str, Any], point_json: dict[str, Any]) -> dict[str, Any]:
    """Fails every point with read noise 0.05 (a deterministic error); the others run normally."""
    if point_json["params"]["variability.read_noise_rel"] == 0.05:
        raise ValueError("synthetic failure at read noise 0.05")
    return known_point(spec_json, point_json)


def die_on_first_attempt(spec_json: dict[str, Any], point_json: dict[str, Any]) -> dict[str, Any]:
    """The worker process dies abruptly (as if killed) the first time it meets the marked point."""
    marker = Path(os.environ["HWLOOP_TEST_MARKER"])
    point = Point.model_validate(point_json)
    victim = point.params == {"variability.read_noise_rel": 0.05, "variability.d2d_tau_rel": 0.4}
    if victim and point.chip_seed == 1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(9)
    return known_point(spec_json, point_json)


def test_a_failing_point_is_retried_then_recorded_as_failed_and_the_sweep_goes_on(tmp_path: Path) -> None:
    spec = tiny_spec(retries=1)
    outcome = run_sweep(spec, tmp_path / "res", executor="pool", workers=2, point_fn=fail_high_noise)
    rows = by_point(tmp_path / "res")
    failed = [r for r in rows.values() if r["status"] == "failed"]
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(failed) == 4 and len(ok) == 4  # half the grid has read noise 0.05
    assert outcome.failed == 4 and outcome.retried == 4 and outcome.done == 4
    for row in failed:
        assert row["variability.read_noise_rel"] == 0.05
        assert row["attempts"] == 2 and row["value"] is None
        assert row["error"] == "ValueError: synthetic failure at read noise 0.05"
    for row in ok:
        point = Point(
            params={k: row[k] for k in spec.params}, chip_seed=row["chip_seed"], repeat=row["repeat"]
        )
        assert row["attempts"] == 1 and row["value"] == known_accuracy(point)
    # a re-run retries the failed points (they are not "finished"), here successfully
    again = run_sweep(spec, tmp_path / "res", executor="pool", workers=2, point_fn=known_point)
    assert again.skipped == 4 and again.done == 4
    assert all(r["status"] == "ok" for r in by_point(tmp_path / "res").values())


def test_a_worker_that_dies_mid_point_is_replaced_and_the_point_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "died"
    monkeypatch.setenv("HWLOOP_TEST_MARKER", str(marker))
    spec = tiny_spec()
    outcome = run_sweep(spec, tmp_path / "res", executor="pool", workers=2, point_fn=die_on_first_attempt)
    assert marker.exists()  # the worker did die
    rows = by_point(tmp_path / "res")
    assert outcome.failed == 0 and all(r["status"] == "ok" for r in rows.values())
    assert len(rows) == len(spec.points())
    victim = next(
        p
        for p in spec.points()
        if p.chip_seed == 1
        and p.params["variability.d2d_tau_rel"] == 0.4
        and p.params["variability.read_noise_rel"] == 0.05
    )
    assert rows[victim.id]["attempts"] == 2
    assert not rows[victim.id]["worker"].endswith(f":{marker.read_text()}")  # finished on another process
    assert rows[victim.id]["accuracy"] == known_accuracy(victim)


def test_an_address_nobody_answers_is_one_error_at_once_and_writes_nothing(tmp_path: Path) -> None:
    """Ray alone would retry such an address for minutes; the sweep refuses it before doing anything."""
    import socket

    from experiments.sweeps.runner import SweepError

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SweepError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        run_sweep(tiny_spec(), tmp_path / "res", executor="ray", address=f"127.0.0.1:{port}")
    with pytest.raises(SweepError, match="expected HOST:PORT"):
        run_sweep(tiny_spec(), tmp_path / "res", executor="ray", address="nonsense")
    assert not (tmp_path / "res").exists()


def test_without_ray_the_same_spec_runs_on_the_process_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if Ray were not installed
    spec = tiny_spec()
    outcome = run_sweep(spec, tmp_path / "res", workers=1, point_fn=known_point)
    assert outcome.executor == "pool" and outcome.done == len(spec.points())
    rows = by_point(tmp_path / "res")
    assert {pid: row["accuracy"] for pid, row in rows.items()} == {
        p.id: known_accuracy(p) for p in spec.points()
    }
    from experiments.sweeps.runner import SweepError

    with pytest.raises(SweepError, match="Ray is not installed"):
        run_sweep(spec, tmp_path / "other", executor="ray")
