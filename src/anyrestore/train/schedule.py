"""Learning rate as a pure function of the iteration, so resuming needs only the iteration number.

Iterations ``i`` count from 1. As in BasicSR (whose schedules the papers' recipes use), the curve is a
function of ``i`` over the whole run, and warm-up replaces its first ``warmup`` iterations with a linear
ramp ``lr * i / warmup``:

- ``constant``: ``lr``;
- ``cosine``: ``min_lr + (lr - min_lr) * (1 + cos(pi * i / iterations)) / 2``;
- ``cosine_restarts``: the same within each of ``periods`` (summing to ``iterations``), period ``k``
  peaking at ``lr * restart_weights[k]`` (BasicSR's CosineAnnealingRestartLR);
- ``multistep``: ``lr * gamma ** (number of milestones <= i)``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LRSchedule:
    base_lr: float
    iterations: int
    warmup: int = 0
    kind: str = "cosine"
    min_lr: float = 0.0
    periods: tuple[int, ...] = ()
    restart_weights: tuple[float, ...] = ()
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5

    @classmethod
    def from_recipe(cls, base_lr: float, section) -> LRSchedule:
        """From a :class:`~anyrestore.train.recipe.ScheduleSection`."""
        periods = tuple(section.periods or ())
        return cls(
            base_lr=base_lr,
            iterations=section.iterations,
            warmup=section.warmup,
            kind=section.kind,
            min_lr=section.min_lr,
            periods=periods,
            restart_weights=tuple(section.restart_weights or (1.0,) * len(periods)),
            milestones=tuple(section.milestones or ()),
            gamma=section.gamma,
        )

    def __call__(self, iteration: int) -> float:
        """The learning rate used by the optimiser step of ``iteration`` (1-based)."""
        if self.warmup and iteration <= self.warmup:
            return self.base_lr * iteration / self.warmup
        if self.kind == "constant":
            return self.base_lr
        if self.kind == "multistep":
            return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, iteration)
        if self.kind == "cosine":
            return _cosine(self.base_lr, self.min_lr, iteration, self.iterations)
        if self.kind == "cosine_restarts":
            start = 0
            for period, weight in zip(self.periods, self.restart_weights, strict=True):
                if iteration <= start + period:
                    return _cosine(self.base_lr * weight, self.min_lr, iteration - start, period)
                start += period
            return self.min_lr
        raise ValueError(f"unknown schedule kind {self.kind!r}")


def _cosine(high: float, low: float, t: int, span: int) -> float:
    progress = min(max(t / span, 0.0), 1.0) if span > 0 else 1.0
    return low + (high - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
