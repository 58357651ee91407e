"""Unit rankings: the random baseline, a TSV file format, and a plot of scores by depth.

File format (UTF-8 text, tab-separated, best unit first)::

    # anyrestore ranking
    # method=mac
    # steps=200
    unit<TAB>score<TAB>depth
    encoder_level1.0.attn.qkv<TAB>0.00123<TAB>7
    ...

``depth`` is the unit's position in the model's unit order (what the plot puts on the x axis). Lines
starting with ``#`` carry ``key=value`` metadata. The reader also takes rows of one or two columns (a plain
list of names, as RAM's scripts write them): missing scores read as NaN and missing depths as -1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from anyrestore.attribution.units import AttributionError, attribution_units
from anyrestore.io import atomic_output

HEADER = ("unit", "score", "depth")


@dataclass(frozen=True)
class Ranking:
    """Units sorted by decreasing score, with each unit's depth (index in the model's unit order)."""

    units: tuple[str, ...]
    scores: tuple[float, ...]
    depths: tuple[int, ...]
    method: str = "mac"
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not len(self.units) == len(self.scores) == len(self.depths):
            raise AttributionError("ranking units, scores and depths differ in length")
        if len(set(self.units)) != len(self.units):
            dup = next(u for u in self.units if self.units.count(u) > 1)
            raise AttributionError(f"ranking lists unit '{dup}' twice")

    @classmethod
    def from_scores(
        cls,
        units: Sequence[str],
        scores: Sequence[float],
        method: str,
        meta: dict[str, str] | None = None,
    ) -> Ranking:
        """Rank ``units`` (in model order) by ``scores``, highest first; ties keep model order."""
        if len(units) != len(scores):
            raise AttributionError(f"{len(units)} units but {len(scores)} scores")
        values = [float(s) for s in scores]
        if any(math.isnan(v) for v in values):
            raise AttributionError("scores contain NaN")
        order = sorted(range(len(units)), key=lambda i: (-values[i], i))
        return cls(
            tuple(units[i] for i in order),
            tuple(values[i] for i in order),
            tuple(order),
            method,
            dict(meta or {}),
        )

    def __len__(self) -> int:
        return len(self.units)

    def top_count(self, ratio: float) -> int:
        """floor(ratio * L): how many units a fraction ``ratio`` selects."""
        if not 0.0 <= ratio <= 1.0:
            raise AttributionError(f"ratio must be in [0, 1], got {ratio}")
        return math.floor(ratio * len(self.units) + 1e-9)

    def top(self, ratio: float) -> list[str]:
        """The first floor(ratio * L) units."""
        return list(self.units[: self.top_count(ratio)])


def random_ranking(model_or_units: nn.Module | Sequence[str], seed: int = 0) -> Ranking:
    """Units in a uniformly random order drawn from ``seed`` (the 'random' baseline of RAM's ablation)."""
    units = (
        attribution_units(model_or_units) if isinstance(model_or_units, nn.Module) else list(model_or_units)
    )
    scores = torch.rand(len(units), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return Ranking.from_scores(units, scores.tolist(), "random", {"seed": str(seed)})


# ------------------------------------------------------------------------------------------------ files


def write_ranking(path: str | os.PathLike[str], ranking: Ranking) -> Path:
    """Write ``ranking`` as TSV (see the module docstring), atomically."""
    path = Path(path)
    lines = ["# anyrestore ranking", f"# method={ranking.method}"]
    lines += [f"# {key}={value}" for key, value in ranking.meta.items() if key != "method"]
    lines.append("\t".join(HEADER))
    for unit, score, depth in zip(ranking.units, ranking.scores, ranking.depths, strict=True):
        lines.append(f"{unit}\t{score!r}\t{depth}")
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_ranking(path: str | os.PathLike[str]) -> Ranking:
    """Read a ranking file written by :func:`write_ranking` (or a plain list of unit names)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AttributionError(f"{path}: no such ranking file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AttributionError(f"{path}: cannot read ranking ({exc})") from None
    meta: dict[str, str] = {}
    units: list[str] = []
    scores: list[float] = []
    depths: list[int] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, eq, value = line[1:].strip().partition("=")
            if eq:
                meta[key.strip()] = value.strip()
            continue
        cols = [c.strip() for c in line.split("\t")] if "\t" in line else line.split()
        if tuple(cols) == HEADER[: len(cols)]:
            continue
        if len(cols) > 3:
            raise AttributionError(
                f"{path}:{number}: expected 'unit<TAB>score<TAB>depth', got {len(cols)} columns"
            )
        try:
            scores.append(float(cols[1]) if len(cols) > 1 else math.nan)
            depths.append(int(cols[2]) if len(cols) > 2 else -1)
        except ValueError:
            raise AttributionError(f"{path}:{number}: bad score or depth in '{line}'") from None
        units.append(cols[0])
    if not units:
        raise AttributionError(f"{path}: no units listed")
    method = meta.pop("method", "unknown")
    return Ranking(tuple(units), tuple(scores), tuple(depths), method, meta)


# ------------------------------------------------------------------------------------------------- plot

_GREY, _RED, _INK, _GRID = (150, 150, 150), (214, 39, 40), (30, 30, 30), (228, 228, 228)


def plot_ranking(
    path: str | os.PathLike[str],
    ranking: Ranking,
    ratio: float,
    *,
    size: tuple[int, int] = (1100, 440),
    log: bool | None = None,
) -> Path:
    """PNG of each unit's score (y) against its depth (x), the top floor(ratio * L) units in red.

    ``log`` picks a log y axis; by default one is used when all scores are positive and span more
    than two decades. Written with Pillow only, atomically.
    """
    from PIL import Image, ImageDraw, ImageFont

    if any(d < 0 for d in ranking.depths) or any(not math.isfinite(s) for s in ranking.scores):
        raise AttributionError("the ranking has no depths or scores to plot (a plain list of names?)")
    n = len(ranking)
    chosen = set(ranking.top(ratio))
    values = list(ranking.scores)
    positive = [v for v in values if v > 0]
    if log is None:
        log = len(positive) == n and max(positive) / min(positive) > 100
    if log and len(positive) != n:
        raise AttributionError("a log axis needs every score positive")

    def transform(v: float) -> float:
        return math.log10(v) if log else v

    lo = min(transform(v) for v in values) if log else min(0.0, min(values))
    hi = max(transform(v) for v in values)
    if log:  # whole decades, at most 8 of them below the top (smaller scores sit on the axis)
        hi = math.ceil(hi)
        lo = min(max(math.floor(lo), hi - 8), hi - 1)
    if hi <= lo:
        hi = lo + 1.0

    width, height = size
    left, right, top, bottom = 90, 20, 40, 56
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()

    def px(depth: float) -> float:
        return left + (depth + 0.5) / n * (width - left - right)

    def py(value: float) -> float:
        return height - bottom - (transform(value) - lo) / (hi - lo) * (height - top - bottom)

    # y grid and labels
    if log:
        ticks = [10.0**e for e in range(int(lo), int(hi) + 1)]
    else:
        ticks = [lo + (hi - lo) * i / 5 for i in range(6)]
    for tick in ticks:
        y = py(tick)
        draw.line([(left, y), (width - right, y)], fill=_GRID)
        draw.text((left - 8, y), f"{tick:.3g}", fill=_INK, font=font, anchor="rm")
    # x labels
    step = max(1, round(n / 10 / 10) * 10) if n > 20 else max(1, n // 5 or 1)
    for depth in range(0, n, step):
        x = px(depth)
        draw.line([(x, height - bottom), (x, height - bottom + 4)], fill=_INK)
        draw.text((x, height - bottom + 6), str(depth), fill=_INK, font=font, anchor="mt")
    # bars
    base = height - bottom
    bar = max(1.0, (width - left - right) / n * 0.7)
    for unit, value, depth in zip(ranking.units, values, ranking.depths, strict=True):
        x = px(depth)
        y = min(py(value), base - 1)
        draw.rectangle([x - bar / 2, y, x + bar / 2, base], fill=_RED if unit in chosen else _GREY)
    draw.line([(left, top), (left, base), (width - right, base)], fill=_INK)
    title = (
        f"{ranking.method} score by unit depth ({n} units{', log scale' if log else ''}); "
        f"red: top {ratio:.0%} = {len(chosen)} units"
    )
    draw.text((left, 12), title, fill=_INK, font=font)
    draw.text(
        ((left + width - right) / 2, height - 16),
        "unit index (model order)",
        fill=_INK,
        font=font,
        anchor="mm",
    )
    draw.text((8, top - 20), "score", fill=_INK, font=font)

    path = Path(path)
    with atomic_output(path) as tmp:
        im.save(tmp, format="PNG")
    return path
