"""Metrics with the conventions papers report, and folder-level evaluation tables.

The presets load eagerly (torch-free, for the CLI's argument parser); everything else on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from anyrestore.evaluate.presets import PRESETS, MetricPreset, get_preset

if TYPE_CHECKING:
    from anyrestore.evaluate.folders import EvaluationTable, ImageScore, PairingError, evaluate_folders
    from anyrestore.evaluate.metrics import psnr, ssim

_LAZY = {
    "EvaluationTable": "folders",
    "ImageScore": "folders",
    "PairingError": "folders",
    "evaluate_folders": "folders",
    "psnr": "metrics",
    "ssim": "metrics",
}

__all__ = [
    "PRESETS",
    "EvaluationTable",
    "ImageScore",
    "MetricPreset",
    "PairingError",
    "evaluate_folders",
    "get_preset",
    "psnr",
    "ssim",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"anyrestore.evaluate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'anyrestore.evaluate' has no attribute {name!r}")
