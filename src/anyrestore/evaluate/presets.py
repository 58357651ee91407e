"""Metric presets: the conventions behind a reported number. Torch-free, so the CLI can list them cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricPreset:
    """The conventions behind a reported number."""

    name: str
    y_channel: bool
    quantize: bool = True
    crop_border: int = 0
    description: str = ""


PRESETS: dict[str, MetricPreset] = {
    "basicsr": MetricPreset(
        "basicsr", y_channel=True, description="uint8-quantised, Y (BT.601 limited range), BasicSR SSIM"
    ),
    "rgb": MetricPreset("rgb", y_channel=False, description="uint8-quantised, RGB channels, BasicSR SSIM"),
}


def get_preset(preset: str | MetricPreset, crop_border: int | None = None) -> MetricPreset:
    """Resolve a preset name; ``crop_border`` (when given) overrides the preset's."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown metric preset {preset!r} (known: {', '.join(PRESETS)})")
        preset = PRESETS[preset]
    if crop_border is not None:
        if crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {crop_border}")
        preset = MetricPreset(preset.name, preset.y_channel, preset.quantize, crop_border, preset.description)
    return preset
