"""LoRA (Hu et al., ICLR 2022) on the query and value projections, as a weight re-parametrisation.

The backbones fuse q, k and v into one projection weight of shape (3d, d) (a Linear, a 1x1 conv, or the
``in_proj_weight`` of ``nn.MultiheadAttention``). :class:`LoRA` is a ``torch.nn.utils.parametrize``
parametrisation of that weight: W + (alpha / r) [B_q A_q; 0; B_v A_v]. Working on the weight (not the
activations) covers every layout the same way, costs O(d^2 r) per forward whatever the image size, and
makes merging trivial. B starts at zero (A Kaiming-uniform, a = sqrt 5), so the weight is exactly the
frozen one until trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

QKV = ("q", "k", "v")


class LowRank(nn.Module):
    """A rank-``rank`` matrix B @ A of shape (out, in): A Kaiming-uniform, B zero."""

    def __init__(self, out_features: int, in_features: int, rank: int) -> None:
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self) -> torch.Tensor:
        return self.lora_B @ self.lora_A


class LoRA(nn.Module):
    """Parametrisation of a fused (3d, d[, 1, 1]) q/k/v weight adding low-rank deltas to ``targets``."""

    def __init__(
        self, weight_shape: Sequence[int], rank: int, alpha: float, targets: Sequence[str] = ("q", "v")
    ) -> None:
        super().__init__()
        if weight_shape[0] % 3:
            raise ValueError(f"a fused q/k/v weight has 3d rows, got shape {tuple(weight_shape)}")
        unknown = set(targets) - set(QKV)
        if unknown or not targets:
            raise ValueError(f"LoRA targets must be among q, k, v; got {tuple(targets)}")
        self.dim = int(weight_shape[0]) // 3
        self.fan_in = math.prod(int(s) for s in weight_shape[1:])
        self.scaling = alpha / rank
        self.targets = tuple(t for t in QKV if t in targets)
        for t in self.targets:
            self.add_module(t, LowRank(self.dim, self.fan_in, rank))

    def delta(self) -> torch.Tensor:
        """The (3d, fan_in) update, already scaled."""
        ref = getattr(self, self.targets[0]).lora_A
        blocks = [
            getattr(self, t)() if t in self.targets else ref.new_zeros(self.dim, self.fan_in) for t in QKV
        ]
        return torch.cat(blocks) * self.scaling

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().view_as(weight).to(weight.dtype)
