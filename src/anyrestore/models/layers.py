"""Layers several backbones share, defined once; each keeps the parameter names of the releases.

``DropPath`` and ``Mlp`` are SwinIR's (EDT uses the former), ``Upsample`` / ``UpsampleOneStep`` the conv +
pixel-shuffle reconstruction heads of SwinIR, EDT and IPT, ``ChannelLayerNorm`` the channel LayerNorm of
Restormer, PromptIR and NAFNet (``LayerNorm2d``). Restormer's own ``Upsample`` (which halves the
channels) stays in :mod:`anyrestore.models.restormer`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``p`` while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        noise = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * noise / keep


class Mlp(nn.Module):
    """Transformer feed-forward: fc1, GELU, fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Upsample(nn.Sequential):
    """Conv + pixel shuffle, repeated: x2 steps for powers of two, or a single x3 step."""

    def __init__(self, scale: int, num_feat: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, padding=1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, padding=1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale {scale} is not supported (powers of 2 and 3 are)")
        super().__init__(*layers)


class UpsampleOneStep(nn.Sequential):
    """One conv straight to ``scale**2 * out_chans`` channels and one pixel shuffle (lightweight SR)."""

    def __init__(self, scale: int, num_feat: int, out_chans: int) -> None:
        super().__init__(nn.Conv2d(num_feat, scale**2 * out_chans, 3, padding=1), nn.PixelShuffle(scale))


class ChannelLayerNorm(nn.Module):
    """Layer normalisation over the channels of an (N, C, H, W) map, with or without a bias.

    Without a bias (Restormer's ``BiasFree``) the output is scaled by the inverse standard deviation
    but not centred. With ``float32_stats`` the statistics are computed in float32, so half-precision
    activations do not overflow; otherwise the release's formula runs in the input dtype.
    """

    def __init__(
        self, dim: int, with_bias: bool = True, eps: float = 1e-5, float32_stats: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None
        self.eps = eps
        self.float32_stats = float32_stats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.float32_stats:
            var = x.var(dim=1, keepdim=True, unbiased=False)
            if self.bias is None:
                return x / torch.sqrt(var + self.eps) * self.weight[:, None, None]
            centred = x - x.mean(dim=1, keepdim=True)
            return (
                centred / torch.sqrt(var + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]
            )
        x32 = x.float()
        centred = x32 - x32.mean(1, keepdim=True)
        var = centred.pow(2).mean(1, keepdim=True)
        y = centred if self.bias is not None else x32
        y = y * torch.rsqrt(var + self.eps) * self.weight.float()[:, None, None]
        if self.bias is not None:
            y = y + self.bias.float()[:, None, None]
        return y.to(x.dtype)
