"""Attribution units: the modules that directly own parameters, named as in the bare model.

A unit is named by a parameter's name minus its last component, taken in ``named_parameters()`` order with
consecutive duplicates dropped and the root module (parameters such as RAM SwinIR's ``mask_token``)
left out. Names are always those of :func:`~anyrestore.models.normalize.bare_model`, so a ranking made on
a DDP-, ``torch.compile``- or normalisation-wrapped model applies to the plain one and vice versa (RAM's
release hard-coded a ``module.`` prefix, which silently froze every layer outside DDP).
"""

from __future__ import annotations

import torch
from torch import nn

from anyrestore.errors import AnyRestoreError
from anyrestore.models.normalize import ImageNetNormalized, bare_model


class AttributionError(AnyRestoreError):
    """Bad input to an attribution, ranking or freeze-plan routine; one line naming the problem."""


def owner_name(parameter_name: str) -> str:
    """Name of the module that directly owns ``parameter_name`` ('' for the root module)."""
    return parameter_name.rpartition(".")[0]


def attribution_units(model: nn.Module) -> list[str]:
    """Unit names of ``model`` (wrappers stripped), in ``named_parameters()`` order."""
    units: list[str] = []
    for name, _ in bare_model(model).named_parameters():
        owner = owner_name(name)
        if owner and (not units or units[-1] != owner):
            units.append(owner)
    return units


def unit_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``{unit name: module}`` of the bare model, in unit order."""
    bare = bare_model(model)
    return {name: bare.get_submodule(name) for name in attribution_units(bare)}


def unit_range_wrapper(model: nn.Module) -> ImageNetNormalized | None:
    """The normalisation wrapper somewhere in ``model``'s wrapper chain, or None if it takes [0, 1] input."""
    seen = 0
    while seen < 16:  # DDP(compile(ImageNetNormalized(...))) and the like: a short chain
        if isinstance(model, ImageNetNormalized):
            return model
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return None
        model, seen = inner, seen + 1
    return None


def to_model_space(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A [0, 1] image in the input space of ``bare_model(model)`` (ImageNet-normalised for RAM's models)."""
    wrapper = unit_range_wrapper(model)
    return x if wrapper is None else wrapper.normalize(x)
