"""Tiled forward passes for images too large to restore at once, blended without seams.

Tiles overlap by at least ``overlap`` pixels. Each tile's output is weighted by a ramp across every
overlap it shares with a neighbour (flat on the image border): zero on the quarter of the overlap nearest
its own edge, where zero padding inside the network disturbs the output, then rising linearly. The
weighted sum is divided by the summed weights; facing ramps sum to one, so the blend is a smooth
crossfade and no tile edge is visible.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EPS = 1e-6


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with tiles of ``tile`` overlapping by at least ``overlap``."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ValueError(f"tile {tile} must be larger than the overlap {overlap}")
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(length: int, rise: int, fall: int, device: torch.device) -> torch.Tensor:
    """Blending weights along one side of a tile: flat 1, ramping over the ``rise``/``fall`` overlaps.

    On an overlap of width o the weight is 0 for the outer o/4 pixels (where a tile's output suffers from
    its own border), then rises linearly to 1 over the middle half; facing ramps of two neighbours sum to
    1, so the blend is a partition of unity and the pixels nearest a tile edge never count.
    """
    w = torch.ones(length, device=device, dtype=torch.float32)
    for overlap, rising in ((rise, True), (fall, False)):
        if overlap <= 0:
            continue
        margin = overlap // 4
        i = torch.arange(overlap, device=device, dtype=torch.float32)
        ramp = ((i + 0.5 - margin) / (overlap - 2 * margin)).clamp(EPS, 1.0)
        if rising:
            w[:overlap] = torch.minimum(w[:overlap], ramp)
        else:
            w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


def tiled_forward(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    tile: int,
    overlap: int = 32,
    scale: int = 1,
    multiple: int = 1,
) -> torch.Tensor:
    """Run ``fn`` on overlapping tiles of ``x`` (N, C, H, W) and blend the outputs.

    ``tile`` is rounded down to ``multiple`` (the model's size multiple) and ``overlap`` up to it, so each
    tile is a valid model input. The output has ``scale`` times the input size.
    """
    n, _, h, w = x.shape
    if multiple > 1:
        tile = max(multiple, tile // multiple * multiple)
        overlap = -(-overlap // multiple) * multiple
    tile_h, tile_w = min(tile, h), min(tile, w)
    overlap_h = min(overlap, max(tile_h // 2, 0))
    overlap_w = min(overlap, max(tile_w // 2, 0))
    ys, xs = tile_starts(h, tile_h, overlap_h), tile_starts(w, tile_w, overlap_w)

    out = None
    weight = None
    for y0 in ys:
        for x0 in xs:
            piece = fn(x[..., y0 : y0 + tile_h, x0 : x0 + tile_w])
            if out is None:
                out = torch.zeros(
                    n, piece.shape[1], h * scale, w * scale, device=piece.device, dtype=torch.float32
                )
                weight = torch.zeros(1, 1, h * scale, w * scale, device=piece.device, dtype=torch.float32)
            # Blend only across the overlaps actually shared with the neighbours on each side.
            rise_y, fall_y = _shared(ys, y0, tile_h)
            rise_x, fall_x = _shared(xs, x0, tile_w)
            wy = _ramp(tile_h * scale, rise_y * scale, fall_y * scale, piece.device)
            wx = _ramp(tile_w * scale, rise_x * scale, fall_x * scale, piece.device)
            wt = wy[:, None] * wx[None, :]
            sy, sx = y0 * scale, x0 * scale
            out[..., sy : sy + tile_h * scale, sx : sx + tile_w * scale] += piece.float() * wt
            weight[..., sy : sy + tile_h * scale, sx : sx + tile_w * scale] += wt
    assert out is not None and weight is not None
    return out / weight


def _shared(starts: list[int], start: int, tile: int) -> tuple[int, int]:
    """Overlaps, in input pixels, of the tile at ``start`` with its previous and next neighbours."""
    i = starts.index(start)
    before = starts[i - 1] + tile - start if i > 0 else 0
    after = start + tile - starts[i + 1] if i + 1 < len(starts) else 0
    return before, after
