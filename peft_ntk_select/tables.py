"""Plain-text tables and numbers for the CLI and the diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_number(value: float | None, digits: str = ".4g") -> str:
    """``value`` in ``digits`` format, or "-" when there is none (e.g. the risk without labels)."""
    return "-" if value is None else format(value, digits)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned text table: one header line, a rule, one line per row."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
