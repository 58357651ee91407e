"""Pixel losses of the restoration papers, and a weighted sum of them as recipes describe it.

Every loss takes ``(pred, target, mask=None, **options)`` on (N, C, H, W) tensors, computes in float32
(safe under autocast) and returns a scalar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from anyrestore.errors import AnyRestoreError

LossFn = Callable[..., torch.Tensor]


class LossError(AnyRestoreError):
    """A loss was asked for something it cannot compute (e.g. a masked loss without a mask)."""


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over every pixel and channel."""
    return (pred.float() - target.float()).abs().mean()


def charbonnier_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-3
) -> torch.Tensor:
    """mean(sqrt(d^2 + eps^2)): L1 made smooth at 0 (MPRNet / Restormer use eps = 1e-3)."""
    d = pred.float() - target.float()
    return torch.sqrt(d * d + eps * eps).mean()


def psnr_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Minus the PSNR (images in [0, 1]), batch mean: 10 log10(MSE + ``eps`` per image), as NAFNet trains.

    Each image's gradient is weighted by 1 / (MSE + ``eps``): with NAFNet's 1e-8, an image restored to 50
    dB (e.g. a clean input left alone) pulls 50 times harder than one at 33 dB. A mixture with clean
    inputs wants ``eps`` near the errors that matter (1e-3: MSE-like below about 30 dB, log-like above).
    """
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return (10.0 / math.log(10.0)) * torch.log(mse + eps).mean()


def masked_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """L1 over the masked pixels only: sum |d| * mask / (masked pixels x channels) (RAM's pre-training).

    ``mask`` is (N, 1, H, W) (shared by the channels) or (N, C, H, W), 1 where a pixel counts.
    """
    if mask is None:
        raise LossError("masked_l1 needs a mask from the training method (batch['mask'])")
    weights = mask.float().expand_as(pred)
    total = weights.sum()
    return ((pred.float() - target.float()).abs() * weights).sum() / total.clamp_min(1.0)


LOSSES: dict[str, LossFn] = {
    "l1": l1_loss,
    "charbonnier": charbonnier_loss,
    "psnr": psnr_loss,
    "masked_l1": masked_l1_loss,
}


@dataclass(frozen=True)
class WeightedLoss:
    """Sum of ``weight * loss`` terms; also returns each term (unweighted) for logging."""

    terms: tuple[tuple[str, float, LossFn, dict[str, float]], ...]

    @classmethod
    def from_terms(cls, terms: Sequence) -> WeightedLoss:
        """From recipe :class:`~anyrestore.train.recipe.LossTerm` entries (name, weight, eps)."""
        built = []
        for term in terms:
            if term.name not in LOSSES:
                raise LossError(f"unknown loss '{term.name}'; known: {', '.join(LOSSES)}")
            options = {"eps": term.eps} if getattr(term, "eps", None) is not None else {}
            built.append((term.name, float(term.weight), LOSSES[term.name], options))
        return cls(tuple(built))

    def __call__(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total = pred.new_zeros((), dtype=torch.float32)
        parts = {}
        for name, weight, fn, options in self.terms:
            value = fn(pred, target, mask, **options)
            parts[name] = value.detach()
            total = total + weight * value
        return total, parts
