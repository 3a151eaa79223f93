"""Faults the simulated lab can inject, so drivers' error paths can be exercised without hardware.

Command-matching faults apply to every command that starts with the given prefix (case-insensitive,
e.g. ``"*OPC?"``, ``"READ"``); an empty prefix matches every command.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Faults(BaseModel):
    """What goes wrong, and when. Every field defaults to "never"."""

    model_config = ConfigDict(extra="forbid")

    timeout_on: str | None = Field(default=None, description="commands with this prefix never get a reply")
    drop_after: int | None = Field(default=None, ge=0, description="the link drops after this many commands")
    garbage_on: str | None = Field(default=None, description="replies to these commands are random bytes")
    truncate_on: str | None = Field(
        default=None, description="replies to these commands lose their second half"
    )
    stuck_at_s: float | None = Field(
        default=None, ge=0, description="virtual time (s) at which the device breaks down into a short"
    )
    stuck_device: tuple[int, int] = Field(default=(0, 0), description="(row, col) that shorts, for arrays")
    reject_on: str | None = Field(
        default=None,
        description="SMUs: commands with this prefix are refused (error -222) and the old value stays",
    )

    @staticmethod
    def matches(prefix: str | None, command: str) -> bool:
        """Whether ``command`` is hit by a fault declared for ``prefix``."""
        return prefix is not None and command.strip().upper().startswith(prefix.upper())

    def reply_fault(self, command: str) -> str | None:
        """ "timeout", "garbage" or "truncate" if that fault hits ``command``, else None."""
        if self.matches(self.timeout_on, command):
            return "timeout"
        if self.matches(self.garbage_on, command):
            return "garbage"
        if self.matches(self.truncate_on, command):
            return "truncate"
        return None
