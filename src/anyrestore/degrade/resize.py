"""MATLAB-compatible bicubic resizing (the ``imresize`` of the SR benchmarks) and x2/x3/x4 downsampling."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._util import check_image


def _cubic(t: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with a = -0.5 (support [-2, 2])."""
    a = t.abs()
    a2, a3 = a * a, a * a * a
    near = (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1)
    far = (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1) & (a <= 2))
    return near + far


def _contributions(
    in_len: int, out_len: int, scale: float, antialias: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps of every output sample along one axis: (out_len, P) source indices (0-based) and weights.

    Output sample i (1-based) sits at input coordinate ``i / scale + (1 - 1 / scale) / 2``. When shrinking
    with antialiasing the kernel is stretched by 1/scale so it acts as a low-pass filter. Indices that fall
    outside the image are mirrored (symmetric boundary, edge pixel repeated), as MATLAB does.
    """
    width = 4.0
    stretch = scale < 1 and antialias
    if stretch:
        width /= scale
    pos = torch.arange(1, out_len + 1, dtype=torch.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(pos - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = pos[:, None] - idx
    weights = scale * _cubic(dist * scale) if stretch else _cubic(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # 1-based index k maps to 0-based k-1; mirror with period 2*in_len: 0..n-1 then n-1..0.
    zero_based = (idx.long() - 1) % (2 * in_len)
    zero_based = torch.where(zero_based < in_len, zero_based, 2 * in_len - 1 - zero_based)
    return zero_based, weights


def _resize_axis(x: torch.Tensor, dim: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    in_len = x.shape[dim]
    idx, weights = _contributions(in_len, out_len, scale, antialias)
    idx = idx.to(x.device)
    weights = weights.to(device=x.device, dtype=x.dtype)
    shape = [1] * x.dim()
    shape[dim] = out_len
    out = None
    # Loop over the few taps (4 to ~20), never over pixels; each step gathers one shifted copy.
    for p in range(idx.shape[1]):
        term = x.index_select(dim, idx[:, p]) * weights[:, p].view(shape)
        out = term if out is None else out + term
    return out


def imresize(
    x: torch.Tensor,
    scale_or_size: float | Sequence[int],
    *,
    antialias: bool = True,
) -> torch.Tensor:
    """Bicubic resize of a (N, C, H, W) tensor, matching MATLAB's ``imresize(img, s, 'bicubic')``.

    ``scale_or_size`` is a scale factor (output ``ceil(H*s) x ceil(W*s)``, as MATLAB) or an output size
    ``(h, w)`` (per-axis scale ``h/H``, ``w/W``). Keys cubic kernel a = -0.5, widened by 1/scale when
    shrinking (``antialias``), symmetric boundary. Works for up- and down-scaling, on any device; the
    result is not clipped (bicubic can overshoot), so it suits any real-valued tensor.
    """
    check_image(x)
    h, w = x.shape[-2:]
    if isinstance(scale_or_size, (int, float)) and not isinstance(scale_or_size, bool):
        s = float(scale_or_size)
        if s <= 0:
            raise ValueError(f"scale must be > 0, got {s}")
        # The tiny slack keeps e.g. 63 * (1/3) from rounding up to 22 through float error.
        out_h, out_w = math.ceil(h * s - 1e-9), math.ceil(w * s - 1e-9)
        sh = sw = s
    else:
        out_h, out_w = (int(v) for v in scale_or_size)
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"output size must be positive, got {(out_h, out_w)}")
        sh, sw = out_h / h, out_w / w
    y = x
    # Shrink the axis with the stronger reduction first (MATLAB's order); it is cheaper and equivalent.
    order = [(-2, out_h, sh), (-1, out_w, sw)]
    order.sort(key=lambda item: item[2])
    for dim, out_len, s in order:
        if out_len != y.shape[dim] or s != 1.0:
            y = _resize_axis(y, dim, out_len, s, antialias)
    return y if y is not x else x.clone()


def modcrop(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom and right edges so that H and W are multiples of ``scale`` (the SR convention)."""
    h, w = x.shape[-2:]
    return x[..., : h - h % scale, : w - w % scale]


def downsample(x: torch.Tensor, *, scale: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bicubic x``scale`` downsampling (MATLAB ``imresize(img, 1/scale)``), clipped to [0, 1].

    H and W are first cropped at the bottom/right to multiples of ``scale`` (:func:`modcrop`), so the
    output is exactly (H // scale, W // scale); crop the ground truth the same way to keep pairs aligned.
    ``generator`` is unused.
    """
    check_image(x)
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    scale = int(scale)
    if x.shape[-2] < scale or x.shape[-1] < scale:
        raise ValueError(f"image {tuple(x.shape[-2:])} is smaller than the scale {scale}")
    h, w = x.shape[-2] // scale, x.shape[-1] // scale
    return imresize(modcrop(x, scale), (h, w)).clamp(0.0, 1.0)
