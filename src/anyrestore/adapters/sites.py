"""The transformer blocks of each supported backbone, as :class:`~anyrestore.adapters.base.Site` s.

An explicit registry maps backbone classes to a function listing their blocks; a model is matched with
``isinstance`` after unwrapping (DDP, ``torch.compile``, normalisation wrappers). Supported: EDT and IPT
(the AdaptIR paper's base models), SwinIR and RAM's SwinIR, Restormer, PromptIR and RAM's PromptIR.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from anyrestore.adapters.base import AdapterError, Backbone, ParamRef, Site
from anyrestore.models import edt, ipt, promptir, restormer, swinir


def _edt_sites(model: nn.Module) -> list[Site]:
    sites = []
    for name, block in model.named_modules():
        if isinstance(block, edt.CSwinTransformerBlock):
            d, mlp = block.dim, block.mlp
            sites.append(
                Site(
                    name=name,
                    block=block,
                    dim=d,
                    layout="nhwc",
                    ffn=(mlp, mlp),
                    attn_out=block.proj,
                    qkv=(ParamRef(block.qkv),),
                    attn_proj=(ParamRef(block.proj),),
                    ffn_proj=(ParamRef(mlp.fc1), ParamRef(mlp.fc2)),
                    ssf=(
                        ("norm1", block.norm1, d),
                        ("qkv", block.qkv, 3 * d),
                        ("proj", block.proj, d),
                        ("norm2", block.norm2, d),
                        ("mlp_fc1", mlp.fc1, mlp.fc1.out_features),
                        ("mlp_fc2", mlp.fc2, d),
                    ),
                    prompting="edt",
                )
            )
    return sites


def _swin_sites(model: nn.Module) -> list[Site]:
    sites = []
    for name, block in model.named_modules():
        if isinstance(block, swinir.SwinTransformerBlock):
            attn, mlp = block.attn, block.mlp
            d = attn.qkv.in_features
            sites.append(
                Site(
                    name=name,
                    block=block,
                    dim=d,
                    layout="nlc",
                    ffn=(mlp, mlp),
                    attn_out=attn,
                    qkv=(ParamRef(attn.qkv),),
                    attn_proj=(ParamRef(attn.proj),),
                    ffn_proj=(ParamRef(mlp.fc1), ParamRef(mlp.fc2)),
                    ssf=(
                        ("norm1", block.norm1, d),
                        ("attn_qkv", attn.qkv, 3 * d),
                        ("attn_proj", attn.proj, d),
                        ("norm2", block.norm2, d),
                        ("mlp_fc1", mlp.fc1, mlp.fc1.out_features),
                        ("mlp_fc2", mlp.fc2, d),
                    ),
                    size_arg=1,  # SwinTransformerBlock.forward(x, size)
                    prompting="swin",
                )
            )
    return sites


def _restormer_sites(model: nn.Module) -> list[Site]:
    sites = []
    for name, block in model.named_modules():
        if isinstance(block, restormer.TransformerBlock):
            attn, ffn = block.attn, block.ffn
            d = attn.qkv.in_channels
            sites.append(
                Site(
                    name=name,
                    block=block,
                    dim=d,
                    layout="nchw",
                    ffn=(ffn, ffn),
                    attn_out=attn,
                    qkv=(ParamRef(attn.qkv),),
                    attn_proj=(ParamRef(attn.project_out),),
                    ffn_proj=(ParamRef(ffn.project_in), ParamRef(ffn.project_out)),
                    ssf=(
                        ("norm1", block.norm1, d),
                        ("attn_qkv", attn.qkv, 3 * d),
                        ("attn_project_out", attn.project_out, d),
                        ("norm2", block.norm2, d),
                        ("ffn_project_in", ffn.project_in, ffn.project_in.out_channels),
                        ("ffn_project_out", ffn.project_out, d),
                    ),
                )
            )
    return sites


def _ipt_sites(model: nn.Module) -> list[Site]:
    body = model.body
    grid = (body.grid, body.grid)
    sites = []
    for prefix, layers in (
        ("body.encoder.layers", body.encoder.layers),
        ("body.decoder.layers", body.decoder.layers),
    ):
        for i, layer in enumerate(layers):
            d = layer.linear2.out_features
            decoder = isinstance(layer, ipt.TransformerDecoderLayer)
            attns = (layer.self_attn, layer.multihead_attn) if decoder else (layer.self_attn,)
            ffn_norm = layer.norm3 if decoder else layer.norm2
            ssf: list[tuple[str, nn.Module, int]] = [
                ("norm1", layer.norm1, d),
                ("self_attn", layer.self_attn, d),
            ]
            if decoder:
                ssf += [("norm2", layer.norm2, d), ("multihead_attn", layer.multihead_attn, d)]
            ssf += [
                ("norm3" if decoder else "norm2", ffn_norm, d),
                ("linear1", layer.linear1, layer.linear1.out_features),
                ("linear2", layer.linear2, d),
            ]
            sites.append(
                Site(
                    name=f"{prefix}.{i}",
                    block=layer,
                    dim=d,
                    layout="lnc",
                    ffn=(layer.linear1, layer.linear2),
                    attn_out=layer.self_attn,
                    qkv=tuple(ParamRef(a, "in_proj_weight") for a in attns),
                    attn_proj=tuple(ParamRef(a.out_proj) for a in attns),
                    ffn_proj=(ParamRef(layer.linear1), ParamRef(layer.linear2)),
                    ssf=tuple(ssf),
                    size=grid,
                    prompting="sequence",
                )
            )
    return sites


# Backbone class -> (kind, site finder, AdaptIR hidden reduction, AdaptIR channel-gate reduction).
# IPT and EDT use the paper's widths; SwinIR shares EDT-B's width (180); Restormer-style blocks are
# narrower (48 to 384 channels), so they keep a wider hidden projection.
BACKBONES: dict[type[nn.Module], tuple[str, Callable[[nn.Module], list[Site]], int, int]] = {
    ipt.IPT: ("ipt", _ipt_sites, 24, 8),
    edt.EDT: ("edt", _edt_sites, 14, 4),
    swinir.SwinIR: ("swinir", _swin_sites, 14, 4),
    swinir.RamSwinIR: ("swinir", _swin_sites, 14, 4),
    promptir.PromptIR: ("promptir", _restormer_sites, 8, 4),
    restormer.Restormer: ("restormer", _restormer_sites, 8, 4),
}


def find_backbone(model: nn.Module) -> Backbone:
    """The :class:`Backbone` of a bare model (see :func:`anyrestore.models.normalize.bare_model`)."""
    for cls, (kind, finder, reduction, gate_reduction) in BACKBONES.items():
        if isinstance(model, cls):
            sites = tuple(finder(model))
            if not sites:
                raise AdapterError(f"{type(model).__name__} has no transformer blocks to adapt")
            return Backbone(kind, sites, reduction, gate_reduction)
    known = ", ".join(sorted({kind for kind, *_ in BACKBONES.values()}))
    raise AdapterError(f"adapters do not support {type(model).__name__} (supported backbones: {known})")
