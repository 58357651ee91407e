"""ABAIR's training images, made on the fly from clean photos, with the targets of its two classifiers.

The paper gives no synthesis formulas or ranges; everything here is **ours**:

- A *degradation* is a named class (it gets one LoRA adapter) made by one or more *variants*, operator
  specs as ``anyrestore degrade --op`` takes them, where any numeric parameter may also be a range
  ``lo..hi`` sampled per image (uniform; integers for integer parameters): ``noise:sigma=5..50``,
  ``blur:sigma=1..3``. With several variants one is picked per image (``blur`` is Gaussian or motion).
- A sample is *clean* (untouched), *single* (one degradation on the whole image), *mixed* (2 to
  ``max_mixed`` degradations in sequence, in a physical order: scene, optics, exposure, sensor, coding)
  or *cutmix* (2 to ``cutmix_regions`` degradations, each inside its own random rectangle, by
  :func:`anyrestore.degrade.apply_regions`; the rest of the image stays clean).
- Per-pixel targets (segmentation head) come from the composer's label maps: a pixel marked by several
  degradations gets equal shares of each, an unmarked pixel is ``clean`` (local operators such as rain
  mark only the pixels they changed). The per-image target (estimator) is uniform over the
  degradations that changed at least one pixel, ``clean`` when none did.
- Samples from real (paired) datasets keep their input; their targets come from their task name
  (``rain``, ``blur+noise``; ``aliases`` renames tasks such as ``motion_blur`` to a class).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from anyrestore.degrade import apply_regions, apply_sequence, get_operator, parse_op_spec
from anyrestore.degrade.registry import Dist, randint, uniform
from anyrestore.methods.abair.errors import ABAIRError

CLEAN = "clean"
RANGE = ".."
MODES = ("clean", "single", "mixed", "cutmix")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# The five degradations of the paper's main setup, with our ranges (see docs/abair.md).
DEFAULT_DEGRADATIONS: dict[str, tuple[str, ...]] = {
    "rain": ("rain:random",),
    "haze": ("haze:random",),
    "noise": ("noise:sigma=5..50",),
    "blur": ("blur:sigma=1..3", "motion_blur:random"),
    "low_light": ("low_light:random",),
}

# Order in which mixed degradations are applied: scene, optics, exposure, sensor, coding.
PHYSICAL_ORDER: dict[str, int] = {
    "haze": 0,
    "rain": 1,
    "snow": 1,
    "blur": 2,
    "motion_blur": 2,
    "downsample": 2,
    "low_light": 3,
    "noise": 4,
    "poisson": 4,
    "speckle": 4,
    "salt_pepper": 4,
    "quantize": 5,
    "jpeg": 6,
}
_UNKNOWN_ORDER = 4.5

Step = tuple[str, dict[str, Any]]


# ------------------------------------------------------------------------------------- degradations


@dataclass(frozen=True)
class Variant:
    """One operator with fixed parameters (possibly a preset) and our per-image ranges."""

    spec: str
    op: str
    params: dict[str, Any]
    ranges: dict[str, Dist]

    def draw(self, generator: torch.Generator | None) -> Step:
        """Concrete parameters for one image."""
        operator = get_operator(self.op)
        params = operator.resolve(self.params, generator)
        for key, dist in self.ranges.items():
            params[key] = operator.params[key].coerce(self.op, key, dist.sample(generator))
        return self.op, params


@dataclass(frozen=True)
class Degradation:
    """A named degradation class: one or more variants, one picked uniformly per image."""

    name: str
    variants: tuple[Variant, ...]

    @property
    def specs(self) -> list[str]:
        return [v.spec for v in self.variants]

    @property
    def order(self) -> float:
        return min(PHYSICAL_ORDER.get(v.op, _UNKNOWN_ORDER) for v in self.variants)

    def draw(self, generator: torch.Generator | None) -> Step:
        k = _randint(len(self.variants), generator) if len(self.variants) > 1 else 0
        return self.variants[k].draw(generator)


def parse_variant(spec: str, where: str = "degradation") -> Variant:
    """``op[:key=value|key=lo..hi,...]`` as a :class:`Variant`; problems raise :class:`ABAIRError`."""
    text = spec.strip()
    op_name, _, rest = text.partition(":")
    fixed: list[str] = []
    ranges: dict[str, Dist] = {}
    try:
        op = get_operator(op_name.strip())
        for item in rest.split(",") if rest.strip() else []:
            key, sep, value = (part.strip() for part in item.partition("="))
            if not (sep and RANGE in value):
                fixed.append(item)
                continue
            param = op.params.get(key)
            if param is None or param.kind not in ("int", "float", "rgb"):
                raise ValueError(f"degradation '{op.name}': '{key}' takes no range; valid: {op.param_list()}")
            lo_text, _, hi_text = value.partition(RANGE)
            lo, hi = param.coerce(op.name, key, lo_text), param.coerce(op.name, key, hi_text)
            if isinstance(lo, tuple) or isinstance(hi, tuple):
                raise ValueError(f"degradation '{op.name}': a range for '{key}' takes two numbers")
            if hi < lo or key in ranges:
                raise ValueError(f"degradation '{op.name}': bad range '{item}'")
            ranges[key] = randint(int(lo), int(hi)) if param.kind == "int" else uniform(lo, hi)
        name, params = parse_op_spec(op.name + (":" + ",".join(fixed) if fixed else ""))
    except ValueError as exc:
        raise ABAIRError(f"{where}: {exc}") from None
    if set(ranges) & set(params):
        raise ABAIRError(f"{where}: '{text}' gives {', '.join(sorted(set(ranges) & set(params)))} twice")
    return Variant(text, name, params, ranges)


def parse_degradations(
    mapping: Mapping[str, str | Sequence[str]], where: str = "degradations"
) -> tuple[Degradation, ...]:
    """Named degradations, in the given (adapter) order, from ``{name: spec or [specs]}``."""
    if not mapping:
        raise ABAIRError(f"{where}: needs at least one degradation")
    out = []
    for name, specs in mapping.items():
        check_name(name, f"{where}.{name}")
        specs = [specs] if isinstance(specs, str) else list(specs)
        if not specs:
            raise ABAIRError(f"{where}.{name}: needs at least one operator spec")
        out.append(
            Degradation(name, tuple(parse_variant(s, f"{where}.{name}.{i}") for i, s in enumerate(specs)))
        )
    return tuple(out)


def check_name(name: str, where: str) -> None:
    """Degradation names become tensor keys and file names: lower-case identifiers, not ``clean``."""
    if not isinstance(name, str) or not _NAME.match(name) or name == CLEAN:
        raise ABAIRError(
            f"{where}: '{name}' is not a valid degradation name (lower-case letters, digits, _; not 'clean')"
        )


# ----------------------------------------------------------------------------------------- random


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand(1, generator=generator, device=_device(generator), dtype=torch.float64))


def _randint(n: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(n, (1,), generator=generator, device=_device(generator)))


def _subset(n: int, k: int, generator: torch.Generator | None) -> list[int]:
    return torch.randperm(n, generator=generator, device=_device(generator))[:k].tolist()


# -------------------------------------------------------------------------------------- synthesis


@dataclass
class Synthesized:
    """One synthetic sample: the degraded image, the composer's labels and the class of each step."""

    lq: torch.Tensor  # (3, H, W)
    labels: torch.Tensor  # (S, H, W) bool, one channel per applied step
    step_classes: tuple[int, ...]  # index into the synthesizer's classes, per step
    steps: tuple[Step, ...]
    mode: str


class Synthesizer:
    """Draws clean / single / mixed / cutmix samples from clean images (see the module docstring)."""

    def __init__(
        self,
        degradations: Sequence[Degradation],
        *,
        clean: float = 0.05,
        single: float = 0.35,
        mixed: float = 0.2,
        cutmix: float = 0.4,
        max_mixed: int = 3,
        cutmix_regions: int = 3,
        cutmix_area: tuple[float, float] = (0.1, 0.5),
    ) -> None:
        if not degradations:
            raise ABAIRError("synthesis needs at least one degradation")
        weights = [clean, single, mixed, cutmix]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ABAIRError(f"synthesis: mode probabilities must be >= 0 with a positive sum, got {weights}")
        if max_mixed < 2 or cutmix_regions < 1:
            raise ABAIRError("synthesis: max_mixed must be >= 2 and cutmix_regions >= 1")
        self.degradations = tuple(degradations)
        self.classes = (CLEAN, *(d.name for d in self.degradations))
        total = sum(weights)
        self.cumulative = [sum(weights[: i + 1]) / total for i in range(len(weights))]
        self.max_mixed, self.cutmix_regions, self.cutmix_area = max_mixed, cutmix_regions, tuple(cutmix_area)

    def _mode(self, generator: torch.Generator | None) -> str:
        u = _uniform(generator)
        mode = next((m for m, c in zip(MODES, self.cumulative, strict=True) if u < c), MODES[-1])
        if mode == "mixed" and len(self.degradations) < 2:
            return "single"
        return mode

    def __call__(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> Synthesized:
        """Degrade one (3, H, W) clean image."""
        x = clean[None]
        k = len(self.degradations)
        mode = self._mode(generator)
        if mode == "clean":
            h, w = clean.shape[-2:]
            empty = torch.zeros(0, h, w, dtype=torch.bool, device=clean.device)
            return Synthesized(clean.clone(), empty, (), (), mode)
        if mode == "single":
            chosen = [_randint(k, generator)]
        elif mode == "mixed":
            m = 2 + _randint(min(k, self.max_mixed) - 1, generator)
            chosen = sorted(_subset(k, m, generator), key=lambda i: (self.degradations[i].order, i))
        else:
            low, high = min(2, k), min(k, self.cutmix_regions)
            chosen = sorted(_subset(k, low + _randint(high - low + 1, generator), generator))
        steps = tuple(self.degradations[i].draw(generator) for i in chosen)
        if mode == "cutmix":
            y, labels = apply_regions(x, steps, generator=generator, area=self.cutmix_area)
        else:
            y, labels = apply_sequence(x, steps, generator=generator)
        return Synthesized(y[0], labels[0], tuple(i + 1 for i in chosen), steps, mode)

    # ------------------------------------------------------------------------------- targets

    def pixel_target(self, sample: Synthesized) -> torch.Tensor:
        """(C, H, W) class distribution per pixel (C = 1 + degradations)."""
        return pixel_distribution(sample.labels, sample.step_classes, len(self.classes))

    def image_target(self, sample: Synthesized) -> torch.Tensor:
        """(C,) distribution over the classes the sample visibly carries."""
        present = [c for j, c in enumerate(sample.step_classes) if bool(sample.labels[j].any())]
        return uniform_over(present or [0], len(self.classes), sample.lq.device)


def pixel_distribution(labels: torch.Tensor, step_classes: Sequence[int], num_classes: int) -> torch.Tensor:
    """(S, H, W) step labels and the class of each step -> (C, H, W) per-pixel class shares."""
    h, w = labels.shape[-2:]
    marks = labels.to(torch.float32)
    target = torch.zeros(num_classes, h, w, device=labels.device)
    for j, c in enumerate(step_classes):
        target[c] += marks[j]
    count = marks.sum(0)
    target = target / count.clamp_min(1.0)
    target[0] = (count == 0).to(torch.float32)
    return target


def uniform_over(classes: Sequence[int], num_classes: int, device: torch.device | str) -> torch.Tensor:
    """(C,) distribution with equal mass on each of ``classes``."""
    target = torch.zeros(num_classes, device=device)
    target[sorted(set(classes))] = 1.0
    return target / target.sum()


def task_classes(task: str, classes: Sequence[str], aliases: Mapping[str, str]) -> list[int]:
    """Class indices a task name stands for (``rain``, ``blur+noise``; ``aliases`` rename parts)."""
    found = []
    for part in task.split("+"):
        name = aliases.get(part, part)
        if name not in classes:
            raise ABAIRError(
                f"task '{task}': '{part}' is none of the classes {', '.join(classes)}; rename the dataset's "
                "task or map it with method.options.aliases"
            )
        found.append(classes.index(name))
    return found


# ------------------------------------------------------------------------------------------ batches


@dataclass
class Prepared:
    """A training batch with ABAIR's inputs and targets."""

    lq: torch.Tensor  # (N, 3, H, W)
    gt: torch.Tensor  # (N, 3, H, W)
    pixel_target: torch.Tensor | None  # (N, C, H, W)
    image_target: torch.Tensor  # (N, C)


def prepare_batch(
    batch: Mapping[str, Any],
    synthesizer: Synthesizer,
    generator: torch.Generator | None,
    *,
    synthesize: Sequence[str] = (CLEAN,),
    aliases: Mapping[str, str] | None = None,
    pixels: bool = False,
) -> Prepared:
    """Degrade the samples whose task is in ``synthesize`` (from their clean ``gt``); keep the others'
    input and derive their targets from their task name, or from their region ``labels`` when the
    dataset mixed degradations by region itself."""
    aliases = dict(aliases or {})
    classes = synthesizer.classes
    gt = batch["gt"]
    lq_in = batch["lq"]
    if lq_in.shape != gt.shape:
        raise ABAIRError(
            f"ABAIR trains restorers of scale 1; got inputs {tuple(lq_in.shape)} for {tuple(gt.shape)}"
        )
    lqs, pixel_targets, image_targets = [], [], []
    for i, task in enumerate(batch["task"]):
        if task in synthesize:
            sample = synthesizer(gt[i], generator)
            lqs.append(sample.lq)
            image_targets.append(synthesizer.image_target(sample))
            if pixels:
                pixel_targets.append(synthesizer.pixel_target(sample))
            continue
        lqs.append(lq_in[i])
        if "labels" in batch:
            local = torch.tensor([0, *task_classes(task, classes, aliases)], device=gt.device)
            ids = local[batch["labels"][i].to(gt.device)]
            present = [int(c) for c in ids.unique().tolist() if c != 0]
            image_targets.append(uniform_over(present or [0], len(classes), gt.device))
            if pixels:
                pixel_targets.append(torch.nn.functional.one_hot(ids, len(classes)).permute(2, 0, 1).float())
            continue
        target = uniform_over(task_classes(task, classes, aliases), len(classes), gt.device)
        image_targets.append(target)
        if pixels:
            pixel_targets.append(target[:, None, None].expand(-1, *gt.shape[-2:]))
    return Prepared(
        torch.stack(lqs),
        gt,
        torch.stack(pixel_targets) if pixels else None,
        torch.stack(image_targets),
    )


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a class distribution along dim 1, averaged over everything else (float32)."""
    return -(target.float() * torch.log_softmax(logits.float(), dim=1)).sum(1).mean()
