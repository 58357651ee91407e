"""PromptIR (Potlapalli et al., NeurIPS 2023) and the PromptIR variant RAM trains.

PromptIR is a Restormer U-Net (built from :mod:`anyrestore.models.restormer`'s blocks) whose decoder, at
each of its three lower levels, asks a prompt-generation block for a degradation-aware feature map (a
softmax-weighted mix of learned prompt tensors), concatenates it and fuses the two with a transformer
block and a 1x1 conv. Module names, registration order and shapes follow the official release
(``va1shn9v/PromptIR``, ``net/model.py``) so its checkpoints load with ``strict=True``. The release also
holds six 1x1 convs (``chnl_reduce1..3``, ``reduce_noise_channel_1..3``, about 215k parameters) that its
forward pass never calls; they are kept because the checkpoints contain them.

RAM (``DragonisCV/RAM``, ``ram/archs/promptir_arch.py``) drops those six convs, reflect-pads the input
to a multiple of 16 and crops back, optionally replaces masked pixels by a zero mask token, and is
trained on ImageNet mean/std-normalised RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anyrestore.models.detection import count_blocks, expansion_factor, shapes_match
from anyrestore.models.registry import Architecture, StateDict, register_architecture
from anyrestore.models.restormer import (  # noqa: F401  (some only re-exported: they used to live here)
    Attention,
    Downsample,
    FeedForward,
    LayerNorm,
    TransformerBlock,
    Upsample,
)
from anyrestore.models.restormer import OverlapPatchEmbed as PatchEmbed

# ----------------------------------------------------------------------------------------------------
# Prompt generation


class PromptGenBlock(nn.Module):
    """Degradation-aware prompt: learned prompts mixed by softmax weights predicted from pooled features.

    ``prompt_len`` prompts of ``prompt_dim`` x ``prompt_size`` x ``prompt_size`` are weighted per image,
    summed, resized bilinearly to the feature map's size and passed through a 3x3 conv.
    """

    def __init__(self, prompt_dim: int, prompt_len: int, prompt_size: int, lin_dim: int) -> None:
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)
        prompt = (weights[:, :, None, None, None] * self.prompt_param).sum(dim=1)
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


# ----------------------------------------------------------------------------------------------------
# Networks


class PromptIR(nn.Module):
    """PromptIR as released: 4-level Restormer U-Net with prompt blocks on the three lower decoder levels.

    Defaults are the paper's configuration (35,592,263 parameters). ``prompt_dims`` and
    ``prompt_sizes`` are listed from the finest level (1) to the coarsest (3). ``unused_reduce_dims`` are
    the output widths of the release's ``chnl_reduce1..3`` convs, which with ``reduce_noise_channel_1..3``
    are built but never called; ``None`` leaves all six out. The official class's ``decoder=False``
    option cannot run (the first upsampler expects the prompt-fused width), so prompts are always built.
    H and W must be multiples of 8.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        layernorm_type: str = "WithBias",
        prompt_len: int = 5,
        prompt_dims: Sequence[int] = (64, 128, 320),
        prompt_sizes: Sequence[int] = (64, 32, 16),
        unused_reduce_dims: Sequence[int] | None = (64, 128, 256),
    ) -> None:
        super().__init__()
        if layernorm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"layernorm_type must be 'WithBias' or 'BiasFree', got {layernorm_type!r}")
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError("num_blocks and heads need one entry per level (4)")
        if len(prompt_dims) != 3 or len(prompt_sizes) != 3:
            raise ValueError("prompt_dims and prompt_sizes need one entry per prompted level (3)")
        if unused_reduce_dims is not None and len(unused_reduce_dims) != 3:
            raise ValueError("unused_reduce_dims needs 3 entries (or None)")

        def blocks(width: int, count: int, num_heads: int) -> nn.Sequential:
            # PromptIR's norms run the release's formula in the input dtype, not in float32 as Restormer's.
            return nn.Sequential(
                *(
                    TransformerBlock(
                        width, num_heads, ffn_expansion_factor, bias, layernorm_type, float32_stats=False
                    )
                    for _ in range(count)
                )
            )

        def conv1x1(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, kernel_size=1, bias=bias)

        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        p1, p2, p3 = prompt_dims
        # Attribute order mirrors the release so state_dict and named_parameters() orders match it.
        self.patch_embed = PatchEmbed(in_channels, dim)
        self.prompt1 = PromptGenBlock(p1, prompt_len, prompt_sizes[0], lin_dim=d2)
        self.prompt2 = PromptGenBlock(p2, prompt_len, prompt_sizes[1], lin_dim=d3)
        self.prompt3 = PromptGenBlock(p3, prompt_len, prompt_sizes[2], lin_dim=d4)
        unused = unused_reduce_dims
        if unused is not None:
            self.chnl_reduce1 = conv1x1(p1, unused[0])
            self.chnl_reduce2 = conv1x1(p2, unused[1])
            self.chnl_reduce3 = conv1x1(p3, unused[2])
            self.reduce_noise_channel_1 = conv1x1(d1 + unused[0], d1)
        self.encoder_level1 = blocks(d1, num_blocks[0], heads[0])
        self.down1_2 = Downsample(d1)
        if unused is not None:
            self.reduce_noise_channel_2 = conv1x1(d2 + unused[1], d2)
        self.encoder_level2 = blocks(d2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(d2)
        if unused is not None:
            self.reduce_noise_channel_3 = conv1x1(d3 + unused[2], d3)
        self.encoder_level3 = blocks(d3, num_blocks[2], heads[2])
        self.down3_4 = Downsample(d3)
        self.latent = blocks(d4, num_blocks[3], heads[3])

        # The prompt-fusion blocks all use heads[2], whatever their level.
        self.up4_3 = Upsample(d3)
        self.reduce_chan_level3 = conv1x1(d2 + d3, d3)
        self.noise_level3 = blocks(d4 + p3, 1, heads[2])[0]
        self.reduce_noise_level3 = conv1x1(d4 + p3, d3)
        self.decoder_level3 = blocks(d3, num_blocks[2], heads[2])

        self.up3_2 = Upsample(d3)
        self.reduce_chan_level2 = conv1x1(d3, d2)
        self.noise_level2 = blocks(d3 + p2, 1, heads[2])[0]
        self.reduce_noise_level2 = conv1x1(d3 + p2, d3)
        self.decoder_level2 = blocks(d2, num_blocks[1], heads[1])

        self.up2_1 = Upsample(d2)
        self.noise_level1 = blocks(d2 + p1, 1, heads[2])[0]
        self.reduce_noise_level1 = conv1x1(d2 + p1, d2)
        self.decoder_level1 = blocks(d2, num_blocks[0], heads[0])
        self.refinement = blocks(d2, num_refinement_blocks, heads[0])
        self.output = nn.Conv2d(d2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        enc1 = self.encoder_level1(self.patch_embed(x))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        latent = self.reduce_noise_level3(self.noise_level3(torch.cat([latent, self.prompt3(latent)], 1)))
        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1))
        dec3 = self.decoder_level3(dec3)

        dec3 = self.reduce_noise_level2(self.noise_level2(torch.cat([dec3, self.prompt2(dec3)], 1)))
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1))
        dec2 = self.decoder_level2(dec2)

        dec2 = self.reduce_noise_level1(self.noise_level1(torch.cat([dec2, self.prompt1(dec2)], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        return self.output(self.refinement(dec1)) + x


class RAMPromptIR(PromptIR):
    """RAM's PromptIR: no unused convs (35,376,967 parameters), pads to a multiple of 16 internally.

    Takes the keyword arguments of :class:`PromptIR` except ``unused_reduce_dims``. Input and output are
    ImageNet mean/std-normalised RGB. ``forward(x, mask)`` replaces pixels where ``mask`` (N, H, W) or
    (N, 1, H, W) is 1 by RAM's mask token, which is 0 (the mean colour); the residual uses the masked input.
    """

    pad_multiple = 16

    def __init__(self, **kwargs: Any) -> None:
        if "unused_reduce_dims" in kwargs:
            raise TypeError("RAMPromptIR has no unused_reduce_dims")
        super().__init__(**kwargs, unused_reduce_dims=None)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h, w = x.shape[-2:]
        if mask is not None:
            if mask.dim() == 3:
                mask = mask.unsqueeze(1)
            x = x * (1 - mask.to(x.dtype))
        pad_h = -h % self.pad_multiple
        pad_w = -w % self.pad_multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        return super().forward(x)[..., :h, :w]


# ----------------------------------------------------------------------------------------------------
# Recognising checkpoints

_UNUSED_KEYS = (
    "chnl_reduce1.weight",
    "chnl_reduce2.weight",
    "chnl_reduce3.weight",
    "reduce_noise_channel_1.weight",
    "reduce_noise_channel_2.weight",
    "reduce_noise_channel_3.weight",
)
_CORE_KEYS = (
    "patch_embed.proj.weight",
    "prompt1.prompt_param",
    "prompt2.prompt_param",
    "prompt3.prompt_param",
    "encoder_level1.0.attn.temperature",
    "latent.0.attn.temperature",
    "noise_level3.attn.temperature",
    "reduce_noise_level1.weight",
    "reduce_chan_level3.weight",
    "refinement.0.ffn.project_out.weight",
    "output.weight",
)


def _infer(state_dict: StateDict, unused: bool) -> dict[str, Any] | None:
    if not all(k in state_dict for k in _CORE_KEYS):
        return None
    # The official release has all six unused convs, RAM's none of them.
    if any((k in state_dict) != unused for k in _UNUSED_KEYS):
        return None
    try:
        dim, in_channels = state_dict["patch_embed.proj.weight"].shape[:2]
        prompts = [state_dict[f"prompt{i}.prompt_param"].shape for i in (1, 2, 3)]
        levels = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
        num_blocks = tuple(count_blocks(state_dict, name) for name in levels)
        heads = tuple(state_dict[f"{name}.0.attn.temperature"].shape[0] for name in levels)
        cfg: dict[str, Any] = {
            "in_channels": int(in_channels),
            "out_channels": int(state_dict["output.weight"].shape[0]),
            "dim": int(dim),
            "num_blocks": num_blocks,
            "num_refinement_blocks": count_blocks(state_dict, "refinement"),
            "heads": heads,
            "bias": "output.bias" in state_dict,
            "layernorm_type": "WithBias" if "encoder_level1.0.norm1.body.bias" in state_dict else "BiasFree",
            "prompt_len": int(prompts[0][1]),
            "prompt_dims": tuple(int(p[2]) for p in prompts),
            "prompt_sizes": tuple(int(p[3]) for p in prompts),
        }
        if unused:
            cfg["unused_reduce_dims"] = tuple(int(state_dict[k].shape[0]) for k in _UNUSED_KEYS[:3])
        hidden = [
            (int(state_dict[k].shape[0]), int(state_dict[k].shape[1]))
            for k in state_dict
            if k.endswith(".ffn.project_out.weight")
        ]
        factor = expansion_factor(hidden)
        if factor is None or min(num_blocks) == 0:
            return None
        cfg["ffn_expansion_factor"] = factor
    except (KeyError, AttributeError, IndexError, ValueError, ZeroDivisionError):
        return None

    # Final check: the inferred config must reproduce every key and shape.
    return cfg if shapes_match(state_dict, PromptIR if unused else RAMPromptIR, cfg) else None


def infer_promptir_config(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs of :class:`PromptIR` reproducing ``state_dict``, or None if it is not one."""
    return _infer(state_dict, unused=True)


def infer_ram_promptir_config(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs of :class:`RAMPromptIR` reproducing ``state_dict``, or None if it is not one."""
    return _infer(state_dict, unused=False)


register_architecture(
    Architecture(
        name="promptir",
        build=PromptIR,
        infer_config=infer_promptir_config,
        scale=lambda cfg: 1,
        size_multiple=lambda cfg: 8,
        normalization="none",
        precisions=("fp32", "bf16", "fp16"),
        description="PromptIR (Potlapalli et al. 2023), official release",
    )
)
register_architecture(
    Architecture(
        name="ram_promptir",
        build=RAMPromptIR,
        infer_config=infer_ram_promptir_config,
        scale=lambda cfg: 1,
        # The network reflect-pads to 16 and crops back itself, exactly as RAM's release does.
        size_multiple=lambda cfg: 1,
        normalization="imagenet",
        precisions=("fp32", "bf16", "fp16"),
        description="PromptIR as trained by RAM (Qin et al. 2024, DragonisCV/RAM), ImageNet-normalised I/O",
    )
)
