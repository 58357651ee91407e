"""Pairs of degraded and clean images read from disk (deraining, dehazing, deblurring, low light, SR)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from anyrestore.data.base import RestorationDataset, Sample
from anyrestore.data.files import DataError, check_min_size, format_examples, image_sizes
from anyrestore.data.transforms import augment, center_crop, fit_gt, random_crop

CROPS = ("random", "center", "none")


class PairedImageDataset(RestorationDataset):
    """LQ/GT file pairs, cropped (``patch_size`` is the GT patch) and optionally flipped.

    Sizes are checked from the file headers when the dataset is built: every GT must be ``scale`` times
    its LQ (up to ``scale - 1`` extra pixels, trimmed), and with a random crop every image must hold the
    patch. ``crop="center"`` takes the central patch (validation), ``"none"`` the whole image.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        *,
        task: str,
        scale: int = 1,
        patch_size: int | None = None,
        crop: str = "random",
        flip: bool = False,
        rotate: bool = False,
        seed: int = 0,
        cache: bool = False,
        progress: bool = False,
    ) -> None:
        super().__init__(seed=seed, cache=cache)
        if not pairs:
            raise DataError(f"task '{task}': no image pairs")
        if crop not in CROPS:
            raise DataError(f"crop must be one of {', '.join(CROPS)}, not '{crop}'")
        if scale < 1:
            raise DataError(f"task '{task}': scale must be >= 1, not {scale}")
        if crop != "none" and (patch_size is None or patch_size < 1):
            raise DataError(f"task '{task}': crop '{crop}' needs a positive patch_size")
        if patch_size is not None and patch_size % scale:
            raise DataError(f"task '{task}': patch_size {patch_size} is not a multiple of scale {scale}")
        self.pairs = [(Path(lq), Path(gt)) for lq, gt in pairs]
        self.task, self.scale, self.patch_size, self.crop = task, scale, patch_size, crop
        self.flip, self.rotate = flip, rotate
        self._check_sizes(progress)

    def _check_sizes(self, progress: bool) -> None:
        lq_paths = [lq for lq, _ in self.pairs]
        gt_paths = [gt for _, gt in self.pairs]
        lq_sizes = image_sizes(lq_paths, progress=progress, desc=f"checking {self.task} inputs")
        gt_sizes = image_sizes(gt_paths, progress=progress, desc=f"checking {self.task} targets")
        s = self.scale
        bad = [
            f"{gt} {gw}x{gh} vs {lq.name} {lw}x{lh}"
            for (lq, gt), (lh, lw), (gh, gw) in zip(self.pairs, lq_sizes, gt_sizes, strict=True)
            if not (lh * s <= gh < (lh + 1) * s and lw * s <= gw < (lw + 1) * s)
        ]
        if bad:
            what = "the size of its input" if s == 1 else f"{s} times the size of its input"
            raise DataError(f"task '{self.task}': ground truth is not {what}: {format_examples(bad)}")
        if self.crop == "random":
            check_min_size(lq_paths, lq_sizes, self.patch_size // s, f"the {self.task} crop")

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, index: int, generator: torch.Generator) -> Sample:
        lq_path, gt_path = self.pairs[index]
        lq = self.load(lq_path)
        gt = fit_gt(lq, self.load(gt_path), self.scale)
        if self.crop == "random":
            lq, gt, _ = random_crop(lq, gt, self.patch_size, scale=self.scale, generator=generator)
        elif self.crop == "center":
            lq, gt, _ = center_crop(lq, gt, self.patch_size, scale=self.scale)
        lq, gt = augment((lq, gt), flip=self.flip, rotate=self.rotate, generator=generator)
        return {"lq": lq, "gt": gt, "task": self.task, "path": str(lq_path)}
