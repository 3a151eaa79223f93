"""The CLI convention: --json prints the result on stdout, --json-out PATH writes the same result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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


def test_every_result_command_takes_json_as_a_flag_and_json_out_as_a_path() -> None:
    """The convention holds for every command, including ones added later: a command with --json has it as
    a flag (never a path) and also takes --json-out PATH."""
    import typer

    from hwloop.cli import app

    def commands(cmd: Any, path: str) -> list[tuple[str, Any]]:
        own = [(path, cmd)]  # a group with a callback (``hwloop pong``) is a command too
        subs = getattr(cmd, "commands", {})
        return own + [c for name, sub in subs.items() for c in commands(sub, f"{path} {name}")]

    found = commands(typer.main.get_command(app), "hwloop")
    with_json = []
    for path, cmd in found:
        options = {opt: p for p in cmd.params if hasattr(p, "is_flag") for opt in p.opts}
        if "--json" in options:
            with_json.append(path)
            assert options["--json"].is_flag, f"{path}: --json must be a flag"
            assert "--json-out" in options, f"{path}: --json without --json-out"
    assert {"hwloop art eval", "hwloop pong", "hwloop sweep report", "hwloop calibrate map"} <= set(with_json)
