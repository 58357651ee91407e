"""Blur operators: isotropic Gaussian blur and linear motion blur."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._util import check_image, direction, filter2d, supersample_grid, trim_kernel


def gaussian_kernel1d(kernel_size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (float64); ``sigma == 0`` gives a unit impulse."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    r = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    if sigma == 0:
        return (r == 0).to(torch.float64)
    taps = torch.exp(-(r**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def gaussian_kernel(kernel_size: int = 15, sigma: float = 2.0) -> torch.Tensor:
    """The 2-D (kernel_size x kernel_size) isotropic Gaussian kernel, float64, summing to 1."""
    g = gaussian_kernel1d(kernel_size, sigma)
    return torch.outer(g, g)


def gaussian_blur(
    x: torch.Tensor,
    *,
    kernel_size: int = 15,
    sigma: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blur with a ``kernel_size`` x ``kernel_size`` Gaussian of std ``sigma`` pixels, reflect padding.

    Applied separably (rows then columns), which equals the 2-D kernel of :func:`gaussian_kernel`.
    ``generator`` is accepted for a uniform operator signature and unused.
    """
    check_image(x)
    g = gaussian_kernel1d(kernel_size, sigma).to(device=x.device, dtype=x.dtype)
    n, c, h, w = x.shape
    p = kernel_size // 2
    mode = "reflect" if p < h and p < w else "replicate"
    flat = F.pad(x.reshape(n * c, 1, h, w), (p, p, p, p), mode=mode)
    flat = F.conv2d(flat, g.view(1, 1, 1, -1))
    flat = F.conv2d(flat, g.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w).clamp(0.0, 1.0)


def motion_kernel(length: float = 15.0, angle: float = 0.0) -> torch.Tensor:
    """Anti-aliased linear motion kernel (float64, odd-sized, centred, sums to 1).

    The point spread function of a uniform motion over ``length`` pixels, ``angle`` degrees
    counter-clockwise from horizontal: a thin segment of that length centred on the middle pixel, box
    filtered, i.e. each tap is the share of the segment's length that lies inside that pixel (measured with
    32 samples per pixel of length). At angle 0 an odd integer length gives exactly that many equal taps;
    ``length = 1`` stays inside the centre pixel at any angle, so it is the identity.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    half = math.ceil(0.5 * length + 0.5)
    size = 2 * half + 1
    count = max(64, math.ceil(32 * length))
    t = ((torch.arange(count, dtype=torch.float64) + 0.5) / count - 0.5) * length
    du, dv = direction(angle)
    cols = torch.round(t * du).long() + half
    rows = torch.round(t * dv).long() + half
    kernel = torch.zeros(size * size, dtype=torch.float64)
    kernel.index_add_(0, rows * size + cols, torch.full((count,), 1.0 / count, dtype=torch.float64))
    kernel = trim_kernel(kernel.view(size, size))
    return kernel / kernel.sum()


def line_coverage(length: float, angle: float, width: float = 1.0) -> torch.Tensor:
    """Fraction of each pixel covered by a ``length`` x ``width`` rectangle centred on the middle pixel.

    The rectangle's long side points ``angle`` degrees counter-clockwise from horizontal. Float64, odd
    sizes (all-zero borders trimmed); values in [0, 1] (1 where the rectangle covers the whole pixel).
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    half = math.ceil(0.5 * length + 0.5 * width) + 1
    u, v = supersample_grid(half)
    du, dv = direction(angle)
    along = u * du + v * dv
    across = v * du - u * dv
    inside = (along.abs() <= 0.5 * length) & (across.abs() <= 0.5 * width)
    return trim_kernel(inside.to(torch.float64).mean(dim=-1))


def motion_blur(
    x: torch.Tensor,
    *,
    length: float = 15.0,
    angle: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniform linear motion blur along ``angle`` degrees over ``length`` pixels (:func:`motion_kernel`).

    Reflect padding; large kernels are applied through the FFT. ``generator`` is unused.
    """
    check_image(x)
    return filter2d(x, motion_kernel(length, angle)).clamp(0.0, 1.0)
