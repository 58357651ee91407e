"""Adapter-only files: the adapter's tensors in a small safetensors file, plus what it was trained on.

The metadata (``anyrestore.adapter``, JSON) records the method, its resolved config, and the identity of
the base model the adapter belongs to: its architecture and config as recognised from its keys and
shapes, and a fingerprint of those keys and shapes. :func:`load_adapter` refuses a base model whose
identity differs, with a one-line error, before touching it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyrestore.adapters.base import AdapterError
from anyrestore.adapters.inject import RECORD_ATTR, Injection, base_identity, inject, injection, remove
from anyrestore.io import atomic_output
from anyrestore.io.tensors import read_safetensors, read_safetensors_metadata
from anyrestore.models.checkpoint import LoadedModel, load_model
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.normalize import bare_model
from anyrestore.models.zoo import FormatPlugin

METADATA_KEY = "anyrestore.adapter"
FORMAT_VERSION = 1


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's parameters and buffers, keyed by their names in the bare model."""
    record = injection(model)
    if record is None:
        raise AdapterError("the model carries no adapter")
    return {
        f"{prefix}.{key}": value
        for prefix, module in record.modules.items()
        for key, value in module.state_dict().items()
    }


def save_adapter(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write the adapter alone (atomically) as safetensors with its method, config and base identity."""
    from safetensors.torch import save_file

    record = injection(model)
    if record is None:
        raise AdapterError("the model carries no adapter to save")
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in adapter_state_dict(model).items()}
    meta = {"format": FORMAT_VERSION, "method": record.method, "config": record.config, "base": record.base}
    path = Path(path)
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return path


def read_adapter(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The metadata and tensors of an adapter file."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: no such adapter file")
    tensors, metadata = read_safetensors(path, AdapterError)
    if METADATA_KEY not in metadata:
        raise AdapterError(f"{path}: not an anyrestore adapter file (no {METADATA_KEY} metadata)")
    meta = json.loads(metadata[METADATA_KEY])
    if meta.get("format") != FORMAT_VERSION:
        raise AdapterError(f"{path}: adapter format {meta.get('format')!r} is not supported")
    return meta, tensors


def rebuild_recorded_adapters(module: nn.Module, descriptor: ModelDescriptor) -> None:
    """Inject the adapter a descriptor records (an adapter run's weights hold base and adapter)."""
    if len(descriptor.adapters) != 1:
        raise AdapterError(f"{len(descriptor.adapters)} adapters recorded; one is supported")
    entry = descriptor.adapters[0]
    inject(module, entry["method"], **entry["config"])


def records_adapters(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is one of our safetensors files whose descriptor records an adapter (read from
    the header alone)."""
    descriptor = ModelDescriptor.from_metadata(read_safetensors_metadata(path))
    return descriptor is not None and bool(descriptor.adapters)


def load_adapted_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu", prefer_ema: bool = True
) -> LoadedModel:
    """Weights saved by an adapter run (or any checkpoint): the base rebuilt from the descriptor, the
    recorded adapter injected, all weights loaded strictly."""
    try:
        return load_model(
            path, device=device, prefer_ema=prefer_ema, rebuild_adapters=rebuild_recorded_adapters
        )
    except AdapterError as exc:
        raise AdapterError(f"{path}: {exc}") from None


# How anyrestore.load_model (models.zoo.resolve_model) opens an adapter run's weights.
ADAPTED_FORMAT = FormatPlugin("adapter run", records_adapters, load_adapted_checkpoint)


def _describe(identity: dict[str, Any]) -> str:
    cfg = identity.get("config")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(cfg.items())) if cfg else "unrecognised config"
    return f"{identity['architecture']} ({shown}; shapes {identity['fingerprint']})"


def load_adapter(model: nn.Module, path: str | os.PathLike[str]) -> Injection:
    """Inject the adapter stored at ``path`` into ``model`` and load its weights.

    Refused (:class:`AdapterError`) when the model already carries an adapter or is not the base model
    the adapter was saved from (architecture, config, or keys and shapes differ).
    """
    path = Path(path)
    meta, tensors = read_adapter(path)
    bare = bare_model(model)
    if getattr(bare, RECORD_ATTR, None) is not None:
        raise AdapterError(f"{path}: the model already carries an adapter; remove it first")
    saved, current = meta["base"], base_identity(bare)
    if any(saved.get(key) != current[key] for key in ("architecture", "config", "fingerprint")):
        raise AdapterError(
            f"{path}: adapter was trained on {_describe(saved)}, not this {_describe(current)}"
        )

    record = inject(bare, meta["method"], **meta["config"])
    try:
        expected = adapter_state_dict(bare)
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        shapes = sorted(k for k in expected if k in tensors and expected[k].shape != tensors[k].shape)
        if missing or unexpected or shapes:
            if missing:
                detail = f"missing {missing[0]}"
            elif unexpected:
                detail = f"unexpected {unexpected[0]}"
            else:
                detail = f"shape of {shapes[0]}"
            raise AdapterError(f"{path}: tensors do not fit the {meta['method']} adapter ({detail})")
        for prefix, module in record.modules.items():
            own = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            module.load_state_dict(own, strict=True)
    except Exception:
        remove(bare)
        raise
    return record
