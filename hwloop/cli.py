"""The ``hwloop`` command line: the composition root that wires every package together."""

from __future__ import annotations

import sys

import typer

from hwloop.commands.art import app as art_app
from hwloop.commands.calibrate import app as calibrate_app
from hwloop.commands.devices import app as devices_app
from hwloop.commands.energy import app as energy_app
from hwloop.commands.instruments import app as instruments_app
from hwloop.commands.lab import app as lab_app
from hwloop.commands.pong import app as pong_app
from hwloop.commands.sweep import app as sweep_app
from hwloop.commands.view import view_cmd
from hwloop.errors import HwloopError

app = typer.Typer(
    name="hwloop",
    help="Short-Term-Plasticity-Neuron networks on memristive crossbars.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(art_app, name="art", help="Associative retrieval task (Ba et al. 2016): train and evaluate.")
app.add_typer(
    pong_app, name="pong", help="Atari Pong from pixels with an STPN agent: evaluate (default) and train."
)
app.add_typer(calibrate_app, name="calibrate", help="Measure or import decays; fit, report, map.")
app.add_typer(devices_app, name="devices", help="Device cards: show one, simulate a pulse-then-decay trace.")
app.add_typer(energy_app, name="energy", help="Energy per game in joules: device, GPU and the paper.")
app.add_typer(
    instruments_app,
    name="instruments",
    help="Lab instruments (SMUs, crossbar controller), real or simulated.",
)
app.add_typer(lab_app, name="lab", help="Lab runs (mixed mode): fidelity report of a step log.")
app.add_typer(
    sweep_app, name="sweep", help="Variability-tolerance sweeps on Ray: run a spec, report thresholds."
)
app.command("view", help="Follow a campaign file or a lab step log live in the browser.")(view_cmd)


def main() -> None:
    """Entry point: user mistakes become one ``error:`` line and exit code 2, never a stack trace.

    Usage errors (unknown option, a number that is not a number) are reported by typer itself, in
    standalone mode, also with exit code 2; ``HwloopError`` from a command is printed here.
    """
    try:
        app()
    except HwloopError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
