"""Classical restoration baselines: what a user would reach for without a learned model.

Every baseline maps an (N, 3, H, W) float tensor in [0, 1] to a new one of the same shape, dtype and
device (work happens on CPU, in numpy/OpenCV or torch) and never modifies its input. Baselines are blind
where the real use is blind (they estimate noise level, blockiness, airlight, exposure, streak angle) and
take the true parameter as an optional keyword for oracle comparisons. The motion-blur baselines are
oracle-only: they need the true kernel. BM3D is absent: no dependency implements it.

:data:`BASELINES` maps a name to ``(function, target degradation, description)``, the degradation named
as in :data:`anyrestore.degrade.OPERATORS`; :data:`DEFAULT_BASELINE` names the one to compare against
per degradation; :func:`run_baseline` calls one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ._common import box_filter, guided_filter
from .deblur import (
    richardson_lucy,
    rl_gaussian,
    rl_motion,
    wiener_deconvolve,
    wiener_gaussian,
    wiener_motion,
)
from .haze import atmospheric_light, dark_channel, dehaze_dcp
from .jpeg import blockiness, deblock_bilateral, deblock_dct, shifted_dct_luma
from .light import choose_gamma, clahe, gamma_clahe, gamma_correct
from .noise import bilateral_denoise, estimate_noise_sigma, nlm_denoise
from .rain import derain_median, estimate_streak_angle


class Baseline(NamedTuple):
    """A registered baseline: the function, the degradation it targets, a one-line description."""

    fn: Callable[..., torch.Tensor]
    target: str
    description: str


BASELINES: dict[str, Baseline] = {
    "nlm": Baseline(nlm_denoise, "noise", "non-local means on RGB (OpenCV), h from the estimated sigma"),
    "bilateral": Baseline(bilateral_denoise, "noise", "bilateral filter, range std from the estimated sigma"),
    "wiener": Baseline(wiener_gaussian, "blur", "Wiener deconvolution, Gaussian PSF sigma 2 assumed"),
    "richardson_lucy": Baseline(
        rl_gaussian, "blur", "Richardson-Lucy, 30 iterations, Gaussian PSF sigma 2 assumed"
    ),
    "wiener_motion": Baseline(
        wiener_motion, "motion_blur", "oracle: Wiener with the true length/angle kernel"
    ),
    "richardson_lucy_motion": Baseline(
        rl_motion, "motion_blur", "oracle: Richardson-Lucy with the true length/angle kernel"
    ),
    "deblock": Baseline(deblock_bilateral, "jpeg", "bilateral smoothing in YCbCr, strength from blockiness"),
    "deblock_dct": Baseline(
        deblock_dct, "jpeg", "shifted-DCT thresholding of the luma with the table read from the pixels"
    ),
    "dcp": Baseline(dehaze_dcp, "haze", "dark channel prior (He et al. 2009) with guided-filter refinement"),
    "gamma": Baseline(gamma_correct, "low_light", "gamma correction to a mean luma of 0.45"),
    "clahe": Baseline(clahe, "low_light", "CLAHE on the L channel of Lab"),
    "gamma_clahe": Baseline(gamma_clahe, "low_light", "gamma correction, then CLAHE"),
    "derain_median": Baseline(derain_median, "rain", "darken-only median across the detected streak angle"),
}

# The baseline each degradation is compared against by default: the best blind one in our measurements
# (tests/test_classical.py, 128-px photos); motion blur has only oracle baselines. For noise the bilateral
# filter beat NLM at sigma 25 and 50 at 128 px and at sigma 25 at 400 px; NLM won at sigma 50, 400 px.
DEFAULT_BASELINE: dict[str, str] = {
    "noise": "bilateral",
    "blur": "wiener",
    "motion_blur": "richardson_lucy_motion",
    "jpeg": "deblock",
    "haze": "dcp",
    "low_light": "gamma",
    "rain": "derain_median",
}


def run_baseline(name: str, x: torch.Tensor, **params: Any) -> torch.Tensor:
    """Apply the baseline ``name`` to ``x`` with its keyword ``params``."""
    if name not in BASELINES:
        raise ValueError(f"unknown classical baseline {name!r}; known: {', '.join(BASELINES)}")
    return BASELINES[name].fn(x, **params)


__all__ = [
    "BASELINES",
    "DEFAULT_BASELINE",
    "Baseline",
    "atmospheric_light",
    "bilateral_denoise",
    "blockiness",
    "box_filter",
    "choose_gamma",
    "clahe",
    "dark_channel",
    "deblock_bilateral",
    "deblock_dct",
    "dehaze_dcp",
    "derain_median",
    "estimate_noise_sigma",
    "estimate_streak_angle",
    "gamma_clahe",
    "gamma_correct",
    "guided_filter",
    "nlm_denoise",
    "richardson_lucy",
    "rl_gaussian",
    "rl_motion",
    "run_baseline",
    "shifted_dct_luma",
    "wiener_deconvolve",
    "wiener_gaussian",
    "wiener_motion",
]
