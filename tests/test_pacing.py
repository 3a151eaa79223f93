"""Step pacing on a clock: steps last dt, overruns are counted with their lateness, 'stop' stops."""

from __future__ import annotations

import pytest

from drivers.sim.clock import VirtualClock
from hwloop.pacing import OverrunError, StepPacer


def test_steps_on_time_end_exactly_on_their_deadlines() -> None:
    clock = VirtualClock(start_s=10.0)
    pacer = StepPacer(clock, 0.25)
    for k, work_s in enumerate([0.1, 0.2, 0.0, 0.24]):
        assert pacer.start() == pytest.approx(10.0 + 0.25 * k)
        clock.sleep(work_s)
        assert pacer.finish(k) == 0.0
        assert clock.now_s() == pytest.approx(10.0 + 0.25 * (k + 1))
    assert pacer.report().overruns == 0 and pacer.report().steps == 4


def test_an_overrun_is_counted_and_the_schedule_re_anchors_without_catching_up() -> None:
    clock = VirtualClock()
    pacer = StepPacer(clock, 0.1, "wait")
    pacer.start()
    clock.sleep(0.35)  # 250 ms late
    assert pacer.finish(0) == pytest.approx(0.25)
    assert clock.now_s() == pytest.approx(0.35)  # no waiting after a late step
    assert pacer.start() == pytest.approx(0.35)
    clock.sleep(0.05)
    assert pacer.finish(1) == 0.0 and clock.now_s() == pytest.approx(0.45)  # the next step still lasts dt
    report = pacer.report()
    assert (report.overruns, report.worst_lateness_s, report.steps) == (1, pytest.approx(0.25), 2)


def test_the_stop_policy_names_the_step_and_its_lateness() -> None:
    clock = VirtualClock()
    pacer = StepPacer(clock, 1 / 15, "stop")
    pacer.start()
    clock.sleep(0.1)
    with pytest.raises(OverrunError, match=r"step 7 overran its dt of 66.7 ms by 33.3 ms"):
        pacer.finish(7)


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(Exception, match="overrun policy must be one of wait, stop"):
        StepPacer(VirtualClock(), 0.1, "stretch")
