"""Reflect-padding to a model's size multiple, and cropping the result back: no pixel is ever lost.

The one home of padding to a multiple: inference, validation during training and the ONNX wrapper use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_amounts(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Rows and columns to add (bottom, right) so both sides become multiples of ``multiple``."""
    if multiple <= 1:
        return 0, 0
    return (-height) % multiple, (-width) % multiple


def reflect_pad(x: torch.Tensor, pad_bottom: int, pad_right: int) -> torch.Tensor:
    """Pad the bottom and right edges by mirroring; falls back to repeated mirroring for tiny images.

    ``F.pad(mode="reflect")`` needs the pad to be smaller than the side; a 5-pixel image padded to 16
    is mirrored repeatedly (then edge-replicated for a 1-pixel side) instead of failing.
    """
    while pad_bottom or pad_right:
        h, w = x.shape[-2:]
        step_b = min(pad_bottom, h - 1)
        step_r = min(pad_right, w - 1)
        if step_b == 0 and step_r == 0:
            return F.pad(x, (0, pad_right, 0, pad_bottom), mode="replicate")
        x = F.pad(x, (0, step_r, 0, step_b), mode="reflect")
        pad_bottom -= step_b
        pad_right -= step_r
    return x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (N, C, H, W) to a multiple; returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    pb, pr = pad_amounts(h, w, multiple)
    return reflect_pad(x, pb, pr), (h, w)


def graph_reflect_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """:func:`pad_to_multiple` as one ``F.pad`` that an exported graph can hold for any input size
    (no Python loop on the shape): the same pixels whenever each pad is smaller than its side."""
    if multiple <= 1:
        return x
    pb, pr = pad_amounts(x.shape[-2], x.shape[-1], multiple)
    return F.pad(x, (0, pr, 0, pb), mode="reflect")


def crop_to(y: torch.Tensor, size: tuple[int, int], scale: int = 1) -> torch.Tensor:
    """Crop a (possibly upscaled) output back to ``scale`` times the original size."""
    h, w = size
    return y[..., : h * scale, : w * scale]
