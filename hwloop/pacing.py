"""Real-time pacing of agent steps: each step lasts dt on the instruments' clock, overruns are counted.

A ``StepPacer`` keeps a deadline per step on a ``drivers.clock.Clock``: the wall clock with real
instruments, the simulated lab's virtual clock otherwise (which then runs as fast as the host can
compute, with the same device physics, since the devices evolve on that clock). After a step's I/O,
``finish`` waits out the rest of dt. A step that ends after its deadline is an overrun: it is counted
with its lateness, and the policy decides what happens:

* ``"wait"``: the late step is recorded and the next step starts at once, its deadline dt after now
  (the schedule re-anchors; later steps are never shortened to catch up);
* ``"stop"``: ``OverrunError`` naming the step, its lateness and dt.

Time is never silently stretched: ``report()`` (count, worst lateness) goes into the result and log.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from drivers.clock import Clock
from hwloop.errors import HwloopError

OverrunPolicy = Literal["wait", "stop"]
POLICIES: tuple[str, ...] = ("wait", "stop")


class OverrunError(HwloopError):
    """A step took longer than dt under the "stop" policy."""


class PacingReport(BaseModel):
    """Steps paced, steps that overran dt, the worst lateness (s), and the clock used."""

    dt_s: float
    policy: str
    clock: str
    steps: int
    overruns: int
    worst_lateness_s: float


class StepPacer:
    """Paces steps of ``dt_s`` seconds on ``clock`` with overrun ``policy`` ("wait" or "stop")."""

    def __init__(self, clock: Clock, dt_s: float, policy: str = "wait") -> None:
        if policy not in POLICIES:
            raise HwloopError(f"overrun policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if not dt_s > 0:
            raise HwloopError(f"step time dt_s must be positive, got {dt_s}")
        self.clock, self.dt_s, self.policy = clock, float(dt_s), policy
        self.steps = self.overruns = 0
        self.worst_lateness_s = 0.0
        self._deadline_s: float | None = None

    def start(self) -> float:
        """The current step's start time (s): the previous deadline, or now for the first step."""
        now = self.clock.now_s()
        if self._deadline_s is None:
            self._deadline_s = now + self.dt_s
        return self._deadline_s - self.dt_s

    def finish(self, step: int) -> float:
        """End step ``step``: wait until its deadline; return its lateness in s (0 when on time).

        Raises ``OverrunError`` on an overrun under the "stop" policy.
        """
        if self._deadline_s is None:
            self.start()
        assert self._deadline_s is not None
        now = self.clock.now_s()
        lateness = now - self._deadline_s
        self.steps += 1
        if lateness > 0:
            self.overruns += 1
            self.worst_lateness_s = max(self.worst_lateness_s, lateness)
            if self.policy == "stop":
                raise OverrunError(
                    f"step {step} overran its dt of {self.dt_s * 1e3:.1f} ms by {lateness * 1e3:.1f} ms "
                    "(overrun policy 'stop'; use 'wait' to record overruns and go on, or a longer dt_s)"
                )
            self._deadline_s = now + self.dt_s
            return lateness
        self.clock.sleep(self._deadline_s - now)
        self._deadline_s += self.dt_s
        return 0.0

    def restart(self) -> None:
        """Forget the schedule (e.g. after a pause between games); the next step starts a new one."""
        self._deadline_s = None

    def report(self) -> PacingReport:
        """What the pacing saw so far."""
        return PacingReport(
            dt_s=self.dt_s,
            policy=self.policy,
            clock=type(self.clock).__name__,
            steps=self.steps,
            overruns=self.overruns,
            worst_lateness_s=self.worst_lateness_s,
        )
