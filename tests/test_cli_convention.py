"""The CLI convention: --json prints the result on stdout, --json-out PATH writes the same result."""

from __future__ import annotations

import json
from pathlib import Path


def test_devices_show_json_and_json_out_carry_the_same_card(hwloop_run, tmp_path: Path) -> None:
    code, printed, _ = hwloop_run("devices", "show", "--json")
    assert code == 0
    target = tmp_path / "card.json"
    code, out, err = hwloop_run("devices", "show", "--json-out", str(target))
    assert code == 0 and "g_min_siemens" in err + out  # the human table still prints
    assert json.loads(target.read_text()) == json.loads(printed)
    assert json.loads(printed)["window"]["g_min_siemens"] == 1e-9  # the shipped card's floor


def test_both_flags_print_and_write(hwloop_run, tmp_path: Path) -> None:
    target = tmp_path / "id.json"
    args = ("instruments", "identify", "TCPIP::k2450.sim::INSTR", "--json", "--json-out", str(target))
    code, out, _ = hwloop_run(*args)
    assert code == 0
    assert json.loads(out) == json.loads(target.read_text())
    assert "2450" in json.loads(out)["idn"]
