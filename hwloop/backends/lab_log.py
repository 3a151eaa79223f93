"""The lab backend's step log: every step's I/O in an appendable, crash-safe HDF5 file.

One file holds any number of runs, ``/runs/0000``, ``/runs/0001``, ... (a new run is appended, nothing
is overwritten). A run's attributes say what was run (resource, *IDN?, block, dt_s, read voltage, safety
limits, g_per_weight); its datasets grow by one row per step and are flushed after every step, with the
file in HDF5 single-writer/multiple-reader mode, so a crash loses at most the step in flight and a reader
(``h5py``, ``hdfview``) can watch a run live. A log left by a killed process opens with
``h5py.File(path, "r", swmr=True)``, every flushed step intact. Per step (N steps, R block rows,
C block columns, D = controller columns read, P = row pulses per row at most):

    step, episode              (N,) int      agent step (0-based over the run) and game index
    t_start_s, t_end_s         (N,) float    controller clock at the step's start and end of its I/O (s)
    lateness_s                 (N,) float    how far the step ended past its deadline (0 = on time)
    wall_s                     (N,) float    host wall time of the step's end (s since the epoch)
    t_read_s                   (N, R)        controller timestamp of each row read (s)
    current_a                  (N, R, D)     currents read at ``read_v`` (A): F is measured from them
    z, h                       (N, C), (N, R) presynaptic activity and neuron outputs of the block
    f_measured                 (N, R, C)     F measured from the currents, s f (weight units)
    f_model                    (N, R, C)     F the STPN's own update gave for this step (lambda F / n +
                                             gamma h z from the previous step's measured F and inputs, on
                                             the emulated model of the block); NaN at a game's first step
    f_diff                     (N, R, C)     f_measured - f_model (the fidelity error)
    f_target                   (N, R, C)     F the write aims for at the next read
    row_scale, row_norm        (N, R)        exact normalisation's digital scale s after the step, and n
    refreshed                  (N, R) int8   1 where the row was refreshed on the devices this step
    dropped                    (N,) int      device writes dropped this step (below the pulse threshold)
    pulse_width_s              (N, P, R)     width of row pulse p of each row (0 = not sent)
    pulse_amplitude_v          (N, P, R, D)  per-column amplitude of that row pulse (V)
With a v3.1 controller (block commands; attribute ``device_pulses`` true) every device gets its own pulse
train instead (``PULSEBLOCK``):
    pulse_width_s              (N, R, D)     width of each device's pulses (s; 0 = none)
    pulse_amplitude_v          (N, R, D)     their signed amplitude (V)
    pulse_count                (N, R, D) int how many (0 = none)

``baseline_g_siemens`` (R, D) holds each device's conductance at rest, measured when the block was
programmed (and after each rest between games, ``events``), so G - baseline is the volatile part.
``events`` (text) and ``event_step`` (int) record rests, refused pulses and the error a run ended with.
docs/hil.md describes the format and how to replay a run.

One writer at a time: a run holds an exclusive ``flock`` on ``<log>.lock`` (which names its pid, host and
start) for as long as its log is open. The kernel releases it when the process ends, however it ends, so
a second run pointed at a log that a live run is writing is refused naming that run, while a log left by a
killed run (lock free, HDF5's write flag still set) gets the "left open by a run that crashed" message.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hwloop.errors import HwloopError

CHUNK_STEPS = 64


class LabLog:
    """An open run in a step log; ``append_step`` one row per step, ``event`` free text, ``close``."""

    def __init__(
        self,
        path: Path,
        *,
        rows: int,
        cols: int,
        device_cols: int,
        pulses_per_row: int,
        attrs: dict[str, Any],
        device_pulses: bool = False,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock_fd: int | None = acquire_writer_lock(path)
        try:
            self._file = h5py.File(path, "a", libver="latest")
        except OSError as exc:
            self._release_lock()
            if "already open for write" in str(exc):
                raise HwloopError(
                    f"log {path} was left open by a run that crashed: its steps are intact (read them with "
                    f"h5py.File(path, 'r', swmr=True)); clear the flag with `h5clear -s {path}` to append, "
                    "or choose another log"
                ) from None
            raise HwloopError(f"cannot open the step log {path}: {exc}") from None
        try:
            self._create_run(rows, cols, device_cols, pulses_per_row, attrs, device_pulses)
        except BaseException:
            self.close()
            raise

    def _create_run(
        self,
        rows: int,
        cols: int,
        device_cols: int,
        pulses_per_row: int,
        attrs: dict[str, Any],
        device_pulses: bool = False,
    ) -> None:
        runs = self._file.require_group("runs")
        self.run_name = f"{len(runs):04d}"
        g = runs.create_group(self.run_name)
        g.attrs["started_utc"] = datetime.datetime.now(datetime.UTC).isoformat()
        for key, value in attrs.items():
            g.attrs[key] = value
        r, c, d, p = rows, cols, device_cols, pulses_per_row
        shapes: dict[str, tuple[tuple[int, ...], Any]] = {
            "step": ((), np.int64),
            "episode": ((), np.int64),
            "t_start_s": ((), np.float64),
            "t_end_s": ((), np.float64),
            "lateness_s": ((), np.float64),
            "wall_s": ((), np.float64),
            "t_read_s": ((r,), np.float64),
            "current_a": ((r, d), np.float64),
            "z": ((c,), np.float64),
            "h": ((r,), np.float64),
            "f_measured": ((r, c), np.float64),
            "f_target": ((r, c), np.float64),
            "f_model": ((r, c), np.float64),
            "f_diff": ((r, c), np.float64),
            "row_scale": ((r,), np.float64),
            "row_norm": ((r,), np.float64),
            "refreshed": ((r,), np.int8),
            "dropped": ((), np.int64),
            "pulse_width_s": ((p, r), np.float64),
            "pulse_amplitude_v": ((p, r, d), np.float64),
        }
        if device_pulses:  # protocol v3.1 PULSEBLOCK: a pulse train per device
            shapes["pulse_width_s"] = ((r, d), np.float64)
            shapes["pulse_amplitude_v"] = ((r, d), np.float64)
            shapes["pulse_count"] = ((r, d), np.int64)
        g.attrs["device_pulses"] = device_pulses
        self._sets = {
            name: g.create_dataset(
                name, shape=(0, *shape), maxshape=(None, *shape), chunks=(CHUNK_STEPS, *shape), dtype=dtype
            )
            for name, (shape, dtype) in shapes.items()
        }
        self._baseline = g.create_dataset("baseline_g_siemens", shape=(r, d), dtype=np.float64)
        self._events = g.create_dataset(
            "events", shape=(0,), maxshape=(None,), chunks=(16,), dtype=h5py.string_dtype()
        )
        self._event_step = g.create_dataset(
            "event_step", shape=(0,), maxshape=(None,), chunks=(16,), dtype=np.int64
        )
        self._file.swmr_mode = True  # from here on a crash cannot corrupt what was flushed
        self._file.flush()
        self.steps = 0

    def set_baseline(self, baseline_g_siemens: np.ndarray) -> None:
        """Each device's conductance at rest (S), (R, D)."""
        self._baseline[...] = baseline_g_siemens
        self._file.flush()

    def append_step(self, **row: Any) -> None:
        """One step's values (every dataset named in the module docstring), then flush to disk."""
        n = self.steps + 1
        for name, ds in self._sets.items():
            ds.resize(n, axis=0)
            ds[n - 1] = row[name]
        self.steps = n
        self._file.flush()

    def event(self, step: int, text: str) -> None:
        """A line of text about ``step`` (a rest, a refused pulse, the error that ended the run)."""
        n = self._events.shape[0] + 1
        self._events.resize(n, axis=0)
        self._event_step.resize(n, axis=0)
        self._events[n - 1] = text
        self._event_step[n - 1] = step
        self._file.flush()

    def close(self) -> None:
        """Flush and close, then release the writer lock (idempotent)."""
        if self._file.id.valid:
            self._file.flush()
            self._file.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def lock_path(path: Path) -> Path:
    """The writer-lock file beside the log ``path`` (``<log>.lock``)."""
    return path.with_name(path.name + ".lock")


def acquire_writer_lock(path: Path) -> int:
    """Take the exclusive writer lock of the log ``path`` (returns its file descriptor); ``HwloopError``
    naming the live run (pid, host, start) that holds it. The lock dies with its process."""
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise HwloopError(f"cannot create the step log's lock file {lock}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 512, 0).decode("utf-8", errors="replace").strip() or "unknown process"
        os.close(fd)
        raise HwloopError(
            f"log {path} is being written by another run that is still going ({holder}): choose "
            "another log (--backend-option log=PATH) or wait for that run to end"
        ) from None
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
    return fd


def wall_time_s() -> float:
    """Host wall time (s since the epoch) for the ``wall_s`` column."""
    return time.time()
