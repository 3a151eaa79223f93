"""From a campaign file to a ``CalibrationRecord``: batched decay fits and pulse-response fits per device.

Decay: every relaxation of every device is fitted in one ``fit_decay`` call (time measured from the end
of the potentiating train). A device's tau and lambda are the medians over its "ok" relaxations (all
conditions and cycles) of the law's parameters; ``tau_s`` is the median 1/e time of its relaxations
(``laws.e_fold_time_s``), its uncertainty the fits' errors combined with the cycle-to-cycle scatter.
The record holds no time step: the per-step lambda at any dt comes from ``device_models.realisation``.

Decay versus bias (SMU campaigns, ``calibration.smu_campaign``): the relaxations at each bias are fitted
the same way, giving tau per bias per device; the ``device_models`` bias law is fitted to them
(``calibration.bias``) and the record's own law columns hold the chosen bias (default: the first).

Pulse response: dG = dg_ref (|V|/V_ref)^a (w/w_ref)^b per polarity, dG read as the averaged conductance
after minus before each pulse; array-wide exponents, per-device scale (``fit_pulse_law``). The record
keeps the potentiation exponents a, b.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from calibration.bias import fit_bias_law
from calibration.fit import DecayFit, fit_decay
from calibration.smu_campaign import PROTOCOL as BIAS_PROTOCOL
from calibration.storage import CampaignFile, software_version
from device_models.laws import DEFAULT_HORIZON_STEPS, e_fold_time_s
from device_models.record import BiasLaw, CalibrationError, CalibrationRecord, Provenance, ReferencePulse

Array = NDArray[np.float64]


def load_decays(
    store: CampaignFile, protocol: str = "decay"
) -> tuple[NDArray[np.int64], Array, Array, Array]:
    """(device index (U,), t (U, N) s since the train, g (U, N) S, baseline (U,) S) of every relaxation
    unit of ``protocol`` ("decay" or "bias_decay")."""
    units = store.units(protocol)
    if not units:
        raise CalibrationError(f"{store.path} holds no decay measurement")
    _, cols = store.shape
    lengths = {len(u[3]["t_s"]) for u in units}
    if len(lengths) != 1:
        raise CalibrationError(f"{store.path}: decay traces of different lengths {sorted(lengths)}")
    idx = np.array([r * cols + c for r, c, _, _ in units], dtype=np.int64)
    t = np.stack([u[3]["t_s"][()] - u[3]["t_s"][0] + u[3].attrs["delay_s"] for u in units])
    g = np.stack([u[3]["g_siemens"][()] for u in units])
    base = np.array([u[3]["baseline_g_siemens"][0] for u in units])
    return idx, t, g, base


def _per_device_decay(
    n: int, idx: NDArray[np.int64], fit: DecayFit, base: Array
) -> tuple[NDArray[np.object_], NDArray[np.object_], dict[str, Array]]:
    """Per-device (status, law, numeric columns) from the fits of all its relaxations."""
    e_fold = np.full(fit.tau.shape, np.nan)  # each relaxation's 1/e time, s
    for name in np.unique(fit.law):
        sel = fit.law == name
        e_fold[sel] = e_fold_time_s(str(name), fit.tau[sel], fit.tau2[sel], fit.w1[sel], fit.beta[sel])
    cols: dict[str, Array] = {
        k: np.full(n, np.nan)
        for k in (
            "tau_s",
            "tau_err_s",
            "tau1_s",
            "tau2_s",
            "w1",
            "beta",
            "g_inf_siemens",
            "delta_g_siemens",
            "g_min_siemens",
            "g_max_siemens",
            "rmse_rel",
        )
    }
    status = np.full(n, "not_measured", dtype=object)
    law = np.full(n, "exp", dtype=object)
    by_dev: dict[int, list[int]] = defaultdict(list)
    for u, d in enumerate(idx):
        by_dev[int(d)].append(u)
    for d, us in by_dev.items():
        ok = [u for u in us if fit.status[u] == "ok"]
        if not ok:
            status[d] = Counter(str(fit.status[u]) for u in us).most_common(1)[0][0]
            continue
        status[d] = "ok"
        law[d] = Counter(str(fit.law[u]) for u in ok).most_common(1)[0][0]
        same = [u for u in ok if fit.law[u] == law[d]]
        cols["tau_s"][d] = tau = float(np.median(e_fold[same]))
        spread = np.std(e_fold[same], ddof=1) if len(same) > 1 else 0.0
        fit_err = float(np.median(np.abs(fit.tau_err[same] / fit.tau[same]))) * tau
        cols["tau_err_s"][d] = float(np.hypot(fit_err, spread)) / np.sqrt(len(same))
        for key, src in (
            ("tau1_s", fit.tau),
            ("tau2_s", fit.tau2),
            ("w1", fit.w1),
            ("beta", fit.beta),
            ("g_inf_siemens", fit.g_inf),
            ("delta_g_siemens", fit.delta_g),
            ("rmse_rel", fit.rmse_rel),
        ):
            cols[key][d] = float(np.median(src[same]))
        cols["g_min_siemens"][d] = float(np.min(base[us]))
        cols["g_max_siemens"][d] = float(np.max(base[ok] + np.abs(fit.delta_g[ok])))
    return status, law, cols


def unit_biases(store: CampaignFile) -> Array:
    """(U,) decay bias (V) of every bias-decay unit, in ``load_decays(store, "bias_decay")`` order."""
    return np.array([float(u[3].attrs["bias_v"]) for u in store.units(BIAS_PROTOCOL)])


def _fit_relaxations(
    n: int,
    relaxations: tuple[NDArray[np.int64], Array, Array, Array],
    model: str,
    progress: object,
) -> tuple[DecayFit, NDArray[np.object_], NDArray[np.object_], dict[str, Array]]:
    idx, t, g, base = relaxations
    fit = fit_decay(t, g, model=model, progress=progress)  # type: ignore[arg-type]
    return (fit, *_per_device_decay(n, idx, fit, base))


def _bias_decays(
    store: CampaignFile, n: int, model: str, progress: object
) -> dict[float, tuple[DecayFit, NDArray[np.object_], NDArray[np.object_], dict[str, Array]]]:
    """Per measured bias (V): the fit of its relaxations and the per-device (status, law, columns)."""
    if not store.units(BIAS_PROTOCOL):
        return {}
    idx, t, g, base = load_decays(store, BIAS_PROTOCOL)
    bias = unit_biases(store)
    out = {}
    for b in sorted(set(bias.tolist())):
        sel = bias == b
        out[b] = _fit_relaxations(n, (idx[sel], t[sel], g[sel], base[sel]), model, progress)
    return out


def _bias_law(
    per_bias: dict[float, tuple[DecayFit, NDArray[np.object_], NDArray[np.object_], dict[str, Array]]],
) -> BiasLaw | None:
    """The measured bias law over every measured bias (a bias where a device has no clean relaxation,
    e.g. one at or above its pulse threshold, is NaN there); None unless two or more biases are usable."""
    if sum(bool(np.any(r[1] == "ok")) for r in per_bias.values()) < 2:
        return None
    return fit_bias_law(np.array(list(per_bias)), np.stack([r[3]["tau_s"] for r in per_bias.values()]))


def load_pulses(store: CampaignFile) -> dict[str, tuple[NDArray[np.int64], Array, Array, Array]]:
    """Per polarity ("up", "down"): (device index, amplitude V, width s, dG S) of every pulse unit."""
    _, cols = store.shape
    out: dict[str, list[tuple[int, float, float, float]]] = {"up": [], "down": []}
    for r, c, name, g in store.units("pulse"):
        dg = float(g["g_after_siemens"][0] - g["g_before_siemens"][0])
        out[name.split("_")[0]].append(
            (r * cols + c, float(g.attrs["amplitude_v"]), float(g.attrs["width_s"]), dg)
        )
    return {
        k: (
            np.array([x[0] for x in v], dtype=np.int64),
            np.array([x[1] for x in v]),
            np.array([x[2] for x in v]),
            np.array([x[3] for x in v]),
        )
        for k, v in out.items()
    }


def fit_pulse_law(
    n: int,
    idx: NDArray[np.int64],
    volts: Array,
    width_s: Array,
    dg: Array,
    v_ref: float,
    w_ref: float,
    sign: float,
) -> tuple[Array, Array, float, float]:
    """dG = dg_ref (|V|/V_ref)^a (w/w_ref)^b: per device dg_ref (S, signed) and its one-sigma error, and
    the array-wide exponents (a, b).

    Single pulses are near the read noise, so the exponents are pooled: a least-squares line through
    ln of the across-device median dG at each (V, w) of the grid (points with a median of the wrong
    sign are left out). Each device's dg_ref is then a linear least-squares scale over all its points,
    noisy ones included, so it stays unbiased: dg_ref = sum x dG / sum x^2 with x = (|V|/V_ref)^a (w/w_ref)^b.
    """
    grid = np.unique(np.stack([np.abs(volts), width_s], axis=1), axis=0)
    med = np.array([np.median(dg[(np.abs(volts) == v) & (width_s == w)]) for v, w in grid])
    use = sign * med > 0
    if use.sum() < 3:
        raise CalibrationError(
            "pulse response: fewer than 3 pulse settings changed the conductance; cannot fit"
        )
    x = np.stack([np.ones(use.sum()), np.log(grid[use, 0] / v_ref), np.log(grid[use, 1] / w_ref)], axis=1)
    (_, a, b), *_ = np.linalg.lstsq(x, np.log(sign * med[use]), rcond=None)
    drive = (np.abs(volts) / v_ref) ** a * (width_s / w_ref) ** b
    sxx = np.bincount(idx, weights=drive**2, minlength=n)
    sxy = np.bincount(idx, weights=drive * dg, minlength=n)
    count = np.bincount(idx, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = sxy / sxx
        rss = np.bincount(idx, weights=(dg - scale[idx] * drive) ** 2, minlength=n)
        err = np.sqrt(rss / np.maximum(count - 1, 1) / sxx)
    scale[count < 2] = np.nan
    err[count < 2] = np.nan
    return scale, err, float(a), float(b)


def build_record(
    path: str | Path,
    model: str = "auto",
    horizon_steps: int = DEFAULT_HORIZON_STEPS,
    progress: object = None,
    bias_v: float | None = None,
) -> tuple[CalibrationRecord, DecayFit]:
    """Fit a campaign file into a ``CalibrationRecord`` (and the per-relaxation fit, for reports).

    ``bias_v``: for SMU campaigns at several decay biases, the measured bias (V) whose relaxations fill
    the record's law columns (default: the first bias of the campaign); every bias enters the
    record's ``bias_law``. ``horizon_steps``: stored in the record, the span over which a
    non-exponential law's per-step lambda is fitted when a dt is chosen (``CalibrationRecord.lam_at``).
    """
    with CampaignFile(path) as store:
        shape = store.shape
        n = shape[0] * shape[1]
        per_bias = _bias_decays(store, n, model, progress)
        bias_law = _bias_law(per_bias)
        if bias_v is not None and not per_bias:
            raise CalibrationError(f"{path} holds no decay-versus-bias measurement to choose a bias from")
        if store.units("decay"):  # crossbar campaigns: devices relax on idle lines at 0 V
            decay_bias: float = 0.0
            fit, status, law, cols = _fit_relaxations(n, load_decays(store), model, progress)
        elif per_bias:
            wanted = float(store.config()["bias_decay"]["biases_v"][0]) if bias_v is None else float(bias_v)
            match = [b for b in per_bias if np.isclose(b, wanted, rtol=0, atol=1e-9)]
            if not match:
                measured = ", ".join(f"{b:g}" for b in per_bias)
                raise CalibrationError(f"{path}: no relaxation at {wanted:g} V (measured: {measured} V)")
            decay_bias = match[0]
            fit, status, law, cols = per_bias[decay_bias]
            cols = dict(cols)
        else:
            raise CalibrationError(f"{store.path} holds no decay measurement")
        pulses = load_pulses(store)
        config = store.config()
        instruments = store.instruments()
    ref = None
    extra: dict[str, Array] = {}
    if pulses["up"][0].size:
        p = config.get("pulse") or {}
        ref = ReferencePulse(
            amplitude_v=p.get("reference_amplitude_v", 1.5), width_s=p.get("reference_width_s", 1e-4)
        )
        up, up_err, a, b = fit_pulse_law(n, *pulses["up"], ref.amplitude_v, ref.width_s, 1.0)
        down, down_err, _, _ = fit_pulse_law(n, *pulses["down"], ref.amplitude_v, ref.width_s, -1.0)
        extra = {
            "dg_up_siemens": up,
            "dg_up_err_siemens": up_err,
            "dg_down_siemens": down,
            "dg_down_err_siemens": down_err,
            "amp_exponent": np.full(n, a),
            "width_exponent": np.full(n, b),
        }
    if not np.any(status == "ok"):
        counts = ", ".join(f"{k} {v}" for k, v in Counter(status).most_common())
        raise CalibrationError(f"{path}: no device could be calibrated (device statuses: {counts})")
    tau = cols.pop("tau_s")
    record = CalibrationRecord.from_arrays(
        shape,
        tau,
        status=list(status),
        law=list(law),
        horizon_steps=horizon_steps,
        reference_pulse=ref,
        decay_bias_v=decay_bias,
        bias_law=bias_law,
        provenance=Provenance(
            instruments=instruments,
            software_version=software_version(),
            source_file=str(Path(path).resolve()),
            notes=f"decay model {model}; {int(fit.ok.sum())}/{fit.ok.size} relaxations fitted ok",
        ),
        **cols,
        **extra,
    )
    return record, fit
