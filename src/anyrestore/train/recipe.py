"""Recipes: YAML files that describe a whole training run, validated before anything starts.

A recipe names the model, the data, the optimiser, the schedule, the losses, EMA, precision, validation,
checkpoints, logging and the method (the training objective; ``restore`` is plain supervised training).
Every key is checked (see :mod:`anyrestore.train.schema`); ``key.sub=value`` overrides (values parsed as
YAML, list items by index: ``data.train.sets.0.patch_size=64``) are applied before checking. Packaged
recipes live in ``anyrestore/recipes/`` and are found by name (``anyrestore recipes`` lists them).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from anyrestore.data.spec import DatasetSpec
from anyrestore.errors import AnyRestoreError
from anyrestore.train.schema import SchemaError, from_dict, to_dict


class RecipeError(AnyRestoreError):
    """A recipe cannot be found, parsed or validated; the message names the file and the key."""


# ----------------------------------------------------------------------------------------------- schema


@dataclass
class ModelSection:
    """``architecture`` (a registered name) built with ``config``; ``pretrained`` weights to start from."""

    architecture: str
    config: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    pretrained_ema: bool = True


@dataclass
class TrainDataSection:
    """``batch_size`` is the global batch (all processes and accumulation steps together)."""

    sets: list[DatasetSpec]
    batch_size: int
    mix: Literal["round_robin", "weighted"] = "round_robin"
    weights: list[float] | None = None
    accumulate: int = 1
    num_workers: int = 0
    pin_memory: bool = True


@dataclass
class ValSection:
    """Validation every ``every`` iterations (and at the end) with a metric preset; per-task numbers."""

    sets: list[DatasetSpec]
    every: int = 5000
    at_start: bool = False
    preset: Literal["basicsr", "rgb"] = "basicsr"
    crop_border: int = 0
    ssim: bool = True


@dataclass
class DataSection:
    train: TrainDataSection
    val: ValSection | None = None


@dataclass
class OptimSection:
    """Only parameters with ``requires_grad`` are optimised (methods freeze the rest)."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.9
    clip_grad_norm: float | None = None


@dataclass
class ScheduleSection:
    """Learning rate by iteration (see :mod:`anyrestore.train.schedule`): a curve over the whole run whose
    first ``warmup`` iterations are replaced by a linear ramp, as BasicSR does.

    ``cosine``: from ``lr`` to ``min_lr``. ``cosine_restarts``: cosine cycles of ``periods`` iterations
    (summing to ``iterations``), cycle ``k`` peaking at ``lr * restart_weights[k]``. ``multistep``:
    times ``gamma`` at each of ``milestones``.
    """

    iterations: int
    warmup: int = 0
    kind: Literal["constant", "cosine", "cosine_restarts", "multistep"] = "cosine"
    min_lr: float = 0.0
    periods: list[int] | None = None
    restart_weights: list[float] | None = None
    milestones: list[int] | None = None
    gamma: float = 0.5


@dataclass
class LossTerm:
    """One weighted loss term (see :data:`anyrestore.train.losses.LOSSES`); ``eps`` for Charbonnier, PSNR."""

    name: str
    weight: float = 1.0
    eps: float | None = None


@dataclass
class EmaSection:
    """Exponential moving average of the weights, updated after every step from iteration ``start``;
    ``warmup`` ramps the decay up from 0.1 (:class:`anyrestore.train.ema.ModelEMA`), for short runs."""

    decay: float = 0.999
    start: int = 0
    warmup: bool = False


@dataclass
class CheckpointSection:
    """Weights and training state every ``every`` iterations; the newest ``keep`` are kept."""

    every: int = 5000
    keep: int = 2


@dataclass
class LogSection:
    every: int = 100
    tensorboard: bool = True


@dataclass
class MethodSection:
    """The training objective by name (``restore``, or one a method registers) and its options."""

    name: str = "restore"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DistributedSection:
    """DDP settings; ``backend: auto`` is NCCL on GPUs and gloo on CPUs."""

    backend: Literal["auto", "nccl", "gloo"] = "auto"
    find_unused_parameters: bool = False
    static_graph: bool = False


@dataclass
class Recipe:
    name: str
    model: ModelSection
    data: DataSection
    schedule: ScheduleSection
    description: str = ""
    seed: int = 0
    data_root: str = "."
    optim: OptimSection = field(default_factory=OptimSection)
    loss: list[LossTerm] = field(default_factory=lambda: [LossTerm("l1")])
    ema: EmaSection | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # Keep the model and each batch in channels-last memory order (faster convolutions on GPUs; the
    # numbers are those of the default order up to floating-point summation order).
    channels_last: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    log: LogSection = field(default_factory=LogSection)
    method: MethodSection = field(default_factory=MethodSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ------------------------------------------------------------------------------------------ semantics


def _check(recipe: Recipe) -> None:
    """Cross-field checks the types cannot express; raises SchemaError naming the key."""
    from anyrestore.train.losses import LOSSES

    def need(ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise SchemaError(f"{key}: {problem}")

    s = recipe.schedule
    need(s.iterations >= 1, "schedule.iterations", "must be >= 1")
    need(0 <= s.warmup < s.iterations, "schedule.warmup", "must lie in 0..iterations-1")
    need(s.min_lr >= 0, "schedule.min_lr", "must be >= 0")
    if s.kind == "cosine_restarts":
        need(bool(s.periods), "schedule.periods", "cosine_restarts needs periods")
        need(all(p > 0 for p in s.periods), "schedule.periods", "every period must be > 0")
        need(
            sum(s.periods) == s.iterations,
            "schedule.periods",
            f"must sum to iterations ({s.iterations}), not {sum(s.periods)}",
        )
        weights = s.restart_weights or [1.0] * len(s.periods)
        need(len(weights) == len(s.periods), "schedule.restart_weights", "needs one weight per period")
    else:
        need(s.periods is None, "schedule.periods", "applies to kind cosine_restarts only")
        need(s.restart_weights is None, "schedule.restart_weights", "applies to kind cosine_restarts only")
    if s.kind == "multistep":
        need(bool(s.milestones), "schedule.milestones", "multistep needs milestones")
        need(s.milestones == sorted(set(s.milestones)), "schedule.milestones", "must be increasing")
    else:
        need(s.milestones is None, "schedule.milestones", "applies to kind multistep only")

    o = recipe.optim
    need(o.lr > 0, "optim.lr", "must be > 0")
    need(o.clip_grad_norm is None or o.clip_grad_norm > 0, "optim.clip_grad_norm", "must be > 0")
    need(all(0 <= b < 1 for b in o.betas), "optim.betas", "must lie in [0, 1)")

    t = recipe.data.train
    need(bool(t.sets), "data.train.sets", "needs at least one dataset")
    need(t.batch_size >= 1, "data.train.batch_size", "must be >= 1")
    need(t.accumulate >= 1, "data.train.accumulate", "must be >= 1")
    need(t.num_workers >= 0, "data.train.num_workers", "must be >= 0")
    if t.weights is not None:
        need(t.mix == "weighted", "data.train.weights", "apply to mix: weighted only")
        need(len(t.weights) == len(t.sets), "data.train.weights", f"needs {len(t.sets)} weights")
    if recipe.data.val is not None:
        v = recipe.data.val
        need(bool(v.sets), "data.val.sets", "needs at least one dataset")
        need(v.every >= 1, "data.val.every", "must be >= 1")
        need(v.crop_border >= 0, "data.val.crop_border", "must be >= 0")

    need(bool(recipe.loss), "loss", "needs at least one term")
    for i, term in enumerate(recipe.loss):
        need(term.name in LOSSES, f"loss.{i}.name", f"unknown loss {term.name!r}; known: {', '.join(LOSSES)}")
        need(
            term.eps is None or term.name in ("charbonnier", "psnr"),
            f"loss.{i}.eps",
            "applies to charbonnier and psnr only",
        )
    if recipe.ema is not None:
        need(0 <= recipe.ema.decay < 1, "ema.decay", "must lie in [0, 1)")
        need(recipe.ema.start >= 0, "ema.start", "must be >= 0")
    need(recipe.checkpoint.every >= 1, "checkpoint.every", "must be >= 1")
    need(recipe.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
    need(recipe.log.every >= 1, "log.every", "must be >= 1")


# ------------------------------------------------------------------------------------------- overrides


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``dotted.key=value`` set (missing mappings are created)."""
    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RecipeError(f"override '{item}': expected key=value, e.g. schedule.iterations=1000")
        parts = key.split(".")
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                node = node[_list_index(node, part, where, item)]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise RecipeError(f"override '{item}': '{where}' is a value, not a section")
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, key, item)] = _parse_value(text)
        elif isinstance(node, dict):
            node[last] = _parse_value(text)
        else:
            raise RecipeError(f"override '{item}': '{'.'.join(parts[:-1])}' is a value, not a section")
    return out


def _list_index(node: list, part: str, where: str, item: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise RecipeError(f"override '{item}': '{where}' needs a list index in 0..{len(node) - 1}")
    return int(part)


# ------------------------------------------------------------------------------------------- loading


def packaged_recipes() -> dict[str, Path]:
    """Recipes shipped with anyrestore, by name."""
    folder = resources.files("anyrestore") / "recipes"
    found = {}
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.endswith(".yaml"):
                found[entry.name.removesuffix(".yaml")] = Path(str(entry))
    return dict(sorted(found.items()))


def find_recipe(source: str | os.PathLike[str]) -> Path:
    """A recipe file: an existing path, else a packaged recipe of that name."""
    path = Path(source)
    if path.is_file():
        return path
    packaged = packaged_recipes()
    name = path.name.removesuffix(".yaml")
    if path.parent == Path(".") and name in packaged:
        return packaged[name]
    known = ", ".join(packaged) or "none"
    raise RecipeError(f"{source}: no such recipe file or packaged recipe (packaged: {known})")


def read_recipe_data(path: Path) -> dict[str, Any]:
    """The YAML mapping of a recipe file (syntax errors name the line)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}:{where}: invalid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of sections, not {type(data).__name__}")
    return data


def recipe_from_dict(data: Mapping[str, Any], where: str = "recipe") -> Recipe:
    """A validated :class:`Recipe` from plain data; problems raise :class:`RecipeError` naming ``where``."""
    try:
        recipe = from_dict(Recipe, data)
        _check(recipe)
    except SchemaError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    return recipe


def load_recipe(source: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Recipe:
    """Find, read, override and validate a recipe; ``name`` defaults to the file's name."""
    path = find_recipe(source)
    data = read_recipe_data(path)
    data.setdefault("name", path.name.removesuffix(".yaml"))
    data = apply_overrides(data, overrides)
    where = f"{path} (with overrides)" if overrides else str(path)
    return recipe_from_dict(data, where)


def recipe_differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two recipe dicts."""
    keys = list(dict.fromkeys([*a, *b]))
    out = []
    for k in keys:
        path = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += recipe_differences(va, vb, path + ".")
        elif va != vb:
            out.append(path)
    return out
