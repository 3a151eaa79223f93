"""Device cards: the shipped card loads; every kind of bad card fails with one line naming the field."""

from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from device_models.card import DEFAULT_CARD, DeviceCard, DeviceCardError, load_card
from hwloop.errors import HwloopError


def _shipped() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_CARD.read_text())


def test_shipped_card_is_marked_illustrative_and_matches_the_literature_anchors() -> None:
    card = load_card()
    assert card.meta.illustrative is True
    # Weilenmann et al.: decay tunable over ~0.1-10 s by bias; 4.3 nW idle at 0.6 V means G ~ 1e-8 S
    lo, hi = card.tau_range_s()
    assert lo == pytest.approx(1.0 * math.exp(-0.6 / 0.25)) and hi == pytest.approx(math.exp(0.6 / 0.25))
    assert 0.05 < lo < 0.2 and 5 < hi < 20
    assert card.window.g_min_siemens < 4.3e-9 / 0.6**2 < card.window.g_max_siemens


def test_json_card_equals_toml_card(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    path.write_text(json.dumps(_shipped()))
    assert DeviceCard.load(path) == load_card(DEFAULT_CARD)


@pytest.mark.parametrize(
    ("section", "field", "value", "named"),
    [
        ("window", "g_max_siemens", 5e-10, "window.g_max_siemens"),  # window below g_min: negative width
        ("window", "g_min_siemens", -1e-9, "window.g_min_siemens"),
        ("decay", "tau_s", 0.0, "decay.tau_s"),
        ("decay", "tau_s", -2.0, "decay.tau_s"),
        ("decay", "law", "power", "decay.law"),
        ("decay", "tau_s", None, "decay.tau_s"),  # missing
        ("bias", "bias_max_v", -1.0, "bias.bias_max_v"),
        ("variability", "stuck_on_fraction", 1.5, "variability.stuck_on_fraction"),
        ("pulse", "v_ref_volts", 1.0, "pulse.v_ref_volts"),  # a typo is an unknown field, not ignored
    ],
)
def test_bad_card_fails_with_one_line_naming_the_field(
    tmp_path: Path, section: str, field: str, value: Any, named: str
) -> None:
    data = copy.deepcopy(_shipped())
    if value is None:
        del data[section][field]
    else:
        data[section][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DeviceCardError) as info:
        DeviceCard.load(path)
    message = str(info.value)
    assert isinstance(info.value, HwloopError)
    assert f"'{named}'" in message and str(path) in message and "\n" not in message
    if value is None:
        assert "missing" in message


def test_missing_section_and_unreadable_files(tmp_path: Path) -> None:
    data = _shipped()
    del data["pulse"]
    with pytest.raises(DeviceCardError, match="'pulse' is missing"):
        DeviceCard.from_mapping(data)
    with pytest.raises(DeviceCardError, match="not found"):
        DeviceCard.load(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[window\ng_min = 1")
    with pytest.raises(DeviceCardError, match="not valid TOML"):
        DeviceCard.load(broken)
    other = tmp_path / "card.yaml"
    other.write_text("a: 1")
    with pytest.raises(DeviceCardError, match=r"\.toml or \.json"):
        DeviceCard.load(other)
