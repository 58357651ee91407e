"""One API for every adapter method: ``inject(model, method, **cfg)``, ``remove``, ``merge_lora``.

:func:`inject` finds the backbone's transformer blocks (:mod:`anyrestore.adapters.sites`), attaches the
method's modules where the method says, freezes every other parameter, and records what it did on the
model (an :class:`Injection`), so that :func:`remove` can undo it exactly and the adapter can be saved
alone (:mod:`anyrestore.adapters.io`). The mechanisms, chosen to leave the backbone's own modules and
state_dict keys untouched wherever possible:

- parallel branches (AdaptIR, AdaptFormer, MoE) are child modules of the block wired in with forward
  hooks: the branch reads the FFN input and its output is added to the FFN output, i.e.
  ``x + FFN(LN2(x)) + branch(LN2(x))``;
- Adapter's two bottlenecks per block are child modules whose hooks turn the attention and FFN outputs
  ``y`` into ``y + adapter(y)``;
- SSF is a child module per block whose scales and shifts act through forward hooks on the block's norms
  and projections;
- LoRA and FacT re-parametrise weights (``torch.nn.utils.parametrize``), so they also reach projections
  that are not called as modules (``nn.MultiheadAttention``'s fused input projection);
- VPT prepends prompts with hooks (IPT) or replaces the attention by a prompted wrapper (SwinIR, EDT).

Hooks are partials over the model's own modules (no closures), so a deep copy of an adapted model (an
EMA copy) drives its own copy of the adapter.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from anyrestore.adapters.adaptir import AdaptIR
from anyrestore.adapters.base import AdapterError, Backbone, ParamRef, Site, SpatialSize, from_map, to_map
from anyrestore.adapters.bottleneck import AdaptFormer, Bottleneck
from anyrestore.adapters.fact import FacT, FacTFactors
from anyrestore.adapters.lora import LoRA
from anyrestore.adapters.moe import MoE
from anyrestore.adapters.sites import find_backbone
from anyrestore.adapters.ssf import SSF
from anyrestore.adapters.vpt import PromptedStripeAttention, PromptedWindowAttention, Prompts
from anyrestore.models.normalize import bare_model
from anyrestore.models.registry import ARCHITECTURES

RECORD_ATTR = "_anyrestore_adapter"

# Each method's options and their defaults (the AdaptIR paper's IPT budgets for the baselines; ``None``
# means "the paper's value for this backbone", resolved at injection and recorded).
METHODS: dict[str, dict[str, Any]] = {
    "adaptir": {"reduction": None, "rank": None, "gate_reduction": None},
    "lora": {"rank": 12, "alpha": None, "targets": ("q", "v")},
    "adapter": {"hidden": 12},
    "adaptformer": {"hidden": 24, "scale": 0.1},
    "ssf": {},
    "vpt": {"num_prompts": 64},
    "fact": {"rank": 24, "scale": 1.0},
    "moe": {"num_experts": 3, "hidden": 8},
}


@dataclass
class Injection:
    """What :func:`inject` did to a model: enough to describe, save, undo or merge the adapter.

    ``modules`` maps qualified names (in the bare model) to the adapter's own modules; their state is the
    adapter's state. The other lists are the undo log.
    """

    method: str
    config: dict[str, Any]
    backbone: str
    base: dict[str, Any]
    modules: dict[str, nn.Module] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)
    children: list[tuple[nn.Module, str]] = field(default_factory=list)
    parametrized: list[tuple[ParamRef, tuple[str, ...]]] = field(default_factory=list)
    replaced: list[tuple[nn.Module, str, nn.Module]] = field(default_factory=list)
    requires_grad: dict[str, bool] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The ``ModelDescriptor.adapters`` entry of this adapter."""
        return {"method": self.method, "config": json.loads(json.dumps(self.config))}


# ---------------------------------------------------------------------------------------------- hooks
# Module-level functions, bound with functools.partial to the model's own modules.


def _token_map(x: torch.Tensor, site_layout: str, size: tuple[int, int] | SpatialSize | None) -> torch.Tensor:
    return to_map(x, site_layout, size.value if isinstance(size, SpatialSize) else size)


def _run_branch(branch: nn.Module, layout: str, size: Any, spatial: bool, x: torch.Tensor) -> torch.Tensor:
    if spatial:
        return from_map(branch(_token_map(x, layout, size)), layout)
    return branch(x, channel_axis=1 if layout == "nchw" else -1)


def _parallel_hook(branch: nn.Module, layout: str, size: Any, spatial: bool, module, args, output):
    """FFN forward hook: FFN(y) + branch(y), with y the FFN's input."""
    return output + _run_branch(branch, layout, size, spatial, args[0])


def _stash_hook(branch: nn.Module, layout: str, size: Any, spatial: bool, pending: dict, module, args):
    """Pre-hook on the FFN's first layer (FFNs that are not one module): compute the branch on its input."""
    pending["out"] = _run_branch(branch, layout, size, spatial, args[0])


def _add_stashed_hook(pending: dict, module, args, output):
    """Forward hook on the FFN's last layer: add the stashed branch output."""
    if "out" not in pending:
        raise AdapterError("the adapter's FFN input was not seen before its output")
    return output + pending.pop("out")


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output: Any, value: torch.Tensor) -> Any:
    return (value, *output[1:]) if isinstance(output, tuple) else value


def _serial_hook(adapter: nn.Module, channel_axis: int, module, args, output):
    """Sublayer forward hook: y + adapter(y) (for tuple outputs, on the first element)."""
    y = _first(output)
    return _replace_first(output, y + adapter(y, channel_axis=channel_axis))


def _ssf_hook(ssf: SSF, channel_axis: int, module, args, output):
    return _replace_first(output, ssf(_first(output), channel_axis=channel_axis))


def _size_hook(holder: SpatialSize, index: int, module, args):
    holder.value = tuple(args[index])


def _prepend_prompts_hook(prompts: Prompts, module, args):
    x = args[0]  # (L, N, C)
    p = prompts.prompts.to(x.dtype)[:, None, :].expand(-1, x.shape[1], -1)
    return (torch.cat([p, x], dim=0), *args[1:])


def _drop_prompts_hook(prompts: Prompts, module, args, output):
    return output[prompts.prompts.shape[0] :]


# ------------------------------------------------------------------------------------------ injection


class _Builder:
    """Applies one method to a model while logging every change in an :class:`Injection`."""

    def __init__(self, model: nn.Module, record: Injection) -> None:
        self.model = model
        self.record = record
        self.names = {id(m): n for n, m in model.named_modules()}
        ref = next(model.parameters(), None)
        self.device = ref.device if ref is not None else torch.device("cpu")
        self.dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32

    def _place(self, module: nn.Module) -> nn.Module:
        """On the model's device, in its dtype and mode (AdaptIR's BatchNorm must not train in eval)."""
        return module.to(device=self.device, dtype=self.dtype).train(self.model.training)

    def attach(self, parent: nn.Module, name: str, module: nn.Module) -> nn.Module:
        if hasattr(parent, name):
            raise AdapterError(f"{type(parent).__name__} already has an attribute {name!r}")
        parent.add_module(name, self._place(module))
        self.record.children.append((parent, name))
        prefix = self.names[id(parent)]
        self.record.modules[f"{prefix}.{name}" if prefix else name] = module
        return module

    def hook(self, module: nn.Module, fn: Callable, pre: bool = False) -> None:
        handle = module.register_forward_pre_hook(fn) if pre else module.register_forward_hook(fn)
        self.record.handles.append(handle)

    def parametrize(self, ref: ParamRef, parametrization: nn.Module) -> None:
        order = tuple(ref.module._parameters)  # restored on removal, so state_dict keys keep their order
        parametrize.register_parametrization(ref.module, ref.name, self._place(parametrization))
        self.record.parametrized.append((ref, order))
        prefix = self.names[id(ref.module)]
        self.record.modules[f"{prefix}.parametrizations.{ref.name}.0"] = parametrization

    def replace(self, parent: nn.Module, name: str, new: nn.Module) -> None:
        old = getattr(parent, name)
        setattr(parent, name, new.train(self.model.training))
        self.record.replaced.append((parent, name, old))

    def parallel(self, site: Site, name: str, branch: nn.Module, spatial: bool) -> None:
        """Wire ``branch`` parallel to the site's FFN, reading the FFN input."""
        self.attach(site.block, name, branch)
        size: Any = site.size
        if spatial and site.size_arg is not None:
            size = SpatialSize()
            self.hook(site.block, functools.partial(_size_hook, size, site.size_arg), pre=True)
        first, last = site.ffn
        if first is last:
            self.hook(first, functools.partial(_parallel_hook, branch, site.layout, size, spatial))
        else:
            pending: dict[str, torch.Tensor] = {}
            self.hook(
                first, functools.partial(_stash_hook, branch, site.layout, size, spatial, pending), pre=True
            )
            self.hook(last, functools.partial(_add_stashed_hook, pending))


def _inject_adaptir(b: _Builder, backbone: Backbone, cfg: dict[str, Any]) -> None:
    reduction = cfg["reduction"] = cfg["reduction"] or backbone.adaptir_reduction
    gate_reduction = cfg["gate_reduction"] = cfg["gate_reduction"] or backbone.adaptir_gate_reduction
    for site in backbone.sites:
        hidden = site.dim // reduction
        if hidden < 2:
            raise AdapterError(
                f"adaptir: width {site.dim} // reduction {reduction} < 2; pass a smaller reduction"
            )
        rank = cfg["rank"] or max(1, hidden // 2)
        branch = AdaptIR(site.dim, hidden, rank, max(1, hidden // gate_reduction))
        b.parallel(site, "adaptir", branch, spatial=True)


def _inject_adaptformer(b: _Builder, backbone: Backbone, cfg: dict[str, Any]) -> None:
    for site in backbone.sites:
        b.parallel(site, "adaptformer", AdaptFormer(site.dim, cfg["hidden"], cfg["scale"]), spatial=False)


def _inject_moe(b: _Builder, backbone: Backbone, cfg: dict[str, Any]) -> None:
    for site in backbone.sites:
        b.parallel(site, "moe", MoE(site.dim, cfg["hidden"], cfg["num_experts"]), spatial=False)


def _inject_adapter(b: _Builder, backbone: Backbone, cfg: dict[str, Any]) -> None:
    for site in backbone.sites:
        for name, module in (("adapter_attn", site.attn_out), ("adapter_ffn", site.ffn[1])):
            adapter = b.attach(site.block, name, Bottleneck(site.dim, cfg["hidden"]))
            b.hook(module, functools.partial(_serial_hook, adapter, site.channel_axis))


def _inject_ssf(b: _Builder, backbone: Backbone, cfg: dict[str, Any]) -> None:
    for site in backbone.sites:
        modules = b.attach(site.block, "ssf", nn.ModuleDict({label: SSF(ch) for label, _, ch in site.ssf}))
        for label, target, _ in site.ssf:
            b.hook(target, functools.partial(_ssf_hook, modules[label], site.channel_axis))


def _inject_lora(b: _Builder, backbone: Backbone, cfg: dict[str, Any]) -> None:
    cfg["targets"] = tuple(cfg["targets"])
    alpha = cfg["alpha"] = float(cfg["alpha"] if cfg["alpha"] is not None else cfg["rank"])
    for site in backbone.sites:
        for ref in site.qkv:
            b.parametrize(ref, LoRA(ref.shape, cfg["rank"], alpha, cfg["targets"]))


def _inject_fact(b: _Builder, backbone: Backbone, cfg: dict[str, Any]) -> None:
    widths = sorted({site.dim for site in backbone.sites})
    factors = nn.ModuleDict({f"d{d}": FacTFactors(d, cfg["rank"]) for d in widths})
    b.attach(b.model, "fact_factors", factors)
    for site in backbone.sites:
        shared = factors[f"d{site.dim}"]
        for ref in (*site.qkv, *site.attn_proj, *site.ffn_proj):
            out_features, in_features = ref.shape[0], ref.shape[1:].numel()
            if out_features % site.dim == 0 and in_features % site.dim == 0:
                b.parametrize(ref, FacT(shared, ref.shape, cfg["scale"]))


def _inject_vpt(b: _Builder, backbone: Backbone, cfg: dict[str, Any]) -> None:
    for site in backbone.sites:
        if site.prompting is None:
            raise AdapterError(f"vpt needs token attention; {backbone.kind} attends across channels")
        prompts = b.attach(site.block, "vpt", Prompts(cfg["num_prompts"], site.dim))
        if site.prompting == "sequence":
            b.hook(site.block, functools.partial(_prepend_prompts_hook, prompts), pre=True)
            b.hook(site.block, functools.partial(_drop_prompts_hook, prompts))
        elif site.prompting == "swin":
            b.replace(site.block, "attn", PromptedWindowAttention(site.block.attn, prompts))
        else:
            for i in range(2):
                b.replace(
                    site.block.attns, str(i), PromptedStripeAttention(site.block.attns[i], site.block, i)
                )


_INJECTORS: dict[str, Callable[[_Builder, Backbone, dict[str, Any]], None]] = {
    "adaptir": _inject_adaptir,
    "lora": _inject_lora,
    "adapter": _inject_adapter,
    "adaptformer": _inject_adaptformer,
    "ssf": _inject_ssf,
    "vpt": _inject_vpt,
    "fact": _inject_fact,
    "moe": _inject_moe,
}


# ------------------------------------------------------------------------------------------ identity


def shape_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """A short hash of the keys and shapes of a state_dict (not its values)."""
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state_dict.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def base_identity(model: nn.Module) -> dict[str, Any]:
    """Architecture, config (as recognised from keys and shapes) and shape fingerprint of a bare model."""
    state = model.state_dict()
    architecture, config = type(model).__name__, None
    for name, arch in ARCHITECTURES.items():
        found = arch.infer_config(state)
        if found is not None:
            architecture, config = name, found
            break
    return {
        "architecture": architecture,
        "config": json.loads(json.dumps(config)) if config is not None else None,
        "fingerprint": shape_fingerprint(state),
    }


# ------------------------------------------------------------------------------------------ public API


def injection(model: nn.Module) -> Injection | None:
    """The :class:`Injection` a model carries, or ``None``."""
    return getattr(bare_model(model), RECORD_ATTR, None)


def resolve_config(method: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` checked against the method's options and completed with its defaults."""
    if method not in METHODS:
        raise AdapterError(f"unknown adapter method {method!r} (known: {', '.join(METHODS)})")
    unknown = set(cfg) - set(METHODS[method])
    if unknown:
        options = ", ".join(METHODS[method]) or "none"
        raise AdapterError(f"{method}: unknown option(s) {', '.join(sorted(unknown))} (options: {options})")
    return {**copy.deepcopy(METHODS[method]), **cfg}


def inject(model: nn.Module, method: str, **cfg: Any) -> Injection:
    """Attach ``method``'s adapter to every transformer block of ``model`` and freeze everything else.

    Methods: ``adaptir``, ``lora``, ``adapter``, ``adaptformer``, ``ssf``, ``vpt``, ``fact``, ``moe``
    (options and defaults in :data:`METHODS`). The model is changed in place; the returned record (also
    kept on the model) holds the resolved config. One adapter at a time: :func:`remove` the previous one
    first.
    """
    bare = bare_model(model)
    config = resolve_config(method, cfg)
    if getattr(bare, RECORD_ATTR, None) is not None:
        raise AdapterError(
            f"the model already carries a {getattr(bare, RECORD_ATTR).method!r} adapter; remove it first"
        )
    backbone = find_backbone(bare)
    record = Injection(method, config, backbone.kind, base_identity(bare))
    record.requires_grad = {n: p.requires_grad for n, p in bare.named_parameters()}
    bare.requires_grad_(False)
    builder = _Builder(bare, record)
    try:
        _INJECTORS[method](builder, backbone, config)
    except Exception:
        _undo(bare, record)
        raise
    for module in record.modules.values():
        module.requires_grad_(True)
    setattr(bare, RECORD_ATTR, record)
    return record


def _undo(bare: nn.Module, record: Injection, merge: bool = False) -> None:
    for handle in reversed(record.handles):
        handle.remove()
    for ref, order in reversed(record.parametrized):
        if parametrize.is_parametrized(ref.module, ref.name):
            parametrize.remove_parametrizations(ref.module, ref.name, leave_parametrized=merge)
            params = ref.module._parameters
            for name in order:
                if name in params:
                    params[name] = params.pop(name)
    for parent, name, old in reversed(record.replaced):
        setattr(parent, name, old)
    for parent, name in reversed(record.children):
        delattr(parent, name)
    for name, param in bare.named_parameters():
        param.requires_grad_(record.requires_grad.get(name, param.requires_grad))
    if getattr(bare, RECORD_ATTR, None) is record:
        delattr(bare, RECORD_ATTR)


def remove(model: nn.Module) -> nn.Module:
    """Take the adapter out again: the model's modules, keys and ``requires_grad`` flags are as before."""
    bare = bare_model(model)
    record = getattr(bare, RECORD_ATTR, None)
    if record is None:
        raise AdapterError("the model carries no adapter")
    _undo(bare, record)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold an injected LoRA into the base weights (W <- W + alpha/r B A) and drop the LoRA modules."""
    bare = bare_model(model)
    record = getattr(bare, RECORD_ATTR, None)
    if record is None or record.method != "lora":
        raise AdapterError(
            f"merge_lora needs a LoRA adapter, the model carries {record.method if record else 'none'}"
        )
    _undo(bare, record, merge=True)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (after :func:`inject`: the adapter's only)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def attached_adapters(model: nn.Module) -> tuple[dict[str, Any], ...]:
    """``ModelDescriptor.adapters`` for this model: ``({"method": ..., "config": {...}},)`` or ``()``."""
    record = injection(model)
    return (record.describe(),) if record is not None else ()
