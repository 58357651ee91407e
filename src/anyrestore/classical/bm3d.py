"""CBM3D (Dabov et al. 2007; Mäkinen, Azzari and Foi 2020) through the optional ``bm3d`` package.

``bm3d`` (PyPI, Tampere University) is free for non-commercial use only, so it is an optional extra:
``pip install 'anyrestore[bm3d]'``. Without it :func:`cbm3d_denoise` raises :class:`ImportError` with
that line. The package wraps a compiled library (``bm4d``) for Linux, macOS and Windows on x86_64 and
Apple silicon.

The noise level is blind by default. On plain noise it is :func:`estimate_noise_sigma`. A decoded JPEG
hides the noise from that estimate (the quantiser zeroes the high frequencies it reads, so noise σ15
read through JPEG q40 comes out near 1), yet CBM3D still needs a level at least the noise's to clean
it, and a larger one also smooths the blocking; so on an image that carries a JPEG signature
(:func:`anyrestore.classical.jpeg_format.detect_jpeg`) the level is also read from the quantised DCT
coefficients (:func:`jpeg_noise_level`), and the larger of the two is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from types import ModuleType

import numpy as np
import torch

from ._common import LUMA, as_output, as_work
from .jpeg_format import block_dct, dct_matrix, detect_jpeg, ijg_luma_table, luma_255, whole_blocks
from .noise import estimate_noise_sigma

MISSING = "CBM3D needs the optional 'bm3d' package (non-commercial licence): pip install 'anyrestore[bm3d]'"
# Std of JPEG's luma for i.i.d. RGB noise of std 1: the L2 norm of the BT.601 luma weights.
_LUMA_NOISE_GAIN = math.sqrt(sum(w**2 for w in LUMA))
# Only frequencies whose nonzero share lies inside these bounds say anything about the level.
_MIN_SHARE, _MAX_SHARE = 0.005, 0.95
# CBM3D's level on a decoded JPEG per unit of jpeg_noise_level, chosen on three training photos of the
# photo manifest (kphotoalbum-skagen, mate-ladybird, opencv-building; 128 px centre crops, noise σ 0/15/25/10
# through JPEG q20/40/40/70): mean gain +3.99 dB at 0.8, +4.74 at 1.0, +4.89 at 1.25; 1.25 won only on the
# smooth ladybird and lost up to 0.5 dB on the others, so 1.0.
JPEG_SIGMA_GAIN = 1.0
# The package's profiles by the names its bm3d_rgb() takes.
PROFILES = {"np": "BM3DProfile", "refilter": "BM3DProfileRefilter", "high": "BM3DProfileHigh"}


def bm3d_available() -> bool:
    """Whether the optional ``bm3d`` package is installed (found without importing it)."""
    return importlib.util.find_spec("bm3d") is not None


def _bm3d() -> ModuleType:
    try:
        return importlib.import_module("bm3d")
    except ImportError as exc:
        raise ImportError(MISSING) from exc


def jpeg_noise_level(image: torch.Tensor) -> float | None:
    """The noise std (0..255, per RGB channel) that would explain a decoded JPEG's nonzero AC
    coefficients, or ``None`` when ``image`` (3, H, W) carries no JPEG signature.

    On the file's grid and table, each AC frequency's share p of blocks whose coefficient rounds to a
    nonzero step gives the std of zero-mean Gaussian noise that would leave that share, ``q / (2
    Φ⁻¹(1 - p/2))``; the median over the frequencies is taken. Image content also leaves nonzero steps,
    so a clean JPEG reads about the size of its quantisation (15 at q40, 10 at q70) and noise adds to
    that: the level measures what CBM3D has to remove, noise and blocking together.
    """
    signature = detect_jpeg(image)
    if signature is None:
        return None
    y = luma_255(image[None].double())[whole_blocks(image.shape, signature.dy, signature.dx)]
    coefs = block_dct(y - 128.0, dct_matrix().double())[0].reshape(64, -1)
    steps = ijg_luma_table(signature.quality).double().reshape(64, 1)
    share = (torch.round(coefs / steps) != 0).double().mean(1)[1:]
    usable = (share > _MIN_SHARE) & (share < _MAX_SHARE)
    if not usable.any():
        return None
    levels = steps[1:, 0][usable] / (2.0 * torch.special.ndtri(1.0 - share[usable] / 2.0))
    return float(levels.median()) / _LUMA_NOISE_GAIN


def bm3d_sigma(x: torch.Tensor) -> torch.Tensor:
    """Blind noise level for CBM3D per image of ``x`` (N, 3, H, W), on 0..255, shape (N,).

    :func:`estimate_noise_sigma`, or on a decoded JPEG the larger of that and ``JPEG_SIGMA_GAIN`` times
    :func:`jpeg_noise_level`.
    """
    work = as_work(x)
    sigmas = estimate_noise_sigma(work)
    for i, img in enumerate(work):
        level = jpeg_noise_level(img)
        if level is not None:
            sigmas[i] = max(float(sigmas[i]), JPEG_SIGMA_GAIN * level)
    return sigmas


def cbm3d_denoise(
    x: torch.Tensor, *, sigma: float | None = None, profile: str = "np", threads: int = 1
) -> torch.Tensor:
    """CBM3D on each RGB image (``bm3d.bm3d_rgb``: block matching on the luma of the opponent colour
    space, collaborative hard thresholding then Wiener filtering).

    ``sigma`` is the noise std per channel on 0..255 (known: oracle); None estimates it per image with
    :func:`bm3d_sigma`. ``profile`` is the package's ('np' its default, 'refilter' a slower, slightly
    stronger one). ``threads`` is the library's thread count; 1 (the default) keeps results bitwise
    repeatable, as the library's aggregation order changes with more.
    """
    bm3d = _bm3d()
    if sigma is not None and sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    work = as_work(x)
    sigmas = [float(sigma)] * work.shape[0] if sigma is not None else bm3d_sigma(work).tolist()
    if profile not in PROFILES:
        raise ValueError(f"unknown BM3D profile {profile!r}; known: {', '.join(PROFILES)}")
    settings = getattr(bm3d, PROFILES[profile])()
    settings.num_threads = threads
    outs = []
    for img, s in zip(work, sigmas, strict=True):
        if s <= 0:
            outs.append(img)
            continue
        arr = img.permute(1, 2, 0).numpy().astype(np.float64)
        out = bm3d.bm3d_rgb(arr, s / 255.0, profile=settings)
        outs.append(torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).permute(2, 0, 1))
    return as_output(torch.stack(outs), x)
