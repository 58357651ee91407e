"""Composing degradations: in sequence (hybrid degradations) or per region (ABAIR's degradation CutMix),
always with a per-pixel label map of which step produced each pixel."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ._util import check_image
from .registry import get_operator
from .spec import parse_op_spec

Step = tuple[str, Mapping[str, Any]] | str

NAMED_PIPELINES: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    # AdaptIR's second-order degradations (LR4&Noise30, LR4&JPEG30).
    "lr4_noise30": (("downsample", {"scale": 4}), ("noise", {"sigma": 30.0})),
    # LR4&Noise30 as AdaptIR's release makes it (the paper does not say): the 8-bit bicubic LR image,
    # noise added to it, the result stored in 8 bits (the release truncates, we round). JPEG is 8-bit anyway.
    "lr4_noise30_8bit": (
        ("downsample", {"scale": 4}),
        ("quantize", {"bits": 8}),
        ("noise", {"sigma": 30.0}),
        ("quantize", {"bits": 8}),
    ),
    "lr4_jpeg30": (("downsample", {"scale": 4}), ("jpeg", {"quality": 30})),
    # ABAIR's mixed-degradation pairs; the paper gives no parameters, these are ours.
    "blur_noise": (("blur", {"kernel_size": 15, "sigma": 2.0}), ("noise", {"sigma": 25.0})),
    "blur_jpeg": (("blur", {"kernel_size": 15, "sigma": 2.0}), ("jpeg", {"quality": 30})),
    "haze_snow": (("haze", {"beta": 1.0}), ("snow", {})),
}


def _normalise_steps(steps: Sequence[Step]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for step in steps:
        if isinstance(step, str):
            out.append(parse_op_spec(step))
        else:
            name, params = step
            get_operator(name)
            out.append((name, dict(params or {})))
    return out


def _labels_to_size(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Carry a (N, 1, h, w) bool map to a new resolution: a pixel is marked when any pixel it covers is."""
    h, w = labels.shape[-2:]
    oh, ow = size
    if (oh, ow) == (h, w):
        return labels
    if oh <= h and ow <= w:
        fh, fw = h // oh, w // ow
        cropped = labels[..., : oh * fh, : ow * fw].to(torch.float32)
        pooled = F.max_pool2d(cropped, (fh, fw))
        if pooled.shape[-2:] == (oh, ow):
            return pooled > 0
    return F.interpolate(labels.to(torch.float32), size=(oh, ow), mode="nearest") > 0


def apply_sequence(
    x: torch.Tensor, steps: Sequence[Step], *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``steps`` one after another; return the result and its (N, K, H', W') bool label map.

    A step is ``(name, params)`` (``params`` may hold ``preset=<name>`` to sample) or a spec string such as
    ``"jpeg:quality=30"``. Label channel k is True where step k touched the pixel: everywhere for global
    operators, only the changed pixels for local ones (rain, snow, salt-and-pepper). Labels are at the
    output resolution: a resizing step marks every output pixel and carries the earlier maps along (an
    output pixel is marked when any input pixel of its footprint was).
    """
    check_image(x)
    y = x
    labels: list[torch.Tensor] = []
    for name, params in _normalise_steps(steps):
        op = get_operator(name)
        out = op.apply(y, generator=generator, **op.resolve(params, generator))
        if op.resizes:
            labels = [_labels_to_size(lab, tuple(out.shape[-2:])) for lab in labels]
        n, _, h, w = out.shape
        if op.local and not op.resizes:
            touched = (out != y).any(dim=1, keepdim=True)
        else:
            touched = torch.ones(n, 1, h, w, dtype=torch.bool, device=out.device)
        labels.append(touched)
        y = out
    if not labels:
        n, _, h, w = x.shape
        return x.clone(), torch.zeros(n, 0, h, w, dtype=torch.bool, device=x.device)
    return y, torch.cat(labels, dim=1)


def random_boxes(
    n: int,
    k: int,
    size: tuple[int, int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    area: tuple[float, float] = (0.1, 0.5),
    aspect: tuple[float, float] = (0.5, 2.0),
) -> torch.Tensor:
    """(N, K, H, W) bool masks of random axis-aligned rectangles, one per image and step.

    Each rectangle covers a fraction of the image drawn from U(``area``) with a height/width ratio from a
    log-uniform ``aspect`` range, at a uniformly random position inside the frame.
    """
    h, w = size
    u = torch.rand(4, n, k, generator=generator, device=device, dtype=torch.float64)
    frac = area[0] + (area[1] - area[0]) * u[0]
    ratio = torch.exp(math.log(aspect[0]) + (math.log(aspect[1]) - math.log(aspect[0])) * u[1])
    bh = (torch.sqrt(frac * ratio) * h).round().clamp(1, h).long()
    bw = (torch.sqrt(frac / ratio) * w).round().clamp(1, w).long()
    top = (u[2] * (h - bh + 1)).floor().long().clamp(max=h - 1)
    left = (u[3] * (w - bw + 1)).floor().long().clamp(max=w - 1)
    rows = torch.arange(h, device=device).view(1, 1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, 1, w)
    in_rows = (rows >= top[..., None, None]) & (rows < (top + bh)[..., None, None])
    in_cols = (cols >= left[..., None, None]) & (cols < (left + bw)[..., None, None])
    return in_rows & in_cols


def _region_masks(regions: torch.Tensor, n: int, k: int, size: tuple[int, int]) -> torch.Tensor:
    """Turn user regions into (N, K, H, W) bool masks."""
    h, w = size
    if regions.dtype == torch.bool:
        masks = regions[None] if regions.dim() == 3 else regions
        if (
            masks.dim() != 4
            or masks.shape[1] != k
            or masks.shape[-2:] != (h, w)
            or masks.shape[0] not in (1, n)
        ):
            raise ValueError(
                f"boolean regions must be (N, {k}, {h}, {w}) or ({k}, {h}, {w}), got {tuple(regions.shape)}"
            )
        return masks.expand(n, k, h, w)
    if regions.is_floating_point() or regions.is_complex():
        raise ValueError(f"regions must be a bool mask or an integer id map, got {regions.dtype}")
    ids = regions[None] if regions.dim() == 2 else regions
    if ids.dim() != 3 or ids.shape[-2:] != (h, w) or ids.shape[0] not in (1, n):
        raise ValueError(f"region id maps must be (N, {h}, {w}) or ({h}, {w}), got {tuple(regions.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > k):
        raise ValueError(f"region ids must lie in 0..{k} (0 = clean, i+1 = step i)")
    steps = torch.arange(1, k + 1, device=ids.device).view(1, k, 1, 1)
    return (ids[:, None] == steps).expand(n, k, h, w)


def apply_regions(
    x: torch.Tensor,
    steps: Sequence[Step],
    *,
    generator: torch.Generator | None = None,
    regions: str | torch.Tensor = "cutmix",
    area: tuple[float, float] = (0.1, 0.5),
    aspect: tuple[float, float] = (0.5, 2.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Degradation CutMix: each step degrades the whole clean image and is pasted inside its own region.

    ``regions="cutmix"`` draws one random rectangle per image and step (:func:`random_boxes` with ``area``
    and ``aspect``); otherwise pass (N, K, H, W) / (K, H, W) bool masks or an (N, H, W) / (H, W) integer id
    map (0 = clean, i+1 = step i). Where regions overlap the later step wins; pixels outside every region
    stay clean. The (N, K, H, W) bool labels mark the pixels taken from each step as
    :func:`apply_sequence` marks them: the whole region for global operators, only the pixels the step
    changed for local ones (rain, snow, salt-and-pepper), so each pixel has at most one label and every
    changed pixel has one. Every step is computed whatever its region, so the generator's stream does not
    depend on the regions. Resizing operators are refused.
    """
    check_image(x)
    plan = _normalise_steps(steps)
    for name, _ in plan:
        if get_operator(name).resizes:
            raise ValueError(f"degradation '{name}' changes the image size and cannot be used in region mode")
    n, _, h, w = x.shape
    k = len(plan)
    if isinstance(regions, str):
        if regions != "cutmix":
            raise ValueError(f"regions must be 'cutmix' or a mask tensor, got '{regions}'")
        masks = random_boxes(n, k, (h, w), generator=generator, device=x.device, area=area, aspect=aspect)
    else:
        masks = _region_masks(regions.to(x.device), n, k, (h, w))
    owner = labels_to_index(masks)
    y = x.clone()
    labels = []
    for i, (name, params) in enumerate(plan):
        op = get_operator(name)
        degraded = op.apply(x, generator=generator, **op.resolve(params, generator))
        region = (owner == i + 1)[:, None]
        y = torch.where(region, degraded, y)
        labels.append(region & (degraded != x).any(dim=1, keepdim=True) if op.local else region)
    if not labels:
        return y, torch.zeros(n, 0, h, w, dtype=torch.bool, device=x.device)
    return y, torch.cat(labels, dim=1)


def labels_to_index(labels: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) bool labels to an (N, H, W) long map: 0 = clean, i+1 = the last step i marking it."""
    if labels.dim() != 4:
        raise ValueError(f"labels must be (N, K, H, W), got shape {tuple(labels.shape)}")
    n, k, h, w = labels.shape
    if k == 0:
        return torch.zeros(n, h, w, dtype=torch.long, device=labels.device)
    ids = torch.arange(1, k + 1, device=labels.device).view(1, k, 1, 1)
    return (labels.long() * ids).amax(dim=1)


def apply_pipeline(
    x: torch.Tensor, name: str, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a pipeline of :data:`NAMED_PIPELINES` with :func:`apply_sequence`; returns (y, labels)."""
    if name not in NAMED_PIPELINES:
        raise ValueError(f"unknown pipeline '{name}'; valid: {', '.join(NAMED_PIPELINES)}")
    return apply_sequence(x, NAMED_PIPELINES[name], generator=generator)
