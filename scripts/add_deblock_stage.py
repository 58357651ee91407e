"""Give a CurveNAFNet without a deblocking stage one, its filters fitted by least squares on photos.

    python scripts/add_deblock_stage.py CURVE_NAFNET_WEIGHTS PHOTO_DIR OUT.safetensors

Every bank entry (one per JPEG quality in ``DEBLOCK_QUALITIES``) becomes, for each of the 64 positions in
an 8x8 JPEG block, the ``size`` x ``size`` linear filter plus offset that best maps the decoded luma of
the photos (JPEG-compressed whole at that quality and at its two neighbours, quality +-2, with Pillow as
``anyrestore.degrade.jpeg_compress``) to their original luma: normal equations over every pixel of that
position. The estimator starts within 0.25% of the identity, so the written model restores as the input
model does (checked here, to 1e-2); recipe ``default_model_deblock`` then trains the estimator. This is
how the default model's deblocking stage starts (docs/default-model.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anyrestore.degrade import jpeg_compress
from anyrestore.models.checkpoint import load_model, save_model
from anyrestore.models.curve_nafnet import DEBLOCK_QUALITIES, JPEG_BLOCK, LUMA, fit_deblock_filters
from anyrestore.models.descriptor import ModelDescriptor

SIZE = 11


def load_photos(photo_dir: Path) -> list[torch.Tensor]:
    """Every .png/.jpg of ``photo_dir`` as (1, 3, H, W) in [0, 1], cut to multiples of 8."""
    photos = []
    for path in sorted(photo_dir.iterdir()):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        a = np.asarray(Image.open(path).convert("RGB"))
        h, w = a.shape[:2]
        a = np.ascontiguousarray(a[: h - h % JPEG_BLOCK, : w - w % JPEG_BLOCK])
        photos.append(torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255.0)
    if not photos:
        raise SystemExit(f"{photo_dir}: no .png or .jpg photos")
    return photos


def luma(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor(LUMA, dtype=x.dtype)[None, :, None, None]).sum(1, keepdim=True)


def jpeg_pairs(photos: list[torch.Tensor], quality: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(decoded, original) luma of every photo at ``quality`` and its two neighbours (+-2)."""
    for photo in photos:
        for q in (quality - 2, quality, quality + 2):
            yield luma(jpeg_compress(photo.float(), quality=max(1, min(100, q))).double()), luma(photo)


def main(source: str, photo_dir: str, out: str) -> None:
    loaded = load_model(source)
    has_stage = getattr(loaded.module, "deblock", None) is not None
    if loaded.descriptor.architecture != "curve_nafnet" or has_stage:
        raise SystemExit(f"{source}: not a curve_nafnet without a deblocking stage")
    config = {**loaded.descriptor.config, "deblock_qualities": DEBLOCK_QUALITIES, "deblock_size": SIZE}
    descriptor = ModelDescriptor.for_architecture("curve_nafnet", config)
    model = descriptor.build().eval()
    missing, unexpected = model.load_state_dict(loaded.module.state_dict(), strict=False)
    if unexpected or any(not k.startswith("deblock.") for k in missing):
        raise SystemExit(f"{source}: weights do not fit (missing {missing}, unexpected {unexpected})")
    photos = load_photos(Path(photo_dir))
    with torch.no_grad():
        for i, quality in enumerate(DEBLOCK_QUALITIES):
            kernels, offsets = fit_deblock_filters(jpeg_pairs(photos, quality), SIZE)
            model.deblock.kernels[i] = kernels
            model.deblock.offsets[i] = offsets
            print(f"quality {quality}: 64 filters fitted on {len(photos)} photos", flush=True)
        x = torch.rand(1, 3, 48, 64)
        gap = float((model(x) - loaded.module(x)).abs().max())
    if gap > 1e-2:
        raise SystemExit(f"the new model differs from {source} by {gap:.2e}")
    save_model(out, descriptor, model, model)
    print(f"{out}: curve_nafnet with a deblocking stage (max |difference| to {source} {gap:.1e})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    main(*sys.argv[1:])
