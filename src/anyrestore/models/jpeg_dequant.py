"""JPEG dequantisation: estimate each 8x8 block's DCT coefficients inside their quantisation cells.

A JPEG decoder puts every luma DCT coefficient at the centre of its quantisation cell, ``k * q``; the
original coefficient lay anywhere in ``[(k - 1/2) q, (k + 1/2) q]``. All that can be recovered is where
in its cell each coefficient most likely lay, given its block and the neighbouring blocks. The
dequantiser works at block resolution (the 64 pixels of each block as channels, so block borders line
up): from a first estimate (deblocked luma), a small residual CNN proposes a change, which goes to the
DCT domain and is bounded there, per coefficient, to the cell the file puts it in, so the estimate stays
consistent with the file. A 3x3 convolution at block resolution sees 24x24 pixels, so block-border
smoothing, which a least-squares deblocking filter does linearly, is within its reach, and its cost per
pixel is 1/64 of the same network run on pixels. :func:`project_to_cells` is the plain projection.

It needs the quantisation table and the block grid, which a decoded photo still carries: its luma
DCT coefficients cluster at multiples of the table's steps on the right grid (:func:`detect_jpeg`
reads the IJG table's quality and the grid offset from the pixels alone). An image without that
signature (never compressed, or resized, noised or filtered after decoding) is returned unchanged.
Only the luma is changed; the correction is added to R, G and B alike, which leaves Cb and Cr as they
are (chroma is subsampled 4:2:0 by most encoders and left to the stages after this one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.classical._common import LUMA  # JPEG's (BT.601 full-range) luma
from anyrestore.classical.jpeg import deblock_bilateral

BLOCK = 8
# The IJG (libjpeg) luminance table at quality 50, row-major; other qualities scale it (ijg_luma_table).
IJG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
# Detection. Qualities above MAX_QUALITY leave little to restore (and their small steps are hard to tell
# from the rounding of the decoded pixels); a decoded coefficient counts as on its step's lattice within
# LATTICE_TOLERANCE (the RGB rounding and clipping of the decoder move luma coefficients by about 1).
# The score is the fraction of nonzero coefficients on the lattice minus the fraction expected by chance:
# 0.6 to 0.9 on held-out photos after JPEG at quality 10-75, below 0.1 when never compressed.
MIN_QUALITY, MAX_QUALITY = 5, 90
LATTICE_TOLERANCE = 2.0
DETECTION_SCORE = 0.4
MIN_EVIDENCE = 200  # nonzero coefficients needed before a quality is believed
SAMPLE_BLOCKS = 4096  # blocks read by the detector (an even spread over the image)
DEQUANT_SCALE = 64.0  # the steps are divided by this before the network
PROPOSAL_SCALE = 8.0  # luma levels per unit of the network's output
# Two deblockers err differently: in eval, the network starts from the mean of the least-squares
# deblocking stage's luma and the bilateral deblocker's at the file's quality (on training photos at
# quality 20: 36.22 and 36.33 dB, their mean 36.38; shares 0.3 and 0.7 did no better). Training starts
# from the same mean; the shipped network was trained before the share existed, from the least-squares
# start alone.
CLASSICAL_SHARE = 0.5


def ijg_luma_table(quality: int) -> torch.Tensor:
    """The (8, 8) luma quantisation table libjpeg (and so Pillow and OpenCV) writes at ``quality``."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must lie in 1..100, got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor(IJG_LUMA, dtype=torch.float64)
    return ((base * scale + 50) // 100).clamp(1, 255).float()


def _dct_matrix() -> torch.Tensor:
    """(64, 64) orthonormal 2-D DCT-II of an 8x8 block, rows = frequencies (u * 8 + v), columns = pixels
    (i * 8 + j); JPEG's forward DCT is exactly this."""
    n = torch.arange(BLOCK, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / (2 * BLOCK)) * math.sqrt(2 / BLOCK)
    d[0] /= math.sqrt(2)
    return torch.kron(d, d).float()


def block_dct(y: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 64, H/8, W/8) DCT coefficients of each 8x8 block (H, W multiples of 8)."""
    return torch.einsum("fp,nphw->nfhw", basis, F.pixel_unshuffle(y, BLOCK))


def block_idct(c: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`block_dct`."""
    return F.pixel_shuffle(torch.einsum("fp,nfhw->nphw", basis, c), BLOCK)


def luma_255(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 1, H, W) JPEG luma on 0..255."""
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x * weights).sum(1, keepdim=True) * 255.0


@dataclass(frozen=True)
class JPEGSignature:
    """What :func:`detect_jpeg` found: the IJG quality whose table fits, the grid offset (the first full
    block starts at row ``dy``, column ``dx``) and the score (see ``DETECTION_SCORE``)."""

    quality: int
    dy: int
    dx: int
    score: float


def _whole_blocks(shape: torch.Size, signature: JPEGSignature) -> tuple:
    """The index of the region of an (..., H, W) image that the signature's grid covers in whole blocks."""
    h, w = shape[-2:]
    dy, dx = signature.dy, signature.dx
    return (..., slice(dy, dy + (h - dy) // BLOCK * BLOCK), slice(dx, dx + (w - dx) // BLOCK * BLOCK))


def _sample_blocks(y: torch.Tensor, dy: int, dx: int, basis: torch.Tensor) -> torch.Tensor:
    """(B, 64) coefficients of an even spread of at most SAMPLE_BLOCKS blocks of a (H, W) luma on the
    grid starting at (dy, dx)."""
    h, w = (y.shape[0] - dy) // BLOCK, (y.shape[1] - dx) // BLOCK
    grid = y[dy : dy + h * BLOCK, dx : dx + w * BLOCK]
    blocks = grid.reshape(h, BLOCK, w, BLOCK).permute(0, 2, 1, 3).reshape(h * w, BLOCK * BLOCK)
    step = max(1, blocks.shape[0] // SAMPLE_BLOCKS)
    return (blocks[::step] - 128.0) @ basis.T


def _lattice_score(coefs: torch.Tensor, table: torch.Tensor) -> tuple[float, int]:
    """Fraction of the coefficients that round to a nonzero step and lie on the lattice, minus the
    fraction expected by chance; and how many such coefficients there were."""
    steps = table.reshape(1, -1)
    index = torch.round(coefs / steps)
    nonzero = index != 0
    count = int(nonzero.sum())
    if count == 0:
        return 0.0, 0
    hits = ((coefs - index * steps).abs() < LATTICE_TOLERANCE) & nonzero
    chance = (torch.clamp(2 * LATTICE_TOLERANCE / steps, max=1.0) * nonzero).sum() / count
    return float(hits.sum() / count - chance), count


def detect_jpeg(image: torch.Tensor, grid: tuple[int, int] | None = None) -> JPEGSignature | None:
    """The JPEG signature of one (3, H, W) image in [0, 1] (or its (1, H, W) luma on 0..255), or ``None``.

    The grid (unless given as ``(dy, dx)``) is the offset whose blocks have the most high-frequency
    coefficients at zero (JPEG zeroes most of them; on any other grid the block borders spread them); the
    quality is the IJG table on whose steps the most coefficients lie, beyond chance.
    """
    y = (luma_255(image[None])[0, 0] if image.shape[0] == 3 else image[0]).detach().double().cpu()
    if min(y.shape) < 2 * BLOCK:
        return None
    basis = _dct_matrix().double()
    if grid is None:
        high = torch.tensor([u + v >= BLOCK for u in range(BLOCK) for v in range(BLOCK)])
        zeros = {}
        for dy in range(BLOCK):
            for dx in range(BLOCK):
                coefs = _sample_blocks(y, dy, dx, basis)
                zeros[(dy, dx)] = float((coefs[:, high].abs() < 0.75).double().mean())
        grid = max(zeros, key=lambda k: (zeros[k], -k[0], -k[1]))
    dy, dx = grid
    coefs = _sample_blocks(y, dy, dx, basis)
    best: tuple[float, int] | None = None
    for quality in range(MIN_QUALITY, MAX_QUALITY + 1):
        score, count = _lattice_score(coefs, ijg_luma_table(quality).double())
        if count >= MIN_EVIDENCE and (best is None or score > best[0]):
            best = (score, quality)
    if best is None or best[0] < DETECTION_SCORE:
        return None
    return JPEGSignature(quality=best[1], dy=dy, dx=dx, score=best[0])


def project_to_cells(out: torch.Tensor, decoded: torch.Tensor, signature: JPEGSignature) -> torch.Tensor:
    """``out`` (1, 3, H, W), a restoration of the decoded JPEG ``decoded``, with every luma DCT coefficient
    of the blocks on the grid clamped into the quantisation cell ``decoded``'s coefficient lies in; the
    luma change goes to R, G and B alike. An orthogonal projection onto a convex set that holds the
    image before compression: it can only bring ``out`` nearer that image (in luma)."""
    inside = _whole_blocks(out.shape, signature)
    basis = _dct_matrix().to(out)
    steps = ijg_luma_table(signature.quality).reshape(1, BLOCK * BLOCK, 1, 1).to(out)
    mine = block_dct(luma_255(out[inside]) - 128.0, basis)
    index = torch.round(block_dct(luma_255(decoded[inside]) - 128.0, basis) / steps)
    clamped = torch.minimum(torch.maximum(mine, (index - 0.5) * steps), (index + 0.5) * steps)
    projected = out.clone()
    projected[inside] = out[inside] + block_idct(clamped - mine, basis) / 255.0
    return projected


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
        self.register_buffer("basis", _dct_matrix(), persistent=False)

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

    def _first(self, x: torch.Tensor, start: torch.Tensor, quality: int) -> torch.Tensor:
        """The luma the network starts from: ``start``'s, ``classical_share`` of the way to that of the
        bilateral deblocker at the file's quality."""
        first = luma_255(start)
        if self.classical_share:
            classical = luma_255(deblock_bilateral(x, quality=quality).to(first))
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
            first = torch.cat(
                [self._first(x[i : i + 1], start[i : i + 1], int(q)) for i, q in enumerate(qualities)]
            )
        return x + self.correct_luma(luma_255(x), tables, first) / 255.0

    def correct(
        self, x: torch.Tensor, signature: JPEGSignature, start: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One (1, 3, H, W) image restored given its signature: the blocks the grid covers fully are
        dequantised; edge rows and columns outside whole blocks are taken from ``start`` (RGB, a first
        estimate such as the deblocking stage's output), or left as they are. With ``start``, the luma
        the network starts from is ``classical_share`` of the way from ``start``'s to that of the
        bilateral deblocker at the file's quality (``anyrestore.classical``)."""
        inside = _whole_blocks(x.shape, signature)
        first = None if start is None else self._first(x[inside], start[inside], signature.quality)
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
