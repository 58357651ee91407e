"""Non-blind deconvolution: Wiener filtering and Richardson-Lucy, for Gaussian and motion blur.

Neither method estimates the blur. The Gaussian-blur baselines assume a 15x15 Gaussian PSF of std 2 px
unless told otherwise (the middle of the blur range the papers train on); the motion-blur baselines need
the true length and angle, so they are oracle comparisons only: blind motion deblurring (kernel
estimation) has no simple classical baseline here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..degrade import gaussian_kernel, motion_kernel
from ._common import as_output, as_work

# Default noise-to-signal power ratio of the Wiener filter, for 8-bit images with little noise: on
# astronaut/chelsea (128 px, uint8, blur sigma 1-3, true PSF) the best lay between 1e-4 and 3e-3 depending
# on the image's texture; 1e-3 is the middle. Raise it for noisy inputs.
DEFAULT_NSR = 1e-3
# Motion kernels have zeros in their spectrum, and oblique ones do not commute with the mirrored
# boundary: they need a stronger regulariser (1e-2 was best of 3e-3..3e-2 at angles 30 and 75).
MOTION_NSR = 1e-2
DEFAULT_RL_ITERATIONS = 30
ASSUMED_BLUR_SIGMA = 2.0
ASSUMED_KERNEL_SIZE = 15


def _check_kernel(kernel: torch.Tensor) -> torch.Tensor:
    if kernel.dim() != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be a 2-D tensor with odd sides, got shape {tuple(kernel.shape)}")
    k = kernel.detach().to(device="cpu", dtype=torch.float64)
    total = k.sum()
    if not torch.isfinite(total) or total <= 0 or (k < 0).any():
        raise ValueError("kernel must be non-negative with a positive sum")
    return k / total


def _mirror(x: torch.Tensor) -> torch.Tensor:
    """Extend (..., H, W) to (..., 2H-2, 2W-2) by whole-sample mirroring: the periodic image whose
    circular convolution equals convolution with reflect padding inside the original frame."""
    h, w = x.shape[-2:]
    if h < 2 or w < 2:
        raise ValueError(f"deconvolution needs images of at least 2x2, got {h}x{w}")
    shape = x.shape
    flat = x.reshape(-1, 1, h, w)
    return F.pad(flat, (0, w - 2, 0, h - 2), mode="reflect").reshape(*shape[:-2], 2 * h - 2, 2 * w - 2)


def _otf(kernel: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Transfer function of correlation with ``kernel`` (centre at the middle tap) on a ``shape`` grid.

    Correlation with k is convolution with k flipped, whose centre goes to the origin; taps beyond the
    grid wrap around, which is exact for the periodic (circular) convolution the FFT computes.
    """
    kh, kw = kernel.shape
    rows = (torch.arange(kh) - kh // 2) % shape[0]
    cols = (torch.arange(kw) - kw // 2) % shape[1]
    grid = torch.zeros(shape, dtype=torch.float64)
    grid.index_put_(
        (rows[:, None].expand(kh, kw), cols[None, :].expand(kh, kw)), kernel.flip(0, 1), accumulate=True
    )
    return torch.fft.fft2(grid)


def wiener_deconvolve(x: torch.Tensor, kernel: torch.Tensor, *, nsr: float = DEFAULT_NSR) -> torch.Tensor:
    """Wiener deconvolution with a known PSF: ``X = conj(H) Y / (|H|^2 + nsr)`` in the Fourier domain.

    ``kernel`` is the 2-D blur as the degradation applies it (correlation, odd sides, normalised here);
    ``nsr`` the noise-to-signal power ratio, a constant across frequencies (larger: smoother, less ringing).
    The image is mirrored to twice its size first, so the FFT's periodic boundary matches reflect padding
    (exactly for kernels symmetric in each axis, such as the Gaussian) and the borders do not ring.
    """
    if nsr <= 0:
        raise ValueError(f"nsr must be > 0, got {nsr}")
    k = _check_kernel(kernel)
    work = as_work(x).to(torch.float64)
    h, w = work.shape[-2:]
    ext = _mirror(work)
    otf = _otf(k, tuple(ext.shape[-2:]))
    spec = torch.fft.fft2(ext) * otf.conj() / (otf.abs() ** 2 + nsr)
    out = torch.fft.ifft2(spec).real[..., :h, :w]
    return as_output(out, x)


def _factor(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(column, row) taps whose outer product is ``kernel`` when it is separable (rank 1), else None."""
    u, s, vh = torch.linalg.svd(kernel.to(torch.float64))
    if s.numel() > 1 and s[1] > 1e-7 * s[0]:
        return None
    scale = s[0].sqrt()
    return u[:, 0] * scale, vh[0] * scale


def _reflect_matrix(taps: torch.Tensor, n: int) -> torch.Tensor:
    """(n, n) matrix M with ``M @ v`` = 1-D correlation of v with ``taps`` under reflect padding (edge
    repeated instead when the kernel radius reaches the length)."""
    r = taps.numel() // 2
    i = torch.arange(n)[:, None]
    j = i + torch.arange(taps.numel())[None, :] - r
    if r < n:
        j = torch.where(j < 0, -j, j)
        j = torch.where(j > n - 1, 2 * (n - 1) - j, j)
    else:
        j = j.clamp(0, n - 1)
    m = torch.zeros(n, n, dtype=taps.dtype)
    m.index_put_((i.expand_as(j), j), taps[None, :].expand_as(j), accumulate=True)
    return m


def _correlator(kernel: torch.Tensor, h: int, w: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function correlating (N, C, h, w) float32 planes with ``kernel`` under reflect padding.

    A separable kernel (the Gaussian) becomes two matrix products, ``Mh @ x @ Mw^T``; any other runs
    through the FFT on the padded image. Both beat direct 2-D convolution on CPU by a wide margin.
    """
    factors = _factor(kernel)
    if factors is not None:
        mh = _reflect_matrix(factors[0], h).to(torch.float32)
        mw_t = _reflect_matrix(factors[1], w).to(torch.float32).T.contiguous()
        return lambda x: mh @ x @ mw_t
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    mode = "reflect" if ph < h and pw < w else "replicate"
    hp, wp = h + 2 * ph, w + 2 * pw
    kspec = torch.fft.rfft2(kernel.to(torch.float32).flip(0, 1), s=(hp, wp))

    def apply(x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        flat = F.pad(x.reshape(n * c, 1, h, w), (pw, pw, ph, ph), mode=mode)
        # Circular wrap-around lands only in the first kh-1 rows and kw-1 columns, which are cropped.
        full = torch.fft.irfft2(torch.fft.rfft2(flat) * kspec, s=(hp, wp))
        return full[..., kh - 1 :, kw - 1 :].reshape(n, c, h, w)

    return apply


def richardson_lucy(
    x: torch.Tensor, kernel: torch.Tensor, *, iterations: int = DEFAULT_RL_ITERATIONS
) -> torch.Tensor:
    """Richardson-Lucy deconvolution with a known PSF (the maximum-likelihood iteration for Poisson data).

    ``u <- u * K^T(y / K u)`` from ``u = y``, with K correlation with ``kernel`` and K^T correlation with
    the kernel flipped, both with reflect padding. More ``iterations`` sharpen more and amplify noise
    more; the early stop is the only regulariser. Runs in float32, which is ample here.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    k = _check_kernel(kernel)
    y = as_work(x)
    h, w = y.shape[-2:]
    forward, adjoint = _correlator(k, h, w), _correlator(k.flip(0, 1), h, w)
    u = y.clone()
    for _ in range(iterations):
        u = u * adjoint(y / forward(u).clamp(min=1e-6))
    return as_output(u, x)


def _gaussian_psf(sigma: float, kernel_size: int) -> torch.Tensor:
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return gaussian_kernel(kernel_size, sigma)


def wiener_gaussian(
    x: torch.Tensor,
    *,
    sigma: float = ASSUMED_BLUR_SIGMA,
    kernel_size: int = ASSUMED_KERNEL_SIZE,
    nsr: float = DEFAULT_NSR,
) -> torch.Tensor:
    """Wiener deconvolution of Gaussian blur of std ``sigma`` px (default: assumes 2, not estimated)."""
    return wiener_deconvolve(x, _gaussian_psf(sigma, kernel_size), nsr=nsr)


def rl_gaussian(
    x: torch.Tensor,
    *,
    sigma: float = ASSUMED_BLUR_SIGMA,
    kernel_size: int = ASSUMED_KERNEL_SIZE,
    iterations: int = DEFAULT_RL_ITERATIONS,
) -> torch.Tensor:
    """Richardson-Lucy on Gaussian blur of std ``sigma`` px (default: assumes 2, not estimated)."""
    return richardson_lucy(x, _gaussian_psf(sigma, kernel_size), iterations=iterations)


def wiener_motion(x: torch.Tensor, *, length: float, angle: float, nsr: float = MOTION_NSR) -> torch.Tensor:
    """Oracle: Wiener deconvolution with the true linear motion PSF (``length`` px, ``angle`` degrees
    counter-clockwise from horizontal, as :func:`anyrestore.degrade.motion_kernel` draws it)."""
    return wiener_deconvolve(x, motion_kernel(length, angle), nsr=nsr)


def rl_motion(
    x: torch.Tensor, *, length: float, angle: float, iterations: int = DEFAULT_RL_ITERATIONS
) -> torch.Tensor:
    """Oracle: Richardson-Lucy with the true linear motion PSF (see :func:`wiener_motion`)."""
    return richardson_lucy(x, motion_kernel(length, angle), iterations=iterations)
