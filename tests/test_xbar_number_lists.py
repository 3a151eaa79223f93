"""A row reply is parsed in one pass (``parse_numbers``); it must accept and refuse exactly what parsing
each element with ``parse_number`` (the protocol's strict grammar) accepts and refuses."""

from __future__ import annotations

import pytest

from drivers.xbar_protocol import parse_number, parse_numbers

TOKENS = [
    "0",
    "-0",
    "1.5",
    "1e-07",
    "1.500000e+00",
    "-3.2E5",
    "12345678901234567890123",  # fine
    "inf",
    "nan",
    "+1",
    ".5",
    "1.",
    "0x10",
    "01",
    "1e",
    " 1",
    "1 ",
    "1e999",
    "",
    "1,5",  # refused
    "123456789012345678901234567",  # longer than 24 characters
]


@pytest.mark.parametrize("first", TOKENS)
@pytest.mark.parametrize("second", ["2.5", *TOKENS[7:12]])
def test_a_list_parses_exactly_as_its_elements_do(first: str, second: str) -> None:
    text = f"{first},{second}"
    try:
        want = [parse_number(x) for x in text.split(",")]
    except ValueError:
        with pytest.raises(ValueError):
            parse_numbers(text)
        return
    assert parse_numbers(text) == want
