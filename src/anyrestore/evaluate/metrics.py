"""PSNR and SSIM with the conventions restoration papers report, batched in torch (CPU or GPU).

A :class:`MetricPreset` fixes every choice that changes the number: quantisation to uint8, the channel
(Y of BT.601 limited range, or RGB), and the border crop. ``basicsr`` is what most papers' tables use
(BasicSR's ``calculate_psnr/ssim`` with ``test_y_channel=True``); ``rgb`` is the same on the RGB
channels (RAM reports RGB PSNR with a 4-pixel crop). SSIM is Wang et al.'s with an 11x11 Gaussian
window (sigma 1.5), evaluated on the valid region only, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2.
Statistics are computed in float64 so results match the reference formula to 1e-6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anyrestore.color import Y_OFFSET, Y_WEIGHTS  # BT.601, R, G, B in [0, 1] -> Y in [16, 235]
from anyrestore.evaluate.presets import PRESETS as PRESETS  # re-exported
from anyrestore.evaluate.presets import MetricPreset, get_preset

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    return x


def prepare(x: torch.Tensor, preset: MetricPreset) -> torch.Tensor:
    """Images in [0, 1] -> the float64 planes the metric is computed on, on the 0..255 scale."""
    x = _as_batch(x).to(torch.float64)
    x = torch.round(x.clamp(0, 1) * 255.0) if preset.quantize else x * 255.0
    if preset.y_channel:
        w = torch.tensor(Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x / 255.0 * w).sum(1, keepdim=True) + Y_OFFSET
    c = preset.crop_border
    if c:
        if x.shape[-2] <= 2 * c or x.shape[-1] <= 2 * c:
            raise ValueError(f"crop_border {c} leaves nothing of a {x.shape[-2]}x{x.shape[-1]} image")
        x = x[..., c:-c, c:-c]
    return x


def _check_pair(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")


def psnr(
    pred: torch.Tensor,
    gt: torch.Tensor,
    preset: str | MetricPreset = "basicsr",
    crop_border: int | None = None,
) -> torch.Tensor:
    """Per-image PSNR in dB, shape (N,); ``inf`` for identical images."""
    p = get_preset(preset, crop_border)
    a, b = prepare(pred, p), prepare(gt, p)
    _check_pair(a, b)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(255.0**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, **kw) -> torch.Tensor:
    """Normalised 1-D Gaussian sampled at integer offsets (as OpenCV's getGaussianKernel)."""
    r = torch.arange(size, **kw) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n, n - k + 1) matrix whose columns hold the window at every valid offset: x @ band = filtering."""
    k = g.numel()
    rows = torch.arange(n, device=g.device)[:, None] - torch.arange(n - k + 1, device=g.device)[None, :]
    inside = (rows >= 0) & (rows < k)
    return torch.where(inside, g[rows.clamp(0, k - 1)], torch.zeros((), dtype=g.dtype, device=g.device))


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filtering of (..., H, W) planes, valid region only.

    Up to 1024 pixels a side, two banded matrix products (BLAS; about 5x faster than float64 conv2d
    on CPU); beyond, separable conv2d, whose cost does not grow with the side.
    """
    h, w = x.shape[-2:]
    if max(h, w) <= 1024:
        return _band(h, g).T @ (x @ _band(w, g))
    shape = x.shape
    planes = x.reshape(-1, 1, h, w)
    planes = F.conv2d(F.conv2d(planes, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))
    return planes.reshape(*shape[:-2], *planes.shape[-2:])


def ssim_map_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per (image, channel) of float64 planes on the 0..255 scale; shape (N, C)."""
    n, c, h, w = a.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    g = gaussian_window(dtype=a.dtype, device=a.device)
    stack = torch.stack([a, b, a * a, b * b, a * b], 1)  # (n, 5, c, h, w)
    mu_a, mu_b, e_aa, e_bb, e_ab = _filter_valid(stack, g).unbind(1)
    var_a = e_aa - mu_a**2
    var_b = e_bb - mu_b**2
    cov = e_ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return (num / den).flatten(2).mean(2)


def ssim(
    pred: torch.Tensor,
    gt: torch.Tensor,
    preset: str | MetricPreset = "basicsr",
    crop_border: int | None = None,
) -> torch.Tensor:
    """Per-image SSIM, shape (N,); for RGB the mean over the three channels."""
    p = get_preset(preset, crop_border)
    a, b = prepare(pred, p), prepare(gt, p)
    _check_pair(a, b)
    return ssim_map_mean(a, b).mean(1)
