"""ABAIR's two small classifiers (both **ours**; the paper describes neither).

- :class:`SegHead`, Phase I's auxiliary segmentation head: reads the backbone's last full-resolution
  features (the input of its output convolution, captured by a forward pre-hook, so the backbone and its
  state_dict keys stay untouched) and predicts each pixel's degradation class: 3x3 conv, GELU, 1x1 conv.
- :class:`DegradationEstimator`, Phase III's lightweight estimator: the degraded image at its native
  resolution (resampling would erase noise, JPEG and quantisation evidence) and its high-pass residual
  (the image minus its 3x3 box average, x4: streaks, grain and blocks stand out), a 4-stage strided CNN
  (3x3 convolutions, BatchNorm, GELU), global mean and standard-deviation pooling (brightness, contrast,
  texture energy) and a two-layer MLP giving a distribution over ``clean`` and the adapters. Large images
  are judged on a 3x3 grid of crops whose logits are averaged, so its cost is bounded whatever the size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.methods.abair.errors import ABAIRError
from anyrestore.models import promptir, restormer

# Backbone class -> the module whose input is the last full-resolution feature map.
FEATURE_MODULES: dict[type[nn.Module], str] = {
    promptir.PromptIR: "output",
    restormer.Restormer: "output",
}


def feature_module(backbone: nn.Module) -> nn.Conv2d:
    """The module of ``backbone`` whose input the segmentation head reads."""
    for cls, name in FEATURE_MODULES.items():
        if isinstance(backbone, cls):
            return getattr(backbone, name)
    known = ", ".join(sorted(c.__name__ for c in FEATURE_MODULES))
    raise ABAIRError(
        f"ABAIR's segmentation head does not support {type(backbone).__name__} (supported: {known})"
    )


def _capture(store: dict[str, torch.Tensor], module: nn.Module, args: tuple) -> None:
    store["features"] = args[0]


def tap_features(backbone: nn.Module, store: dict[str, torch.Tensor]) -> tuple[int, object]:
    """Make every forward pass of ``backbone`` leave its last features in ``store["features"]``.

    Returns (feature channels, hook handle). The hook is a partial over ``store`` (no closure), so a deep
    copy of the owner (an EMA copy) captures into its own copy of the store.
    """
    module = feature_module(backbone)
    handle = module.register_forward_pre_hook(functools.partial(_capture, store))
    return int(module.in_channels), handle


class SegHead(nn.Module):
    """Per-pixel degradation logits from backbone features: conv3x3 -> GELU -> conv1x1."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(8, in_channels // 2)
        self.in_channels, self.num_classes, self.hidden = in_channels, num_classes, hidden
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, num_classes, 1),
        )

    def config(self) -> dict[str, int]:
        return {"in_channels": self.in_channels, "num_classes": self.num_classes, "hidden": self.hidden}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)


class DegradationEstimator(nn.Module):
    """Image -> logits over (clean, degradation 1..K); see the module docstring."""

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (16, 32, 64, 96),
        hidden: int = 64,
        crop: int = 256,
        max_pixels: int = 512 * 512,
    ) -> None:
        super().__init__()
        if num_classes < 2 or not widths or min(widths) < 1:
            raise ABAIRError("the estimator needs >= 2 classes and positive widths")
        self.num_classes, self.widths, self.hidden = num_classes, tuple(int(w) for w in widths), hidden
        self.crop, self.max_pixels = crop, max_pixels

        def conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.GELU()]

        layers = conv(6, self.widths[0])
        previous = self.widths[0]
        for width in self.widths:
            layers += conv(previous, width, 2) + conv(width, width)
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * previous, hidden), nn.GELU(), nn.Linear(hidden, num_classes))

    def config(self) -> dict[str, object]:
        return {
            "num_classes": self.num_classes,
            "widths": list(self.widths),
            "hidden": self.hidden,
            "crop": self.crop,
            "max_pixels": self.max_pixels,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) of a batch judged as a whole (training)."""
        x = x - 0.5
        local_mean = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        f = self.features(torch.cat([x, 4.0 * (x - local_mean)], dim=1))
        pooled = torch.cat([f.mean((2, 3)), f.float().std((2, 3), unbiased=False).to(f.dtype)], dim=1)
        return self.head(pooled)

    def crops(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image itself, or a 3x3 grid of ``crop``-sized crops when it has over ``max_pixels``."""
        h, w = x.shape[-2:]
        if h * w <= self.max_pixels:
            return [x]
        ch, cw = min(self.crop, h), min(self.crop, w)
        ys = torch.linspace(0, h - ch, 3).round().long().tolist()
        xs = torch.linspace(0, w - cw, 3).round().long().tolist()
        return [x[..., y : y + ch, x0 : x0 + cw] for y in ys for x0 in xs]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) for images of any size (crop logits averaged for large ones)."""
        return torch.stack([self(c) for c in self.crops(x)]).mean(0)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) per-image distribution over the classes."""
        return F.softmax(self.logits(x).float(), dim=1)
