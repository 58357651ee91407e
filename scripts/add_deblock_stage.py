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
from stage_surgery import photo_paths, save_if_close, with_new_stage

from anyrestore.degrade import jpeg_compress
from anyrestore.models.curve_nafnet import DEBLOCK_QUALITIES, JPEG_BLOCK, LUMA, fit_deblock_filters

SIZE = 11


def load_photos(photo_dir: Path) -> list[torch.Tensor]:
    """Every .png/.jpg of ``photo_dir`` as (1, 3, H, W) in [0, 1], cut to multiples of 8."""
    photos = []
    for path in photo_paths(photo_dir):
        a = np.asarray(Image.open(path).convert("RGB"))
        h, w = a.shape[:2]
        a = a[: h - h % JPEG_BLOCK, : w - w % JPEG_BLOCK].copy()
        photos.append(torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255.0)
    return photos


def luma(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor(LUMA, dtype=x.dtype)[None, :, None, None]).sum(1, keepdim=True)


def jpeg_pairs(photos: list[torch.Tensor], quality: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(decoded, original) luma of every photo at ``quality`` and its two neighbours (+-2)."""
    for photo in photos:
        for q in (quality - 2, quality, quality + 2):
            yield luma(jpeg_compress(photo.float(), quality=max(1, min(100, q))).double()), luma(photo)


def main(source: str, photo_dir: str, out: str) -> None:
    settings = {"deblock_qualities": DEBLOCK_QUALITIES, "deblock_size": SIZE}
    loaded, descriptor, model = with_new_stage(source, "deblock", settings)
    photos = load_photos(Path(photo_dir))
    with torch.no_grad():
        for i, quality in enumerate(DEBLOCK_QUALITIES):
            kernels, offsets = fit_deblock_filters(jpeg_pairs(photos, quality), SIZE)
            model.deblock.kernels[i] = kernels
            model.deblock.offsets[i] = offsets
            print(f"quality {quality}: 64 filters fitted on {len(photos)} photos", flush=True)
    gap = save_if_close(out, descriptor, model, loaded.module, 1e-2, source)
    print(f"{out}: curve_nafnet with a deblocking stage (max |difference| to {source} {gap:.1e})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    main(*sys.argv[1:])
