"""Evaluating one sweep point: build its card and backend, run its task, return its metrics.

This is what a Ray task or a pool worker runs. It takes only plain data (the spec as JSON and the
point), so it pickles small and behaves the same in every process; all randomness comes from the
point's chip seed (the backend's ``seed``) and repeat index (the test stream / game seeds).
"""

from __future__ import annotations

import importlib
import inspect
import os
import socket
import time
from pathlib import Path
from typing import Any

from device_models.card import DeviceCard
from experiments.sweeps.spec import Point, SweepSpec, card_with
from hwloop.errors import HwloopError

PONG_CHECKPOINT = Path(__file__).resolve().parents[1] / "pong" / "checkpoints" / "stpn64.safetensors"


class NoHardwareAwareTraining(HwloopError):
    """The installed hwloop's ART training takes no ``hardware_aware`` option."""


def run_point(spec_json: dict[str, Any], point_json: dict[str, Any]) -> dict[str, Any]:
    """Evaluate one point; returns its metrics plus where and how long it ran (s)."""
    spec = SweepSpec.model_validate(spec_json)
    point = Point.model_validate(point_json)
    started = time.time()
    metrics = evaluate_point(spec, point)
    return {
        "metrics": metrics,
        "seconds": time.time() - started,
        "started_at": started,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def point_card(spec: SweepSpec, point: Point) -> DeviceCard | None:
    """The card of ``point``: the spec's card with the point's swept fields, or None if none is used."""
    if not spec.uses_card():
        return None
    return card_with(spec.base_card(), point.card_overrides())


def point_backend(spec: SweepSpec, point: Point) -> Any:
    """The crossbar backend of ``point`` (``hwloop.crossbar.make_backend``), seeded by its chip seed."""
    from hwloop.crossbar import make_backend

    options: dict[str, Any] = {**spec.backend.options, **point.backend_options(), "seed": point.chip_seed}
    card = point_card(spec, point)
    if card is not None:
        options["card"] = card
    if spec.backend.calibration is not None:
        options["calibration"] = spec.backend.calibration
    return make_backend(spec.backend.name, **options)


def evaluate_point(spec: SweepSpec, point: Point) -> dict[str, float]:
    """Run the spec's task at ``point``; returns every metric the task has (see ``spec.METRICS``)."""
    import torch

    torch.set_num_threads(max(1, int(spec.execution.cpus_per_point)))
    task = spec.task
    if task.kind == "art-eval":
        return _art_eval(spec, point)
    if task.kind == "art-train-eval":
        return _art_train_eval(spec, point)
    return _pong(spec, point)


def _art_metrics(net: Any, n: int, seed: int) -> dict[str, float]:
    from experiments.art.evaluate import fresh_accuracy

    metrics = {"accuracy": fresh_accuracy(net, n, seed)}
    energy = net.stpn.crossbar.energy()
    metrics["energy_j"] = float(sum(energy.values()))
    metrics.update({f"energy_{key}": float(value) for key, value in energy.items()})
    return metrics


def _art_eval(spec: SweepSpec, point: Point) -> dict[str, float]:
    from experiments.art import DEFAULT_CHECKPOINT, load_model

    task = spec.task
    assert task.kind == "art-eval"
    checkpoint = task.checkpoint or DEFAULT_CHECKPOINT
    net = load_model(checkpoint)
    if net.arch != "stpn":
        raise HwloopError(f"{checkpoint} holds an {net.label} model; a sweep needs an STPN on a crossbar")
    net.set_backend(point_backend(spec, point))
    return _art_metrics(net, task.n, task.test_seed + point.repeat)


def hardware_aware_training() -> tuple[Any, Any]:
    """The ART training entry point and the ``hwloop.backends.aware`` module, if this hwloop trains
    hardware-aware (``train`` takes a ``backend`` and a ``lambda_range``); else one clear
    ``NoHardwareAwareTraining``."""
    from experiments.art import train as art_train

    params = inspect.signature(art_train.train).parameters
    try:
        aware_module = importlib.import_module("hwloop.backends.aware")
    except ImportError:
        aware_module = None
    if aware_module is None or "backend" not in params or "lambda_range" not in params:
        raise NoHardwareAwareTraining(
            "this hwloop has no hardware-aware training (experiments.art.train.train takes no backend / "
            "lambda_range, or hwloop.backends.aware is missing); use task kind 'art-eval'"
        )
    return art_train.train, aware_module


def _art_train_eval(spec: SweepSpec, point: Point) -> dict[str, float]:
    """Hardware-aware training on the point's card (``hwloop art train --hardware-aware``: the aware
    backend draws chips from the card, seeded by the chip seed), then evaluation on the spec's backend
    with the point's chip."""
    from experiments.art import load_model
    from experiments.art.model import N_SYMBOLS
    from hwloop.crossbar import make_backend

    train, aware_module = hardware_aware_training()
    task = spec.task
    assert task.kind == "art-train-eval"
    card = point_card(spec, point)
    options = {**spec.backend.options, **point.backend_options()}
    aware_params = inspect.signature(aware_module.AwareCrossbar).parameters
    aware_options = {k: v for k, v in options.items() if k in aware_params}
    aware = make_backend(
        "aware", card=card, calibration=spec.backend.calibration, seed=point.chip_seed, **aware_options
    )
    hidden = task.hidden or 11
    dt_s = float(options.get("dt_s", 0.1))  # type: ignore[arg-type]
    lambda_range = aware_module.trainable_lambda_range(
        card, dt_s, (hidden, N_SYMBOLS + hidden), spec.backend.calibration
    )
    init = load_model(task.checkpoint) if task.checkpoint is not None else None
    net, history, _ = train(
        "stpn",
        task.epochs,
        task.train_seed,
        hidden_size=hidden,
        train_size=task.train_size,
        backend=aware,
        lambda_range=lambda_range,
        init=init,
    )
    net.set_backend(point_backend(spec, point))
    metrics = _art_metrics(net, task.n, task.test_seed + point.repeat)
    metrics["train_val_accuracy"] = float(history[-1].val_accuracy)
    return metrics


def _pong(spec: SweepSpec, point: Point) -> dict[str, float]:
    from experiments.pong.agent import load_agent
    from experiments.pong.evaluate import evaluate

    task = spec.task
    assert task.kind == "pong"
    agent = load_agent(task.checkpoint or PONG_CHECKPOINT)
    if agent.core_name != "stpn":
        raise HwloopError("a Pong sweep needs an STPN agent on a crossbar")
    agent.core.set_backend(point_backend(spec, point))  # type: ignore[operator]
    seed = task.game_seed + point.repeat * task.episodes
    result, _ = evaluate(agent, task.episodes, seed, backend=spec.backend.name, sticky=task.sticky)
    energy = result.energy or {}
    per_step = energy.get("per_step_mean", float("nan"))
    return {
        "mean_score": result.mean_score,
        "mean_earned_score": result.mean_earned_score,
        "energy_per_step": float(per_step) if isinstance(per_step, float | int) else float("nan"),
    }
