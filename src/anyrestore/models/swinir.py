"""SwinIR (Liang et al., ICCVW 2021) and the SwinIR variant released with RAM (Qin et al., ECCV 2024).

SwinIR extracts shallow features with one conv, refines them with residual groups of shifted-window
transformer blocks (RSTB), and reconstructs with a conv head (plus an image-level residual for
denoising / JPEG artefact removal, or a pixel-shuffle upsampler for super-resolution).

Module names, parameter shapes and buffers follow the official releases (``JingyunLiang/SwinIR``,
``DragonisCV/RAM``), so their checkpoints load with ``strict=True``. The released files carry the
``relative_position_index`` buffer of every block and the precomputed ``attn_mask`` of every shifted
block (its shape fixes the training patch size, ``img_size``); both are registered here exactly as the
official model does, and a checkpoint that lacks them still loads because they are recomputed.

As in both releases the network reflect-pads H and W on the bottom/right to a multiple of the window
size and crops the output back, so any input size (larger than the padding) works.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.models.detection import count_blocks, shapes_match
from anyrestore.models.layers import DropPath, Mlp, Upsample, UpsampleOneStep
from anyrestore.models.registry import Architecture, StateDict, register_architecture

_SIX = (6, 6, 6, 6, 6, 6)
_UPSAMPLE_FEATURES = 64  # width of the SR heads, fixed in the official code
_SWINIR_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K RGB mean the official SwinIR subtracts


# --------------------------------------------------------------------------------------------------
# Window helpers
# --------------------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Split (B, H, W, C) into non-overlapping windows: (B * nW, window_size**2, C), row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_merge(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window_size**2, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) int64 index into the (2*ws - 1)**2 bias table for every pair of the N = ws**2 tokens."""
    ys, xs = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    coords = torch.stack((ys.flatten(), xs.flatten()))  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]) + (window_size - 1)  # each offset now in [0, 2ws - 2]
    return rel[0] * (2 * window_size - 1) + rel[1]


def shifted_window_mask(
    h: int,
    w: int,
    window_size: int,
    shift_size: int,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Additive attention mask (nW, N, N) for shifted windows on an H x W map.

    After the cyclic shift, a window at the bottom/right border holds pixels from up to three bands
    per axis that were not neighbours in the image; pairs from different bands get -100 (the value the
    official code uses, not -inf), pairs from the same band 0.
    """

    def bands(n: int) -> torch.Tensor:
        idx = torch.arange(n, device=device)
        return (idx >= n - window_size).long() + (idx >= n - shift_size).long()

    region = (bands(h)[:, None] * 3 + bands(w)[None, :]).to(dtype)
    ids = window_partition(region[None, :, :, None], window_size).squeeze(-1)  # (nW, N)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _to_image(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    n, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(n, c, *size)


# --------------------------------------------------------------------------------------------------
# Transformer blocks
# --------------------------------------------------------------------------------------------------


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kw: Any) -> None:
        # Some exports drop this deterministic buffer; fill it in so strict loading still succeeds.
        state_dict.setdefault(prefix + "relative_position_index", self.relative_position_index)
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B * nW, N, C) window tokens; mask: (nW, N, N) additive mask or None."""
        bw, n, c = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, heads).permute(2, 0, 1).to(q.dtype)  # (heads, N, N)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))
        else:
            # Fold windows into the head axis so one (nW * heads, N, N) mask broadcasts over the batch.
            nw = mask.shape[0]
            full = (bias.unsqueeze(0) + mask.to(q.dtype).unsqueeze(1)).reshape(1, nw * heads, n, n)
            q, k, v = (t.reshape(bw // nw, nw * heads, n, -1) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=full).reshape(bw, heads, n, -1)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinTransformerBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, each with a residual connection.

    ``input_resolution`` is the training patch size: the shifted-window mask for it is precomputed
    (and saved in checkpoints, as in the release); other sizes compute their mask on the fly.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int = 8,
        shift_size: int = 0,
        mlp_ratio: float = 2.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        if min(input_resolution) <= window_size:  # a single window covers the patch: nothing to shift
            shift_size, window_size = 0, min(input_resolution)
        self.window_size = window_size
        self.shift_size = shift_size

        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(*input_resolution, window_size, shift_size) if shift_size else None
        self.register_buffer("attn_mask", mask)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kw: Any) -> None:
        if self.attn_mask is not None:
            state_dict.setdefault(prefix + "attn_mask", self.attn_mask)
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, length, c = x.shape
        ws, shift = self.window_size, self.shift_size

        y = self.norm1(x).view(b, h, w, c)
        mask = None
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            if tuple(size) == tuple(self.input_resolution):
                mask = self.attn_mask
            else:
                mask = shifted_window_mask(h, w, ws, shift, device=x.device, dtype=x.dtype)
        y = window_merge(self.attn(window_partition(y, ws), mask), ws, h, w)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))

        x = x + self.drop_path(y.reshape(b, length, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicLayer(nn.Module):
    """``depth`` blocks alternating regular and half-window-shifted windows."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim,
                input_resolution,
                num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path[i],
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


def _residual_conv(dim: int, resi_connection: str) -> nn.Module:
    """The conv closing each residual group: one 3x3 conv, or a cheaper 3x3-1x1-3x3 bottleneck."""
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, padding=1)
    if resi_connection == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, padding=1),
        )
    raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")


class RSTB(nn.Module):
    """Residual Swin Transformer Block: a :class:`BasicLayer`, a conv, and a skip around both."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
        resi_connection: str = "1conv",
    ) -> None:
        super().__init__()
        self.residual_group = BasicLayer(
            dim, input_resolution, depth, num_heads, window_size, mlp_ratio, drop_path
        )
        self.conv = _residual_conv(dim, resi_connection)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _to_tokens(self.conv(_to_image(self.residual_group(x, size), size))) + x


class PatchEmbed(nn.Module):
    """Feature map (N, C, H, W) to tokens (N, H*W, C), optionally layer-normalised (patch size 1)."""

    def __init__(self, dim: int, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_to_tokens(x))


# --------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------


class _SwinIRTrunk(nn.Module):
    """What SwinIR and RAM's variant share: shallow conv, RSTB stack, final norm, conv, and head."""

    def __init__(
        self,
        *,
        img_size: int,
        in_chans: int,
        window_size: int,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        mlp_ratio: float,
        upscale: int,
        upsampler: str,
        resi_connection: str,
        patch_norm: bool,
        drop_path_rate: float,
        conv_first_kernel: int,
        upsamplers: tuple[str, ...],
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError("depths and num_heads must have the same length")
        if upsampler not in upsamplers:
            raise ValueError(f"upsampler must be one of {upsamplers}, got {upsampler!r}")
        if (upsampler == "") != (upscale == 1):
            raise ValueError(f"upscale {upscale} does not fit upsampler {upsampler!r}")
        if upsampler == "nearest+conv" and upscale not in (2, 4):
            raise ValueError("the 'nearest+conv' upsampler supports x2 and x4 only")
        self.window_size = window_size
        self.upscale = upscale
        self.upsampler = upsampler

        self.conv_first = nn.Conv2d(in_chans, embed_dim, conv_first_kernel, padding=conv_first_kernel // 2)

        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear decay rule
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.layers = nn.ModuleList(
            RSTB(
                embed_dim,
                (img_size, img_size),
                depth,
                heads,
                window_size,
                mlp_ratio,
                rates[start : start + depth],
                resi_connection,
            )
            for depth, heads, start in zip(depths, num_heads, starts, strict=True)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _residual_conv(embed_dim, resi_connection)

        nf = _UPSAMPLE_FEATURES
        if upsampler in ("pixelshuffle", "nearest+conv"):
            # LeakyReLU with PyTorch's default slope 0.01 here, 0.2 elsewhere, as in the release.
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, nf, 3, padding=1), nn.LeakyReLU(inplace=True)
            )
        if upsampler == "pixelshuffle":  # classical SR
            self.upsample = Upsample(upscale, nf)
            self.conv_last = nn.Conv2d(nf, in_chans, 3, padding=1)
        elif upsampler == "pixelshuffledirect":  # lightweight SR
            self.upsample = UpsampleOneStep(upscale, embed_dim, in_chans)
        elif upsampler == "nearest+conv":  # real-world SR
            self.conv_up1 = nn.Conv2d(nf, nf, 3, padding=1)
            if upscale == 4:
                self.conv_up2 = nn.Conv2d(nf, nf, 3, padding=1)
            self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
            self.conv_last = nn.Conv2d(nf, in_chans, 3, padding=1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        else:  # denoising, JPEG artefact removal: same-size output
            self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, padding=1)

        self.apply(init_weights)

    def pad_to_window(self, x: torch.Tensor) -> torch.Tensor:
        ws = self.window_size
        h, w = x.shape[-2:]
        return F.pad(x, (0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws), mode="reflect")

    def deep_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the RSTB stack on a shallow feature map; return (features, the embedded input).

        Both come back as (N, C, H, W) maps, before ``conv_after_body`` and the long skip.
        """
        size = (x.shape[-2], x.shape[-1])
        tokens = self.patch_embed(x)
        embedded = tokens
        for layer in self.layers:
            tokens = layer(tokens, size)
        return _to_image(self.norm(tokens), size), _to_image(embedded, size)

    def reconstruct(self, feat: torch.Tensor) -> torch.Tensor:
        """Map deep features to the output image residual / SR image (no mean, no image skip)."""
        if self.upsampler == "pixelshuffle":
            return self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        if self.upsampler == "pixelshuffledirect":
            return self.upsample(feat)
        if self.upsampler == "nearest+conv":
            feat = self.conv_before_upsample(feat)
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
            if self.upscale == 4:
                feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
            return self.conv_last(self.lrelu(self.conv_hr(feat)))
        return self.conv_last(feat)


def init_weights(m: nn.Module) -> None:
    """The official initialisation: truncated-normal linears, unit LayerNorms, default convs."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class SwinIR(_SwinIRTrunk):
    """The official SwinIR. Defaults: the colour denoising model (SwinIR-M, 11,504,163 parameters).

    Other released configurations: classical SR (``img_size=64, upscale=2/3/4, upsampler='pixelshuffle'``),
    lightweight SR (``embed_dim=60``, four layers, ``'pixelshuffledirect'``), real-world SR
    (``'nearest+conv'``), JPEG artefact removal (``window_size=7, img_size=126, img_range=255``).
    The input is [0, 1] RGB (or grey with ``in_chans=1``); the network subtracts the DIV2K mean and
    scales by ``img_range`` itself.
    """

    def __init__(
        self,
        img_size: int = 128,
        in_chans: int = 3,
        window_size: int = 8,
        embed_dim: int = 180,
        depths: Sequence[int] = _SIX,
        num_heads: Sequence[int] = _SIX,
        mlp_ratio: float = 2.0,
        upscale: int = 1,
        upsampler: str = "",
        resi_connection: str = "1conv",
        img_range: float = 1.0,
        patch_norm: bool = True,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__(
            img_size=img_size,
            in_chans=in_chans,
            window_size=window_size,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            upscale=upscale,
            upsampler=upsampler,
            resi_connection=resi_connection,
            patch_norm=patch_norm,
            drop_path_rate=drop_path_rate,
            conv_first_kernel=3,
            upsamplers=("", "pixelshuffle", "pixelshuffledirect", "nearest+conv"),
        )
        self.img_range = img_range
        mean = torch.tensor(_SWINIR_MEAN) if in_chans == 3 else torch.zeros(1)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = (self.pad_to_window(x) - self.mean) * self.img_range
        first = self.conv_first(x)
        feat, _ = self.deep_features(first)
        feat = self.conv_after_body(feat) + first
        out = self.reconstruct(feat)
        if not self.upsampler:
            out = out + x  # image-level residual of the restoration (same-size) models
        out = out / self.img_range + self.mean
        return out[..., : h * self.upscale, : w * self.upscale]


class RamSwinIR(_SwinIRTrunk):
    """SwinIR as modified by RAM (``DragonisCV/RAM``, ``ram/archs/swinir_arch.py``): 11,512,131 parameters.

    Differences from :class:`SwinIR`: a 1x1 first conv; no mean shift, no ``img_range`` and no
    image-level residual; the long skip adds the layer-normalised embedding of the shallow features
    (not the features themselves); and a learnable ``mask_token`` of the training patch size
    (1, 3, 64, 64) that can fill masked pixels during masked-image pre-training. RAM trains and tests
    it on ImageNet mean/std-normalised RGB, and its output is in that space too.
    """

    def __init__(
        self,
        img_size: int = 64,
        in_chans: int = 3,
        window_size: int = 8,
        embed_dim: int = 180,
        depths: Sequence[int] = _SIX,
        num_heads: Sequence[int] = _SIX,
        mlp_ratio: float = 2.0,
        upscale: int = 1,
        upsampler: str = "",
        resi_connection: str = "1conv",
        conv_first_kernel: int = 1,
        patch_norm: bool = True,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__(
            img_size=img_size,
            in_chans=in_chans,
            window_size=window_size,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            upscale=upscale,
            upsampler=upsampler,
            resi_connection=resi_connection,
            patch_norm=patch_norm,
            drop_path_rate=drop_path_rate,
            conv_first_kernel=conv_first_kernel,
            upsamplers=("", "pixelshuffle"),
        )
        self.mask_token = nn.Parameter(torch.zeros(1, in_chans, img_size, img_size))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, mask_token: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Restore ``x``; with ``mask`` ((N, H, W) or (N, 1, H, W), 1 = hidden) replace masked pixels first.

        Masked pixels take ``mask_token`` (anything broadcastable to ``x``) or, when it is None, the
        learned token, which only fits inputs of the training patch size. RAM's own pre-training passes
        an explicit all-zero token (its 'binary' mask type), i.e. masked pixels become the mean colour.
        """
        h, w = x.shape[-2:]
        if mask is not None:
            if mask.dim() == 3:
                mask = mask.unsqueeze(1)
            if mask_token is None:
                if self.mask_token.shape[-2:] != (h, w):
                    raise ValueError(
                        f"the learned mask token is {tuple(self.mask_token.shape[-2:])}, the input {(h, w)}: "
                        "pass mask_token explicitly"
                    )
                mask_token = self.mask_token
            mask = mask.to(x.dtype)
            x = x * (1 - mask) + mask_token.to(x.dtype) * mask
        first = self.conv_first(self.pad_to_window(x))
        feat, embedded = self.deep_features(first)
        out = self.reconstruct(self.conv_after_body(feat) + embedded)
        return out[..., : h * self.upscale, : w * self.upscale]


# --------------------------------------------------------------------------------------------------
# Recognising checkpoints
# --------------------------------------------------------------------------------------------------

_OPTIONAL_BUFFERS = (".relative_position_index", ".attn_mask")


def _trunk_config(sd: StateDict) -> dict[str, Any] | None:
    """Hyper-parameters shared by both variants, read off key names and shapes (None if not SwinIR)."""
    conv_first = sd.get("conv_first.weight")
    if conv_first is None or conv_first.dim() != 4 or "norm.weight" not in sd:
        return None
    layers = range(count_blocks(sd, "layers"))
    depths = tuple(count_blocks(sd, f"layers.{i}.residual_group.blocks") for i in layers)
    if not depths or min(depths) == 0:
        return None
    tables = [sd.get(f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table") for i in layers]
    fc1 = sd.get("layers.0.residual_group.blocks.0.mlp.fc1.weight")
    if fc1 is None or any(t is None or t.dim() != 2 for t in tables):
        return None
    side = math.isqrt(tables[0].shape[0])
    if side * side != tables[0].shape[0] or side % 2 == 0:
        return None
    window_size = (side + 1) // 2
    embed_dim = int(conv_first.shape[0])

    if "layers.0.conv.weight" in sd:
        resi_connection = "1conv"
    elif "layers.0.conv.0.weight" in sd:
        resi_connection = "3conv"
    else:
        return None

    if "conv_up1.weight" in sd:
        upsampler, upscale = "nearest+conv", 4 if "conv_up2.weight" in sd else 2
    elif "conv_before_upsample.0.weight" in sd:
        convs = [sd[k] for k in sd if re.fullmatch(r"upsample\.\d+\.weight", k)]
        if not convs:
            return None
        ratio = int(convs[0].shape[0]) // _UPSAMPLE_FEATURES
        upsampler, upscale = "pixelshuffle", 3 if ratio == 9 else 2 ** len(convs)
    elif "upsample.0.weight" in sd:
        out = int(sd["upsample.0.weight"].shape[0]) // int(conv_first.shape[1])
        upsampler, upscale = "pixelshuffledirect", math.isqrt(out)
    else:
        upsampler, upscale = "", 1

    return {
        "in_chans": int(conv_first.shape[1]),
        "window_size": window_size,
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": tuple(int(t.shape[1]) for t in tables),
        "mlp_ratio": int(fc1.shape[0]) / embed_dim,
        "upscale": upscale,
        "upsampler": upsampler,
        "resi_connection": resi_connection,
        "patch_norm": "patch_embed.norm.weight" in sd,
    }


def _img_size_from_mask(sd: StateDict) -> int | None:
    """Training patch size from any precomputed shifted-window mask: (nW, ws**2, ws**2)."""
    mask = next((v for k, v in sd.items() if k.endswith(".attn_mask")), None)
    if mask is None or mask.dim() != 3:
        return None
    return math.isqrt(int(mask.shape[0])) * math.isqrt(int(mask.shape[1]))


def _default_img_size(window_size: int, upscale: int) -> int:
    """The paper's training patch (128 restoration, 64 SR), rounded down to a window multiple."""
    base = 64 if upscale > 1 else 128
    return max(window_size, base // window_size * window_size)


def infer_swinir_config(state_dict: StateDict) -> dict[str, Any] | None:
    """:class:`SwinIR` kwargs reproducing ``state_dict``, or ``None`` if it is not an official SwinIR.

    ``img_range`` is not stored: the only released window-7 models (JPEG artefact removal) use 255,
    everything else 1, so it is set from the window size.
    """
    if "mask_token" in state_dict:
        return None
    cfg = _trunk_config(state_dict)
    if cfg is None or state_dict["conv_first.weight"].shape[-1] != 3:
        return None
    cfg["img_size"] = _img_size_from_mask(state_dict) or _default_img_size(cfg["window_size"], cfg["upscale"])
    cfg["img_range"] = 255.0 if cfg["window_size"] == 7 else 1.0
    return cfg if shapes_match(state_dict, SwinIR, cfg, _OPTIONAL_BUFFERS) else None


def infer_ram_swinir_config(state_dict: StateDict) -> dict[str, Any] | None:
    """:class:`RamSwinIR` kwargs reproducing ``state_dict``, or ``None`` if it is not RAM's SwinIR."""
    token = state_dict.get("mask_token")
    if token is None or token.dim() != 4 or token.shape[-1] != token.shape[-2]:
        return None
    cfg = _trunk_config(state_dict)
    if cfg is None or cfg["upsampler"] not in ("", "pixelshuffle"):
        return None
    cfg["img_size"] = int(token.shape[-1])
    cfg["conv_first_kernel"] = int(state_dict["conv_first.weight"].shape[-1])
    return cfg if shapes_match(state_dict, RamSwinIR, cfg, _OPTIONAL_BUFFERS) else None


register_architecture(
    Architecture(
        name="swinir",
        build=SwinIR,
        infer_config=infer_swinir_config,
        scale=lambda cfg: cfg.get("upscale", 1),
        size_multiple=lambda cfg: cfg.get("window_size", 8),
        normalization="none",
        precisions=("fp32", "bf16", "fp16"),
        description="SwinIR (Liang et al. 2021), official release: denoising, JPEG, classical/light/real SR",
    )
)

register_architecture(
    Architecture(
        name="ram_swinir",
        build=RamSwinIR,
        infer_config=infer_ram_swinir_config,
        scale=lambda cfg: cfg.get("upscale", 1),
        size_multiple=lambda cfg: cfg.get("window_size", 8),
        normalization="imagenet",
        precisions=("fp32", "bf16", "fp16"),
        description="RAM's SwinIR variant (Qin et al. 2024), DragonisCV/RAM release",
    )
)
