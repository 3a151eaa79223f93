"""A scripted Pong expert reading the console RAM; the teacher for imitation (the agent sees only pixels).

RAM facts (measured): player paddle y = RAM[51], CPU paddle y = RAM[50], ball x = RAM[49],
ball y = RAM[54] (0 while no ball is in play), scores RAM[13] (CPU) and RAM[14] (player).
Action 2 moves the paddle up (y decreases), 3 down; one press moves it ~23 px spread over three steps
(10, 10, 3), so the expert predicts where the ball will cross the paddle's column, accounts for the
motion still pending from its last presses, and presses only when the aim is off by more than a margin.

Two settings decide how fast it wins and how well it can be imitated (measured against the CPU with
sticky actions, seeds 100 and 101, 6000 steps each):
- the aim: only steep returns (|ball dy| = 8 after the hit) ever beat the CPU. Aiming the ball 2 px
  below the paddle's y gives them often: 30 points won, 0 lost, 400 steps per point won. The
  centred aim of 8 px sends flat returns the CPU can give back forever (17 won, 0 lost, 706 steps
  per point, and some games never end: see ``evaluate``).
- the delay cost of ``plan_shift``: 4 px per step of waiting makes it move as soon as it knows where
  the ball will arrive, instead of at the last steps.
"""

from __future__ import annotations

import numpy as np

NOOP, UP, DOWN = 0, 2, 3
PRESS_PROFILE = (10.0, 10.0, 3.0)  # px moved by one press on the step it is made and the two after
TOP_Y, BOTTOM_Y = 45.0, 206.0  # ball-y reflection lines of the walls (RAM units, fitted to play)
HIT_X = 190.0  # ball x (RAM units) where it meets the player's paddle (tuned by play)
BALL_SPEEDS_Y = (0, 4, 8, 12)  # |ball dy| per step outside a wall bounce (RAM units)
REST_Y = 125.0  # paddle y to wait at while the ball moves away
NO_HIT = 99.0  # steps_to_hit while no ball approaches


def reflect(y: float, top: float = TOP_Y, bottom: float = BOTTOM_Y) -> float:
    """Fold a straight-line ball height into [top, bottom] as wall bounces do."""
    span = bottom - top
    u = (y - top) % (2 * span)
    return top + (u if u <= span else 2 * span - u)


CUMULATIVE = (0.0, 10.0, 20.0, 23.0)  # px a press has moved the paddle after 0, 1, 2, 3+ steps
MAX_PRESSES = 7  # longest run of consecutive presses planned (7 x 23 px spans the court)


def press_shift(steps: float) -> float:
    """px moved by one press ``steps`` (fractional) agent steps after it: 10, 20, 23 px at 1, 2, 3+."""
    if steps <= 0:
        return 0.0
    if steps >= 3:
        return CUMULATIVE[3]
    i = int(steps)
    return CUMULATIVE[i] + (CUMULATIVE[i + 1] - CUMULATIVE[i]) * (steps - i)


def plan_shift(error: float, steps_left: float, delay_cost: float = 0.0) -> int:
    """Whether to press now (-1 up, +1 down, 0 no) to move the paddle ``error`` px by ``steps_left`` steps.

    Plans are runs of k consecutive same-direction presses starting s steps from now; the one with the
    smallest residual plus ``delay_cost`` px per step of delayed start wins, ties going to fewer presses
    and then to the earliest start. Only a plan that starts now presses now. With no delay cost the
    plan is the most precise one, which often waits to the last steps to use a press's partial travel;
    a cost of a few px moves the paddle as soon as the intercept is known and leaves time to correct a
    sticky or wrong press (measured with 5 % random presses: 41 points won to 9 lost at 4 px/step,
    12 to 7 at 0), and it is much easier to imitate from pixels.
    """
    best = (abs(error), 0, 0, 0)  # (residual, presses, start, direction): doing nothing
    for start in range(int(steps_left) + 1):
        for k in range(1, MAX_PRESSES + 1):
            shift = sum(press_shift(steps_left - start - i) for i in range(k))
            for sign in (-1, 1):
                cand = (abs(error - sign * shift), k, start, sign)
                score = round(cand[0] + delay_cost * start)
                if (score, cand[1], cand[2]) < (round(best[0] + delay_cost * best[2]), best[1], best[2]):
                    best = cand
    return best[3] if best[2] == 0 and best[1] > 0 else 0


class RamExpert:
    """Intercept-predicting paddle controller. ``offset`` px: aim point of ball y relative to paddle y;
    ``delay_cost`` px per step: how much precision it trades for moving early (see ``plan_shift``)."""

    def __init__(self, offset: float = 2.0, delay_cost: float = 4.0) -> None:
        self.offset = offset
        self.delay_cost = delay_cost
        self.reset()

    def reset(self) -> None:
        """Forget the ball history and pending presses (call at each episode start)."""
        self._prev_ball: tuple[int, int] | None = None
        self._vy: int | None = None  # last ball dy per step not disturbed by a bounce
        self._paddle: list[int] = []  # paddle y of the last steps, newest last
        self.steps_to_hit = NO_HIT  # agent steps until the ball reaches the paddle, as of the last act

    def _pending(self, py: int) -> float:
        """Paddle displacement (px, + is down) still to come, judged from its observed motion.

        Observed rather than assumed: with sticky actions a press may not have been executed.
        """
        self._paddle.append(py)
        del self._paddle[:-3]
        if len(self._paddle) < 3:
            return 0.0
        d1, d2 = self._paddle[2] - self._paddle[1], self._paddle[1] - self._paddle[0]
        if abs(d1) < 6:
            return 0.0
        sign = 1.0 if d1 > 0 else -1.0
        return sign * (CUMULATIVE[3] - CUMULATIVE[1] if abs(d2) < 6 else CUMULATIVE[3] - CUMULATIVE[2])

    def _target(self, bx: int, by: int) -> tuple[float, float]:
        """(paddle y to be at, steps until then): the predicted crossing if the ball approaches, else rest."""
        prev, self._prev_ball = self._prev_ball, ((bx, by) if by else None)
        if not by or prev is None:
            self._vy = None
            return REST_Y, NO_HIT
        dx, dy = bx - prev[0], by - prev[1]
        if abs(dy) not in BALL_SPEEDS_Y and self._vy:
            # bounced off a wall inside the step: same speed, now heading away from the nearer wall
            dy = abs(self._vy) * (1 if by < (TOP_Y + BOTTOM_Y) / 2 else -1)
        self._vy = dy
        if dx <= 0 or bx > HIT_X:
            return REST_Y, NO_HIT
        steps = (HIT_X - bx) / dx
        return reflect(by + dy * steps) - self.offset, steps

    def act(self, ram: np.ndarray) -> int:
        """The action (0 NOOP, 2 up, 3 down) for the current RAM."""
        bx, by, py = int(ram[49]), int(ram[54]), int(ram[51])
        target, steps = self._target(bx, by)
        self.steps_to_hit = steps
        press = plan_shift(target - (py + self._pending(py)), min(steps, 12.0), self.delay_cost)
        return {1: DOWN, -1: UP, 0: NOOP}[press]
