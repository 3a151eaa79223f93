"""``build_record`` streams a campaign file in chunks; chunking and the vectorised per-device aggregation
must give what fitting every trace on its own and aggregating device by device gives."""

from __future__ import annotations

import numpy as np
import pytest

import calibration.analysis as analysis
from calibration.fit import fit_decay
from calibration.storage import CampaignFile

SHAPE = (2, 4)


def write_campaign(path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Devices 0..6 (7 stays unmeasured), 1-3 relaxations each of 40 or 60 samples, one flat trace;
    returns (device, t since the train, g) per unit in file order."""
    rng = np.random.default_rng(3)
    units = []
    plan = [(0, 40), (0, 60), (1, 40), (2, 60), (2, 60), (2, 40), (3, 40), (4, 60), (5, 40), (6, 60), (6, 40)]
    with CampaignFile.create(path, config={}, shape=SHAPE, safety_limits={}) as store:
        cycles: dict[int, int] = {}
        for device, n in plan:
            t = np.linspace(0.0, 4.0, n)
            tau = 0.5 + 0.2 * device
            g = 1e-9 + 2e-9 * np.exp(-t / tau) + 2e-11 * rng.standard_normal(n)
            if device == 5:
                g = 1e-9 + 2e-11 * rng.standard_normal(n)  # no relaxation: not "ok"
            cycle = cycles[device] = cycles.get(device, -1) + 1
            columns = {"device": device, "condition": 0, "cycle": cycle, "amplitude_v": 1.5, "width_s": 1e-3}
            columns |= {"n_pulses": 20, "read_v": 0.2, "every_s": t[1], "delay_s": 0.05}
            columns |= {"pulse_energy_j": 1e-12, "baseline_g_siemens": 1e-9 * (1 + 0.01 * cycle)}
            store.append("decay", columns, {"t_s": (100.0 + t)[None, :], "g_siemens": g[None, :]})
            units.append((device, t + 0.05, g))
        store.flush()
    return units


def reference(units) -> dict[str, np.ndarray]:
    """Each trace fitted alone, then per device in a plain loop (the aggregation before streaming):
    tau is the median 1/e time over the device's ok relaxations (the fitted tau of an exponential)."""
    n = SHAPE[0] * SHAPE[1]
    fits = [fit_decay(t, g[None, :], model="exp") for _, t, g in units]
    out = {k: np.full(n, np.nan) for k in ("tau_s", "tau_err_s", "g_min_siemens")}
    status = np.full(n, "not_measured", dtype=object)
    for d in range(n):
        mine = [(u, f) for u, f in zip(units, fits, strict=True) if u[0] == d]
        if not mine:
            continue
        ok = [f for _, f in mine if f.status[0] == "ok"]
        if not ok:
            status[d] = str(mine[0][1].status[0])
            continue
        status[d] = "ok"
        taus = np.array([f.tau[0] for f in ok])
        tau = float(np.median(taus))
        spread = np.std(taus, ddof=1) if len(ok) > 1 else 0.0
        fit_err = float(np.median([abs(f.tau_err[0] / f.tau[0]) for f in ok])) * tau
        out["tau_s"][d] = tau
        out["tau_err_s"][d] = np.hypot(fit_err, spread) / np.sqrt(len(ok))
        out["g_min_siemens"][d] = 1e-9  # the lowest baseline among its relaxations (cycle 0)
    out["status"] = status
    return out


@pytest.mark.parametrize("chunk_units", [1, 3, 1000])
def test_streamed_chunks_equal_fitting_each_trace_alone(tmp_path, monkeypatch, chunk_units) -> None:
    path = tmp_path / "c.h5"
    units = write_campaign(path)
    monkeypatch.setattr(analysis, "FIT_CHUNK_ELEMENTS", chunk_units * 60)
    record, fit = analysis.build_record(path, model="exp", horizon_steps=50)
    want = reference(units)
    assert list(record.status) == list(want["status"])
    assert fit.tau.size == len(units)
    np.testing.assert_allclose(record.array("tau_s"), want["tau_s"], rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(record.array("tau_err_s"), want["tau_err_s"], rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(
        record.array("g_min_siemens"), want["g_min_siemens"], rtol=1e-12, equal_nan=True
    )
