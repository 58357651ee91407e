"""Exponential moving average of a model's weights (BasicSR's ``net_g_ema``; RAM uses decay 0.995).

After each optimiser step every floating parameter moves ``ema = decay * ema + (1 - decay) * param`` and
buffers are copied. Before iteration ``start`` the average simply follows the weights. The averaged copy
is what validation runs and what ``params_ema`` of a checkpoint holds.

With ``warmup`` the decay ramps up as ``(1 + n) / (10 + n)`` over the ``n`` updates since ``start``, capped
at ``decay`` (the ramp diffusers and timm offer). A run of a few hundred iterations, such as a fine-tuning
phase that starts from other weights, then averages its own recent weights: with a fixed decay of 0.999 a
300-iteration run would end with 74% of its average still the weights it started from. A run much longer
than ``1 / (1 - decay)`` ends with practically the same average either way.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of ``model`` (the bare module, no wrappers) kept as a running average."""

    def __init__(self, model: nn.Module, decay: float, start: int = 0, warmup: bool = False) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay, self.start, self.warmup = decay, start, warmup
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def decay_at(self, iteration: int) -> float:
        """The decay the update at ``iteration`` uses (0 before ``start``: the average copies the weights)."""
        if iteration < self.start:
            return 0.0
        if not self.warmup:
            return self.decay
        n = iteration - self.start
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module, iteration: int) -> None:
        """Fold the current weights of ``model`` (same architecture) into the average."""
        ema_params, new_params = [], []
        for (name, e), p in zip(self.module.named_parameters(), model.parameters(), strict=True):
            if e.shape != p.shape:
                raise ValueError(f"EMA parameter {name} has shape {tuple(e.shape)}, model {tuple(p.shape)}")
            if e.is_floating_point():
                ema_params.append(e)
                new_params.append(p.detach())
        decay = self.decay_at(iteration)
        if decay == 0.0:
            torch._foreach_copy_(ema_params, new_params)
        elif ema_params:
            torch._foreach_lerp_(ema_params, new_params, 1.0 - decay)
        for e, b in zip(self.module.buffers(), model.buffers(), strict=True):
            e.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state, strict=True)
