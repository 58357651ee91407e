"""Choose the default model's JPEG_KEEP and JPEG_NOISE (curve_nafnet.py) on training photos, never on
held-out ones.

    python scripts/calibrate_jpeg_keep.py MODEL DATA_ROOT

When a JPEG table shows, ``CurveNAFNet.finish`` keeps the change the stages after the dequantisation
make in proportion to its RMS size (none below ``low`` luma levels, all from ``high``) or to the noise
left in the dequantised photo (``flat_noise``, from ``n0`` to ``n1``), whichever keeps more. This scores
candidate pairs of pairs, labelled ``low-high/n0-n1`` ("off": no noise cue), on the validation photos
and every third training photo (a 384 x 512 crop of each) over JPEG alone and JPEG after noise, blur,
haze, low light and rain (basicsr PSNR, one pass), and prints the mean per case and over the cases;
"never" keeps every change (the model before), "always dequantised" none. The pick: the best mean over
the cases among the candidates that lose no case more than MAX_LOSS dB against "never" (the gains are on
JPEG alone and JPEG after slight blur; the losses on JPEG after noise and haze, whose restorations a low
threshold cuts; the noise cue keeps denoising)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anyrestore.degrade import apply_sequence, parse_op_spec
from anyrestore.evaluate import psnr
from anyrestore.models.checkpoint import load_model
from anyrestore.models.curve_nafnet import flat_noise, jpeg_keep_fraction
from anyrestore.models.jpeg_dequant import detect_jpeg, luma_255

CASES = {
    "JPEG q10": ["jpeg:quality=10"],
    "JPEG q20": ["jpeg:quality=20"],
    "JPEG q40": ["jpeg:quality=40"],
    "noise σ5 + q40": ["noise:sigma=5", "jpeg:quality=40"],
    "noise σ15 + q40": ["noise:sigma=15", "jpeg:quality=40"],
    "noise σ25 + q60": ["noise:sigma=25", "jpeg:quality=60"],
    "blur σ1 + q30": ["blur:kernel_size=15,sigma=1.0", "jpeg:quality=30"],
    "blur σ2 + q30": ["blur:kernel_size=15,sigma=2.0", "jpeg:quality=30"],
    "haze + q50": ["haze:beta=1.0", "jpeg:quality=50"],
    "low light + q50": ["low_light", "jpeg:quality=50"],
    "rain + q50": ["rain", "jpeg:quality=50"],
}
OFF = (1e9, 2e9)
CANDIDATES = [
    (keep, noise)
    for keep in [(1.0, 2.0), (2.0, 4.0), (3.0, 6.0), (4.0, 8.0), (6.0, 12.0)]
    for noise in [OFF, (1.5, 3.0), (3.0, 6.0)]
]
MAX_LOSS = 0.25


def photos(root: Path) -> dict[str, torch.Tensor]:
    paths = sorted((root / "val").glob("*.png")) + sorted((root / "train").glob("*.png"))[::3]
    out = {}
    for path in paths:
        a = np.asarray(Image.open(path).convert("RGB"))
        a = a[: min(a.shape[0], 384) // 16 * 16, : min(a.shape[1], 512) // 16 * 16]
        out[path.stem] = torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255.0
    return out


def main(model_path: str, root: Path) -> None:
    model = load_model(model_path).module.eval()
    if model.dequant is None:
        raise SystemExit(f"{model_path}: no dequantisation stage")
    labels = ["never", "always dequantised"] + [
        f"{k[0]:g}-{k[1]:g}/" + ("off" if n == OFF else f"{n[0]:g}-{n[1]:g}") for k, n in CANDIDATES
    ]
    scores: dict[str, dict[str, list[float]]] = {label: {} for label in labels}
    images = photos(root)
    print(f"{len(images)} photos from {root}")
    with torch.no_grad():
        for case, steps in CASES.items():
            for i, clean in enumerate(images.values()):
                lq, _ = apply_sequence(
                    clean, [parse_op_spec(s) for s in steps], generator=torch.Generator().manual_seed(7 + i)
                )
                if detect_jpeg(lq[0]) is None:
                    continue
                start = model.deblock(lq) if model.deblock is not None else None
                base = model.dequant(lq, start)
                change = model.restorer(model.deblur(model.curve(base))) - base
                rms = float(luma_255(change).pow(2).mean().sqrt())
                noise = flat_noise(luma_255(base))
                kept = [1.0, 0.0] + [jpeg_keep_fraction(rms, noise, k, n) for k, n in CANDIDATES]
                for label, k in zip(labels, kept, strict=True):
                    value = float(psnr((base + k * change).clamp(0, 1), clean, "basicsr"))
                    scores[label].setdefault(case, []).append(value)
    print("| keep | " + " | ".join(CASES) + " | mean |")
    print("|---" * (len(CASES) + 2) + "|")
    table = {label: [float(np.mean(scores[label][case])) for case in CASES] for label in labels}
    for label, means in table.items():
        print(f"| {label} | " + " | ".join(f"{m:.2f}" for m in means) + f" | {np.mean(means):.2f} |")
    allowed = [
        label
        for label in labels[2:]
        if all(m >= n - MAX_LOSS for m, n in zip(table[label], table["never"], strict=True))
    ]
    if allowed:
        best = max(allowed, key=lambda label: float(np.mean(table[label])))
        keep, noise = CANDIDATES[labels.index(best) - 2]
        print(f"pick: JPEG_KEEP = {keep}, JPEG_NOISE = {noise} (no case below 'never' by > {MAX_LOSS} dB)")
    else:
        print(f"pick: none (every pair loses some case by more than {MAX_LOSS} dB)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    main(sys.argv[1], Path(sys.argv[2]))
