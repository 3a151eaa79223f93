"""From a campaign file to a ``CalibrationRecord``: batched decay fits and pulse-response fits per device.

Decay: every relaxation of every device is fitted in one ``fit_decay`` call (time measured from the end
of the potentiating train). A device's law parameters are the medians over its "ok" relaxations (all
conditions and cycles) of its most common law; ``tau_s`` is the median 1/e time of those relaxations
(``laws.e_fold_time_s``), its uncertainty the fits' errors combined with the cycle-to-cycle scatter.
The record holds no time step: the per-step lambda at any dt comes from ``device_models.realisation``.
Only "ok" relaxations ever give numbers: a device whose relaxations are mostly judged not described by
any law (poor_fit, threshold_collapse, non_monotonic outnumber its ok ones) takes the most common of
those verdicts as its status and carries no tau or lambda, so mapping and the backends never see it.

Decay versus bias (SMU campaigns, ``calibration.smu_campaign``): the relaxations at each bias are fitted
the same way, giving tau per bias per device; the ``device_models`` bias law is fitted to them
(``calibration.bias``) and the record's own law columns hold the chosen bias (default: the first).

Streaming: relaxations are read from the campaign file and fitted in chunks of units
(``FIT_CHUNK_ELEMENTS`` samples at a time), so memory stays bounded at any array size; units of one chunk
with the same number of samples are fitted in one ``fit_decay`` call.

Pulse response: dG = dg_ref (|V|/V_ref)^a (w/w_ref)^b per polarity, dG read as the averaged conductance
after minus before each pulse; array-wide exponents, per-device scale (``fit_pulse_law``). The record
keeps the potentiation exponents a, b.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from calibration.bias import fit_bias_law
from calibration.fit import DecayFit, fit_decay
from calibration.smu_campaign import PROTOCOL as BIAS_PROTOCOL
from calibration.storage import CampaignFile, software_version
from device_models.laws import DEFAULT_HORIZON_STEPS, e_fold_time_s
from device_models.record import (
    BiasLaw,
    CalibrationError,
    CalibrationRecord,
    Provenance,
    ReferencePulse,
    Survival,
)

Array = NDArray[np.float64]
# fitted, but the law does not describe it (stepwise: it relaxes by jumps, calibration.verdict)
VERDICTS = ("poor_fit", "threshold_collapse", "non_monotonic", "stepwise")
FIT_CHUNK_ELEMENTS = 4_000_000  # units x samples read and fitted at a time (~100 MB of traces and work)


def load_decays(
    store: CampaignFile, protocol: str = "decay", start: int = 0, stop: int | None = None
) -> tuple[NDArray[np.int64], Array, Array, Array]:
    """(device index (U,), t (U, N) s since the train, g (U, N) S, baseline (U,) S) of the relaxation
    units [start, stop) of ``protocol`` ("decay" or "bias_decay"); traces shorter than the longest are
    NaN-padded (their ``n_samples`` is where the NaNs start)."""
    if not store.units(protocol):
        raise CalibrationError(f"{store.path} holds no decay measurement")
    cols = store.columns(protocol, ("device", "delay_s", "baseline_g_siemens"), start, stop)
    traces = store.traces(protocol, start, stop)
    t = traces["t_s"] - traces["t_s"][:, :1] + cols["delay_s"][:, None]
    return cols["device"].astype(np.int64), t, traces["g_siemens"], cols["baseline_g_siemens"]


def _concat_fits(parts: list[tuple[NDArray[np.int64], DecayFit]], n_units: int) -> DecayFit:
    """One ``DecayFit`` over ``n_units`` units from fits of disjoint unit subsets (unit indices, fit).

    Generic over the fields of ``DecayFit``: per-unit arrays are scattered into place, per-law dicts
    likewise (NaN where a part lacks a law), ``n_points`` is the longest trace, other fields the first part's.
    """
    order = np.argsort(np.concatenate([units for units, _ in parts]), kind="stable")
    if order.size != n_units:
        raise CalibrationError(f"internal: fitted {order.size} of {n_units} relaxations")

    def per_unit(values: list[np.ndarray]) -> bool:
        return all(v.shape[:1] == u.shape for v, (u, _) in zip(values, parts, strict=True))

    out: dict[str, object] = {}
    for f in dataclasses.fields(DecayFit):
        values = [getattr(fit, f.name) for _, fit in parts]
        first = values[0]
        if isinstance(first, np.ndarray) and per_unit(values):
            out[f.name] = np.concatenate(values)[order]
        elif isinstance(first, dict):
            keys = dict.fromkeys(k for v in values for k in v)
            out[f.name] = {
                k: np.concatenate(
                    [v.get(k, np.full(u.size, np.nan)) for v, (u, _) in zip(values, parts, strict=True)]
                )[order]
                for k in keys
            }
        elif f.name == "n_points":
            out[f.name] = max(values)
        else:
            out[f.name] = first
    return DecayFit(**out)  # type: ignore[arg-type]


def fit_relaxations(
    store: CampaignFile,
    protocol: str,
    model: str,
    select: NDArray[np.bool_] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[NDArray[np.int64], Array, DecayFit]:
    """Fit the relaxation units of ``protocol`` (all, or those where ``select``), streamed from the file
    in chunks: (device index (U,), baseline (U,) S, fit over the U units in file order)."""
    n = store.units(protocol)
    chosen = np.ones(n, dtype=bool) if select is None else np.asarray(select, dtype=bool)
    n_samples = store.columns(protocol, ("n_samples",))["n_samples"]
    total = int(chosen.sum())
    chunk = max(1, FIT_CHUNK_ELEMENTS // max(1, int(n_samples.max(initial=1))))
    parts: list[tuple[NDArray[np.int64], DecayFit]] = []
    devices, bases = [], []
    done = 0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sel = chosen[start:stop]
        if not sel.any():
            continue
        idx, t, g, base = load_decays(store, protocol, start, stop)
        idx, t, g, base, lengths = idx[sel], t[sel], g[sel], base[sel], n_samples[start:stop][sel]
        for length in np.unique(lengths):
            same = np.flatnonzero(lengths == length)
            tt, gg = t[same, :length], g[same, :length]
            if (tt == tt[:1]).all():  # one time base for every unit (the common case): fit it once
                tt = tt[0]
            parts.append((done + same, fit_decay(tt, gg, model=model)))
        devices.append(idx)
        bases.append(base)
        done += int(sel.sum())
        if progress is not None:
            progress(done, total)
    if not parts:
        raise CalibrationError(f"{store.path} holds no decay measurement")
    return np.concatenate(devices), np.concatenate(bases), _concat_fits(parts, done)


def _group_median(dev: NDArray[np.int64], values: Array, n: int) -> Array:
    """(n,) median of ``values`` per device index ``dev`` (NaN for devices without values)."""
    out = np.full(n, np.nan)
    if dev.size == 0:
        return out
    order = np.lexsort((values, dev))
    d, v = dev[order], values[order]
    first = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    count = np.diff(np.r_[first, d.size])
    lo, hi = first + (count - 1) // 2, first + count // 2
    out[d[first]] = 0.5 * (v[lo] + v[hi])
    return out


def _most_common(dev: NDArray[np.int64], labels: NDArray[np.object_], n: int) -> NDArray[np.object_]:
    """(n,) most common label per device over its units in order (ties: the one seen first, as
    ``Counter.most_common``), None for devices without units."""
    out = np.full(n, None, dtype=object)
    if dev.size == 0:
        return out
    devices, first_unit = np.unique(dev, return_index=True)
    first = np.full(n, -1, dtype=np.int64)
    first[devices] = first_unit
    uniform = np.ones(n, dtype=bool)
    np.logical_and.at(uniform, dev, labels == labels[first[dev]])
    has = first >= 0
    out[has & uniform] = labels[first[has & uniform]]
    for d in np.flatnonzero(has & ~uniform):  # devices whose units disagree: rare, count them
        out[d] = Counter(str(x) for x in labels[dev == d]).most_common(1)[0][0]
    return out


def _per_device_decay(
    n: int, idx: NDArray[np.int64], fit: DecayFit, base: Array
) -> tuple[NDArray[np.object_], NDArray[np.object_], dict[str, Array]]:
    """Per-device (status, law, numeric columns) from the fits of all its relaxations (vectorised over
    devices: medians per device over its "ok" relaxations of its most common law, most common status).

    ``tau_s`` is the median 1/e time of those relaxations (``laws.e_fold_time_s``); its uncertainty the
    fits' relative errors combined with the cycle-to-cycle scatter. No time step enters the record."""
    ok_u = fit.status == "ok"
    base = np.where(np.isfinite(base), base, fit.g_inf)  # imported traces without a baseline: g_inf
    measured = np.bincount(idx, minlength=n) > 0
    n_ok = np.bincount(idx[ok_u], minlength=n)
    status = np.full(n, "not_measured", dtype=object)
    failed = measured & (n_ok == 0)
    status[failed] = _most_common(idx, fit.status.astype(object), n)[failed]
    # the law describes a minority of its relaxations: the most common verdict, and no numbers
    und_u = np.isin(fit.status.astype(object), VERDICTS)
    undescribed = np.bincount(idx[und_u], minlength=n) > n_ok
    status[undescribed] = _most_common(idx[und_u], fit.status[und_u].astype(object), n)[undescribed]
    good = (n_ok > 0) & ~undescribed
    status[good] = "ok"
    ok_u = ok_u & good[idx]
    law = np.full(n, "exp", dtype=object)
    law[good] = _most_common(idx[ok_u], fit.law[ok_u].astype(object), n)[good]
    same = ok_u & (fit.law.astype(object) == law[idx])  # ok relaxations of the device's law

    e_fold = np.full(fit.tau.shape, np.nan)  # each relaxation's 1/e time, s
    for name in np.unique(fit.law[same]):
        sel = same & (fit.law == name)
        e_fold[sel] = e_fold_time_s(str(name), fit.tau[sel], fit.tau2[sel], fit.w1[sel], fit.beta[sel])
    cols: dict[str, Array] = {}
    tau = _group_median(idx[same], e_fold[same], n)
    cols["tau_s"] = tau
    n_same = np.bincount(idx[same], minlength=n)
    # cycle-to-cycle scatter: sample std of the 1/e time over a device's relaxations (0 for a single one)
    s1 = np.bincount(idx[same], weights=e_fold[same], minlength=n)
    s2 = np.bincount(idx[same], weights=e_fold[same] ** 2, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n_same > 1, (s2 - s1**2 / np.maximum(n_same, 1)) / np.maximum(n_same - 1, 1), 0.0)
        spread = np.sqrt(np.maximum(var, 0.0))
        fit_err = _group_median(idx[same], np.abs(fit.tau_err[same] / fit.tau[same]), n) * tau
        cols["tau_err_s"] = np.hypot(fit_err, spread) / np.sqrt(np.maximum(n_same, 1))
    for key, src in (
        ("tau1_s", fit.tau),
        ("tau2_s", fit.tau2),
        ("w1", fit.w1),
        ("beta", fit.beta),
        ("g_inf_siemens", fit.g_inf),
        ("delta_g_siemens", fit.delta_g),
        ("rmse_rel", fit.rmse_rel),
    ):
        cols[key] = _group_median(idx[same], src[same], n)
    g_min = np.full(n, np.inf)
    np.minimum.at(g_min, idx, base)
    g_max = np.full(n, -np.inf)
    np.maximum.at(g_max, idx[ok_u], base[ok_u] + np.abs(fit.delta_g[ok_u]))
    cols["g_min_siemens"] = np.where(good, g_min, np.nan)
    cols["g_max_siemens"] = np.where(good, g_max, np.nan)
    for key in cols:
        cols[key][~good] = np.nan
    return status, law, cols


def survival_summary(
    n: int, idx: NDArray[np.int64], fit: DecayFit, status: NDArray[np.object_]
) -> Survival | None:
    """Per device whose status is ``stepwise``: median (s), interquartile range / median and count of
    its stepwise relaxations' times to full relaxation (the last jump, ``DecayFit.jump_t``); None if no
    device is stepwise. A summary for inspection, never a tau."""
    stepwise = np.asarray(status == "stepwise", dtype=bool)
    unit = (fit.status == "stepwise") & stepwise[idx]
    if not unit.any():
        return None
    with np.errstate(invalid="ignore"):
        last = np.max(np.where(np.isfinite(fit.jump_t), fit.jump_t, -np.inf), axis=1)
    last = np.where(np.isfinite(last), last, np.nan)
    unit &= np.isfinite(last)
    median, spread, count = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
    for d in np.unique(idx[unit]):
        times = last[unit & (idx == d)]
        q25, q50, q75 = np.percentile(times, [25, 50, 75])
        median[d], spread[d], count[d] = q50, (q75 - q25) / q50, times.size
    return Survival.model_validate(
        {"median_s": median, "spread_rel": spread, "cycles": np.where(count > 0, count, np.nan)}
    )


def unit_biases(store: CampaignFile) -> Array:
    """(U,) decay bias (V) of every bias-decay unit, in ``load_decays(store, "bias_decay")`` order."""
    return np.asarray(store.columns(BIAS_PROTOCOL, ("bias_v",))["bias_v"], dtype=np.float64)


Relaxations = tuple[DecayFit, NDArray[np.object_], NDArray[np.object_], dict[str, Array]]


def _fit_relaxations(
    store: CampaignFile,
    protocol: str,
    n: int,
    model: str,
    progress: Callable[[int, int], None] | None,
    select: NDArray[np.bool_] | None = None,
) -> Relaxations:
    idx, base, fit = fit_relaxations(store, protocol, model, select, progress)
    return (fit, *_per_device_decay(n, idx, fit, base))


def _bias_decays(
    store: CampaignFile,
    n: int,
    model: str,
    progress: Callable[[int, int], None] | None,
) -> dict[float, Relaxations]:
    """Per measured bias (V): the fit of its relaxations and the per-device (status, law, columns)."""
    if not store.units(BIAS_PROTOCOL):
        return {}
    bias = unit_biases(store)
    return {
        b: _fit_relaxations(store, BIAS_PROTOCOL, n, model, progress, bias == b)
        for b in sorted(set(bias.tolist()))
    }


def _bias_law(per_bias: dict[float, Relaxations]) -> BiasLaw | None:
    """The measured bias law over every measured bias (a bias where a device has no clean relaxation,
    e.g. one at or above its pulse threshold, is NaN there); None unless two or more biases are usable."""
    if sum(bool(np.any(r[1] == "ok")) for r in per_bias.values()) < 2:
        return None
    return fit_bias_law(np.array(list(per_bias)), np.stack([r[3]["tau_s"] for r in per_bias.values()]))


def load_pulses(store: CampaignFile) -> dict[str, tuple[NDArray[np.int64], Array, Array, Array]]:
    """Per polarity ("up", "down"): (device index, amplitude V, width s, dG S) of every pulse unit."""
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    if not store.units("pulse"):
        return {"up": empty, "down": empty}
    c = store.columns("pulse", ("device", "amplitude_v", "width_s", "g_before_siemens", "g_after_siemens"))
    dg = c["g_after_siemens"] - c["g_before_siemens"]
    out = {}
    for polarity, sel in (("up", c["amplitude_v"] > 0), ("down", c["amplitude_v"] < 0)):
        out[polarity] = (
            c["device"][sel].astype(np.int64),
            c["amplitude_v"][sel].astype(np.float64),
            c["width_s"][sel].astype(np.float64),
            dg[sel].astype(np.float64),
        )
    return out


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
        per_bias = _bias_decays(store, n, model, progress)  # type: ignore[arg-type]
        bias_law = _bias_law(per_bias)
        if bias_v is not None and not per_bias:
            raise CalibrationError(f"{path} holds no decay-versus-bias measurement to choose a bias from")
        if store.units("decay"):  # crossbar campaigns: devices relax on idle lines at 0 V
            decay_bias: float | None = None if "import" in store.config() else 0.0  # imports: unknown
            fit, status, law, cols = _fit_relaxations(
                store,
                "decay",
                n,
                model,
                progress,  # type: ignore[arg-type]
            )
            idx_units = store.columns("decay", ("device",))["device"].astype(np.int64)
        elif per_bias:
            wanted = float(store.config()["bias_decay"]["biases_v"][0]) if bias_v is None else float(bias_v)
            match = [b for b in per_bias if np.isclose(b, wanted, rtol=0, atol=1e-9)]
            if not match:
                measured = ", ".join(f"{b:g}" for b in per_bias)
                raise CalibrationError(f"{path}: no relaxation at {wanted:g} V (measured: {measured} V)")
            decay_bias = match[0]
            fit, status, law, cols = per_bias[decay_bias]
            cols = dict(cols)
            idx_units = store.columns(BIAS_PROTOCOL, ("device",))["device"].astype(np.int64)
            idx_units = idx_units[unit_biases(store) == decay_bias]
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
    survival = survival_summary(n, idx_units, fit, status)
    if not np.any(status == "ok"):
        counts = ", ".join(f"{k} {v}" for k, v in Counter(status).most_common())
        hint = (
            f"; stepwise devices relax by jumps, median time to full relaxation "
            f"{np.nanmedian(survival.array('median_s')):.3g} s (no decay law, no tau)"
            if survival is not None
            else ""
        )
        raise CalibrationError(f"{path}: no device could be calibrated (device statuses: {counts}){hint}")
    tau = cols.pop("tau_s")
    record = CalibrationRecord.from_arrays(
        shape,
        tau,
        survival=survival,
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
