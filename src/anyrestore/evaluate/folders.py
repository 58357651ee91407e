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
    """Prediction and ground-truth folders do not pair up (missing files or different sizes)."""


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float


@dataclass
class EvaluationTable:
    """Per-image and mean PSNR/SSIM, with the preset that defines them."""

    preset: str
    crop_border: int
    images: list[ImageScore] = field(default_factory=list)

    @property
    def mean_psnr(self) -> float:
        return math.fsum(s.psnr for s in self.images) / len(self.images)

    @property
    def mean_ssim(self) -> float:
        return math.fsum(s.ssim for s in self.images) / len(self.images)

    def to_dict(self) -> dict:
        return {
            "preset": self.preset,
            "crop_border": self.crop_border,
            "mean": {"psnr": self.mean_psnr, "ssim": self.mean_ssim, "count": len(self.images)},
            "images": [asdict(s) for s in self.images],
        }

    def format(self) -> str:
        width = max([len("image"), *(len(s.name) for s in self.images)])
        head = f"{'image':<{width}}  {'PSNR (dB)':>10}  {'SSIM':>7}"
        rows = [f"{s.name:<{width}}  {s.psnr:>10.4f}  {s.ssim:>7.4f}" for s in self.images]
        rule = "-" * len(head)
        mean = f"{'mean':<{width}}  {self.mean_psnr:>10.4f}  {self.mean_ssim:>7.4f}"
        note = f"preset {self.preset}, crop border {self.crop_border}, {len(self.images)} images"
        return "\n".join([head, rule, *rows, rule, mean, note])

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def pair_by_name(pred_dir: Path, gt_dir: Path) -> list[tuple[Path, Path]]:
    """Pair images by file stem; any file without a partner is an error listing the first few."""
    for d, role in ((pred_dir, "prediction"), (gt_dir, "ground-truth")):
        if not d.is_dir():
            raise PairingError(f"{d}: {role} folder does not exist or is not a folder")
    preds = {p.stem: p for p in list_images([pred_dir])}
    gts = {p.stem: p for p in list_images([gt_dir])}
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
    """PSNR/SSIM of every prediction against its ground truth, paired by name."""
    p = get_preset(preset, crop_border)
    pairs = pair_by_name(Path(pred_dir), Path(gt_dir))
    table = EvaluationTable(p.name, p.crop_border)
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="evaluate", unit="img")
    for pred_path, gt_path in iterator:
        pred, gt = read_image(pred_path).pixels, read_image(gt_path).pixels
        if pred.shape != gt.shape:
            raise PairingError(
                f"{pred_path}: size {pred.shape[2]}x{pred.shape[1]} differs from ground truth "
                f"{gt_path.name} ({gt.shape[2]}x{gt.shape[1]})"
            )
        table.images.append(ImageScore(pred_path.stem, float(psnr(pred, gt, p)), float(ssim(pred, gt, p))))
    return table
