"""Reading the READMEs and the committed result files: sections, markdown tables, printed numbers.

A printed figure matches a measured value when they agree to the printed precision: "0.862" stands for
[0.8615, 0.8625], "1,407" for [1406.5, 1407.5], "5e-5" for [4.5e-5, 5.5e-5].
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
NUMBER = re.compile(r"[+\-−]?\d[\d,]*(?:\.\d+)?(?:e[+\-−]?\d+)?")


def read(name: str) -> str:
    return (ROOT / name).read_text()


def load(path: str | Path) -> Any:
    return json.loads((ROOT / path).read_text())


def _printed(text: str) -> tuple[float, int, int]:
    """The first number printed in ``text``: its value, decimals of the mantissa and power of ten."""
    found = NUMBER.search(text)
    assert found, f"no number in {text!r}"
    printed = found.group().replace(",", "").replace("−", "-")
    mantissa, _, exponent = printed.partition("e")
    return float(printed), len(mantissa.partition(".")[2]), int(exponent or 0)


def number(text: str) -> tuple[float, float]:
    """The first number printed in ``text`` and half a unit of its last digit."""
    value, decimals, exponent = _printed(text)
    return value, 0.5 * 10.0 ** (exponent - decimals)


def close(printed: str, value: float) -> bool:
    """``printed`` is ``value`` rounded to the precision it is printed with (on a rounding boundary, such as
    0.6535 at 3 decimals, only the way Python rounds ``value`` counts: 0.653, not 0.654)."""
    shown, decimals, exponent = _printed(printed)
    half = 0.5 * 10.0 ** (exponent - decimals)
    gap = abs(shown - value)
    if gap < half * (1 - 1e-9):
        return True
    if gap > half * (1 + 1e-9) + 1e-12:
        return False
    return round(value / 10.0**exponent, decimals) == round(shown / 10.0**exponent, decimals)


def check(printed: str, value: float, what: str = "") -> None:
    assert close(printed, value), f"{what}: the README prints {printed!r}, the result file has {value!r}"


def find(text: str, pattern: str) -> tuple[str, ...]:
    """The groups of ``pattern`` in ``text`` (the prose around a figure must still be there); line breaks and
    runs of spaces in ``text`` read as one space, so that rewrapping a paragraph does not matter."""
    found = re.search(pattern, re.sub(r"\s+", " ", text), flags=re.S)
    assert found, f"not found in the README: {pattern!r}"
    return found.groups()


def section(text: str, heading: str) -> str:
    """From the line ``heading`` (e.g. '### Linearity check') to the next heading of its level or above."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    level = len(heading) - len(heading.lstrip("#"))
    end = next((i for i in range(start + 1, len(lines))
                if re.match(rf"#{{1,{level}}} ", lines[i])), len(lines))  # fmt: skip
    return "\n".join(lines[start:end])


def tables(text: str) -> list[list[list[str]]]:
    """Every markdown table in ``text``: rows of stripped cells, header first, separator row dropped."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def table(text: str, first_header: str) -> list[list[str]]:
    """The table whose first header cell is ``first_header``; its rows without the header."""
    matches = [t for t in tables(text) if t[0][0] == first_header]
    assert len(matches) == 1, f"{len(matches)} tables start with {first_header!r}"
    return matches[0][1:]


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
