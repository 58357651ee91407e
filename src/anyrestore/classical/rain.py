"""Rain streak removal: an oriented median filter across the dominant streak direction.

A deliberately simple baseline (no learned or sparse-coding layer separation): it finds the streak
angle, and darkens thin bright lines along it back to their surroundings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._common import as_output, as_work, luma

CANDIDATE_ANGLES = tuple(range(-45, 46, 5))
CONSISTENCY = 9


def _shift_stack(x: torch.Tensor, du: float, dv: float, offsets: range | list[int]) -> torch.Tensor:
    """(N, C, H, W) sampled at ``(col + d du, row + d dv)`` for every offset d (bilinear, mirrored at the
    borders), stacked along a new dim 2: (N, C, D, H, W)."""
    n, c, h, w = x.shape
    rows = torch.arange(h, dtype=x.dtype)
    cols = torch.arange(w, dtype=x.dtype)
    gr, gc = torch.meshgrid(rows, cols, indexing="ij")
    grids = []
    for d in offsets:
        # grid_sample wants (x, y) in [-1, 1] with align_corners=True mapping -1/1 to the edge pixels.
        gx = (gc + d * du) / max(w - 1, 1) * 2.0 - 1.0
        gy = (gr + d * dv) / max(h - 1, 1) * 2.0 - 1.0
        grids.append(torch.stack((gx, gy), dim=-1))
    grid = torch.stack(grids)  # (D, H, W, 2)
    big = x[:, None].expand(n, len(grids), c, h, w).reshape(n * len(grids), c, h, w)
    out = F.grid_sample(
        big, grid.repeat(n, 1, 1, 1), mode="bilinear", padding_mode="reflection", align_corners=True
    )
    return out.view(n, len(grids), c, h, w).transpose(1, 2)


def _direction(angle: float) -> tuple[float, float]:
    """Unit step (columns, rows) along a streak ``angle`` degrees from vertical, top leaning right for
    positive angles (the convention of :func:`anyrestore.degrade.rain`): rows grow downwards."""
    a = math.radians(angle)
    return -math.sin(a), math.cos(a)


def estimate_streak_angle(x: torch.Tensor, length: int = 15) -> torch.Tensor:
    """Dominant streak direction per image, degrees from vertical, one of -45, -40, ..., 45; shape (N,).

    Rain streaks are thin bright lines: the positive part of the luma minus its 3x3 median is averaged
    along ``length`` pixels in each candidate direction, and the direction with the largest mean squared
    response wins (along a streak the average keeps its full height; across it, it is diluted).
    """
    grey = luma(as_work(x))
    n, _, h, w = grey.shape
    patches = F.unfold(F.pad(grey, (1, 1, 1, 1), mode="replicate"), 3).view(n, 9, h, w)
    detail = (grey - patches.median(dim=1, keepdim=True).values).clamp(min=0.0)
    offsets = [d - length // 2 for d in range(length)]
    scores = []
    for angle in CANDIDATE_ANGLES:
        du, dv = _direction(angle)
        line_mean = _shift_stack(detail, du, dv, offsets).mean(dim=2)
        scores.append(line_mean.pow(2).flatten(1).mean(1))
    best = torch.stack(scores, dim=1).argmax(dim=1)
    return torch.tensor(CANDIDATE_ANGLES, dtype=torch.float32)[best]


def derain_median(
    x: torch.Tensor, *, angle: float | None = None, radius: int = 2, threshold: float = 0.02
) -> torch.Tensor:
    """Darken-only oriented median filter across the rain streaks, applied where a streak is detected.

    Each pixel's candidate is ``min(y, m)`` per channel, m the median of ``2 radius + 1`` samples on a
    line perpendicular to the streaks (``angle`` degrees from vertical: given, oracle, or from
    :func:`estimate_streak_angle`): a streak up to about ``radius`` pixels wide is outvoted by the
    background on both sides, while edges along the streaks survive (a median keeps steps). The candidate
    replaces the pixel only where the luma it removes stays above ``threshold`` along the streak direction
    (median over 9 pixels), which spares isolated texture. Rain only lightens, so pixels are never
    brightened. Texture parallel to the rain suffers with it; streaks wider than ``radius`` survive.
    """
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    img = as_work(x)
    angles = estimate_streak_angle(img).tolist() if angle is None else [float(angle)] * img.shape[0]
    out = []
    for i, a in enumerate(angles):
        du, dv = _direction(a)
        # Across the streak: rotate the streak direction by 90 degrees.
        y = img[i : i + 1]
        stack = _shift_stack(y, -dv, du, range(-radius, radius + 1))
        median = torch.minimum(y, stack.median(dim=2).values)
        excess = luma(y - median)
        half = CONSISTENCY // 2
        along = _shift_stack(excess, du, dv, range(-half, half + 1)).median(dim=2).values
        out.append(torch.where(along > threshold, median, y))
    return as_output(torch.cat(out), x)
