"""Explicit registry of restoration architectures.

Each model file registers its architecture(s) with :func:`register_architecture`. An
:class:`Architecture` knows how to build the network from keyword arguments, how to recognise a
state_dict of its own (returning the constructor keyword arguments, or ``None``), and the facts the
inference layer needs (scale, input normalisation, size multiple, precisions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Architecture:
    """How to build, recognise and run one family of restorers.

    ``infer_config(state_dict)`` returns the constructor kwargs that reproduce the state_dict's keys
    and shapes, or ``None`` when the keys are not this architecture's. ``scale(cfg)`` is the output /
    input size ratio for a config. ``normalization`` is ``"none"`` (the model takes [0, 1] RGB) or
    ``"imagenet"`` (the model takes and returns ImageNet mean/std-normalised RGB). ``size_multiple(cfg)``
    is the multiple H and W are reflect-padded to before the forward pass.
    """

    name: str
    build: Callable[..., nn.Module]
    infer_config: Callable[[StateDict], dict[str, Any] | None]
    scale: Callable[[dict[str, Any]], int] = lambda cfg: 1
    size_multiple: Callable[[dict[str, Any]], int] = lambda cfg: 1
    normalization: str = "none"
    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(arch: Architecture) -> Architecture:
    """Add ``arch`` to the registry; a second registration under the same name is an error."""
    if arch.name in ARCHITECTURES:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    if arch.normalization not in ("none", "imagenet"):
        raise ValueError(f"{arch.name}: unknown normalization {arch.normalization!r}")
    ARCHITECTURES[arch.name] = arch
    return arch


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES)) or "none registered"
        raise KeyError(f"unknown architecture {name!r} (known: {known})") from None


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture with its paper defaults overridden by ``kwargs``."""
    return get_architecture(name).build(**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
