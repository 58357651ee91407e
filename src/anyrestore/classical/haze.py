"""Single-image dehazing with the dark channel prior (He, Sun and Tang, CVPR 2009)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import as_output, as_work, guided_filter, luma


def min_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Minimum over the ``size`` x ``size`` window around each pixel (edge pixels repeated at borders)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    r = size // 2
    return -F.max_pool2d(F.pad(-x, (r, r, r, r), mode="replicate"), size, stride=1)


def dark_channel(x: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """min over the colour channels, then over a ``patch`` x ``patch`` window: (N, 1, H, W). Haze-free
    outdoor patches nearly always hold a dark pixel in some channel, so this is about 0 without haze."""
    return min_filter(x.amin(dim=1, keepdim=True), patch)


def atmospheric_light(x: torch.Tensor, dark: torch.Tensor, top: float = 0.001) -> torch.Tensor:
    """Airlight A per image, (N, 3, 1, 1): the mean colour of the brightest of the ``top`` fraction of
    pixels with the haziest (largest) dark channel, at least one pixel.

    He et al. take the single brightest of those candidates; here the brighter half of them is averaged
    so that one noisy pixel cannot set A.
    """
    n, c, h, w = x.shape
    count = max(1, round(top * h * w))
    flat_dark = dark.reshape(n, -1)
    flat = x.reshape(n, c, -1)
    idx = flat_dark.topk(count, dim=1).indices
    cand = torch.gather(flat, 2, idx[:, None, :].expand(n, c, count))
    keep = max(1, count // 2)
    bright = cand.mean(dim=1).topk(keep, dim=1).indices
    chosen = torch.gather(cand, 2, bright[:, None, :].expand(n, c, keep))
    return chosen.mean(dim=2).view(n, c, 1, 1)


def dehaze_dcp(
    x: torch.Tensor,
    *,
    patch: int = 15,
    omega: float = 0.95,
    t0: float = 0.1,
    top: float = 0.001,
    radius: int = 15,
    eps: float = 1e-3,
    airlight: float | tuple[float, float, float] | None = None,
) -> torch.Tensor:
    """Dark channel prior dehazing: invert ``I = J t + A (1 - t)`` with an estimated A and t.

    A from :func:`atmospheric_light` (or ``airlight`` given: oracle); transmission
    ``t = 1 - omega * dark_channel(I / A)`` (``omega`` < 1 keeps a trace of haze so far objects still look
    far), refined by a guided filter on the luma (``radius``, ``eps``; He et al.'s soft matting replaced
    as in their guided-filter paper), and ``J = (I - A) / max(t, t0) + A``. ``patch`` 15, ``omega`` 0.95,
    ``t0`` 0.1 and ``top`` 0.1% are the paper's values. ``radius`` 15 and ``eps`` 1e-3 were chosen among
    radius 8-60 and eps 1e-4..1e-2 on 128-px photos as the best across haze levels (He et al. used radius
    60 on about 600-px images).
    """
    if not 0.0 < omega <= 1.0 or not 0.0 < t0 <= 1.0:
        raise ValueError(f"need 0 < omega <= 1 and 0 < t0 <= 1, got omega={omega}, t0={t0}")
    if not 0.0 < top <= 1.0:
        raise ValueError(f"top must lie in (0, 1], got {top}")
    img = as_work(x)
    if airlight is None:
        a = atmospheric_light(img, dark_channel(img, patch), top)
    else:
        vals = [float(airlight)] * 3 if isinstance(airlight, (int, float)) else [float(v) for v in airlight]
        if len(vals) != 3 or not all(0.0 < v <= 1.0 for v in vals):
            raise ValueError(f"airlight must be one or three values in (0, 1], got {airlight}")
        a = torch.tensor(vals, dtype=img.dtype).view(1, 3, 1, 1).expand(img.shape[0], 3, 1, 1)
    a = a.clamp(min=1e-3)
    t = 1.0 - omega * dark_channel(img / a, patch)
    t = guided_filter(luma(img), t, radius, eps).clamp(t0, 1.0)
    return as_output((img - a) / t + a, x)
