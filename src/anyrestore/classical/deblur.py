"""Deconvolution: Wiener filtering and Richardson-Lucy, for Gaussian and motion blur, blind or oracle.

Blind by default: the Gaussian baselines estimate the blur's std from the image
(:func:`estimate_gaussian_blur`, edge widths measured by re-blurring), the motion baselines the length and
angle of a linear motion (:func:`estimate_motion_blur`, the cepstrum's negative peak). Given the true
parameters as keywords (``sigma``; ``length`` and ``angle``) they are oracle comparisons. Neither estimator
survives strong noise (the edges and the spectrum's zeros drown in it): denoise first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..degrade import gaussian_kernel, motion_kernel
from ..degrade.blur import gaussian_kernel1d
from ._common import as_output, as_work, luma

# Default noise-to-signal power ratio of the Wiener filter, for 8-bit images with little noise: on
# astronaut/chelsea (128 px, uint8, blur sigma 1-3, true PSF) the best lay between 1e-4 and 3e-3 depending
# on the image's texture; 1e-3 is the middle. Raise it for noisy inputs.
DEFAULT_NSR = 1e-3
# Motion kernels have zeros in their spectrum, and oblique ones do not commute with the mirrored
# boundary: they need a stronger regulariser (1e-2 was best of 3e-3..3e-2 at angles 30 and 75).
MOTION_NSR = 1e-2
DEFAULT_RL_ITERATIONS = 30
ASSUMED_KERNEL_SIZE = 15
# Gaussian blur estimate: the std of the re-blur, the share of strongest gradient maxima read, and the
# range the estimate is kept in (the degradations' blur ranges from 0.1 to 3.1 px). On 20 training photos
# of the manifest (256 px crops, blur 1 and 2) re-blur 1 px and 10% gave the best mean blind Wiener gain of
# re-blur {1, 2} x share {3, 10, 30}% (+4.39 dB; the true std: +5.82): bias -0.04 px, spread 0.20 px. The
# estimate scaled by 0.85-0.9 or fitted linearly to the true std gained less (overshoot rings).
REBLUR_SIGMA = 1.0
EDGE_SHARE = 0.1
BLUR_RANGE = (0.3, 4.0)
# Motion blur estimate: tile side and stride of the averaged log spectrum, and the cepstral radii searched.
CEPSTRUM_TILE = 128
MOTION_RANGE = (3.0, 40.0)


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


def _gradient(y: torch.Tensor) -> torch.Tensor:
    """Central-difference gradient magnitude of (N, 1, H, W), shape (N, 1, H-2, W-2)."""
    gx = y[..., 1:-1, 2:] - y[..., 1:-1, :-2]
    gy = y[..., 2:, 1:-1] - y[..., :-2, 1:-1]
    return torch.sqrt(gx * gx + gy * gy)


def estimate_gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """Blind std in pixels of an isotropic Gaussian blur per image of ``x`` (N, 3, H, W), shape (N,).

    Re-blur estimation (Zhuo and Sim 2011): at a step edge blurred by s, the gradient peak falls by
    ``sqrt(1 + (s0 / s)^2)`` when the image is blurred again by s0, so ``s = s0 / sqrt(R^2 - 1)`` with R
    the ratio of the luma's gradient before and after. R is read at the strongest gradient maxima (local
    maxima in 5x5 windows among the top ``EDGE_SHARE`` of gradients), and the median s is returned,
    clamped to ``BLUR_RANGE``. Real edges are not ideal steps, so a sharp photo reads 0.4-0.6 px; noise
    makes edges look sharp (denoise first).
    """
    y = luma(as_work(x).to(torch.float64))
    h, w = y.shape[-2:]
    if h < 8 or w < 8:
        raise ValueError(f"blur estimation needs images of at least 8x8, got {h}x{w}")
    taps = gaussian_kernel1d(2 * math.ceil(4 * REBLUR_SIGMA) + 1, REBLUR_SIGMA)
    p = taps.numel() // 2
    mode = "reflect" if p < min(h, w) else "replicate"
    reblurred = F.conv2d(
        F.conv2d(F.pad(y, (p, p, p, p), mode=mode), taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1)
    )
    out = []
    for g, g1 in zip(_gradient(y), _gradient(reblurred), strict=True):
        # kthvalue, not quantile: torch.quantile refuses inputs above 16M elements.
        flat = g.flatten()
        threshold = flat.kthvalue(max(1, math.ceil((1.0 - EDGE_SHARE) * flat.numel()))).values
        peaks = (g == F.max_pool2d(g[None], 5, 1, 2)[0]) & (g >= threshold)
        ratio = g[peaks] / g1[peaks].clamp(min=1e-12)
        ratio = ratio[ratio > 1.0 + 1e-6]
        if ratio.numel() == 0:
            out.append(BLUR_RANGE[1])
            continue
        sigma = (REBLUR_SIGMA / torch.sqrt(ratio * ratio - 1.0)).median().item()
        out.append(min(max(sigma, BLUR_RANGE[0]), BLUR_RANGE[1]))
    return torch.tensor(out, dtype=torch.float32)


def estimate_motion_blur(x: torch.Tensor) -> list[tuple[float, float]]:
    """Blind ``(length, angle)`` of a uniform linear motion blur per image of ``x`` (N, 3, H, W).

    A motion blur of length L multiplies the spectrum by a sinc with zeros every 1/L along the motion,
    which the cepstrum (inverse FFT of the log magnitude spectrum) shows as a negative peak at distance L
    in that direction (Rom 1975; Cannon 1976). The log spectrum of the luma is averaged over
    Hann-windowed tiles of ``CEPSTRUM_TILE`` px at half-tile strides, and the most negative cepstral value
    between radii ``MOTION_RANGE`` is refined to sub-pixel by the centroid of its 3x3 neighbourhood.
    ``angle`` is in degrees counter-clockwise from horizontal in [0, 180), as
    :func:`anyrestore.degrade.motion_kernel` takes it. Images smaller than a tile use one whole-image tile.
    It always answers: on an image without motion blur the answer means nothing.
    """
    y = luma(as_work(x).to(torch.float64))[:, 0]
    h, w = y.shape[-2:]
    th, tw = min(CEPSTRUM_TILE, h), min(CEPSTRUM_TILE, w)
    window = torch.outer(
        torch.hann_window(th, periodic=False, dtype=torch.float64),
        torch.hann_window(tw, periodic=False, dtype=torch.float64),
    )
    rows = torch.fft.fftshift(torch.fft.fftfreq(th, 1.0 / th))
    cols = torch.fft.fftshift(torch.fft.fftfreq(tw, 1.0 / tw))
    dy, dx = torch.meshgrid(rows, cols, indexing="ij")
    radius = torch.sqrt(dy * dy + dx * dx)
    # Half the plane: the cepstrum of a real image is symmetric about the origin.
    search = (radius >= MOTION_RANGE[0]) & (radius <= MOTION_RANGE[1]) & ((dy > 0) | ((dy == 0) & (dx > 0)))
    out = []
    for img in y:
        tiles = img.unfold(0, th, max(1, th // 2)).unfold(1, tw, max(1, tw // 2)).reshape(-1, th, tw)
        tiles = (tiles - tiles.mean(dim=(-2, -1), keepdim=True)) * window
        log_spectrum = torch.log(torch.fft.fft2(tiles).abs() + 1e-3).mean(0)
        cepstrum = torch.fft.fftshift(torch.fft.ifft2(log_spectrum).real)
        scored = torch.where(search, cepstrum, torch.full_like(cepstrum, math.inf))
        i, j = divmod(int(scored.argmin()), tw)
        i0, i1, j0, j1 = max(i - 1, 0), min(i + 2, th), max(j - 1, 0), min(j + 2, tw)
        weight = (-cepstrum[i0:i1, j0:j1]).clamp(min=0.0)
        if weight.sum() > 0:
            py = float((weight * dy[i0:i1, j0:j1]).sum() / weight.sum())
            px = float((weight * dx[i0:i1, j0:j1]).sum() / weight.sum())
        else:
            py, px = float(dy[i, j]), float(dx[i, j])
        # Rows grow downwards, so the upward component is -py; the angle is that of the line.
        out.append((math.hypot(px, py), math.degrees(math.atan2(-py, px)) % 180.0))
    return out


def _gaussian_psf(sigma: float, kernel_size: int) -> torch.Tensor:
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return gaussian_kernel(kernel_size, sigma)


def _per_image(
    x: torch.Tensor,
    kernels: list[torch.Tensor],
    deconvolve: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Deconvolve each image of ``x`` with its own kernel; one call when all kernels are the same."""
    if all(k is kernels[0] for k in kernels):
        return deconvolve(x, kernels[0])
    return torch.cat([deconvolve(x[i : i + 1], k) for i, k in enumerate(kernels)])


def _gaussian_kernels(x: torch.Tensor, sigma: float | None, kernel_size: int) -> list[torch.Tensor]:
    if sigma is not None:
        return [_gaussian_psf(sigma, kernel_size)] * x.shape[0]
    return [_gaussian_psf(s, kernel_size) for s in estimate_gaussian_blur(x).tolist()]


def _motion_kernels(x: torch.Tensor, length: float | None, angle: float | None) -> list[torch.Tensor]:
    if (length is None) != (angle is None):
        raise ValueError("give both length and angle (oracle), or neither (blind)")
    if length is not None and angle is not None:
        return [motion_kernel(length, angle)] * x.shape[0]
    return [motion_kernel(max(1.0, ln), an) for ln, an in estimate_motion_blur(x)]


def wiener_gaussian(
    x: torch.Tensor,
    *,
    sigma: float | None = None,
    kernel_size: int = ASSUMED_KERNEL_SIZE,
    nsr: float = DEFAULT_NSR,
) -> torch.Tensor:
    """Wiener deconvolution of Gaussian blur of std ``sigma`` px (oracle), or of the std
    :func:`estimate_gaussian_blur` reads from each image when None (blind)."""
    kernels = _gaussian_kernels(x, sigma, kernel_size)
    return _per_image(x, kernels, lambda im, k: wiener_deconvolve(im, k, nsr=nsr))


def rl_gaussian(
    x: torch.Tensor,
    *,
    sigma: float | None = None,
    kernel_size: int = ASSUMED_KERNEL_SIZE,
    iterations: int = DEFAULT_RL_ITERATIONS,
) -> torch.Tensor:
    """Richardson-Lucy on Gaussian blur of std ``sigma`` px (oracle), or estimated per image when None."""
    kernels = _gaussian_kernels(x, sigma, kernel_size)
    return _per_image(x, kernels, lambda im, k: richardson_lucy(im, k, iterations=iterations))


def wiener_motion(
    x: torch.Tensor, *, length: float | None = None, angle: float | None = None, nsr: float = MOTION_NSR
) -> torch.Tensor:
    """Wiener deconvolution of linear motion blur: ``length`` px along ``angle`` degrees counter-clockwise
    from horizontal (oracle, as :func:`anyrestore.degrade.motion_kernel` draws it), or both estimated
    per image by :func:`estimate_motion_blur` when None (blind)."""
    kernels = _motion_kernels(x, length, angle)
    return _per_image(x, kernels, lambda im, k: wiener_deconvolve(im, k, nsr=nsr))


def rl_motion(
    x: torch.Tensor,
    *,
    length: float | None = None,
    angle: float | None = None,
    iterations: int = DEFAULT_RL_ITERATIONS,
) -> torch.Tensor:
    """Richardson-Lucy on linear motion blur, oracle or blind (see :func:`wiener_motion`)."""
    kernels = _motion_kernels(x, length, angle)
    return _per_image(x, kernels, lambda im, k: richardson_lucy(im, k, iterations=iterations))
