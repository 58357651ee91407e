"""VPT-deep (Jia et al., "Visual Prompt Tuning", ECCV 2022): learned prompt tokens in every layer.

Each transformer block gets its own ``num_prompts`` tokens; the block's image tokens attend to them, and
whatever the block computes for the prompts themselves is discarded (in VPT-deep the prompt outputs are
replaced by the next layer's prompts). Three insertions, by backbone:

- ``sequence`` (IPT, global attention over (L, N, C) sequences): the prompts are prepended to the layer's
  input sequence and cut from its output, exactly as in VPT; they carry no position/query embedding.
- ``swin`` (SwinIR): every window's attention also attends to the prompts (keys and values from the
  attention's own q/k/v projection of the prompts, no relative position bias, no shift mask).
- ``edt`` (EDT): likewise for both stripe attentions, through the block's shared q/k/v projection.

For the windowed backbones the prompts enter after the block's first LayerNorm (they are free parameters,
so normalising them only re-parametrises them). Prompts change the output from the start: VPT has no
identity initialisation. Channel-attention backbones (Restormer, PromptIR) have no tokens to prompt.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Prompts(nn.Module):
    """``num_prompts`` tokens of width ``dim``, uniform in +-sqrt(6 / (3 + dim)) as VPT initialises them."""

    def __init__(self, num_prompts: int, dim: int) -> None:
        super().__init__()
        if num_prompts < 1:
            raise ValueError(f"num_prompts must be positive, got {num_prompts}")
        bound = math.sqrt(6.0 / (3 + dim))
        self.prompts = nn.Parameter(torch.empty(num_prompts, dim).uniform_(-bound, bound))


class PromptedWindowAttention(nn.Module):
    """SwinIR's window attention (``base``, a ``swinir.WindowAttention``) with prompt keys and values.

    ``prompts`` is held by reference (it is registered on the block as ``vpt``).
    """

    def __init__(self, base: nn.Module, prompts: Prompts) -> None:
        super().__init__()
        self.base = base
        self._prompts = (prompts,)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        base = self.base
        bw, n, c = x.shape
        heads = base.num_heads
        q, k, v = base.qkv(x).reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        prompts = self._prompts[0].prompts.to(x.dtype)
        p = prompts.shape[0]
        _, pk, pv = base.qkv(prompts).reshape(p, 3, heads, c // heads).permute(1, 2, 0, 3).unbind(0)
        k = torch.cat([pk.expand(bw, -1, -1, -1), k], dim=2)
        v = torch.cat([pv.expand(bw, -1, -1, -1), v], dim=2)

        bias = base.relative_position_bias_table[base.relative_position_index.view(-1)]
        bias = F.pad(bias.view(n, n, heads).permute(2, 0, 1).to(q.dtype), (p, 0))  # (heads, N, P + N)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))
        else:
            nw = mask.shape[0]
            full = bias.unsqueeze(0) + F.pad(mask.to(q.dtype), (p, 0)).unsqueeze(1)
            full = full.reshape(1, nw * heads, n, p + n)
            q, k, v = (t.reshape(bw // nw, nw * heads, t.shape[2], -1) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=full).reshape(bw, heads, n, -1)
        return base.proj(out.transpose(1, 2).reshape(bw, n, c))


class PromptedStripeAttention(nn.Module):
    """One of EDT's two stripe attentions (``base``) with prompt keys and values of its channel half.

    The prompts' keys and values come from the block's fused q/k/v projection; ``block`` (which owns it,
    and the prompts as ``vpt``) is held by reference.
    """

    def __init__(self, base: nn.Module, block: nn.Module, half: int) -> None:
        super().__init__()
        self.base = base
        self.half = half
        self._block = (block,)

    def forward(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        block = self._block[0]
        prompts = block.vpt.prompts.to(qkv.dtype)
        c = prompts.shape[1]
        kv = block.qkv(prompts).view(-1, 3, c)
        channels = slice(0, c // 2) if self.half == 0 else slice(c // 2, c)
        return self.base(qkv, mask, extra_kv=(kv[:, 1, channels], kv[:, 2, channels]))
