"""Which images an attribution runs on: a small text spec per source, as ``anyrestore mac --data`` takes it.

A spec is one of

- ``clean=DIR,ops=OP+OP+...``: clean photos degraded on the fly; every ``OP`` (a degradation spec as
  ``anyrestore degrade`` takes it, e.g. ``noise:sigma=25``, ``blur:sigma=2``, ``jpeg:quality=30``,
  ``noise:preset=ram``) is one task;
- ``lq=DIR`` (or just ``DIR``): already degraded images (the ``lq`` side of a paired set), one task named
  after the folder.

Each task takes ``per_task`` images drawn at random (seeded) from its folder and centre-crops them to
``crop`` x ``crop`` (0 keeps whole images). Synthetic tasks degrade a crop with a margin of up to 16 pixels
on each side and then cut the centre, so blur sees real neighbours at the crop's border. MAC needs
degraded inputs only: no ground truth is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anyrestore.attribution.units import AttributionError
from anyrestore.degrade import apply_op, format_op_spec, parse_op_spec
from anyrestore.errors import ImageError
from anyrestore.io import list_images, read_tensor

MARGIN = 16


@dataclass(frozen=True)
class DataSource:
    """One parsed ``--data`` spec: a folder, and for clean folders the degradations (one task each)."""

    folder: Path
    ops: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def synthetic(self) -> bool:
        return bool(self.ops)


@dataclass(frozen=True)
class Sample:
    """One attribution input: its task name, source file and (3, H, W) [0, 1] pixels."""

    task: str
    path: Path
    image: torch.Tensor


def parse_data_spec(spec: str) -> DataSource:
    """Parse ``clean=DIR,ops=OP+OP`` or ``lq=DIR`` / ``DIR`` (see the module docstring)."""
    text = spec.strip()
    if text.startswith("clean="):
        folder, sep, ops = text[len("clean=") :].partition(",ops=")
        if not sep or not ops.strip():
            raise AttributionError(
                f"data spec '{spec}': clean=DIR needs ',ops=OP+OP...' (e.g. ops=noise:sigma=25)"
            )
        parsed = []
        for item in ops.split("+"):
            try:
                parsed.append(parse_op_spec(item))
            except ValueError as exc:
                raise AttributionError(f"data spec '{spec}': {exc}") from None
        return DataSource(Path(folder), tuple(parsed))
    if text.startswith("lq="):
        text = text[len("lq=") :]
    elif "=" in text.split(os.sep)[0] and not Path(text).exists():
        raise AttributionError(f"data spec '{spec}': expected 'clean=DIR,ops=...' or 'lq=DIR'")
    if not text:
        raise AttributionError(f"data spec '{spec}': empty folder")
    return DataSource(Path(text))


def _centre(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def load_attribution_images(
    specs: Sequence[str | DataSource],
    *,
    per_task: int = 10,
    crop: int = 64,
    seed: int = 0,
) -> list[Sample]:
    """The images of every task of every spec, ``per_task`` each, cropped; seeded selection and noise."""
    if per_task < 1:
        raise AttributionError(f"per_task must be at least 1, got {per_task}")
    if crop < 0:
        raise AttributionError(f"crop must be 0 (none) or positive, got {crop}")
    generator = torch.Generator().manual_seed(seed)
    samples: list[Sample] = []
    for spec in specs:
        source = spec if isinstance(spec, DataSource) else parse_data_spec(spec)
        if not source.folder.is_dir():
            raise AttributionError(f"{source.folder}: no such folder")
        try:
            files = list_images(source.folder)
        except ImageError as exc:
            raise AttributionError(str(exc)) from None
        if not files:
            raise AttributionError(f"{source.folder}: no images")
        tasks = [(format_op_spec(name, params), name, params) for name, params in source.ops] or [
            (source.folder.name, None, None)
        ]
        for task, op, params in tasks:
            picks = torch.randperm(len(files), generator=generator)[:per_task].sort().values.tolist()
            for index in picks:
                path = files[index]
                x = read_tensor(path)
                h, w = x.shape[-2:]
                if crop and (h < crop or w < crop):
                    raise AttributionError(f"{path}: {w}x{h} is smaller than the {crop}x{crop} crop")
                size = (crop, crop) if crop else (h, w)
                if op is not None:
                    margin_h = min(MARGIN, (h - size[0]) // 2)
                    margin_w = min(MARGIN, (w - size[1]) // 2)
                    x = _centre(x, size[0] + 2 * margin_h, size[1] + 2 * margin_w)
                    x = apply_op(x, op, generator=generator, **params)
                samples.append(Sample(task, path, _centre(x, *size)[0].contiguous()))
    return samples
