"""Score a folder of restored images against a folder of ground truths, paired by file name."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anyrestore.errors import AnyRestoreError
from anyrestore.evaluate.metrics import MetricPreset, get_preset, psnr, ssim
from anyrestore.io import atomic_output, list_images, read_image


class PairingError(AnyRestoreError):
    """Prediction and ground-truth folders do not pair up (missing files, two files of one name, or an
    image whose size differs from its partner's)."""


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float


@dataclass
class EvaluationTable:
    """Per-image and mean PSNR/SSIM, with the preset that defines them, and the pairs that could not be
    scored (unreadable, or sizes that differ), one line each naming the file and the problem."""

    preset: str
    crop_border: int
    images: list[ImageScore] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def mean_psnr(self) -> float:
        return math.fsum(s.psnr for s in self.images) / len(self.images) if self.images else math.nan

    @property
    def mean_ssim(self) -> float:
        return math.fsum(s.ssim for s in self.images) / len(self.images) if self.images else math.nan

    def to_dict(self) -> dict:
        return {
            "preset": self.preset,
            "crop_border": self.crop_border,
            "mean": {
                "psnr": self.mean_psnr if self.images else None,
                "ssim": self.mean_ssim if self.images else None,
                "count": len(self.images),
            },
            "images": [asdict(s) for s in self.images],
            "problems": list(self.problems),
        }

    def format(self) -> str:
        width = max([len("image"), *(len(s.name) for s in self.images)])
        head = f"{'image':<{width}}  {'PSNR (dB)':>10}  {'SSIM':>7}"
        rows = [f"{s.name:<{width}}  {s.psnr:>10.4f}  {s.ssim:>7.4f}" for s in self.images]
        rule = "-" * len(head)
        mean = f"{'mean':<{width}}  {self.mean_psnr:>10.4f}  {self.mean_ssim:>7.4f}"
        note = f"preset {self.preset}, crop border {self.crop_border}, {len(self.images)} images"
        if self.problems:
            note += f", {len(self.problems)} pair(s) not scored"
        return "\n".join([head, rule, *rows, rule, mean, note])

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _by_stem(folder: Path) -> dict[str, Path]:
    """A folder's images by file stem; two files of one stem (``a.png``, ``a.jpg``) cannot be paired."""
    found: dict[str, Path] = {}
    for path in list_images([folder]):
        if path.stem in found:
            raise PairingError(
                f"{folder}: {found[path.stem].name} and {path.name} have the same name "
                f"'{path.stem}'; pairing by name needs one file per name"
            )
        found[path.stem] = path
    return found


def pair_by_name(pred_dir: Path, gt_dir: Path) -> list[tuple[Path, Path]]:
    """Pair images by file stem; any file without a partner, or two files of one stem, is an error
    listing the first few."""
    for d, role in ((pred_dir, "prediction"), (gt_dir, "ground-truth")):
        if not d.is_dir():
            raise PairingError(f"{d}: {role} folder does not exist or is not a folder")
    preds = _by_stem(pred_dir)
    gts = _by_stem(gt_dir)
    if not gts:
        raise PairingError(f"{gt_dir}: no images in the ground-truth folder")
    missing = sorted(set(gts) - set(preds))
    extra = sorted(set(preds) - set(gts))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise PairingError(f"{pred_dir}: no prediction for {len(missing)} ground-truth image(s): {shown}")
    if extra:
        shown = ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise PairingError(f"{gt_dir}: no ground truth for {len(extra)} prediction(s): {shown}")
    return [(preds[k], gts[k]) for k in sorted(gts)]


def evaluate_folders(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    preset: str | MetricPreset = "basicsr",
    crop_border: int | None = None,
    progress: bool = False,
) -> EvaluationTable:
    """PSNR/SSIM of every prediction against its ground truth, paired by name.

    Pairing problems (a file without a partner, two files of one name) are raised before any image is
    read; a pair that cannot be scored (unreadable image, sizes that differ) is listed in the table's
    ``problems`` and the others are scored.
    """
    p = get_preset(preset, crop_border)
    pairs = pair_by_name(Path(pred_dir), Path(gt_dir))
    table = EvaluationTable(p.name, p.crop_border)
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="evaluate", unit="img")
    for pred_path, gt_path in iterator:
        try:
            pred, gt = read_image(pred_path).pixels, read_image(gt_path).pixels
        except AnyRestoreError as exc:
            table.problems.append(str(exc))
            continue
        if pred.shape != gt.shape:
            table.problems.append(
                f"{pred_path}: size {pred.shape[2]}x{pred.shape[1]} differs from ground truth "
                f"{gt_path.name} ({gt.shape[2]}x{gt.shape[1]})"
            )
            continue
        table.images.append(ImageScore(pred_path.stem, float(psnr(pred, gt, p)), float(ssim(pred, gt, p))))
    return table
