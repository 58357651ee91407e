"""SSF (Lian et al., "Scaling & Shifting Your Features", NeurIPS 2022).

A learned per-channel scale (initialised to 1) and shift (initialised to 0) applied to the output of
every LayerNorm and linear projection module of every transformer block, so an injected model is exactly
the frozen one until trained.
"""

from __future__ import annotations

import torch
from torch import nn


class SSF(nn.Module):
    """``x * scale + shift`` along ``channel_axis``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, channel_axis: int = -1) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[channel_axis] = -1
        return torch.addcmul(self.shift.view(shape), x, self.scale.view(shape))
