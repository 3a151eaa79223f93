"""``hwloop devices show`` / ``relax`` through the real entry point."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwloop.cli import app
from hwloop.commands.devices import parse_pulse, parse_quantity
from hwloop.errors import HwloopError

runner = CliRunner()


def test_show_prints_every_parameter_with_units() -> None:
    result = runner.invoke(app, ["devices", "show"], terminal_width=200)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "window.g_max_siemens" in out and "2e-08" in out and "ILLUSTRATIVE" in out
    row = next(line for line in out.splitlines() if "bias.bias_ref_v" in line)
    assert " V " in row and "0.6" in row
    assert "decay time over the bias window: 0.0907 s .. 11 s" in out


def test_relax_json_follows_the_pulse_law_then_an_exponential(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["devices", "relax", "--pulse", "1.5V,50us", "--for", "3s", "--points", "7", "--json"]
    )
    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)
    # peak: g_max (1 - exp(-drive dg_up / g_max)), drive = (1.5/1.5)^2 * (50us / 100us) = 0.5
    peak = 5e-9 * (1 - math.exp(-0.5 * 2e-10 / 5e-9))
    assert trace["g_st_peak_siemens"] == pytest.approx(peak, rel=1e-12)
    for t, g in zip(trace["time_s"], trace["g_st_siemens"], strict=True):
        assert g == pytest.approx(peak * math.exp(-t / 1.0), rel=1e-12)  # tau = 1 s at 0.6 V


def test_relax_at_another_bias_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "relax.png"
    result = runner.invoke(
        app,
        ["devices", "relax", "--bias", "850mV", "--for", "2s", "--points", "3", "--json", "--plot", str(out)],
    )
    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)
    assert trace["tau_s"] == pytest.approx(1 / math.e)  # one e-fold (0.25 V) above the reference bias
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pulse", "1.5,100us"], "error: --pulse amplitude '1.5': expected a number with unit V"),
        (["--pulse", "1.5V"], "error: --pulse '1.5V': expected AMPLITUDE,WIDTH"),
        (["--pulse", "1.5V,100uV"], "error: --pulse width '100uV': expected a number with unit s"),
        (["--pulse", "5V,100us"], "error: --pulse amplitude 5 V exceeds the card's v_max_v (2 V)"),
        (["--for", "-1s"], "error: --for '-1s': the duration must be positive"),
        (["--bias", "3V"], "error: --bias 3 V is outside the card's window"),
        (["nope.toml"], "error: device card nope.toml not found"),
    ],
)
def test_bad_relax_arguments_are_one_error_line(args: list[str], message: str, hwloop_run) -> None:
    code, _, err = hwloop_run("devices", "relax", *args)
    err = err.strip()
    assert code == 2
    assert err.startswith(message) and len(err.splitlines()) == 1


def test_bad_card_through_show_in_a_real_process(tmp_path: Path, hwloop_process) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[meta]\nname = 'x'\nillustrative = true\n")
    proc = hwloop_process("devices", "show", str(bad), timeout=120)
    assert proc.returncode == 2 and "field 'window' is missing" in proc.stderr


def test_quantity_parser() -> None:
    assert parse_quantity("100us", "s", "x") == 1e-4
    assert parse_quantity("2.5ms", "s", "x") == 2.5e-3
    assert parse_quantity(" -1.2 V", "V", "x") == -1.2
    assert parse_pulse("-1V,1e-3s") == (-1.0, 1e-3)
    with pytest.raises(HwloopError):
        parse_quantity("1.5 volts", "V", "x")


def test_art_eval_runs_on_the_emulated_backend_with_a_card(tmp_path: Path) -> None:
    """The ART command passes --card / --backend-seed through to the emulated backend (integration)."""
    from device_models.card import DEFAULT_CARD

    args = ["art", "eval", "--backend", "emulated", "--card", str(DEFAULT_CARD), "--backend-seed", "2"]
    result = runner.invoke(app, [*args, "--n", "64", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["backend"] == "emulated" and payload["backend_options"]["seed"] == 2
    assert 0.0 <= payload["accuracy"] <= 1.0
    assert payload["energy_joules"]["read_j"] > 0  # the physical counters were live


def test_show_gives_the_realisable_lambda_of_every_bias_topology_at_dt() -> None:
    """By hand: tau(V) = 1 s exp(-(V - 0.6) / 0.25) over the 0-1.2 V window; 'none' holds 0 V only."""
    result = runner.invoke(app, ["devices", "show", "--dt-s", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    table = {row["bias"]: row for row in json.loads(result.stdout)["realisable_lambda"]["topologies"]}
    fast, slow = math.exp(-0.05 / math.exp(-0.6 / 0.25)), math.exp(-0.05 / math.exp(0.6 / 0.25))
    for name in ("lines", "rows", "device"):
        assert table[name]["lambda_min"] == pytest.approx(fast, rel=1e-9)
        assert table[name]["lambda_max"] == pytest.approx(slow, rel=1e-9)
    assert table["none"]["lambda_min"] == table["none"]["lambda_max"] == pytest.approx(slow, rel=1e-9)
    assert [table[n]["sources"] for n in ("lines", "rows", "device", "none")] == ["H + 2K", "H", "2HK", "0"]


def test_show_refuses_a_card_whose_bias_window_reaches_the_write_threshold(
    tmp_path: Path, hwloop_run
) -> None:
    from device_models.card import DEFAULT_CARD

    card = tmp_path / "unsafe.toml"
    card.write_text(DEFAULT_CARD.read_text().replace("bias_max_v = 1.2 ", "bias_max_v = 1.4 "))
    result = hwloop_run("devices", "show", str(card))
    assert result.code == 2 and result.out == ""
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "bias window 0..1.4 V reaches pulse.v_threshold_v (1.3 V)" in lines[0]
