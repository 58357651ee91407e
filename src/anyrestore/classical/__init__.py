"""Classical restoration baselines: what a user would reach for without a learned model.

Every baseline maps an (N, 3, H, W) float tensor in [0, 1] to a new one of the same shape, dtype and
device (work happens on CPU, in numpy/OpenCV or torch) and never modifies its input. Baselines are blind
where the real use is blind (they estimate noise level, blockiness, airlight, exposure, streak angle) and
take the true parameter as an optional keyword for oracle comparisons (the deblurring ones estimate the
Gaussian blur's std, or the motion's length and angle). CBM3D (``cbm3d``) needs the optional ``bm3d``
package, free for non-commercial use only (``pip install 'anyrestore[bm3d]'``); it is registered either
way and raises a one-line :class:`ImportError` when called without it.

:data:`BASELINES` maps a name to ``(function, target degradation, description)``, the degradation named
as in :data:`anyrestore.degrade.OPERATORS`; :data:`DEFAULT_BASELINE` names the one to compare against
per degradation; :func:`run_baseline` calls one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ._common import box_filter, guided_filter
from .bm3d import bm3d_available, bm3d_sigma, cbm3d_denoise, jpeg_noise_level
from .deblur import (
    estimate_gaussian_blur,
    estimate_motion_blur,
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
    "cbm3d": Baseline(
        cbm3d_denoise, "noise", "CBM3D (optional bm3d package, non-commercial), sigma estimated (JPEG-aware)"
    ),
    "nlm": Baseline(nlm_denoise, "noise", "non-local means on RGB (OpenCV), h from the estimated sigma"),
    "bilateral": Baseline(bilateral_denoise, "noise", "bilateral filter, range std from the estimated sigma"),
    "wiener_gaussian": Baseline(
        wiener_gaussian, "blur", "Wiener deconvolution, Gaussian PSF std estimated by re-blurring (or sigma=)"
    ),
    "rl_gaussian": Baseline(
        rl_gaussian, "blur", "Richardson-Lucy, 30 iterations, Gaussian PSF std estimated (or sigma=)"
    ),
    "wiener_motion": Baseline(
        wiener_motion, "motion_blur", "Wiener, motion length/angle from the cepstrum (or length=, angle=)"
    ),
    "rl_motion": Baseline(
        rl_motion,
        "motion_blur",
        "Richardson-Lucy, motion length/angle from the cepstrum (or length=, angle=)",
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

# The keyword each baseline takes the true degradation parameters under, for oracle runs: the
# baseline's keyword -> the degradation operator's parameter.
ORACLE_KEYWORDS: dict[str, dict[str, str]] = {
    "cbm3d": {"sigma": "sigma"},
    "nlm": {"sigma": "sigma"},
    "bilateral": {"sigma": "sigma"},
    "wiener_gaussian": {"sigma": "sigma", "kernel_size": "kernel_size"},
    "rl_gaussian": {"sigma": "sigma", "kernel_size": "kernel_size"},
    "wiener_motion": {"length": "length", "angle": "angle"},
    "rl_motion": {"length": "length", "angle": "angle"},
}

# The baseline each degradation is compared against by default: the best blind one in our measurements
# (tests/test_classical.py and docs/results.md). For noise CBM3D when the optional bm3d package is
# installed (1.5-3 dB above the bilateral filter), else the bilateral filter, which beat NLM at sigma 25
# and 50 at 128 px and at sigma 25 at 400 px (NLM won at sigma 50, 400 px).
DEFAULT_BASELINE: dict[str, str] = {
    "noise": "cbm3d" if bm3d_available() else "bilateral",
    "blur": "wiener_gaussian",
    "motion_blur": "rl_motion",
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
    "ORACLE_KEYWORDS",
    "Baseline",
    "atmospheric_light",
    "bilateral_denoise",
    "blockiness",
    "bm3d_available",
    "bm3d_sigma",
    "box_filter",
    "cbm3d_denoise",
    "choose_gamma",
    "clahe",
    "dark_channel",
    "deblock_bilateral",
    "deblock_dct",
    "dehaze_dcp",
    "derain_median",
    "estimate_gaussian_blur",
    "estimate_motion_blur",
    "estimate_noise_sigma",
    "estimate_streak_angle",
    "gamma_clahe",
    "gamma_correct",
    "guided_filter",
    "jpeg_noise_level",
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
