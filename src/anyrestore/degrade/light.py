"""Low-light capture: darkening plus signal-dependent sensor noise."""

from __future__ import annotations

import torch

from ._util import check_image, randn


def low_light(
    x: torch.Tensor,
    *,
    gamma: float = 2.0,
    gain: float = 0.3,
    shot: float = 0.05,
    read: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Simulate an under-exposed shot: ``y = gain * x ** gamma``, then Poisson-Gaussian sensor noise.

    ``gamma`` > 1 darkens the shadows more than the highlights (it approximately undoes the display gamma,
    so ``y`` behaves like linear light) and ``gain`` < 1 is the lost exposure. Noise is added in that dark
    domain with std ``sqrt(shot**2 * y + read**2)``: ``shot`` is the shot-noise std a white pixel would have
    (it scales with the square root of the signal) and ``read`` the signal-independent read-noise std, both
    on the [0, 1] scale. The dark noisy image is returned as is (no re-brightening), clipped to [0, 1].
    """
    check_image(x)
    if gamma <= 0 or gain < 0 or shot < 0 or read < 0:
        raise ValueError(f"need gamma > 0 and gain, shot, read >= 0; got {gamma}, {gain}, {shot}, {read}")
    y = gain * x.clamp(0.0, 1.0) ** gamma
    std = torch.sqrt(shot**2 * y + read**2)
    return (y + std * randn(tuple(x.shape), x, generator)).clamp(0.0, 1.0)
