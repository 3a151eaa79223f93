"""Decay time versus decay bias: fit the ``device_models`` law to tau measured at several biases.

ln tau(V) = ln tau_ref - (V - V_ref) / V_efold is linear in V, so every device's (tau_ref, V_efold) is a
closed-form weighted least-squares line through its measured ln tau, all devices at once (no loop).
V_ref is the mean of the biases with a usable tau, where tau_ref and the slope are nearly uncorrelated.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from device_models.record import BiasLaw, CalibrationError

Array = NDArray[np.float64]


def fit_bias_law(biases_v: Array, tau_s: Array) -> BiasLaw:
    """Fit tau(V) = tau_ref exp(-(V - V_ref)/V_efold) per device to tau_s (B, D) measured at biases_v (B,).

    Devices need finite, positive tau at two or more distinct biases; others get NaN. A device whose tau
    does not change with bias has an infinite e-fold voltage, stored as NaN (no usable bias control).
    """
    v = np.asarray(biases_v, dtype=np.float64)
    tau = np.atleast_2d(np.asarray(tau_s, dtype=np.float64))
    if v.ndim != 1 or tau.shape[0] != v.size:
        raise CalibrationError(f"need tau per bias: {v.size} biases but tau has shape {tau.shape}")
    if np.unique(v).size < 2:
        raise CalibrationError("a bias law needs relaxations measured at two or more different biases")
    use = np.isfinite(tau) & (tau > 0)
    w = use.astype(np.float64)
    y = np.log(np.where(use, tau, 1.0))
    v_ref = float(np.mean(v[use.any(axis=1)])) if use.any() else float(np.mean(v))
    x = (v - v_ref)[:, None] * np.ones_like(y)
    n = w.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xm = (w * x).sum(axis=0) / n
        ym = (w * y).sum(axis=0) / n
        sxx = (w * (x - xm) ** 2).sum(axis=0)
        slope = (w * (x - xm) * (y - ym)).sum(axis=0) / sxx
        intercept = ym - slope * xm  # ln tau at V_ref
        resid = np.where(use, y - (intercept + slope * x), 0.0)
        rss = (resid**2).sum(axis=0)
        slope_err = np.where(n > 2, np.sqrt(rss / np.maximum(n - 2, 1) / sxx), np.nan)
        fitted = (n >= 2) & (sxx > 0)
        efold = np.where(fitted & (slope != 0), -1.0 / slope, np.nan)
        efold_err = np.abs(efold) ** 2 * slope_err
        rms = np.sqrt(rss / n)
    tau_ref = np.where(fitted, np.exp(intercept), np.nan)
    return BiasLaw.model_validate(
        {
            "bias_ref_v": v_ref,
            "biases_v": v.tolist(),
            "tau_measured_s": list(np.where(use, tau, np.nan)),
            "tau_ref_s": tau_ref,
            "efold_v": efold,
            "efold_err_v": np.where(fitted, efold_err, np.nan),
            "rms_log_residual": np.where(fitted, rms, np.nan),
        }
    )
