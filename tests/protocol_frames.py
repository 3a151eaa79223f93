"""The crossbar protocol's frames written from its document, independent of the driver's code: a line
``@<seq> <body>*<CRC16 hex>`` with CRC-16/CCITT-FALSE computed bit by bit from its definition (poly
0x1021, init 0xFFFF), as ``docs/crossbar-controller-protocol.md`` gives it for firmware. v2 and v3 lines
share this framing."""

from __future__ import annotations


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data``, bitwise (not the driver's table-driven one)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def framed(seq: int, body: str) -> str:
    """A protocol line as the document defines it: ``@<seq> <body>*<CRC16 hex>``."""
    head = f"@{seq} {body}"
    return f"{head}*{crc16_ccitt_false(head.encode()):04X}"
