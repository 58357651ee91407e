"""Bottleneck adapters: Adapter (Houlsby et al., ICML 2019) and AdaptFormer (Chen et al., NeurIPS 2022).

Both are token-wise two-layer MLPs d -> m -> d acting on the channel axis (the last axis, or axis 1 of an
(N, C, H, W) map), with the up projection initialised to zero so an injected model is exactly the frozen
one until trained. Adapter follows a sublayer and adds to its output (``y + f(y)``, after attention and
after the FFN); AdaptFormer runs parallel to the FFN and its output is scaled by ``scale`` (0.1).
"""

from __future__ import annotations

import torch
from torch import nn


def channels_last(x: torch.Tensor, channel_axis: int) -> torch.Tensor:
    return x if channel_axis in (-1, x.ndim - 1) else x.movedim(channel_axis, -1)


def channels_back(y: torch.Tensor, channel_axis: int) -> torch.Tensor:
    return y if channel_axis in (-1, y.ndim - 1) else y.movedim(-1, channel_axis)


class Bottleneck(nn.Module):
    """``up(act(down(x)))`` over the channel axis; ``up`` (weight and bias) starts at zero."""

    def __init__(self, dim: int, hidden: int, activation: str = "gelu", up_bias: bool = True) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"bottleneck width must be positive, got {hidden}")
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.up = nn.Linear(hidden, dim, bias=up_bias)
        nn.init.zeros_(self.up.weight)
        if self.up.bias is not None:
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor, channel_axis: int = -1) -> torch.Tensor:
        y = self.up(self.act(self.down(channels_last(x, channel_axis))))
        return channels_back(y, channel_axis)


class AdaptFormer(nn.Module):
    """AdaptFormer's parallel branch: ``scale * up(ReLU(down(x)))`` (the paper's s = 0.1)."""

    def __init__(self, dim: int, hidden: int, scale: float = 0.1) -> None:
        super().__init__()
        self.branch = Bottleneck(dim, hidden, activation="relu")
        self.scale = scale

    def forward(self, x: torch.Tensor, channel_axis: int = -1) -> torch.Tensor:
        return self.branch(x, channel_axis) * self.scale
