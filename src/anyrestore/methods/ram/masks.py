"""RAM's pixel masks: a fixed share of (patch x patch) blocks hidden per image, one mask for all channels.

Convention: mask value 1 = hidden (as RAM's models take it in ``forward(x, mask)``). A hidden pixel
becomes the mask token, 0 in the model's input space; for RAM's ImageNet-normalised checkpoints that is the
ImageNet mean colour in [0, 1] space (:func:`mask_unit_range` does the masking on [0, 1] images).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from anyrestore.attribution.units import unit_range_wrapper
from anyrestore.errors import AnyRestoreError
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.registry import IMAGENET_MEAN


class MaskError(AnyRestoreError):
    """Bad mask arguments (ratio, patch size, shapes)."""


def random_pixel_mask(
    like: torch.Tensor | Sequence[int],
    ratio: float = 0.5,
    patch: int = 1,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A (N, 1, H, W) mask hiding exactly round(ratio * patches) random patch x patch blocks per image.

    ``like`` is an image batch (N, C, H, W) (the mask is made on its device) or a shape (N, H, W). The
    patches tile the image from the top-left corner (the last row/column of blocks may be cut). Every
    subset of that size is equally likely; draws come from ``generator`` only (the global RNG if None).
    """
    if isinstance(like, torch.Tensor):
        if like.dim() < 3:
            raise MaskError(
                f"expected an image batch (N, C, H, W) or (N, H, W), got shape {tuple(like.shape)}"
            )
        n, h, w = like.shape[0], like.shape[-2], like.shape[-1]
        device = like.device
    else:
        if len(like) != 3:
            raise MaskError(f"expected a shape (N, H, W), got {tuple(like)}")
        n, h, w = (int(v) for v in like)
        device = generator.device if generator is not None else torch.device("cpu")
    if not 0.0 <= ratio <= 1.0:
        raise MaskError(f"mask ratio must be in [0, 1], got {ratio}")
    if patch < 1:
        raise MaskError(f"patch size must be at least 1, got {patch}")
    gh, gw = math.ceil(h / patch), math.ceil(w / patch)
    patches = gh * gw
    count = math.floor(ratio * patches + 0.5)
    draw_on = generator.device if generator is not None else device
    noise = torch.rand(n, patches, generator=generator, device=draw_on).to(device)
    hidden = torch.zeros(n, patches, dtype=torch.bool, device=device)
    hidden.scatter_(1, noise.topk(count, dim=1).indices, True)
    hidden = hidden.view(n, 1, gh, gw)
    if patch > 1:
        hidden = hidden.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)[..., :h, :w]
    return hidden.to(dtype)


def _as_4d(mask: torch.Tensor) -> torch.Tensor:
    return mask.unsqueeze(1) if mask.dim() == 3 else mask


def apply_mask(x: torch.Tensor, mask: torch.Tensor, token: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``x`` (model input space) with hidden pixels (mask 1) replaced by ``token`` (RAM: 0)."""
    m = _as_4d(mask).to(x.dtype)
    out = x * (1 - m)
    if isinstance(token, torch.Tensor) or token != 0.0:
        out = out + m * token
    return out


def mask_token_colour(source: nn.Module | ModelDescriptor) -> torch.Tensor:
    """The [0, 1] colour (1, 3, 1, 1) that the model-space mask token 0 stands for: the ImageNet mean
    for ImageNet-normalised models (a descriptor saying so, or a model wrapped by ``as_unit_range``),
    black otherwise."""
    if isinstance(source, ModelDescriptor):
        imagenet = source.normalization == "imagenet"
        return torch.tensor(IMAGENET_MEAN if imagenet else (0.0, 0.0, 0.0)).view(1, 3, 1, 1)
    wrapper = unit_range_wrapper(source)
    if wrapper is None:
        return torch.zeros(1, 3, 1, 1)
    return wrapper.mean.detach().float().cpu().view(1, 3, 1, 1)


def mask_unit_range(x: torch.Tensor, mask: torch.Tensor, source: nn.Module | ModelDescriptor) -> torch.Tensor:
    """A [0, 1] image masked so that, once normalised for the model, hidden pixels are exactly 0."""
    return apply_mask(x, mask, mask_token_colour(source).to(device=x.device, dtype=x.dtype))
