"""JPEG dequantisation: estimate each 8x8 block's DCT coefficients inside their quantisation cells.

A JPEG decoder puts every luma DCT coefficient at the centre of its quantisation cell, ``k * q``; the
original coefficient lay anywhere in ``[(k - 1/2) q, (k + 1/2) q]``. All that can be recovered is where
in its cell each coefficient most likely lay, given its block and the neighbouring blocks. The
dequantiser works at block resolution (the 64 pixels of each block as channels, so block borders line
up): from a first estimate (the mean of three deblockers' luma: the model's least-squares stage, and the
bilateral and shifted-DCT deblockers of :mod:`anyrestore.classical.jpeg`), a small residual CNN proposes
a change, which goes to the DCT domain and is bounded there, per coefficient, to the cell the file puts
it in, so the estimate stays consistent with the file. A 3x3 convolution at block resolution sees 24x24
pixels, so block-border smoothing, which a least-squares deblocking filter does linearly, is within its
reach, and its cost per pixel is 1/64 of the same network run on pixels.

It needs the quantisation table and the block grid, which a decoded photo still carries
(:mod:`anyrestore.classical.jpeg_format`, whose names are re-exported here). An image without that
signature (never compressed, or resized, noised or filtered after decoding) is returned unchanged.
Only the luma is changed; the correction is added to R, G and B alike, which leaves Cb and Cr as they
are (chroma is subsampled 4:2:0 by most encoders and left to the stages after this one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.classical.jpeg import deblock_bilateral, shifted_dct_luma
from anyrestore.classical.jpeg_format import (
    BLOCK,
    JPEGSignature,
    block_dct,
    block_idct,
    dct_matrix,
    detect_jpeg,
    ijg_luma_table,
    luma_255,
    project_to_cells,
    whole_blocks,
)

__all__ = [
    "JPEGDequantizer",
    "JPEGSignature",
    "block_dct",
    "block_idct",
    "dct_matrix",
    "detect_jpeg",
    "ijg_luma_table",
    "luma_255",
    "project_to_cells",
]

DEQUANT_SCALE = 64.0  # the steps are divided by this before the network
PROPOSAL_SCALE = 8.0  # luma levels per unit of the network's output
# Deblockers err differently: in eval, the network starts from the mean of the least-squares deblocking
# stage's luma, the bilateral deblocker's at the file's quality and the shifted-DCT deblocker's. On
# training photos at quality 20 (11 photos, 384 x 512): 36.22, 36.33 and 36.79 dB, their mean 36.65; the
# stage-5b network from that mean 36.97, from the mean of the first two 36.63 (with the unweighted DCT
# deblocker, half the weight to it did no better, dropping either of the others worse).
# CLASSICAL_SHARE is the two classical deblockers' share together.
CLASSICAL_SHARE = 2 / 3


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(x)))


class JPEGDequantizer(nn.Module):
    """Luma DCT coefficients inside their quantisation cells, by a residual CNN at block resolution.

    Per block the network reads the 64 decoded pixels (block borders line up there, which a deblocking
    filter needs) and the 64 steps of the table; it proposes a change of the 64 pixels, which goes to the
    DCT domain and is bounded there, softly, by half a step each way (``s/2 * tanh(2 c / s)``), so the
    estimate stays in the coefficient's cell. ``forward`` takes RGB in [0, 1] and, in eval mode, finds
    each image's JPEG signature itself (:func:`detect_jpeg`); images without one pass unchanged. Training
    uses :meth:`apply_qualities` with known qualities, which starts from the same estimate as
    :meth:`correct`. The last layer starts at zero: a fresh dequantiser is the identity.
    """

    def __init__(self, width: int = 96, blocks: int = 4, classical_share: float = CLASSICAL_SHARE) -> None:
        super().__init__()
        self.classical_share = classical_share
        coefficients = BLOCK * BLOCK
        self.head = nn.Conv2d(3 * coefficients, width, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(width) for _ in range(blocks)])
        self.tail = nn.Conv2d(width, coefficients, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.register_buffer("basis", dct_matrix(), persistent=False)

    def correct_luma(
        self, y: torch.Tensor, table: torch.Tensor, start: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The change to a decoded luma (N, 1, H, W) on 0..255, H and W multiples of 8, grid at the
        corner, for luma steps ``table`` ((N, 64), or (64,) / (8, 8) shared). ``start`` (a first estimate
        of the luma, e.g. the deblocking stage's) is where the proposal starts; else the decoded luma."""
        steps = table.reshape(-1, BLOCK * BLOCK, 1, 1).to(y)
        first = torch.zeros_like(y) if start is None else start - y
        pixels = F.pixel_unshuffle(y / 255.0 - 0.5, BLOCK)
        features = [
            pixels,
            F.pixel_unshuffle(first / PROPOSAL_SCALE, BLOCK),
            (steps / DEQUANT_SCALE).expand_as(pixels),
        ]
        proposal = F.pixel_unshuffle(first, BLOCK) + PROPOSAL_SCALE * self.tail(
            self.body(F.gelu(self.head(torch.cat(features, 1))))
        )
        change = torch.einsum("fp,nphw->nfhw", self.basis, proposal)
        half = steps / 2
        return block_idct(half * torch.tanh(change / half), self.basis)

    def _first(self, x: torch.Tensor, start: torch.Tensor, qualities: Sequence[int]) -> torch.Tensor:
        """The luma the network starts from: ``start``'s, ``classical_share`` of the way to the mean of
        the classical deblockers' at each file's quality (bilateral, and shifted DCT with its table)."""
        first = luma_255(start)
        if self.classical_share:
            bilateral = torch.cat(
                [deblock_bilateral(x[i : i + 1], quality=int(q)) for i, q in enumerate(qualities)]
            )
            tables = torch.stack([ijg_luma_table(int(q)).flatten() for q in qualities])
            dct = shifted_dct_luma(luma_255(x).detach(), tables).to(first)
            classical = (luma_255(bilateral.to(first)) + dct) / 2
            first = first + self.classical_share * (classical - first)
        return first

    def apply_qualities(
        self, x: torch.Tensor, qualities: Sequence[int], start: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N, 3, H, W) images, H and W multiples of 8 and the grid at the corner, dequantised with the IJG
        tables of their ``qualities`` (training), from the same first estimate as :meth:`correct` (with
        ``start``, RGB, e.g. the deblocking stage's output)."""
        if x.shape[-2] % BLOCK or x.shape[-1] % BLOCK:
            raise ValueError(f"dequantisation needs sides that are multiples of 8, got {tuple(x.shape[-2:])}")
        if len(qualities) != x.shape[0]:
            raise ValueError(f"{len(qualities)} JPEG qualities for {x.shape[0]} images")
        tables = torch.stack([ijg_luma_table(int(q)).flatten() for q in qualities]).to(x)
        first = None
        if start is not None:
            first = self._first(x, start, qualities)
        return x + self.correct_luma(luma_255(x), tables, first) / 255.0

    def correct(
        self, x: torch.Tensor, signature: JPEGSignature, start: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One (1, 3, H, W) image restored given its signature: the blocks the grid covers fully are
        dequantised; edge rows and columns outside whole blocks are taken from ``start`` (RGB, a first
        estimate such as the deblocking stage's output), or left as they are. With ``start``, the luma
        the network starts from is ``classical_share`` of the way from ``start``'s to the mean of the
        classical deblockers' at the file's quality (:mod:`anyrestore.classical.jpeg`)."""
        inside = whole_blocks(x.shape, signature.dy, signature.dx)
        first = None if start is None else self._first(x[inside], start[inside], [signature.quality])
        change = self.correct_luma(luma_255(x[inside]), ijg_luma_table(signature.quality), first) / 255.0
        out = (x if start is None else start).clone()
        out[inside] = x[inside] + change
        return out

    def forward(
        self,
        x: torch.Tensor,
        start: torch.Tensor | None = None,
        signatures: Sequence[JPEGSignature | None] | None = None,
    ) -> torch.Tensor:
        """``x`` (or ``start``, a first estimate of it) where no JPEG signature shows; dequantised where one
        does (eval mode only). ``signatures``: each image's :func:`detect_jpeg`, when the caller has them."""
        base = x if start is None else start
        if self.training or x.shape[1] != 3:
            return base
        out = []
        for i, image in enumerate(x.split(1)):
            signature = detect_jpeg(image[0]) if signatures is None else signatures[i]
            first = None if start is None else start[i : i + 1]
            out.append(base[i : i + 1] if signature is None else self.correct(image, signature, first))
        return torch.cat(out)
