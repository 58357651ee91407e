"""Datasets as recipes describe them, and building them (all file checks happen here, at start-up).

Relative paths are taken from ``data_root``. A training set is randomly cropped to ``patch_size`` (the GT
patch) and flipped as asked; a validation set is centre-cropped to ``patch_size`` when given (else whole
images) and never flipped. ``limit`` keeps the first N items (in name order). Training sets with the same
``group`` form one task stream of a mixture (RAM's low-light stream is LOL-v2 real and synthetic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from anyrestore.data.base import ConcatDataset, RestorationDataset
from anyrestore.data.files import DataError, list_folder
from anyrestore.data.layouts import find_layout_pairs, find_pairs
from anyrestore.data.paired import PairedImageDataset
from anyrestore.data.stream import RoundRobin, Shuffled, Source, Weighted
from anyrestore.data.synthetic import SyntheticDataset, parse_steps


@dataclass
class PairedSetSpec:
    """Degraded/clean pairs: ``root`` + ``layout`` (see :data:`~anyrestore.data.layouts.LAYOUTS`), or
    ``lq`` and ``gt`` folders with optional ``match`` / ``gt_name`` renaming."""

    KIND: ClassVar[str] = "paired"
    type: str
    task: str
    root: str | None = None
    layout: str | None = None
    lq: str | None = None
    gt: str | None = None
    match: str | None = None
    gt_name: str | None = None
    allow_unused_gt: bool = False
    recursive: bool = False
    scale: int = 1
    patch_size: int | None = None
    flip: bool = True
    rotate: bool = False
    cache: bool = False
    limit: int | None = None
    group: str | None = None


@dataclass
class SyntheticSetSpec:
    """Clean images (``clean``: a folder or a list of folders/files) degraded on the fly by ``degrade``
    (operator specs such as ``noise:preset=ram``, or ``pipeline:<name>``) in ``mode`` sequence, choice or
    regions."""

    KIND: ClassVar[str] = "synthetic"
    type: str
    clean: str | list[str]
    degrade: list[str] = field(default_factory=list)
    mode: str = "sequence"
    task: str | None = None
    regions_per_image: int | None = None
    before: str | None = None
    recursive: bool = False
    patch_size: int | None = None
    flip: bool = True
    rotate: bool = False
    cache: bool = False
    limit: int | None = None
    group: str | None = None


DatasetSpec = PairedSetSpec | SyntheticSetSpec
DATASET_KINDS: dict[str, type] = {PairedSetSpec.KIND: PairedSetSpec, SyntheticSetSpec.KIND: SyntheticSetSpec}


def _path(data_root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else data_root / path


def _clean_files(spec: SyntheticSetSpec, data_root: Path) -> list[Path]:
    entries = [spec.clean] if isinstance(spec.clean, str) else list(spec.clean)
    files: list[Path] = []
    for entry in entries:
        path = _path(data_root, entry)
        if path.is_file():
            files.append(path)
        else:
            files += list_folder(path, recursive=spec.recursive, what="clean image")
    return files


def _paired_pairs(spec: PairedSetSpec, data_root: Path, where: str) -> list[tuple[Path, Path]]:
    if spec.layout is not None:
        if spec.root is None or spec.lq is not None or spec.gt is not None:
            raise DataError(f"{where}: a layout needs root (and no lq/gt folders)")
        if spec.match is not None or spec.gt_name is not None:
            raise DataError(f"{where}: match/gt_name come from the layout; give lq and gt folders instead")
        return find_layout_pairs(
            _path(data_root, spec.root),
            spec.layout,
            recursive=spec.recursive,
            allow_unused_gt=spec.allow_unused_gt,
        )
    if spec.lq is None or spec.gt is None:
        raise DataError(f"{where}: give lq and gt folders, or root and layout")
    base = _path(data_root, spec.root) if spec.root is not None else data_root
    return find_pairs(
        _path(base, spec.lq),
        _path(base, spec.gt),
        match=spec.match,
        gt_name=spec.gt_name,
        recursive=spec.recursive,
        allow_unused_gt=spec.allow_unused_gt,
    )


def build_dataset(
    spec: DatasetSpec,
    *,
    data_root: str | Path = ".",
    train: bool,
    seed: int = 0,
    where: str = "dataset",
    progress: bool = False,
) -> RestorationDataset:
    """The dataset a spec describes; every problem is a :class:`DataError` starting with ``where``."""
    data_root = Path(data_root).expanduser()
    if spec.limit is not None and spec.limit < 1:
        raise DataError(f"{where}: limit must be >= 1")
    if train and spec.patch_size is None:
        raise DataError(f"{where}: training sets need a patch_size (batches need one image size)")
    crop = "random" if train else ("center" if spec.patch_size is not None else "none")
    common = {
        "patch_size": spec.patch_size,
        "crop": crop,
        "flip": spec.flip and train,
        "rotate": spec.rotate and train,
        "seed": seed,
        "cache": spec.cache,
        "progress": progress,
    }
    try:
        if isinstance(spec, PairedSetSpec):
            pairs = _paired_pairs(spec, data_root, where)[: spec.limit]
            return PairedImageDataset(pairs, task=spec.task, scale=spec.scale, **common)
        files = _clean_files(spec, data_root)[: spec.limit]
        steps = parse_steps(spec.degrade, where)
        return SyntheticDataset(
            files,
            steps,
            mode=spec.mode,
            task=spec.task,
            regions_per_image=spec.regions_per_image,
            before=spec.before,
            **common,
        )
    except DataError as exc:
        message = str(exc)
        raise DataError(message if message.startswith(where) else f"{where}: {message}") from None


def check_batchable(datasets: list[RestorationDataset], where: str = "data.train.sets") -> None:
    """Samples of every training set must stack into one batch: same GT patch, same scale, and region
    labels either everywhere (with the same classes) or nowhere. Checked at start-up."""
    first = datasets[0]
    for i, d in enumerate(datasets[1:], start=1):
        if (d.patch_size, d.scale) != (first.patch_size, first.scale):
            raise DataError(
                f"{where}.{i}: patch_size {d.patch_size} at scale {d.scale} differs from {where}.0 "
                f"({first.patch_size} at scale {first.scale}); a batch needs one size"
            )
        if d.label_names != first.label_names:
            raise DataError(
                f"{where}.{i}: region labels {list(d.label_names) or 'none'} differ from {where}.0's "
                f"({list(first.label_names) or 'none'}); a batch needs one kind of sample"
            )


def build_source(
    datasets: list[RestorationDataset],
    *,
    mix: str,
    weights: list[float] | None,
    seed: int,
    groups: list[str | None] | None = None,
) -> Source:
    """One training source over ``datasets``: ``round_robin`` or ``weighted`` over the streams (datasets
    sharing a name in ``groups`` make one stream, weighted by the weight of its first dataset)."""
    groups = groups or [None] * len(datasets)
    if len(groups) != len(datasets):
        raise DataError(f"{len(groups)} group names for {len(datasets)} datasets")
    check_batchable(datasets)
    members: dict[object, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g if g is not None else ("set", i), []).append(i)
    streams = [
        datasets[idx[0]] if len(idx) == 1 else ConcatDataset([datasets[i] for i in idx], str(key))
        for key, idx in members.items()
    ]
    if weights is not None:
        if len(weights) != len(datasets):
            raise DataError(f"mixture weights: {len(weights)} given for {len(datasets)} datasets")
        weights = [weights[idx[0]] for idx in members.values()]
    sources = [Shuffled(d, seed=seed, key=f"set{i}") for i, d in enumerate(streams)]
    if mix == "round_robin":
        if weights is not None:
            raise DataError("weights apply to mix: weighted only")
        return sources[0] if len(sources) == 1 else RoundRobin(sources)
    if mix == "weighted":
        return Weighted(sources, weights if weights is not None else [1.0] * len(sources))
    raise DataError(f"unknown mix '{mix}'; known: round_robin, weighted")
