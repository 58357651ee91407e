"""Integrated-gradients baseline of RAM's ablation: layer conductance along the straight path.

Path points x_t = (t/T) * x for t = 0..T (T + 1 points) from the zero image in the model's input space (the
mask token) to the image itself. For each unit l with output y_l we compute the layer conductance of
Dhamdhere et al. ("How important is a neuron?", 2018) in its finite-difference form,

    C_l = sum_{t=1}^{T} dF/dy_l(x_t) * (y_l(x_t) - y_l(x_{t-1})),

with the same target F (output edge energy) as MAC, and score a unit by mean |C_l| per image, summed over
images. It is MAC with the mask path replaced by a straight line; sum(C_l) over a layer that cuts the
network tends to F(x) - F(0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from anyrestore.attribution.conductance import Attribution, conductance, conductance_reference
from anyrestore.attribution.units import AttributionError


def _linear_path(steps: int):
    if steps < 1:
        raise AttributionError(f"integrated gradients needs at least 1 step, got {steps}")

    def path(i: int, t: torch.Tensor) -> torch.Tensor:
        return (t.double() / steps).view(-1, 1, 1, 1)

    return path


def integrated_gradients(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    steps: int = 200,
    batch_size: int = 16,
    progress: bool = False,
) -> Attribution:
    """Straight-path layer conductance of every unit of ``model`` for [0, 1] images (deterministic)."""
    return conductance(
        model, images, _linear_path(steps), steps + 1, batch_size=batch_size, method="ig", progress=progress
    )


def integrated_gradients_reference(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    steps: int = 200,
    progress: bool = False,
) -> Attribution:
    """:func:`integrated_gradients` one path point per forward/backward pass (slow, plain)."""
    return conductance_reference(
        model, images, _linear_path(steps), steps + 1, method="ig", progress=progress
    )
