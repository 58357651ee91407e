"""Metrics with the conventions papers report, and folder-level evaluation tables."""

from anyrestore.evaluate.folders import EvaluationTable, ImageScore, PairingError, evaluate_folders
from anyrestore.evaluate.metrics import PRESETS, MetricPreset, get_preset, psnr, ssim

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
