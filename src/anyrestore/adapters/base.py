"""What adapter methods need to know about a backbone: its transformer blocks and insertion points.

A :class:`Site` describes one transformer block of a supported backbone in backbone-neutral terms: where
its feed-forward network starts and ends, which module's output is its attention branch, which fused
q/k/v and other projection weights it owns, and how its tokens are laid out (so spatial adapters can view
them as an (N, C, H, W) map). :mod:`anyrestore.adapters.sites` builds the sites of each backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anyrestore.errors import AnyRestoreError

LAYOUTS = ("nchw", "nhwc", "nlc", "lnc")


class AdapterError(AnyRestoreError):
    """An adapter cannot be injected, saved, loaded or merged; the message says why, in one line."""


@dataclass(frozen=True)
class ParamRef:
    """A weight of a module (``module.<name>``): the unit LoRA and FacT re-parametrise."""

    module: nn.Module
    name: str = "weight"

    @property
    def shape(self) -> torch.Size:
        return getattr(self.module, self.name).shape


class SpatialSize:
    """Holds the (H, W) of a token sequence, set by a hook on the block that receives it as an argument."""

    def __init__(self, value: tuple[int, int] | None = None) -> None:
        self.value = value


@dataclass(frozen=True)
class Site:
    """One transformer block of a backbone and the places adapter methods attach to.

    ``ffn`` is (first, last): ``first``'s input is the FFN input LN2(x) and ``last``'s output the FFN output
    (the same module when the FFN is one module). ``attn_out`` returns the attention branch before the
    residual (possibly as the first element of a tuple). ``layout`` is how tokens are laid out at these
    points: ``nchw`` maps, ``nhwc`` maps, ``nlc`` (batch, length, channels) or ``lnc`` (sequence first);
    the last two need ``size`` (a fixed grid) or ``size_arg`` (the index of the block's (H, W) argument).
    ``ssf`` lists (label, module, channels) whose outputs SSF scales and shifts.
    """

    name: str
    block: nn.Module
    dim: int
    layout: str
    ffn: tuple[nn.Module, nn.Module]
    attn_out: nn.Module
    qkv: tuple[ParamRef, ...]
    attn_proj: tuple[ParamRef, ...]
    ffn_proj: tuple[ParamRef, ...]
    ssf: tuple[tuple[str, nn.Module, int], ...]
    size: tuple[int, int] | None = None
    size_arg: int | None = None
    prompting: str | None = None  # how VPT inserts tokens: "sequence", "swin", "edt", or None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown token layout {self.layout!r}")

    @property
    def channel_axis(self) -> int:
        return 1 if self.layout == "nchw" else -1


@dataclass(frozen=True)
class Backbone:
    """A recognised backbone: its kind, its sites, and the AdaptIR widths the paper uses on it."""

    kind: str
    sites: tuple[Site, ...]
    adaptir_reduction: int = 14  # hidden width c = d // reduction
    adaptir_gate_reduction: int = 4  # channel-gate width c // gate_reduction


def to_map(x: torch.Tensor, layout: str, size: tuple[int, int] | None) -> torch.Tensor:
    """View tokens in ``layout`` as an (N, C, H, W) map."""
    if layout == "nchw":
        return x
    if layout == "nhwc":
        return x.permute(0, 3, 1, 2)
    if size is None:
        raise AdapterError(f"the spatial size of {layout} tokens is unknown")
    h, w = size
    if layout == "nlc":
        n, length, c = x.shape
        seq = x.transpose(1, 2)
    else:
        length, n, c = x.shape
        seq = x.permute(1, 2, 0)
    if length != h * w:
        raise AdapterError(f"{length} tokens do not form the {h}x{w} grid a spatial adapter needs")
    return seq.reshape(n, c, h, w)


def from_map(y: torch.Tensor, layout: str) -> torch.Tensor:
    """Inverse of :func:`to_map`."""
    if layout == "nchw":
        return y
    if layout == "nhwc":
        return y.permute(0, 2, 3, 1)
    if layout == "nlc":
        return y.flatten(2).transpose(1, 2)
    return y.flatten(2).permute(2, 0, 1)
