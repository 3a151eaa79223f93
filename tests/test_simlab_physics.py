"""The simulated lab measured through the drivers: decays follow the device's known ground truth."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.optimize import curve_fit

from drivers import SafetyLimits, open_controller, open_instrument
from drivers.sim import SimArray, SimLab
from drivers.sim.protocol_xbarsim import forget_arrays, sim_array

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-2, max_compliance_a=1e-3, max_pulses_per_s=1e3
)
HOSTS = ["k2450.sim", "k2636b.sim", "b2912a.sim"]


def fit_tau(t_s: np.ndarray, i_a: np.ndarray) -> float:
    """Decay time of i(t) = a exp(-t / tau) + c, least squares (independent of the simulator's code)."""

    def model(t, a, tau, c):
        return a * np.exp(-t / tau) + c

    p0 = (i_a[0] - i_a[-1], t_s[-1] / 4, i_a[-1])
    (_, tau, _), _ = curve_fit(model, t_s, i_a, p0=p0, maxfev=20_000)
    return float(tau)


@pytest.mark.parametrize("host", HOSTS)
def test_smu_decay_after_a_pulse_matches_the_devices_tau(host) -> None:
    lab = SimLab(seed=11)
    read_v = 0.1
    truth = float(lab.device(host).tau_s(read_v))
    with open_instrument(f"TCPIP::{host}::INSTR", LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        for _ in range(5):  # drive the short-term part close to saturation
            smu.pulse(2.0, 1e-2)
            smu.wait(1e-3)
        train = smu.read_train(read_v, 0.05, 1000)
    tau = fit_tau(train.t_s, train.i_a)
    assert tau == pytest.approx(truth, rel=0.1)
    assert train.t_s[-1] > 49.0  # 50 s of virtual time


@pytest.mark.parametrize("host", HOSTS)
def test_virtual_clock_makes_long_measurements_fast_and_reproducible(host) -> None:
    results = []
    for _ in range(2):
        lab = SimLab(seed=4)
        wall = time.perf_counter()
        with open_instrument(f"TCPIP::{host}::INSTR", LIMITS, sim=lab) as smu:
            smu.set_compliance(1e-4)
            smu.nplc = 0.1
            smu.pulse(1.5, 1e-3)
            smu.wait(10.0)
            results.append(smu.read_train(0.1, 1e-2, 200))
        assert lab.clock.now_s() > 10.0 + results[-1].t_s[-1]  # the wait plus the train's own span
        assert results[-1].t_s[-1] >= 199 * 1e-2
        assert time.perf_counter() - wall < 5.0  # generous: a 12 s virtual run costs milliseconds
    np.testing.assert_array_equal(results[0].i_a, results[1].i_a)
    assert SimLab(seed=5).device(host).tau_ref_s != SimLab(seed=4).device(host).tau_ref_s


def test_pulse_potentiates_and_the_short_term_part_relaxes_at_tau() -> None:
    """Two reads at a known spacing after a saturating pulse: the excess current decays as exp(-dt/tau)."""
    lab = SimLab(seed=21)
    device = lab.device("k2636b.sim")
    with open_instrument("TCPIP::k2636b.sim::INSTR", LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.nplc = 0.1
        rest = smu.read_train(0.1, 1e-2, 50).i_a.mean()
        for _ in range(5):
            smu.pulse(2.0, 1e-2)
            smu.wait(1e-3)
        early = smu.read_train(0.1, 1e-2, 50).i_a.mean()
        smu.wait(5.0)
        late = smu.read_train(0.1, 1e-2, 50).i_a.mean()
    assert early - rest > 10 * 0.01 * 2e-8 * 0.1  # well above the read noise
    tau = float(device.tau_s(0.1))
    spacing = 5.0 + 50 * 1e-2  # wait plus one train, to the first reading of the next train (approx.)
    expected_ratio = np.exp(-spacing / tau)
    assert (late - rest) / (early - rest) == pytest.approx(expected_ratio, rel=0.1)


def test_crossbar_per_device_tau_matches_the_arrays_ground_truth() -> None:
    forget_arrays()
    rows, cols, seed = 3, 4, 5
    with open_controller(f"xbarsim://{rows}x{cols}?seed={seed}", LIMITS) as xbar:
        xbar.set_compliance(1e-4)
        truth = sim_array(rows, cols, seed).tau_s(0.0)  # idle lines sit at 0 V
        measured = np.zeros((rows, cols))
        for r in range(rows):
            for _ in range(5):
                xbar.pulse_row(r, [2.0] * cols, 1e-2)
                xbar.wait(1e-3)
            train = xbar.read_row_train(r, 0.1, every_s=0.5, count=120)
            assert train.i_a.shape == (120, cols)
            measured[r] = [fit_tau(train.t_s, train.i_a[:, c]) for c in range(cols)]
    np.testing.assert_allclose(measured, truth, rtol=0.15)
    # the ground truth is reproducible from the URL's size and seed alone
    np.testing.assert_array_equal(SimArray(rows, cols, seed).tau_s(0.0), truth)
    assert np.ptp(truth) > 0.1 * truth.mean()  # devices really differ
