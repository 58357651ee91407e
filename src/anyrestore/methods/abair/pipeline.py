"""ABAIR end to end: the three phases as ordinary engine runs, assembled into one bundle file.

``build(recipe, out)`` runs, in ``out/``:

- ``pretrain/``: Phase I, the recipe itself (``method.name: abair_pretrain``); then ``bundle.safetensors``
  is written with the backbone and the segmentation head;
- ``adapters/<name>/``: Phase II, one run per degradation, derived from the recipe (the adapters
  section's schedule, batch and learning rate; its ``data`` for that degradation, else Phase I's clean
  photos; no EMA, no validation; seed derived from the recipe's seed and the name); each adapter is added
  to the bundle when its run ends, after checking that the run left the backbone bitwise unchanged;
- ``estimator/``: Phase III, derived the same way; its estimator completes the bundle.

Every run is resumable and a finished one is not run again, so calling ``build`` again after an
interruption continues where it stopped. ``add_degradation`` trains one more adapter on a bundle's
backbone and retrains the estimator, copying every other tensor of the bundle unchanged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from anyrestore.data.seeding import derive_seed
from anyrestore.methods.abair.bank import is_lora_key, plain_state_dict
from anyrestore.methods.abair.bundle import (
    Bundle,
    new_bundle,
    read_bundle,
    with_adapter,
    with_estimator,
    write_bundle,
)
from anyrestore.methods.abair.errors import ABAIRError
from anyrestore.methods.abair.heads import DegradationEstimator, SegHead, feature_module
from anyrestore.methods.abair.options import ABAIROptions, PhaseRun, parse_options
from anyrestore.methods.abair.synthesis import CLEAN, check_name, parse_degradations
from anyrestore.models.checkpoint import CheckpointError, load_strict, read_checkpoint
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.train import (
    CHECKPOINT_DIR,
    FINAL_WEIGHTS,
    RECIPE_FILE,
    Recipe,
    Trainer,
    apply_overrides,
    list_checkpoints,
    recipe_from_dict,
)
from anyrestore.train.recipe import recipe_differences
from anyrestore.train.trainer import RESUME_MAY_CHANGE

PRETRAIN_DIR = "pretrain"
ADAPTERS_DIR = "adapters"
ESTIMATOR_DIR = "estimator"
BUNDLE_FILE = "bundle.safetensors"


# ------------------------------------------------------------------------------------------ recipes


def _changed(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [
        k
        for k in recipe_differences(a, b)
        if not any(k == p or (p.endswith(".") and k.startswith(p)) for p in RESUME_MAY_CHANGE)
    ]


def _spec_task(spec: dict[str, Any]) -> str | None:
    if spec.get("task"):
        return spec["task"]
    return CLEAN if spec.get("type") == "synthetic" and not spec.get("degrade") else None


def clean_sets(recipe: Recipe, options: ABAIROptions) -> list[dict[str, Any]]:
    """Phase I's training sets whose samples are synthesised (clean photos), as recipe data."""
    sets = recipe.to_dict()["data"]["train"]["sets"]
    return [s for s in sets if _spec_task(s) in options.synthesis.tasks]


def derived_recipe(
    recipe: Recipe,
    *,
    phase: str,
    key: str,
    method: str,
    run: PhaseRun,
    sets: list[dict[str, Any]],
    options: dict[str, Any],
) -> Recipe:
    """A Phase II / III run derived from the Phase I recipe (see the module docstring)."""
    if not sets:
        raise ABAIRError(
            f"ABAIR {phase}: no training data; give method.options.{key.split(':')[0]}.data or synthesis "
            "sets of clean photos in data.train.sets"
        )
    d = copy.deepcopy(recipe.to_dict())
    d["name"] = f"{recipe.name}-{phase}"
    d["seed"] = derive_seed(recipe.seed, "abair", key) % 2**31
    train = d["data"]["train"]
    train.update(sets=sets, batch_size=run.batch_size or train["batch_size"], mix="round_robin", weights=None)
    d["data"]["val"] = None
    d["schedule"] = {
        "iterations": run.iterations,
        "warmup": run.warmup,
        "kind": "cosine",
        "min_lr": run.min_lr,
    }
    d["optim"]["lr"] = run.lr
    d["ema"] = None
    d["model"]["pretrained"] = None
    d["checkpoint"]["every"] = min(d["checkpoint"]["every"], run.iterations)
    d["method"] = {"name": method, "options": {**recipe.method.options, **options}}
    return recipe_from_dict(d, f"ABAIR {phase} recipe derived from '{recipe.name}'")


def adapter_recipe(recipe: Recipe, options: ABAIROptions, name: str, bundle: Path) -> Recipe:
    """Phase II's run for degradation ``name`` on the backbone of ``bundle``."""
    given = options.adapters.data.get(name)
    return derived_recipe(
        recipe,
        phase=f"adapter-{name}",
        key=f"adapters:{name}",
        method="abair_adapter",
        run=options.adapters,
        sets=list(given) if given is not None else clean_sets(recipe, options),
        options={"bundle": str(bundle), "adapter": name},
    )


def estimator_recipe(recipe: Recipe, options: ABAIROptions) -> Recipe:
    """Phase III's run."""
    if options.estimator.data is not None:
        sets = recipe.to_dict()["method"]["options"]["estimator"]["data"]
    else:
        sets = clean_sets(recipe, options) + [s for v in options.adapters.data.values() for s in v]
    return derived_recipe(
        recipe,
        phase="estimator",
        key="estimator",
        method="abair_estimator",
        run=options.estimator,
        sets=sets,
        options={},
    )


# ------------------------------------------------------------------------------------------- runs


def run_phase(recipe: Recipe, folder: Path, *, progress: bool = True) -> Path:
    """Train ``recipe`` into ``folder`` (resuming, or skipping a finished run); returns its weights."""
    final = folder / FINAL_WEIGHTS
    if final.exists():
        saved = folder / RECIPE_FILE
        if saved.exists():
            before = recipe_from_dict(yaml.safe_load(saved.read_text()), str(saved)).to_dict()
            changed = _changed(before, recipe.to_dict())
            if changed:
                raise ABAIRError(
                    f"{folder}: holds a finished run of another recipe ({', '.join(changed[:4])}); "
                    "choose another --out"
                )
        return final
    resume = bool(list_checkpoints(folder / CHECKPOINT_DIR))
    Trainer(recipe, folder, resume=resume, progress=progress).run()
    return final


def final_state(path: Path) -> dict[str, torch.Tensor]:
    """The weights a run ended with (EMA when the run kept one)."""
    contents, _ = read_checkpoint(path)
    return dict(contents.get("params_ema") or contents["params"])


def pretrain_bundle(weights: Path, recipe: Recipe, options: ABAIROptions) -> Bundle:
    """The bundle of a finished Phase I run: its backbone and segmentation head, no adapters."""
    state = final_state(weights)
    m = recipe.model
    descriptor = ModelDescriptor.for_architecture(m.architecture, m.config)
    backbone = descriptor.build()
    classes = [CLEAN, *options.names]
    head = SegHead(feature_module(backbone).in_channels, len(classes), options.seg_hidden)
    try:
        load_strict(backbone, {k[9:]: v for k, v in state.items() if k.startswith("backbone.")}, str(weights))
        load_strict(head, {k[9:]: v for k, v in state.items() if k.startswith("seg_head.")}, str(weights))
    except CheckpointError as exc:
        raise ABAIRError(f"{exc} (not an abair_pretrain run?)") from None
    return new_bundle(
        backbone,
        descriptor,
        lora=options.lora(),
        seg_head=head,
        seg_classes=classes,
        recipe=recipe.to_dict(),
        blend=options.blend,
    )


def adapter_from_run(weights: Path, bundle: Bundle) -> dict[str, torch.Tensor]:
    """The LoRA tensors of a finished Phase II run, after checking its backbone is the bundle's, bitwise."""
    state = final_state(weights)
    backbone = plain_state_dict(state)
    same = backbone.keys() == bundle.backbone.keys() and all(
        torch.equal(v, bundle.backbone[k]) for k, v in backbone.items()
    )
    if not same:
        raise ABAIRError(f"{weights}: the adapter run's backbone differs from the bundle's")
    return {k: v for k, v in state.items() if is_lora_key(k)}


def estimator_from_run(weights: Path, options: ABAIROptions) -> DegradationEstimator:
    """The estimator of a finished Phase III run."""
    e = options.estimator
    estimator = DegradationEstimator(1 + len(options.names), e.widths, e.hidden, e.crop, e.max_pixels)
    try:
        load_strict(estimator, final_state(weights), str(weights))
    except CheckpointError as exc:
        raise ABAIRError(f"{exc} (not an abair_estimator run?)") from None
    return estimator


def _specs(options: ABAIROptions, name: str) -> list[str]:
    return next(d.specs for d in options.parsed_degradations() if d.name == name)


# ---------------------------------------------------------------------------------------- commands


def build(recipe: Recipe, out_dir: str | os.PathLike[str], *, progress: bool = True) -> Path:
    """Run (or continue) all three phases of an ``abair_pretrain`` recipe; returns the bundle's path."""
    if recipe.method.name != "abair_pretrain":
        raise ABAIRError(f"{recipe.name}: abair build takes a Phase I recipe (method.name: abair_pretrain)")
    options = parse_options(recipe.method.options)
    if options.bundle is not None or options.adapter is not None:
        raise ABAIRError("method.options.bundle and .adapter are set by abair build; leave them out")
    out = Path(out_dir)
    path = out / BUNDLE_FILE

    weights = run_phase(recipe, out / PRETRAIN_DIR, progress=progress)
    if path.exists():
        bundle = read_bundle(path)
        changed = _changed(bundle.meta.get("recipe") or {}, recipe.to_dict())
        if changed:
            raise ABAIRError(
                f"{path}: was built from another recipe ({', '.join(changed[:4])}); choose another --out"
            )
    else:
        bundle = pretrain_bundle(weights, recipe, options)
        write_bundle(path, bundle)

    for name in options.names:
        if name in bundle.adapter_names:
            continue
        weights = run_phase(
            adapter_recipe(recipe, options, name, path), out / ADAPTERS_DIR / name, progress=progress
        )
        bundle = with_adapter(bundle, name, adapter_from_run(weights, bundle), _specs(options, name))
        write_bundle(path, bundle)

    if (bundle.meta.get("estimator") or {}).get("classes") != [CLEAN, *bundle.adapter_names]:
        weights = run_phase(estimator_recipe(recipe, options), out / ESTIMATOR_DIR, progress=progress)
        bundle = with_estimator(bundle, estimator_from_run(weights, options))
        write_bundle(path, bundle)
    return path


def add_degradation(
    bundle_path: str | os.PathLike[str],
    name: str,
    specs: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    output: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Train an adapter for a new degradation on a bundle's frozen backbone and retrain the estimator.

    ``specs`` are the degradation's operator specs (ranges allowed); ``overrides`` apply to the recipe
    the bundle records (``data_root=...``, ``method.options.adapters.data.<name>=[...]`` for real data).
    The new bundle (default ``out_dir/bundle.safetensors``) holds the source's backbone, adapters and
    segmentation head tensors exactly as read, plus the new adapter and the new estimator.
    """
    source_path = Path(bundle_path)
    source = read_bundle(source_path)
    check_name(name, "add-degradation")
    parse_degradations({name: list(specs)}, f"degradation '{name}'")
    if name in source.adapter_names:
        raise ABAIRError(f"{source_path}: already has an adapter '{name}'")
    data = copy.deepcopy(source.meta.get("recipe"))
    if not data:
        raise ABAIRError(f"{source_path}: the bundle records no recipe to train a new adapter with")
    degradations = dict(parse_options(data["method"]["options"]).degradations)
    degradations[name] = list(specs)
    data["method"]["options"]["degradations"] = degradations
    recipe = recipe_from_dict(apply_overrides(data, overrides), f"{source_path} recipe (with overrides)")
    options = parse_options(recipe.method.options)
    if options.names != [*source.adapter_names, name]:
        raise ABAIRError(
            f"method.options.degradations must be the bundle's ({', '.join(source.adapter_names)}) "
            f"then '{name}'"
        )
    out = Path(out_dir)
    target = Path(output) if output is not None else out / BUNDLE_FILE
    if target.resolve() == source_path.resolve():
        raise ABAIRError(f"{target}: write the new bundle beside the old one, not over it")

    weights = run_phase(
        adapter_recipe(recipe, options, name, source_path), out / ADAPTERS_DIR / name, progress=progress
    )
    bundle = with_adapter(source, name, adapter_from_run(weights, source), _specs(options, name))
    bundle.meta = {**bundle.meta, "recipe": recipe.to_dict()}
    weights = run_phase(estimator_recipe(recipe, options), out / ESTIMATOR_DIR, progress=progress)
    bundle = with_estimator(bundle, estimator_from_run(weights, options))
    return write_bundle(target, bundle)
