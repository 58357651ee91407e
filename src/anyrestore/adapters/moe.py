"""The plain mixture-of-experts baseline of the AdaptIR paper: identical branches, summed.

``num_experts`` bottlenecks of the same design (d -> m, GELU, m -> d; up projection without bias and zero-
initialised) run parallel to the FFN on the same input and their outputs are added, with no gating. It is
the homogeneous counterpart AdaptIR's heterogeneous branches are compared with; the paper does not state
its branch design, so this one is ours.
"""

from __future__ import annotations

import torch
from torch import nn

from anyrestore.adapters.bottleneck import Bottleneck


class MoE(nn.Module):
    """Sum of ``num_experts`` identical zero-initialised bottleneck experts over the channel axis."""

    def __init__(self, dim: int, hidden: int, num_experts: int = 3) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be positive, got {num_experts}")
        self.experts = nn.ModuleList(Bottleneck(dim, hidden, up_bias=False) for _ in range(num_experts))

    def forward(self, x: torch.Tensor, channel_axis: int = -1) -> torch.Tensor:
        out = self.experts[0](x, channel_axis)
        for expert in self.experts[1:]:
            out = out + expert(x, channel_axis)
        return out
