"""Give a CurveNAFNet without a deblurring stage one, its kernels fitted by least squares on photos.

    python scripts/add_deblur_stage.py CURVE_NAFNET_WEIGHTS PHOTO_DIR OUT.safetensors

Every kernel of the bank (one per blur width in ``DEBLUR_SIGMAS``) becomes the 21x21 linear filter that
best maps Gaussian-blurred, 8-bit-quantised crops of the photos back to the sharp ones (normal
equations over ~100k pixels per width; quantising keeps the filters from amplifying what a real photo
has in its lowest bit). The estimator starts within 0.25% of the identity, so the written model
restores as the input model does (checked here, to 1e-2); recipe ``default_model_deblur`` then trains
the stage. This is how the default model's third stage starts (docs/default-model.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from stage_surgery import photo_paths, save_if_close, with_new_stage

from anyrestore.degrade import gaussian_blur
from anyrestore.models.curve_nafnet import DEBLUR_SIGMAS

CROP = 96
CROPS_PER_PHOTO = 16


def sharp_crops(photo_dir: Path, seed: int = 0) -> torch.Tensor:
    """(M, 1, CROP, CROP) luminance crops at random places in every photo of ``photo_dir``."""
    g = torch.Generator().manual_seed(seed)
    crops = []
    for path in photo_paths(photo_dir):
        gray = torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0)
        h, w = gray.shape
        for _ in range(CROPS_PER_PHOTO):
            top = int(torch.randint(0, h - CROP + 1, (1,), generator=g))
            left = int(torch.randint(0, w - CROP + 1, (1,), generator=g))
            crops.append(gray[top : top + CROP, left : left + CROP])
    return torch.stack(crops)[:, None]


def fit_kernel(sharp: torch.Tensor, sigma: float, size: int) -> torch.Tensor:
    """Least-squares ``size`` x ``size`` filter from blurred, quantised ``sharp`` back to ``sharp``."""
    blurred = (gaussian_blur(sharp, kernel_size=15, sigma=sigma) * 255.0).round() / 255.0
    pad = size // 2
    a = torch.zeros(size * size, size * size, dtype=torch.float64)
    b = torch.zeros(size * size, dtype=torch.float64)
    for start in range(0, len(sharp), 16):  # in chunks: the windows of all crops at once need gigabytes
        cols = F.unfold(blurred[start : start + 16].double(), size)  # (m, size*size, windows inside)
        target = sharp[start : start + 16, :, pad:-pad, pad:-pad].double().flatten(1)
        a += torch.einsum("mip,mjp->ij", cols, cols)
        b += torch.einsum("mip,mp->i", cols, target)
    a += 1e-6 * a.diagonal().mean() * torch.eye(size * size, dtype=a.dtype)
    return torch.linalg.solve(a, b).reshape(size, size).float()


def main(source: str, photo_dir: str, out: str) -> None:
    loaded, descriptor, model = with_new_stage(
        source, "deblur", {"deblur_sigmas": DEBLUR_SIGMAS, "deblur_size": 21}
    )
    sharp = sharp_crops(Path(photo_dir))
    with torch.no_grad():
        for i, sigma in enumerate(DEBLUR_SIGMAS):
            model.deblur.kernels[i] = fit_kernel(sharp, sigma, model.deblur.size)
            total = float(model.deblur.kernels[i].sum())
            print(f"sigma {sigma}: kernel fitted on {len(sharp)} crops, taps sum to {total:.4f}")
    gap = save_if_close(out, descriptor, model, loaded.module, 1e-2, source)
    print(f"{out}: curve_nafnet with a deblurring stage (max |difference| to {source} {gap:.1e})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    main(*sys.argv[1:])
