"""The lab backend: a block of STPN synapses on a controller-driven crossbar, the rest emulated (mixed mode).

A block of synapses (rows ``rows`` x columns ``cols`` of the layer's H x K matrix, or all of them) keeps
its short-term state F on the devices of a crossbar controller (``drivers.controller``: a real one on a
serial port, or the simulated lab's ``xbarsim://``); every other synapse, and the block's long-term
weights W, stay on the emulated array (``hwloop.backends.emulated``). Each synapse of the block is a
volatile pair [G+, G-] placed by the realisation's device-assignment rule (``Realisation.device_index``:
block row i on controller row i, G+ of column j on controller column j, G- on column C + j), as the
emulated backend's exact mode places F on a separate volatile pair. The block's device model is the chip
the simulated array is drawn from (``device_models.chip``): same stuck devices, same decay times.

**Line biases** (protocol v3): at ``program`` the controller's lines are set to the compiled line
voltages of the emulated array (``EmulatedCrossbar.line_bias``): block row i at row_v[r0 + i], block
column j at col_v[c0 + j] for G+ and col_v[K + c0 + j] for G-, other lines at 0 V; so each device decays
at the bias the model was compiled to. A v2 controller has no bias: the block then decays at each
device's own 0 V retention (stated in ``stats`` and the log as "no bias").

**Normalisation** as the emulated backend runs it (``normalisation``; docs/normalisation.md). Exact: the
periphery keeps a digital scale s_i per block row, F = s f (f the devices' volatile state); per step
s_i <- s_i / n_i; when the write gain 1/s_i would pass ``max_write_gain``, or the row's F would not fit
its devices at that gain, the row is refreshed: its devices are written (in the step's own pulses) to hold
F at the largest gain, at most ``max_write_gain``, at which every synapse's carrying device can be taken
to f in one step's pulses from rest (``_fitting_scale``; the same F = s f: the emulated backend refreshes
to s = 1, a lab block to the largest gain because its read noise, in F units, shrinks by that gain); each
refresh is counted per step in the log (``refreshed``). Native: s = 1, no division.

Each agent step:

1. **read**: every block row is read at ``read_v`` (``READBLOCK``, or ``READROW`` per row on an older
   controller), ``reads_per_device`` times, averaged; G = I / V minus each device's conductance at rest
   gives the volatile part; F = s (g+ - g-) / g_per_weight;
2. **neurons**: the measured F replaces the block in the layer's state and the periphery computes
   y = G z / n, h = tanh(y + b) digitally (the emulated array supplies the rest of the row);
3. **write**: the STPN's update of the block from the measured state (``_model_update``: each device
   decays by its own retention at its held bias, s / n (lambda+ g+ - lambda- g-) / g_per_weight, plus the
   trained gamma h z) is what the pair must hold at the next read. Each row's pulses land part-way through
   the send, so the plan starts from each device's state at its pulse (decayed since the read) and aims
   a state that decays to the target by the row's next read; the pulse law is inverted with the block's
   own devices: a pulse train per device (``PULSEBLOCK``, ``_device_plan``), or signed row pulses on an
   older controller (``PULSEROW``, ``_write_plan``); writes past the window or the step's pulses are
   dropped (counted);
4. **decay**: nothing is computed: the devices relax at their held bias over the step's real duration,
   paced to dt on the controller's clock (``hwloop.pacing``; virtual on the simulated lab).

**Fidelity**: per step the log holds the measured F, the F the model's own update gave for that step
(step 3's update from the previous step's reads and inputs; the emulated array's for digital synapses)
and their difference (``hwloop lab report LOG``). Synapses with a stuck device keep a digital F (as
the emulated backend's fault-aware programming does) and are left out of the fidelity figures.

Every step's I/O goes to an HDF5 log (``hwloop.backends.lab_log``). Every pulse and bias passes the user's
``SafetyLimits`` in the driver; a refused pulse or bias is an error naming the step. Any error sends the
controller to 0 V (``RST``: every line, bias included) and closes the log intact. Batch size 1 (one
physical array, one game). See docs/hil.md.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from device_models.card import DeviceCard, load_card
from device_models.laws import exp_tau_s
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import Readout, StepResult, Synapses
from hwloop.errors import HwloopError, ShapeError

if TYPE_CHECKING:
    from device_models.realisation import Realisation
    from drivers.controller import CrossbarController
    from drivers.safety import SafetyLimits
    from hwloop.backends.lab_log import LabLog
    from hwloop.pacing import StepPacer

PULSES_PER_ROW = 2  # row pulses per row and step: each covers a (v_max / v_threshold)^a range of drive
PULSES_PER_DEVICE = 2  # with PULSEBLOCK: a device's train per step (a 16-row block then fits 1/15 s)
SIM_BAUD = 12_000_000  # the simulated controller's link: 12 Mbaud 8N1, 1.2 MB/s (an FT232H UART, or about
# a USB full-speed CDC-ACM link's throughput)
SERIAL_BAUD = 115_200  # the protocol's documented rate for any other serial controller
FINE_TICKS = 50  # a PULSEBLOCK pulse this many pulse-timer ticks long is width-modulated alone
AMPLITUDE_STEP_V = 1e-3  # PULSEBLOCK amplitudes are sent to the mV (a pulse DAC's step is coarser still)
DEFAULT_LOG = Path("hwloop-lab.h5")
BLOCK_READS = 8  # reads averaged per device by default with READBLOCK (docs/hil.md: noise vs step time)


class LabError(HwloopError):
    """The lab backend stopped: the step, the synapse or row, and the instrument's reason."""


@dataclass(frozen=True)
class WritePlan:
    """One step's pulses for the block and what they are expected to do.

    widths (s) and signed amplitudes (V): (P, R) and (P, R, D) row pulses, or (R, D) per-device trains
    with ``counts`` (R, D) pulses each (``PULSEBLOCK``; None for row pulses). g_after (2, R, C): the
    volatile parts (S) the pulses are expected to leave; delivered (2, R, C): the signed drive each
    device gets; dropped (2, R, C): devices whose write is not delivered in full (past the window, not
    reachable by the step's pulses, or left out of the send).
    """

    widths: np.ndarray
    amps: np.ndarray
    counts: np.ndarray | None
    g_after: np.ndarray
    delivered: np.ndarray
    dropped: np.ndarray


def sim_limits() -> SafetyLimits:
    """Limits used against the simulated lab when the user gives none: the card's 2 V pulse ceiling,
    1 ms pulses, 1 mA compliance, 1000 pulses/s (a row pulse per row and step at 15 steps/s needs ~250)."""
    from drivers.safety import SafetyLimits

    return SafetyLimits(
        max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1000
    )


def parse_span(text: str | int, size: int, what: str) -> tuple[int, int]:
    """``"0:8"`` -> (0, 8) inside [0, size]; ``"all"`` -> (0, size); one clear error otherwise."""
    if str(text).strip().lower() == "all":
        return 0, size
    lo, sep, hi = str(text).partition(":")
    try:
        start, stop = int(lo), int(hi)
    except ValueError:
        raise HwloopError(f"lab backend: {what}={text!r}: expected START:STOP (e.g. 0:8) or all") from None
    if not sep or not 0 <= start < stop <= size:
        raise HwloopError(f"lab backend: {what}={text!r} is not a non-empty span inside 0:{size}")
    return start, stop


class LabCrossbar:
    """Mixed-mode STPN synapses: a block on a crossbar controller, the rest emulated (module docstring).

    resource: controller resource (serial port or ``xbarsim://ROWSxCOLS?seed=N``); default the simulated
        lab ``xbarsim://{R}x{2C}?seed={seed}``.
    rows, cols: the block, ``START:STOP`` spans of the layer's H rows and K columns, or ``all``.
    card, calibration, seed, dt_s, normalisation: as the emulated backend (dt_s: real s per step).
    limits: SafetyLimits file (.toml/.json); required for a real controller, ``sim_limits()`` on the sim.
    log: HDF5 step log (runs are appended), default ``hwloop-lab.h5`` in the working directory; one run
        writes a log at a time.
    read_v: read voltage (V), below the card's pulse threshold; compliance_a: current limit (A).
    overrun: "wait" or "stop" (``hwloop.pacing``); rest_s: wait at each game's start so the block
        relaxes (s; default five of the slowest device's decay times at its held bias); baseline_reads:
        reads averaged for each device's conductance at rest; reads_per_device: reads averaged per device
        and step (read noise / sqrt(N), at N row reads' time each; default ``BLOCK_READS`` on a v3.1
        controller, which averages them on the card, 1 with per-row reads, a round trip each);
        max_write_gain: exact normalisation's largest write gain 1/s (the block's and the emulated
        rest's); bias_check_steps: every this many steps the line biases are sent again and read back (a
        controller that lost them is corrected; logged);
        pulses_per_row: row pulses per row and step at most (each ~2 serial round trips of time; with
        protocol v3.1's block commands every device gets its own pulse train and this is unused).
    pulses_per_device: with block commands, pulses per device and step at most (each at most the
        longest width, added to its row's time).
    baudrate: serial link speed (bit/s); default 12 Mbaud on ``xbarsim://``, 115200 on any other port.
    nonidealities: the emulated array's preset (``device_models.array.NONIDEALITY_PRESETS``); the block's
        chip model is compiled from the same config.
    """

    name = "lab"

    def __init__(
        self,
        resource: str | None = None,
        rows: str = "0:8",
        cols: str = "0:8",
        card: str | Path | DeviceCard | None = None,
        calibration: str | Path | None = None,
        seed: int = 0,
        dt_s: float = 0.1,
        normalisation: str = "exact",
        limits: str | Path | None = None,
        log: str | Path | None = None,
        read_v: float = 0.2,
        compliance_a: float = 1e-6,
        overrun: str = "wait",
        rest_s: float | None = None,
        baseline_reads: int = 4,
        reads_per_device: int | None = None,
        max_write_gain: float = 16.0,
        bias_check_steps: int = 100,
        pulses_per_row: int = PULSES_PER_ROW,
        nonidealities: str | None = None,
        baudrate: int | None = None,
        pulses_per_device: int = PULSES_PER_DEVICE,
    ) -> None:
        from hwloop.pacing import POLICIES

        self.card = load_card(card)
        if not 0 < read_v < self.card.pulse.v_threshold_v:
            raise HwloopError(
                f"lab backend: read_v={read_v} V must be positive and below the card's pulse threshold "
                f"{self.card.pulse.v_threshold_v} V (a read must not write)"
            )
        if overrun not in POLICIES:
            raise HwloopError(f"lab backend: overrun={overrun!r}; choose one of {', '.join(POLICIES)}")
        for name, value in (
            ("baseline_reads", baseline_reads),
            ("reads_per_device", 1 if reads_per_device is None else reads_per_device),
            ("bias_check_steps", bias_check_steps),
            ("pulses_per_row", pulses_per_row),
            ("pulses_per_device", pulses_per_device),
        ):
            if not (isinstance(value, int) and value >= 1):
                raise HwloopError(f"lab backend: {name} must be a positive integer, got {value!r}")
        self.emulated = EmulatedCrossbar(
            card=self.card,
            calibration=calibration,
            seed=seed,
            dt_s=dt_s,
            normalisation=normalisation,  # type: ignore[arg-type]
            nonidealities=nonidealities,
            max_write_gain=max_write_gain,  # one gain for the block and the emulated rest of the array
        )
        self.normalisation, self.max_write_gain = self.emulated.normalisation, self.emulated.max_write_gain
        self.reads_asked, self.bias_check_steps = reads_per_device, bias_check_steps
        self.reads_per_device = 0  # resolved by ``program`` from reads_asked and the controller
        self.pulses_per_row, self.pulses_per_device = pulses_per_row, pulses_per_device
        if baudrate is not None and not (isinstance(baudrate, int) and baudrate > 0):
            raise HwloopError(f"lab backend: baudrate must be a positive integer (bit/s), got {baudrate!r}")
        self.baudrate = baudrate
        self.calibration, self.seed, self.dt_s = calibration, int(seed), float(dt_s)
        self.resource, self.rows_text, self.cols_text = resource, rows, cols
        self.limits_path, self.log_path = limits, Path(log) if log is not None else DEFAULT_LOG
        self.read_v, self.compliance_a, self.overrun = float(read_v), float(compliance_a), overrun
        self.rest_s, self.baseline_reads = rest_s, baseline_reads
        self.controller: CrossbarController | None = None
        self.log: LabLog | None = None
        self.pacer: StepPacer | None = None
        self.step_index, self.episode, self.dropped_writes = 0, -1, 0
        self._lab_energy = {"lab_read_j": 0.0, "lab_program_j": 0.0, "lab_bias_j": 0.0}
        self._last_pulse_s = -math.inf
        self.refresh_rows = 0
        self.bias_mode = "not programmed"
        # sums over analog synapses and steps with a model F: meas^2, model^2, meas*model, meas, model, n
        self._fid = np.zeros(6)

    # -- programming -----------------------------------------------------------------------------
    def program(self, synapses: Synapses) -> None:
        """Program the emulated array, open the controller, place the block and measure it at rest."""
        from hwloop.backends.lab_log import LabLog
        from hwloop.pacing import StepPacer

        self.emulated.program(synapses)
        h, k = synapses.weight.shape
        self.r0, self.r1 = parse_span(self.rows_text, h, "rows")
        self.c0, self.c1 = parse_span(self.cols_text, k, "cols")
        # the block's bias and writes are measured on the controller (lab_*_j), not charged twice
        self.emulated.exclude_from_energy(slice(self.r0, self.r1), slice(self.c0, self.c1))
        R, C = self.r1 - self.r0, self.c1 - self.c0
        record = self.emulated.record
        if record is not None and tuple(record.shape[:2]) != (R, 2 * C):
            raise HwloopError(
                f"lab backend: {self.calibration} calibrates a {record.shape[0]} x {record.shape[1]} "
                f"array; the block's devices are the controller's first {R} rows x {2 * C} columns, "
                "so calibrate exactly those (hwloop calibrate run --resource ...)"
            )
        # the block's chip: the emulated array's config compiled for the block (the chip the simulated
        # lab draws for the same seed: ``device_models.chip``)
        self.real: Realisation = self.emulated.config.realise((R, C))
        idx = self.real.device_index  # row-major into an R x 2C array: THE assignment rule
        self.dev_row, self.dev_col = idx // (2 * C), idx % (2 * C)
        self.device_cols = 2 * C
        self._row_law = self.real.pulse_law.on_grid(self.dev_row, self.dev_col, (R, 2 * C))
        lam = synapses.lam.detach().to(torch.float64)[self.r0 : self.r1, self.c0 : self.c1].numpy()
        self.lam_target = lam
        gamma = synapses.gamma.detach().to(torch.float64)[self.r0 : self.r1, self.c0 : self.c1]
        self.gamma_block = gamma.numpy()
        self.block_row_v, self.block_col_v = self._compiled_lines(k)
        self.bias_prescribed_v = _device_bias(self.block_row_v, self.block_col_v)
        # digital F where a device of the pair is stuck (as the emulated backend's fault-aware programming)
        self.digital = ~(self.real.usable[0] & self.real.usable[1])
        self.scale = np.ones(R)
        self.f_model_next: np.ndarray | None = None
        self._step_s = self.dt_s  # expected time from one read of a row to the next (s)
        self._send_s = 0.0  # how long the last step's pulses took to send (s)
        self._row_pulse_s = 0.0  # the longest one row pulse (PULSEROW) has taken (s)
        if self.controller is None:
            self._open(R, C)
        assert self.controller is not None
        self.block_io = bool(getattr(self.controller, "block_capable", False))
        # None: BLOCK_READS averaged on the card with READBLOCK; 1 otherwise (each read is a round trip)
        self.reads_per_device = self.reads_asked or (BLOCK_READS if self.block_io else 1)
        self._reach_siemens, self._erase_left = self._train_reach()
        self.pacer = StepPacer(self.controller.clock, self.dt_s, self.overrun)
        try:
            self._hold_bias()
            if self.log is None:
                self.log = LabLog(
                    self.log_path,
                    rows=R,
                    cols=C,
                    device_cols=self.device_cols,
                    pulses_per_row=self.pulses_per_row,
                    device_pulses=self.block_io,
                    attrs=self._log_attrs(h, k),
                )
            self._measure_baseline()
        except BaseException:
            self.close()  # lines to 0 V, link closed
            raise

    def _compiled_lines(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(row_v (R,), col_v (2C,)) of the block's lines from the emulated array's compiled line bias:
        row i at row_v[r0 + i], G+ of column j at col_v[c0 + j], G- at col_v[K + c0 + j] (V). Without
        compiled lines (topology "device"), lines fitted to the block's device biases; "none": 0 V."""
        from device_models.bias_lines import fit_line_bias

        lines = self.emulated.line_bias
        if lines is not None:
            row_v = lines.row_v[self.r0 : self.r1]
            col_v = np.concatenate([lines.col_v[self.c0 : self.c1], lines.col_v[k + self.c0 : k + self.c1]])
            return np.asarray(row_v, dtype=float), np.asarray(col_v, dtype=float)
        target = self.emulated.decay_bias_v.numpy()[:, self.r0 : self.r1, self.c0 : self.c1]
        if not np.any(target):
            return np.zeros(self.r1 - self.r0), np.zeros(2 * (self.c1 - self.c0))
        b = self.card.bias
        fit = fit_line_bias(
            target,
            np.full(target.shape, b.bias_efold_v),
            self.real.usable.astype(float),
            (b.bias_min_v, b.bias_max_v),
        )
        return fit.row_v, fit.col_v

    def _hold_bias(self) -> None:
        """Set the controller's lines to the block's compiled voltages (v3), read back what it holds,
        and take each device's retention at that bias; a v2 controller holds none (0 V)."""
        assert self.controller is not None
        ctrl, R, D = self.controller, self.r1 - self.r0, self.device_cols
        rows, cols = np.zeros(ctrl.rows), np.zeros(ctrl.cols)
        rows[:R], cols[:D] = self.block_row_v, self.block_col_v
        if ctrl.bias_capable:
            ctrl.set_line_bias(rows, cols, write_threshold_v=self.card.pulse.v_threshold_v)
            held_rows, held_cols = ctrl.line_bias()
            self.bias_mode = f"lines (protocol v{ctrl.protocol})"
        else:
            held_rows, held_cols = np.zeros(ctrl.rows), np.zeros(ctrl.cols)
            self.bias_mode = f"no bias (protocol v{ctrl.protocol}: lines idle at 0 V)"
        self.held_row_v, self.held_col_v = held_rows[:R], held_cols[:D]
        self.bias_held_v = _device_bias(self.held_row_v, self.held_col_v)
        self.lam_idle = self.real.lambda_at_bias(self.bias_held_v)  # per step, at the bias held

    def _open(self, R: int, C: int) -> None:
        from drivers.factory import is_simulated, open_controller
        from drivers.safety import SafetyLimits

        resource = self.resource or f"xbarsim://{R}x{2 * C}?seed={self.seed}"
        if self.limits_path is not None:
            self.limits = SafetyLimits.load(Path(self.limits_path))
        elif is_simulated(resource):
            self.limits = sim_limits()
        else:
            raise HwloopError(
                f"lab backend on {resource}: a real controller needs your safety limits, "
                "--backend-option limits=LIMITS.toml"
            )
        self.resource = resource
        baud = self.baudrate or (SIM_BAUD if resource.startswith("xbarsim://") else SERIAL_BAUD)
        self.baudrate = baud
        controller = open_controller(resource, self.limits, baudrate=baud)
        try:
            if controller.rows < R or controller.cols < 2 * C:
                raise HwloopError(
                    f"lab backend: the block needs {R} rows x {2 * C} columns (a device pair per synapse), "
                    f"{resource} has {controller.rows} x {controller.cols}"
                )
            self.idn = controller.identify()
            controller.set_compliance(self.compliance_a)
        except BaseException:
            controller.close()
            raise
        self.controller = controller

    def _log_attrs(self, h: int, k: int) -> dict[str, Any]:
        import json

        return {
            "resource": str(self.resource),
            "idn": self.idn,
            "layer_shape": [h, k],
            "block_rows": [self.r0, self.r1],
            "block_cols": [self.c0, self.c1],
            "dt_s": self.dt_s,
            "read_v": self.read_v,
            "compliance_a": self.compliance_a,
            "bias": self.bias_mode,
            "row_bias_prescribed_v": self.block_row_v,
            "col_bias_prescribed_v": self.block_col_v,
            "row_bias_held_v": self.held_row_v,
            "col_bias_held_v": self.held_col_v,
            "normalisation": self.normalisation,
            "max_write_gain": self.max_write_gain,
            "reads_per_device": self.reads_per_device,
            "digital_synapses": self.digital,
            "g_per_weight": self.emulated.g_per_weight,
            "limits": json.dumps(self.limits.model_dump()),
            "card": self.card.meta.name,
            "overrun_policy": self.overrun,
            "baudrate": int(self.baudrate or 0),
            "controller_version": str(getattr(self.controller, "version", "")),
            "pulse_commands": "PULSEBLOCK (a train per device)" if self.block_io else "PULSEROW (row pulses)",
            "device_row": self.dev_row,
            "device_col": self.dev_col,
        }

    def _read_block(self, reads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(timestamps (R,), currents (R, D)) of every block row at ``read_v``, ``reads`` reads averaged
        (the timestamp of each row's first read)."""
        assert self.controller is not None
        R = self.r1 - self.r0
        t, i = np.empty(R), np.zeros((R, self.device_cols))
        if self.block_io:  # protocol v3.1: the whole block in a few READBLOCK frames, averaged on the card
            train = self.controller.read_rows(0, R, self.read_v, reads)
            return train.t_s, train.i_a[:, : self.device_cols]
        for r in range(R):
            for q in range(reads):
                reading = self.controller.read_row(r, self.read_v)
                if q == 0:
                    t[r] = reading.t_s
                i[r] += reading.i_a[: self.device_cols]
        return t, i / reads

    def _measure_baseline(self) -> None:
        reads = [self._read_block()[1] for _ in range(self.baseline_reads)]
        self.baseline_g = np.mean(reads, axis=0) / self.read_v
        from device_models.memristor import read_noise_var_siemens2

        sigma = np.sqrt(
            read_noise_var_siemens2(
                self.baseline_g, self.card.variability.read_noise_rel, self.card.window.g_max_siemens
            )
            / self.reads_per_device
        )
        self._noise_floor = 2 * sigma[self.dev_row, self.dev_col]  # (2, R, C) S
        assert self.log is not None
        self.log.set_baseline(self.baseline_g)

    # -- state -----------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> Tensor:
        """F = 0 (1, H, K); the block first relaxes for ``rest_s`` and is measured at rest again."""
        if batch_size != 1:
            self.close()  # programmed already: lines to 0 V, log closed
            raise ShapeError(
                f"the lab backend holds one game's state on one array: batch size 1, got {batch_size}"
            )
        F = self.emulated.initial_state(1)
        assert self.controller is not None and self.log is not None and self.pacer is not None
        self.episode += 1
        rest = self._rest_s()
        try:
            self.controller.wait(rest)
            self._measure_baseline()
        except BaseException as exc:
            error = self._abort(exc)
            if error is exc:
                raise
            raise error from exc
        self.log.event(self.step_index, f"game {self.episode}: rested {rest:.3g} s, baseline re-measured")
        self.scale = np.ones(self.r1 - self.r0)
        self.f_model_next = None
        self._step_s = self.dt_s
        self._send_s = 0.0
        self.pacer.restart()
        return F

    def _rest_s(self) -> float:
        if self.rest_s is not None:
            return float(self.rest_s)
        lam = self.lam_idle[self.real.usable]
        slowest = float(lam.max()) if lam.size else 0.0
        return 0.0 if slowest <= 0 else 5 * float(exp_tau_s(min(slowest, 1 - 1e-12), self.dt_s))

    # -- the step --------------------------------------------------------------------------------
    def read(self, F: Tensor, z: Tensor, *, energy: bool = False) -> Readout:
        """Not offered alone: a lab step is read, neurons and write in one paced unit (``step``)."""
        raise HwloopError("the lab backend runs whole steps (read, neurons, write): use step()")

    def update(self, F: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """Not offered alone (see ``read``)."""
        raise HwloopError("the lab backend runs whole steps (read, neurons, write): use step()")

    def step(self, F: Tensor, z: Tensor, bias: Tensor, *, energy: bool = False) -> StepResult:
        """One paced agent step: measure the block, run the neurons, send the write pulses, let it decay."""
        if F.shape[0] != 1:
            raise ShapeError(f"the lab backend runs batch size 1, got F of shape {tuple(F.shape)}")
        try:
            return self._step(F, z, bias, energy)
        except BaseException as exc:
            error = self._abort(exc)
            if error is exc:
                raise
            raise error from exc

    def _step(self, F: Tensor, z: Tensor, bias: Tensor, energy: bool) -> StepResult:
        from hwloop.backends.lab_log import wall_time_s

        assert self.controller is not None and self.log is not None and self.pacer is not None
        k, (r0, r1, c0, c1) = self.step_index, (self.r0, self.r1, self.c0, self.c1)
        gpw, plus, minus = (
            self.emulated.g_per_weight,
            (self.dev_row[0], self.dev_col[0]),
            (self.dev_row[1], self.dev_col[1]),
        )
        t_start = self.pacer.start()
        if k > 0 and k % self.bias_check_steps == 0 and self.controller.bias_capable:
            self._hold_bias()  # a bias update: sent again, read back
            error_mv = 1e3 * max(
                float(np.max(np.abs(self.held_row_v - self.block_row_v))),
                float(np.max(np.abs(self.held_col_v - self.block_col_v))),
            )
            self.log.event(k, f"bias update: lines sent again, held within {error_mv:.2f} mV of prescribed")
        # 1. read: F of the block is measured (F = s f, f the devices' volatile state)
        t_read, current = self._read_block(self.reads_per_device)
        g_st = current / self.read_v - self.baseline_g
        f_phys = (g_st[plus] - g_st[minus]) / gpw
        f_meas = self.scale[:, None] * f_phys
        f_model = self.f_model_next if self.f_model_next is not None else np.full_like(f_meas, np.nan)
        f_meas = np.where(self.digital, np.nan_to_num(f_model), f_meas)  # digital F: the model's
        g = current / self.read_v
        self._lab_energy["lab_read_j"] += self.reads_per_device * float(
            np.sum(self.real.read_energy_j(g, self.read_v))
        )
        g_pair = np.stack([g[plus], g[minus]])
        self._lab_energy["lab_bias_j"] += (
            float(np.sum(self.real.bias_power_w(g_pair, self.bias_held_v))) * self.dt_s
        )
        with torch.no_grad():
            F[0, r0:r1, c0:c1] = torch.from_numpy(f_meas).to(F.dtype)
            # 2. neurons, digitally, with the emulated rest of each row
            out = self.emulated.read(F, z, energy=energy)
            h = torch.tanh(out.y + bias)
            block = (slice(r0, r1), slice(c0, c1))
            zb, hb = z[0, c0:c1].to(torch.float64), h[0, r0:r1].to(torch.float64)
            n = (
                out.n[0, r0:r1].to(torch.float64).numpy()
                if self.normalisation == "exact"
                else np.ones(r1 - r0)
            )
            # the STPN's own update of the block from the same F and inputs, noiseless: digital synapses
            # as the emulated array computes them, analog ones with the block's own devices' retention
            digital_next = self.emulated.model_update(F, out.n, h, z, *block)[0].to(torch.float64).numpy()
            g_pair_st = np.stack([g_st[plus], g_st[minus]])  # (2, R, C) volatile parts as read, S
            f_model_next = np.where(
                self.digital, digital_next, self._model_update(g_pair_st, n, hb.numpy(), zb.numpy())
            )
            F_t = self.emulated.update(F, out.n, h, z)
            # 3. write: what brings the devices to that F at the next read
            g_now = g_pair_st  # as read: a device at rest reads about 0, either sign
            scale = self.scale / n
            f_target = f_model_next
            if self.normalisation == "exact":
                # a refreshed row is rewritten at the largest gain that keeps its devices inside the
                # reach of one step's pulses (at most max_write_gain): the read noise, which F = s f
                # divides by the gain, shrinks, and no target is clipped by the window
                fit = self._fitting_scale(f_target)
                refresh = (1.0 / scale > self.max_write_gain) | (scale < fit)
                scale = np.where(refresh, fit, scale)
            else:
                refresh = np.zeros(r1 - r0, dtype=bool)
            # each row's pulses land part-way through the send (as long as the last step's took): its
            # devices have decayed since the read, and what they hold after the pulses decays until
            # the row's next read
            sent = self.controller.clock.now_s()
            g_pulse, keep = self._at_pulse(g_now, t_read, self._pulse_times(sent, self._send_s))
            g_target, beyond = self._device_targets(f_target / scale[:, None], g_pulse, keep)
            g_target = np.where(self.digital, g_pulse, g_target)
            if self.block_io:
                plan = self._device_plan(g_pulse, g_target, beyond)
                self._send_block(k, plan, current / self.read_v)
            else:
                plan = self._write_plan(g_pulse, g_target, beyond)
                skipped = self._send(k, plan, current / self.read_v, t_start + self.dt_s)
                if skipped.any():  # row pulses that would have overrun the step: not delivered
                    plan = self._without(skipped, plan, g_pulse)
            g_after, dropped = plan.g_after, int(plan.dropped.sum())
            self.dropped_writes += dropped
            self._send_s = self.controller.clock.now_s() - sent
            f_target = np.where(
                self.digital, f_model_next, scale[:, None] * self._f_at_next_read(g_after, keep)
            )
            F_t[0, r0:r1, c0:c1] = torch.from_numpy(f_target).to(F_t.dtype)
        self.scale, self.f_model_next = scale, f_model_next
        self._step_s = max(self.dt_s, self.controller.clock.now_s() - t_start)  # the next read's distance
        self.refresh_rows += int(refresh.sum())
        self._count_fidelity(f_meas, f_model)
        # 4. decay: the devices relax until the step's deadline
        t_end = self.controller.clock.now_s()
        lateness = self.pacer.finish(k)
        self.log.append_step(
            step=k,
            episode=self.episode,
            t_start_s=t_start,
            t_end_s=t_end,
            lateness_s=lateness,
            wall_s=wall_time_s(),
            t_read_s=t_read,
            current_a=current,
            z=zb.numpy(),
            h=hb.numpy(),
            f_measured=f_meas,
            f_model=f_model,
            f_diff=f_meas - f_model,
            f_target=f_target,
            row_scale=scale,
            row_norm=n,
            refreshed=refresh.astype(np.int8),
            dropped=dropped,
            pulse_width_s=plan.widths,
            pulse_amplitude_v=plan.amps,
            **({"pulse_count": plan.counts} if plan.counts is not None else {}),
        )
        self.step_index += 1
        return StepResult(h, F_t, out.energy)

    def _count_fidelity(self, f_meas: np.ndarray, f_model: np.ndarray) -> None:
        """Running sums for the correlation and RMS ratio of measured vs model F (analog synapses)."""
        ok = ~self.digital & np.isfinite(f_model)
        a, b = f_meas[ok], f_model[ok]
        self._fid += np.array([a @ a, b @ b, a @ b, a.sum(), b.sum(), a.size])

    def _model_update(self, g_st: np.ndarray, n: np.ndarray, h: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(R, C) the STPN's update of the block, lambda F / n + gamma h z (weight units), noiseless, from
        the volatile parts ``g_st`` (2, R, C) S just read (F = s (g+ - g-) / g_per_weight): each device of
        the pair decays by its own retention per step at the bias it holds (the compiled line voltages
        acting on the block's own devices: lambda+ g+ - lambda- g-, lambda F when both are equal); gamma
        is the trained one (each device's pulse law is inverted for its write, so the block realises it
        as trained); n the row norms (1: native)."""
        lam = self.lam_idle
        decayed = (lam[0] * g_st[0] - lam[1] * g_st[1]) / self.emulated.g_per_weight
        return (self.scale / n)[:, None] * decayed + self.gamma_block * h[:, None] * z[None, :]

    def _fitting_scale(self, f_next: np.ndarray) -> np.ndarray:
        """(R,) the smallest digital scale s (the largest gain 1/s, at most ``max_write_gain``) at which
        every analog synapse's |F / s| (F in weight units) is one its carrying device can be written to
        in one step from rest."""
        # the device of F's sign carries it; its room is what a step's longest, largest pulses take it
        # to from rest, decayed by its lambda until the next read (weight units)
        room = self._reach_siemens * self.lam_idle / self.emulated.g_per_weight
        carrier_room = np.where(f_next >= 0, room[0], room[1])
        need = np.abs(f_next) / np.maximum(carrier_room, 1e-300)
        need = np.where(self.digital | (carrier_room <= 0), 0.0, need)
        return np.maximum(1.0 / self.max_write_gain, need.max(axis=1))

    def _pulse_times(self, sent_s: float, send_s: float) -> np.ndarray:
        """(R,) estimated time (s, controller clock) of each block row's pulses when the send starts at
        ``sent_s`` and takes ``send_s``: rows are pulsed one after another (``PULSEBLOCK``: each after
        the previous row's, its frame's bytes in between; row pulses: a command each), spread evenly
        over the send."""
        R = self.r1 - self.r0
        return sent_s + send_s * (np.arange(R) + 0.5) / R

    def _at_pulse(
        self, g_now: np.ndarray, t_read: np.ndarray, t_pulse: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(volatile parts (2, R, C) S at each row's pulse time ``t_pulse`` (R,) of devices read at
        ``g_now`` at ``t_read`` (R,), and each device's retention (2, R, C) from the pulse to its row's
        next read): the row's next read is ``t_read`` plus the read-to-read time (the step, or, when
        steps overrun, as long as the last step's I/O took)."""
        lam = self.lam_idle
        before = np.clip(t_pulse - t_read, 0.0, self._step_s) / self.dt_s  # (R,) steps
        after = self._step_s / self.dt_s - before
        return g_now * lam ** before[None, :, None], np.maximum(lam ** after[None, :, None], 1e-12)

    def _f_at_next_read(self, g_after: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """f (weight units) the devices (2, R, C) hold at the next read: ``g_after`` (S) after the pulses,
        decayed by ``keep``."""
        g = g_after * keep
        return (g[0] - g[1]) / self.emulated.g_per_weight

    def _device_targets(
        self, f_next: np.ndarray, g_now: np.ndarray, keep: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(2, R, C) volatile conductance (S) each device should hold after its pulses so that the pair
        holds ``f_next`` (weight units) at the next read, and the (2, R, C) mask of analog devices whose
        target lies past the window (clipped to it; their writes count as dropped): ``g_now`` (S) is
        the state at the pulse, ``keep`` (2, R, C) the retention from the pulse to the next read. The
        device of f's sign carries f; the other is left to decay, unless the carrier would pass half its
        window: then the other is depressed to what a full erase train leaves (both devices of a pair
        would otherwise fill up)."""
        cap = 0.95 * self.real.g_st_max_siemens
        need = np.abs(f_next) * self.emulated.g_per_weight
        pos = f_next >= 0
        carrier = np.where(pos, 0, 1)
        g_next = keep * g_now  # unwritten, at the next read
        other_next = np.where(pos, g_next[1], g_next[0])
        carrier_next = need + other_next
        cap_carrier = np.where(pos, cap[0], cap[1])
        erase = carrier_next > 0.5 * cap_carrier
        floor = g_next * self._erase_left
        other_next = np.where(erase, np.where(pos, floor[1], floor[0]), other_next)
        carrier_next = need + other_next
        want = g_next.copy()  # (2, R, C) wanted at the next read
        want[0] = np.where(carrier == 0, carrier_next, other_next)
        want[1] = np.where(carrier == 1, carrier_next, other_next)
        target = g_now + (want - g_next) / keep  # what to hold now
        beyond = (target > cap) & ~self.digital[None]
        return np.clip(target, 0.0, cap), beyond

    def _pulse_bounds(self) -> tuple[float, float, float]:
        """(largest |V| a write may use, shortest and longest pulse width (s)) for this session."""
        p = self.card.pulse
        v_max = p.v_max_v  # the card's safe amplitude; the user's limits are enforced by the driver
        w_min, w_max = 10e-9, min(self.limits.max_pulse_width_s, 1e-3)
        hardware = getattr(self.controller, "hardware", None)  # the controller's own range (LIMITS?)
        if hardware is not None:
            w_min, w_max = max(w_min, hardware.min_width_s), min(w_max, hardware.max_width_s)
            v_max = min(v_max, hardware.max_abs_v)
        return v_max, w_min, w_max

    def _train_reach(self) -> tuple[np.ndarray, np.ndarray]:
        """What a step's longest, largest pulses do to the block's own devices, fixed for the session:
        (2, R, C) the volatile conductance (S) a potentiating train takes a device to from rest, and the
        fraction of its volatile part a depressing train leaves; the train is the whole of a device's
        pulses on a block-capable controller, one row pulse otherwise."""
        v_max, _, w_max = self._pulse_bounds()
        law = self.real.pulse_law
        drive = self._train_length() * law.drive(v_max, w_max)
        return law.respond(0.0, drive), law.fraction_left(drive)

    def _train_length(self) -> int:
        """Pulses a device may get per step: ``pulses_per_device`` within the controller's count limit
        on a block-capable controller, 1 with row pulses."""
        if not self.block_io:
            return 1
        assert self.controller is not None
        return max(min(int(self.controller.hardware.max_pulse_count), self.pulses_per_device), 1)

    def _write_plan(self, g_now: np.ndarray, g_target: np.ndarray, beyond: np.ndarray) -> WritePlan:
        """Volatile parts now and wanted (2, R, C), S -> row pulses (``WritePlan``: widths (P, R) s,
        signed amplitudes (P, R, D) V); ``beyond`` (2, R, C) marks targets past the window (dropped).
        THE one place F becomes row pulses.

        Each device's drive (V / v_ref)^a (w / w_ref)^b comes from the pulse law inverted with the block's
        own devices (``Realisation.pulse_law``, ``device_models.pulse_law``): soft-bounded potentiation up,
        multiplicative depression down. A row pulse has one width and a signed amplitude per column: the
        width makes the row's largest drive at the largest allowed amplitude, the others get the
        amplitude of their drive; devices that would fall below the pulse threshold go to the next row
        pulse (at most ``PULSES_PER_ROW``); what is left is dropped (counted in ``stats``).
        """
        law = self.real.pulse_law
        drive = self._drives(g_now, g_target)
        R, D = self.r1 - self.r0, self.device_cols
        per_device = np.zeros((R, D))
        per_device[self.dev_row, self.dev_col] = drive
        widths, amps = np.zeros((self.pulses_per_row, R)), np.zeros((self.pulses_per_row, R, D))
        v_max, w_min, w_max = self._pulse_bounds()
        left = per_device.copy()
        for q in range(self.pulses_per_row):
            top = np.abs(left).max(axis=1)
            for r in np.flatnonzero(top > 0):
                row = self._row_law.at(r)  # the (D,) devices of controller row r
                mag = np.abs(left[r])
                w = float(np.clip(np.max(row.width_for_drive(mag, v_max)), w_min, w_max))
                a = np.minimum(row.amplitude_for_drive(mag, w), v_max)
                go = (a >= law.v_threshold_v) & (mag > 0)
                widths[q, r] = w
                amps[q, r] = np.where(go, np.sign(left[r]) * a, 0.0)
                done = row.drive(a, w)
                left[r] = np.where(go, np.sign(left[r]) * np.maximum(mag - done, 0.0), left[r])
                left[r] = np.where(go & (np.abs(left[r]) < 1e-3 * mag), 0.0, left[r])
            if not left.any():
                break
        rest = left[self.dev_row, self.dev_col]  # (2, R, C) drive not delivered
        dropped = (np.abs(rest) > 1e-3 * np.maximum(np.abs(drive), 1e-30)) | beyond
        return WritePlan(widths, amps, None, law.respond(g_now, drive - rest), drive - rest, dropped)

    def _drives(self, g_now: np.ndarray, g_target: np.ndarray) -> np.ndarray:
        """(2, R, C) signed drive (V/v_ref)^a (w/w_ref)^b that takes each device's volatile part from
        ``g_now`` to ``g_target`` (S): the pulse law inverted with the block's own devices
        (``Realisation.pulse_law``), soft-bounded potentiation up, multiplicative depression down; 0 for
        changes within 2 sigma of the read noise and for stuck devices."""
        law = self.real.pulse_law
        gmax = law.g_st_max_siemens
        tiny = self._noise_floor  # changes within 2 sigma of the read noise are not written
        g_now, g_target = np.maximum(g_now, 0.0), np.maximum(g_target, 0.0)  # a read below rest is noise
        up = g_target > g_now + tiny
        down = g_target < g_now - tiny
        room = np.maximum(gmax - g_now, 1e-30)
        frac = np.clip((gmax - g_target) / room, 1e-6, 1.0)
        drive_up = law.up_drive(frac)
        # a depression to rest aims at the noise floor: below it a device reads as at rest
        rest = np.maximum(tiny, 1e-30)
        drive_down = law.down_drive(np.maximum(g_target, rest) / np.maximum(g_now, rest))
        usable = self.real.usable
        return np.where(up & usable, drive_up, np.where(down & usable, -drive_down, 0.0))

    def _device_plan(self, g_now: np.ndarray, g_target: np.ndarray, beyond: np.ndarray) -> WritePlan:
        """Volatile parts now and wanted (2, R, C), S -> one pulse train per device (protocol v3.1
        ``PULSEBLOCK``; ``WritePlan``: widths (R, D) s, signed amplitudes (R, D) V, counts (R, D));
        ``beyond`` (2, R, C) marks targets past the window (dropped). THE one place F becomes pulses on
        a block-capable controller.

        The drive each device needs is ``_drives``'s. A train of n pulses of width w and amplitude a
        delivers n (a / v_ref)^a_exp (w / w_ref)^b (drives add: the pulse law composes). Width first: the
        width that delivers the drive at v_max, split into n <= max count pulses of at most the longest
        width, rounded up to the controller's pulse-timer tick; then the amplitude that delivers exactly
        the drive at that width, sent to the mV. Drives needing less than the pulse threshold at one tick,
        or more than max count pulses at v_max, are dropped (counted)."""
        law = self._row_law  # each device's pulse law, on the controller's (R, D) grid
        assert self.controller is not None
        drive = self._drives(g_now, g_target)
        R, D = self.r1 - self.r0, self.device_cols
        per_device = np.zeros((R, D))
        per_device[self.dev_row, self.dev_col] = drive
        v_max, w_min, w_max = self._pulse_bounds()
        tick = max(self.controller.hardware.min_width_s, 1e-12)
        most = self._train_length()
        mag = np.abs(per_device)
        w_full = law.width_for_drive(mag, v_max)
        counts = np.clip(np.ceil(w_full / w_max), 1, most)
        lo, hi = max(1, math.ceil(w_min / tick)), math.floor(w_max / tick)
        exact = w_full / counts / tick
        # long pulses: width to the nearest tick at v_max (within 1 %, and "2" is short on the wire);
        # short ones: width rounded up, the amplitude makes up the rest
        ticks = np.clip(np.where(exact >= FINE_TICKS, np.rint(exact), np.ceil(exact)), lo, hi)
        widths = ticks * tick
        each = np.minimum(mag / counts, law.drive(v_max, widths))
        amp = law.amplitude_for_drive(each, widths)
        amp = np.minimum(np.round(amp / AMPLITUDE_STEP_V) * AMPLITUDE_STEP_V, v_max)
        amp = np.where(exact >= FINE_TICKS, v_max, amp)
        go = (mag > 0) & (amp >= law.v_threshold_v)
        done = np.where(go, counts * law.drive(amp, widths), 0.0)
        amps = np.where(go, np.sign(per_device) * amp, 0.0)
        counts = np.where(go, counts, 0).astype(np.int64)
        widths = np.where(go, widths, 0.0)
        given = (np.sign(per_device) * done)[self.dev_row, self.dev_col]  # (2, R, C)
        rest = np.abs(drive) - np.abs(given)
        dropped = (rest > 1e-2 * np.maximum(np.abs(drive), 1e-30)) | beyond
        return WritePlan(widths, amps, counts, self.real.pulse_law.respond(g_now, given), given, dropped)

    def _send_block(self, step: int, plan: WritePlan, g_siemens: np.ndarray) -> None:
        """Send every device's pulse train in ``PULSEBLOCK`` frames; refused -> error naming the synapse."""
        from drivers.errors import SafetyError

        assert self.controller is not None and plan.counts is not None
        widths, amps, counts = plan.widths, plan.amps, plan.counts
        if not counts.any():
            return
        full = np.zeros((counts.shape[0], self.controller.cols))
        a, w, n = full.copy(), full.copy(), full.astype(np.int64)
        a[:, : self.device_cols], w[:, : self.device_cols], n[:, : self.device_cols] = amps, widths, counts
        try:
            self.controller.pulse_block(0, a, w, n)
        except SafetyError as exc:
            bad = np.argwhere(np.abs(amps) > self.limits.max_abs_voltage_v)
            row = int(bad[0][0]) if bad.size else int(np.argwhere(counts)[0][0])
            raise LabError(
                f"lab step {step}: pulse refused for {self._synapse_at(row, amps[row])}: {exc}"
            ) from None
        energy = self.real.pulse_energy_j(g_siemens, amps, widths) * counts
        self._lab_energy["lab_program_j"] += float(np.sum(energy))

    def _send(self, step: int, plan: WritePlan, g_siemens: np.ndarray, deadline_s: float) -> np.ndarray:
        """Send the row pulses, keeping the user's pulse-rate limit; refused -> error naming the synapse.
        A row pulse that would end after ``deadline_s`` (controller clock; its cost the longest row pulse
        so far) is not sent: second row pulses go last, so they are the first left out. Returns the
        (P, R) mask of row pulses left out."""
        from drivers.errors import SafetyError

        assert self.controller is not None
        widths, amps = plan.widths, plan.amps
        gap = 1.0 / self.limits.max_pulses_per_s
        full = np.zeros(self.controller.cols)
        skipped = np.zeros(widths.shape, dtype=bool)
        for q in range(widths.shape[0]):
            for r in map(int, np.flatnonzero(widths[q] > 0)):
                if not amps[q, r].any():
                    continue
                wait = self._last_pulse_s + gap - self.controller.clock.now_s()
                if self.controller.clock.now_s() + max(wait, 0.0) + self._row_pulse_s > deadline_s:
                    skipped[q, r] = True
                    continue
                if wait > 0:
                    self.controller.wait(wait)
                full[:] = 0.0
                full[: self.device_cols] = amps[q, r]
                started = self.controller.clock.now_s()  # the driver's rate guard counts from here too
                try:
                    self.controller.pulse_row(r, list(full), float(widths[q, r]))
                except SafetyError as exc:
                    raise LabError(
                        f"lab step {step}: pulse refused for {self._synapse_at(r, amps[q, r])}: {exc}"
                    ) from None
                self._last_pulse_s = started
                self._row_pulse_s = max(self._row_pulse_s, self.controller.clock.now_s() - started)
                energy = self.real.pulse_energy_j(g_siemens[r], amps[q, r], widths[q, r])
                self._lab_energy["lab_program_j"] += float(np.sum(energy))
        return skipped

    def _without(self, skipped: np.ndarray, plan: WritePlan, g_pulse: np.ndarray) -> WritePlan:
        """The row-pulse ``plan`` as sent when its ``skipped`` (P, R) pulses were not: their widths and
        amplitudes zero, the volatile parts (S) the sent pulses leave from ``g_pulse``, and the writes of
        the skipped pulses' devices counted as dropped."""
        lost = np.zeros((self.r1 - self.r0, self.device_cols))
        for q, r in zip(*np.nonzero(skipped), strict=True):
            lost[r] += np.sign(plan.amps[q, r]) * self._row_law.at(r).drive(
                plan.amps[q, r], plan.widths[q, r]
            )
        lost_dev = lost[self.dev_row, self.dev_col]  # (2, R, C)
        delivered = plan.delivered - lost_dev
        return WritePlan(
            widths=np.where(skipped, 0.0, plan.widths),
            amps=np.where(skipped[..., None], 0.0, plan.amps),
            counts=None,
            g_after=self.real.pulse_law.respond(g_pulse, delivered),
            delivered=delivered,
            dropped=plan.dropped | (lost_dev != 0),
        )

    def _synapse_at(self, row: int, amplitudes: np.ndarray) -> str:
        """'synapse (i, j) G+ on controller row r, column c' of the first column the limits refuse."""
        over = np.flatnonzero(np.abs(amplitudes) > self.limits.max_abs_voltage_v)
        col = int(over[0]) if over.size else int(np.flatnonzero(amplitudes)[0])
        which, i, j = np.argwhere((self.dev_row == row) & (self.dev_col == col))[0]
        return (
            f"synapse ({self.r0 + i}, {self.c0 + j}) {'G+' if which == 0 else 'G-'} "
            f"on controller row {row}, column {col}"
        )

    def _abort(self, exc: BaseException) -> BaseException:
        """Outputs to 0 V, the error in the log, the log closed intact; returns the error to raise:
        an instrument or safety error as a ``LabError`` naming the step, anything else unchanged."""
        known = isinstance(exc, HwloopError)
        message = str(exc) if isinstance(exc, LabError) else f"lab step {self.step_index}: {exc}"
        if self.log is not None:
            with contextlib.suppress(Exception):
                self.log.event(self.step_index, f"error: {message if known else repr(exc)}")
        self.close()
        if isinstance(exc, LabError) or not known:
            return exc
        return LabError(message)

    # -- lifetime and counters ---------------------------------------------------------------------
    def close(self) -> None:
        """Controller lines to 0 V and the link closed, the log flushed and closed (idempotent)."""
        if self.controller is not None:
            self.controller.safe_off()
            with contextlib.suppress(Exception):
                self.controller.close()
            self.controller = None
        if self.log is not None:
            self.log.close()

    def energy(self) -> dict[str, float]:
        """J since the last reset: the emulated array's read/program/bias (the block's synapses' bias and
        writes left out: ``EmulatedCrossbar.exclude_from_energy``), plus the block's measured I/O on the
        controller (``lab_read_j``, ``lab_program_j``, and ``lab_bias_j``: V^2 G dt of each device at its
        held bias with the G read each step)."""
        return {**self.emulated.energy(), **self._lab_energy}

    def reset_energy(self) -> None:
        """Zero every energy counter."""
        self.emulated.reset_energy()
        self._lab_energy = {"lab_read_j": 0.0, "lab_program_j": 0.0, "lab_bias_j": 0.0}

    def stats(self) -> dict[str, Any]:
        """Pacing (overruns, worst lateness), dropped writes, and the block's retention mismatch."""
        from hwloop.backends.lab_report import fidelity_from_sums

        usable = self.real.usable
        lam_pair = np.where(usable.all(0), (self.lam_idle[0] + self.lam_idle[1]) / 2, np.nan)
        return {
            "steps": self.step_index,
            "games": self.episode + 1,
            "pacing": self.pacer.report().model_dump() if self.pacer else None,
            "dropped_writes": self.dropped_writes,
            "block": {"rows": [self.r0, self.r1], "cols": [self.c0, self.c1]},
            "fidelity": fidelity_from_sums(self._fid),
            "refresh_rows": self.refresh_rows,
            "normalisation": self.normalisation,
            "reads_per_device": self.reads_per_device,
            "bias": self.bias_mode,
            "lambda_target_mean": float(np.mean(self.lam_target)),
            "lambda_device_at_bias_mean": float(np.nanmean(lam_pair)),
            "bias_prescribed_v": [float(self.bias_prescribed_v.min()), float(self.bias_prescribed_v.max())],
            "bias_held_v": [float(self.bias_held_v.min()), float(self.bias_held_v.max())],
            "log": str(self.log_path),
            "log_run": self.log.run_name if self.log else None,
            "resource": self.resource,
        }


def _device_bias(row_v: np.ndarray, col_v: np.ndarray) -> np.ndarray:
    """(2, R, C) bias (V) of [G+, G-] of each block synapse from its lines: row_v (R,), col_v (2C,) with
    G+ of column j on line j and G- on line C + j."""
    c = col_v.size // 2
    full = np.asarray(row_v, dtype=float)[:, None] - np.asarray(col_v, dtype=float)[None, :]
    return np.stack([full[:, :c], full[:, c:]])
