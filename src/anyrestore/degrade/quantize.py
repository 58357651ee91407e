"""Bit-depth reduction (ABAIR's "4-to-8 bit" task)."""

from __future__ import annotations

import torch

from ._util import check_image


def quantize(x: torch.Tensor, *, bits: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Round to ``2**bits`` evenly spaced levels ``k / (2**bits - 1)`` (banding, no dithering).

    With ``bits = 8`` an image already holding uint8 values ``k / 255`` is returned unchanged.
    ``generator`` is unused.
    """
    check_image(x)
    if int(bits) != bits or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer in 1..16, got {bits}")
    levels = float(2 ** int(bits) - 1)
    return torch.round(x.clamp(0.0, 1.0) * levels) / levels
