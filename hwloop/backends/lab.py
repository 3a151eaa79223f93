"""The lab backend: a block of STPN synapses on a controller-driven crossbar, the rest emulated (mixed mode).

A block of synapses (rows ``rows`` x columns ``cols`` of the layer's H x K matrix, or all of them) keeps
its short-term state F on the devices of a crossbar controller (``drivers.controller``: a real one on a
serial port, or the simulated lab's ``xbarsim://``); every other synapse, and the block's long-term
weights W, stay on the emulated array (``hwloop.backends.emulated``). Each synapse of the block is a
volatile pair [G+, G-] placed by the realisation's device-assignment rule (``Realisation.device_index``:
block row i on controller row i, G+ of column j on controller column j, G- on column C + j), as the
emulated backend's exact mode places F on a separate volatile pair. Each agent step:

1. **read**: every block row is read at ``read_v`` (``READROW``); G = I / V minus each device's
   conductance at rest gives the volatile part, and F_ij = (g+ - g-) / g_per_weight is *measured*;
2. **neurons**: the measured F replaces the block in the layer's state and the periphery computes
   y = G z / n, h = tanh(y + b) digitally (the emulated array supplies the rest of the row);
3. **write**: the Hebbian change gamma_ij h_i z_j becomes the pulses the realisation prescribes
   (``Realisation.pulse_for_write``, on G+ for a positive change, G- for a negative one), sent as at
   most ``PULSES_PER_ROW`` row pulses per row (``PULSEROW``: one width per row, amplitude per column;
   ``_write_plan`` turns the prescribed width-modulated pulses into equal-drive row pulses);
4. **decay**: nothing is computed: the devices relax on their own over the step's real duration,
   paced to dt on the controller's clock (``hwloop.pacing``; virtual on the simulated lab).

What the controller cannot do, stated: its protocol holds idle lines at 0 V and has no per-device bias
output, so the block decays at each device's own retention at 0 V, not at the trained lambda; the bias
the realisation prescribes for each synapse and the retention mismatch are reported (``stats``), and the
digital 1/n row normalisation is not applied to the block's physical state (its F follows the
``native`` update F_t = lambda_device F + gamma h z). Every step's I/O goes to an HDF5 log
(``hwloop.backends.lab_log``). Every pulse passes the user's ``SafetyLimits`` in the driver; a refused
pulse is an error naming the step and the synapse. Any error sends the controller to 0 V (``RST``) and
closes the log intact. Batch size 1 (one physical array, one game). See docs/hil.md.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from device_models.card import DeviceCard, load_card
from device_models.memristor import pulse_drive
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import Readout, StepResult, Synapses
from hwloop.errors import HwloopError, ShapeError

if TYPE_CHECKING:
    from device_models.realisation import Realisation
    from drivers.controller import CrossbarController
    from drivers.safety import SafetyLimits
    from hwloop.backends.lab_log import LabLog
    from hwloop.pacing import StepPacer

IDLE_BIAS_V = 0.0  # the controller's idle lines: every device decays at 0 V between commands
PULSES_PER_ROW = 2  # row pulses per row and step: each covers a (v_max / v_threshold)^a range of drive
DEFAULT_LOG = Path("hwloop-lab.h5")


class LabError(HwloopError):
    """The lab backend stopped: the step, the synapse or row, and the instrument's reason."""


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
    log: HDF5 step log (runs are appended), default ``hwloop-lab.h5`` in the working directory.
    read_v: read voltage (V), below the card's pulse threshold; compliance_a: current limit (A).
    overrun: "wait" or "stop" (``hwloop.pacing``); rest_s: wait at each game's start so the block
        relaxes (s; default five of the slowest device's 0 V decay times); baseline_reads: reads
        averaged for each device's conductance at rest.
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
        if not (isinstance(baseline_reads, int) and baseline_reads >= 1):
            raise HwloopError(
                f"lab backend: baseline_reads must be a positive integer, got {baseline_reads!r}"
            )
        self.emulated = EmulatedCrossbar(
            card=self.card,
            calibration=calibration,
            seed=seed,
            dt_s=dt_s,
            normalisation=normalisation,  # type: ignore[arg-type]
        )
        self.calibration, self.seed, self.dt_s = calibration, int(seed), float(dt_s)
        self.resource, self.rows_text, self.cols_text = resource, rows, cols
        self.limits_path, self.log_path = limits, Path(log) if log is not None else DEFAULT_LOG
        self.read_v, self.compliance_a, self.overrun = float(read_v), float(compliance_a), overrun
        self.rest_s, self.baseline_reads = rest_s, baseline_reads
        self.controller: CrossbarController | None = None
        self.log: LabLog | None = None
        self.pacer: StepPacer | None = None
        self.step_index, self.episode, self.dropped_writes = 0, -1, 0
        self._lab_energy = {"lab_read_j": 0.0, "lab_program_j": 0.0}
        self._last_pulse_s = -math.inf
        self._sq_sums = np.zeros(3)  # sum f_target^2, sum f_model^2, count: the block vs the STPN's update

    # -- programming -----------------------------------------------------------------------------
    def program(self, synapses: Synapses) -> None:
        """Program the emulated array, open the controller, place the block and measure it at rest."""
        from device_models.realisation import Realisation
        from hwloop.backends.lab_log import LabLog
        from hwloop.pacing import StepPacer

        self.emulated.program(synapses)
        h, k = synapses.weight.shape
        self.r0, self.r1 = parse_span(self.rows_text, h, "rows")
        self.c0, self.c1 = parse_span(self.cols_text, k, "cols")
        R, C = self.r1 - self.r0, self.c1 - self.c0
        if self.calibration is not None:
            from device_models.record import CalibrationRecord

            record = CalibrationRecord.load(Path(self.calibration))
            if tuple(record.shape[:2]) != (R, 2 * C):
                raise HwloopError(
                    f"lab backend: {self.calibration} calibrates a {record.shape[0]} x {record.shape[1]} "
                    f"array; the block's devices are the controller's first {R} rows x {2 * C} columns, "
                    "so calibrate exactly those (hwloop calibrate run --resource ...)"
                )
            self.real: Realisation = Realisation.from_record(
                record, self.dt_s, self.seed, (R, C), card=self.card
            )
        else:
            self.real = Realisation.from_card(self.card, self.dt_s, self.seed, (R, C))
        idx = self.real.device_index  # row-major into an R x 2C array: THE assignment rule
        self.dev_row, self.dev_col = idx // (2 * C), idx % (2 * C)
        self.device_cols = 2 * C
        lam = synapses.lam.detach().to(torch.float64)[self.r0 : self.r1, self.c0 : self.c1].numpy()
        self.gamma_block = synapses.gamma.detach().to(torch.float64)[self.r0 : self.r1, self.c0 : self.c1]
        self.lam_target = lam
        self.lam_idle = self.real.lambda_at_bias(np.full((2, R, C), IDLE_BIAS_V))
        self.bias_prescribed_v, _ = self.real.bias_for_lambda(lam)
        if self.controller is None:
            self._open(R, C)
        assert self.controller is not None
        self.pacer = StepPacer(self.controller.clock, self.dt_s, self.overrun)
        try:
            if self.log is None:
                self.log = LabLog(
                    self.log_path,
                    rows=R,
                    cols=C,
                    device_cols=self.device_cols,
                    pulses_per_row=PULSES_PER_ROW,
                    attrs=self._log_attrs(h, k),
                )
            self._measure_baseline()
        except BaseException:
            self.close()  # lines to 0 V, link closed
            raise

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
        controller = open_controller(resource, self.limits)
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
            "idle_bias_v": IDLE_BIAS_V,
            "g_per_weight": self.emulated.g_per_weight,
            "limits": json.dumps(self.limits.model_dump()),
            "card": self.card.meta.name,
            "overrun_policy": self.overrun,
            "device_row": self.dev_row,
            "device_col": self.dev_col,
        }

    def _read_block(self) -> tuple[np.ndarray, np.ndarray]:
        """(timestamps (R,), currents (R, D)) of one read of every block row at ``read_v``."""
        assert self.controller is not None
        R = self.r1 - self.r0
        t, i = np.empty(R), np.empty((R, self.device_cols))
        for r in range(R):
            reading = self.controller.read_row(r, self.read_v)
            t[r], i[r] = reading.t_s, reading.i_a[: self.device_cols]
        return t, i

    def _measure_baseline(self) -> None:
        reads = [self._read_block()[1] for _ in range(self.baseline_reads)]
        self.baseline_g = np.mean(reads, axis=0) / self.read_v
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
        self.pacer.restart()
        return F

    def _rest_s(self) -> float:
        if self.rest_s is not None:
            return float(self.rest_s)
        lam = self.lam_idle[self.real.usable]
        slowest = float(lam.max()) if lam.size else 0.0
        return 0.0 if slowest <= 0 else 5 * -self.dt_s / math.log(min(slowest, 1 - 1e-12))

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
        t_start = self.pacer.start()
        # 1. read: F of the block is measured
        t_read, current = self._read_block()
        g_st = current / self.read_v - self.baseline_g
        f_meas = (g_st[self.dev_row[0], self.dev_col[0]] - g_st[self.dev_row[1], self.dev_col[1]]) / (
            self.emulated.g_per_weight
        )
        self._lab_energy["lab_read_j"] += float(
            np.sum(self.real.read_energy_j(current / self.read_v, self.read_v))
        )
        with torch.no_grad():
            F[0, r0:r1, c0:c1] = torch.from_numpy(f_meas).to(F.dtype)
            # 2. neurons, digitally, with the emulated rest of each row
            out = self.emulated.read(F, z, energy=energy)
            h = torch.tanh(out.y + bias)
            F_t = self.emulated.update(F, out.n, h, z)
            # 3. write: the Hebbian change as prescribed pulses
            zb, hb = z[0, c0:c1].to(torch.float64), h[0, r0:r1].to(torch.float64)
            dF = (self.gamma_block * hb[:, None] * zb[None, :]).numpy()
            dg = np.stack([np.maximum(dF, 0.0), np.maximum(-dF, 0.0)]) * self.emulated.g_per_weight
            widths, amps, sent = self._write_plan(dg)
            self._send(k, widths, amps, current / self.read_v)
            lam_pair = (self.lam_idle[0] + self.lam_idle[1]) / 2
            f_target = lam_pair * f_meas + np.where(sent, dF, 0.0)
            f_model = F_t[0, r0:r1, c0:c1].to(torch.float64).numpy().copy()  # the STPN's own update
            F_t[0, r0:r1, c0:c1] = torch.from_numpy(f_target).to(F_t.dtype)
        self._sq_sums += np.array([np.sum(f_target**2), np.sum(f_model**2), f_target.size])
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
            f_target=f_target,
            f_model=f_model,
            pulse_width_s=widths,
            pulse_amplitude_v=amps,
        )
        self.step_index += 1
        return StepResult(h, F_t, out.energy)

    def _write_plan(self, dg_siemens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Target |dG| per device (2, R, C) in S -> row pulses: widths (P, R) s, amplitudes (P, R, D) V,
        and which synapses' writes are sent (R, C) bool. THE one place gamma becomes pulses.

        The realisation prescribes width-modulated pulses at the card's write voltage (count x width);
        a row pulse has one width, so each device gets the amplitude with the same drive
        (V / v_ref)^a (w / w_ref)^b at the row's width: the largest drive of the row at the write
        voltage, the others lower. Devices below the pulse threshold go to the next row pulse (at most
        ``PULSES_PER_ROW``); what is left is dropped (counted in ``stats``).
        """
        p, write_v = self.card.pulse, self.card.read.write_v
        pulses = self.real.pulse_for_write(dg_siemens)
        drive = pulses.count * pulse_drive(
            pulses.amplitude_v,
            pulses.width_s,
            v_ref_v=p.v_ref_v,
            width_ref_s=p.width_ref_s,
            v_threshold_v=p.v_threshold_v,
            amp_exponent=p.amp_exponent,
            width_exponent=p.width_exponent,
        )
        drive = np.where(self.real.usable, drive, 0.0)  # no write into a stuck device
        R, D = self.r1 - self.r0, self.device_cols
        per_device = np.zeros((R, D))
        per_device[self.dev_row, self.dev_col] = drive
        widths, amps = np.zeros((PULSES_PER_ROW, R)), np.zeros((PULSES_PER_ROW, R, D))
        w_min, w_max = 10e-9, min(self.limits.max_pulse_width_s, 1e-3)
        hardware = getattr(self.controller, "hardware", None)  # the controller's own range (LIMITS?)
        if hardware is not None:
            w_min, w_max = max(w_min, hardware.min_width_s), min(w_max, hardware.max_width_s)
        left = per_device.copy()
        for q in range(PULSES_PER_ROW):
            top = left.max(axis=1)
            for r in np.flatnonzero(top > 0):
                w = p.width_ref_s * (top[r] / (write_v / p.v_ref_v) ** p.amp_exponent) ** (
                    1 / p.width_exponent
                )
                w = float(np.clip(w, w_min, w_max))  # a wider pulse: lower amplitudes below
                a = p.v_ref_v * (left[r] / (w / p.width_ref_s) ** p.width_exponent) ** (1 / p.amp_exponent)
                a = np.minimum(a, write_v)
                go = a >= p.v_threshold_v
                widths[q, r] = w
                amps[q, r] = np.where(go, a, 0.0)
                left[r] = np.where(go, 0.0, left[r])
            if not left.any():
                break
        dropped = left[self.dev_row, self.dev_col] > 0  # (2, R, C)
        self.dropped_writes += int(dropped.sum())
        sent = (drive > 0) & ~dropped  # both devices of a pair are written by potentiation (module doc)
        return widths, amps, (sent[0] | sent[1])

    def _send(self, step: int, widths: np.ndarray, amps: np.ndarray, g_siemens: np.ndarray) -> None:
        """Send the row pulses, keeping the user's pulse-rate limit; refused -> error naming the synapse."""
        from drivers.errors import SafetyError

        assert self.controller is not None
        gap = 1.0 / self.limits.max_pulses_per_s
        full = np.zeros(self.controller.cols)
        for q in range(widths.shape[0]):
            for r in map(int, np.flatnonzero(widths[q] > 0)):
                if not amps[q, r].any():
                    continue
                wait = self._last_pulse_s + gap - self.controller.clock.now_s()
                if wait > 0:
                    self.controller.wait(wait)
                full[:] = 0.0
                full[: self.device_cols] = amps[q, r]
                try:
                    self.controller.pulse_row(r, list(full), float(widths[q, r]))
                except SafetyError as exc:
                    raise LabError(
                        f"lab step {step}: pulse refused for {self._synapse_at(r, amps[q, r])}: {exc}"
                    ) from None
                self._last_pulse_s = self.controller.clock.now_s()
                energy = self.real.pulse_energy_j(g_siemens[r], amps[q, r], widths[q, r])
                self._lab_energy["lab_program_j"] += float(np.sum(energy))

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
        """J since the last reset: the emulated array's read/program/bias, plus the block's measured I/O
        on the controller (``lab_read_j``, ``lab_program_j``; its idle lines at 0 V hold no bias)."""
        return {**self.emulated.energy(), **self._lab_energy}

    def reset_energy(self) -> None:
        """Zero every energy counter."""
        self.emulated.reset_energy()
        self._lab_energy = {"lab_read_j": 0.0, "lab_program_j": 0.0}

    def stats(self) -> dict[str, Any]:
        """Pacing (overruns, worst lateness), dropped writes, and the block's retention mismatch."""
        usable = self.real.usable
        lam_pair = np.where(usable.all(0), (self.lam_idle[0] + self.lam_idle[1]) / 2, np.nan)
        return {
            "steps": self.step_index,
            "games": self.episode + 1,
            "pacing": self.pacer.report().model_dump() if self.pacer else None,
            "dropped_writes": self.dropped_writes,
            "block": {"rows": [self.r0, self.r1], "cols": [self.c0, self.c1]},
            "f_rms_block": float(np.sqrt(self._sq_sums[0] / max(self._sq_sums[2], 1))),
            "f_rms_model": float(np.sqrt(self._sq_sums[1] / max(self._sq_sums[2], 1))),
            "lambda_target_mean": float(np.mean(self.lam_target)),
            "lambda_device_at_idle_mean": float(np.nanmean(lam_pair)),
            "bias_prescribed_v": [float(self.bias_prescribed_v.min()), float(self.bias_prescribed_v.max())],
            "log": str(self.log_path),
            "log_run": self.log.run_name if self.log else None,
            "resource": self.resource,
        }
