"""BT.601 luma weights live in anyrestore.color only; every user reads them from there."""

from __future__ import annotations

import re
from pathlib import Path

import anyrestore
from anyrestore import color

SRC = Path(anyrestore.__file__).parent


def test_the_limited_range_is_219_times_the_full_range() -> None:
    assert tuple(round(219 * w, 3) for w in color.LUMA) == color.Y_WEIGHTS
    assert abs(sum(color.LUMA) - 1) < 1e-12 and color.Y_OFFSET + sum(color.Y_WEIGHTS) == 235.0


def test_no_other_copy_of_the_weights() -> None:
    literal = re.compile(r"0\.299|0\.587|65\.481|128\.553")
    copies = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name != "color.py" and literal.search(path.read_text(encoding="utf-8"))
    ]
    assert copies == []
