"""Declarative instrument settings in the PyMeasure ``Instrument.control`` style.

A driver reads like a table of its instrument::

    compliance_a = control(":SOUR:VOLT:ILIM?", ":SOUR:VOLT:ILIM {:.6g}", "current limit (A)",
                           validator=compliance_within_limits)

Reading the attribute queries ``get_cmd`` and parses the reply; assigning runs ``validator`` first (it
raises ``SafetyError`` / ``InstrumentStateError`` or returns the value to send) and only then writes
``set_cmd``. So a value the validator refuses never reaches the transport.

A setting the driver keeps a record of (``on_set``, e.g. the compliance in force) is recorded only once
the instrument is known to hold it: after the write, the instrument's error queue is read
(``instrument._check_errors()``) and ``on_set`` runs only if it is empty. If the instrument refused the
value (``InstrumentRejected``), its previous value stays in force, as the manuals say, and so does the
record; if the queue could not be read (timeout, garbage, lost link), nobody knows which value is in
force and ``on_unknown`` forgets the record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.errors import InstrumentRejected, ProtocolError

Validator = Callable[[Any, Any], Any]


class Control:
    """Descriptor for one instrument setting; see the module docstring."""

    def __init__(
        self,
        get_cmd: str | None,
        set_cmd: str | None,
        doc: str,
        *,
        validator: Validator | None = None,
        parse: Callable[[str], Any] = float,
        to_wire: dict[Any, str] | None = None,
        on_set: Callable[[Any, Any], None] | None = None,
        on_unknown: Callable[[Any], None] | None = None,
    ) -> None:
        self.get_cmd = get_cmd
        self.set_cmd = set_cmd
        self.__doc__ = doc
        self.validator = validator
        self.parse = parse
        self.to_wire = to_wire
        self.on_set = on_set
        self.on_unknown = on_unknown
        self.name = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instrument: Any, owner: type | None = None) -> Any:
        if instrument is None:
            return self
        if self.get_cmd is None:
            raise AttributeError(f"{self.name} is write-only")
        reply = instrument.transport.query(self.get_cmd)
        try:
            return self.parse(reply.strip())
        except (ValueError, KeyError):
            raise ProtocolError(
                f"{instrument.transport.name}: cannot read {self.name} from {reply!r}"
            ) from None

    def __set__(self, instrument: Any, value: Any) -> None:
        if self.set_cmd is None:
            raise AttributeError(f"{self.name} is read-only")
        if self.validator is not None:
            value = self.validator(instrument, value)
        wire = self.to_wire[value] if self.to_wire is not None else value
        instrument.transport.write(self.set_cmd.format(wire))
        if self.on_set is None:
            return
        try:
            instrument._check_errors()
        except InstrumentRejected:
            raise  # refused: the old value is still in force, and still recorded
        except BaseException:
            if self.on_unknown is not None:
                self.on_unknown(instrument)
            raise
        self.on_set(instrument, value)


def control(
    get_cmd: str | None,
    set_cmd: str | None,
    doc: str,
    *,
    validator: Validator | None = None,
    parse: Callable[[str], Any] = float,
    to_wire: dict[Any, str] | None = None,
    on_set: Callable[[Any, Any], None] | None = None,
    on_unknown: Callable[[Any], None] | None = None,
) -> Any:
    """Declare an instrument setting (typed ``Any`` so drivers can assign plain values to it)."""
    return Control(
        get_cmd,
        set_cmd,
        doc,
        validator=validator,
        parse=parse,
        to_wire=to_wire,
        on_set=on_set,
        on_unknown=on_unknown,
    )


def parse_bool(reply: str) -> bool:
    """Instrument booleans: "1", "ON", "true", "1.00000e+00" -> True; their opposites -> False."""
    text = reply.strip().lower()
    if text in {"1", "on", "true"}:
        return True
    if text in {"0", "off", "false"}:
        return False
    return float(text) != 0.0
