"""Typed instrument errors: each names the instrument and what went wrong in one line.

All derive from ``hwloop.errors.HwloopError`` so the CLI prints them as ``error: ...``.
"""

from __future__ import annotations

from device_models.errors import HwloopError


class InstrumentError(HwloopError):
    """An instrument refused a command or reported an error of its own."""


class InstrumentRejected(InstrumentError):
    """The instrument's error queue reported an error: the command it names was refused, and the setting
    it would have changed keeps its previous value (what the manuals say a refused setting does)."""


class SafetyError(InstrumentError):
    """A request exceeds the user's ``SafetyLimits``; nothing was sent to the instrument."""


class InstrumentStateError(InstrumentError):
    """A request is not allowed in the instrument's present state (e.g. output on before compliance)."""


class InstrumentTimeout(InstrumentError):
    """The instrument did not answer (or did not finish a sequence) within the timeout."""


class ConnectionLost(InstrumentError):
    """The link to the instrument dropped (cable, power, closed socket); reconnect before continuing."""


class ProtocolError(InstrumentError):
    """A reply could not be understood: garbage, truncated, or the wrong number of values."""


class ComplianceError(InstrumentError):
    """The measured current reached the compliance limit, the signature of a stuck-on (shorted) device.

    ``t_s`` and ``i_a`` hold the readings taken (compliance-clamped ones included) so no data is lost.
    """

    def __init__(self, message: str, t_s: object = None, i_a: object = None) -> None:
        super().__init__(message)
        self.t_s = t_s
        self.i_a = i_a
