"""RAM's two training stages as engine objectives: ``ram_pretrain`` and ``ram_finetune``.

- ``ram_pretrain`` (options ``ratio`` 0.5, ``patch`` 1): every micro-batch hides a fresh random share of
  pixels, drawn on the device from the run's checkpointed ``mask`` generator; hidden pixels become the
  model's mask token (0 in its input space: the ImageNet mean colour for ImageNet-normalised models, black
  otherwise); the recipe's loss gets the mask, so ``masked_l1`` scores the hidden pixels only. Works with
  any same-size backbone.
- ``ram_finetune``: trains only the top ``ratio`` of units of a ranking (``ranking``: a TSV file from
  ``anyrestore mac``, or ``method: mac | ig | random`` computed when the run starts), whole images, the
  recipe's loss (L1). The plan is printed and recorded in the saved descriptor (``extra.ram_finetune``).

Register them by importing this module (the ``anyrestore train`` command does).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from anyrestore.attribution import (
    FreezePlan,
    Ranking,
    attribution_units,
    freeze_plan,
    integrated_gradients,
    load_attribution_images,
    mac,
    random_ranking,
    read_ranking,
)
from anyrestore.devices import resolve_device
from anyrestore.errors import AnyRestoreError
from anyrestore.methods.ram.masks import mask_unit_range, random_pixel_mask
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.normalize import ImageNetNormalized
from anyrestore.models.registry import ARCHITECTURES
from anyrestore.models.side import side_inputs
from anyrestore.train.objective import Objective, ObjectiveError, StepContext, register_objective

PRETRAIN_DEFAULTS: dict[str, Any] = {"ratio": 0.5, "patch": 1}
FINETUNE_DEFAULTS: dict[str, Any] = {
    "ratio": 0.3,
    "ranking": None,
    "method": None,
    "data": None,
    "per_task": 10,
    "crop": 64,
    "steps": 200,
    "seed": 0,
    "batch": 16,
    "device": None,
}
RANKING_METHODS = ("mac", "ig", "random")


def _options(method: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    unknown = [k for k in given if k not in defaults]
    if unknown:
        raise ObjectiveError(
            f"method.options.{unknown[0]}: unknown option of {method}; valid: {', '.join(defaults)}"
        )
    return {**defaults, **given}


def _number(method: str, key: str, value: Any, lo: float, hi: float, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, str) and not integer:
        with contextlib.suppress(ValueError):
            value = float(value)  # YAML 1.1 reads 1e-1 as text
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        what = "an integer" if integer else "a number"
        raise ObjectiveError(
            f"method.options.{key}: {method} needs {what} in [{lo:g}, {hi:g}], got {value!r}"
        )
    return value


def _is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


# ---------------------------------------------------------------------------------------- pre-training


class RamPretrain(Objective):
    """Masked image modelling on (degraded, clean) pairs: predict the clean pixels the input hides."""

    def __init__(self, ratio: float = 0.5, patch: int = 1) -> None:
        self.ratio, self.patch = ratio, patch
        self._checked = False

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self._checked:
            if not any(term[0] == "masked_l1" for term in ctx.loss.terms):
                raise ObjectiveError(
                    "method ram_pretrain scores hidden pixels only: set loss: [{name: masked_l1}]"
                )
            self._checked = True
        lq, gt = batch["lq"], batch["gt"]
        if lq.shape[-2:] != gt.shape[-2:]:
            raise ObjectiveError(
                "method ram_pretrain needs inputs and targets of one size (no super-resolution)"
            )
        mask = random_pixel_mask(lq, self.ratio, self.patch, generator=ctx.generators("mask"), dtype=lq.dtype)
        pred = model(mask_unit_range(lq, mask, model), **side_inputs(model, lq))
        return ctx.loss(pred, gt, mask)

    def describe(self, descriptor: ModelDescriptor, model: nn.Module) -> ModelDescriptor:
        record = {"ratio": self.ratio, "patch": self.patch}
        return dataclasses.replace(descriptor, extra={**descriptor.extra, "ram_pretrain": record})


def _pretrain(options: Mapping[str, Any]) -> RamPretrain:
    o = _options("ram_pretrain", options, PRETRAIN_DEFAULTS)
    ratio = float(_number("ram_pretrain", "ratio", o["ratio"], 0.0, 1.0))
    patch = _number("ram_pretrain", "patch", o["patch"], 1, 1 << 20, integer=True)
    return RamPretrain(ratio, patch)


# ------------------------------------------------------------------------------------------ fine-tuning


def _normalization(model: nn.Module) -> str:
    """How the registered architecture of ``model`` expects its input (``none`` / ``imagenet``)."""
    for arch in ARCHITECTURES.values():
        if type(model) is arch.build:
            return arch.normalization
    raise ObjectiveError(f"ram_finetune: {type(model).__name__} is not a registered architecture")


def _bare_names(ranking: Ranking, units: Sequence[str]) -> Ranking:
    """RAM's released rankings name units as under DDP (``module.x``); map them to the bare model's names."""
    prefix = "module."
    known = set(units)
    if all(u.startswith(prefix) for u in ranking.units) and not all(u in known for u in ranking.units):
        names = tuple(u[len(prefix) :] for u in ranking.units)
        return dataclasses.replace(ranking, units=names)
    return ranking


class RamFinetune(Objective):
    """Selective fine-tuning: only parameters owned by the top ``ratio`` of ranked units train."""

    def __init__(self, ratio: float, ranking: str | None = None, method: str | None = None, **settings: Any):
        self.ratio, self.ranking_path, self.method, self.settings = ratio, ranking, method, settings
        self.plan: FreezePlan | None = None
        self.ranking_method = method

    def _compute(self, model: nn.Module) -> Ranking:
        s = self.settings
        if self.method == "random":
            return random_ranking(model, s["seed"])
        if not s["data"]:
            raise ObjectiveError(
                f"method.options.data: ranking by {self.method} at start-up needs data specs "
                "(as 'anyrestore mac --data' takes them), or give method.options.ranking"
            )
        if _world_size() > 1:
            raise ObjectiveError(
                f"ram_finetune: ranking by {self.method} inside a multi-process run is not supported; "
                "write a ranking with 'anyrestore mac ... -o FILE' and set method.options.ranking=FILE"
            )
        specs = [s["data"]] if isinstance(s["data"], str) else list(s["data"])
        samples = load_attribution_images(specs, per_task=s["per_task"], crop=s["crop"], seed=s["seed"])
        device = resolve_device(s["device"])
        home = next(model.parameters()).device
        wrapped = ImageNetNormalized(model) if _normalization(model) == "imagenet" else model
        wrapped.to(device).eval()
        images = [sample.image.to(device) for sample in samples]
        try:
            if self.method == "mac":
                result = mac(wrapped, images, steps=s["steps"], seed=s["seed"], batch_size=s["batch"])
            else:
                result = integrated_gradients(wrapped, images, steps=s["steps"], batch_size=s["batch"])
        finally:
            model.to(home).train()
        tasks = " ".join(sorted({sample.task for sample in samples}))
        return result.ranking({"seed": str(s["seed"]), "tasks": tasks})

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if self.ranking_path is not None:
            ranking = _bare_names(read_ranking(self.ranking_path), attribution_units(model))
            source = f"ranking {self.ranking_path} ({ranking.method})"
            self.ranking_method = ranking.method
        else:
            ranking = self._compute(model)
            source = f"{self.method} ranking computed at start-up"
        try:
            self.plan = freeze_plan(model, ranking, self.ratio)
        except AnyRestoreError as exc:
            raise ObjectiveError(f"ram_finetune: {source}: {exc}") from None
        summary = self.plan.apply(model)
        if _is_main():
            print(f"ram_finetune: {source}, top {self.ratio:.0%} of units: {summary}", flush=True)
        return model

    def describe(self, descriptor: ModelDescriptor, model: nn.Module) -> ModelDescriptor:
        if self.plan is None:
            return descriptor
        trainable = sum(p.numel() for p in self.plan.trainable_parameters(model))
        record = {
            "ratio": self.ratio,
            "units": len(self.plan.trainable),
            "of_units": len(self.plan.units),
            "parameters": trainable,
            "ranking": self.ranking_method,
            "ranking_file": None if self.ranking_path is None else Path(self.ranking_path).name,
        }
        return dataclasses.replace(descriptor, extra={**descriptor.extra, "ram_finetune": record})


def _finetune(options: Mapping[str, Any]) -> RamFinetune:
    o = _options("ram_finetune", options, FINETUNE_DEFAULTS)
    ratio = float(_number("ram_finetune", "ratio", o.pop("ratio"), 0.0, 1.0))
    ranking, method = o.pop("ranking"), o.pop("method")
    if (ranking is None) == (method is None):
        raise ObjectiveError(
            "method.options: ram_finetune needs exactly one of 'ranking' (a file from anyrestore mac) "
            f"or 'method' ({' | '.join(RANKING_METHODS)})"
        )
    if method is not None and method not in RANKING_METHODS:
        raise ObjectiveError(
            f"method.options.method: expected one of {', '.join(RANKING_METHODS)}, got {method!r}"
        )
    if ranking is not None and not isinstance(ranking, str):
        raise ObjectiveError(f"method.options.ranking: expected a file path, got {ranking!r}")
    for key, lo in (("per_task", 1), ("crop", 0), ("steps", 2), ("batch", 1), ("seed", 0)):
        o[key] = _number("ram_finetune", key, o[key], lo, 1 << 62, integer=True)
    return RamFinetune(ratio, ranking, method, **o)


register_objective("ram_pretrain", _pretrain)
register_objective("ram_finetune", _finetune)
