"""ArrayConfig, its non-ideality presets and the compiled array (``device_models.array``).

Against ground truths: an array of ideal devices with a bias per device holds the trained W and every
lambda inside the window exactly; a line-biased compiled array's retention is the device law solved
directly at V_row - V_col for each drawn device; a preset is the same array as its switches spelled
one by one; bad input is one error line.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from device_models.array import NONIDEALITY_PRESETS, ArrayConfig, ArrayConfigError, nonidealities
from device_models.card import load_card
from device_models.chip import draw_chip
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import Synapses, make_backend
from hwloop.errors import HwloopError

CARD = load_card()


def _synapses(h: int = 4, k: int = 6, seed: int = 0) -> Synapses:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(h, k, generator=gen, dtype=torch.float64) * 0.5
    lam = 0.4 + 0.55 * torch.rand(h, k, generator=gen, dtype=torch.float64)
    gamma = torch.randn(h, k, generator=gen, dtype=torch.float64) * 0.2
    return Synapses(w, lam, gamma)


def test_ideal_devices_with_a_bias_per_device_hold_the_trained_weight_and_lambda_exactly() -> None:
    syn = _synapses()
    xb = EmulatedCrossbar(nonidealities="ideal-devices", bias="device", dt_s=0.1)
    xb.program(syn)
    torch.testing.assert_close(xb.effective_weight, syn.weight, rtol=1e-12, atol=1e-12)
    # every trained lambda lies inside the window's retention range at dt = 0.1 s on the shipped card
    lo, hi = (math.exp(-0.1 / t) for t in CARD.tau_range_s())
    assert bool(((syn.lam > lo) & (syn.lam < hi)).all())
    torch.testing.assert_close(xb.retention, syn.lam.expand(2, -1, -1), rtol=1e-12, atol=0)


def test_a_preset_is_the_array_of_its_switches_and_a_given_switch_changes_it() -> None:
    syn = _synapses(seed=1)
    preset = EmulatedCrossbar(nonidealities="ideal-devices", seed=3)
    spelled = EmulatedCrossbar(
        seed=3,
        read_noise=False,
        d2d=False,
        c2c=False,
        stuck=False,
        quantise=False,
        saturation=False,
        fault_aware=False,
    )
    preset.program(syn)
    spelled.program(syn)
    assert torch.equal(preset.effective_weight, spelled.effective_weight)
    assert torch.equal(preset.retention, spelled.retention)
    assert preset.config == spelled.config
    mixed = EmulatedCrossbar(nonidealities="ideal-devices", read_noise=True)
    assert mixed.read_noise and not mixed.d2d and not mixed.c2c
    assert nonidealities("no-noise", stuck=False) == NONIDEALITY_PRESETS["no-faults"].model_copy(
        update={"read_noise": False, "c2c": False}
    )


def test_unknown_presets_switches_and_values_are_one_error_line() -> None:
    with pytest.raises(
        HwloopError, match="nonidealities='perfect' is no preset; choose one of default"
    ) as exc:
        make_backend("emulated", nonidealities="perfect")
    assert "\n" not in str(exc.value)
    with pytest.raises(ArrayConfigError, match="nonidealities: noise"):
        nonidealities({"noise": False})
    with pytest.raises(ArrayConfigError, match=r"array config: dt_s: .*greater than 0"):
        ArrayConfig.build(dt_s=-1.0)
    with pytest.raises(ArrayConfigError, match="array config: bias"):
        ArrayConfig.build(bias="diagonal")


@pytest.mark.parametrize(
    ("backend", "option", "value", "phrase"),
    [
        ("emulated", "normalisation", "bogus", "normalisation: Input should be 'exact' or 'native'"),
        ("aware", "normalisation", "bogus", "normalisation: Input should be 'exact' or 'native'"),
        ("emulated", "dt_s", -0.1, "dt_s: Input should be greater than 0"),
        ("aware", "dt_s", math.nan, "dt_s: Input should be a finite number"),
        ("emulated", "max_write_gain", 0.5, "max_write_gain: Input should be greater than or equal to 1"),
        ("aware", "periphery", "hermes", "periphery: Input should be 'none', 'aihwkit' or 'both'"),
        ("emulated", "bias", "diagonal", "bias: Input should be 'lines', 'rows', 'device' or 'none'"),
        ("aihwkit", "normalisation", "bogus", "normalisation: Input should be 'exact' or 'native'"),
        ("aihwkit", "dt_s", -0.1, "dt_s: Input should be greater than 0"),
        (
            "aihwkit",
            "seed",
            1.5,
            "seed: Input should be a valid integer, got a number with a fractional part",
        ),
        ("aware", "seed", 2.5, "seed: Input should be a valid integer, got a number with a fractional part"),
        ("lab", "max_write_gain", 0.0, "max_write_gain: Input should be greater than or equal to 1"),
    ],
)
def test_backend_options_are_checked_once_by_the_config(
    backend: str, option: str, value: object, phrase: str
) -> None:
    """The emulated, aware, aihwkit and lab backends leave their options' checks to ArrayConfig: one
    error line that names the option, what it must be and the bad value."""
    with pytest.raises(ArrayConfigError) as exc:
        make_backend(backend, **{option: value})
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"array config: {phrase}")
    assert message.endswith(f"(got {value!r})")


def test_unclipped_biases_are_refused_for_every_topology_but_a_source_per_device() -> None:
    # lines and rows are least-squares fits inside the window: only a bias per device can leave it
    off = {"bias_limits": False}
    for topology in ("lines", "rows", "none"):
        with pytest.raises(ArrayConfigError, match=f"bias_limits=False needs bias='device'.*'{topology}'"):
            ArrayConfig.build(None, nonidealities=off, bias=topology)
    assert not ArrayConfig.build(None, nonidealities=off, bias="device").nonidealities.bias_limits


def test_the_cli_takes_a_preset_and_refuses_an_unknown_one_in_one_line(hwloop_process) -> None:
    common = ("art", "eval", "--n", "50", "--seed", "7", "--backend", "emulated", "--json")
    ok = hwloop_process(*common, "--backend-option", "nonidealities=no-noise")
    assert ok.returncode == 0, ok.stderr
    bad = hwloop_process(*common, "--backend-option", "nonidealities=perfect")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: nonidealities='perfect' is no preset")
    assert "Traceback" not in bad.stderr


def test_line_biased_retention_is_the_device_law_solved_at_row_minus_column_voltage() -> None:
    syn = _synapses(h=5, k=4, seed=2)
    config = ArrayConfig.build(seed=11, dt_s=0.1)  # bias="lines", every non-ideality on
    prog = config.compile(*syn, noise=torch.Generator().manual_seed(11))
    lines = prog.line_bias
    assert lines is not None and prog.dac_count == 5 + 2 * 4
    k = 4
    v = lines.row_v[:, None] - lines.col_v[None, :]  # (H, 2K): G+ in column j, G- in column K + j
    bias = np.stack([v[:, :k], v[:, k:]])
    chip = draw_chip(CARD, 11, (5, 4))
    b = CARD.bias
    tau = CARD.decay.tau_s * chip["tau"] * np.exp(-(bias - b.bias_ref_v) / b.bias_efold_v)
    expected = np.exp(-0.1 / tau)
    usable = ~(chip["stuck_on"] | chip["stuck_off"])
    analog = ~prog.digital_f.numpy()
    held = usable & analog  # digital synapses keep the trained lambda
    np.testing.assert_allclose(prog.retention.numpy()[held], expected[held], rtol=1e-12)
    assert np.all((bias >= b.bias_min_v - 1e-12) & (bias <= b.bias_max_v + 1e-12))
    np.testing.assert_allclose(prog.decay_bias_v.numpy(), bias, atol=1e-12)


def test_an_emulated_array_built_from_its_config_is_the_same_array() -> None:
    syn = _synapses(seed=4)
    first = EmulatedCrossbar(seed=9, nonidealities="no-faults", bias="rows", dt_s=0.05)
    again = EmulatedCrossbar.from_config(first.config)
    first.program(syn)
    again.program(syn)
    assert again.config == first.config
    assert torch.equal(first.effective_weight, again.effective_weight)
    assert torch.equal(first.retention, again.retention)
    assert first.dac_count == again.dac_count == 4  # rows: one driver per row line
