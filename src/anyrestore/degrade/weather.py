"""Adverse weather: rain streaks, haze (atmospheric scattering) and snow.

The formulas and ranges are this project's choices (ABAIR released no synthesis code); each function's
docstring states its model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._util import check_image, correlate_valid, direction, rand, supersample_grid, trim_kernel
from .blur import line_coverage

# Snow's brightening reaches 1 - 1/e of ``veil`` at this flake density.
SNOW_VEIL_DENSITY = 0.003


def _screen(base: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
    """Screen blend ``1 - (1 - base)(1 - layer)``, written so that a zero layer returns ``base`` exactly."""
    return base + layer * (1.0 - base)


def _streak_layer(
    x: torch.Tensor, density: float, kernel: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """(N, 1, H, W) layer in [0, 1]: random seeds (probability ``density`` per pixel, strength U(0.5, 1))
    stamped with ``kernel``. Seeds are drawn on a canvas padded by the kernel radius, so shapes that start
    outside the frame still enter it.
    """
    n, _, h, w = x.shape
    kh, kw = kernel.shape
    canvas = (n, 1, h + kh - 1, w + kw - 1)
    hit = rand(canvas, x, generator) < density
    strength = 0.5 + 0.5 * rand(canvas, x, generator)
    seeds = torch.where(hit, strength, torch.zeros_like(strength))
    layer = correlate_valid(seeds, kernel).clamp(0.0, 1.0)
    # Zero the round-off of the FFT path, so untouched pixels stay exactly untouched (values this small
    # are invisible: real stamps are far above 1e-3).
    return torch.where(layer > 1e-3, layer, torch.zeros_like(layer))


def rain(
    x: torch.Tensor,
    *,
    density: float = 0.004,
    length: float = 20.0,
    angle: float = 10.0,
    brightness: float = 0.8,
    width: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Synthetic rain streaks screened onto the image.

    Streak seeds fall on each pixel with probability ``density`` (so ``density`` is the expected number of
    streaks per pixel of area) with a random strength in [0.5, 1]; each seed is stamped with an anti-aliased
    ``length`` x ``width`` line (:func:`~anyrestore.degrade.blur.line_coverage`) tilted ``angle`` degrees
    from vertical (positive: the top of the streak leans right). With R the resulting layer in [0, 1] and
    a = ``brightness`` * R, the output is the screen blend ``y = x + a * (1 - x)``: streaks lighten, never
    darken, and ``density = 0`` returns the image unchanged. Streaks are grey (same on every channel).
    """
    check_image(x)
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must lie in [0, 1], got {density}")
    kernel = line_coverage(length, 90.0 - angle, width)
    layer = _streak_layer(x, density, kernel, generator)
    return _screen(x, brightness * layer).clamp(0.0, 1.0)


def flake_kernel(size: float, length: float, angle: float) -> torch.Tensor:
    """Soft snowflake stamp (float64, peak about 1): a Gaussian-profile disc of diameter ``size`` smeared
    along a segment so that the flake spans ``max(length, size)`` pixels, ``angle`` degrees from vertical.
    """
    if size <= 0 or length < 1:
        raise ValueError(f"size must be > 0 and length >= 1, got size={size}, length={length}")
    radius = 0.5 * size
    seg = 0.5 * max(length - size, 0.0)
    half = math.ceil(seg + 1.5 * radius) + 1
    u, v = supersample_grid(half)
    du, dv = direction(90.0 - angle)
    along = (u * du + v * dv).clamp(-seg, seg)
    dist = torch.hypot(u - along * du, v - along * dv)
    profile = torch.exp(-0.5 * (dist / (0.5 * radius)) ** 2) * (dist <= 1.5 * radius)
    return trim_kernel(profile.mean(dim=-1))


def snow(
    x: torch.Tensor,
    *,
    density: float = 0.003,
    size: float = 3.0,
    length: float = 4.0,
    angle: float = 0.0,
    brightness: float = 0.9,
    veil: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Synthetic snow: a flake layer screened onto a slightly brightened (veiled) image.

    Flake seeds fall with probability ``density`` per pixel (strength U(0.5, 1)) and are stamped with
    :func:`flake_kernel` (``size`` = flake diameter in pixels, ``length`` = streak length of falling flakes,
    ``angle`` in degrees from vertical). The scene is first veiled by the scattered light of the snowfall,
    ``b = x + v * (1 - x)`` with ``v = veil * (1 - exp(-density / 0.003))`` (so the veil grows with the
    density and vanishes without snow); then, with S the flake layer and a = ``brightness`` * S, the output
    is the screen blend ``y = b + a * (1 - b)``. ``density = 0`` returns the image unchanged.
    """
    check_image(x)
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must lie in [0, 1], got {density}")
    kernel = flake_kernel(size, length, angle)
    layer = _streak_layer(x, density, kernel, generator)
    v = veil * (1.0 - math.exp(-density / SNOW_VEIL_DENSITY))
    return _screen(_screen(x, torch.full_like(x[:, :1], v)), brightness * layer).clamp(0.0, 1.0)


def depth_proxy(x: torch.Tensor, *, vertical_weight: float = 0.6) -> torch.Tensor:
    """A plausible scene depth in [0, 1] (1 = far) from the image alone, shape (N, 1, H, W).

    Mixes two cues of outdoor photos: height in the frame (top rows are far: 1 at the top, 0 at the bottom)
    and the low-frequency dark channel (min over RGB, averaged on a coarse grid of about 8 cells along the
    short side and bilinearly upsampled): bright, unsaturated areas such as sky tend to be distant.
    ``d = vertical_weight * height + (1 - vertical_weight) * smooth_dark_channel``.
    """
    check_image(x)
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device, dtype=x.dtype)
    height = 1.0 - rows / max(h - 1, 1)
    dark = x.clamp(0.0, 1.0).amin(dim=1, keepdim=True)
    cell = max(1.0, min(h, w) / 8.0)
    grid = (max(1, round(h / cell)), max(1, round(w / cell)))
    coarse = F.adaptive_avg_pool2d(dark, grid)
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    depth = vertical_weight * height.view(1, 1, h, 1) + (1.0 - vertical_weight) * smooth
    return depth.clamp(0.0, 1.0).expand(n, 1, h, w).contiguous()


def _airlight_tensor(airlight: float | Sequence[float], x: torch.Tensor) -> torch.Tensor:
    if isinstance(airlight, (int, float)):
        values = [float(airlight)] * x.shape[1]
    else:
        values = [float(a) for a in airlight]
        if len(values) != x.shape[1]:
            raise ValueError(f"airlight needs 1 or {x.shape[1]} values, got {len(values)}")
    return torch.tensor(values, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)


def haze(
    x: torch.Tensor,
    *,
    beta: float = 1.0,
    airlight: float | Sequence[float] = 0.9,
    depth: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Atmospheric scattering model ``I = J * t + A * (1 - t)`` with transmission ``t = exp(-beta * d)``.

    ``airlight`` A is a scalar (grey) or one value per channel. ``depth`` d in [0, 1] is a (H, W),
    (N, H, W) or (N, 1, H, W) tensor; without it :func:`depth_proxy` estimates one from the image.
    ``beta = 0`` returns the image exactly. ``generator`` is unused.
    """
    check_image(x)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    n, _, h, w = x.shape
    if depth is None:
        d = depth_proxy(x)
    else:
        d = depth.to(device=x.device, dtype=x.dtype)
        if d.dim() == 2:
            d = d[None, None]
        elif d.dim() == 3:
            d = d[:, None]
        if d.dim() != 4 or d.shape[1] != 1 or d.shape[-2:] != (h, w) or d.shape[0] not in (1, n):
            raise ValueError(f"depth of shape {tuple(depth.shape)} does not match images {tuple(x.shape)}")
        d = d.clamp(0.0, 1.0)
    t = torch.exp(-beta * d)
    return (x * t + _airlight_tensor(airlight, x) * (1.0 - t)).clamp(0.0, 1.0)
