"""CurveNAFNet: a JPEG deblocking stage, a tone-curve stage and a blind deblurring stage in front of a
NAFNet (our design, the default model).

Haze, under-exposure and colour casts change an image slowly across the frame, and undoing them needs
context from the whole picture; noise, blur, JPEG blocks and rain streaks are local. A small U-Net such
as NAFNet sees the whole frame only through its channel-attention pooling, which behaves differently
on a training crop and on a full photo. So the curve stage looks at a fixed-size thumbnail of the input
(whatever the input size), predicts a coarse grid of per-pixel, per-channel curves

    y = a * ((x + eps) ** p - eps ** p - b)

(``a`` gain, ``p`` exponent, ``b`` black level; haze inversion is ``p = 1``, ``a = 1/t``,
``b = A (1 - t)``; under-exposure ``y = g x^gamma`` is undone by ``p = 1/gamma``, ``a = g^(-1/gamma)``;
the black level is subtracted before the gain so that it stays within [0, 1]), upsamples the
grid bilinearly to the image and applies it; the NAFNet then removes what is local. The curve head
starts at zero, so a fresh model is exactly ``NAFNet(x)``: a trained NAFNet can be loaded into
``restorer`` and fine-tuned with the curve stage switched on.

Deblurring is a large linear filter, which a small NAFNet trained on crops does not learn in a CPU-sized
budget. So a deblurring stage sits between the two: an estimator reads gradient statistics of the whole
(contrast-normalised) image and blends a bank of 21x21 deconvolution kernels, one per Gaussian blur
width, with the identity; the blended kernel is applied once to the whole image. It starts within
0.25% of the identity (a fresh model is still nearly its NAFNet); ``scripts/add_deblur_stage.py``
fits each kernel by least squares on blurred training photos before the stage is trained.

JPEG's error depends on where a pixel sits in its 8x8 block, which a shift-invariant network learns
slowly. The deblocking stage, first in line (JPEG is the last thing that happens to a photo), gives every
block position its own linear filter of the luma, one bank of 64 per JPEG quality, fitted by least
squares (``scripts/add_deblock_stage.py``), and blends the bank per image from an estimate of the
blockiness; it too starts within 0.25% of the identity.

A JPEG file still carries its quantisation table and block grid, which a blind filter ignores. With
``dequant_width``, a dequantisation stage follows the deblocking (:mod:`anyrestore.models.jpeg_dequant`):
when the decoded luma's DCT coefficients show the signature of an IJG table, a small network at block
resolution starts from the deblocked image and moves each coefficient to where in its quantisation
cell it most likely lay; other images pass as the deblocking stage left them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# LUMA: BT.601, as JPEG's YCbCr: a change of luma alone leaves Cb and Cr as they are.
from anyrestore.classical._common import LUMA
from anyrestore.classical.jpeg_format import BLOCK as JPEG_BLOCK
from anyrestore.models.detection import count_blocks, shapes_match
from anyrestore.models.jpeg_dequant import JPEGDequantizer, JPEGSignature, detect_jpeg, luma_255
from anyrestore.models.nafnet import NAFNet, infer_nafnet_config
from anyrestore.models.registry import Architecture, StateDict, register_architecture

CURVE_EPS = 1e-3
DEBLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
DEBLOCK_QUALITIES = (10, 20, 30, 50, 75)
# A photo cropped after JPEG decoding has its block grid off the corner. Its block borders are where the
# luma steps are largest: the deblocking stage moves the grid back when one of the 8 phases stands out by
# this factor over the median of the others (held-out photos: 1.05 to 2.5 after JPEG at quality 20 to
# 90; 1.00 to 1.06 when never compressed, clean, noisy or blurred).
# Smaller images (fewer than 16 blocks a side) give too few steps per phase to tell: never shifted.
GRID_CONFIDENCE = 1.15
GRID_MIN_SIZE = 128
# Large images go through the stages in front of the NAFNet a strip of STRIP_ROWS rows at a time (the
# estimators' features, the full-resolution curves, the deblurring convolution), so their memory does
# not grow with the photo; the result is that of one pass. The estimators' strips overlap by
# ESTIMATOR_HALO rows (>= their receptive radius, 4); both are multiples of their stride, 4.
STRIP_ROWS = 256
ESTIMATOR_HALO = 8
# The stages after the dequantisation were trained on undequantised inputs: on a photo whose only
# degradation is JPEG they still change it a little (RMS 1-3 luma levels), and that costs more than the
# dequantisation gains. When a JPEG table shows, their change is kept in proportion to its size (none of
# it below JPEG_KEEP[0] luma levels RMS, all of it from JPEG_KEEP[1]), or to the noise left in the
# dequantised photo (JPEG_NOISE, in units of flat_noise(): noise before JPEG survives it, and denoising
# is a change of a few levels that must stay). Both set on training photos (scripts/calibrate_jpeg_keep.py).
JPEG_KEEP = (3.0, 6.0)
JPEG_NOISE = (3.0, 6.0)


class CurveStage(nn.Module):
    """Thumbnail -> small CNN with a global context vector -> a ``grid`` x ``grid`` map of curves."""

    def __init__(self, channels: int = 3, width: int = 32, thumb: int = 64, grid: int = 16) -> None:
        super().__init__()
        if thumb % grid or thumb // grid not in (2, 4, 8):
            raise ValueError(f"thumb ({thumb}) must be 2, 4 or 8 times grid ({grid})")
        self.channels, self.thumb, self.grid = channels, thumb, grid
        # The thumbnail, its darkest and brightest channel (the dark channel is the classic haze cue).
        layers: list[nn.Module] = [nn.Conv2d(channels + 2, width // 2, 3, padding=1), nn.GELU()]
        chan, size = width // 2, thumb
        while size > grid:
            layers += [nn.Conv2d(chan, width, 3, stride=2, padding=1), nn.GELU()]
            chan, size = width, size // 2
        self.features = nn.Sequential(*layers)
        stats = 3 * channels  # see curves()
        self.context = nn.Sequential(nn.Linear(width + stats, width), nn.GELU(), nn.Linear(width, width))
        self.mix = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1), nn.GELU()
        )
        self.head = nn.Conv2d(width, 3 * channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def thumbnail(self, x: torch.Tensor) -> torch.Tensor:
        """A ``thumb`` x ``thumb`` box-filtered view of ``x``: bilinear to 4x that size, then 4x4 means
        (exportable with dynamic input sizes, unlike adaptive pooling)."""
        big = F.interpolate(x, size=(4 * self.thumb, 4 * self.thumb), mode="bilinear", align_corners=False)
        return F.avg_pool2d(big, 4)

    def coarse(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3C, grid, grid): the raw curve parameters on the coarse grid (see :meth:`curves`)."""
        thumb = self.thumbnail(x)
        cues = torch.cat([thumb, thumb.amin(dim=1, keepdim=True), thumb.amax(dim=1, keepdim=True)], dim=1)
        f = self.features(cues)
        # Global statistics a haze or exposure estimate rests on: mean, brightest and darkest 4x4 block
        # per channel (a clean photo's darkest block is near black, a hazy one's is lifted).
        blocks = F.avg_pool2d(thumb, 4)
        stats = torch.cat([thumb.mean(dim=(2, 3)), blocks.amax(dim=(2, 3)), blocks.amin(dim=(2, 3))], dim=1)
        f = f + self.context(torch.cat([f.mean(dim=(2, 3)), stats], dim=1))[:, :, None, None]
        return self.head(self.mix(f))

    @staticmethod
    def _squash(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_a, log_p, b = raw.chunk(3, dim=1)
        return torch.exp(3.0 * torch.tanh(log_a / 3.0)), torch.exp(1.5 * torch.tanh(log_p / 1.5)), b

    def curves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gain, exponent and offset at full resolution, each (N, C, H, W)."""
        raw = F.interpolate(self.coarse(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self._squash(raw)

    @staticmethod
    def _curve(x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        a, p, b = CurveStage._squash(raw)
        base = x.clamp(0.0, 1.0) + CURVE_EPS
        return a * (base.pow(p) - torch.pow(CURVE_EPS, p) - b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if _exporting() or h <= STRIP_ROWS:
            return self._curve(
                x, F.interpolate(self.coarse(x), size=(h, w), mode="bilinear", align_corners=False)
            )
        # Bilinear upsampling is separable: along the width for the whole grid, along the height strip by
        # strip (rows of the interpolation matrix), so the full-resolution curves exist a strip at a time.
        coarse = self.coarse(x)
        wide = F.interpolate(coarse, size=(self.grid, w), mode="bilinear", align_corners=False)
        eye = torch.eye(self.grid, dtype=x.dtype, device=x.device)[None, None]
        rows = F.interpolate(eye, size=(h, self.grid), mode="bilinear", align_corners=False)[0, 0]
        out = torch.empty_like(x)
        for top in range(0, h, STRIP_ROWS):
            strip = slice(top, min(h, top + STRIP_ROWS))
            raw = torch.einsum("hg,ncgw->nchw", rows[strip], wide)
            out[..., strip, :] = self._curve(x[..., strip, :], raw)
        return out


def wiener_deblur_kernel(sigma: float, size: int = 21, nsr: float = 3e-3, grid: int = 64) -> torch.Tensor:
    """A ``size`` x ``size`` Wiener inverse of a 15-tap Gaussian blur of std ``sigma``, summing to 1.

    Only a starting point: trained kernels (least squares, then end to end) do better.
    """
    from anyrestore.degrade.blur import gaussian_kernel

    g = gaussian_kernel(15, sigma).double()
    spectrum = torch.fft.fft2(F.pad(g, (0, grid - 15, 0, grid - 15)).roll((-7, -7), (0, 1)))
    inverse = spectrum.conj() / (spectrum.abs() ** 2 + nsr)
    w = torch.fft.ifft2(inverse).real.roll((size // 2, size // 2), (0, 1))[:size, :size]
    return (w / w.sum()).float()


def _exporting() -> bool:
    """Inside an ONNX / ``torch.export`` trace, where the batch stays dynamic and a grouped conv's groups
    cannot: the banks then filter with every entry and blend the results (more work, same numbers)."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def _ramp(value: float, bounds: tuple[float, float]) -> float:
    """0 below ``bounds[0]``, 1 from ``bounds[1]``, linear between."""
    low, high = bounds
    return min(1.0, max(0.0, (value - low) / (high - low)))


def jpeg_keep_fraction(
    change_rms: float,
    noise: float,
    keep: tuple[float, float] = JPEG_KEEP,
    noise_bounds: tuple[float, float] = JPEG_NOISE,
) -> float:
    """How much of the later stages' change :meth:`CurveNAFNet.finish` keeps on a JPEG: the larger of the
    ramps of its RMS size (luma levels) across ``keep`` and of the dequantised photo's
    :func:`flat_noise` across ``noise_bounds``."""
    return max(_ramp(change_rms, keep), _ramp(noise, noise_bounds))


def flat_noise(luma: torch.Tensor) -> float:
    """How noisy the flattest tenth of a (1, 1, H, W) luma (0..255) is: the 10th percentile over its 8x8
    blocks of the RMS 5-point Laplacian. Near 0 for a dequantised JPEG of a clean photo (0-1.2 on most
    training photos), 3-12 when noise of sigma 15 came before JPEG at quality 40; texture everywhere
    raises it too (a photo of foliage: 11-17)."""
    if min(luma.shape[-2:]) < JPEG_BLOCK + 2:
        return 0.0
    energy = F.avg_pool2d(_laplacian(luma).pow(2), JPEG_BLOCK).flatten()
    return float(torch.quantile(energy.sqrt(), 0.1))


def _laplacian(gray: torch.Tensor) -> torch.Tensor:
    """The 5-point Laplacian of (N, 1, H, W) over its interior, from shifted views: what a 3x3 conv gives,
    without the 9 values per pixel a CPU convolution of one channel unfolds (68 bytes per pixel)."""
    centre = gray[..., 1:-1, 1:-1]
    return (
        gray[..., :-2, 1:-1] + gray[..., 2:, 1:-1] + gray[..., 1:-1, :-2] + gray[..., 1:-1, 2:] - 4.0 * centre
    )


def _phase_steps(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Of (N, 1, H, W) luma: the mean absolute step between columns j and j + 1 for each phase j mod 8,
    the same between rows (each (N, 8)), and the mean step over both directions plus 1e-4 ((N,)).
    JPEG's block borders (phase 7 on a grid at the corner) stand out."""
    across = (gray[..., :, 1:] - gray[..., :, :-1]).abs()
    down = (gray[..., 1:, :] - gray[..., :-1, :]).abs()
    activity = 0.5 * (across.mean(dim=(1, 2, 3)) + down.mean(dim=(1, 2, 3))) + 1e-4
    columns = torch.stack([across[..., p::JPEG_BLOCK].mean(dim=(1, 2, 3)) for p in range(JPEG_BLOCK)], 1)
    rows = torch.stack([down[..., p::JPEG_BLOCK, :].mean(dim=(1, 2, 3)) for p in range(JPEG_BLOCK)], 1)
    return columns, rows, activity


def _contrast_normalised(gray: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luminance over its own mean and spread: estimates that do not depend on contrast."""
    centred = gray - gray.mean(dim=(2, 3), keepdim=True)
    return centred / (centred.pow(2).mean(dim=(2, 3), keepdim=True).sqrt() + 1e-2)


class _BankEstimator(nn.Module):
    """What the deblurring and deblocking stages share: an estimator (three 3x3 conv layers, two
    strided, pooled to their mean and RMS over the whole image, with the stage's own statistics) whose
    head gives a strength logit and one logit per bank entry."""

    def _build_estimator(self, width: int, statistics: int, entries: int) -> None:
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * width + statistics, 32), nn.GELU(), nn.Linear(32, 1 + entries)
        )
        # The strength starts at sigmoid(-6) = 0.25%, so a fresh stage is nearly the identity and still has
        # gradients to learn from.
        nn.init.zeros_(self.head[2].weight)
        nn.init.zeros_(self.head[2].bias)
        nn.init.constant_(self.head[2].bias[:1], -6.0)

    def _feature_moments(self, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, width) mean and RMS of the conv features over the whole image; an image taller than a
        strip is read strip by strip (exact: each strip's halo covers the receptive field, and its
        offset keeps the strided grid), so the estimator's memory does not grow with the photo."""
        h = gray.shape[-2]
        if _exporting() or h <= STRIP_ROWS + 2 * ESTIMATOR_HALO:
            f = self.features(gray)
            return f.mean(dim=(2, 3)), f.pow(2).mean(dim=(2, 3)).sqrt()
        total = squares = None
        count = 0
        for top in range(0, h, STRIP_ROWS):
            start = max(0, top - ESTIMATOR_HALO)
            f = self.features(gray[..., start : min(h, top + STRIP_ROWS + ESTIMATOR_HALO), :])
            first = (top - start) // 4
            f = f[..., first : first + STRIP_ROWS // 4, :]
            part, part_sq = f.sum(dim=(2, 3)), f.pow(2).sum(dim=(2, 3))
            total = part if total is None else total + part
            squares = part_sq if squares is None else squares + part_sq
            count += f.shape[-2] * f.shape[-1]
        assert total is not None and squares is not None
        return total / count, (squares / count).sqrt()

    def _blend(self, gray: torch.Tensor, statistics: torch.Tensor) -> torch.Tensor:
        """(N, 1 + K) blend weights from the normalised luminance and the (N, S) statistics, rows summing
        to 1: the identity's ``1 - t`` first, then ``t = sigmoid(strength)`` shared by the bank
        (softmax)."""
        mean, rms = self._feature_moments(gray)
        out = self.head(torch.cat([mean, rms, statistics], 1))
        t = torch.sigmoid(out[:, :1])
        return torch.cat([1.0 - t, t * torch.softmax(out[:, 1:], dim=1)], dim=1)


class DeblurStage(_BankEstimator):
    """Blind per-image deconvolution: blur estimator -> weights over identity + kernel bank -> one conv.

    The estimator sees the luminance normalised by its own mean and spread (so the estimate does not
    depend on contrast): the mean and RMS over the whole image of three learned 3x3 conv layers (two
    strided), and the log energy of its Laplacian at three scales (blur drains the fine scales, noise
    fills them); the image size does not matter. It can only sharpen or leave alone: smoothing would
    be denoising, the NAFNet's job.
    """

    def __init__(self, sigmas: Sequence[float] = DEBLUR_SIGMAS, size: int = 21, width: int = 16) -> None:
        super().__init__()
        if size % 2 == 0 or size < 3:
            raise ValueError(f"deblur kernel size must be odd and >= 3, got {size}")
        self.size = size
        self.kernels = nn.Parameter(torch.stack([wiener_deblur_kernel(s, size) for s in sigmas]))
        self._build_estimator(width, statistics=3, entries=len(sigmas))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1 + K) blend weights over identity and kernels (see ``_BankEstimator._blend``)."""
        gray = _contrast_normalised(x.mean(dim=1, keepdim=True))
        energies, level = [], gray
        for _ in range(3):
            energies.append(torch.log(_laplacian(level).pow(2).mean(dim=(1, 2, 3)) + 1e-6))
            level = F.avg_pool2d(level, 2)
        return self._blend(gray, torch.stack(energies, 1))

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad by half a kernel, as the blur operators pad (``anyrestore.degrade.blur``)."""
        pad = self.size // 2
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")

    def bank(self) -> torch.Tensor:
        """(1 + K, size, size): the identity kernel, then the deblurring kernels."""
        delta = torch.zeros_like(self.kernels[:1])
        delta[0, self.size // 2, self.size // 2] = 1.0
        return torch.cat([delta, self.kernels], dim=0)

    def kernel(self, x: torch.Tensor) -> torch.Tensor:
        """(N, size, size): each image's blended kernel."""
        return torch.einsum("nk,kij->nij", self.weights(x), self.bank())

    def each_option(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1 + K, C, H, W): ``x`` filtered by every entry of the bank (identity first)."""
        n, c, h, w = x.shape
        padded = self._pad(x)
        out = F.conv2d(padded.reshape(n * c, 1, *padded.shape[-2:]), self.bank()[:, None])
        return out.reshape(n, c, -1, h, w).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if _exporting():
            return torch.einsum("nkchw,nk->nchw", self.each_option(x), self.weights(x))
        padded = self._pad(x)
        padded = padded.reshape(1, n * c, *padded.shape[-2:])
        k = self.kernel(x).repeat_interleave(c, dim=0)[:, None]
        if h <= STRIP_ROWS:
            return F.conv2d(padded, k, groups=n * c).reshape(n, c, h, w)
        # A CPU convolution with a large kernel takes ~110 bytes per pixel.
        out = torch.empty_like(x)
        for top in range(0, h, STRIP_ROWS):
            rows = min(STRIP_ROWS, h - top)
            strip = padded[..., top : top + rows + self.size - 1, :]
            out[..., top : top + rows, :] = F.conv2d(strip, k, groups=n * c).reshape(n, c, rows, w)
        return out


class DeblockStage(_BankEstimator):
    """Blind JPEG deblocking of the luma: estimator -> weights over identity + a bank of block-phase filters.

    JPEG quantises each 8x8 block (aligned to the image's top-left corner) on its own, so its error
    depends on where a pixel sits in its block. Each bank entry (one per JPEG quality) is therefore 64
    ``size`` x ``size`` filters plus an offset, one per position in the block, that map the decoded luma to
    the original (fitted by least squares, ``scripts/add_deblock_stage.py``); the image's correction of
    luma is added to R, G and B alike, which leaves chroma unchanged. The estimator reads how much larger
    the luma steps are on each of the 8 column and row phases than on average (JPEG's block borders
    stand out) and three small conv layers, and blends identity and bank per image. It starts within
    0.25% of the identity. In eval mode, an image whose grid is clearly off the corner (a JPEG cropped
    after decoding; see :meth:`grid_shifts`) is padded at the top and left to put it back there first
    (not in an ONNX export, which assumes the grid at the corner).
    """

    def __init__(self, qualities: Sequence[int] = DEBLOCK_QUALITIES, size: int = 11, width: int = 16) -> None:
        super().__init__()
        if size % 2 == 0 or size < 3:
            raise ValueError(f"deblock filter size must be odd and >= 3, got {size}")
        self.size = size
        phases = JPEG_BLOCK * JPEG_BLOCK
        kernels = torch.zeros(len(qualities), phases, size, size)
        kernels[:, :, size // 2, size // 2] = 1.0
        self.kernels = nn.Parameter(kernels)
        self.offsets = nn.Parameter(torch.zeros(len(qualities), phases))
        self.register_buffer("luma", torch.tensor(LUMA)[None, :, None, None], persistent=False)
        self._build_estimator(width, statistics=2 * JPEG_BLOCK + 1, entries=len(qualities))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1 + K) blend weights over identity and bank entries (see ``_BankEstimator._blend``)."""
        gray = _contrast_normalised((x * self.luma).sum(dim=1, keepdim=True))
        columns, rows, activity = _phase_steps(gray)
        grid = torch.log(torch.cat([columns, rows], 1) / activity[:, None] + 1e-4)
        return self._blend(gray, torch.cat([grid, activity.log()[:, None]], 1))

    def bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(1 + K, 64, size, size) filters and (1 + K, 64) offsets: the identity first, then the bank."""
        delta = torch.zeros_like(self.kernels[:1])
        delta[..., self.size // 2, self.size // 2] = 1.0
        return torch.cat([delta, self.kernels]), torch.cat([torch.zeros_like(self.offsets[:1]), self.offsets])

    def _frames(self, kernels: torch.Tensor) -> torch.Tensor:
        """(M, 64, s, s) -> (M, 64, s + 7, s + 7): phase (a, b)'s filter placed at row a, column b, so one
        stride-8 conv over the padded luma computes every phase's output at once."""
        last = JPEG_BLOCK - 1
        frames = [
            F.pad(kernels[:, a * JPEG_BLOCK + b], (b, last - b, a, last - a))
            for a in range(JPEG_BLOCK)
            for b in range(JPEG_BLOCK)
        ]
        return torch.stack(frames, 1)

    def _filtered_luma(
        self, gray: torch.Tensor, kernels: torch.Tensor, offsets: torch.Tensor
    ) -> torch.Tensor:
        """Luma (N, 1, H, W), H and W multiples of 8, through (64, s, s) filters and (64,) offsets shared
        by the batch, or each image's own ((N, 64, s, s) and (N, 64): one grouped conv)."""
        n, _, h, w = gray.shape
        pad = self.size // 2
        padded = F.pad(gray, (pad, pad, pad, pad), mode="reflect")
        if kernels.dim() == 3:
            # Shared: one strided conv per block position, so that every filter keeps a fixed shape (ONNX
            # export needs it, and the batch stays dynamic).
            phases = [
                F.conv2d(padded[..., a:, b:], kernels[a * JPEG_BLOCK + b][None, None], stride=JPEG_BLOCK)
                for a in range(JPEG_BLOCK)
                for b in range(JPEG_BLOCK)
            ]
            out = torch.cat(phases, 1) + offsets[None, :, None, None]
        else:
            frames = self._frames(kernels)
            frames = frames.reshape(n * JPEG_BLOCK**2, 1, *frames.shape[-2:])
            out = F.conv2d(padded.reshape(1, n, *padded.shape[-2:]), frames, stride=JPEG_BLOCK, groups=n)
            out = out.reshape(n, JPEG_BLOCK**2, h // JPEG_BLOCK, w // JPEG_BLOCK) + offsets[:, :, None, None]
        return F.pixel_shuffle(out, JPEG_BLOCK)

    def _deblock(self, x: torch.Tensor, kernels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # JPEG's grid starts at the top-left corner: pad at the bottom and right only.
        # Padded even by zero pixels: an export trace must not fix the choice for all sizes.
        xp = F.pad(x, (0, -w % JPEG_BLOCK, 0, -h % JPEG_BLOCK), mode="replicate")
        gray = (xp * self.luma).sum(dim=1, keepdim=True)
        correction = self._filtered_luma(gray, kernels, offsets) - gray
        return x + correction[..., :h, :w]

    def each_option(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1 + K, C, H, W): ``x`` deblocked by every entry of the bank (identity first)."""
        kernels, offsets = self.bank()
        options = [self._deblock(x, kernels[k], offsets[k]) for k in range(len(kernels))]
        return torch.stack(options, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[1]

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1 + K) blend weights and the deblocked image, each image's grid first moved to the corner
        when it is clearly elsewhere (eval mode, images of at least ``GRID_MIN_SIZE`` pixels a side)."""
        sure = not (self.training or _exporting()) and min(x.shape[-2:]) >= GRID_MIN_SIZE
        shifts = self.grid_shifts(x) if sure else []
        if not any(dy or dx for dy, dx in shifts):
            weights = self.weights(x)
            return weights, self.apply_weights(x, weights)
        weights, outputs = [], []
        for image, (dy, dx) in zip(x.split(1), shifts, strict=True):
            padded = F.pad(image, (dx, 0, dy, 0), mode="replicate")
            weights.append(self.weights(padded))
            outputs.append(self.apply_weights(padded, weights[-1])[..., dy:, dx:])
        return torch.cat(weights), torch.cat(outputs)

    def grid_shifts(self, x: torch.Tensor) -> list[tuple[int, int]]:
        """Per image, the rows and columns to add at the top and left to bring its JPEG grid to the
        corner: on a grid at the corner the largest mean luma step is between columns (rows) 7 and 8 of
        each block; another phase that stands out (``GRID_CONFIDENCE``) gives the shift, else 0."""
        columns, rows, _ = _phase_steps((x * self.luma).sum(dim=1, keepdim=True))
        shifts = []
        for row_steps, column_steps in zip(rows, columns, strict=True):
            found = []
            for steps in (row_steps, column_steps):
                best = int(steps.argmax())
                others = torch.cat([steps[:best], steps[best + 1 :]]).median()
                clear = bool(steps[best] > GRID_CONFIDENCE * others)
                found.append((JPEG_BLOCK - 1 - best) % JPEG_BLOCK if clear else 0)
            shifts.append((found[0], found[1]))
        return shifts

    def apply_weights(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``x`` deblocked with the given (N, 1 + K) blend weights (``weights(x)`` in ``forward``)."""
        if _exporting():
            return torch.einsum("nkchw,nk->nchw", self.each_option(x), weights)
        kernels, offsets = self.bank()
        return self._deblock(
            x, torch.einsum("nk,kpij->npij", weights, kernels), torch.einsum("nk,kp->np", weights, offsets)
        )


def fit_deblock_filters(
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], size: int = 11
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares filters of one deblocking bank entry: for each of the 64 positions in a JPEG block,
    the ``size`` x ``size`` filter and offset that best map the decoded luma to the original one over
    every pixel at that position (normal equations in float64, a 1e-6 ridge).

    ``pairs``: (decoded, original) luma, each (1, 1, H, W) with H and W multiples of 8, the JPEG grid at
    the top-left corner. Windows are reflect-padded as :class:`DeblockStage` pads. Returns (64, size,
    size) filters and (64,) offsets, for ``DeblockStage.kernels[k]`` and ``offsets[k]``.
    """
    n = size * size + 1
    pad = size // 2
    a_mat = torch.zeros(JPEG_BLOCK**2, n, n, dtype=torch.float64)
    b_vec = torch.zeros(JPEG_BLOCK**2, n, dtype=torch.float64)
    for decoded, original in pairs:
        if (
            decoded.shape[-2] % JPEG_BLOCK
            or decoded.shape[-1] % JPEG_BLOCK
            or decoded.shape != original.shape
        ):
            raise ValueError(
                f"pairs must be equal (1, 1, H, W) with H, W multiples of 8, got {decoded.shape}"
            )
        padded = F.pad(decoded.double(), (pad, pad, pad, pad), mode="reflect")
        for a in range(JPEG_BLOCK):
            for b in range(JPEG_BLOCK):
                cols = F.unfold(padded[..., a:, b:], size, stride=JPEG_BLOCK)[0]
                cols = torch.cat([cols, torch.ones_like(cols[:1])])
                target = original[0, 0, a::JPEG_BLOCK, b::JPEG_BLOCK].double().flatten()
                a_mat[a * JPEG_BLOCK + b] += cols @ cols.T
                b_vec[a * JPEG_BLOCK + b] += cols @ target
    ridge = 1e-6 * a_mat.diagonal(dim1=1, dim2=2).mean() * torch.eye(n, dtype=torch.float64)
    solution = torch.linalg.solve(a_mat + ridge, b_vec)
    return solution[:, :-1].reshape(-1, size, size).float(), solution[:, -1].float()


class CurveNAFNet(nn.Module):
    """``restorer(deblur(curve(dequant(x, deblock(x)))))``: JPEG first (JPEG is the last thing that
    happens to a photo): blind deblocking (with ``deblock_qualities``), refined by dequantisation where
    the file's table shows (with ``dequant_width``); global/slow corrections by the curve stage, a blind
    deconvolution (with ``deblur_sigmas``, e.g. ``DEBLUR_SIGMAS`` as in the default model), local
    corrections by the NAFNet. Without the optional stages' settings they are left out, as in
    checkpoints made before they existed.
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 2,
        enc_blk_nums: Sequence[int] = (1, 1, 1, 4),
        dec_blk_nums: Sequence[int] = (1, 1, 1, 1),
        dw_expand: int = 2,
        ffn_expand: int = 2,
        curve_width: int = 32,
        curve_thumb: int = 64,
        curve_grid: int = 16,
        deblur_sigmas: Sequence[float] = (),
        deblur_size: int = 21,
        deblock_qualities: Sequence[int] = (),
        deblock_size: int = 11,
        dequant_width: int = 0,
        dequant_blocks: int = 4,
    ) -> None:
        super().__init__()
        self.dequant = JPEGDequantizer(dequant_width, dequant_blocks) if dequant_width else None
        # What the stages in front of the NAFNet gave when run apart (tiling_stages), kept for finish():
        # the input, its dequantised image and JPEG signatures.
        self._apart: tuple[torch.Tensor, torch.Tensor, list[JPEGSignature | None]] | None = None
        self.deblock = DeblockStage(deblock_qualities, deblock_size) if len(deblock_qualities) else None
        self.curve = CurveStage(img_channel, curve_width, curve_thumb, curve_grid)
        self.deblur = DeblurStage(deblur_sigmas, deblur_size) if len(deblur_sigmas) else None
        self.restorer = NAFNet(
            img_channel=img_channel,
            width=width,
            middle_blk_num=middle_blk_num,
            enc_blk_nums=enc_blk_nums,
            dec_blk_nums=dec_blk_nums,
            dw_expand=dw_expand,
            ffn_expand=ffn_expand,
        )

    def forward(
        self,
        x: torch.Tensor,
        return_stages: bool = False,
        deblur_options: bool = False,
        deblock_options: bool = False,
        jpeg_qualities: Sequence[int] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor] | torch.Tensor]:
        """The restored image; with ``return_stages`` also each stage's output (dequant, deblock, curve,
        deblur, those present), for deep supervision. ``deblur_options`` (``deblock_options``) returns
        instead that stage's blend weights and its input filtered by every bank entry (training methods
        ``deblur_choice``, ``deblock_choice``), the later stages not run. ``jpeg_qualities`` (N IJG
        qualities, grid at the corner) returns the dequantisation stage's output alone (training method
        ``dequant``)."""
        if jpeg_qualities is not None:
            if self.dequant is None:
                raise ValueError("this CurveNAFNet has no dequantisation stage")
            start = None if self.deblock is None else self.deblock(x)
            return self.dequant.apply_qualities(x, jpeg_qualities, start)
        if deblock_options:
            if self.deblock is None:
                raise ValueError("this CurveNAFNet has no deblocking stage")
            return self.deblock.weights(x), self.deblock.each_option(x)
        if deblur_options:
            if self.deblur is None:
                raise ValueError("this CurveNAFNet has no deblurring stage")
            x = _run_stages(self.dequant, self.deblock, self.curve, None, x)[-1]
            return self.deblur.weights(x), self.deblur.each_option(x)
        stages, signatures = self._front(x)
        out = self.restorer(stages[-1])
        if signatures is not None:
            out = self.finish(x, out, stages[int(self.deblock is not None)], signatures)
        return (out, stages) if return_stages else out

    def _front(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[JPEGSignature | None] | None]:
        """The outputs of the stages in front of the NAFNet, and each image's JPEG signature, read once
        for the dequantisation and the finish (``None`` where no finish runs: no dequantisation stage,
        training, export)."""
        judged = self.dequant is not None and x.shape[1] == 3 and not (self.training or _exporting())
        signatures = [detect_jpeg(image[0]) for image in x.split(1)] if judged else None
        return _run_stages(self.dequant, self.deblock, self.curve, self.deblur, x, signatures), signatures

    def _front_apart(self, x: torch.Tensor) -> torch.Tensor:
        """The stages in front of the NAFNet run apart from it (:meth:`tiling_stages`); their
        dequantised image is kept for the :meth:`finish` on the same input."""
        stages, signatures = self._front(x)
        if signatures is not None:
            self._apart = (x, stages[int(self.deblock is not None)], signatures)
        return stages[-1]

    def finish(
        self,
        x: torch.Tensor,
        restored: torch.Tensor,
        dequantized: torch.Tensor | None = None,
        signatures: Sequence[JPEGSignature | None] | None = None,
    ) -> torch.Tensor:
        """The last step when the input is a decoded JPEG (eval mode, with a dequantisation stage):
        ``dequantized + g * (restored - dequantized)``, ``g`` rising from 0 to 1 as the RMS luma change
        the later stages made grows from ``JPEG_KEEP[0]`` to ``JPEG_KEEP[1]`` levels, or as the
        dequantised photo's :func:`flat_noise` grows across ``JPEG_NOISE``, whichever keeps more;
        ``restored`` as it is for other images. ``forward`` applies it; the inference layer applies it
        after running the stages apart (tiling, self-ensemble), with ``dequantized`` computed again from
        ``x`` unless :meth:`tiling_stages` just ran on ``x`` and kept it. ``signatures``: each image's
        :func:`detect_jpeg`, when the caller has them."""
        if self.dequant is None or self.training:
            return restored
        if dequantized is None and self._apart is not None:
            seen, stored, found = self._apart
            self._apart = None
            if seen.shape == x.shape and torch.equal(seen, x.to(seen)):  # the stages ran apart on x
                dequantized, signatures = stored.to(restored), found
        out = []
        for i, image in enumerate(x.split(1)):
            signature = detect_jpeg(image[0]) if signatures is None else signatures[i]
            if signature is None:
                out.append(restored[i : i + 1])
                continue
            if dequantized is None:
                start = None if self.deblock is None else self.deblock(image)
                base = self.dequant.correct(image, signature, start)
            else:
                base = dequantized[i : i + 1]
            change = restored[i : i + 1] - base
            rms = float(luma_255(change).pow(2).mean().sqrt())
            kept = jpeg_keep_fraction(rms, flat_noise(luma_255(base)))
            out.append(base + kept * change)
        return torch.cat(out)

    def analyze(self, image: torch.Tensor) -> dict[str, float]:
        """What the estimators see in one (1, 3, H, W) image in [0, 1] (the web demo's hook): for each
        stage present, how strongly it acts, 0 (leaves the image alone) to 1: ``"JPEG"`` (deblocking)
        and ``"blur"`` (deblurring, judged after deblocking and the curves, as it runs); with a
        dequantisation stage and a file whose table shows, ``"JPEG table, quality Q"``: how clearly it
        shows (the detector's score, 0.4-1)."""
        found: dict[str, float] = {}
        x = image[:1]
        raw = x
        if self.deblock is not None:
            weights, x = self.deblock.run(x)
            found["JPEG"] = 1.0 - float(weights[0, 0])
        if self.dequant is not None:
            signature = detect_jpeg(raw[0])
            if signature is not None:
                found[f"JPEG table, quality {signature.quality}"] = min(1.0, signature.score)
                x = self.dequant.correct(raw, signature, x)
        if self.deblur is not None:
            found["blur"] = 1.0 - float(self.deblur.weights(self.curve(x))[0, 0])
        return found

    def tiling_stages(self) -> tuple[nn.Module, nn.Module]:
        """For tiled inference: the deblock, dequant, curve and deblur stages run once on the whole image
        (their estimates come from the whole picture, not from each tile, and the JPEG grid stays where it
        is), then the NAFNet runs tile by tile (and :meth:`finish` on the whole output)."""
        return _GlobalStages(self), self.restorer


def _run_stages(
    dequant: JPEGDequantizer | None,
    deblock: DeblockStage | None,
    curve: CurveStage,
    deblur: DeblurStage | None,
    x: torch.Tensor,
    signatures: Sequence[JPEGSignature | None] | None = None,
) -> list[torch.Tensor]:
    """The outputs of the stages in front of the NAFNet, in order (those present). The dequantisation
    refines the deblocking stage's estimate from the decoded input (with the images' JPEG
    ``signatures`` when the caller has read them); an export leaves it out (finding an image's JPEG
    table is not a fixed graph)."""
    stages = [] if deblock is None else [deblock(x)]
    if dequant is not None and not _exporting():
        stages.append(dequant(x, stages[-1] if stages else None, signatures))
    stages.append(curve(stages[-1] if stages else x))
    if deblur is not None:
        stages.append(deblur(stages[-1]))
    return stages


class _GlobalStages(nn.Module):
    """A CurveNAFNet's stages in front of its NAFNet as one module (shares their parameters)."""

    def __init__(self, model: CurveNAFNet) -> None:
        super().__init__()
        self.dequant, self.deblock, self.curve, self.deblur = (
            model.dequant,
            model.deblock,
            model.curve,
            model.deblur,
        )
        self._run = model._front_apart  # a bound method: the model is not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)


def infer_curve_nafnet_config(state_dict: StateDict) -> dict[str, Any] | None:
    """CurveNAFNet kwargs reproducing ``state_dict``, or ``None`` if it is not one."""
    if "curve.head.weight" not in state_dict:
        return None
    inner = infer_nafnet_config(
        {k.removeprefix("restorer."): v for k, v in state_dict.items() if k.startswith("restorer.")}
    )
    if inner is None:
        return None
    curve_width = int(state_dict["curve.head.weight"].shape[1])
    downs = (count_blocks(state_dict, "curve.features") + 1) // 2 - 1  # conv, GELU, conv, ...
    thumb = 64
    kernels = state_dict.get("deblur.kernels")
    if kernels is None:
        deblur: dict[str, Any] = {"deblur_sigmas": ()}
    else:
        k = int(kernels.shape[0])
        # The sigmas only set the initial kernels, which the weights replace.
        sigmas = DEBLUR_SIGMAS if k == len(DEBLUR_SIGMAS) else tuple(1.0 + i for i in range(k))
        deblur = {"deblur_sigmas": sigmas, "deblur_size": int(kernels.shape[-1])}
    blocks = state_dict.get("deblock.kernels")
    if blocks is not None:
        k = int(blocks.shape[0])
        # The qualities only name the bank entries, which the weights fill.
        qualities = (
            DEBLOCK_QUALITIES if k == len(DEBLOCK_QUALITIES) else tuple(10 * (i + 1) for i in range(k))
        )
        deblur.update(deblock_qualities=qualities, deblock_size=int(blocks.shape[-1]))
    dequant = state_dict.get("dequant.head.weight")
    if dequant is not None:
        deblur.update(
            dequant_width=int(dequant.shape[0]), dequant_blocks=count_blocks(state_dict, "dequant.body")
        )
    cfg = {
        **inner,
        "curve_width": curve_width,
        "curve_thumb": thumb,
        "curve_grid": thumb // 2**downs,
        **deblur,
    }
    return cfg if shapes_match(state_dict, CurveNAFNet, cfg) else None


register_architecture(
    Architecture(
        name="curve_nafnet",
        build=CurveNAFNet,
        infer_config=infer_curve_nafnet_config,
        scale=lambda cfg: 1,
        size_multiple=lambda cfg: 2 ** len(cfg.get("enc_blk_nums", (1, 1, 1, 4))),
        normalization="none",
        precisions=("fp32", "bf16", "fp16"),
        description="anyrestore's default design: deblocking, tone-curve, deblurring stages, then a NAFNet",
    )
)
