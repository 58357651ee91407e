"""IPT, the Image Processing Transformer (Chen et al., "Pre-Trained Image Processing Transformer", CVPR 2021).

One convolutional head and tail per task (SR x2 / x3 / x4, denoising, deraining) around a shared
transformer body that works on a fixed 48 x 48 feature patch: the patch is cut into 3 x 3 pieces (256
tokens of width 576), passed through 12 encoder and 12 decoder layers (the decoder's queries carry a
learned per-task embedding) and folded back. Larger images are processed as overlapping 48 x 48 tiles.

Module names, registration order and shapes follow the official release (``huawei-noah/Pretrained-IPT``,
``model/ipt.py``; attention is ``torch.nn.MultiheadAttention`` without in-projection bias), so the released
``.pt`` state_dicts load with ``strict=True``. The defaults build the six-task pre-trained model
``IPT_pretrain.pt`` that AdaptIR adapts (heads/tails for scales 2, 3, 4, 1, 1, 1, six query embeddings);
the fine-tuned releases have one task (``scales=(2,)``, ``num_queries=1``, ...). Task indices follow
AdaptIR's mapping of the pre-trained model: 0-2 SR x2/x3/x4, 3 deraining, 4 denoising sigma 30,
5 denoising sigma 50.

Not verifiable from the official code alone: PyTorch 1.6-1.8 stored an ``out_proj.bias`` in every
``MultiheadAttention`` even with ``bias=False`` (the official requirement is PyTorch 1.4, which did not);
both layouts are recognised (``attn_out_bias``). The official code's experimental switches (``no_mlp``,
``pos_every``, ``no_pos``, ``no_norm``) are not reproduced: no release uses them. Tiled inference averages
overlapping tiles' interiors (stride and margin a quarter tile, like the official ``forward_chop``) but is a
simpler scheme than its border bookkeeping, so image borders can differ slightly from the official output.
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
from anyrestore.models.layers import Upsample
from anyrestore.models.registry import Architecture, StateDict, register_architecture

_IPT_MEAN = (0.4488, 0.4371, 0.4040)
_PRETRAINED_SCALES = (2, 3, 4, 1, 1, 1)


def _conv(cin: int, cout: int, kernel: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)


# --------------------------------------------------------------------------------------------------
# Convolutional heads and tails
# --------------------------------------------------------------------------------------------------


class MeanShift(nn.Conv2d):
    """Fixed 1x1 conv adding (``sign=1``) or subtracting (``sign=-1``) ``rgb_range`` times the RGB mean.

    A conv, not a buffer, because the release stores its weight and bias.
    """

    def __init__(self, rgb_range: float, sign: int = -1) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(_IPT_MEAN))
        self.requires_grad_(False)


class ResBlock(nn.Module):
    """conv - ReLU - conv with an identity skip (EDSR style, no batch norm)."""

    def __init__(self, n_feats: int, kernel_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(n_feats, n_feats, kernel_size), nn.ReLU(True), _conv(n_feats, n_feats, kernel_size)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


# --------------------------------------------------------------------------------------------------
# Transformer body
# --------------------------------------------------------------------------------------------------


def _with_pos(tensor: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    """``tensor + pos`` over the sequence axis (0); extra leading tokens (e.g. prompts) get no embedding."""
    if pos is None:
        return tensor
    extra = tensor.shape[0] - pos.shape[0]
    if extra > 0:
        pos = F.pad(pos, (0, 0, 0, 0, extra, 0))
    return tensor + pos


def _attention(dim: int, heads: int, dropout: float, out_bias: bool) -> nn.MultiheadAttention:
    attn = nn.MultiheadAttention(dim, heads, dropout=dropout, bias=False)
    if out_bias:  # the layout PyTorch 1.6-1.8 saved for bias=False
        attn.out_proj = nn.Linear(dim, dim, bias=True)
    return attn


class TransformerEncoderLayer(nn.Module):
    """Pre-norm self-attention and ReLU FFN on (L, N, C) sequences."""

    def __init__(
        self, dim: int, heads: int, hidden: int, dropout: float = 0.0, attn_out_bias: bool = False
    ) -> None:
        super().__init__()
        self.self_attn = _attention(dim, heads, dropout, attn_out_bias)
        self.linear1 = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        nn.init.kaiming_uniform_(self.self_attn.in_proj_weight, a=math.sqrt(5))

    def forward(self, src: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        y = self.norm1(src)
        q = k = _with_pos(y, pos)
        src = src + self.dropout1(self.self_attn(q, k, y, need_weights=False)[0])
        y = self.norm2(src)
        return src + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(y)))))


class TransformerDecoderLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to the encoder output, and ReLU FFN, on (L, N, C)."""

    def __init__(
        self, dim: int, heads: int, hidden: int, dropout: float = 0.0, attn_out_bias: bool = False
    ) -> None:
        super().__init__()
        self.self_attn = _attention(dim, heads, dropout, attn_out_bias)
        self.multihead_attn = _attention(dim, heads, dropout, attn_out_bias)
        self.linear1 = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        y = self.norm1(tgt)
        q = k = _with_pos(y, query_pos)
        tgt = tgt + self.dropout1(self.self_attn(q, k, y, need_weights=False)[0])
        y = self.norm2(tgt)
        y = self.multihead_attn(_with_pos(y, query_pos), _with_pos(memory, pos), memory, need_weights=False)[
            0
        ]
        tgt = tgt + self.dropout2(y)
        y = self.norm3(tgt)
        return tgt + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(y)))))


class TransformerEncoder(nn.Module):
    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, src: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos=pos)
        return src


class TransformerDecoder(nn.Module):
    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for layer in self.layers:
            tgt = layer(tgt, memory, pos=pos, query_pos=query_pos)
        return tgt


class LearnedPositionalEncoding(nn.Module):
    """One learned embedding per token position; ``position_ids`` is a saved (deterministic) buffer."""

    def __init__(self, seq_length: int, dim: int) -> None:
        super().__init__()
        self.pe = nn.Embedding(seq_length, dim)
        self.seq_length = seq_length
        self.register_buffer("position_ids", torch.arange(seq_length).expand((1, -1)))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kw: Any) -> None:
        state_dict.setdefault(prefix + "position_ids", self.position_ids)
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    def forward(self) -> torch.Tensor:
        return self.pe(self.position_ids[:, : self.seq_length])  # (1, L, C)


class VisionTransformer(nn.Module):
    """The body: a (N, C, P, P) feature patch in, the same shape out, conditioned on a task query."""

    def __init__(
        self,
        img_dim: int,
        patch_dim: int,
        num_channels: int,
        embedding_dim: int,
        num_heads: int,
        num_layers: int,
        hidden_dim: int,
        num_queries: int,
        dropout_rate: float = 0.0,
        attn_out_bias: bool = False,
    ) -> None:
        super().__init__()
        if embedding_dim % num_heads:
            raise ValueError(f"embedding dim {embedding_dim} is not divisible by num_heads {num_heads}")
        if img_dim % patch_dim:
            raise ValueError(f"patch size {img_dim} is not a multiple of patch_dim {patch_dim}")
        self.img_dim = img_dim
        self.patch_dim = patch_dim
        self.embedding_dim = embedding_dim
        self.grid = img_dim // patch_dim
        self.seq_length = self.grid**2
        self.flatten_dim = patch_dim * patch_dim * num_channels
        if self.flatten_dim != embedding_dim:
            raise ValueError(
                f"n_feats * patch_dim**2 = {self.flatten_dim} must equal embedding dim {embedding_dim}"
            )

        self.linear_encoding = nn.Linear(self.flatten_dim, embedding_dim)
        self.mlp_head = nn.Sequential(
            nn.Linear(embedding_dim, hidden_dim),
            nn.Dropout(dropout_rate),
            nn.ReLU(),
            nn.Linear(hidden_dim, self.flatten_dim),
            nn.Dropout(dropout_rate),
        )
        self.query_embed = nn.Embedding(num_queries, embedding_dim * self.seq_length)
        layer_args = (embedding_dim, num_heads, hidden_dim, dropout_rate, attn_out_bias)
        self.encoder = TransformerEncoder([TransformerEncoderLayer(*layer_args) for _ in range(num_layers)])
        self.decoder = TransformerDecoder([TransformerDecoderLayer(*layer_args) for _ in range(num_layers)])
        self.position_encoding = LearnedPositionalEncoding(self.seq_length, embedding_dim)
        self.dropout_layer1 = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, query_idx: int) -> torch.Tensor:
        n = x.shape[0]
        if tuple(x.shape[-2:]) != (self.img_dim, self.img_dim):
            raise ValueError(
                f"the IPT body takes {self.img_dim}x{self.img_dim} patches, got {tuple(x.shape[-2:])}"
            )
        x = F.unfold(x, self.patch_dim, stride=self.patch_dim).permute(2, 0, 1)  # (L, N, flat)
        x = self.dropout_layer1(self.linear_encoding(x)) + x
        query = self.query_embed.weight[query_idx].view(-1, 1, self.embedding_dim).expand(-1, n, -1)
        pos = self.position_encoding().transpose(0, 1)  # (L, 1, C)
        x = self.encoder(x + pos)
        x = self.decoder(x, x, query_pos=query)
        x = self.mlp_head(x) + x
        return F.fold(x.permute(1, 2, 0), self.img_dim, self.patch_dim, stride=self.patch_dim)


# --------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------


class IPT(nn.Module):
    """IPT with one head/tail per entry of ``scales``. Defaults: the six-task pre-trained model.

    ``task`` is the index :meth:`forward` runs by default (head, tail and query embedding);
    ``forward(x, task=...)`` overrides it. Input and output are [0, 1] RGB (the network works on
    ``rgb_range``-scaled values internally, as released). A ``patch_size`` square input goes straight
    through; any other size is processed as overlapping tiles, ``tile_batch`` at a time.
    """

    def __init__(
        self,
        scales: Sequence[int] = _PRETRAINED_SCALES,
        n_feats: int = 64,
        n_colors: int = 3,
        patch_size: int = 48,
        patch_dim: int = 3,
        num_heads: int = 12,
        num_layers: int = 12,
        num_queries: int | None = None,
        rgb_range: float = 255.0,
        dropout_rate: float = 0.0,
        attn_out_bias: bool = False,
        task: int = 0,
        tile_batch: int = 64,
    ) -> None:
        super().__init__()
        self.scales = [int(s) for s in scales]
        if not self.scales:
            raise ValueError("IPT needs at least one task (scales)")
        if n_colors != 3:
            raise ValueError("IPT's mean shift is defined for RGB (n_colors=3)")
        num_queries = len(self.scales) if num_queries is None else num_queries
        if not 0 <= task < min(len(self.scales), num_queries):
            raise ValueError(
                f"task {task} out of range for {len(self.scales)} heads and {num_queries} queries"
            )
        self.task = task
        self.patch_size = patch_size
        self.rgb_range = rgb_range
        self.tile_batch = tile_batch

        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.ModuleList(
            nn.Sequential(_conv(n_colors, n_feats, 3), ResBlock(n_feats, 5), ResBlock(n_feats, 5))
            for _ in self.scales
        )
        dim = n_feats * patch_dim * patch_dim
        self.body = VisionTransformer(
            img_dim=patch_size,
            patch_dim=patch_dim,
            num_channels=n_feats,
            embedding_dim=dim,
            num_heads=num_heads,
            num_layers=num_layers,
            hidden_dim=dim * 4,
            num_queries=num_queries,
            dropout_rate=dropout_rate,
            attn_out_bias=attn_out_bias,
        )
        self.tail = nn.ModuleList(
            nn.Sequential(Upsample(s, n_feats), _conv(n_feats, n_colors, 3)) for s in self.scales
        )

    def forward_patch(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """The released forward: ``rgb_range``-scaled ``patch_size`` x ``patch_size`` input and output."""
        x = self.head[task](self.sub_mean(x))
        x = self.body(x, task) + x
        return self.add_mean(self.tail[task](x))

    def forward(self, x: torch.Tensor, task: int | None = None) -> torch.Tensor:
        task = self.task if task is None else task
        if not 0 <= task < len(self.scales):
            raise ValueError(f"task {task} out of range (this model has {len(self.scales)} tasks)")
        x = x * self.rgb_range
        if tuple(x.shape[-2:]) == (self.patch_size, self.patch_size):
            out = self.forward_patch(x, task)
        else:
            out = self._forward_tiled(x, task)
        return out / self.rgb_range

    def _forward_tiled(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Average overlapping tiles' interiors (margin and stride a quarter tile; no margin at borders)."""
        p, scale = self.patch_size, self.scales[task]
        h, w = x.shape[-2:]
        if h < p or w < p:
            mode = "reflect" if h > (p - h) and w > (p - w) else "replicate"
            x = F.pad(x, (0, max(p - w, 0), 0, max(p - h, 0)), mode=mode)
        hp, wp = x.shape[-2:]
        step = margin = max(p // 4, 1)

        def starts(n: int) -> list[int]:
            pos = list(range(0, n - p + 1, step))
            return pos if pos[-1] == n - p else [*pos, n - p]

        def weight(start: int, n: int) -> torch.Tensor:
            wgt = torch.ones(p * scale, device=x.device, dtype=x.dtype)
            if start > 0:
                wgt[: margin * scale] = 0
            if start + p < n:
                wgt[(p - margin) * scale :] = 0
            return wgt

        tiles = [(i, j) for i in starts(hp) for j in starts(wp)]
        out = x.new_zeros(x.shape[0], x.shape[1], hp * scale, wp * scale)
        norm = x.new_zeros(1, 1, hp * scale, wp * scale)
        for first in range(0, len(tiles), self.tile_batch):
            chunk = tiles[first : first + self.tile_batch]
            batch = torch.cat([x[..., i : i + p, j : j + p] for i, j in chunk])
            result = self.forward_patch(batch, task).split(x.shape[0])
            for (i, j), y in zip(chunk, result, strict=True):
                wgt = weight(i, hp)[:, None] * weight(j, wp)[None, :]
                rows, cols = slice(i * scale, (i + p) * scale), slice(j * scale, (j + p) * scale)
                out[..., rows, cols] += y * wgt
                norm[..., rows, cols] += wgt
        return (out / norm)[..., : h * scale, : w * scale]


# --------------------------------------------------------------------------------------------------
# Recognising checkpoints
# --------------------------------------------------------------------------------------------------

_UPSAMPLE_CONV = re.compile(r"^tail\.(\d+)\.0\.(\d+)\.weight$")


def infer_ipt_config(state_dict: StateDict) -> dict[str, Any] | None:
    """:class:`IPT` kwargs reproducing ``state_dict``, or ``None`` if it is not an IPT release.

    The head count of the attention (12) and ``rgb_range`` (255) are not stored; they are set as released.
    """
    required = (
        "sub_mean.weight",
        "head.0.0.weight",
        "body.linear_encoding.weight",
        "body.query_embed.weight",
        "body.position_encoding.pe.weight",
        "body.encoder.layers.0.self_attn.in_proj_weight",
        "body.decoder.layers.0.multihead_attn.in_proj_weight",
    )
    if not all(k in state_dict for k in required):
        return None
    conv0 = state_dict["head.0.0.weight"]
    encoding = state_dict["body.linear_encoding.weight"]
    if conv0.dim() != 4 or encoding.dim() != 2:
        return None
    n_feats, n_colors = int(conv0.shape[0]), int(conv0.shape[1])
    dim, flat = int(encoding.shape[0]), int(encoding.shape[1])
    patch_dim = math.isqrt(flat // max(n_feats, 1))
    grid = math.isqrt(int(state_dict["body.position_encoding.pe.weight"].shape[0]))
    num_tasks = count_blocks(state_dict, "head")

    convs: dict[int, list[int]] = {}
    for key, value in state_dict.items():
        if m := _UPSAMPLE_CONV.match(key):
            convs.setdefault(int(m.group(1)), []).append(int(value.shape[0]))
    scales = []
    for t in range(num_tasks):
        widths = convs.get(t, [])
        scales.append(3 if widths == [9 * n_feats] else 2 ** len(widths))

    cfg: dict[str, Any] = {
        "scales": tuple(scales),
        "n_feats": n_feats,
        "n_colors": n_colors,
        "patch_size": grid * patch_dim,
        "patch_dim": patch_dim,
        "num_heads": 12,
        "num_layers": count_blocks(state_dict, "body.encoder.layers"),
        "num_queries": int(state_dict["body.query_embed.weight"].shape[0]),
        "attn_out_bias": "body.encoder.layers.0.self_attn.out_proj.bias" in state_dict,
    }
    if dim % 12:
        return None
    return cfg if shapes_match(state_dict, IPT, cfg, optional_suffixes=(".position_ids",)) else None


def _ipt_scale(cfg: dict[str, Any]) -> int:
    scales = cfg.get("scales", _PRETRAINED_SCALES)
    return int(scales[cfg.get("task", 0)])


register_architecture(
    Architecture(
        name="ipt",
        build=IPT,
        infer_config=infer_ipt_config,
        scale=_ipt_scale,
        # The network tiles any input size into its fixed patches itself.
        size_multiple=lambda cfg: 1,
        normalization="none",
        precisions=("fp32", "bf16", "fp16"),
        description="IPT (Chen et al. 2021), official release: multi-head / multi-tail transformer",
    )
)
