"""Running a suite: each model on each test set, per-image scores saved as they come, resumable.

Per-image scores go to ``OUT/<model key>/<set>-<protocol hash>.jsonl``, one JSON line per image,
flushed after each: an interrupted run picks up where it stopped, and a changed protocol (degradation,
seed, metric) or changed model file (size, modification time) or inference option starts a new file
instead of mixing scores. Synthesised inputs are exactly what ``anyrestore degrade --seed SEED`` writes
for the same operators (same per-file seed), so every number can be checked by hand with
``degrade`` + ``restore`` + ``evaluate``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from anyrestore.benchmark.suite import Suite, TestSet
from anyrestore.errors import AnyRestoreError


@dataclass(frozen=True)
class Item:
    """One image of a test set: its name in the score file, the input (or clean) file, the ground truth."""

    name: str
    source: Path
    gt: Path


@dataclass
class SetResult:
    """A model's result on one test set; ``status`` is ok, missing, skipped or failed."""

    name: str
    status: str
    psnr: float | None = None
    ssim: float | None = None
    count: int = 0
    scores: Path | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"status": self.status, "psnr": self.psnr, "ssim": self.ssim, "count": self.count}
        if self.scores is not None:
            out["scores"] = str(self.scores)
        if self.message:
            out["message"] = self.message
        return out


@dataclass
class ModelResult:
    spec: str
    key: str
    architecture: str
    sets: dict[str, SetResult] = field(default_factory=dict)


@dataclass
class BenchmarkRun:
    suite: Suite
    root: Path
    selected: list[str]
    models: list[ModelResult]
    missing: dict[str, str]  # set name -> why, with the expected layout


# ------------------------------------------------------------------------------------------ the sets


def select_sets(suite: Suite, only: Sequence[str] = ()) -> list[TestSet]:
    """The suite's sets whose names match any of the ``only`` globs (all when empty)."""
    chosen = [s for s in suite.sets if not only or any(fnmatchcase(s.name, p) for p in only)]
    if not chosen:
        names = ", ".join(s.name for s in suite.sets)
        raise AnyRestoreError(f"--only {' '.join(only)}: no test set of {suite.name} matches (sets: {names})")
    return chosen


def list_items(test_set: TestSet, root: str | os.PathLike[str]) -> list[Item]:
    """The images of a set under ``root``; :class:`~anyrestore.data.files.DataError` when absent."""
    from anyrestore.data.files import list_folder
    from anyrestore.data.layouts import find_layout_pairs, get_layout

    root = Path(root)
    if test_set.synthetic:
        folder = root / str(test_set.clean)
        files = list_folder(folder, recursive=test_set.recursive, what="clean image")
        return [Item(f.relative_to(folder).with_suffix("").as_posix(), f, f) for f in files]
    base = root / str(test_set.root)
    layout = get_layout(str(test_set.layout))
    pairs = find_layout_pairs(base, layout, recursive=test_set.recursive)
    # names as the input files are named (GoPro's keep their sequence folder: names repeat across them)
    names_from = base if "*" in layout.lq else base / layout.lq
    return [Item(lq.relative_to(names_from).with_suffix("").as_posix(), lq, gt) for lq, gt in pairs]


def load_pair(test_set: TestSet, item: Item):
    """(input, ground truth) as (1, 3, H, W) tensors in [0, 1]: read, or synthesised from the clean image
    with the per-file seed of ``anyrestore degrade`` and rounded to 8 bits as a stored test set is."""
    import torch

    from anyrestore.degrade import apply_sequence, modcrop, quantize
    from anyrestore.io import read_image

    gt = read_image(item.gt).pixels[None]
    if not test_set.synthetic:
        return read_image(item.source).pixels[None], gt
    from anyrestore.cli.degrade_cmd import file_seed  # the seed `anyrestore degrade --seed` uses
    from anyrestore.data.synthetic import parse_steps

    steps = parse_steps(list(test_set.degrade), test_set.name)
    generator = torch.Generator().manual_seed(file_seed(test_set.seed, item.source))
    lq, _ = apply_sequence(gt, steps, generator=generator)
    if test_set.quantize_inputs:
        lq = quantize(lq, bits=8)
    return lq, modcrop(gt, test_set.scale) if test_set.scale > 1 else gt


# ------------------------------------------------------------------------------------------ scores


def read_scores(path: Path) -> dict[str, tuple[float, float]]:
    """Scores already saved (name -> (psnr, ssim)); a torn last line from an interruption is ignored."""
    done: dict[str, tuple[float, float]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            done[str(entry["name"])] = (float(entry["psnr"]), float(entry["ssim"]))
        except (ValueError, KeyError, TypeError):
            continue
    return done


def _append_score(path: Path, name: str, psnr: float, ssim: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"name": name, "psnr": psnr, "ssim": ssim}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _short_hash(data: Any) -> str:
    return hashlib.blake2b(json.dumps(data, sort_keys=True).encode(), digest_size=4).hexdigest()


def model_key(spec: str, options: dict[str, Any]) -> str:
    """A folder name for a model's scores: its file stem and a hash of the file's identity and the
    inference options, so a replaced checkpoint or another precision never reuses old scores."""
    path = Path(spec)
    if path.exists():
        stat = path.stat()
        ident: Any = [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
        stem = path.stem
    else:
        ident, stem = spec, spec
    return f"{stem}-{_short_hash([ident, options])}"


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return math.fsum(values) / len(values)


# ------------------------------------------------------------------------------------------ running


def run_suite(
    suite: Suite,
    root: str | os.PathLike[str],
    models: Sequence[str],
    *,
    out_dir: str | os.PathLike[str],
    only: Sequence[str] = (),
    device: str = "auto",
    precision: str = "fp32",
    tile: int | None = None,
    self_ensemble: str = "off",
    progress: bool = True,
) -> BenchmarkRun:
    """Run every model on every available selected set of ``suite``; missing sets are reported, not fatal."""
    from tqdm import tqdm

    import anyrestore.models  # noqa: F401  (registers the architectures)
    from anyrestore.data.files import DataError
    from anyrestore.degrade import quantize
    from anyrestore.evaluate import psnr, ssim
    from anyrestore.inference import Restorer
    from anyrestore.models.zoo import resolve_model

    root, out_dir = Path(root), Path(out_dir)
    chosen = select_sets(suite, only)
    items: dict[str, list[Item]] = {}
    missing: dict[str, str] = {}
    for test_set in chosen:
        try:
            items[test_set.name] = list_items(test_set, root)
        except DataError as exc:
            missing[test_set.name] = f"{exc}; expected: {test_set.expected_layout(root)}"
    options = {
        "precision": precision,
        "tile": suite.tile if tile is None else tile,
        "ensemble": self_ensemble,
    }
    results = []
    for spec in models:
        loaded = resolve_model(spec, device=device if device != "auto" else "cpu")
        restorer = Restorer(
            loaded,
            device=device,
            precision=precision,
            tile=options["tile"],
            self_ensemble=self_ensemble,
        )
        result = ModelResult(spec, model_key(spec, options), loaded.descriptor.architecture)
        results.append(result)
        for test_set in chosen:
            if test_set.name in missing:
                result.sets[test_set.name] = SetResult(
                    test_set.name, "missing", message=missing[test_set.name]
                )
                continue
            if restorer.scale != test_set.scale:
                result.sets[test_set.name] = SetResult(
                    test_set.name,
                    "skipped",
                    message=f"the model upscales x{restorer.scale}, the set needs x{test_set.scale}",
                )
                continue
            path = out_dir / result.key / f"{test_set.name}-{test_set.fingerprint()}.jsonl"
            done = read_scores(path)
            todo = [it for it in items[test_set.name] if it.name not in done]
            failures = []
            bar = tqdm(todo, desc=f"{Path(spec).name} {test_set.name}", unit="img", disable=not progress)
            metric = test_set.metric
            for item in bar:
                try:
                    lq, gt = load_pair(test_set, item)
                    pred = quantize(restorer(lq), bits=8)  # scored as the 8-bit file `restore` writes
                    if pred.shape != gt.shape:
                        raise AnyRestoreError(
                            f"output size {tuple(pred.shape[-2:])} differs from the ground truth's "
                            f"{tuple(gt.shape[-2:])}"
                        )
                    p = float(psnr(pred, gt.to(pred.device), metric.preset, metric.crop_border)[0])
                    s = float(ssim(pred, gt.to(pred.device), metric.preset, metric.crop_border)[0])
                except (AnyRestoreError, ValueError, RuntimeError) as exc:  # one image; the rest go on
                    failures.append(f"{item.name}: {exc}")
                    continue
                _append_score(path, item.name, p, s)
                done[item.name] = (p, s)
            scored = [done[it.name] for it in items[test_set.name] if it.name in done]
            if failures:
                tqdm.write(
                    f"anyrestore benchmark: {test_set.name}: {len(failures)} image(s) failed: {failures[0]}"
                )
            if not scored:
                result.sets[test_set.name] = SetResult(
                    test_set.name, "failed", scores=path, message=failures[0]
                )
                continue
            result.sets[test_set.name] = SetResult(
                test_set.name,
                "failed" if failures else "ok",
                psnr=_mean(p for p, _ in scored),
                ssim=_mean(s for _, s in scored),
                count=len(scored),
                scores=path,
                message=f"{len(failures)} image(s) failed, first: {failures[0]}" if failures else "",
            )
    return BenchmarkRun(suite, root, [s.name for s in chosen], results, missing)
