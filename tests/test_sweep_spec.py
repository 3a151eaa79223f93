"""The sweep spec: grid expansion, card overrides by dotted path, and one clear error per bad field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from device_models.card import DEFAULT_CARD
from experiments.sweeps.point import point_card
from experiments.sweeps.runner import preflight
from experiments.sweeps.spec import SweepSpecError, load_spec
from hwloop.errors import HwloopError

BASE = """
metric = "accuracy"
[task]
kind = "art-eval"
n = 50
[backend]
name = "emulated"
[[grid]]
param = "variability.read_noise_rel"
values = [0.0, 0.02, 0.05]
[[grid]]
param = "window.levels"
values = [16, 64]
[seeds]
chip = [3, 4]
repeats = 2
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_points_are_the_full_product_of_grid_seeds_and_repeats(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    points = spec.points()
    assert len(points) == 3 * 2 * 2 * 2
    seen = {
        (p.params["variability.read_noise_rel"], p.params["window.levels"], p.chip_seed, p.repeat)
        for p in points
    }
    assert seen == {(a, b, c, r) for a in (0.0, 0.02, 0.05) for b in (16, 64) for c in (3, 4) for r in (0, 1)}
    assert len({p.id for p in points}) == len(points)  # ids are distinct ...
    assert [p.id for p in load_spec(write(tmp_path, BASE, "again.toml")).points()] == [p.id for p in points]
    # ... stable, and the first pass (repeat 0, first chip) covers the whole grid before any repeat
    assert {(p.chip_seed, p.repeat) for p in points[:6]} == {(3, 0)}


def test_a_point_card_is_the_card_file_with_only_the_swept_fields_changed(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    point = next(
        p for p in spec.points() if p.params == {"variability.read_noise_rel": 0.05, "window.levels": 16}
    )
    card = point_card(spec, point)
    assert card is not None
    expected = tomllib.loads(DEFAULT_CARD.read_text())  # the card file, read independently
    expected["variability"]["read_noise_rel"] = 0.05
    expected["window"]["levels"] = 16
    assert card.model_dump() == expected


def test_ranges_are_evenly_spaced_linearly_or_in_log(tmp_path: Path) -> None:
    text = BASE.replace(
        "values = [0.0, 0.02, 0.05]", 'start = 0.001\nstop = 0.1\nnum = 3\nscale = "log"'
    ).replace("values = [16, 64]", "start = 8\nstop = 32\nnum = 4")
    spec = load_spec(write(tmp_path, text))
    noise, levels = (axis.grid_values() for axis in spec.grid)
    assert noise == pytest.approx([0.001, 0.01, 0.1])
    assert levels == pytest.approx([8, 16, 24, 32])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("variability.read_noise_rel", "variability.read_noise"),
            r"grid\.0.*no field 'read_noise'.*read_noise_rel",
        ),
        (
            ("variability.read_noise_rel", "variabilty.read_noise_rel"),
            r"grid\.0.*unknown card section 'variabilty'",
        ),
        (
            ("[0.0, 0.02, 0.05]", "[0.0, -0.1]"),
            r"grid\.0.*variability\.read_noise_rel.*greater than or equal to 0",
        ),
        (("[16, 64]", "[1, 64]"), r"grid\.1.*window\.levels.*greater than or equal to 2"),
        (('kind = "art-eval"', 'kind = "art-evaluate"'), r"task\.kind"),
        (('metric = "accuracy"', 'metric = "mean_score"'), r"mean_score.*not one of task art-eval's"),
        (("n = 50", "n = 0"), r"field 'task\.n'.*greater than or equal to 1"),
        (("repeats = 2", "repeats = 2\nrepeat = 3"), r"unknown field 'seeds\.repeat'"),
        (("chip = [3, 4]", "chip = [3, 3]"), r"seeds\.chip.*chip seeds repeat"),
        (("values = [16, 64]", 'values = [16, "many"]'), r"grid\.1.*mix types"),
        (
            ("values = [16, 64]", "values = [16, 64]\nstart = 1.0"),
            r"grid\.1.*either values or start/stop/num",
        ),
        (
            ('name = "emulated"', 'name = "emulated"\noptions = { seed = 1 }'),
            r"backend\.options.*'seed' is set by the sweep",
        ),
    ],
)
def test_a_bad_spec_is_one_error_naming_the_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in BASE
    with pytest.raises(SweepSpecError, match=message) as info:
        load_spec(write(tmp_path, BASE.replace(old, new, 1)))
    assert "\n" not in str(info.value)


def test_a_spec_without_a_grid_or_not_toml_or_absent_is_refused(tmp_path: Path) -> None:
    no_grid = "\n".join(
        line
        for line in BASE.splitlines()
        if "grid" not in line and "values" not in line and "param" not in line
    )
    with pytest.raises(SweepSpecError, match="field 'grid' is missing"):
        load_spec(write(tmp_path, no_grid))
    with pytest.raises(SweepSpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "[task\nkind=1", "broken.toml"))
    with pytest.raises(SweepSpecError, match="not found"):
        load_spec(tmp_path / "absent.toml")


def test_backend_options_are_swept_with_the_option_prefix_and_checked_before_running(tmp_path: Path) -> None:
    text = BASE.replace(
        'param = "window.levels"\nvalues = [16, 64]',
        'param = "option.normalisation"\nvalues = ["exact", "native"]',
    )
    spec = load_spec(write(tmp_path, text))
    assert {p.backend_options()["normalisation"] for p in spec.points()} == {"exact", "native"}
    preflight(spec)  # both values build a backend
    bad = load_spec(write(tmp_path, text.replace('"native"]', '"bogus"]'), "bad.toml"))
    bad_value = r"normalisation: Input should be 'exact' or 'native' \(got 'bogus'\)"
    with pytest.raises(HwloopError, match=bad_value):
        preflight(bad)
    unknown = load_spec(
        write(tmp_path, text.replace("option.normalisation", "option.colour"), "unknown.toml")
    )
    with pytest.raises(HwloopError, match=r"does not take option\(s\).*colour"):
        preflight(unknown)


def test_relative_card_paths_are_read_beside_the_spec(tmp_path: Path) -> None:
    card_text = DEFAULT_CARD.read_text().replace("levels = 64", "levels = 32")
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "mine.toml").write_text(card_text)
    text = BASE.replace('name = "emulated"', 'name = "emulated"\ncard = "cards/mine.toml"').replace(
        'param = "window.levels"\nvalues = [16, 64]', 'param = "variability.d2d_tau_rel"\nvalues = [0.0, 0.1]'
    )
    spec = load_spec(write(tmp_path, text))
    card = point_card(spec, spec.points()[0])
    assert card is not None and card.window.levels == 32


def test_the_cli_prints_one_error_line_for_a_bad_spec(tmp_path: Path, hwloop_run) -> None:
    spec = write(tmp_path, BASE.replace("variability.read_noise_rel", "variability.read_noise"))
    result = hwloop_run("sweep", "run", str(spec), "--executor", "pool")
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: sweep spec") and "read_noise" in lines[0]


def test_train_then_eval_needs_hardware_aware_training_and_says_so_before_running(tmp_path: Path) -> None:
    """Without hardware-aware ART training in this hwloop, the task is one clear error up front; with it,
    a tiny point trains on the aware backend and evaluates on the emulated one."""
    from experiments.sweeps.point import NoHardwareAwareTraining, evaluate_point, hardware_aware_training

    text = BASE.replace('kind = "art-eval"', 'kind = "art-train-eval"\nepochs = 1\ntrain_size = 128')
    spec = load_spec(write(tmp_path, text))
    try:
        hardware_aware_training()
    except NoHardwareAwareTraining:
        with pytest.raises(NoHardwareAwareTraining, match="this hwloop has no hardware-aware training"):
            preflight(spec)
        return
    metrics = evaluate_point(spec, spec.points()[0])
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["train_val_accuracy"] <= 1.0
