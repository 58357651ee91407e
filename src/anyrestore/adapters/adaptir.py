"""AdaptIR (Guo et al., "Parameter Efficient Adaptation for Image Restoration with Heterogeneous
Mixture-of-Experts", NeurIPS 2024): the adapter module.

Three branches on a narrow (c-channel) projection of the block's FFN input, each learning a different
kind of representation, fused by learned gates and projected back to d channels:

- local spatial: a depthwise 3x3 conv whose (c, 9) kernel matrix is a rank-r product (LIM);
- global spatial: a per-channel affine transform of the Fourier amplitude and phase (FAM);
- channel: softmax-attention pooling over positions and a small MLP giving a per-channel multiplier (CGM);
- adaptive ensemble: a channel gate computed from the global branch weights the local one, a spatial
  gate computed from the local branch weights the global one.

The up projection starts at zero, so an injected model is exactly the frozen one until trained.
Parameter names follow the authors' release (``csguoh/AdaptIR``, ``net/ipt.py`` / ``net/edt.py``) so its
trained adapters map one to one. With the paper's widths: 29,069 parameters for d = 576 (IPT, c = d // 24,
channel gate c // 8) and 4,817 for d = 180 (EDT, c = d // 14, channel gate c // 4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class AdaptIR(nn.Module):
    """The heterogeneous mixture-of-experts adapter on an (N, d, H, W) map; returns (N, d, H, W).

    ``hidden`` is c (default d // 24), ``rank`` the rank of the local kernel (default c // 2),
    ``gate_hidden`` the width of the channel gate (default c // 8).
    """

    def __init__(
        self, dim: int, hidden: int | None = None, rank: int | None = None, gate_hidden: int | None = None
    ) -> None:
        super().__init__()
        c = hidden if hidden is not None else dim // 24
        if c < 2:
            raise ValueError(f"AdaptIR needs a hidden width of at least 2 (dim {dim} gives {c})")
        r = rank if rank is not None else c // 2
        g = gate_hidden if gate_hidden is not None else max(1, c // 8)
        self.hidden, self.rank = c, r

        self.head = nn.Conv2d(dim, c, 1)  # down projection
        self.BN = nn.BatchNorm2d(c)
        # Local interaction: depthwise 3x3 kernel = (c x r) @ (r x 9).
        self.conv_weight_A = nn.Parameter(torch.empty(c, r))
        self.conv_weight_B = nn.Parameter(torch.empty(r, 9))
        self.conv_bias = nn.Parameter(torch.zeros(c))
        nn.init.kaiming_uniform_(self.conv_weight_A, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.conv_weight_B, a=math.sqrt(5))
        # Frequency affine: depthwise 1x1 on amplitude and phase, starting as the identity.
        self.amp_fuse = nn.Conv2d(c, c, 1, groups=c)
        self.pha_fuse = nn.Conv2d(c, c, 1, groups=c)
        for conv in (self.amp_fuse, self.pha_fuse):
            nn.init.ones_(conv.weight)
            nn.init.zeros_(conv.bias)
        # Channel gating: attention pooling, then an MLP giving a raw (unsquashed) per-channel multiplier.
        self.compress = nn.Conv2d(c, 1, 1)
        self.proj = nn.Sequential(nn.Linear(c, c // 2), nn.GELU(), nn.Linear(c // 2, c))
        self.tail = nn.Conv2d(c, dim, 1, bias=False)  # up projection
        nn.init.zeros_(self.tail.weight)
        # Adaptive ensemble gates, both starting at sigmoid(0) = 1/2.
        self.channel_interaction = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, g, 1), nn.GELU(), nn.Conv2d(g, c, 1)
        )
        nn.init.zeros_(self.channel_interaction[3].weight)
        nn.init.zeros_(self.channel_interaction[3].bias)
        self.spatial_interaction = nn.Conv2d(c, 1, 1)
        nn.init.zeros_(self.spatial_interaction.weight)
        nn.init.zeros_(self.spatial_interaction.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.BN(self.head(x))
        global_x = self._frequency_affine(x)

        kernel = (self.conv_weight_A @ self.conv_weight_B).view(self.hidden, 1, 3, 3)
        local_x = F.conv2d(x, kernel.to(x.dtype), self.conv_bias.to(x.dtype), padding=1, groups=self.hidden)

        weights = self.compress(x).flatten(2).softmax(dim=-1)  # (N, 1, HW): a distribution over positions
        pooled = torch.bmm(x.flatten(2), weights.transpose(1, 2)).squeeze(-1)  # (N, c)
        channel_score = self.proj(pooled)[:, :, None, None]

        channel_gate = self.channel_interaction(global_x).sigmoid()
        spatial_gate = self.spatial_interaction(local_x).sigmoid()
        fused = channel_gate * local_x + spatial_gate * global_x
        return self.tail(channel_score * fused)

    def _frequency_affine(self, x: torch.Tensor) -> torch.Tensor:
        # FFTs run in float32: half-precision FFTs need power-of-two sizes and lose accuracy.
        h, w = x.shape[-2:]
        spectrum = torch.fft.rfft2(x.float(), norm="ortho")
        amplitude = _affine(self.amp_fuse, spectrum.abs())
        phase = _affine(self.pha_fuse, spectrum.angle())
        # Not torch.polar: the affine amplitude may turn negative, which polar does not allow.
        spectrum = torch.complex(amplitude * phase.cos(), amplitude * phase.sin())
        return torch.fft.irfft2(spectrum, s=(h, w), norm="ortho").abs().to(x.dtype)


def _affine(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A depthwise 1x1 conv applied in the dtype of ``x`` (float32 inside the frequency branch)."""
    return F.conv2d(x, conv.weight.to(x.dtype), conv.bias.to(x.dtype), groups=conv.groups)
