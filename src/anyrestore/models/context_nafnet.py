"""ContextNAFNet: the default model v2, one network for noise, blur, JPEG, haze, rain and low light.

A NAFNet U-Net (Chen et al. 2022) whose blocks are conditioned on one vector computed per image from

- a fixed-size thumbnail of the whole input (64 x 64, box-averaged, with its darkest and brightest channel),
  so that global corrections (haze, exposure) see the scene at the same scale on a 64 px training crop
  and on a 12-megapixel photo; and
- explicit side information: a JPEG file's quantisation tables (:mod:`anyrestore.models.side`), or zeros
  when there is none.

The conditioning enters each block's channel attention. On top sit ABAIR-style degradation experts: every
block's two input projections carry ``len(experts)`` low-rank (LoRA) corrections, one per degradation,
blended per image by an estimator head on the same conditioning vector (its first class is ``clean``). The
blend can be given explicitly (``experts=``: one-hot while each expert is trained on its degradation, as in
ABAIR's Phase II), otherwise the estimator decides.

``forward(x, side=None, experts=None, cond=None)`` is a pure tensor function: the same computation in
train, eval and export, one return type, no state kept between calls, no NumPy. Every parameter takes part
in every forward pass, so DDP needs no ``find_unused_parameters``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.models.detection import shapes_match
from anyrestore.models.nafnet import LayerNorm2d, SimpleGate, unet_layout
from anyrestore.models.registry import Architecture, StateDict, register_architecture
from anyrestore.models.side import SIDE_DIM

DEGRADATIONS = ("noise", "blur", "motion_blur", "jpeg", "haze", "rain", "low_light")


class LowRankExperts(nn.Module):
    """``experts`` rank-``rank`` corrections of an (out, in) weight: ``forward(w)`` gives, per image, the
    (N, out, in) sum ``sum_k w[n, k] * up_k @ down_k``. ``up`` starts at zero (LoRA), so a fresh expert
    changes nothing."""

    def __init__(self, c_in: int, c_out: int, experts: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.empty(experts, rank, c_in))
        self.up = nn.Parameter(torch.zeros(experts, c_out, rank))
        if experts:
            nn.init.kaiming_uniform_(self.down.view(experts * rank, c_in), a=5**0.5)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nk,kor,kri->noi", weights.to(self.up.dtype), self.up, self.down)


class ExpertConv(nn.Module):
    """A 1x1 convolution whose weight each image corrects by its blend of the experts.

    The experts are merged into one (out, in) weight per image before it touches the pixels, so they cost
    nothing at full resolution.
    """

    def __init__(self, c_in: int, c_out: int, experts: int, rank: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=1)
        self.experts = LowRankExperts(c_in, c_out, experts, rank)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        weight = self.conv.weight.flatten(1)[None] + self.experts(weights).to(x.dtype)  # (N, out, in)
        y = torch.bmm(weight, x.reshape(n, c, h * w)) + self.conv.bias[None, :, None]
        return y.reshape(n, -1, h, w)


class ContextBlock(nn.Module):
    """A NAFBlock whose channel attention also reads the image's conditioning vector, and whose input
    projections carry the degradation experts."""

    def __init__(self, c: int, cond_dim: int, experts: int, rank: int) -> None:
        super().__init__()
        dw = 2 * c
        self.norm1 = LayerNorm2d(c)
        self.conv1 = ExpertConv(c, dw, experts, rank)
        self.conv2 = nn.Conv2d(dw, dw, kernel_size=3, padding=1, groups=dw)
        self.sca = nn.Conv2d(dw // 2, dw // 2, kernel_size=1)
        self.cond = nn.Linear(cond_dim, dw // 2)
        nn.init.zeros_(self.cond.weight)
        nn.init.zeros_(self.cond.bias)
        self.conv3 = nn.Conv2d(dw // 2, c, kernel_size=1)
        self.sg = SimpleGate()
        self.norm2 = LayerNorm2d(c)
        self.conv4 = ExpertConv(c, dw, experts, rank)
        self.conv5 = nn.Conv2d(dw // 2, c, kernel_size=1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor, cond: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp), weights)))
        attention = self.sca(x.mean(dim=(2, 3), keepdim=True)) + self.cond(cond)[:, :, None, None]
        y = inp + self.conv3(x * attention) * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y), weights)))
        return y + x * self.gamma


class ContextEncoder(nn.Module):
    """One conditioning vector per image from a thumbnail of the whole input and the side information."""

    def __init__(self, thumb: int, width: int, cond_dim: int, side_dim: int) -> None:
        super().__init__()
        self.thumb = thumb
        self.features = nn.Sequential(
            nn.Conv2d(5, width, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
        )
        self.side = nn.Sequential(nn.Linear(side_dim, cond_dim), nn.GELU())
        self.mix = nn.Sequential(
            nn.Linear(4 * width + 6 + cond_dim, cond_dim), nn.GELU(), nn.Linear(cond_dim, cond_dim)
        )

    def forward(self, x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        # Bilinear samples on a 4x finer grid, averaged 4 x 4: a fixed-size, nearly area-weighted thumbnail
        # that ONNX can express for any input size (antialiased resizing does not export).
        t = F.interpolate(x, size=(4 * self.thumb, 4 * self.thumb), mode="bilinear", align_corners=False)
        t = F.avg_pool2d(t, 4)
        t = torch.cat([t, t.amin(dim=1, keepdim=True), t.amax(dim=1, keepdim=True)], dim=1)
        f = self.features(t)
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3), correction=0)], dim=1)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3)), stats], dim=1)
        return self.mix(torch.cat([pooled, self.side(side.to(x.dtype))], dim=1))


class ContextNAFNet(nn.Module):
    """See the module docstring. ``experts`` names the degradations that get an expert each."""

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 2,
        enc_blk_nums: Sequence[int] = (1, 1, 1, 4),
        dec_blk_nums: Sequence[int] = (1, 1, 1, 1),
        cond_dim: int = 64,
        thumb: int = 64,
        context_width: int = 16,
        side_dim: int = SIDE_DIM,
        experts: Sequence[str] = DEGRADATIONS,
        expert_rank: int = 4,
    ) -> None:
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError("enc_blk_nums and dec_blk_nums need the same number of levels")
        self.expert_names = tuple(experts)
        k = len(self.expert_names)

        def blocks(chan: int, n: int) -> nn.ModuleList:
            return nn.ModuleList(ContextBlock(chan, cond_dim, k, expert_rank) for _ in range(n))

        self.context = ContextEncoder(thumb, context_width, cond_dim, side_dim)
        self.estimator = nn.Sequential(nn.Linear(cond_dim, cond_dim), nn.GELU(), nn.Linear(cond_dim, k + 1))
        self.intro = nn.Conv2d(img_channel, width, kernel_size=3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, kernel_size=3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.decoders, self.ups = nn.ModuleList(), nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(blocks(chan, num))
            self.downs.append(nn.Conv2d(chan, 2 * chan, kernel_size=2, stride=2))
            chan *= 2
        self.middle_blks = blocks(chan, middle_blk_num)
        for num in dec_blk_nums:
            self.ups.append(
                nn.Sequential(nn.Conv2d(chan, 2 * chan, kernel_size=1, bias=False), nn.PixelShuffle(2))
            )
            chan //= 2
            self.decoders.append(blocks(chan, num))
        self.padder_size = 2 ** len(self.encoders)
        self.side_dim = side_dim

    @property
    def classes(self) -> tuple[str, ...]:
        """What the estimator tells apart: ``clean`` and one class per expert."""
        return ("clean", *self.expert_names)

    def conditioning(self, x: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        """(N, cond_dim) conditioning vectors of a batch in [0, 1]."""
        if side is None:
            side = x.new_zeros(x.shape[0], self.side_dim)
        return self.context(x, side)

    def estimate(self, x: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 1 + experts) estimator logits over :attr:`classes`."""
        return self.estimator(self.conditioning(x, side))

    def forward(
        self,
        x: torch.Tensor,
        side: torch.Tensor | None = None,
        experts: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Restore a batch in [0, 1]; ``side`` (N, side_dim) as :func:`anyrestore.models.side.encode_side`
        makes it; ``experts`` (N, experts) overrides the estimator's blend. ``cond`` (N, cond_dim), when
        given, replaces :meth:`conditioning` of ``x``: tiled inference passes the whole image's, so that
        every tile is conditioned on the same picture."""
        h, w = x.shape[-2:]
        if cond is None:
            cond = self.conditioning(x, side)
        weights = self.estimator(cond).softmax(dim=1)[:, 1:]
        if experts is not None:
            # Keeps the estimator in the graph (zero gradient) so that DDP sees every parameter used.
            weights = experts.to(weights.dtype) + 0.0 * weights
        pad_h, pad_w = -h % self.padder_size, -w % self.padder_size
        inp = F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

        y = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            for block in encoder:
                y = block(y, cond, weights)
            skips.append(y)
            y = down(y)
        for block in self.middle_blks:
            y = block(y, cond, weights)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            y = up(y) + skip
            for block in decoder:
                y = block(y, cond, weights)
        y = self.ending(y) + inp
        return y[:, :, :h, :w]


def infer_context_nafnet_config(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs reproducing ``state_dict`` (expert names come from the file's metadata)."""
    if not {"context.mix.2.weight", "estimator.2.weight", "intro.weight"} <= state_dict.keys():
        return None
    experts = int(state_dict["estimator.2.weight"].shape[0]) - 1
    down = state_dict.get("encoders.0.0.conv1.experts.down")
    cfg: dict[str, Any] = {
        **unet_layout(state_dict),
        "cond_dim": int(state_dict["estimator.0.weight"].shape[1]),
        "context_width": int(state_dict["context.features.0.weight"].shape[0]),
        "side_dim": int(state_dict["context.side.0.weight"].shape[1]),
        # Our files record the expert names in their descriptor; a bare state dict only tells how many.
        "experts": list(DEGRADATIONS)
        if experts == len(DEGRADATIONS)
        else [f"expert{i}" for i in range(experts)],
    }
    if down is not None:
        cfg["expert_rank"] = int(down.shape[1])
    return cfg if shapes_match(state_dict, ContextNAFNet, cfg) else None


register_architecture(
    Architecture(
        name="context_nafnet",
        build=ContextNAFNet,
        infer_config=infer_context_nafnet_config,
        scale=lambda cfg: 1,
        size_multiple=lambda cfg: 2 ** len(cfg.get("enc_blk_nums", (1, 1, 1, 4))),
        normalization="none",
        precisions=("fp32", "bf16", "fp16"),
        description="ContextNAFNet (ours, default model v2): NAFNet conditioned on a whole-image thumbnail "
        "and JPEG side information, with per-degradation experts blended by an estimator",
    )
)
