"""Pong agent steps per second per crossbar backend, side by side in one run.

The shipped STPN-64 agent plays greedy sticky-action Pong (ALE/Pong-v5, frame skip 4) on each backend:
ideal; emulated with every non-ideality on (the backend's default); emulated in native normalisation;
aihwkit (when it loads); lab with an 8 x 8 block of synapses (rows 0:8 of the recurrent columns
2592:2600, which carry h every step) on the simulated controller, paced on its virtual clock. A step is
the whole agent step: the environment's 4 frames, preprocessing, CNN, the STPN on the backend, heads.
dt_s = 1/15 s (4 frames at 60 Hz) for every backend that takes it. Backends take turns in chunks of
``--chunk`` steps (a finished game restarts with the next seed) so they share the machine's load
alike; steps/s is steps over the summed wall time, CPU time beside it (on a shared machine the wall
rate includes waiting for a core; the headline gives both for the goal rows). One torch thread.

    python benchmarks/bench_pong_backends.py [--steps 600] [--chunk 100] [--backends ideal,emulated,...]

Goals: emulated at its default configuration >= 400 steps/s on 1 thread (issue 21; was 150, issue 12);
lab with an 8 x 8 block on the sim >= 15 steps/s (real time) with the virtual clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import single_thread
import torch

from experiments.pong.agent import AgentState, PongAgent, load_agent
from experiments.pong.env import STEP_S, STICKY, PongEnv
from hwloop.crossbar import make_backend
from hwloop.errors import HwloopError

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "experiments" / "pong" / "checkpoints" / "stpn64.safetensors"
OUT = Path(__file__).resolve().parent / "results" / "pong_backends.json"
GOALS = {"emulated": 400.0, "lab 8x8 on xbarsim": 15.0}
DEFAULTS = set(GOALS)  # rows on their backend's default configuration (dt_s aside): the only ones with goals


def configs(log_dir: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """label -> (backend, options); every option set here is printed in the report."""
    lab = {"rows": "0:8", "cols": "2592:2600", "log": str(log_dir / "bench_lab.h5"), "dt_s": STEP_S}
    return {
        "ideal": ("ideal", {}),
        "emulated": ("emulated", {"dt_s": STEP_S}),
        "emulated native": ("emulated", {"dt_s": STEP_S, "normalisation": "native"}),
        "aihwkit": ("aihwkit", {}),
        "lab 8x8 on xbarsim": ("lab", lab),
    }


class Player:
    """One agent on one backend playing consecutive games, ``chunk`` steps at a time."""

    def __init__(self, agent: PongAgent, seed: int) -> None:
        self.agent, self.seed = agent, seed
        self.env = PongEnv(sticky=STICKY, seed=seed)
        self.frame = self.env.reset(seed=seed)
        self.state: AgentState | None = None
        self.steps, self.wall_s, self.cpu_s, self.games = 0, 0.0, 0.0, 0

    def play(self, n: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            for _ in range(n):
                out = self.agent(torch.from_numpy(self.frame)[None, None], self.state)
                self.state = out.state
                step = self.env.step(int(out.logits[0, -1].argmax()))
                self.frame = step.obs
                if step.done:
                    self.games += 1
                    self.frame, self.state = self.env.reset(seed=self.seed + self.games), None
        self.wall_s += time.perf_counter() - wall
        self.cpu_s += time.process_time() - cpu
        self.steps += n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="steps per backend")
    parser.add_argument("--chunk", type=int, default=100, help="steps per turn")
    parser.add_argument("--backends", default=None, help="comma-separated labels (default: all)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    single_thread.pin()
    load_before = os.getloadavg()[0]
    log_dir = Path(tempfile.mkdtemp(prefix="bench_pong_"))
    wanted = configs(log_dir)
    if args.backends:
        wanted = {k: v for k, v in wanted.items() if k in args.backends.split(",")}
    players: dict[str, Player] = {}
    skipped: dict[str, str] = {}
    for label, (name, options) in wanted.items():
        agent = load_agent(CHECKPOINT)
        try:
            agent.core.set_backend(make_backend(name, **options))  # type: ignore[operator]
            player = Player(agent, seed=0)
            player.play(2)  # program, compile kernels, open the controller
        except (HwloopError, ImportError) as exc:
            skipped[label] = str(exc).splitlines()[0]
            continue
        player.steps, player.wall_s, player.cpu_s = 0, 0.0, 0.0
        players[label] = player
    done = 0
    while done < args.steps:
        n = min(args.chunk, args.steps - done)
        for player in players.values():
            player.play(n)
        done += n
    rows, headline = [], []
    print(f"Pong agent steps/s (STPN-64, 1 thread, {args.steps} steps per backend in chunks of {args.chunk})")
    print(f"{'backend':22s} {'steps/s':>8s} {'cpu ms/step':>12s} {'x real time':>11s} {'cpu/wall':>8s}  goal")
    for label, p in players.items():
        rate = p.steps / p.wall_s
        goal = GOALS.get(label)
        extra: dict[str, Any] = {}
        stats = getattr(p.agent.core.crossbar, "stats", None)
        if callable(stats) and wanted[label][0] == "lab":
            extra["lab"] = {k: v for k, v in stats().items() if k in ("pacing", "dropped_writes")}
            p.agent.core.crossbar.close()  # type: ignore[union-attr]
        row = {
            "backend": label,
            "options": {k: v for k, v in wanted[label][1].items() if k != "log"},
            "steps": p.steps,
            "steps_per_s": rate,
            "cpu_ms_per_step": p.cpu_s / p.steps * 1e3,
            "steps_per_cpu_s": p.steps / p.cpu_s,
            "real_time_factor": rate * STEP_S,
            "games_finished": p.games,
            "cpu_over_wall": p.cpu_s / p.wall_s,
            "cpu_over_wall_flag": p.cpu_s > single_thread.CPU_OVER_WALL_LIMIT * p.wall_s,
            **extra,
        }
        rows.append(row)
        verdict = "" if goal is None else f">= {goal:g}: {'met' if rate >= goal else 'NOT met'}"
        flag = single_thread.cpu_wall_flag(p.cpu_s, p.wall_s)
        print(
            f"{label:22s} {rate:8.1f} {p.cpu_s / p.steps * 1e3:12.2f} {rate * STEP_S:11.2f} "
            f"{p.cpu_s / p.wall_s:8.2f}  {verdict}{flag}"
        )
        headline.append(
            {
                "name": f"Pong steps/s, {label}",
                "value": round(rate, 1),
                "unit": "steps/s",
                "goal": None if goal is None else f">= {goal:g}",
                "default_configuration": label in DEFAULTS,
            }
        )
        if goal is not None:  # on a shared machine the wall rate includes waiting for a core
            headline.append(
                {
                    "name": f"Pong steps per CPU second, {label}",
                    "value": round(p.steps / p.cpu_s, 1),
                    "unit": "steps/s (CPU time)",
                    "goal": f">= {goal:g}",
                    "default_configuration": True,
                }
            )
    for label, why in skipped.items():
        rows.append({"backend": label, "skipped": why})
        print(f"{label:22s} skipped: {why}")
    report = {
        "headline": headline,
        "checkpoint": str(CHECKPOINT.relative_to(ROOT)),
        "dt_s": STEP_S,
        "threads": 1,
        "steps_per_backend": args.steps,
        "chunk": args.chunk,
        "rows": rows,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "reproduce": "python benchmarks/bench_pong_backends.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
