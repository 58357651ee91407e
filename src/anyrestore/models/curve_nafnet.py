"""CurveNAFNet: a low-resolution tone-curve stage in front of a NAFNet (our design, the default model).

Haze, under-exposure and colour casts change an image slowly across the frame, and undoing them needs
context from the whole picture; noise, blur, JPEG blocks and rain streaks are local. A small U-Net such
as NAFNet sees the whole frame only through its channel-attention pooling, which behaves differently
on a training crop and on a full photo. So the curve stage looks at a fixed-size thumbnail of the input
(whatever the input size), predicts a coarse grid of per-pixel, per-channel curves

    y = a * ((x + eps) ** p - eps ** p - b)

(``a`` gain, ``p`` exponent, ``b`` black level; haze inversion is ``p = 1``, ``a = 1/t``,
``b = A (1 - t)``; under-exposure ``y = g x^gamma`` is undone by ``p = 1/gamma``, ``a = g^(-1/gamma)``;
the black level is subtracted before the gain so that it stays within [0, 1]), upsamples the
grid bilinearly to the image and applies it; the NAFNet then removes what is local. The curve head
starts at zero, so a fresh model is exactly ``NAFNet(x)``: a trained NAFNet can be loaded into
``restorer`` and fine-tuned with the curve stage switched on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.models.detection import count_blocks, shapes_match
from anyrestore.models.nafnet import NAFNet, infer_nafnet_config
from anyrestore.models.registry import Architecture, StateDict, register_architecture

CURVE_EPS = 1e-3


class CurveStage(nn.Module):
    """Thumbnail -> small CNN with a global context vector -> a ``grid`` x ``grid`` map of curves."""

    def __init__(self, channels: int = 3, width: int = 32, thumb: int = 64, grid: int = 16) -> None:
        super().__init__()
        if thumb % grid or thumb // grid not in (2, 4, 8):
            raise ValueError(f"thumb ({thumb}) must be 2, 4 or 8 times grid ({grid})")
        self.channels, self.thumb, self.grid = channels, thumb, grid
        # The thumbnail, its darkest and brightest channel (the dark channel is the classic haze cue).
        layers: list[nn.Module] = [nn.Conv2d(channels + 2, width // 2, 3, padding=1), nn.GELU()]
        chan, size = width // 2, thumb
        while size > grid:
            layers += [nn.Conv2d(chan, width, 3, stride=2, padding=1), nn.GELU()]
            chan, size = width, size // 2
        self.features = nn.Sequential(*layers)
        stats = 3 * channels  # see curves()
        self.context = nn.Sequential(nn.Linear(width + stats, width), nn.GELU(), nn.Linear(width, width))
        self.mix = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1), nn.GELU()
        )
        self.head = nn.Conv2d(width, 3 * channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def thumbnail(self, x: torch.Tensor) -> torch.Tensor:
        """A ``thumb`` x ``thumb`` box-filtered view of ``x``: bilinear to 4x that size, then 4x4 means
        (exportable with dynamic input sizes, unlike adaptive pooling)."""
        big = F.interpolate(x, size=(4 * self.thumb, 4 * self.thumb), mode="bilinear", align_corners=False)
        return F.avg_pool2d(big, 4)

    def curves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gain, exponent and offset at full resolution, each (N, C, H, W)."""
        thumb = self.thumbnail(x)
        cues = torch.cat([thumb, thumb.amin(dim=1, keepdim=True), thumb.amax(dim=1, keepdim=True)], dim=1)
        f = self.features(cues)
        # Global statistics a haze or exposure estimate rests on: mean, brightest and darkest 4x4 block
        # per channel (a clean photo's darkest block is near black, a hazy one's is lifted).
        blocks = F.avg_pool2d(thumb, 4)
        stats = torch.cat([thumb.mean(dim=(2, 3)), blocks.amax(dim=(2, 3)), blocks.amin(dim=(2, 3))], dim=1)
        f = f + self.context(torch.cat([f.mean(dim=(2, 3)), stats], dim=1))[:, :, None, None]
        grid = self.head(self.mix(f))
        grid = F.interpolate(grid, size=x.shape[-2:], mode="bilinear", align_corners=False)
        log_a, log_p, b = grid.chunk(3, dim=1)
        return torch.exp(3.0 * torch.tanh(log_a / 3.0)), torch.exp(1.5 * torch.tanh(log_p / 1.5)), b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, p, b = self.curves(x)
        base = x.clamp(0.0, 1.0) + CURVE_EPS
        return a * (base.pow(p) - torch.pow(CURVE_EPS, p) - b)


class CurveNAFNet(nn.Module):
    """``restorer(curve(x))``: global/slow corrections by the curve stage, local ones by the NAFNet."""

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 2,
        enc_blk_nums: Sequence[int] = (1, 1, 1, 4),
        dec_blk_nums: Sequence[int] = (1, 1, 1, 1),
        dw_expand: int = 2,
        ffn_expand: int = 2,
        curve_width: int = 32,
        curve_thumb: int = 64,
        curve_grid: int = 16,
    ) -> None:
        super().__init__()
        self.curve = CurveStage(img_channel, curve_width, curve_thumb, curve_grid)
        self.restorer = NAFNet(
            img_channel=img_channel,
            width=width,
            middle_blk_num=middle_blk_num,
            enc_blk_nums=enc_blk_nums,
            dec_blk_nums=dec_blk_nums,
            dw_expand=dw_expand,
            ffn_expand=ffn_expand,
        )

    def forward(
        self, x: torch.Tensor, return_stages: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """The restored image; with ``return_stages`` also ``[curve(x)]``, for deep supervision."""
        corrected = self.curve(x)
        out = self.restorer(corrected)
        return (out, [corrected]) if return_stages else out

    def tiling_stages(self) -> tuple[nn.Module, nn.Module]:
        """For tiled inference: the curve stage runs once on the whole image (its curves come from the
        whole picture, not from each tile), then the NAFNet runs tile by tile."""
        return self.curve, self.restorer


def infer_curve_nafnet_config(state_dict: StateDict) -> dict[str, Any] | None:
    """CurveNAFNet kwargs reproducing ``state_dict``, or ``None`` if it is not one."""
    if "curve.head.weight" not in state_dict:
        return None
    inner = infer_nafnet_config(
        {k.removeprefix("restorer."): v for k, v in state_dict.items() if k.startswith("restorer.")}
    )
    if inner is None:
        return None
    curve_width = int(state_dict["curve.head.weight"].shape[1])
    downs = (count_blocks(state_dict, "curve.features") + 1) // 2 - 1  # conv, GELU, conv, ...
    thumb = 64
    cfg = {
        **inner,
        "curve_width": curve_width,
        "curve_thumb": thumb,
        "curve_grid": thumb // 2**downs,
    }
    return cfg if shapes_match(state_dict, CurveNAFNet, cfg) else None


register_architecture(
    Architecture(
        name="curve_nafnet",
        build=CurveNAFNet,
        infer_config=infer_curve_nafnet_config,
        scale=lambda cfg: 1,
        size_multiple=lambda cfg: 2 ** len(cfg.get("enc_blk_nums", (1, 1, 1, 4))),
        normalization="none",
        precisions=("fp32", "bf16", "fp16"),
        description="anyrestore's default design: a thumbnail tone-curve stage, then a NAFNet",
    )
)
