"""What every restoration dataset provides: samples drawn with an explicit generator.

A sample is ``{"lq": (3, h, w), "gt": (3, H, W), "task": str, "path": str}`` float32 in [0, 1], plus
``"labels"`` ((H, W) int64, 0 = clean, i = ``label_names[i]``) when degradations are mixed by region.
``sample(index, generator)`` draws every random choice (crop, flips, degradation) from ``generator``;
``dataset[index]`` is the same with a generator seeded from the dataset's seed and the index, so a
validation set is identical at every evaluation.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from anyrestore.data.seeding import make_generator
from anyrestore.io import read_image

Sample = dict[str, Any]


class RestorationDataset(Dataset):
    """Base class: a finite list of items, each turned into a sample by :meth:`sample`."""

    task: str = "restore"
    label_names: tuple[str, ...] = ()
    patch_size: int | None = None  # GT patch of a training sample (None: whole images)
    scale: int = 1  # GT size / LQ size

    def __init__(self, *, seed: int = 0, cache: bool = False) -> None:
        self.seed = seed
        self.cache = cache
        self._images: dict[Path, torch.Tensor] = {}

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, index: int, generator: torch.Generator) -> Sample:
        """The sample for item ``index``, drawing all randomness from ``generator``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)}")
        return self.sample(index, make_generator(self.seed, "item", index))

    def load(self, path: Path) -> torch.Tensor:
        """(3, H, W) float32 pixels of ``path``, kept in memory when ``cache`` is set (small sets only)."""
        if path in self._images:
            return self._images[path]
        pixels = read_image(path).pixels
        if self.cache:
            self._images[path] = pixels
        return pixels


class ConcatDataset(RestorationDataset):
    """Several datasets read as one: one task stream from several folders (LOL-v2 real + synthetic)."""

    def __init__(self, datasets: list[RestorationDataset], task: str) -> None:
        super().__init__(seed=datasets[0].seed if datasets else 0)
        self.datasets, self.task = list(datasets), task
        self.offsets = [0]
        for d in self.datasets:
            self.offsets.append(self.offsets[-1] + len(d))
        if self.datasets:  # build_source checked that they agree
            first = self.datasets[0]
            self.label_names, self.patch_size, self.scale = first.label_names, first.patch_size, first.scale

    def __len__(self) -> int:
        return self.offsets[-1]

    def sample(self, index: int, generator: torch.Generator) -> Sample:
        k = bisect.bisect_right(self.offsets, index) - 1
        return self.datasets[k].sample(index - self.offsets[k], generator)
