"""Shared helpers for the degradation operators: input checks, random draws and 2-D filtering."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Above this many taps a 2-D filter goes through the FFT: cheaper on large kernels, same result to ~1e-6.
FFT_MIN_TAPS = 625


def check_image(x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a floating (N, C, H, W) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"expected an image batch of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point image tensor, got {x.dtype}")


def randn(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal samples on ``like``'s device and dtype."""
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) samples on ``like``'s device and dtype."""
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def filter2d(x: torch.Tensor, kernel: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Correlate every channel of ``x`` with one 2-D ``kernel`` (odd sizes), output the size of ``x``.

    ``padding`` is ``"reflect"`` (falls back to ``"replicate"`` when the image is smaller than the kernel
    radius), ``"replicate"`` or ``"zeros"``. Large kernels are applied through the FFT.
    """
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    n, c, h, w = x.shape
    mode = padding
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"
    flat = x.reshape(n * c, 1, h, w)
    pads = (pw, pw, ph, ph)
    padded = F.pad(flat, pads) if mode == "zeros" else F.pad(flat, pads, mode=mode)
    return correlate_valid(padded, kernel).reshape(n, c, h, w)


def correlate_valid(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """'Valid' cross-correlation of a (B, 1, H, W) tensor with a 2-D kernel, as ``conv2d`` computes it."""
    kh, kw = kernel.shape
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    if kh * kw < FFT_MIN_TAPS:
        return F.conv2d(x, kernel.view(1, 1, kh, kw))
    hp, wp = x.shape[-2:]
    # Circular convolution with the flipped kernel equals correlation wherever it does not wrap around.
    spec = torch.fft.rfft2(x, s=(hp, wp)) * torch.fft.rfft2(kernel.flip(0, 1), s=(hp, wp))
    full = torch.fft.irfft2(spec, s=(hp, wp))
    return full[..., kh - 1 :, kw - 1 :].contiguous()


def supersample_grid(half: int, samples: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel sample coordinates of a (2*half+1)^2 kernel grid, shape (K, K, S*S) each, float64.

    Column coordinate ``u`` grows to the right, row coordinate ``v`` grows downwards; the centre pixel
    spans [-0.5, 0.5] in both.
    """
    offs = (torch.arange(samples, dtype=torch.float64) + 0.5) / samples - 0.5
    centres = torch.arange(-half, half + 1, dtype=torch.float64)
    pos = (centres[:, None] + offs[None, :]).reshape(-1)  # (K*S,)
    k = 2 * half + 1
    v = pos[:, None].expand(-1, pos.numel())
    u = pos[None, :].expand(pos.numel(), -1)
    # Group the sub-samples of each kernel pixel together.
    v = v.reshape(k, samples, k, samples).permute(0, 2, 1, 3).reshape(k, k, samples * samples)
    u = u.reshape(k, samples, k, samples).permute(0, 2, 1, 3).reshape(k, k, samples * samples)
    return u, v


def trim_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """Drop all-zero outer rows/columns symmetrically, so the kernel stays centred."""
    while kernel.shape[0] > 1 and kernel[0].abs().sum() == 0 and kernel[-1].abs().sum() == 0:
        kernel = kernel[1:-1]
    while kernel.shape[1] > 1 and kernel[:, 0].abs().sum() == 0 and kernel[:, -1].abs().sum() == 0:
        kernel = kernel[:, 1:-1]
    return kernel


def direction(angle_deg: float) -> tuple[float, float]:
    """Unit vector (du, dv) of ``angle_deg`` counter-clockwise from the +x axis (image rows grow down)."""
    rad = math.radians(angle_deg)
    return math.cos(rad), -math.sin(rad)
