"""Degraded images made on the fly from clean photos with the operators of :mod:`anyrestore.degrade`.

The clean image is cropped and flipped first, then degraded, all with the sample's generator, so a sample
(degradation parameters and noise included) is a pure function of its seed. Three modes:

- ``sequence``: every step in order (one degradation, or a hybrid such as x4 downscaling then noise);
  no steps at all gives identity pairs (RAM's "clean" task);
- ``choice``: one step per sample, picked uniformly; the sample's task is that step's operator;
- ``regions``: ABAIR's degradation CutMix: each step in its own random rectangle, with ``labels``, the
  per-pixel class (0 = clean, i = ``label_names[i]``). ``regions_per_image`` steps are drawn per sample
  (all when None).

With ``before`` (an operator name, sequence mode), a sample also holds ``before``: the image just before
that step (or the input itself when the steps do not include it), the target of a stage that undoes
only that step (the default model's deblocking stage, ``before: jpeg``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from anyrestore.data.base import RestorationDataset, Sample
from anyrestore.data.files import DataError, check_min_size, image_sizes
from anyrestore.data.transforms import augment, center_crop, random_crop
from anyrestore.degrade import (
    NAMED_PIPELINES,
    apply_regions,
    apply_sequence,
    get_operator,
    labels_to_index,
    parse_op_spec,
)

MODES = ("sequence", "choice", "regions")
CROPS = ("random", "center", "none")

Step = tuple[str, dict[str, Any]]


def parse_steps(specs: Sequence[str], where: str) -> list[Step]:
    """Spec strings (``"noise:preset=ram"``) or named pipelines (``"pipeline:lr4_noise30"``) as steps."""
    steps: list[Step] = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        if name.strip() == "pipeline":
            if rest.strip() not in NAMED_PIPELINES:
                known = ", ".join(NAMED_PIPELINES)
                raise DataError(f"{where}: unknown pipeline '{rest.strip()}'; known: {known}")
            steps += [(n, dict(p)) for n, p in NAMED_PIPELINES[rest.strip()]]
            continue
        try:
            steps.append(parse_op_spec(spec))
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
    return steps


def step_scale(step: Step, where: str) -> int:
    """How much a step shrinks the image (1 unless it resizes; a resizing step needs a fixed scale)."""
    name, params = step
    if not get_operator(name).resizes:
        return 1
    if "preset" in params or "scale" not in params:
        raise DataError(
            f"{where}: '{name}' needs an explicit scale (e.g. {name}:scale=4) so that every sample of a "
            "batch has the same size"
        )
    return int(params["scale"])


class SyntheticDataset(RestorationDataset):
    """Clean images degraded on the fly (see the module docstring for the modes)."""

    def __init__(
        self,
        files: Sequence[Path],
        steps: Sequence[Step],
        *,
        mode: str = "sequence",
        task: str | None = None,
        patch_size: int | None = None,
        crop: str = "random",
        flip: bool = False,
        rotate: bool = False,
        regions_per_image: int | None = None,
        before: str | None = None,
        seed: int = 0,
        cache: bool = False,
        progress: bool = False,
    ) -> None:
        super().__init__(seed=seed, cache=cache)
        where = f"task '{task}'" if task else "synthetic set"
        if not files:
            raise DataError(f"{where}: no clean images")
        if mode not in MODES:
            raise DataError(f"{where}: mode must be one of {', '.join(MODES)}, not '{mode}'")
        if crop not in CROPS:
            raise DataError(f"{where}: crop must be one of {', '.join(CROPS)}, not '{crop}'")
        if crop != "none" and (patch_size is None or patch_size < 1):
            raise DataError(f"{where}: crop '{crop}' needs a positive patch_size")
        steps = [(n, dict(p)) for n, p in steps]
        if mode != "sequence" and not steps:
            raise DataError(f"{where}: mode '{mode}' needs at least one degradation")
        scales = [step_scale(s, where) for s in steps]
        if mode == "regions" and any(s != 1 for s in scales):
            raise DataError(f"{where}: resizing degradations cannot be mixed by region")
        if mode == "choice" and len(set(scales)) > 1:
            raise DataError(f"{where}: in choice mode every degradation must keep the same scale")
        self.scale = math.prod(scales) if mode == "sequence" else (scales[0] if scales else 1)
        if patch_size is not None and patch_size % self.scale:
            raise DataError(f"{where}: patch_size {patch_size} is not a multiple of the scale {self.scale}")
        if before is not None and mode != "sequence":
            raise DataError(f"{where}: 'before' needs mode sequence, not '{mode}'")
        if regions_per_image is not None and not 1 <= regions_per_image <= len(steps):
            raise DataError(f"{where}: regions_per_image must lie in 1..{len(steps)}")

        self.files = [Path(f) for f in files]
        self.steps, self.mode, self.patch_size, self.crop = steps, mode, patch_size, crop
        self.flip, self.rotate, self.regions_per_image = flip, rotate, regions_per_image
        self.before = before
        ops = list(dict.fromkeys(name for name, _ in steps))
        self.task = task or ("+".join(ops) if ops else "clean")
        self.label_names = ("clean", *ops) if mode == "regions" else ()
        if crop == "random":
            sizes = image_sizes(self.files, progress=progress, desc=f"checking {self.task} images")
            check_min_size(self.files, sizes, patch_size, f"the {self.task} crop")

    def __len__(self) -> int:
        return len(self.files)

    def sample(self, index: int, generator: torch.Generator) -> Sample:
        path = self.files[index]
        clean = self.load(path)
        if self.scale > 1:  # a multiple of the scale, so that LQ and GT pixels align
            h, w = clean.shape[-2:]
            clean = clean[..., : h - h % self.scale, : w - w % self.scale]
        if self.crop == "random":
            clean, _, _ = random_crop(clean, clean, self.patch_size, generator=generator)
        elif self.crop == "center":
            clean, _, _ = center_crop(clean, clean, self.patch_size)
        (clean,) = augment((clean,), flip=self.flip, rotate=self.rotate, generator=generator)

        out: Sample = {"gt": clean, "task": self.task, "path": str(path)}
        x = clean[None]
        if self.mode == "sequence":
            # Split at the step named by ``before`` (e.g. JPEG, undone by the deblocking stage): what
            # comes out of the steps ahead of it is that stage's target; without such a step, the input.
            names = [name for name, _ in self.steps]
            cut = names.index(self.before) if self.before in names else len(names)
            mid, _ = apply_sequence(x, self.steps[:cut], generator=generator)
            lq, _ = apply_sequence(mid, self.steps[cut:], generator=generator)
            if self.before is not None:
                out["before"] = mid[0].contiguous()
        elif self.mode == "choice":
            k = int(torch.randint(len(self.steps), (1,), generator=generator).item())
            lq, _ = apply_sequence(x, [self.steps[k]], generator=generator)
            out["task"] = self.steps[k][0]
        else:
            chosen = self.steps
            if self.regions_per_image is not None:
                order = torch.randperm(len(self.steps), generator=generator)[: self.regions_per_image]
                chosen = [self.steps[i] for i in sorted(order.tolist())]
            lq, labels = apply_regions(x, chosen, generator=generator)
            step_class = torch.tensor([0] + [self.label_names.index(n) for n, _ in chosen])
            out["labels"] = step_class[labels_to_index(labels)[0]]
        out["lq"] = lq[0].contiguous()
        return out
