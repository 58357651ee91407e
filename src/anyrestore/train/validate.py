"""Validation during training: PSNR/SSIM with a metric preset, per task and averaged over tasks.

Whole images are reflect-padded to the model's size multiple and the output cropped back. Images are
shared out over the processes and the sums gathered, so every process returns the same numbers; the
reported mean is the mean of the per-task means (as the papers' "average" columns).
:func:`validate_recipe` scores any weights on a recipe's validation sets exactly as its run did, after the
fact (a run's raw weights against its EMA, weights edited without training).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm import tqdm

from anyrestore.data.base import RestorationDataset
from anyrestore.evaluate import psnr, ssim
from anyrestore.models.padding import pad_to_multiple
from anyrestore.models.side import side_inputs
from anyrestore.train.distributed import DistContext

if TYPE_CHECKING:
    from anyrestore.models.descriptor import ModelDescriptor
    from anyrestore.train.recipe import Recipe


@torch.no_grad()
def restore_whole(model: nn.Module, lq: torch.Tensor, *, multiple: int = 1, scale: int = 1) -> torch.Tensor:
    """``model`` on a whole (N, 3, H, W) batch, padded to ``multiple`` and cropped back, clamped to [0, 1]."""
    h, w = lq.shape[-2:]
    out = model(pad_to_multiple(lq, multiple)[0], **side_inputs(model, lq))
    return out[..., : h * scale, : w * scale].float().clamp(0, 1)


@torch.no_grad()
def validate(
    model: nn.Module,
    datasets: Sequence[RestorationDataset],
    *,
    ctx: DistContext,
    preset: str = "basicsr",
    crop_border: int = 0,
    with_ssim: bool = True,
    multiple: int = 1,
    scale: int = 1,
    progress: bool = False,
) -> dict[str, float]:
    """``{"psnr": mean over tasks, "psnr/<task>": ..., "ssim": ..., "ssim/<task>": ...}``."""
    was_training = model.training
    model.eval()
    sums: dict[str, list[float]] = {}
    jobs = [(d, i) for d in datasets for i in range(len(d))][ctx.rank :: ctx.world_size]
    for dataset, index in tqdm(jobs, desc="validate", unit="img", leave=False, disable=not progress):
        sample = dataset[index]
        lq = sample["lq"][None].to(ctx.device)
        gt = sample["gt"][None].to(ctx.device)
        pred = restore_whole(model, lq, multiple=multiple, scale=scale)
        entry = sums.setdefault(sample["task"], [0.0, 0.0, 0.0])
        entry[0] += float(psnr(pred, gt, preset, crop_border)[0])
        if with_ssim:
            entry[1] += float(ssim(pred, gt, preset, crop_border)[0])
        entry[2] += 1
    model.train(was_training)

    merged: dict[str, list[float]] = {}
    for part in ctx.gather(sums):
        for task, (p, s, n) in part.items():
            total = merged.setdefault(task, [0.0, 0.0, 0.0])
            total[0], total[1], total[2] = total[0] + p, total[1] + s, total[2] + n
    results: dict[str, float] = {}
    for task, (p, s, n) in merged.items():
        results[f"psnr/{task}"] = p / n
        if with_ssim:
            results[f"ssim/{task}"] = s / n
    if merged:
        results["psnr"] = sum(p / n for p, _, n in merged.values()) / len(merged)
        if with_ssim:
            results["ssim"] = sum(s / n for _, s, n in merged.values()) / len(merged)
    return dict(sorted(results.items(), key=lambda kv: ("/" in kv[0], kv[0])))


def recipe_val_sets(recipe: Recipe) -> list[RestorationDataset]:
    """``recipe``'s validation sets, built as its training run builds them (same root, seed, degradations)."""
    from anyrestore.data.spec import build_dataset

    if recipe.data.val is None:
        return []
    return [
        build_dataset(
            spec, data_root=recipe.data_root, train=False, seed=recipe.seed, where=f"data.val.sets.{i}"
        )
        for i, spec in enumerate(recipe.data.val.sets)
    ]


def validate_recipe(
    model: nn.Module,
    descriptor: ModelDescriptor,
    recipe: Recipe,
    *,
    device: str | torch.device = "cpu",
    ctx: DistContext | None = None,
    sets: Sequence[RestorationDataset] | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """``model`` scored on ``recipe``'s validation sets as its training run scores them: the same sets and
    seed (so the same degraded inputs), preset, border and size multiple. The trainer validates through
    this too, passing its process context and the sets it built once (``sets``); after the fact,
    ``device`` alone will do."""
    from anyrestore.models.normalize import as_unit_range

    v = recipe.data.val
    if v is None:
        raise ValueError(f"recipe {recipe.name!r} has no validation sets")
    ctx = ctx if ctx is not None else DistContext(device=torch.device(device))
    return validate(
        as_unit_range(model.to(ctx.device), descriptor),
        recipe_val_sets(recipe) if sets is None else sets,
        ctx=ctx,
        preset=v.preset,
        crop_border=v.crop_border,
        with_ssim=v.ssim,
        multiple=descriptor.size_multiple,
        scale=descriptor.scale,
        progress=progress,
    )
