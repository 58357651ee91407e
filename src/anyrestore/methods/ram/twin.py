"""Twin-mask inference (RAM, Fig. 4): what a masked-pretrained model knows before fine-tuning.

The model runs twice, on two complementary 50% pixel masks of the input; each run contributes its output
at the pixels its own input had hidden, so every output pixel is a prediction of a pixel the model did not
see.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anyrestore.methods.ram.masks import MaskError, mask_unit_range, random_pixel_mask


@dataclass
class TwinMaskResult:
    """``output = mask * first + (1 - mask) * second``; ``first`` saw ``x`` hidden where mask is 1."""

    output: torch.Tensor
    mask: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor


@torch.no_grad()
def twin_mask_inference(
    model: nn.Module,
    x: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> TwinMaskResult:
    """Run a [0, 1] -> [0, 1] restorer (e.g. wrapped by ``as_unit_range``) on ``x`` with twin masks.

    ``mask`` (N, 1, H, W), 1 = hidden in the first run, defaults to a random 50% pixel mask drawn from
    ``generator``. Hidden pixels take the model's mask token (see
    :func:`~anyrestore.methods.ram.masks.mask_unit_range`).
    """
    if mask is None:
        mask = random_pixel_mask(x, 0.5, generator=generator, dtype=x.dtype)
    mask = (mask.unsqueeze(1) if mask.dim() == 3 else mask).to(device=x.device, dtype=x.dtype)
    if mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:]:
        raise MaskError(f"mask {tuple(mask.shape)} does not fit images {tuple(x.shape)}")
    first = model(mask_unit_range(x, mask, model))
    second = model(mask_unit_range(x, 1 - mask, model))
    return TwinMaskResult(mask * first + (1 - mask) * second, mask, first, second)
