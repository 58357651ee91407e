"""Paired crops and flips: the same window and the same transform for the LQ image, its GT and its labels.

Tensors are (C, H, W) images or (H, W) label maps; every random choice is drawn from the caller's
generator in a fixed order, so a sample is a pure function of its seed. ``patch`` is the GT patch size;
the LQ window is ``patch // scale`` (super-resolution pairs).
"""

from __future__ import annotations

import torch


def _randint(high: int, generator: torch.Generator) -> int:
    """Uniform integer in [0, high)."""
    return int(torch.randint(high, (1,), generator=generator).item())


def _coin(generator: torch.Generator) -> bool:
    return bool(torch.rand(1, generator=generator).item() < 0.5)


def fit_gt(lq: torch.Tensor, gt: torch.Tensor, scale: int) -> torch.Tensor:
    """The GT trimmed (bottom/right) to exactly ``scale`` times the LQ size (SR GTs can be a bit larger)."""
    h, w = lq.shape[-2] * scale, lq.shape[-1] * scale
    return gt[..., :h, :w]


def random_crop(
    lq: torch.Tensor,
    gt: torch.Tensor,
    patch: int,
    *,
    scale: int = 1,
    generator: torch.Generator,
    extra: tuple[torch.Tensor, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """The same random window of LQ (``patch // scale``), GT (``patch``) and ``extra`` maps at GT size."""
    size = patch // scale
    h, w = lq.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"image of {w}x{h} is smaller than the {size}px crop")
    top, left = _randint(h - size + 1, generator), _randint(w - size + 1, generator)
    gt_window = (slice(top * scale, (top + size) * scale), slice(left * scale, (left + size) * scale))
    return (
        lq[..., top : top + size, left : left + size],
        gt[(..., *gt_window)],
        tuple(t[(..., *gt_window)] for t in extra),
    )


def center_crop(
    lq: torch.Tensor, gt: torch.Tensor, patch: int, *, scale: int = 1, extra: tuple[torch.Tensor, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """The central window (validation: deterministic); images smaller than the patch are kept whole."""
    size = patch // scale
    h, w = lq.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    gt_window = (slice(top * scale, (top + ch) * scale), slice(left * scale, (left + cw) * scale))
    return (
        lq[..., top : top + ch, left : left + cw],
        gt[(..., *gt_window)],
        tuple(t[(..., *gt_window)] for t in extra),
    )


def augment(
    tensors: tuple[torch.Tensor, ...], *, flip: bool, rotate: bool, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Apply one random transform to every tensor: a horizontal flip (``flip``) and, with ``rotate``, a
    vertical flip and a transposition too (all 8 flips and 90-degree rotations, as BasicSR's ``augment``).
    ``rotate`` needs square tensors; draws are made only for the enabled transforms."""
    hflip = flip and _coin(generator)
    vflip = rotate and _coin(generator)
    transpose = rotate and _coin(generator)
    out = []
    for t in tensors:
        if hflip:
            t = t.flip(-1)
        if vflip:
            t = t.flip(-2)
        if transpose:
            t = t.transpose(-1, -2)
        out.append(t.contiguous())
    return tuple(out)
