"""``hwloop instruments`` with protocol v1 controllers and ArC TWO boards, through the real entry point."""

from __future__ import annotations

import pytest

from drivers.sim.arc2_fake import forget_boards
from drivers.sim.protocol_xbarsim import forget_arrays, sim_firmware


@pytest.fixture(autouse=True)
def fresh_lab():
    forget_arrays()
    forget_boards()
    yield
    forget_arrays()
    forget_boards()


def test_v1_controller_pulses_only_with_the_flag(tmp_path, hwloop_run) -> None:
    url = "xbarsim://2x2?seed=31&protocol=1"
    args = ["instruments", "pulse", url, "--row", "0", "--col", "1", "--count", "5"]
    code, _, err = hwloop_run(*args, "--out", str(tmp_path / "a.h5"))
    assert code == 2 and "Traceback" not in err
    assert "protocol v1" in err and "--allow-v1-pulses" in err
    assert not (tmp_path / "a.h5").exists()  # refused before the trace file was created
    assert [d for d in sim_firmware(2, 2, 31, 1).scope if d.what == "pulse"] == []
    code, _, err = hwloop_run(*args, "--out", str(tmp_path / "b.h5"), "--allow-v1-pulses")
    assert code == 0, err
    assert [(d.max_abs_v, d.duration_s) for d in sim_firmware(2, 2, 31, 1).scope if d.what == "pulse"] == [
        (1.5, 1e-4)
    ]


def test_arc2_fake_identifies_and_pulses(tmp_path, hwloop_run) -> None:
    code, out, err = hwloop_run("instruments", "identify", "arc2sim://2x3?seed=1")
    assert code == 0, err
    assert out.startswith("ArC Instruments,ArC TWO,arc2sim://2x3?seed=1,2x3")
    code, out, err = hwloop_run(
        "instruments", "pulse", "arc2sim://2x3?seed=1", "--row", "1", "--col", "2", "--count", "5",
        "--out", str(tmp_path / "t.h5"),
    )  # fmt: skip
    assert code == 0, err
    assert "1.5 V x 0.0001 s pulse on (1, 2)" in out + err


def test_arc2_real_board_errors_are_one_line(hwloop_run) -> None:
    code, _, err = hwloop_run("instruments", "identify", "arc2://0")
    assert code == 2 and "Traceback" not in err
    assert "firmware" in err
