"""Let every restorer take and return [0, 1] RGB, whatever its checkpoint was trained on.

RAM's checkpoints take and return ImageNet mean/std-normalised images; the descriptor says so, and
:func:`as_unit_range` wraps such a module so callers (inference, training, attribution) never normalise
by hand. Unit names seen by hooks stay those of the bare model: the wrapper keeps it as ``.inner`` and
:func:`bare_model` unwraps it (and DDP / ``torch.compile`` wrappers) again.
"""

from __future__ import annotations

import torch
from torch import nn

from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.registry import IMAGENET_MEAN, IMAGENET_STD


class ImageNetNormalized(nn.Module):
    """Wraps a model that works on ImageNet-normalised images so that it maps [0, 1] to [0, 1]."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std.to(y.dtype) + self.mean.to(y.dtype)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.denormalize(self.inner(self.normalize(x), *args, **kwargs))


def as_unit_range(module: nn.Module, descriptor: ModelDescriptor) -> nn.Module:
    """``module`` itself when it already works on [0, 1] images, else wrapped to do so."""
    if descriptor.normalization == "none":
        return module
    if descriptor.normalization == "imagenet":
        return ImageNetNormalized(module)
    raise ValueError(f"unknown normalization {descriptor.normalization!r}")


def bare_model(module: nn.Module) -> nn.Module:
    """Strip DDP (``.module``), ``torch.compile`` (``._orig_mod``) and normalisation wrappers."""
    while True:
        if isinstance(module, ImageNetNormalized):
            module = module.inner
        elif isinstance(module, nn.parallel.DistributedDataParallel | nn.DataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module
