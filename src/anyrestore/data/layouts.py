"""Pairing degraded (LQ) and clean (GT) images by file name, and the folder layouts of public benchmarks.

Files pair by name without extension (SOTS pairs ``hazy/0001_0.8_0.2.jpg`` with ``gt/0001.png``). When
names differ, ``match`` (a regular expression with named groups, matched against the whole LQ name) and
``gt_name`` (a ``str.format`` template over those groups and ``{stem}``) give the GT name of each LQ file.
Several LQ images may share one GT image; every LQ image must have one, and every GT image must be used
unless ``allow_unused_gt``. A ``*`` component in a layout's folders stands for every sub-folder (GoPro's
sequences): ``*/blur`` pairs with ``*/sharp`` of the same sequence.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from anyrestore.data.files import DataError, format_examples, list_folder


@dataclass(frozen=True)
class PairLayout:
    """Where a benchmark keeps its LQ and GT images, relative to the dataset root, and how names map."""

    lq: str
    gt: str
    match: str | None = None
    gt_name: str | None = None
    description: str = ""


# Folder names are those of the public releases (and of the exports that Restormer, PromptIR and RAM read).
LAYOUTS: dict[str, PairLayout] = {
    "input_target": PairLayout(
        "input",
        "target",
        description="Rain13K, Rain100L/H, Test100/1200/2800, GoPro as Restormer exports them",
    ),
    "lq_gt": PairLayout("lq", "gt", description="generic: lq/ and gt/ with the same file names"),
    "sots": PairLayout(
        "hazy", "gt", r"(?P<id>[^_]+)_.+", "{id}", description="RESIDE SOTS: hazy/<id>_<A>_<beta> -> gt/<id>"
    ),
    "ots": PairLayout(
        "hazy",
        "clear",
        r"(?P<id>[^_]+)_.+",
        "{id}",
        description="RESIDE OTS/ITS: hazy/<id>_... -> clear/<id>",
    ),
    "gopro": PairLayout("*/blur", "*/sharp", description="GoPro: <sequence>/blur -> <sequence>/sharp"),
    "lol": PairLayout("low", "high", description="LOL v1: our485 or eval15, low/ -> high/"),
    "lolv2_real": PairLayout(
        "Low",
        "Normal",
        r"low(?P<id>.+)",
        "normal{id}",
        description="LOL v2 Real_captured/{Train,Test}: Low/lowNNNNN -> Normal/normalNNNNN",
    ),
    "lolv2_synthetic": PairLayout(
        "Low", "Normal", description="LOL v2 Synthetic/{Train,Test}: Low/ -> Normal/"
    ),
}


def get_layout(name: str) -> PairLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise DataError(f"unknown dataset layout '{name}'; known: {', '.join(LAYOUTS)}") from None


def _gt_key(
    lq_key: str, stem: str, pattern: re.Pattern[str] | None, gt_name: str | None, lq_file: Path
) -> str:
    groups: dict[str, str] = {"stem": stem}
    if pattern is not None:
        found = pattern.fullmatch(stem)
        if found is None:
            raise DataError(f"{lq_file}: name '{stem}' does not fit the pattern '{pattern.pattern}'")
        groups.update({k: v for k, v in found.groupdict().items() if v is not None})
    name = stem
    if gt_name is not None:
        try:
            name = gt_name.format(**groups)
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(f"gt_name '{gt_name}': cannot fill it from '{stem}' ({exc})") from None
    parent = str(Path(lq_key).parent)
    return name if parent == "." else f"{parent}/{name}"


def _keyed(folder: Path, files: list[Path]) -> dict[str, Path]:
    """Files by relative path without extension; two files differing only in extension are an error."""
    out: dict[str, Path] = {}
    for f in files:
        key = f.relative_to(folder).with_suffix("").as_posix()
        if key in out:
            raise DataError(f"{folder}: '{out[key].name}' and '{f.name}' have the same name; remove one")
        out[key] = f
    return out


def find_pairs(
    lq_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    *,
    match: str | None = None,
    gt_name: str | None = None,
    recursive: bool = False,
    allow_unused_gt: bool = False,
) -> list[tuple[Path, Path]]:
    """(LQ, GT) paths of two folders paired by name (see the module docstring), sorted by LQ path."""
    lq_dir, gt_dir = Path(lq_dir), Path(gt_dir)
    try:
        pattern = re.compile(match) if match is not None else None
    except re.error as exc:
        raise DataError(f"match '{match}': not a valid regular expression ({exc})") from None
    lq = _keyed(lq_dir, list_folder(lq_dir, recursive=recursive, what="input image"))
    gt = _keyed(gt_dir, list_folder(gt_dir, recursive=recursive, what="ground-truth image"))
    pairs, missing, used = [], [], set()
    for key, path in lq.items():
        target = _gt_key(key, Path(key).name, pattern, gt_name, path)
        if target in gt:
            pairs.append((path, gt[target]))
            used.add(target)
        else:
            missing.append(f"{path.name} -> {target}")
    if missing:
        raise DataError(
            f"{gt_dir}: no ground truth for {len(missing)} input image(s): {format_examples(missing)}"
        )
    unused = sorted(set(gt) - used)
    if unused and not allow_unused_gt:
        raise DataError(
            f"{gt_dir}: {len(unused)} ground-truth image(s) have no input: {format_examples(unused)} "
            "(set allow_unused_gt: true if that is expected)"
        )
    return pairs


def _star_dirs(root: Path, pattern: str) -> list[tuple[Path, tuple[str, ...]]]:
    """Folders under ``root`` matching ``pattern`` whose ``*`` components match anything, with those parts."""
    parts = Path(pattern).parts
    stars = [i for i, p in enumerate(parts) if p == "*"]
    if not stars:
        return [(root / pattern, ())]
    found = []
    for d in sorted(root.glob(pattern)):
        if d.is_dir():
            rel = d.relative_to(root).parts
            found.append((d, tuple(rel[i] for i in stars)))
    return found


def find_layout_pairs(
    root: str | os.PathLike[str],
    layout: str | PairLayout,
    *,
    recursive: bool = False,
    allow_unused_gt: bool = False,
) -> list[tuple[Path, Path]]:
    """(LQ, GT) pairs of a dataset stored in a known layout under ``root``."""
    root = Path(root)
    spec = get_layout(layout) if isinstance(layout, str) else layout
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    if spec.lq.count("*") != spec.gt.count("*"):
        raise DataError(f"layout {spec.lq} -> {spec.gt}: both sides need the same number of '*' folders")
    lq_dirs = _star_dirs(root, spec.lq)
    if not lq_dirs:
        raise DataError(f"{root}: no folder matches '{spec.lq}'")
    pairs = []
    for lq_dir, values in lq_dirs:
        gt_parts = list(Path(spec.gt).parts)
        fill = iter(values)
        gt_dir = root.joinpath(*[next(fill) if p == "*" else p for p in gt_parts])
        pairs += find_pairs(
            lq_dir,
            gt_dir,
            match=spec.match,
            gt_name=spec.gt_name,
            recursive=recursive,
            allow_unused_gt=allow_unused_gt,
        )
    return pairs
