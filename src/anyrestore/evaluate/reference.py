"""Straightforward float64 NumPy PSNR/SSIM on uint8 HWC arrays, written for clarity, not speed.

It follows BasicSR's ``calculate_psnr`` / ``calculate_ssim`` formulas literally (explicit 2-D Gaussian
window over every valid position) and is the reference the batched torch metrics are tested against.
"""

from __future__ import annotations

import numpy as np

from anyrestore.color import Y_OFFSET, Y_WEIGHTS


def to_y(img: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float64 Y (H, W) of BT.601 limited range on the 0..255 scale."""
    rgb = img.astype(np.float64) / 255.0
    return rgb[..., 0] * Y_WEIGHTS[0] + rgb[..., 1] * Y_WEIGHTS[1] + rgb[..., 2] * Y_WEIGHTS[2] + Y_OFFSET


def _planes(img: np.ndarray, y_channel: bool, crop_border: int) -> np.ndarray:
    planes = to_y(img)[..., None] if y_channel else img.astype(np.float64)
    if crop_border:
        planes = planes[crop_border:-crop_border, crop_border:-crop_border]
    return planes


def psnr_reference(a: np.ndarray, b: np.ndarray, *, y_channel: bool = True, crop_border: int = 0) -> float:
    pa, pb = _planes(a, y_channel, crop_border), _planes(b, y_channel, crop_border)
    mse = np.mean((pa - pb) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _window() -> np.ndarray:
    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    g /= g.sum()
    return np.outer(g, g)


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    w = _window()
    wx = np.lib.stride_tricks.sliding_window_view(x, (11, 11))
    wy = np.lib.stride_tricks.sliding_window_view(y, (11, 11))
    mu_x = np.einsum("ijkl,kl->ij", wx, w)
    mu_y = np.einsum("ijkl,kl->ij", wy, w)
    var_x = np.einsum("ijkl,kl->ij", wx * wx, w) - mu_x**2
    var_y = np.einsum("ijkl,kl->ij", wy * wy, w) - mu_y**2
    cov = np.einsum("ijkl,kl->ij", wx * wy, w) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def ssim_reference(a: np.ndarray, b: np.ndarray, *, y_channel: bool = True, crop_border: int = 0) -> float:
    pa, pb = _planes(a, y_channel, crop_border), _planes(b, y_channel, crop_border)
    return float(np.mean([_ssim_plane(pa[..., i], pb[..., i]) for i in range(pa.shape[-1])]))
