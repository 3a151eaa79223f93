"""Calibration report: PNG plots and a text summary of a ``CalibrationRecord`` (and its campaign data).

decay_fits.png       measured relaxations of a few devices with their fitted law
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

from calibration.analysis import load_decays, load_pulses, unit_biases
from calibration.fit import fit_decay
from calibration.mapping import StpnMapping
from calibration.smu_campaign import PROTOCOL as BIAS_PROTOCOL
from calibration.storage import CampaignFile
from device_models.realisation import DEFAULT_DT_S
from device_models.record import CalibrationRecord

SHOWN_DEVICES = 6


def write_report(
    record: CalibrationRecord, out_dir: Path, data: Path | None = None, dt_s: float = DEFAULT_DT_S
) -> list[Path]:
    """Write the report files into ``out_dir``; the raw-data plots need the campaign file ``data``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_histograms(record, out_dir / "tau_lambda_hist.png", dt_s)]
    if record.bias_law is not None:
        written.append(_bias_law(record, out_dir / "bias_law.png"))
    if data is not None:
        with CampaignFile(data) as store:
            written.append(_decays(store, record, out_dir / "decay_fits.png"))
            pulses = load_pulses(store)
        if pulses["up"][0].size and record.reference_pulse is not None:
            written.append(_pulses(pulses, record, out_dir / "pulse_response.png"))
    summary = out_dir / "summary.txt"
    summary.write_text(summary_text(record, dt_s) + "\n")
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


def _decays(store: CampaignFile, record: CalibrationRecord, path: Path) -> Path:
    if store.units("decay"):
        idx, t, g, _ = load_decays(store)
        first = np.unique(idx, return_index=True)[1][:SHOWN_DEVICES]
        where = [""] * len(idx)
    else:  # one SMU device: its first relaxation at each bias
        idx, t, g, _ = load_decays(store, BIAS_PROTOCOL)
        biases = unit_biases(store)
        first = np.unique(biases, return_index=True)[1][:SHOWN_DEVICES]
        where = [f" at {b:g} V" for b in biases]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, u in enumerate(first):
        law = record.law[int(idx[u])]
        fit = fit_decay(t[u], g[u][None, :], model=law)
        color = f"C{k}"
        r, c = divmod(int(idx[u]), record.shape[1])
        ax.plot(t[u], g[u] * 1e9, ".", ms=2, color=color, alpha=0.5)
        name = f"({r},{c}){where[u]}"
        label = f"{name} {law}, tau {fit.tau[0]:.3g} s" if fit.ok[0] else f"{name} {fit.status[0]}"
        ax.plot(t[u], fit.predict(t[u])[0] * 1e9, "-", color=color, label=label)
    ax.set_xlabel("time since the potentiating train (s)")
    ax.set_ylabel("conductance (nS)")
    ax.set_title("measured relaxations (dots) and fits (lines)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _pulses(pulses: Mapping[str, tuple[np.ndarray, ...]], record: CalibrationRecord, path: Path) -> Path:
    ref = record.reference_pulse
    assert ref is not None
    a, b = record.array("amp_exponent"), record.array("width_exponent")
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    device = int(pulses["up"][0][0])
    for j, (pol, dg_ref) in enumerate(
        (("up", record.array("dg_up_siemens")), ("down", record.array("dg_down_siemens")))
    ):
        idx, volts, widths, dg = pulses[pol]
        sel = idx == device
        for k, w in enumerate(np.unique(widths[sel])):
            m = sel & (widths == w)
            ax[j].plot(np.abs(volts[m]), np.abs(dg[m]) * 1e9, "o", color=f"C{k}", label=f"{w * 1e6:g} us")
            v = np.linspace(np.abs(volts[m]).min(), np.abs(volts[m]).max(), 50)
            law = np.abs(dg_ref[device]) * (v / ref.amplitude_v) ** a[device] * (w / ref.width_s) ** b[device]
            ax[j].plot(v, law * 1e9, "-", color=f"C{k}")
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
