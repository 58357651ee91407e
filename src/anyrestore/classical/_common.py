"""Shared helpers of the classical baselines: input checks, conversions, box and guided filters."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from anyrestore.color import LUMA  # BT.601 luma weights on RGB in [0, 1]


def check_rgb(x: torch.Tensor) -> None:
    """Raise unless ``x`` is a floating (N, 3, H, W) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an RGB batch of shape (N, 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point image tensor, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"expected a non-empty image batch, got shape {tuple(x.shape)}")


def as_work(x: torch.Tensor) -> torch.Tensor:
    """A detached float32 CPU copy clipped to [0, 1]: the baselines never touch the caller's tensor."""
    check_rgb(x)
    return x.detach().to(device="cpu", dtype=torch.float32).clamp(0.0, 1.0)


def as_output(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``y`` clipped to [0, 1], with ``like``'s dtype and device."""
    return y.clamp(0.0, 1.0).to(device=like.device, dtype=like.dtype)


def per_image_hwc(
    x: torch.Tensor, fn: Callable[[np.ndarray], np.ndarray], uint8: bool = False
) -> torch.Tensor:
    """Apply ``fn`` to every image of ``x`` as an (H, W, 3) numpy array (float32 in [0, 1], or uint8 when
    ``uint8``) and restack the results as an (N, 3, H, W) float32 tensor in [0, 1]."""
    work = as_work(x)
    outs = []
    for img in work.permute(0, 2, 3, 1).numpy():
        arr = np.ascontiguousarray(img)
        if uint8:
            out = fn(np.round(arr * 255.0).astype(np.uint8)).astype(np.float32) / 255.0
        else:
            out = fn(arr).astype(np.float32)
        outs.append(torch.from_numpy(np.ascontiguousarray(out)))
    return torch.stack(outs).permute(0, 3, 1, 2).clamp(0.0, 1.0)


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of an (N, 3, H, W) batch, shape (N, 1, H, W)."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel, the window clipped at the borders.

    Computed from integral images, so the cost does not grow with ``radius``; near the borders the mean
    is over the pixels that exist (no padding values enter it).
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if radius == 0:
        return x.clone()
    h, w = x.shape[-2:]
    xd = x.to(torch.float64)
    # Integral image with a leading zero row/column: S[i, j] = sum of x[:i, :j].
    s = F.pad(xd.cumsum(-2).cumsum(-1), (1, 0, 1, 0))
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    r0, r1 = (rows - radius).clamp(min=0), (rows + radius + 1).clamp(max=h)
    c0, c1 = (cols - radius).clamp(min=0), (cols + radius + 1).clamp(max=w)
    total = (
        s[..., r1[:, None], c1[None, :]]
        - s[..., r0[:, None], c1[None, :]]
        - s[..., r1[:, None], c0[None, :]]
        + s[..., r0[:, None], c0[None, :]]
    )
    count = ((r1 - r0)[:, None] * (c1 - c0)[None, :]).to(torch.float64)
    return (total / count).to(x.dtype)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int = 8, eps: float = 1e-3) -> torch.Tensor:
    """He et al.'s guided filter (ECCV 2010): an edge-preserving smoothing of ``src`` steered by ``guide``.

    In every (2r+1)^2 window the output is a linear function ``a * I + b`` of the guide, fitted to ``src``
    by least squares with ridge ``eps`` (on the guide's squared scale: larger eps smooths more); the
    per-window coefficients are averaged over the windows covering each pixel. ``guide`` is (N, 1, H, W)
    (shared by all channels of ``src``) or has ``src``'s channels (one guide per channel); ``src`` is
    (N, C, H, W). A constant ``src`` comes back unchanged, and steps in the guide stay sharp.
    """
    if guide.dim() != 4 or src.dim() != 4:
        raise ValueError(f"guide and src must be (N, C, H, W), got {tuple(guide.shape)}, {tuple(src.shape)}")
    if (
        guide.shape[0] != src.shape[0]
        or guide.shape[-2:] != src.shape[-2:]
        or guide.shape[1]
        not in (
            1,
            src.shape[1],
        )
    ):
        raise ValueError(f"guide {tuple(guide.shape)} does not match src {tuple(src.shape)}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    g = guide.to(torch.float64)
    p = src.to(torch.float64)
    mean_g = box_filter(g, radius)
    mean_p = box_filter(p, radius)
    cov_gp = box_filter(g * p, radius) - mean_g * mean_p
    var_g = box_filter(g * g, radius) - mean_g * mean_g
    a = cov_gp / (var_g.clamp(min=0.0) + eps)
    b = mean_p - a * mean_g
    return (box_filter(a, radius) * g + box_filter(b, radius)).to(src.dtype)
