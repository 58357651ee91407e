"""Sensor-style noise: additive Gaussian, Poisson shot noise, salt-and-pepper and speckle."""

from __future__ import annotations

import torch

from ._util import check_image, rand, randn


def gaussian_noise(
    x: torch.Tensor, *, sigma: float = 25.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add i.i.d. Gaussian noise with std ``sigma`` on the 0..255 scale (the usual denoising convention).

    Every channel of every pixel gets its own sample; the result is clipped to [0, 1].
    """
    check_image(x)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return (x + randn(tuple(x.shape), x, generator) * (sigma / 255.0)).clamp(0.0, 1.0)


def poisson_noise(
    x: torch.Tensor, *, peak: float = 30.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Photon shot noise: ``Poisson(x * peak) / peak``, ``peak`` = expected photon count at white.

    Lower ``peak`` means fewer photons and stronger noise; the noise variance is ``x / peak``.
    """
    check_image(x)
    if peak <= 0:
        raise ValueError(f"peak must be > 0, got {peak}")
    rate = x.clamp(0.0, 1.0) * peak
    # torch.poisson has no float16/bfloat16 kernels on every device: draw in float32.
    counts = torch.poisson(rate.float(), generator=generator).to(x.dtype)
    return (counts / peak).clamp(0.0, 1.0)


def salt_pepper(
    x: torch.Tensor,
    *,
    amount: float = 0.05,
    salt_vs_pepper: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Impulse noise: a fraction ``amount`` of the pixels (all channels together) set to white or black.

    Each hit pixel is white (salt) with probability ``salt_vs_pepper``, black otherwise.
    """
    check_image(x)
    if not 0.0 <= amount <= 1.0 or not 0.0 <= salt_vs_pepper <= 1.0:
        raise ValueError(f"amount and salt_vs_pepper must lie in [0, 1], got {amount}, {salt_vs_pepper}")
    n, _, h, w = x.shape
    hit = rand((n, 1, h, w), x, generator) < amount
    salt = rand((n, 1, h, w), x, generator) < salt_vs_pepper
    return torch.where(hit, salt.to(x.dtype), x).clamp(0.0, 1.0)


def speckle_noise(
    x: torch.Tensor, *, sigma: float = 0.1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Multiplicative Gaussian noise ``x + x * n``, ``n ~ N(0, sigma^2)`` (sigma on the [0, 1] scale)."""
    check_image(x)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return (x + x * randn(tuple(x.shape), x, generator) * sigma).clamp(0.0, 1.0)
