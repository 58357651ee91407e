"""MAC, mask attribute conductance (RAM, Qin et al. 2024): which layers bridge masked and whole inputs.

For an image x with N = H*W pixels, one random pixel order p is drawn. Path point t = 0..T-1 has
a_t = (1 - r) + r*t/T (r = 0.5: a goes from 0.5 to 0.9975) and the soft keep-mask

    m[p[i]] = sigmoid(k * (a_t - i/N))   for i < ceil(a_t * N),   0 for the other pixels   (k = 1e4)

so pixels are revealed one after another in p-order, from half the image to (almost) all of it; the input
is x_t = m * x in the model's input space (0 is RAM's mask token: the mean colour for ImageNet-normalised
models). The conductance of every unit along this path, with F the output's edge energy, is computed by
:mod:`anyrestore.attribution.conductance`; a unit's score is mean |C| per image, summed over images.
This follows RAM's released analysis script (``DragonisCV/RAM``, ``scripts/``) with names taken from the
bare model, so wrapped and plain models rank the same units.

Unlike integrated gradients, the path is not continuous: a pixel appears at sigmoid(k (a - i/N)) >= 0.5 the
step its index falls below a*N, and with k = 1e4 almost at full strength. The summed conductance of a
layer that cuts the network is therefore not F(x_end) - F(x_start) (first-order terms over jumps of a
non-smooth edge energy), and more steps do not make it so; MAC is a ranking score, used as RAM defines it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from anyrestore.attribution.conductance import Attribution, conductance, conductance_reference
from anyrestore.attribution.units import AttributionError

DEFAULT_STEPS = 200
DEFAULT_RATIO = 0.5
DEFAULT_SHARPNESS = 1e4


class MaskAttributePath:
    """Soft keep-masks along MAC's path for a list of images, one random pixel order each.

    ``ranks[i]`` holds, for every pixel of image i (row-major), its position in that image's order.
    Calling ``path(i, t)`` returns the float64 masks of image i at point indices ``t`` as (len(t), 1, H, W).
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        *,
        steps: int = DEFAULT_STEPS,
        ratio: float = DEFAULT_RATIO,
        sharpness: float = DEFAULT_SHARPNESS,
        seed: int = 0,
    ) -> None:
        if steps < 2:
            raise AttributionError(f"MAC needs at least 2 steps, got {steps}")
        if not 0.0 < ratio <= 1.0:
            raise AttributionError(f"MAC ratio must be in (0, 1], got {ratio}")
        self.sizes = [(int(h), int(w)) for h, w in sizes]
        self.steps, self.ratio, self.sharpness = steps, ratio, sharpness
        generator = torch.Generator().manual_seed(seed)
        self.ranks = []
        for h, w in self.sizes:
            order = torch.randperm(h * w, generator=generator)
            ranks = torch.empty_like(order)
            ranks[order] = torch.arange(h * w)
            self.ranks.append(ranks)

    def alpha(self, t: int) -> float:
        """Fraction of pixels revealed at point ``t``."""
        return (1.0 - self.ratio) + self.ratio * t / self.steps

    def __call__(self, i: int, t: torch.Tensor) -> torch.Tensor:
        h, w = self.sizes[i]
        n = h * w
        alphas = [self.alpha(int(s)) for s in t.tolist()]
        a = torch.tensor(alphas, dtype=torch.float64)[:, None]
        count = torch.tensor([math.ceil(x * n) for x in alphas])[:, None]
        ranks = self.ranks[i][None]
        soft = torch.sigmoid(self.sharpness * (a - ranks.double() / n))
        keep = torch.where(ranks < count, soft, torch.zeros((), dtype=torch.float64))
        return keep.view(len(alphas), 1, h, w)


def _sizes(images: torch.Tensor | Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    batch = images.unbind(0) if isinstance(images, torch.Tensor) and images.dim() == 4 else images
    return [tuple(image.shape[-2:]) for image in batch]  # type: ignore[misc]


def mac(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    steps: int = DEFAULT_STEPS,
    ratio: float = DEFAULT_RATIO,
    sharpness: float = DEFAULT_SHARPNESS,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
) -> Attribution:
    """MAC of every unit of ``model`` (any wrapper) for [0, 1] images ((N, 3, H, W) or a list of them).

    ``batch_size`` bounds how many path points run through the network at once (memory); it does not
    change the result beyond float rounding. ``seed`` draws the pixel orders.
    """
    path = MaskAttributePath(_sizes(images), steps=steps, ratio=ratio, sharpness=sharpness, seed=seed)
    return conductance(model, images, path, steps, batch_size=batch_size, method="mac", progress=progress)


def mac_reference(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    steps: int = DEFAULT_STEPS,
    ratio: float = DEFAULT_RATIO,
    sharpness: float = DEFAULT_SHARPNESS,
    seed: int = 0,
    progress: bool = False,
) -> Attribution:
    """:func:`mac` computed one path step per forward/backward pass, as RAM's script does (slow)."""
    path = MaskAttributePath(_sizes(images), steps=steps, ratio=ratio, sharpness=sharpness, seed=seed)
    return conductance_reference(model, images, path, steps, method="mac", progress=progress)
