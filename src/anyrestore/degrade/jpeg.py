"""JPEG compression artifacts through a real codec round trip."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from ._util import check_image


def jpeg_compress(
    x: torch.Tensor, *, quality: int = 30, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Encode every image of the batch as a baseline JPEG with Pillow (libjpeg) and decode it again.

    Pixels are rounded to uint8 first, as a saved image would be. Chroma is subsampled 4:2:0 (the
    libjpeg / OpenCV default that the training pipelines of the papers get) and the standard IJG
    quantisation tables are scaled by ``quality`` (1..100). Runs on CPU; the result returns to the input's
    device and dtype. Needs 3 channels (RGB) or 1 (grayscale). ``generator`` is unused.
    """
    check_image(x)
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must lie in 1..100, got {quality}")
    n, c, _, _ = x.shape
    if c not in (1, 3):
        raise ValueError(f"JPEG needs 1 or 3 channels, got {c}")
    u8 = (x.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    out = []
    for i in range(n):
        arr = u8[i].numpy()
        img = Image.fromarray(arr[..., 0] if c == 1 else arr)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
        buf.seek(0)
        with Image.open(buf) as dec:
            decoded = np.asarray(dec.convert("L" if c == 1 else "RGB"), dtype=np.uint8)
        out.append(torch.from_numpy(decoded.reshape(decoded.shape[0], decoded.shape[1], c).copy()))
    y = torch.stack(out).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return y.to(device=x.device, dtype=x.dtype)
