"""The simulated controller evolves only the addressed row; that must be the physics of evolving the
whole array at every command (the reference below, written the old way: every device, every command)."""

from __future__ import annotations

import numpy as np
import pytest

from device_models.card import load_card
from device_models.chip import device_grid
from drivers.sim.devices import DeviceArray
from drivers.sim.lab import SimArray
from drivers.sim.xbar_firmware import LATENCY_S, XbarFirmware

ROWS, COLS, SEED = 3, 4, 5


def _handle(firmware: XbarFirmware, line: str) -> str:
    """The reply to one protocol-1 line (one command, one latency: the reference's unit of time)."""
    reply = firmware.handle_line(line).reply
    assert reply is not None
    return reply


def quiet_card(law: str):
    """The shipped card with the given law and no cycle-to-cycle or read noise (so both sides agree
    exactly whatever order they draw random numbers in)."""
    card = load_card(None)
    return card.model_copy(
        update={
            "decay": card.decay.model_copy(update={"law": law}),
            "variability": card.variability.model_copy(update={"c2c_pulse_rel": 0.0, "read_noise_rel": 0.0}),
        }
    )


# (command, row, per-column volts, duration s) of a short session; waits are idle time at 0 V
SESSION = [
    ("pulse", 1, [1.5, 0.0, 1.2, 1.8], 1e-3),
    ("wait", None, None, 0.7),
    ("read", 0, [0.2] * COLS, None),
    ("pulse", 0, [0.0, 1.6, 0.0, 0.0], 5e-4),
    ("read", 1, [0.2] * COLS, None),
    ("wait", None, None, 2.5),
    ("pulse", 2, [1.9, 1.9, 1.9, 1.9], 1e-3),
    ("read", 1, [0.2] * COLS, None),
    ("read", 2, [0.2] * COLS, None),
    ("wait", None, None, 0.3),
    ("read", 0, [0.2] * COLS, None),
]


@pytest.mark.parametrize("law", ["exp", "biexp", "stretched"])
def test_row_wise_evolution_equals_whole_array_evolution(law: str) -> None:
    card = quiet_card(law)
    array = SimArray(ROWS, COLS, SEED, card=card)
    firmware = XbarFirmware(array, protocol=1)
    assert _handle(firmware, "ILIM 1e-3") == "OK"
    rng = np.random.default_rng([SEED, 1000 + ROWS * 1000 + COLS])
    ref = DeviceArray(card, (ROWS, COLS), rng, chip=device_grid(card, SEED, ROWS, COLS))
    np.testing.assert_array_equal(ref.tau_ref_s, array.devices.tau_ref_s)  # same devices

    def ref_command(volts: np.ndarray | None, duration_s: float) -> np.ndarray | None:
        """The whole array through one command: latency at 0 V, then the command's own drive."""
        ref.hold(0.0, LATENCY_S)
        if volts is None:
            return None
        current = ref.read_current_a(volts) if duration_s == card.read.read_time_s else None
        ref.hold(volts, duration_s)
        return current

    ref_command(None, 0.0)  # the ILIM command's latency
    for kind, row, volts, duration in SESSION:
        if kind == "wait":
            array.clock.sleep(duration)
            ref.hold(0.0, duration)
            continue
        full = np.zeros((ROWS, COLS))
        full[row] = volts
        if kind == "pulse":
            reply = _handle(firmware, f"PULSEROW {row} {duration:g} " + ",".join(f"{v:g}" for v in volts))
            assert reply == "OK"
            ref_command(full, duration)
        else:
            reply = _handle(firmware, f"READROW {row} 0.2")
            got = np.array([float(x) for x in reply.split(",")[1:]])
            want = ref_command(full, card.read.read_time_s)
            assert want is not None
            np.testing.assert_allclose(got, want[row], rtol=1e-6)  # the reply carries 7 digits
    _handle(firmware, "RST")  # settles every row up to now
    ref_command(None, 0.0)  # its latency
    np.testing.assert_allclose(array.devices.conductance_siemens(), ref.conductance_siemens(), rtol=1e-12)
    assert np.all(array.settled_s == array.clock.now_s())


def test_a_row_left_unaddressed_still_relaxes_across_connections() -> None:
    card = quiet_card("exp")
    array = SimArray(2, 2, SEED, card=card)
    first = XbarFirmware(array, protocol=1)
    _handle(first, "ILIM 1e-3")
    _handle(first, "PULSEROW 0 1e-3 1.8,1.8")
    peak = np.array([float(x) for x in _handle(first, "READROW 0 0.2").split(",")[1:]])
    array.clock.sleep(3.0)  # row 0 is not addressed again on this connection
    second = XbarFirmware(array, protocol=1)  # a new connection to the same (persistent) array
    _handle(second, "ILIM 1e-3")
    later = np.array([float(x) for x in _handle(second, "READROW 0 0.2").split(",")[1:]])
    g_lt = array.devices.g_lt_siemens[0] * 0.2
    tau = array.devices.tau_s(0.0)[0]
    # the short-term part decayed by about exp(-3 s / tau) (plus a few ms of reads and latency)
    ratio = (later - g_lt) / (peak - g_lt)
    np.testing.assert_allclose(ratio, np.exp(-3.0 / tau), rtol=0.01)
