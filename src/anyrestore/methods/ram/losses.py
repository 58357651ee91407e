"""RAM's pre-training loss: L1 against the clean target on the hidden pixels only."""

from __future__ import annotations

import torch


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum over hidden pixels and channels of |pred - target|, divided by (hidden pixels x channels).

    ``mask`` is (N, 1, H, W) or (N, H, W), 1 = hidden; visible pixels do not contribute at all. With no
    hidden pixel the loss is 0 (still connected to ``pred`` so backward works).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    m = (mask.unsqueeze(1) if mask.dim() == 3 else mask).to(pred.dtype)
    total = ((pred - target).abs() * m).sum()
    count = m.sum() * pred.shape[1]
    return total / count.clamp_min(1)
