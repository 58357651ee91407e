"""EDT (Li et al., "On Efficient Transformer-Based Image Pre-training for Low-Level Vision", IJCAI 2023).

A multi-task restorer: each task (SR at a scale, denoising at a noise level, deraining at a streak level)
has its own convolutional head and tail around one shared transformer body. The body is a stack of
residual groups of CSwin-style blocks: each block splits its channels in two halves that attend within
horizontal (6 x 24) and vertical (24 x 6) stripes, with a locally-enhanced positional encoding (LePE,
a depthwise 3x3 conv on the values) instead of a relative position bias, and a feed-forward network with
a depthwise 5x5 conv. SR heads keep the resolution; denoising/deraining heads downsample twice (and their
tails upsample back with skips), so the body always works on the same-size token grid.

Module names, registration order and shapes follow the official release (``fenglinglwb/EDT``,
``utils/modules/edt.py``, class ``Network``), so the released ``.pth`` files (plain state_dicts) load with
``strict=True``. The defaults are EDT-B with the SR x2/x3/x4 heads of ``SRx2x3x4_EDTB_ImageNet200K``, the
pre-trained model AdaptIR adapts. Facts the weights do not store are set as every release does: the stripe
size (6, 24), 6 heads (8 for EDT-L, ``embed_dim=240``), ``img_range=1``.

The network mirror-pads H and W on the bottom/right to a multiple of the stripe length (times 4 for the
downsampling heads) and crops the output, as the official test script does, so any input size works. The
official script always pads by at least one row/column; here an already-aligned input is not padded.
The EDTSF variants (denoising without the down/up-sampling) are not implemented.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.models.detection import shapes_match
from anyrestore.models.layers import DropPath, Upsample, UpsampleOneStep
from anyrestore.models.registry import Architecture, StateDict, register_architecture

# EDT's body is a Swin transformer: the blocks it shares with SwinIR come from there, one copy each.
from anyrestore.models.swinir import init_weights

_EDT_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K RGB mean, subtracted as in the release
_SIX = (6, 6, 6, 6, 6, 6)
_MASK_BUFFERS = (".attn_mask_h", ".attn_mask_v")


# --------------------------------------------------------------------------------------------------
# Stripe windows
# --------------------------------------------------------------------------------------------------


def _stripe(window_size: tuple[int, int], index: int) -> tuple[int, int]:
    """(height, width) of the stripes of attention half ``index``: 0 horizontal, 1 vertical (transposed)."""
    return (window_size[0], window_size[1]) if index == 0 else (window_size[1], window_size[0])


def stripe_partition(x: torch.Tensor, stripe: tuple[int, int]) -> torch.Tensor:
    """(..., B, H, W, C) -> (..., B * nW, h, w, C): non-overlapping h x w windows, row-major."""
    *lead, b, h, w, c = x.shape
    sh, sw = stripe
    x = x.reshape(*lead, b, h // sh, sh, w // sw, sw, c)
    n = len(lead)
    x = x.permute(*range(n), n, n + 1, n + 3, n + 2, n + 4, n + 5)
    return x.reshape(*lead, -1, sh, sw, c)


def stripe_merge(windows: torch.Tensor, stripe: tuple[int, int], h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`stripe_partition` for one leading batch axis: (B * nW, h, w, C) -> (B, H, W, C)."""
    sh, sw = stripe
    c = windows.shape[-1]
    x = windows.reshape(-1, h // sh, w // sw, sh, sw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def stripe_mask(
    h: int,
    w: int,
    stripe: tuple[int, int],
    shift: tuple[int, int],
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Additive mask (nW, N, N) for shifted stripes on an H x W map (-100 across bands, as released).

    After the cyclic shift the windows at the bottom/right border hold pixels from up to three bands per
    axis that were not neighbours in the image; only pairs from the same band may attend to each other.
    """

    def bands(n: int, size: int, offset: int) -> torch.Tensor:
        idx = torch.arange(n, device=device)
        return (idx >= n - size).long() + (idx >= n - offset).long()

    region = (bands(h, stripe[0], shift[0])[:, None] * 3 + bands(w, stripe[1], shift[1])[None, :]).to(dtype)
    ids = stripe_partition(region[None, :, :, None], stripe).flatten(1)  # (nW, N)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


# --------------------------------------------------------------------------------------------------
# Convolutional heads and tails
# --------------------------------------------------------------------------------------------------


class ResBlockDown(nn.Module):
    """Two 3x3 convs (LeakyReLU 0.2) with a 1x1 shortcut; with ``down`` also a strided 4x4 conv.

    With ``down`` the block returns ``(downsampled, full_resolution)``; the tail uses the second as skip.
    """

    def __init__(self, in_chl: int, out_chl: int, down: bool = False) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(in_chl, in_chl, 3, 1, 1)
        self.relu_1 = nn.LeakyReLU(0.2)
        self.conv_2 = nn.Conv2d(in_chl, out_chl, 3, 1, 1)
        self.relu_2 = nn.LeakyReLU(0.2)
        self.shortcut = nn.Conv2d(in_chl, out_chl, 1)
        self.down = down
        if down:
            self.conv_down = nn.Conv2d(out_chl, out_chl, 4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.relu_2(self.conv_2(self.relu_1(self.conv_1(x)))) + self.shortcut(x)
        if self.down:
            return self.conv_down(x), x
        return x


class ResBlockUp(nn.Module):
    """Two 3x3 convs (LeakyReLU 0.2) changing the width, with a 1x1 shortcut."""

    def __init__(self, in_chl: int, out_chl: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(in_chl, out_chl, 3, 1, 1)
        self.relu_1 = nn.LeakyReLU(0.2)
        self.conv_2 = nn.Conv2d(out_chl, out_chl, 3, 1, 1)
        self.relu_2 = nn.LeakyReLU(0.2)
        self.shortcut = nn.Conv2d(in_chl, out_chl, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_2(self.conv_2(self.relu_1(self.conv_1(x)))) + self.shortcut(x)


class UpResBlock(nn.Module):
    """Transposed-conv x2 upsampling, concatenation with the head's skip, and a :class:`ResBlockUp`."""

    def __init__(self, in_chl: int, out_chl: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_chl, out_chl, kernel_size=2, stride=2)
        self.block = ResBlockUp(out_chl * 2, out_chl)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class ResBlockSkip(nn.Module):
    """Same-resolution counterpart of :class:`UpResBlock` (SR tails): 3x3 conv, concat skip, ResBlockUp."""

    def __init__(self, in_chl: int, out_chl: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chl, out_chl, 3, 1, 1)
        self.block = ResBlockUp(out_chl * 2, out_chl)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.conv(x), skip], dim=1))


# --------------------------------------------------------------------------------------------------
# Transformer body
# --------------------------------------------------------------------------------------------------


class Mlp(nn.Module):
    """Feed-forward network on (B, H, W, C) maps: fc1, GELU, depthwise 5x5 conv, GELU, fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 5, 1, 2, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x)).permute(0, 3, 1, 2)
        x = self.act(self.dwconv(x)).permute(0, 2, 3, 1)
        return self.fc2(x)


class WindowAttention(nn.Module):
    """Multi-head attention within horizontal (``index=0``) or vertical (``index=1``) stripes, with LePE.

    Takes the already-projected queries, keys and values of its channel half, stacked as (3, B, H, W, C);
    returns (B, H, W, C). The only parameters are the LePE depthwise conv's.

    ``extra_kv`` — optional (keys, values), each (P, C), appended to every window's keys and values with
    no positional term and no mask (extra tokens every pixel may attend to, e.g. visual prompts).
    """

    def __init__(self, dim: int, window_size: tuple[int, int], num_heads: int, index: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"channel half {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        self.index = index
        self.lepe = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(
        self,
        qkv: torch.Tensor,
        mask: torch.Tensor | None,
        extra_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        _, b, h, w, c = qkv.shape
        heads = self.num_heads
        stripe = _stripe(self.window_size, self.index)
        windows = stripe_partition(qkv, stripe)  # (3, B_, sh, sw, C)
        bw, n = windows.shape[1], stripe[0] * stripe[1]

        v_map = windows[2].permute(0, 3, 1, 2)  # (B_, C, sh, sw)
        lepe = self.lepe(v_map).flatten(2).reshape(bw, heads, c // heads, n).transpose(-1, -2)
        q, k, v = windows.reshape(3, bw, n, heads, c // heads).permute(0, 1, 3, 2, 4).unbind(0)

        bias = None
        if extra_kv is not None:
            ek, ev = (t.to(q.dtype).reshape(1, -1, heads, c // heads).transpose(1, 2) for t in extra_kv)
            k = torch.cat([ek.expand(bw, -1, -1, -1), k], dim=2)
            v = torch.cat([ev.expand(bw, -1, -1, -1), v], dim=2)
            if mask is not None:
                mask = F.pad(mask, (ek.shape[2], 0))
        if mask is not None:
            # Fold windows into the head axis so one (nW * heads, N, N') mask broadcasts over the batch.
            nw = mask.shape[0]
            bias = mask.to(q.dtype).unsqueeze(1).expand(-1, heads, -1, -1).reshape(1, nw * heads, n, -1)
            q, k, v = (t.reshape(bw // nw, nw * heads, t.shape[2], -1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).reshape(bw, heads, n, -1) + lepe
        out = out.transpose(1, 2).reshape(bw, stripe[0], stripe[1], c)
        return stripe_merge(out, stripe, h, w)


class CSwinTransformerBlock(nn.Module):
    """Pre-norm block: cross-shaped stripe attention (two channel halves) and the conv MLP, residual each.

    ``input_resolution`` is the training patch of the body: the shifted-stripe masks for it are
    precomputed (and saved in checkpoints, as released); other sizes compute theirs on the fly.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: tuple[int, int],
        shift_size: tuple[int, int] | None,
        mlp_ratio: float = 2.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.window_size = tuple(window_size)
        self.shift_size = tuple(shift_size) if shift_size else None
        if self.shift_size and not all(
            0 <= s < w for s, w in zip(self.shift_size, self.window_size, strict=True)
        ):
            raise ValueError(f"shift {self.shift_size} must lie within the window {self.window_size}")

        self.norm1 = nn.LayerNorm(dim)
        self.attns = nn.ModuleList(
            WindowAttention(dim // 2, self.window_size, num_heads, index=i) for i in range(2)
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("attn_mask_h", self._mask(self.input_resolution, 0))
        self.register_buffer("attn_mask_v", self._mask(self.input_resolution, 1))

    def _mask(
        self, size: tuple[int, int], index: int, device: torch.device | None = None, dtype=torch.float32
    ) -> torch.Tensor | None:
        if self.shift_size is None:
            return None
        return stripe_mask(
            *size, _stripe(self.window_size, index), _stripe(self.shift_size, index), device, dtype
        )

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kw: Any) -> None:
        # Deterministic buffers: a checkpoint that lacks them still loads strictly.
        for name in ("attn_mask_h", "attn_mask_v"):
            if getattr(self, name) is not None:
                state_dict.setdefault(prefix + name, getattr(self, name))
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, length, c = x.shape
        x = x.view(b, h, w, c)
        qkv = self.qkv(self.norm1(x)).reshape(b, h, w, 3, c).permute(3, 0, 1, 2, 4)
        halves = [qkv[..., : c // 2], qkv[..., c // 2 :]]
        shifts = [_stripe(self.shift_size, i) for i in range(2)] if self.shift_size else None
        if shifts:
            halves = [torch.roll(t, (-s[0], -s[1]), dims=(2, 3)) for t, s in zip(halves, shifts, strict=True)]
        if tuple(size) == self.input_resolution:
            masks = [self.attn_mask_h, self.attn_mask_v]
        else:
            masks = [self._mask((h, w), i, x.device) for i in range(2)]
        outs = [attn(t, m) for attn, t, m in zip(self.attns, halves, masks, strict=True)]
        if shifts:
            outs = [torch.roll(t, s, dims=(1, 2)) for t, s in zip(outs, shifts, strict=True)]

        x = x + self.drop_path(self.proj(torch.cat(outs, dim=-1)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.view(b, length, c)


class BasicLayer(nn.Module):
    """``depth`` blocks alternating plain and half-stripe-shifted windows."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: tuple[int, int],
        mlp_ratio: float,
        drop_path: Sequence[float],
    ) -> None:
        super().__init__()
        shift = (window_size[0] // 2, window_size[1] // 2)
        self.blocks = nn.ModuleList(
            CSwinTransformerBlock(
                dim,
                input_resolution,
                num_heads,
                window_size,
                shift_size=None if i % 2 == 0 else shift,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path[i],
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


class RSTB(nn.Module):
    """Residual group: a :class:`BasicLayer` with a skip around it (EDT has no conv inside the group)."""

    def __init__(
        self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, **kw: Any
    ) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, input_resolution, depth, num_heads, **kw)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.residual_group(x, size) + x


class PatchEmbed(nn.Module):
    """Feature map (N, C, H, W) to tokens (N, H*W, C), optionally layer-normalised (patch size 1)."""

    def __init__(self, dim: int, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)
        return x if self.norm is None else self.norm(x)


class SwinBody(nn.Module):
    """The shared transformer body: residual groups, a final norm, a conv and a long skip (C -> C)."""

    def __init__(
        self,
        img_size: int,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_size: tuple[int, int],
        mlp_ratio: float,
        resi_connection: str,
        patch_norm: bool,
        drop_path_rate: float,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError("depths and num_heads must have the same length")
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList(
            RSTB(
                embed_dim,
                (img_size, img_size),
                depth,
                heads,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
            )
            for i, (depth, heads) in enumerate(zip(depths, num_heads, strict=True))
        )
        self.norm = nn.LayerNorm(embed_dim)
        if resi_connection == "1conv":
            self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        elif resi_connection == "3conv":
            self.conv_after_body = nn.Sequential(
                nn.Conv2d(embed_dim, embed_dim // 4, 3, 1, 1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(embed_dim // 4, embed_dim // 4, 1, 1, 0),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(embed_dim // 4, embed_dim, 3, 1, 1),
            )
        else:
            raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        tokens = self.patch_embed(x)
        for layer in self.layers:
            tokens = layer(tokens, size)
        feat = self.norm(tokens).transpose(1, 2).reshape(x.shape)
        return self.conv_after_body(feat) + x


# --------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------


def _task_names(scales: Sequence[int], noise_levels: Sequence[int], rain_levels: Sequence[str]) -> list[str]:
    return (
        [f"sr_x{s}" for s in scales] + [f"dn_g{n}" for n in noise_levels] + [f"dr_{r}" for r in rain_levels]
    )


class EDT(nn.Module):
    """EDT with one head/tail pair per task and a shared body. Defaults: EDT-B, SR x2/x3/x4 heads.

    Tasks are named after their modules: ``"sr_x2"`` (``head_sr_x2`` / ``tail_sr_x2``), ``"dn_g15"``,
    ``"dr_L"``. ``task`` picks the one :meth:`forward` runs (default: the first); ``forward(x, task=...)``
    overrides it per call. Input and output are [0, 1] RGB; SR tasks return an image ``scale`` times
    larger. Other released sizes: EDT-T (``num_feat=8, embed_dim=60, depths=(6,)*4,
    upsampler='pixelshuffledirect'``), EDT-S (16, 120, 5 groups), EDT-L (64, 240, 12 groups, 8 heads).
    ``depth`` is the number of residual blocks in each head (and down/up-sampling steps of the
    denoising/deraining heads), ``img_size`` the training patch of the body (fixes the saved masks).
    """

    def __init__(
        self,
        scales: Sequence[int] = (2, 3, 4),
        noise_levels: Sequence[int] = (),
        rain_levels: Sequence[str] = (),
        in_chans: int = 3,
        num_feat: int = 32,
        embed_dim: int = 180,
        depths: Sequence[int] = _SIX,
        num_heads: Sequence[int] = _SIX,
        window_size: Sequence[int] = (6, 24),
        mlp_ratio: float = 2.0,
        depth: int = 2,
        img_size: int = 48,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
        patch_norm: bool = True,
        img_range: float = 1.0,
        drop_path_rate: float = 0.1,
        task: str | None = None,
    ) -> None:
        super().__init__()
        self.scales = [int(s) for s in scales]
        self.noise_levels = [int(n) for n in noise_levels]
        self.rain_levels = [str(r) for r in rain_levels]
        self.tasks = _task_names(self.scales, self.noise_levels, self.rain_levels)
        if not self.tasks:
            raise ValueError("EDT needs at least one task (scales, noise_levels or rain_levels)")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"duplicate tasks in {self.tasks}")
        if upsampler not in ("pixelshuffle", "pixelshuffledirect"):
            raise ValueError(f"upsampler must be 'pixelshuffle' or 'pixelshuffledirect', got {upsampler!r}")
        self.task = self._check_task(task if task is not None else self.tasks[0])
        self.window_size = (int(window_size[0]), int(window_size[1]))
        self.depth = depth
        self.img_range = img_range
        mean = torch.tensor(_EDT_MEAN) if in_chans == 3 else torch.zeros(1)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)

        def head(down: bool) -> nn.ModuleList:
            layers: list[nn.Module] = [nn.Conv2d(in_chans, num_feat, 3, 1, 1)]
            layers += [
                ResBlockDown(num_feat * 2**i, num_feat * 2 ** (i + 1), down=down) for i in range(depth)
            ]
            layers.append(nn.Conv2d(num_feat * 2**depth, embed_dim, 3, 1, 1))
            return nn.ModuleList(layers)

        def tail(block: type[nn.Module]) -> list[nn.Module]:
            widths = [
                (embed_dim if i == depth - 1 else num_feat * 2 ** (i + 2), num_feat * 2 ** (i + 1))
                for i in reversed(range(depth))
            ]
            return [block(cin, cout) for cin, cout in widths]

        # Registration order mirrors the release: all heads, the body, then all tails.
        for s in self.scales:
            setattr(self, f"head_sr_x{s}", head(down=False))
        for n in self.noise_levels:
            setattr(self, f"head_dn_g{n}", head(down=True))
        for r in self.rain_levels:
            setattr(self, f"head_dr_{r}", head(down=True))
        self.body = SwinBody(
            img_size,
            embed_dim,
            depths,
            num_heads,
            self.window_size,
            mlp_ratio,
            resi_connection,
            patch_norm,
            drop_path_rate,
        )
        last = num_feat * 2
        for s in self.scales:
            if upsampler == "pixelshuffle":
                up = [Upsample(s, last), nn.Conv2d(last, in_chans, 3, 1, 1)]
            else:
                up = [UpsampleOneStep(s, last, in_chans), nn.Identity()]
            setattr(self, f"tail_sr_x{s}", nn.ModuleList(tail(ResBlockSkip) + up))
        for n in self.noise_levels:
            setattr(
                self, f"tail_dn_g{n}", nn.ModuleList([*tail(UpResBlock), nn.Conv2d(last, in_chans, 3, 1, 1)])
            )
        for r in self.rain_levels:
            setattr(
                self, f"tail_dr_{r}", nn.ModuleList([*tail(UpResBlock), nn.Conv2d(last, in_chans, 3, 1, 1)])
            )

    def _check_task(self, task: str) -> str:
        if task not in self.tasks:
            raise ValueError(f"unknown EDT task {task!r} (this model has {', '.join(self.tasks)})")
        return task

    def task_scale(self, task: str | None = None) -> int:
        task = self._check_task(task or self.task)
        return int(task[len("sr_x") :]) if task.startswith("sr_x") else 1

    def size_multiple(self, task: str | None = None) -> int:
        """H and W multiple the body needs: the stripe length, times 2**depth for downsampling heads."""
        task = self._check_task(task or self.task)
        lcm = math.lcm(*self.window_size)
        return lcm if task.startswith("sr_") else lcm * 2**self.depth

    def forward(self, x: torch.Tensor, task: str | None = None) -> torch.Tensor:
        task = self._check_task(task or self.task)
        scale = self.task_scale(task)
        h, w = x.shape[-2:]
        multiple = self.size_multiple(task)
        x = _mirror_pad(x, -h % multiple, -w % multiple)
        x = (x - self.mean.to(x.dtype)) * self.img_range

        head, tail = getattr(self, f"head_{task}"), getattr(self, f"tail_{task}")
        feat, skips = head[0](x), []
        for block in head[1:-1]:
            out = block(feat)
            if isinstance(out, tuple):  # downsampling heads keep the full-resolution map as the skip
                feat, skip = out
            else:
                feat = skip = out
            skips.append(skip)
        feat = self.body(head[-1](feat))

        for j, block in enumerate(tail[: self.depth]):
            feat = block(feat, skips[-j - 1])
        if scale > 1:
            up = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            out = up + tail[-1](tail[-2](feat))
        else:
            out = x + tail[-1](feat)
        out = out / self.img_range + self.mean.to(out.dtype)
        return out[..., : h * scale, : w * scale]


def _mirror_pad(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Pad bottom/right with the mirror image including the edge row/column, as the official test does
    (repeated when the padding exceeds the image)."""
    h, w = x.shape[-2:]
    while x.shape[-2] < h + pad_h:
        x = torch.cat([x, x.flip(-2)], dim=-2)
    while x.shape[-1] < w + pad_w:
        x = torch.cat([x, x.flip(-1)], dim=-1)
    return x[..., : h + pad_h, : w + pad_w]


# --------------------------------------------------------------------------------------------------
# Recognising checkpoints
# --------------------------------------------------------------------------------------------------

_HEAD = re.compile(r"^head_(sr_x(\d+)|dn_g(\d+)|dr_(\w+))\.0\.weight$")
_BLOCK = re.compile(r"^body\.layers\.(\d+)\.residual_group\.blocks\.(\d+)\.qkv\.weight$")


def infer_edt_config(state_dict: StateDict) -> dict[str, Any] | None:
    """:class:`EDT` kwargs reproducing ``state_dict``, or ``None`` if it is not an EDT release.

    The stripe size, head count and ``img_range`` are not stored; they are set as in every release.
    """
    scales: list[int] = []
    noise_levels: list[int] = []
    rain_levels: list[str] = []
    first_head = None
    for key in state_dict:
        if m := _HEAD.match(key):
            first_head = first_head or key
            if m.group(2):
                scales.append(int(m.group(2)))
            elif m.group(3):
                noise_levels.append(int(m.group(3)))
            else:
                rain_levels.append(m.group(4))
    norm = state_dict.get("body.norm.weight")
    if (
        first_head is None
        or norm is None
        or "body.layers.0.residual_group.blocks.0.attns.0.lepe.weight" not in state_dict
    ):
        return None
    depth_of: dict[int, int] = {}
    for key in state_dict:
        if m := _BLOCK.match(key):
            layer, block = int(m.group(1)), int(m.group(2))
            depth_of[layer] = max(depth_of.get(layer, 0), block + 1)
    if not depth_of or sorted(depth_of) != list(range(len(depth_of))):
        return None
    conv0 = state_dict[first_head]
    prefix = first_head[: -len(".0.weight")]
    depth = sum(1 for k in state_dict if re.fullmatch(re.escape(prefix) + r"\.\d+\.conv_1\.weight", k))
    embed_dim = int(norm.shape[0])
    fc1 = state_dict.get("body.layers.0.residual_group.blocks.0.mlp.fc1.weight")
    if fc1 is None or conv0.dim() != 4:
        return None
    mask = next((v for k, v in state_dict.items() if k.endswith(_MASK_BUFFERS)), None)
    img_size = (
        math.isqrt(int(mask.shape[0]) * int(mask.shape[1])) if mask is not None and mask.dim() == 3 else 48
    )
    upsampler = "pixelshuffle"
    if scales and f"tail_sr_x{scales[0]}.{depth + 1}.weight" not in state_dict:
        upsampler = "pixelshuffledirect"
    cfg: dict[str, Any] = {
        "scales": tuple(scales),
        "noise_levels": tuple(noise_levels),
        "rain_levels": tuple(rain_levels),
        "in_chans": int(conv0.shape[1]),
        "num_feat": int(conv0.shape[0]),
        "embed_dim": embed_dim,
        "depths": tuple(depth_of[i] for i in range(len(depth_of))),
        "num_heads": (8 if embed_dim == 240 else 6,) * len(depth_of),
        "mlp_ratio": int(fc1.shape[0]) / embed_dim,
        "depth": depth,
        "img_size": img_size,
        "upsampler": upsampler,
        "resi_connection": "1conv" if "body.conv_after_body.weight" in state_dict else "3conv",
        "patch_norm": "body.patch_embed.norm.weight" in state_dict,
    }
    return cfg if shapes_match(state_dict, EDT, cfg, optional_suffixes=_MASK_BUFFERS) else None


def _edt_task(cfg: dict[str, Any]) -> str:
    tasks = _task_names(cfg.get("scales", (2, 3, 4)), cfg.get("noise_levels", ()), cfg.get("rain_levels", ()))
    return cfg.get("task") or tasks[0]


def _edt_scale(cfg: dict[str, Any]) -> int:
    task = _edt_task(cfg)
    return int(task[len("sr_x") :]) if task.startswith("sr_x") else 1


def _edt_multiple(cfg: dict[str, Any]) -> int:
    lcm = math.lcm(*cfg.get("window_size", (6, 24)))
    return lcm if _edt_task(cfg).startswith("sr_") else lcm * 2 ** cfg.get("depth", 2)


register_architecture(
    Architecture(
        name="edt",
        build=EDT,
        infer_config=infer_edt_config,
        scale=_edt_scale,
        size_multiple=_edt_multiple,
        normalization="none",
        precisions=("fp32", "bf16", "fp16"),
        description="EDT (Li et al. 2023), official release: multi-task SR / denoising / deraining heads",
    )
)
