"""The simulated lab: three SMUs, each with one device, and crossbar arrays, on a virtual clock.

``SimLab(seed)`` builds the SMU emulators (their devices drawn reproducibly from the seed and a
``device_models`` card); ``SimArray(rows, cols, seed)`` is the array behind a simulated crossbar
controller. Both expose the ground truth (``device.tau_s(bias_v)``) for tests and calibration checks.
"""

from __future__ import annotations

import numpy as np

from device_models.card import DeviceCard, load_card
from device_models.chip import device_grid
from drivers.sim.b2900 import B2900Emulator
from drivers.sim.clock import VirtualClock
from drivers.sim.devices import DeviceArray
from drivers.sim.diffusive import DEVICE_TYPES, DiffusiveFilaments
from drivers.sim.emulator import DEFAULT_LINE_FREQUENCY_HZ, SmuEmulator
from drivers.sim.faults import Faults
from drivers.sim.k2450 import K2450Emulator
from drivers.sim.k2600 import K2600Emulator

SIM_HOSTS: dict[str, type[SmuEmulator]] = {
    "k2450.sim": K2450Emulator,
    "k2636b.sim": K2600Emulator,
    "b2912a.sim": B2900Emulator,
}
SIM_RESOURCES = tuple(f"TCPIP::{host}::INSTR" for host in SIM_HOSTS)


class SimLab:
    """Simulated SMUs sharing one virtual clock and mains (``line_frequency_hz``, 50 or 60 Hz);
    ``faults`` maps a host (e.g. "k2450.sim") to its faults; ``models`` picks another model behind a
    host (e.g. ``{"k2636b.sim": "2611B", "b2912a.sim": "B2901A"}``: its ranges and ``*IDN?``)."""

    def __init__(
        self,
        seed: int = 0,
        card: DeviceCard | None = None,
        faults: dict[str, Faults] | None = None,
        line_frequency_hz: float = DEFAULT_LINE_FREQUENCY_HZ,
        models: dict[str, str] | None = None,
    ) -> None:
        self.seed = seed
        self.line_frequency_hz = line_frequency_hz
        self.card = load_card(card)
        self.clock = VirtualClock()
        self.faults = dict(faults or {})
        self.instruments: dict[str, SmuEmulator] = {}
        for k, (host, emulator_cls) in enumerate(SIM_HOSTS.items()):
            rng = np.random.default_rng([seed, k])
            device = DeviceArray(self.card, (), rng)
            model = {"model": models[host]} if models and host in models else {}
            self.instruments[host] = emulator_cls(
                self.clock, device, self.faults.get(host), line_frequency_hz, **model
            )

    def instrument(self, host: str) -> SmuEmulator:
        """The emulator answering at ``host`` (e.g. "k2450.sim")."""
        return self.instruments[host]

    def device(self, host: str) -> DeviceArray:
        """The device wired to the SMU at ``host`` (its parameters are the ground truth)."""
        return self.instruments[host].device

    def inject(self, host: str, faults: Faults) -> None:
        """Replace the faults of the instrument at ``host`` from now on."""
        self.faults[host] = faults
        self.instruments[host].faults = faults


class SimArray:
    """A rows x cols array of devices behind a simulated crossbar controller, on its own virtual clock."""

    def __init__(
        self, rows: int, cols: int, seed: int = 0, card: DeviceCard | None = None, device: str = "memristive"
    ) -> None:
        if device not in DEVICE_TYPES:
            raise ValueError(f"unknown simulated device type {device!r}; known: {', '.join(DEVICE_TYPES)}")
        self.rows, self.cols, self.seed, self.device = rows, cols, seed, device
        self.card = load_card(card)
        self.clock = VirtualClock()
        self.devices = DeviceArray(  # the chip: the same draw as the realisation of an R x C/2 pair array
            self.card,
            (rows, cols),
            np.random.default_rng([seed, 1000 + rows * 1000 + cols]),
            chip=device_grid(self.card, seed, rows, cols),
        )
        if device == "diffusive":  # relaxation by ruptures, mean strand life = the card's tau at 0 V
            self.devices.filaments = DiffusiveFilaments(
                (rows, cols), self.devices.tau_s(0.0), np.random.default_rng([seed, 7, rows, cols])
            )
        # the virtual time (s) up to which each row's devices have been evolved (see XbarFirmware)
        self.settled_s = np.full(rows, self.clock.now_s())

    def tau_s(self, bias_v: float = 0.0) -> np.ndarray:
        """Ground truth: each device's decay time constant (s) at ``bias_v`` (V), shape (rows, cols)."""
        return self.devices.tau_s(bias_v)
