"""A per-pixel degradation map drawn over its image, with a legend, for ``anyrestore analyze``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from anyrestore.methods.abair.synthesis import CLEAN

# Colours of the paper's degradations; other classes take the next colour of PALETTE.
COLOURS: dict[str, tuple[int, int, int]] = {
    "rain": (30, 120, 255),
    "haze": (170, 170, 170),
    "noise": (230, 40, 200),
    "blur": (255, 140, 0),
    "low_light": (120, 40, 220),
    "jpeg": (230, 30, 30),
    "snow": (0, 210, 210),
    "quantize": (40, 200, 60),
}
PALETTE = ((140, 86, 75), (188, 189, 34), (23, 190, 207), (227, 119, 194), (127, 127, 127), (44, 160, 44))
ALPHA = 0.5
ROW = 18


def class_colours(classes: Sequence[str]) -> list[tuple[int, int, int] | None]:
    """One colour per class (``None`` for clean, which is left uncoloured)."""
    spare = iter(PALETTE * (1 + len(classes) // len(PALETTE)))
    return [None if c == CLEAN else COLOURS.get(c) or next(spare) for c in classes]


def render_overlay(image: torch.Tensor, index: torch.Tensor, classes: Sequence[str]) -> torch.Tensor:
    """(3, H, W) image in [0, 1] and its (H, W) class map -> (3, H + legend, W) overlay in [0, 1].

    Degraded pixels are tinted with their class colour; a legend below lists every class with its share of
    the pixels.
    """
    rgb = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).astype(np.float32)
    ids = index.cpu().numpy()
    colours = class_colours(classes)
    for k, colour in enumerate(colours):
        if colour is not None:
            mask = ids == k
            rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * np.asarray(colour, dtype=np.float32)
    h, w = ids.shape
    shares = [float((ids == k).mean()) for k in range(len(classes))]
    font = ImageFont.load_default()
    entries = [f"{c} {100 * s:.0f}%" for c, s in zip(classes, shares, strict=True)]
    widths = [
        int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(e, font=font)) + ROW + 12 for e in entries
    ]
    rows, x = 1, 4
    for width in widths:
        if x + width > w and x > 4:
            rows, x = rows + 1, 4
        x += width
    canvas = Image.new("RGB", (w, h + rows * ROW + 4), (255, 255, 255))
    canvas.paste(Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y = 4, h + 3
    for entry, width, colour in zip(entries, widths, colours, strict=True):
        if x + width > w and x > 4:
            x, y = 4, y + ROW
        swatch = colour or (255, 255, 255)
        draw.rectangle([x, y + 2, x + ROW - 6, y + ROW - 4], fill=swatch, outline=(0, 0, 0))
        draw.text((x + ROW, y + 2), entry, fill=(0, 0, 0), font=font)
        x += width
    out = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255.0
    return out
