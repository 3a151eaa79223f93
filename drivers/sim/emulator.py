"""Common machinery of the simulated SMUs: virtual time, the device under test, the instrument's queues.

An emulator is one instrument, shared by every VISA session opened on it (settings, error queue, output
queue and any running sequence outlive a session, as on the bench; only ``*RST`` / ``reset()`` or a
power cycle clear what the manuals say they clear). Commands arrive one line at a time (``receive``):

* a command executes at once and costs ``latency_s`` of virtual time, unless the instrument is blocked:
  behind a running TSP command (a 2600B script function waiting in ``waitcomplete()``) or behind an
  ``*OPC?`` that waits for a running sequence. Then the line waits in the input queue, as on the
  instrument, until the block ends;
* sequences that take time (pulses, read trains) run as ``Operation`` s on the virtual clock: they make
  progress only as virtual time passes (a host waiting for a reply, ``wait``), so a command sent while one
  runs meets it half done;
* replies go to the instrument's output queue, tagged with the virtual time they become readable;
* ``device_clear`` (VISA ``viClear``, IEEE 488.2 DCL/SDC) empties the input and output queues, cancels a
  pending ``*OPC?`` and ends a blocking command; it does not abort a running sweep (an abort does).

Measurement time comes from the integration time (NPLC / line frequency, or an aperture) and autozero,
as each subclass's ``reading_time_s`` says; readings are timestamped at their start.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from drivers.sim.clock import VirtualClock
from drivers.sim.devices import DeviceArray
from drivers.sim.faults import Faults

DEFAULT_LATENCY_S = 50e-6  # virtual time one command costs (a fast USB/LAN round trip)
DEFAULT_LINE_FREQUENCY_HZ = 50.0
NEVER = math.inf

# A sequence: a generator that yields the virtual time it next needs to run at; it is resumed (sent the
# time the instrument has reached, >= that) and returns when the sequence has ended.
Steps = Generator[float, float, None]


@dataclass
class Operation:
    """A sequence running on the instrument: ``steps`` advance it; ``blocking`` holds the command parser."""

    name: str
    steps: Steps
    blocking: bool = False
    wake_s: float = 0.0
    end_s: float | None = None  # set when it has ended
    notes: list[str] = field(default_factory=list)


class SmuEmulator:
    """Base of the SMU emulators: one device on one channel, sourcing voltage, measuring current."""

    idn = "SIM"
    default_limit_a = 1.05e-4
    measure_overhead_s = 100e-6  # per reading beyond the integration (A/D, processing), simulated

    def __init__(
        self,
        clock: VirtualClock,
        device: DeviceArray,
        faults: Faults | None = None,
        line_frequency_hz: float = DEFAULT_LINE_FREQUENCY_HZ,
    ) -> None:
        self.clock = clock
        self.device = device
        self.faults = faults or Faults()
        self.line_frequency_hz = line_frequency_hz
        self.latency_s = DEFAULT_LATENCY_S
        self.errors: list[tuple[int, str]] = []
        self.output: deque[tuple[float, bytes]] = deque()  # (readable from virtual time, reply bytes)
        self.input: deque[str] = deque()
        self.operation: Operation | None = None
        self.opc_waiting = False  # an *OPC? is held until the running sequence ends
        self.history: list[tuple[str, float, float]] = []  # (operation, start s, end s) of ended sequences
        self._t_device_s = clock.now_s()
        self._exec_s: float | None = None  # virtual time queued commands execute at (None: now)
        self.reset_state()

    def reset_state(self) -> None:
        """Power-on state: output off at 0 V, default current limit."""
        self.output_on = False
        self.level_v = 0.0
        self.limit_a = self.default_limit_a

    # -- time ----------------------------------------------------------------------------------
    def now_s(self) -> float:
        """The virtual time the instrument is at (a queued command runs when the block ended)."""
        return self._exec_s if self._exec_s is not None else self.clock.now_s()

    def reading_time_s(self) -> float:
        """Duration of one current reading with the present settings (s)."""
        raise NotImplementedError

    # -- the command interface -----------------------------------------------------------------
    def receive(self, command: str) -> None:
        """One command line from the host; executed now or queued behind a blocking command."""
        self.advance()
        if not self.blocked():
            self.clock.sleep(self.latency_s)
            self.advance()
        if self.blocked():
            self.input.append(command)
            return
        self.execute(command)

    def handle(self, command: str) -> str | None:
        """Execute one command now and return its reply (for direct use in tests and tools)."""
        before = len(self.output)
        self.receive(command)
        if len(self.output) > before:
            return self.output.pop()[1].decode("ascii").rstrip("\n")
        return None

    def execute(self, command: str) -> None:
        """Run one command at ``now_s``; its reply, if any, goes to the output queue."""
        if self.faults.matches(self.faults.reject_on, command) and not self.storing_text():
            self.error(-222, f"Parameter data out of range; {command[:40]}")
            return
        reply = self.dispatch(command.strip())
        if reply is not None:
            self.emit(command, reply)

    def dispatch(self, command: str) -> str | None:
        raise NotImplementedError

    def storing_text(self) -> bool:
        """Whether lines are being stored rather than executed (a TSP script being loaded)."""
        return False

    def emit(self, command: str, reply: str) -> None:
        """Queue ``reply`` to ``command`` for reading, with the reply faults applied."""
        self.emit_raw(command, reply.encode("ascii"))

    def emit_raw(self, command: str, raw: bytes) -> None:
        """Queue reply bytes (without the line end) to ``command``, with the reply faults applied."""
        fault = self.faults.reply_fault(command)
        if fault == "timeout":
            return
        if fault == "garbage":
            raw = b"\xff\xfe\x9a#@!\xc3"
        elif fault == "truncate":
            raw = raw[: len(raw) // 2]
        self.output.append((self.now_s(), raw + b"\n"))

    def blocked(self) -> bool:
        """Whether the parser is held (commands wait in the input queue)."""
        op = self.operation
        return self.opc_waiting or (op is not None and op.blocking)

    def opc(self) -> str | None:
        """``*OPC?``: "1" once no sequence runs; until then the reply (and the parser) waits."""
        if self.operation is None:
            return "1"
        self.opc_waiting = True
        return None

    def device_clear(self) -> None:
        """IEEE 488.2 device clear: input and output queues emptied, *OPC? cancelled, parser freed."""
        self.advance()
        self.input.clear()
        self.output.clear()
        self.opc_waiting = False
        if self.operation is not None:
            self.operation.blocking = False  # the blocking command ends; a sweep in progress does not

    # -- sequences -------------------------------------------------------------------------------
    def start(self, name: str, steps: Steps, blocking: bool = False) -> None:
        """Start a sequence now (it runs as virtual time passes)."""
        self._started_s = self.now_s()
        op = Operation(name, steps, blocking)
        self.operation = op
        op.wake_s = next(steps)
        self.advance(self.now_s())

    def abort(self) -> None:
        """Stop the running sequence where it is (the source stays where the sequence left it)."""
        self.advance()
        if self.operation is not None:
            self.operation.steps.close()
            self._finish(self.now_s(), aborted=True)

    def advance(self, to_s: float | None = None) -> None:
        """Run the instrument up to virtual time ``to_s`` (default now): sequences, then queued commands."""
        to_s = self.clock.now_s() if to_s is None else to_s
        while self.operation is not None and self.operation.wake_s <= to_s:
            op = self.operation
            try:
                op.wake_s = op.steps.send(to_s)
            except StopIteration:
                self._finish(max(op.wake_s, self._t_device_s), aborted=False)

    def _finish(self, end_s: float, aborted: bool) -> None:
        op = self.operation
        assert op is not None
        self.history.append((op.name + (" (aborted)" if aborted else ""), self._started_s, end_s))
        self.operation = None
        self._exec_s = max(end_s, self._t_device_s)
        try:
            if self.opc_waiting:
                self.opc_waiting = False
                self.emit("*OPC?", "1")
            while self.input and not self.blocked():
                self._exec_s += self.latency_s
                self.execute(self.input.popleft())
        finally:
            self._exec_s = None

    def wait_for_output(self, timeout_s: float) -> bytes | None:
        """What a host read does: let virtual time pass until a reply is readable or ``timeout_s`` ran
        out (the clock then stands at that moment); returns one reply line, or None on a timeout."""
        deadline = self.clock.now_s() + timeout_s
        self.advance(deadline)
        if self.output and self.output[0][0] <= deadline:
            ready_s, raw = self.output.popleft()
            self.clock.sleep(ready_s - self.clock.now_s())
            return raw
        self.clock.sleep(deadline - self.clock.now_s())
        return None

    # -- physics on the virtual clock ----------------------------------------------------------
    @property
    def applied_v(self) -> float:
        """Voltage on the device terminals now (0 with the output off)."""
        return self.level_v if self.output_on else 0.0

    def settle(self, at_s: float | None = None) -> None:
        """Bring the device up to ``at_s`` (default the instrument's time) at the voltage it is held at."""
        now = self.now_s() if at_s is None else at_s
        stuck = self.faults.stuck_at_s
        if stuck is not None and self._t_device_s < stuck <= now:
            self.device.hold(self.applied_v, stuck - self._t_device_s)
            self.device.short()
            self._t_device_s = stuck
        if now > self._t_device_s:
            self.device.hold(self.applied_v, now - self._t_device_s)
            self._t_device_s = now

    def set_source(
        self, *, level_v: float | None = None, output_on: bool | None = None, at_s: float | None = None
    ) -> None:
        """Change the output level and/or state at ``at_s`` (default now), integrating the device first."""
        self.settle(at_s)
        if level_v is not None:
            self.level_v = level_v
        if output_on is not None:
            self.output_on = output_on

    def hold_for(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass at the present output (an immediate, blocking command)."""
        self.clock.sleep(seconds)
        self.settle()

    def measure(self) -> tuple[float, float]:
        """One immediate current reading (a blocking query): (timestamp s, current A clamped at the limit);
        takes ``reading_time_s``."""
        t, i = self.reading_at(self.now_s())
        self.hold_for(self.reading_time_s())
        return t, i

    def reading_at(self, t_s: float) -> tuple[float, float]:
        """The current reading that starts at ``t_s`` (>= the device's time), clamped at the limit."""
        self.settle(t_s)
        current = float(self.device.read_current_a(self.applied_v)) if self.output_on else 0.0
        return t_s, float(np.clip(current, -self.effective_limit_a(), self.effective_limit_a()))

    def effective_limit_a(self) -> float:
        """The current limit in force now (A)."""
        return self.limit_a

    def readings_at(self, times_s: np.ndarray) -> list[tuple[float, float]]:
        """Readings starting at ``times_s`` (ascending, >= the device's time), as repeated ``reading_at``
        would give; evaluated in one vectorised call when the output is on at a level below the pulse
        threshold and no fault is due in the span."""
        if len(times_s) == 0:
            return []
        self.settle(float(times_s[0]))
        stuck = self.faults.stuck_at_s
        simple = self.output_on and abs(self.level_v) < self.device.card.pulse.v_threshold_v
        if not simple or (stuck is not None and times_s[0] < stuck <= times_s[-1]):
            return [self.reading_at(float(t)) for t in times_s]
        offsets = np.asarray(times_s, dtype=float) - float(times_s[0])
        limit = self.effective_limit_a()
        currents = np.clip(self.device.read_train_a(self.level_v, offsets), -limit, limit)
        self._t_device_s = float(times_s[-1])  # read_train_a left the device state at the last reading
        return list(zip(np.asarray(times_s, dtype=float).tolist(), currents.tolist(), strict=True))

    def error(self, code: int, message: str) -> None:
        """Push an instrument error onto the queue."""
        self.errors.append((code, message))


class ReadingSink(Protocol):
    """Where a read train puts its readings: a list, or an instrument's reading buffer."""

    def extend(self, readings: Iterable[tuple[float, float]], /) -> None: ...


def train_steps(emulator: SmuEmulator, times_s: np.ndarray, sink: ReadingSink) -> Steps:
    """A read train: readings starting at ``times_s`` appended to ``sink`` as virtual time reaches them;
    ends one reading time after the last start."""
    k = 0
    while k < len(times_s):
        reached = yield float(times_s[k])
        j = int(np.searchsorted(times_s, reached, side="right"))
        sink.extend(emulator.readings_at(times_s[k:j]))
        k = j
    yield float(times_s[-1]) + emulator.reading_time_s()
