"""Calibration report: PNG plots and a text summary of a ``CalibrationRecord`` (and its campaign data).

decay_fits.png       measured relaxations of a few devices with the law the record holds for them
failed_fits.png      relaxations whose law does not describe them (poor_fit, threshold_collapse,
                     non_monotonic, stepwise) or whose fit failed: data, best law, residuals, verdict and
                     its tests (the record keeps no fit of such a device: these few are re-fitted)

Streaming: only the traces drawn are read from the campaign file (the device column picks them), and
the usable devices' curves come from the record, so memory does not grow with the campaign.
tau_lambda_hist.png  device-to-device distributions of tau and lambda (at the record's dt)
pulse_response.png   |dG| per pulse versus amplitude, per width and polarity, with the fitted law
bias_law.png         measured tau versus decay bias with the fitted law (records with a bias law)
summary.txt          counts, statuses, medians and spreads
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from calibration.analysis import VERDICTS, load_decays, load_pulses, unit_biases
from calibration.fit import fit_decay
from calibration.mapping import StpnMapping
from calibration.smu_campaign import PROTOCOL as BIAS_PROTOCOL
from calibration.storage import CampaignFile
from calibration.verdict import reason
from device_models.laws import relaxation
from device_models.pulse_law import PulseLaw
from device_models.realisation import DEFAULT_DT_S
from device_models.record import CalibrationRecord

Array = np.ndarray

SHOWN_DEVICES = 6
SHOWN_FAILED = 6


def write_report(
    record: CalibrationRecord, out_dir: Path, data: Path | None = None, dt_s: float = DEFAULT_DT_S
) -> list[Path]:
    """Write the report files into ``out_dir``; the raw-data plots need the campaign file ``data``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_histograms(record, out_dir / "tau_lambda_hist.png", dt_s)]
    if record.bias_law is not None:
        written.append(_bias_law(record, out_dir / "bias_law.png"))
    failures: list[str] = []
    if data is not None:
        with CampaignFile(data) as store:
            written.append(_decays(store, record, out_dir / "decay_fits.png"))
            failed = _failed_units(store, record)
            pulses = load_pulses(store)
        if failed is not None:
            failures = failed_fits_page(*failed, out_dir / "failed_fits.png")
            written.append(out_dir / "failed_fits.png")
        if pulses["up"][0].size and record.reference_pulse is not None:
            written.append(_pulses(pulses, record, out_dir / "pulse_response.png"))
    summary = out_dir / "summary.txt"
    failed_text = ["", "failed fits (one relaxation per device):", *failures] if failures else []
    summary.write_text("\n".join([summary_text(record, dt_s), *failed_text]) + "\n")
    written.append(summary)
    return written


def summary_text(record: CalibrationRecord, dt_s: float = DEFAULT_DT_S) -> str:
    """A short human-readable summary of a record, lambda shown at step dt_s (s)."""
    ok = record.good()
    lam_all, step_error = record.lam_and_error_at(dt_s)
    tau, lam = record.array("tau_s")[ok], lam_all[ok]
    lines = [
        f"array {record.shape[0]} x {record.shape[1]}: {ok.sum()} of {record.n_devices} devices usable",
        "statuses: " + ", ".join(f"{k} {v}" for k, v in Counter(record.status).most_common()),
        "laws (usable devices): "
        + ", ".join(f"{k} {v}" for k, v in Counter(np.array(record.law)[ok]).most_common()),
        f"tau: median {np.median(tau):.4g} s, spread (std/median) {np.std(tau) / np.median(tau):.1%}, "
        f"range {tau.min():.4g} .. {tau.max():.4g} s, "
        f"median uncertainty {np.nanmedian(record.array('tau_err_s')[ok] / tau):.2%}",
        f"lambda at dt = {dt_s:g} s: median {np.median(lam):.5f}, range {lam.min():.5f} .. {lam.max():.5f}",
        f"per-step approximation error (RMS over {record.horizon_steps} steps): "
        f"median {np.nanmedian(step_error[ok]):.2e}",
    ]
    if record.reference_pulse is not None:
        up, down = record.array("dg_up_siemens")[ok], record.array("dg_down_siemens")[ok]
        ref = record.reference_pulse
        a, b = np.nanmedian(record.array("amp_exponent")), np.nanmedian(record.array("width_exponent"))
        lines.append(
            f"reference pulse {ref.amplitude_v:g} V, {ref.width_s:g} s: "
            f"dG up median {np.nanmedian(up):.3g} S, down median {np.nanmedian(down):.3g} S; "
            f"exponents amplitude {a:.2f}, width {b:.2f}"
        )
    if record.decay_bias_v is not None:
        lines.append(f"tau and lambda hold at decay bias {record.decay_bias_v:g} V")
    if (law := record.bias_law) is not None:
        tau_b = law.array("tau_measured_s")
        per_bias = ", ".join(
            f"{v:g} V: {np.nanmedian(row):.4g} s"
            if np.isfinite(row).any()
            else f"{v:g} V: no clean relaxation"
            for v, row in zip(law.biases_v, tau_b, strict=True)
        )
        lines.append(f"median tau per bias: {per_bias}")
        lines.append(
            f"bias law tau = tau_ref exp(-(V - {law.bias_ref_v:g} V) / V_efold): "
            f"median tau_ref {np.nanmedian(law.array('tau_ref_s')):.4g} s, "
            f"median V_efold {np.nanmedian(law.array('efold_v')):.4g} V, "
            f"RMS ln residual {np.nanmedian(law.array('rms_log_residual')):.2g}"
        )
    p = record.provenance
    lines.append(
        f"provenance: hwloop {p.software_version}, {p.created:%Y-%m-%d %H:%M} UTC, from {p.source_file}"
    )
    lines += [f"instrument: {i}" for i in p.instruments]
    return "\n".join(lines)


def _histograms(record: CalibrationRecord, path: Path, dt_s: float) -> Path:
    ok = record.good()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].hist(record.array("tau_s")[ok], bins=30, color="tab:blue")
    ax[0].set_xlabel("tau (s)")
    ax[0].set_ylabel("devices")
    ax[0].set_title("decay time constant")
    ax[1].hist(record.lam_at(dt_s)[ok], bins=30, color="tab:orange")
    ax[1].set_xlabel(f"lambda at dt = {dt_s:g} s")
    ax[1].set_title("retention per STPN step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _bias_law(record: CalibrationRecord, path: Path) -> Path:
    law = record.bias_law
    assert law is not None
    tau_b, tau_ref, efold = law.array("tau_measured_s"), law.array("tau_ref_s"), law.array("efold_v")
    v = np.linspace(min(law.biases_v), max(law.biases_v), 50)
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, d in enumerate(np.flatnonzero(np.isfinite(tau_ref))[:SHOWN_DEVICES]):
        r, c = divmod(int(d), record.shape[1])
        ax.plot(law.biases_v, tau_b[:, d], "o", color=f"C{k}")
        fitted = tau_ref[d] * np.exp(-(v - law.bias_ref_v) / efold[d])
        ax.plot(v, fitted, "-", color=f"C{k}", label=f"({r},{c}) V_efold {efold[d]:.3g} V")
    ax.set_yscale("log")
    ax.set_xlabel("decay bias (V)")
    ax.set_ylabel("tau (s)")
    ax.set_title("decay time versus bias: measured (dots), fitted law (lines)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _shown_units(store: CampaignFile, protocol: str, devices: list[int] | None = None) -> Array:
    """File rows of the first relaxation of each device (or of each of ``devices``), in device order;
    reads only the ``device`` column."""
    dev = store.columns(protocol, ("device",))["device"]
    first_dev, first_row = np.unique(dev, return_index=True)
    if devices is None:
        return first_row
    where = np.searchsorted(first_dev, devices)
    return first_row[where]


def _read_units(store: CampaignFile, protocol: str, rows: Array) -> tuple[Array, Array, Array]:
    """(device (U,), t (U, N) s, g (U, N) S) of the relaxation units at file ``rows``, read one at a time
    (only those traces leave the file), NaN-padded to the longest."""
    parts = [load_decays(store, protocol, int(r), int(r) + 1) for r in rows]
    width = max((p[1].shape[1] for p in parts), default=0)

    def pad(a: Array) -> Array:
        return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan)

    idx = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    return idx, np.vstack([pad(p[1]) for p in parts]), np.vstack([pad(p[2]) for p in parts])


def _record_curve(record: CalibrationRecord, device: int, t: Array) -> Array:
    """The record's fitted law of one device (its medians over the ok relaxations) at times t (s), S."""
    law = record.law[device]
    col = {k: record.array(k)[device] for k in ("tau1_s", "tau2_s", "w1", "beta")}
    phi = relaxation(law, t, col["tau1_s"], col["tau2_s"], col["w1"], col["beta"])
    return record.array("g_inf_siemens")[device] + record.array("delta_g_siemens")[device] * phi


def _decays(store: CampaignFile, record: CalibrationRecord, path: Path) -> Path:
    """The first relaxation of a few devices (usable ones first) with the law the record holds for it:
    reads only those traces and fits nothing."""
    protocol = "decay" if store.units("decay") else BIAS_PROTOCOL
    if protocol == "decay":
        rows = _shown_units(store, protocol)
        dev = store.columns(protocol, ("device",))["device"][rows]
        ok = np.array([record.status[int(d)] == "ok" for d in dev])
        rows = np.concatenate([rows[ok], rows[~ok]])[:SHOWN_DEVICES]
        where = [""] * rows.size
    else:  # one SMU device: its first relaxation at each bias
        biases = unit_biases(store)
        rows = np.sort(np.unique(biases, return_index=True)[1][:SHOWN_DEVICES])
        where = [f" at {biases[r]:g} V" for r in rows]
    idx, t, g = _read_units(store, protocol, np.sort(rows))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k in range(idx.size):
        device = int(idx[k])
        n = int(np.isfinite(t[k]).sum())  # traces shorter than the longest are NaN-padded
        tu, gu = t[k][:n], g[k][:n]
        color = f"C{k}"
        r, c = divmod(device, record.shape[1])
        ax.plot(tu, gu * 1e9, ".", ms=2, color=color, alpha=0.5)
        name = f"({r},{c}){where[k]}"
        if record.status[device] == "ok":
            label = f"{name} {record.law[device]}, tau {record.array('tau_s')[device]:.3g} s"
            ax.plot(tu, _record_curve(record, device, tu) * 1e9, "-", color=color, label=label)
        else:
            ax.plot([], [], ".", color=color, label=f"{name} {record.status[device]}")
    ax.set_xlabel("time since the potentiating train (s)")
    ax.set_ylabel("conductance (nS)")
    ax.set_title("measured relaxations (dots) and the record's laws (lines)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _failed_units(store: CampaignFile, record: CalibrationRecord) -> tuple[list[str], Array, Array] | None:
    """(names, t (U, N) s, g (U, N) S) of the first relaxation of up to ``SHOWN_FAILED`` devices whose
    status is not ok, taking the statuses in turn so that every kind of failure is shown; None if none.
    Reads the device column and those few traces only."""
    protocol = "decay" if store.units("decay") else BIAS_PROTOCOL
    dev = store.columns(protocol, ("device",))["device"]
    first_dev, first_row = np.unique(dev, return_index=True)
    status = np.array(record.status, dtype=object)[first_dev]
    by_status: dict[str, list[int]] = {}
    for s in np.unique(status.astype(str)):
        if s not in ("ok", "not_measured"):
            by_status[s] = first_row[status == s][:SHOWN_FAILED].tolist()
    order = sorted(by_status, key=lambda s: (s not in VERDICTS, s))  # the verdicts first
    units: list[int] = []
    while len(units) < SHOWN_FAILED and any(by_status.values()):
        for s in order:
            if by_status[s] and len(units) < SHOWN_FAILED:
                units.append(by_status[s].pop(0))
    if not units:
        return None
    idx, t, g = _read_units(store, protocol, np.array(units))
    names = [f"device {divmod(int(d), record.shape[1])}" for d in idx]
    return names, t, g


def failed_fits_page(names: list[str], t: Array, g: Array, path: Path, model: str = "auto") -> list[str]:
    """Plot each relaxation (data and best law above, residuals / |delta_g| below) with its verdict and
    test statistics into ``path``; returns one line per relaxation saying why it failed."""
    fit = fit_decay(t, g, model=model)
    n = len(names)
    fig, ax = plt.subplots(2, n, figsize=(3.6 * n, 5.6), squeeze=False, sharex="col", height_ratios=(3, 2))
    lines = []
    for i, name in enumerate(names):
        stats = {
            k: float(getattr(fit, k)[i])
            for k in ("noise", "runs_z", "lag1", "sys_rel", "r2_max", "counter_rel")
        }
        why = reason(
            str(fit.status[i]), float(fit.r2[i]), stats, t.shape[1], str(fit.law[i]), float(fit.beta[i])
        )
        lines.append(f"{name}: {fit.status[i]} ({fit.law[i]} law): {why}")
        pred = fit.predict(t[i])[i]
        ax[0, i].plot(t[i], g[i] * 1e6, ".", ms=2, color="0.4", label="measured")
        if np.isfinite(pred).all():
            ax[0, i].plot(t[i], pred * 1e6, "-", color="tab:red", label=f"best law: {fit.law[i]}")
            ax[1, i].plot(t[i], (g[i] - pred) / abs(fit.delta_g[i]), ".", ms=2, color="tab:red")
        ax[1, i].axhline(0.0, color="k", lw=0.6)
        for t_jump in fit.jump_t[i][np.isfinite(fit.jump_t[i])] if fit.status[i] == "stepwise" else ():
            ax[0, i].axvline(t_jump, color="tab:purple", lw=0.8, ls="--")
        if t[i, 0] > 0 and t[i, -1] / t[i, 0] > 100:
            ax[0, i].set_xscale("log")
        param = f"tau {fit.tau[i]:.3g} s" + (f", beta {fit.beta[i]:.2f}" if np.isfinite(fit.beta[i]) else "")
        text = (
            f"{param}\nR^2 {fit.r2[i]:.4f} (max {stats['r2_max']:.4f})\nruns z {stats['runs_z']:.1f}, "
            f"lag-1 {stats['lag1']:.2f}\nsystematic {stats['sys_rel']:.1%} of amplitude\n"
            f"noise {stats['noise'] / abs(fit.delta_g[i]):.1e} of amplitude"
        )
        falling = g[i, 0] >= g[i, -1]  # the empty corners: lower left and upper right of a falling trace
        ax[0, i].text(
            0.03,
            0.03 if falling else 0.97,
            text,
            transform=ax[0, i].transAxes,
            ha="left",
            va="bottom" if falling else "top",
            fontsize=6.5,
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
        )
        ax[0, i].set_title(f"{name}\n{fit.status[i]}", fontsize=8, color="tab:red" if not fit.ok[i] else "k")
        ax[0, i].legend(fontsize=6, loc="upper right" if falling else "lower right")
        ax[1, i].set_xlabel("time since the pulse (s)")
    ax[0, 0].set_ylabel("conductance (uS)")
    ax[1, 0].set_ylabel("residual / |delta_g|")
    fig.suptitle("fits that failed: data, best law, residuals, verdict (calibration.verdict)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return lines


def _pulses(pulses: Mapping[str, tuple[np.ndarray, ...]], record: CalibrationRecord, path: Path) -> Path:
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    device = int(pulses["up"][0][0])
    law = PulseLaw.from_record(record).at(device)  # the device's own law (device_models.pulse_law)
    for j, (pol, polarity) in enumerate((("up", 1), ("down", -1))):
        idx, volts, widths, dg = pulses[pol]
        sel = idx == device
        for k, w in enumerate(np.unique(widths[sel])):
            m = sel & (widths == w)
            ax[j].plot(np.abs(volts[m]), np.abs(dg[m]) * 1e9, "o", color=f"C{k}", label=f"{w * 1e6:g} us")
            v = np.linspace(np.abs(volts[m]).min(), np.abs(volts[m]).max(), 50)
            ax[j].plot(v, law.dg(v, w, polarity) * 1e9, "-", color=f"C{k}")
        ax[j].set_yscale("log")
        ax[j].set_xlabel("|pulse amplitude| (V)")
        ax[j].set_title(
            f"{'potentiation' if pol == 'up' else 'depression'}, device {divmod(device, record.shape[1])}"
        )
    ax[0].set_ylabel("|dG| per pulse (nS)")
    ax[0].legend(title="width", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def mapping_plot(mapping: StpnMapping, path: Path) -> Path:
    """Trained versus hardware lambda and |gamma|, one dot per synapse."""
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.8))
    ax[0].plot(mapping.lam_trained.ravel(), mapping.lam_hardware.ravel(), ".", ms=3)
    lo, hi = np.nanmin(mapping.lam_trained), np.nanmax(mapping.lam_trained)
    ax[0].plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax[0].set_xlabel("trained lambda")
    ax[0].set_ylabel("hardware lambda")
    ax[0].set_title("retention per step")
    inside = mapping.gamma_in_range.ravel()
    gt, gh = np.abs(mapping.gamma_trained.ravel()), np.abs(mapping.gamma_hardware.ravel())
    ax[1].loglog(gt[inside], gh[inside], ".", ms=3, label="in the pulse window")
    ax[1].loglog(gt[~inside], gh[~inside], ".", ms=3, color="tab:red", label="clipped")
    ax[1].set_xlabel("trained |gamma|")
    ax[1].set_ylabel("hardware |gamma|")
    ax[1].set_title("plasticity per Hebbian event")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
