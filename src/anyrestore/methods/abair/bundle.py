"""The ABAIR bundle: backbone, adapters, estimator and segmentation head in one safetensors file.

Tensors:

- ``params.<key>``: the frozen Phase I backbone, exactly as :func:`anyrestore.models.save_model` writes
  a model, so the bare checkpoint loader (:func:`anyrestore.models.checkpoint.load_model`) still opens
  the file as the plain Phase I restorer; every ``--model`` and ``anyrestore.load_model`` go through
  :func:`anyrestore.models.zoo.resolve_model`, which loads the whole blended model (:data:`BUNDLE_FORMAT`);
- ``abair.adapter.<name>.<key>``: each adapter under the key names of a single-LoRA adapter file;
- ``abair.seg_head.<key>``, ``abair.estimator.<key>``: the two classifiers.

Metadata: ``anyrestore.descriptor`` (the backbone's :class:`ModelDescriptor`, with a note in ``extra``)
and ``anyrestore.abair`` (JSON: format, adapter names in order with their synthesis specs, LoRA config,
segmentation classes and head config, estimator config and classes, default blend mode, the identity of
the backbone the adapters belong to, and the resolved training recipe, which ``abair add-degradation``
reuses). Every write is atomic; tensors not being changed are copied as read, so they stay bitwise equal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyrestore.adapters import base_identity, inject, save_adapter
from anyrestore.io import atomic_output
from anyrestore.io.tensors import read_safetensors, read_safetensors_metadata
from anyrestore.methods.abair.errors import ABAIRError
from anyrestore.methods.abair.heads import DegradationEstimator, SegHead
from anyrestore.methods.abair.model import BLEND_MODES, ABAIRModel, AdapterInfo, LoRAConfig
from anyrestore.models.checkpoint import CheckpointError, LoadedModel, load_strict
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.zoo import FormatPlugin

BUNDLE_KEY = "anyrestore.abair"
FORMAT_VERSION = 1
PARAMS = "params."
ADAPTER = "abair.adapter."
SEG_HEAD = "abair.seg_head."
ESTIMATOR = "abair.estimator."


@dataclass
class Bundle:
    """A bundle file's contents, tensors as stored (nothing rebuilt)."""

    descriptor: ModelDescriptor
    meta: dict[str, Any]
    backbone: dict[str, torch.Tensor]
    adapters: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # in adapter order
    seg_head: dict[str, torch.Tensor] | None = None
    estimator: dict[str, torch.Tensor] | None = None

    @property
    def adapter_names(self) -> list[str]:
        return [a["name"] for a in self.meta["adapters"]]


def _strip(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a safetensors file carrying ABAIR metadata."""
    return BUNDLE_KEY in (read_safetensors_metadata(path) or {})


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """The tensors and metadata of a bundle file; problems raise :class:`ABAIRError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ABAIRError(f"{path}: no such ABAIR bundle")
    tensors, metadata = read_safetensors(path, ABAIRError)
    if BUNDLE_KEY not in metadata:
        raise ABAIRError(f"{path}: not an ABAIR bundle (no {BUNDLE_KEY} metadata)")
    meta = json.loads(metadata[BUNDLE_KEY])
    if meta.get("format") != FORMAT_VERSION:
        raise ABAIRError(f"{path}: ABAIR bundle format {meta.get('format')!r} is not supported")
    descriptor = ModelDescriptor.from_metadata(metadata)
    if descriptor is None:
        raise ABAIRError(f"{path}: the bundle has no backbone descriptor")
    names = [a["name"] for a in meta["adapters"]]
    adapters = {n: _strip(tensors, f"{ADAPTER}{n}.") for n in names}
    for n, own in adapters.items():
        if not own:
            raise ABAIRError(f"{path}: adapter '{n}' is listed but has no tensors")
    return Bundle(
        descriptor=descriptor,
        meta=meta,
        backbone=_strip(tensors, PARAMS),
        adapters=adapters,
        seg_head=_strip(tensors, SEG_HEAD) if meta.get("seg_head") else None,
        estimator=_strip(tensors, ESTIMATOR) if meta.get("estimator") else None,
    )


def write_bundle(path: str | os.PathLike[str], bundle: Bundle) -> Path:
    """Write ``bundle`` atomically (the tensors exactly as given)."""
    from safetensors.torch import save_file

    tensors = {PARAMS + k: v for k, v in bundle.backbone.items()}
    for name in bundle.adapter_names:
        tensors.update({f"{ADAPTER}{name}.{k}": v for k, v in bundle.adapters[name].items()})
    if bundle.seg_head is not None:
        tensors.update({SEG_HEAD + k: v for k, v in bundle.seg_head.items()})
    if bundle.estimator is not None:
        tensors.update({ESTIMATOR + k: v for k, v in bundle.estimator.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    names = ", ".join(bundle.adapter_names) or "no adapters yet"
    descriptor = replace(
        bundle.descriptor, extra={**bundle.descriptor.extra, "abair": f"ABAIR bundle: {names}"}
    )
    metadata = {**descriptor.to_metadata(), BUNDLE_KEY: json.dumps(bundle.meta)}
    path = Path(path)
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def new_bundle(
    backbone: nn.Module,
    descriptor: ModelDescriptor,
    *,
    lora: LoRAConfig,
    seg_head: SegHead | None = None,
    seg_classes: list[str] | None = None,
    recipe: dict[str, Any] | None = None,
    blend: str = "soft",
) -> Bundle:
    """A bundle holding a Phase I backbone (and its segmentation head), no adapters yet."""
    if blend not in BLEND_MODES:
        raise ABAIRError(f"unknown blend mode '{blend}' (modes: {', '.join(BLEND_MODES)})")
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    descriptor = replace(
        descriptor, adapters=(), extra={k: v for k, v in descriptor.extra.items() if k != "abair"}
    )
    meta = {
        "format": FORMAT_VERSION,
        "lora": lora.as_dict(),
        "adapters": [],
        "seg_head": {**seg_head.config(), "classes": list(seg_classes or [])}
        if seg_head is not None
        else None,
        "estimator": None,
        "blend": blend,
        "base": base_identity(backbone),
        "recipe": recipe,
    }
    seg = {k: v.detach().cpu() for k, v in seg_head.state_dict().items()} if seg_head is not None else None
    return Bundle(descriptor, meta, state, {}, seg, None)


def with_adapter(bundle: Bundle, name: str, tensors: Mapping[str, torch.Tensor], specs: list[str]) -> Bundle:
    """A copy of ``bundle`` with one more adapter (the others, and every other tensor, as they were)."""
    if name in bundle.adapter_names:
        raise ABAIRError(f"the bundle already has an adapter '{name}'")
    meta = {**bundle.meta, "adapters": [*bundle.meta["adapters"], {"name": name, "specs": list(specs)}]}
    adapters = {**bundle.adapters, name: {k: v.detach().cpu() for k, v in tensors.items()}}
    return replace(bundle, meta=meta, adapters=adapters)


def with_estimator(bundle: Bundle, estimator: DegradationEstimator) -> Bundle:
    """A copy of ``bundle`` whose estimator is ``estimator`` (which must cover clean + every adapter)."""
    classes = ["clean", *bundle.adapter_names]
    if estimator.num_classes != len(classes):
        raise ABAIRError(f"the estimator has {estimator.num_classes} classes, the bundle {len(classes)}")
    meta = {**bundle.meta, "estimator": {**estimator.config(), "classes": classes}}
    state = {k: v.detach().cpu() for k, v in estimator.state_dict().items()}
    return replace(bundle, meta=meta, estimator=state)


def _load(module: nn.Module, state: Mapping[str, torch.Tensor], part: str) -> None:
    try:
        load_strict(module, state, f"ABAIR bundle {part}")
    except CheckpointError as exc:
        raise ABAIRError(str(exc)) from None


def build_model(
    bundle: Bundle, *, device: str | torch.device = "cpu", blend: str | None = None
) -> ABAIRModel:
    """The :class:`ABAIRModel` a bundle describes, in eval mode on ``device``."""
    meta = bundle.meta
    backbone = bundle.descriptor.build()
    _load(backbone, bundle.backbone, "backbone")
    seg_head, seg_classes = None, []
    if bundle.seg_head is not None:
        cfg = meta["seg_head"]
        seg_head = SegHead(cfg["in_channels"], cfg["num_classes"], cfg["hidden"])
        _load(seg_head, bundle.seg_head, "segmentation head")
        seg_classes = cfg["classes"]
    model = ABAIRModel(
        backbone.to(device),
        bundle.descriptor,
        lora=LoRAConfig.from_dict(meta["lora"]),
        seg_head=seg_head,
        seg_classes=seg_classes,
        blend=blend or meta.get("blend", "soft"),
    )
    for entry in meta["adapters"]:
        model.add_adapter(
            entry["name"], bundle.adapters[entry["name"]], AdapterInfo(entry["name"], entry["specs"])
        )
    if bundle.estimator is not None:
        cfg = dict(meta["estimator"])
        if cfg.pop("classes") != list(model.classes):
            raise ABAIRError("the bundle's estimator classes do not match its adapters")
        estimator = DegradationEstimator(**cfg)
        _load(estimator, bundle.estimator, "estimator")
        model.set_estimator(estimator)
    return model.to(device).eval()


def load_bundle(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu", blend: str | None = None
) -> ABAIRModel:
    """Read a bundle file and build its model."""
    return build_model(read_bundle(path), device=device, blend=blend)


def load_bundle_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> LoadedModel:
    """A bundle as the :class:`LoadedModel` that ``Restorer`` and the web demo take (``analyze`` included)."""
    model = load_bundle(path, device=device)
    return LoadedModel(model, model.loaded_descriptor(), Path(path), "abair")


# Named in anyrestore.models.zoo.PLUGINS: how resolve_model (every --model, anyrestore.load_model) opens
# a bundle whole rather than as its bare Phase I backbone.
BUNDLE_FORMAT = FormatPlugin("abair", is_bundle, load_bundle_model)


def model_bundle(model: ABAIRModel, *, recipe: dict[str, Any] | None = None) -> Bundle:
    """A bundle holding everything ``model`` holds (to save a model assembled in code)."""
    bundle = new_bundle(
        model.plain_backbone(),
        model.descriptor,
        lora=model.lora,
        seg_head=model.seg_head,
        seg_classes=list(model.seg_classes),
        recipe=recipe,
        blend=model.blend,
    )
    for name in model.adapters:
        bundle = with_adapter(bundle, name, model.adapter_tensors(name), model.info[name].specs)
    if model.estimator is not None:
        bundle = with_estimator(bundle, model.estimator)
    return bundle


def save_bundle(
    path: str | os.PathLike[str], model: ABAIRModel, *, recipe: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` as a bundle file (atomically)."""
    return write_bundle(path, model_bundle(model, recipe=recipe))


def export_adapter(bundle_path: str | os.PathLike[str], name: str, output: str | os.PathLike[str]) -> Path:
    """Write adapter ``name`` as an ordinary LoRA adapter file of the bundle's backbone, which
    :func:`anyrestore.adapters.load_adapter` injects (and ``merge_lora`` folds) like any other."""
    model = load_bundle(bundle_path)
    tensors = model.adapter_tensors(name)
    plain = model.plain_backbone()
    lora = model.lora
    record = inject(plain, "lora", rank=lora.rank, alpha=lora.alpha, targets=lora.targets)
    for prefix, module in record.modules.items():
        own = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        module.load_state_dict(own, strict=True)
    return save_adapter(plain, output)


def describe_bundle(path: str | os.PathLike[str]) -> str:
    """What a bundle holds, one item a line (``anyrestore abair info``)."""
    bundle = read_bundle(path)
    meta, d = bundle.meta, bundle.descriptor
    count = sum(v.numel() for v in bundle.backbone.values())
    cfg = ", ".join(f"{k}={v}" for k, v in sorted(d.config.items())) or "paper configuration"
    lora = meta["lora"]
    lines = [
        f"file           {path}",
        f"backbone       {d.architecture} ({cfg}), {count:,} parameters",
        f"lora           rank {lora['rank']}, alpha {lora['alpha']:g}, on {', '.join(lora['targets'])} "
        "of the fused q/k/v projection of every transformer block",
    ]
    for entry in meta["adapters"]:
        size = sum(v.numel() for v in bundle.adapters[entry["name"]].values())
        lines.append(f"adapter        {entry['name']}: {' | '.join(entry['specs'])} ({size:,} parameters)")
    if not meta["adapters"]:
        lines.append("adapters       none yet")
    est = meta.get("estimator")
    if est:
        size = sum(v.numel() for v in (bundle.estimator or {}).values())
        lines.append(f"estimator      {', '.join(est['classes'])} ({size:,} parameters)")
    else:
        lines.append("estimator      none yet")
    seg = meta.get("seg_head")
    lines.append(f"segmentation   {', '.join(seg['classes'])}" if seg else "segmentation   none")
    lines.append(f"blend          {meta.get('blend', 'soft')}")
    return "\n".join(lines)
