"""NAFNet (Chen et al., ECCV 2022): a nonlinear-activation-free U-Net for image restoration.

Module names and parameter shapes follow the official release (``megvii-research/NAFNet``), so its
checkpoints load unchanged. As in the release, the network zero-pads H and W on the bottom/right to
a multiple of ``2 ** len(enc_blk_nums)`` and crops the output back, so any input size works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.models.detection import count_blocks, shapes_match
from anyrestore.models.layers import ChannelLayerNorm
from anyrestore.models.registry import Architecture, StateDict, register_architecture


class LayerNorm2d(ChannelLayerNorm):
    """Layer normalisation over the channels of an (N, C, H, W) map, statistics in float32."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, with_bias=True, eps=eps)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them: NAFNet's replacement for an activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2


class NAFBlock(nn.Module):
    """Two residual branches, each scaled by a zero-initialised per-channel factor (beta, gamma).

    The first mixes space (1x1 conv, 3x3 depthwise conv, SimpleGate, simplified channel attention,
    1x1 conv), the second channels (1x1 conv, SimpleGate, 1x1 conv).
    """

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2, drop_out_rate: float = 0.0) -> None:
        super().__init__()
        dw_channel = c * dw_expand
        self.conv1 = nn.Conv2d(c, dw_channel, kernel_size=1)
        self.conv2 = nn.Conv2d(dw_channel, dw_channel, kernel_size=3, padding=1, groups=dw_channel)
        self.conv3 = nn.Conv2d(dw_channel // 2, c, kernel_size=1)
        # Simplified channel attention: global average pool, then a 1x1 conv, no nonlinearity.
        self.sca = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw_channel // 2, dw_channel // 2, kernel_size=1)
        )
        self.sg = SimpleGate()

        ffn_channel = c * ffn_expand
        self.conv4 = nn.Conv2d(c, ffn_channel, kernel_size=1)
        self.conv5 = nn.Conv2d(ffn_channel // 2, c, kernel_size=1)

        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()

        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        if _fast_inference(self, inp):
            return self._forward_inference(inp)
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + self.dropout1(x) * self.beta

        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + self.dropout2(x) * self.gamma

    def _forward_inference(self, inp: torch.Tensor) -> torch.Tensor:
        """``forward`` without gradients, in float32, in fewer passes over memory (the same to ~1e-6):
        layer norms as one fused kernel over the channels (channels-last, which the convolutions then
        keep), and beta, gamma and (one image at a time) the channel attention folded into the weights
        of the 1x1 convolutions they scale."""
        x = self.sg(self.conv2(self.conv1(_fused_layer_norm(inp, self.norm1))))
        attention = self.sca(x)
        beta = self.beta.reshape(-1, 1, 1, 1)
        weight, bias = self.conv3.weight * beta, self.conv3.bias * beta.reshape(-1)
        if x.shape[0] == 1:
            weight = weight * attention.reshape(1, -1, 1, 1)
        else:
            x = x * attention
        y = inp + F.conv2d(x, weight, bias)
        gamma = self.gamma.reshape(-1, 1, 1, 1)
        x = self.sg(self.conv4(_fused_layer_norm(y, self.norm2)))
        return y + F.conv2d(x, self.conv5.weight * gamma, self.conv5.bias * gamma.reshape(-1))


def _fast_inference(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module`` may take its inference path on ``x``: eval mode, no gradients, float32, and not
    inside an export trace (which records the module's own operations)."""
    return (
        not module.training
        and not torch.is_grad_enabled()
        and x.dtype == torch.float32
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_exporting()
    )


def _fused_layer_norm(x: torch.Tensor, norm: LayerNorm2d) -> torch.Tensor:
    """``norm(x)`` for float32 ``x``, as one kernel over the channels of the channels-last view (its
    result is channels-last)."""
    channels_last = x.permute(0, 2, 3, 1)
    out = F.layer_norm(channels_last, (x.shape[1],), norm.weight, norm.bias, norm.eps)
    return out.permute(0, 3, 1, 2)


class NAFNet(nn.Module):
    """U-Net of NAFBlocks: each encoder level halves the resolution with a stride-2 2x2 conv and
    doubles the channels; each decoder level upsamples by a 1x1 conv and pixel-shuffle and adds the
    encoder skip. The output is a residual added to the input.
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 32,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (1, 1, 1, 28),
        dec_blk_nums: Sequence[int] = (1, 1, 1, 1),
        dw_expand: int = 2,
        ffn_expand: int = 2,
        drop_out_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError("enc_blk_nums and dec_blk_nums need the same number of levels")

        def blocks(chan: int, n: int) -> nn.Sequential:
            return nn.Sequential(*(NAFBlock(chan, dw_expand, ffn_expand, drop_out_rate) for _ in range(n)))

        self.intro = nn.Conv2d(img_channel, width, kernel_size=3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, kernel_size=3, padding=1)

        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(blocks(chan, num))
            self.downs.append(nn.Conv2d(chan, 2 * chan, kernel_size=2, stride=2))
            chan *= 2
        self.middle_blks = blocks(chan, middle_blk_num)
        for num in dec_blk_nums:
            self.ups.append(
                nn.Sequential(nn.Conv2d(chan, chan * 2, kernel_size=1, bias=False), nn.PixelShuffle(2))
            )
            chan //= 2
            self.decoders.append(blocks(chan, num))

        self.padder_size = 2 ** len(self.encoders)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        inp = self.check_image_size(inp)
        fast = _fast_inference(self, inp)
        if fast:  # the blocks' inference path runs in channels-last, and so does every convolution
            inp = inp.contiguous(memory_format=torch.channels_last)

        x = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            x = decoder(up(x) + skip)

        x = self.ending(x) + inp
        return x[:, :, :h, :w].contiguous() if fast else x[:, :, :h, :w]

    def check_image_size(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad bottom and right to a multiple of ``padder_size``."""
        h, w = x.shape[-2:]
        pad_h = -h % self.padder_size
        pad_w = -w % self.padder_size
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x


def unet_layout(state_dict: StateDict) -> dict[str, Any]:
    """Channels, width and blocks per level of a NAFNet-style U-Net's weights (``intro``, ``encoders.i``,
    ``downs``, ``middle_blks``, ``decoders.i``), as constructor kwargs."""
    levels = count_blocks(state_dict, "downs")
    intro = state_dict["intro.weight"]
    return {
        "img_channel": int(intro.shape[1]),
        "width": int(intro.shape[0]),
        "middle_blk_num": count_blocks(state_dict, "middle_blks"),
        "enc_blk_nums": [count_blocks(state_dict, f"encoders.{i}") for i in range(levels)],
        "dec_blk_nums": [count_blocks(state_dict, f"decoders.{i}") for i in range(levels)],
    }


def infer_nafnet_config(state_dict: StateDict) -> dict[str, Any] | None:
    """NAFNet constructor kwargs reproducing ``state_dict``, or ``None`` if it is not a NAFNet."""
    if not {"intro.weight", "ending.weight", "downs.0.weight", "ups.0.0.weight"} <= state_dict.keys():
        return None
    levels = count_blocks(state_dict, "downs")
    if count_blocks(state_dict, "ups") != levels:
        return None
    dw_expand = ffn_expand = 2
    block = next((k.removesuffix(".conv1.weight") for k in state_dict if k.endswith(".conv1.weight")), None)
    if block is not None:
        try:
            c = int(state_dict[f"{block}.beta"].shape[1])
            dw = int(state_dict[f"{block}.conv1.weight"].shape[0])
            ffn = int(state_dict[f"{block}.conv4.weight"].shape[0])
        except (KeyError, IndexError):
            return None
        if dw % c or ffn % c:
            return None
        dw_expand, ffn_expand = dw // c, ffn // c

    cfg: dict[str, Any] = {**unet_layout(state_dict), "dw_expand": dw_expand, "ffn_expand": ffn_expand}
    return cfg if shapes_match(state_dict, NAFNet, cfg) else None


register_architecture(
    Architecture(
        name="nafnet",
        build=NAFNet,
        infer_config=infer_nafnet_config,
        scale=lambda cfg: 1,
        size_multiple=lambda cfg: 2 ** len(cfg.get("enc_blk_nums", (1, 1, 1, 28))),
        normalization="none",
        precisions=("fp32", "bf16", "fp16"),
        description="NAFNet (Chen et al. 2022), official release",
    )
)
