"""Restormer (Zamir et al., CVPR 2022): a U-shaped transformer with channel-wise attention.

Module names, parameter shapes and constructor arguments follow the official release
(``swz30/Restormer``), so its checkpoints and option files load unchanged. The released weights use
LayerNorm ``WithBias`` (deblurring, deraining), ``BiasFree`` (denoising) and, for dual-pixel defocus
deblurring, six input channels with an extra skip convolution and no image-level residual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.models.detection import count_blocks, expansion_factor, shapes_match
from anyrestore.models.layers import ChannelLayerNorm
from anyrestore.models.registry import Architecture, StateDict, register_architecture


class LayerNorm(nn.Module):
    """Restormer's channel LayerNorm, ``WithBias`` or ``BiasFree``; see :class:`ChannelLayerNorm`.

    The norm sits in ``body`` so that parameters are named ``norm1.body.weight`` as in the release.
    """

    def __init__(
        self, dim: int, LayerNorm_type: str = "WithBias", eps: float = 1e-5, float32_stats: bool = True
    ) -> None:
        super().__init__()
        if LayerNorm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"unknown LayerNorm_type {LayerNorm_type!r}")
        self.body = ChannelLayerNorm(dim, LayerNorm_type == "WithBias", eps, float32_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN): a GELU-gated depthwise-conv MLP."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(
            hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias
        )
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA).

    Attention is taken across channels rather than pixels (a (C/heads)^2 map per head), so the cost is
    linear in the number of pixels; queries and keys are L2-normalised and scaled by a learned
    per-head temperature.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class TransformerBlock(nn.Module):
    """Pre-norm block: MDTA then GDFN, each with a residual connection."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,
        float32_stats: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type, float32_stats=float32_stats)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type, float32_stats=float32_stats)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3x3 convolution from image to features (always without bias, as released)."""

    def __init__(self, in_c: int = 3, embed_dim: int = 48) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: 3x3 conv to C/2, then pixel-unshuffle."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: 3x3 conv to 2C, then pixel-shuffle."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, padding=1, bias=False), nn.PixelShuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Restormer(nn.Module):
    """Four-level Restormer; H and W must be multiples of 8.

    The last decoder level and the refinement stage run at twice the base width (the level-1 skip is
    concatenated without a channel reduction). With ``dual_pixel_task`` the network takes the two
    dual-pixel views stacked (``inp_channels=6``), adds a 1x1 skip from the embedded input and
    predicts the image directly; otherwise it predicts a residual added to the input.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        dual_pixel_task: bool = False,
    ) -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError("num_blocks and heads need one entry per level (4)")

        def blocks(width: int, num_heads: int, n: int) -> nn.Sequential:
            return nn.Sequential(
                *(
                    TransformerBlock(width, num_heads, ffn_expansion_factor, bias, LayerNorm_type)
                    for _ in range(n)
                )
            )

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = blocks(dim, heads[0], num_blocks[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = blocks(dim * 2, heads[1], num_blocks[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = blocks(dim * 4, heads[2], num_blocks[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = blocks(dim * 8, heads[3], num_blocks[3])

        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = blocks(dim * 4, heads[2], num_blocks[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = blocks(dim * 2, heads[1], num_blocks[1])
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = blocks(dim * 2, heads[0], num_blocks[0])
        self.refinement = blocks(dim * 2, heads[0], num_refinement_blocks)

        self.dual_pixel_task = dual_pixel_task
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, inp_img: torch.Tensor) -> torch.Tensor:
        emb = self.patch_embed(inp_img)
        enc1 = self.encoder_level1(emb)
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        x = self.latent(self.down3_4(enc3))

        x = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(x), enc3], 1)))
        x = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(x), enc2], 1)))
        x = self.decoder_level1(torch.cat([self.up2_1(x), enc1], 1))
        x = self.refinement(x)

        if self.dual_pixel_task:
            return self.output(x + self.skip_conv(emb))
        return self.output(x) + inp_img


_LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
_FOREIGN_PREFIXES = ("prompt", "noise_level", "reduce_noise", "chnl_reduce", "mask_token")


def infer_restormer_config(state_dict: StateDict) -> dict[str, Any] | None:
    """Restormer constructor kwargs reproducing ``state_dict``, or ``None`` if it is not a Restormer.

    PromptIR and RAM's PromptIR share Restormer's module names; their prompt and noise-level keys
    rule them out.
    """
    if "patch_embed.proj.weight" not in state_dict or "output.weight" not in state_dict:
        return None
    if any(key.startswith(_FOREIGN_PREFIXES) for key in state_dict):
        return None
    num_blocks = [count_blocks(state_dict, level) for level in _LEVELS]
    if min(num_blocks) == 0:
        return None
    embed = state_dict["patch_embed.proj.weight"]
    dim = int(embed.shape[0])
    try:
        heads = [int(state_dict[f"{level}.0.attn.temperature"].shape[0]) for level in _LEVELS]
        hidden = [int(state_dict[f"{level}.0.ffn.project_out.weight"].shape[1]) for level in _LEVELS]
    except (KeyError, IndexError):
        return None
    ffn_expansion_factor = expansion_factor([(dim * 2**i, h) for i, h in enumerate(hidden)])
    if ffn_expansion_factor is None:
        return None
    cfg: dict[str, Any] = {
        "inp_channels": int(embed.shape[1]),
        "out_channels": int(state_dict["output.weight"].shape[0]),
        "dim": dim,
        "num_blocks": num_blocks,
        "num_refinement_blocks": count_blocks(state_dict, "refinement"),
        "heads": heads,
        "ffn_expansion_factor": ffn_expansion_factor,
        "bias": "output.bias" in state_dict,
        "LayerNorm_type": "WithBias" if "encoder_level1.0.norm1.body.bias" in state_dict else "BiasFree",
        "dual_pixel_task": "skip_conv.weight" in state_dict,
    }
    return cfg if shapes_match(state_dict, Restormer, cfg) else None


register_architecture(
    Architecture(
        name="restormer",
        build=Restormer,
        infer_config=infer_restormer_config,
        scale=lambda cfg: 1,
        size_multiple=lambda cfg: 8,
        normalization="none",
        precisions=("fp32", "bf16", "fp16"),
        description="Restormer (Zamir et al. 2022), official release",
    )
)
