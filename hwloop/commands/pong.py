"""``hwloop pong``: evaluate the Pong agent (the group's own command) and ``hwloop pong train`` it.

``hwloop pong [--backend ideal] [--episodes N] ...`` evaluates; ``hwloop pong train ...`` trains.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hwloop.commands.common import (
    AwareBackendOptionOpt,
    BackendOpt,
    BackendOptionOpt,
    BackendSeedOpt,
    CalibrationOpt,
    CardOpt,
    JsonOpt,
    JsonOutOpt,
    backend_options,
    console,
    emit_result,
    parse_backend_options,
)
from hwloop.errors import HwloopError

if TYPE_CHECKING:
    from experiments.pong.evaluate import EpisodeTrace

app = typer.Typer(pretty_exceptions_enable=False)

DEFAULT_CHECKPOINT = (
    Path(__file__).resolve().parents[2] / "experiments" / "pong" / "checkpoints" / "stpn64.safetensors"
)
# experiments.pong.env.STICKY, mirrored so that `--help` need not import torch;
# tests/test_cli_imports.py checks that it still matches.
STICKY = 0.25


@app.callback(invoke_without_command=True)
def evaluate_cmd(
    ctx: typer.Context,
    backend: BackendOpt = "ideal",
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="Agent checkpoint (.safetensors).")
    ] = DEFAULT_CHECKPOINT,
    episodes: Annotated[int, typer.Option("--episodes", min=1, help="Games to play.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Game i is seeded seed + i.")] = 0,
    sticky: Annotated[
        float, typer.Option("--sticky", min=0.0, max=1.0, help="Sticky-action probability.")
    ] = STICKY,
    card: CardOpt = None,
    calibration: CalibrationOpt = None,
    backend_seed: BackendSeedOpt = None,
    backend_option: BackendOptionOpt = None,
    as_json: JsonOpt = False,
    json_out: JsonOutOpt = None,
    record: Annotated[
        Path | None,
        typer.Option(
            "--record", help="GIF of the first game's start (every 2nd step, <= 600 frames) with the score."
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Plot score and energy per step (PNG).")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
) -> None:
    """Evaluate a Pong agent: greedy play over seeded sticky-action games of ALE/Pong-v5.

    Prints scores, mean score, steps, steps/s and the synaptic energy metric per step and per episode
    (``--json`` / ``--json-out`` for the whole result). One agent step is 4 frames at 60 Hz, so backends
    that take ``dt_s`` get 1/15 s unless ``--backend-option dt_s=...`` says otherwise.
    Subcommand ``train`` trains an agent instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    import torch

    from experiments.pong.agent import load_agent
    from experiments.pong.evaluate import evaluate, step_seconds
    from experiments.pong.media import GifRecorder, plot_traces

    torch.set_num_threads(threads)
    agent = load_agent(checkpoint)
    given = {"card": card, "calibration": calibration, "seed": backend_seed, "extra": backend_option}
    options: dict[str, object] = {}
    dt_s = step_seconds(checkpoint)
    if agent.core_name == "stpn":
        defaults = {"dt_s": step_seconds(checkpoint)}
        options = backend_options(
            backend,
            card=card,
            calibration=calibration,
            seed=backend_seed,
            extra=backend_option,
            defaults=defaults,
        )
        from hwloop.crossbar import make_backend

        agent.core.set_backend(make_backend(backend, **options))  # type: ignore[operator]
    elif backend != "ideal" or any(v is not None for v in given.values()):
        raise HwloopError(
            f"{checkpoint} holds an {agent.core_name.upper()} agent, which runs only digitally: "
            "use --backend ideal"
        )
    gif = GifRecorder() if record else None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    label = f"{agent.core_name}-{agent.hidden} on {backend}"
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"{label}: game 1/{episodes}", total=episodes)

        def done(i: int, trace: EpisodeTrace) -> None:
            bar.console.print(
                f"game {i + 1} (seed {seed + i}): {sum(trace.rewards):+.0f} in {len(trace.rewards)} steps"
            )
            bar.update(task, advance=1, description=f"{label}: game {min(i + 2, episodes)}/{episodes}")

        dt_s = float(options.get("dt_s", dt_s))  # type: ignore[arg-type]
        try:
            result, traces = evaluate(
                agent,
                episodes,
                seed,
                backend=backend,
                sticky=sticky,
                on_frame=gif,
                on_episode=done,
                dt_s=dt_s,
            )
        finally:
            close = getattr(agent.core, "crossbar", None) and getattr(agent.core.crossbar, "close", None)
            if callable(close):
                close()  # a lab array: outputs to 0 V, log closed
    speed = f"{result.steps_per_second:.0f} steps/s"
    earned = ""
    if result.mean_earned_score != result.mean_score:
        earned = f", {result.mean_earned_score:+.2f} without ALE scoreboard glitches"
    console.print(f"mean score [bold]{result.mean_score:+.2f}[/] over {episodes} games{earned} ({speed})")
    if result.energy_joules is not None:
        console.print(energy_line(result.energy_joules))
    if gif is not None and record is not None:
        gif.save(record)
        console.print(f"wrote {record}")
    if plot is not None:
        plot_traces(
            traces,
            plot,
            f"{agent.core_name}-{agent.hidden} on {backend}: mean score {result.mean_score:+.1f}",
            result.energy_joules["gpu"]["per_step_j"] if result.energy_joules else None,
        )
        console.print(f"wrote {plot}")
    crossbar = getattr(agent.core, "crossbar", None)
    stats = crossbar.stats() if callable(getattr(crossbar, "stats", None)) else None  # type: ignore[union-attr]
    if backend == "lab" and stats is not None:
        pacing = stats["pacing"] or {}
        console.print(
            f"lab: block rows {stats['block']['rows']} x cols {stats['block']['cols']} "
            f"on {stats['resource']}; "
            f"{pacing.get('overruns', 0)} of {pacing.get('steps', 0)} steps overran dt "
            f"(worst {pacing.get('worst_lateness_s', 0.0) * 1e3:.1f} ms, {pacing.get('clock')}); "
            f"log {stats['log']} run {stats['log_run']}"
        )
    argv = sys.argv[sys.argv.index("pong") + 1 :] if "pong" in sys.argv else []
    payload = {
        "command": "hwloop pong " + shlex.join(argv),
        "checkpoint": str(checkpoint),
        "backend_options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
        **result.model_dump(),
        "backend_stats": stats,
    }
    emit_result(payload, as_json, json_out)


@app.command("demo")
def demo_cmd(
    seed: Annotated[int, typer.Option("--seed", help="Seed of the game.")] = 0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
) -> None:
    """One Pong game on the emulated default-card array with the hardware-aware STPN-64: score, energy
    per game (J) beside the GPU estimate, and steps/s (``make demo``)."""
    aware = DEFAULT_CHECKPOINT.with_name("stpn64_aware.safetensors")
    if aware.is_file():
        checkpoint = aware
        console.print(f"demo: hardware-aware STPN-64 ({aware.name}) on the emulated SrTiO3 card, one game")
    else:
        checkpoint = DEFAULT_CHECKPOINT
        console.print(
            f"demo: {aware.name} not found; falling back to the shipped {DEFAULT_CHECKPOINT.name} "
            "(trained on the ideal array, not hardware-aware) on the emulated SrTiO3 card, one game"
        )
    evaluate_cmd(
        SimpleNamespace(invoked_subcommand=None),  # type: ignore[arg-type]
        backend="emulated",
        checkpoint=checkpoint,
        episodes=1,
        seed=seed,
        sticky=STICKY,
        card=None,
        calibration=None,
        backend_seed=None,
        backend_option=None,
        as_json=False,
        json_out=None,
        record=None,
        plot=None,
        threads=threads,
    )


def energy_line(joules: dict[str, object]) -> str:
    """One line: device energy per game (J) next to the GPU estimates, from ``EvalResult.energy_joules``."""
    dev, gpu = joules["device"], joules["gpu"]
    assert isinstance(dev, dict) and isinstance(gpu, dict)
    games = len(dev["per_game_j"]) or 1
    device = sum(dev["per_game_j"]) / games
    best = sum(gpu["per_game_j"]["best_efficiency"]) / games
    written = sum(gpu["per_game_j"]["as_written"]) / games
    where = f"on the {dev['backend']} array" if device else f"({dev['backend']}: no device physics)"
    return (
        f"energy per game: {device:.3g} J {where} vs {gpu['gpu']} {best:.3g} J "
        f"(best efficiency) / {written:.3g} J (as written); `hwloop energy report` for the rest"
    )


@app.command("train")
def train_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="Checkpoint to write (.safetensors); record beside it (.json).")
    ],
    core: Annotated[str, typer.Option("--core", help="Recurrent core: stpn or lstm.")] = "stpn",
    hidden: Annotated[int, typer.Option("--hidden", min=1, help="Recurrent units.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seeds games, initialisation and shuffling.")] = 0,
    bc_segments: Annotated[
        int, typer.Option("--bc-segments", min=1, help="Expert segments (128 steps).")
    ] = 400,
    bc_epochs: Annotated[int, typer.Option("--bc-epochs", min=0, help="Behaviour-cloning epochs.")] = 12,
    dagger_rounds: Annotated[int, typer.Option("--dagger-rounds", min=0, help="DAgger rounds.")] = 2,
    dagger_segments: Annotated[
        int, typer.Option("--dagger-segments", min=1, help="Segments per round.")
    ] = 100,
    dagger_epochs: Annotated[
        int, typer.Option("--dagger-epochs", min=0, help="Epochs per DAgger round.")
    ] = 3,
    plastic_segments: Annotated[
        int, typer.Option("--plastic-segments", min=1, help="Segments used in the plastic phase.")
    ] = 150,
    plastic_epochs: Annotated[
        int, typer.Option("--plastic-epochs", min=0, help="STPN epochs with plasticity.")
    ] = 1,
    plastic_dagger_rounds: Annotated[
        int, typer.Option("--plastic-dagger-rounds", min=0, help="DAgger rounds with the plastic agent.")
    ] = 0,
    plastic_dagger_segments: Annotated[
        int, typer.Option("--plastic-dagger-segments", min=1, help="New segments per plastic round.")
    ] = 100,
    plastic_replay_segments: Annotated[
        int, typer.Option("--plastic-replay-segments", min=0, help="Earlier segments replayed per round.")
    ] = 100,
    plastic_beta: Annotated[
        float,
        typer.Option("--plastic-beta", min=0.0, max=1.0, help="Expert's share of plastic-round driving."),
    ] = 0.0,
    hit_weight: Annotated[
        float,
        typer.Option("--hit-weight", min=0.0, help="Loss weight of the steps just before a paddle hit."),
    ] = 1.0,
    hit_window: Annotated[
        float, typer.Option("--hit-window", min=0.0, help="Steps before a hit that get --hit-weight.")
    ] = 12.0,
    plastic_lr: Annotated[
        float, typer.Option("--plastic-lr", min=0.0, help="Adam step size, plastic.")
    ] = 3e-4,
    init: Annotated[
        Path | None, typer.Option("--init", help="Fine-tune this checkpoint instead of a fresh agent.")
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
    data_cache: Annotated[
        Path | None, typer.Option("--data-cache", help="Directory to keep/reuse the expert data (.npz).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the training record (also written beside --out) as JSON.")
    ] = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Imitation-train a Pong agent (BC + DAgger from the RAM expert) and write checkpoint and record."""
    import torch

    from experiments.pong.agent import save_agent
    from experiments.pong.train import TrainConfig, train

    if out.suffix != ".safetensors":
        raise HwloopError(f"--out must end in .safetensors, got {out}")
    torch.set_num_threads(threads)
    cfg = TrainConfig(
        core=core,
        hidden=hidden,
        seed=seed,
        bc_segments=bc_segments,
        bc_epochs=bc_epochs,
        dagger_rounds=dagger_rounds,
        dagger_segments=dagger_segments,
        dagger_epochs=dagger_epochs,
        plastic_epochs=plastic_epochs,
        plastic_segments=plastic_segments,
        plastic_dagger_rounds=plastic_dagger_rounds,
        plastic_dagger_segments=plastic_dagger_segments,
        plastic_replay_segments=plastic_replay_segments,
        plastic_beta=plastic_beta,
        plastic_lr=plastic_lr,
        hit_weight=hit_weight,
        hit_window=hit_window,
        init=str(init) if init else None,
    )
    command = "hwloop pong train " + shlex.join(
        sys.argv[sys.argv.index("train") + 1 :] if "train" in sys.argv else []
    )

    # the record of the start point, read before --out (possibly the same file) is overwritten
    init_json = init.with_suffix(".json") if init is not None else None
    init_record = json.loads(init_json.read_text()) if init_json and init_json.is_file() else None

    def keep(agent: object, record: dict[str, object]) -> None:
        save_agent(agent, out)  # type: ignore[arg-type]
        full = {"command": command, "config": cfg.model_dump(), **record}
        if init_record is not None:
            full["init_record"] = init_record
        out.with_suffix(".json").write_text(json.dumps(full, indent=2) + "\n")
        phase = [key for key in record if key not in ("data_steps", "wall_time_s")][-1]
        console.print(f"saved {out} after {phase} ({record['wall_time_s']} s)")

    train(cfg, lambda line: console.print(line), keep, cache_dir=data_cache)
    emit_result(json.loads(out.with_suffix(".json").read_text()), as_json, json_out)


@app.command("finetune")
def finetune_cmd(
    init: Annotated[Path, typer.Option("--init", help="Trained (ideal) agent to start from (.safetensors).")],
    out: Annotated[
        Path, typer.Option("--out", help="Checkpoint to write (.safetensors); record beside it (.json).")
    ],
    card: Annotated[
        Path | None, typer.Option("--card", help="Device card (default: the shipped card).")
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="Calibration record (JSON) to train on.")
    ] = None,
    backend_seed: Annotated[
        int, typer.Option("--backend-seed", help="First training chip (one chip per training sequence).")
    ] = 10_000,
    dt_s: Annotated[float, typer.Option("--dt-s", min=0.0, help="Seconds per agent step.")] = 1 / 15,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds",
            min=0,
            help="DAgger rounds on the aware backend (0: only bound lambda to the realisable range).",
        ),
    ] = 2,
    segments: Annotated[
        int, typer.Option("--segments", min=1, help="New agent-driven segments (128 steps) per round.")
    ] = 100,
    replay: Annotated[
        int, typer.Option("--replay", min=0, help="Earlier segments replayed per round.")
    ] = 100,
    expert_segments: Annotated[
        int, typer.Option("--expert-segments", min=1, help="Expert segments in the replay pool.")
    ] = 100,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam step size.")] = 1e-4,
    seed: Annotated[int, typer.Option("--seed", help="Seeds games and shuffling.")] = 0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
    data_cache: Annotated[
        Path | None, typer.Option("--data-cache", help="Directory to keep/reuse the expert data (.npz).")
    ] = None,
    backend_option: AwareBackendOptionOpt = None,
    collect_chip: Annotated[
        str,
        typer.Option(
            "--collect-chip",
            help="Chips the agent drives on while a DAgger round collects: 'round' (one drawn chip for "
            "the round) or 'segment' (a fresh chip every 128-step segment; its state carries over).",
        ),
    ] = "round",
) -> None:
    """Fine-tune a trained STPN agent through the device non-idealities (backend 'aware', lambda
    bounded to the realisable range): DAgger rounds with the agent driving on drawn chips."""
    import torch

    from experiments.pong.agent import load_agent as load
    from experiments.pong.agent import save_agent
    from experiments.pong.train import TrainConfig, train

    if out.suffix != ".safetensors":
        raise HwloopError(f"--out must end in .safetensors, got {out}")
    start = load(init)
    if start.core_name != "stpn":
        raise HwloopError(
            f"--init {init} holds an {start.core_name.upper()} agent: fine-tuning needs an STPN"
        )
    torch.set_num_threads(threads)
    command = "hwloop pong finetune " + shlex.join(
        sys.argv[sys.argv.index("finetune") + 1 :] if "finetune" in sys.argv else []
    )
    if collect_chip not in ("round", "segment"):
        raise HwloopError(f"--collect-chip must be 'round' or 'segment', got {collect_chip!r}")
    if rounds == 0 and (backend_option or collect_chip != "round"):
        raise HwloopError(
            "--backend-option and --collect-chip configure the DAgger rounds' aware backend: "
            "use --rounds >= 1"
        )
    if rounds == 0:  # the projection alone: every lambda clipped into what the devices realise
        _bound_only(start, out, command, card, calibration, dt_s)
        return
    cfg = TrainConfig(
        core="stpn",
        hidden=start.hidden,
        seed=seed,
        bc_segments=expert_segments,
        bc_epochs=0,
        dagger_rounds=0,
        plastic_epochs=0,
        plastic_dagger_rounds=rounds,
        plastic_dagger_segments=segments,
        plastic_replay_segments=replay,
        plastic_lr=lr,
        init=str(init),
        hardware_aware=True,
        card=str(card) if card else None,
        calibration=str(calibration) if calibration else None,
        dt_s=dt_s,
        backend_seed=backend_seed,
        backend_options=parse_backend_options(backend_option or []),
        collect_chip="segment" if collect_chip == "segment" else "round",
    )

    def keep(agent: object, record: dict[str, object]) -> None:
        save_agent(agent, out)  # type: ignore[arg-type]
        full = {"reproduce": command, "config": cfg.model_dump(), **record}
        out.with_suffix(".json").write_text(json.dumps(full, indent=2) + "\n")
        console.print(f"saved {out} ({record['wall_time_s']} s)")

    train(cfg, lambda line: console.print(line), keep, cache_dir=data_cache)


def _bound_only(
    agent: Any, out: Path, command: str, card: Path | None, calibration: Path | None, dt_s: float
) -> None:
    """Save ``agent`` with its STPN's lambda bounded to the realisable range at ``dt_s`` (s), untrained."""
    from experiments.pong.agent import make_hardware_aware, save_agent
    from hwloop.backends.aware import trainable_lambda_range

    core = agent.core
    shape = (core.hidden_size, core.input_size + core.hidden_size)
    lambda_range = trainable_lambda_range(card, dt_s, shape, calibration)
    outside = float(
        ((core.weight_lambda < lambda_range[0]) | (core.weight_lambda > lambda_range[1])).float().mean()
    )
    make_hardware_aware(agent, lambda_range)
    save_agent(agent, out)
    record = {
        "reproduce": command,
        "method": "lambda bounded to the realisable range (clipped), no fine-tuning rounds",
        "lambda_range": list(lambda_range),
        "lambda_outside_range_fraction": outside,
        "dt_s": dt_s,
        "card": str(card) if card else None,
        "calibration": str(calibration) if calibration else None,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    console.print(
        f"saved {out}: lambda bounded to [{lambda_range[0]:.4f}, {lambda_range[1]:.4f}] "
        f"({100 * outside:.1f} % of synapses were outside)"
    )
