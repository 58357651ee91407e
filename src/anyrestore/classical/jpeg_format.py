"""What a decoded JPEG still tells: its block grid, its quantisation table, and the cell each luma DCT
coefficient lies in.

A JPEG decoder puts every luma DCT coefficient of an 8x8 block at the centre of its quantisation cell,
``k * q``; the original coefficient lay anywhere in ``[(k - 1/2) q, (k + 1/2) q]``. The decoded pixels
keep that signature: on the right grid their coefficients cluster at multiples of the table's steps
(:func:`detect_jpeg` reads the IJG table's quality and the grid offset from the pixels alone), and any
restoration can be moved into the cells (:func:`project_to_cells`), which only brings it nearer the
image before compression. Shared by the classical DCT deblocker (:mod:`anyrestore.classical.jpeg`) and
the learned dequantisation stage (:mod:`anyrestore.models.jpeg_dequant`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._common import LUMA  # JPEG's (BT.601 full-range) luma

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
# The IJG chrominance table at quality 50 (ITU-T T.81, Annex K), scaled like the luma one.
IJG_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
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


def ijg_luma_table(quality: int) -> torch.Tensor:
    """The (8, 8) luma quantisation table libjpeg (and so Pillow and OpenCV) writes at ``quality``."""
    return _ijg_table(IJG_LUMA, quality)


def ijg_chroma_table(quality: int) -> torch.Tensor:
    """The (8, 8) chroma quantisation table libjpeg writes at ``quality``."""
    return _ijg_table(IJG_CHROMA, quality)


def _ijg_table(base_table: tuple, quality: int) -> torch.Tensor:
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must lie in 1..100, got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor(base_table, dtype=torch.float64)
    return ((base * scale + 50) // 100).clamp(1, 255).float()


def dct_matrix() -> torch.Tensor:
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


def whole_blocks(shape: torch.Size, dy: int, dx: int) -> tuple:
    """The index of the region of an (..., H, W) image that the grid at offset (dy, dx) covers in whole
    blocks."""
    h, w = shape[-2:]
    return (..., slice(dy, dy + (h - dy) // BLOCK * BLOCK), slice(dx, dx + (w - dx) // BLOCK * BLOCK))


def _sample_blocks(y: torch.Tensor, dy: int, dx: int, basis: torch.Tensor) -> torch.Tensor:
    """(B, 64) coefficients of an even spread of at most SAMPLE_BLOCKS blocks of a (H, W) luma on the
    grid starting at (dy, dx)."""
    h, w = (y.shape[0] - dy) // BLOCK, (y.shape[1] - dx) // BLOCK
    step = max(1, h * w // SAMPLE_BLOCKS)
    # The blocks k = 0, step, 2 step, ... in row-major order, gathered alone (copying every block of the
    # image first, once per grid offset, was most of the time the default model spent on a photo).
    k = torch.arange(0, h * w, step, device=y.device)
    offsets = torch.arange(BLOCK, device=y.device)
    rows = dy + (k // w)[:, None] * BLOCK + offsets
    cols = dx + (k % w)[:, None] * BLOCK + offsets
    blocks = y.reshape(-1).take((rows[:, :, None] * y.shape[1] + cols[:, None, :]).reshape(-1))
    blocks = blocks.reshape(-1, BLOCK * BLOCK)
    return (blocks - 128.0) @ basis.T


def _lattice_scores(coefs: torch.Tensor, tables: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of the (Q, 64) ``tables``: the fraction of the (B, 64) coefficients that round to a
    nonzero step and lie on the lattice, minus the fraction expected by chance (0 when there are none);
    and how many such coefficients there were. Both (Q,)."""
    scores, counts = [], []
    for chunk in tables.split(16):  # (16, B, 64) at a time keeps memory small on large images
        steps = chunk[:, None, :]
        index = torch.round(coefs[None] / steps)
        nonzero = index != 0
        count = nonzero.sum(dim=(1, 2))
        hits = (((coefs[None] - index * steps).abs() < LATTICE_TOLERANCE) & nonzero).sum(dim=(1, 2))
        chance = (torch.clamp(2 * LATTICE_TOLERANCE / steps, max=1.0) * nonzero).sum(dim=(1, 2))
        safe = count.clamp_min(1).double()
        scores.append(torch.where(count > 0, hits / safe - chance / safe, torch.zeros_like(safe)))
        counts.append(count)
    return torch.cat(scores), torch.cat(counts)


def _find_grid(y: torch.Tensor, basis: torch.Tensor) -> tuple[int, int]:
    """The offset (dy, dx) of a (H, W) luma's 8x8 grid: the one whose blocks have the most high-frequency
    coefficients at zero (JPEG zeroes most of them; on any other grid the block borders spread them)."""
    high = torch.tensor([u + v >= BLOCK for u in range(BLOCK) for v in range(BLOCK)])
    # Only the high frequencies are counted: only their rows of the DCT are computed.
    high_basis = basis[high]
    zeros = {}
    for dy in range(BLOCK):
        for dx in range(BLOCK):
            coefs = _sample_blocks(y, dy, dx, high_basis)
            zeros[(dy, dx)] = float((coefs.abs() < 0.75).double().mean())
    return max(zeros, key=lambda k: (zeros[k], -k[0], -k[1]))


def jpeg_grid(image: torch.Tensor) -> tuple[int, int]:
    """The 8x8 grid offset ``(dy, dx)`` of one (3, H, W) image in [0, 1] (the first full block starts at
    row ``dy``, column ``dx``), for callers that know the quality; ``(0, 0)`` when smaller than 2 blocks."""
    y = luma_255(image[None])[0, 0].detach().double().cpu()
    return (0, 0) if min(y.shape) < 2 * BLOCK else _find_grid(y, dct_matrix().double())


def detect_jpeg(image: torch.Tensor, grid: tuple[int, int] | None = None) -> JPEGSignature | None:
    """The JPEG signature of one (3, H, W) image in [0, 1] (or its (1, H, W) luma on 0..255), or ``None``.

    The grid (unless given as ``(dy, dx)``) is the offset whose blocks have the most high-frequency
    coefficients at zero (JPEG zeroes most of them; on any other grid the block borders spread them); the
    quality is the IJG table on whose steps the most coefficients lie, beyond chance.
    """
    y = (luma_255(image[None])[0, 0] if image.shape[0] == 3 else image[0]).detach().double().cpu()
    if min(y.shape) < 2 * BLOCK:
        return None
    basis = dct_matrix().double()
    dy, dx = _find_grid(y, basis) if grid is None else grid
    coefs = _sample_blocks(y, dy, dx, basis)
    qualities = range(MIN_QUALITY, MAX_QUALITY + 1)
    tables = torch.stack([ijg_luma_table(q).double().reshape(-1) for q in qualities])
    scores, counts = _lattice_scores(coefs, tables)
    best: tuple[float, int] | None = None
    for quality, score, count in zip(qualities, scores.tolist(), counts.tolist(), strict=True):
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
    inside = whole_blocks(out.shape, signature.dy, signature.dx)
    table = ijg_luma_table(signature.quality)
    change = project_luma_to_cells(luma_255(out[inside]), luma_255(decoded[inside]), table)
    projected = out.clone()
    projected[inside] = out[inside] + change / 255.0
    return projected


def project_luma_to_cells(estimate: torch.Tensor, decoded: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The change that moves a luma ``estimate`` (N, 1, H, W) on 0..255, grid at the corner, H and W
    multiples of 8, into the quantisation cells (``table``: (8, 8) or (64,), or (N, 64) one per image) of
    the ``decoded`` luma's coefficients."""
    basis = dct_matrix().to(estimate)
    steps = table.reshape(-1, BLOCK * BLOCK, 1, 1).to(estimate)
    mine = block_dct(estimate - 128.0, basis)
    index = torch.round(block_dct(decoded - 128.0, basis) / steps)
    clamped = torch.minimum(torch.maximum(mine, (index - 0.5) * steps), (index + 0.5) * steps)
    return block_idct(clamped - mine, basis)
