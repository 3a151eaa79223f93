"""--backend-option KEY=VALUE reaches the backend: parsed values, refusals, and an end-to-end check."""

from __future__ import annotations

import json

import pytest

from hwloop.commands.common import parse_backend_options
from hwloop.errors import HwloopError

NON_IDEALITIES = ("read_noise", "d2d", "c2c", "stuck", "quantise", "saturation", "bias_limits")


def test_values_are_read_as_json_scalars_or_kept_as_strings() -> None:
    parsed = parse_backend_options(["dt_s=0.05", "read_noise=false", "normalisation=native", "seed=3"])
    assert parsed == {"dt_s": 0.05, "read_noise": False, "normalisation": "native", "seed": 3}


@pytest.mark.parametrize("bad", ["bogus", "=1", ""])
def test_a_pair_without_key_or_equals_sign_is_refused(bad: str) -> None:
    with pytest.raises(HwloopError, match="KEY=VALUE"):
        parse_backend_options([bad])


def test_emulated_with_every_non_ideality_switched_off_scores_exactly_as_ideal(hwloop_process) -> None:
    """The emulated array with its non-idealities off must reproduce the ideal STPN's decisions."""
    common = ("art", "eval", "--n", "400", "--seed", "7", "--json")
    ideal = json.loads(hwloop_process(*common).stdout)
    off = [arg for name in NON_IDEALITIES for arg in ("--backend-option", f"{name}=false")]
    result = hwloop_process(*common, "--backend", "emulated", *off, "--backend-option", "bias=device")
    assert result.returncode == 0, result.stderr
    emulated = json.loads(result.stdout)
    assert emulated["accuracy"] == ideal["accuracy"]
    assert emulated["backend_options"]["extra"] == [f"{name}=false" for name in NON_IDEALITIES] + [
        "bias=device"
    ]


def test_an_option_the_backend_does_not_take_is_one_error_line(hwloop_process) -> None:
    result = hwloop_process(
        "art", "eval", "--n", "10", "--backend", "emulated", "--backend-option", "bogus=1"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: backend 'emulated' does not take option(s) bogus")
    assert "Traceback" not in result.stderr


def test_a_command_default_reaches_only_backends_that_take_it_and_yields_to_the_user() -> None:
    from hwloop.commands.common import backend_options

    pong = {"dt_s": 1 / 15}
    assert backend_options("emulated", defaults=pong) == {"dt_s": 1 / 15}
    assert backend_options("ideal", defaults=pong) == {}  # the ideal array has no notion of time
    user = backend_options("emulated", extra=["dt_s=0.05"], defaults=pong)
    assert user == {"dt_s": 0.05}


def test_pong_step_time_is_four_frames_at_60_hz_unless_the_record_says_otherwise(tmp_path) -> None:
    from experiments.pong.evaluate import step_seconds

    ckpt = tmp_path / "a.safetensors"
    assert step_seconds(ckpt) == pytest.approx(4 / 60)  # no record beside it
    ckpt.with_suffix(".json").write_text(json.dumps({"config": {"dt_s": 0.05}}))
    assert step_seconds(ckpt) == 0.05
