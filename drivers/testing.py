"""Protocol-test harness: a transport that plays a script of expected (command, reply) pairs.

Like PyMeasure's ``expected_protocol``: each written command must equal the next expected one, each
read returns the scripted reply; any deviation raises ``ProtocolMismatch`` naming the step. ``sent``
records every command, so a test can prove that a refused request sent nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.errors import InstrumentError
from drivers.transport import Transport

Exchange = tuple[str, str | None]  # (command expected, reply it gets; None for commands without a reply)


class ProtocolMismatch(AssertionError):
    """The driver sent something other than the scripted command, or read when no reply was due."""


class ScriptedTransport(Transport):
    """A transport following ``script``; ``done()`` tells whether every step was consumed."""

    def __init__(self, script: Sequence[Exchange] = (), name: str = "scripted") -> None:
        super().__init__(name)
        self.script = list(script)
        self.step = 0
        self.sent: list[str] = []
        self._replies: list[str] = []

    def _open(self) -> None:
        return None

    def _close(self) -> None:
        return None

    def _send(self, line: str) -> None:
        self.sent.append(line)
        if self.step >= len(self.script):
            raise ProtocolMismatch(f"unexpected command {line!r} after the end of the script")
        expected, reply = self.script[self.step]
        if expected != line:
            raise ProtocolMismatch(f"step {self.step}: expected {expected!r}, got {line!r}")
        self.step += 1
        if reply is not None:
            self._replies.append(reply)

    def _receive(self, timeout_s: float) -> str:
        if self._replies:
            return self._replies.pop(0)
        raise InstrumentError(f"{self.name}: read with no reply scripted at step {self.step}")

    def done(self) -> bool:
        """Whether the whole script was played."""
        return self.step == len(self.script) and not self._replies
