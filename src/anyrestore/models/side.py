"""Side information for models that take it: what a JPEG file still tells about its compression.

A model such as :class:`~anyrestore.models.context_nafnet.ContextNAFNet` takes ``side``, an (N, SIDE_DIM)
tensor: the base-2 logarithms of the 64 luma and 64 chroma quantisation steps divided by 8 (so 0..1), and a
last entry that is 1 when tables are known. All zeros means "no JPEG tables": a PNG, a raw photo, or a
decoded JPEG whose tables cannot be read back from its pixels.

The tables come from the file (``ImageData.jpeg_tables``, read by :mod:`anyrestore.io` with Pillow) or,
for pixels without a file (a PNG of a decoded JPEG, a training crop), from
:func:`anyrestore.classical.jpeg_format.detect_jpeg`, which finds the IJG quality whose luma table the
block DCT coefficients lie on. Training and inference encode both the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from anyrestore.classical.jpeg_format import detect_jpeg, ijg_chroma_table, ijg_luma_table

SIDE_DIM = 129
# The JPEG block size: tables describe pixels whose 8 x 8 blocks start at multiples of it, so tiles and
# padding keep to it.
JPEG_BLOCK = 8


def encode_side(tables: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The (SIDE_DIM,) side vector of (luma, chroma) quantisation tables, or of none."""
    if tables is None:
        return torch.zeros(SIDE_DIM)
    luma, chroma = (torch.as_tensor(t, dtype=torch.float32).reshape(64).clamp(1, 255) for t in tables)
    return torch.cat([luma.log2() / 8, chroma.log2() / 8, torch.ones(1)])


def tables_from_pixels(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The IJG tables of a decoded JPEG from its (3, H, W) pixels in [0, 1], or ``None`` when none shows."""
    found = detect_jpeg(image)
    if found is None:
        return None
    return ijg_luma_table(found.quality), ijg_chroma_table(found.quality)


def side_from_pixels(images: torch.Tensor) -> torch.Tensor:
    """(N, SIDE_DIM) side vectors of a batch (N, 3, H, W) in [0, 1], read from the pixels alone."""
    return torch.stack([encode_side(tables_from_pixels(image)) for image in images]).to(images.device)


def side_for(pixels: torch.Tensor, jpeg_tables: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """(1, SIDE_DIM) side vector of one image: the file's tables when it has them, else its pixels'."""
    if jpeg_tables is not None:
        return encode_side(jpeg_tables)[None]
    return side_from_pixels(pixels[None] if pixels.dim() == 3 else pixels[:1])


def takes_side(module: torch.nn.Module) -> bool:
    """Whether a model (possibly wrapped in DDP, ``torch.compile`` or normalisation) takes ``side``."""
    from anyrestore.models.normalize import bare_model

    return "side" in inspect.signature(bare_model(module).forward).parameters


def side_inputs(module: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"side": ...}`` read from a batch's pixels for models that take side information, else ``{}``.

    Training and validation use this (synthetic inputs have no file), so the model learns from the same
    estimate that inference falls back to for pixels without a JPEG file behind them.
    """
    return {"side": side_from_pixels(images.detach().float().cpu()).to(images)} if takes_side(module) else {}


def has_tables(side: torch.Tensor | None) -> bool:
    """Whether any image of an (N, SIDE_DIM) batch of side vectors carries JPEG tables."""
    return side is not None and bool((side[..., -1] > 0).any())


def transpose_side(side: torch.Tensor) -> torch.Tensor:
    """The side vectors of the transposed images: each 8 x 8 table transposed (a flip keeps them)."""
    tables = side[..., :128].reshape(*side.shape[:-1], 2, 8, 8).transpose(-2, -1)
    return torch.cat([tables.reshape(*side.shape[:-1], 128), side[..., 128:]], dim=-1)


def whole_image_context(
    module: torch.nn.Module,
) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None:
    """``conditioning(x, side)`` of a model that conditions on the whole image and takes that vector back
    as ``forward(..., cond=...)``, else ``None``. Inference and export compute it once on the whole,
    unpadded image, so that tiles and padding do not change what the model sees of the picture (not
    through a normalisation wrapper, where the conditioning would see unnormalised pixels)."""
    from anyrestore.models.normalize import ImageNetNormalized, bare_model

    bare = bare_model(module)
    conditioning = getattr(bare, "conditioning", None)
    if any(isinstance(m, ImageNetNormalized) for m in module.modules()) or not callable(conditioning):
        return None
    return conditioning if "cond" in inspect.signature(bare.forward).parameters else None
