"""FacT-TT (Jie & Deng, "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer", AAAI 2023).

The weight increments of all blocks are treated as one tensor and factorised Tensor-Train style: two
factors shared by every block (U: d -> r, V: r -> d) and a small per-weight core, so a d x d increment is
s * V C U. A weight whose shape is a grid of d x d blocks (the fused q/k/v projection is 3 x 1, an MLP
layer with hidden width k*d is k x 1 or 1 x k) gets a core of the matching grid of r x r blocks, exactly
as the reference implementation splits the MLP. Applied to q, k, v, the attention output projection and
the two FFN projections; a weight that is not a grid of d x d blocks (Restormer's GDFN, hidden width
int(2.66 d)) is left alone. Backbones whose blocks have several widths (Restormer, PromptIR) get one
pair of shared factors per width.

Implemented as a ``torch.nn.utils.parametrize`` parametrisation of each weight. V starts at zero, so the
model is exactly the frozen one until trained. The reference's dropout (0.1) on the core output acts on
activations and has no weight-space equivalent; it is left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class FacTFactors(nn.Module):
    """The factors shared by every block of one width: U (r x d, Kaiming-uniform) and V (d x r, zero)."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.u = nn.Linear(dim, rank, bias=False)
        self.v = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.v.weight)


class FacT(nn.Module):
    """Parametrisation of one weight made of (rows x cols) blocks of d x d: W + s * V C_ij U per block.

    ``factors`` is held by reference (it is registered once, on the model); the core C is this weight's own.
    """

    def __init__(self, factors: FacTFactors, weight_shape: Sequence[int], scale: float = 1.0) -> None:
        super().__init__()
        dim, rank = factors.u.in_features, factors.u.out_features
        out_features, in_features = int(weight_shape[0]), math.prod(int(s) for s in weight_shape[1:])
        if out_features % dim or in_features % dim:
            raise ValueError(f"weight {tuple(weight_shape)} is not a grid of {dim}x{dim} blocks")
        self.rows, self.cols = out_features // dim, in_features // dim
        self.core = nn.Parameter(torch.empty(self.rows * rank, self.cols * rank))
        nn.init.kaiming_uniform_(self.core, a=math.sqrt(5))
        self.scale = scale
        self._factors = (factors,)  # a reference, not a child: the factors are shared

    def delta(self) -> torch.Tensor:
        factors = self._factors[0]
        u, v = factors.u.weight, factors.v.weight  # (r, d), (d, r)
        rank, dim = u.shape
        core = self.core.view(self.rows, rank, self.cols, rank)
        blocks = torch.einsum("dr,irjs,se->idje", v, core, u)  # (rows, d, cols, d)
        return blocks.reshape(self.rows * dim, self.cols * dim) * self.scale

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().view_as(weight).to(weight.dtype)
