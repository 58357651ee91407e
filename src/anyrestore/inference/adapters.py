"""Restoring with adapters: a base model plus an adapter-only file, or the weights of an adapter run.

``anyrestore restore --model BASE --adapter FILE`` calls :func:`load_adapted`: the base (a checkpoint path
or an embedded model name) is loaded as usual, the adapter is injected and its weights loaded, and an
adapter trained on another base (architecture, config, or keys and shapes differ) is refused with a
one-line :class:`~anyrestore.adapters.AdapterError` before the base is touched. The weights an adapter run
saves (``model.safetensors``, whose descriptor lists the adapter) load with :func:`load_adapted_model`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from anyrestore.adapters import AdapterError, attached_adapters, load_adapter, save_adapter
from anyrestore.adapters.io import load_adapted_checkpoint
from anyrestore.inference.restorer import Restorer
from anyrestore.models.checkpoint import LoadedModel
from anyrestore.models.zoo import resolve_model

ADAPTER_FILE = "adapter.safetensors"  # what an adapter run writes beside model.safetensors


def _with_adapter(loaded: LoadedModel, device: str | torch.device) -> LoadedModel:
    module = loaded.module.eval().to(device)
    descriptor = dataclasses.replace(loaded.descriptor, adapters=attached_adapters(module))
    return LoadedModel(module, descriptor, loaded.path, loaded.source)


def load_adapted(
    base: str | os.PathLike[str] | LoadedModel | None,
    adapter: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """``base`` (a checkpoint path, an embedded model name, ``None`` for the default model, or a loaded
    model, changed in place) with the adapter file ``adapter`` injected; ready for :class:`Restorer`."""
    if isinstance(base, LoadedModel):
        loaded = base
    elif base is not None and Path(base).is_file():
        loaded = load_adapted_model(base)  # our files may record an adapter: refused below, clearly
    else:
        loaded = resolve_model(base)
    if loaded.descriptor.adapters:
        where = loaded.path or "the base model"
        raise AdapterError(f"{where}: already carries an adapter; pass the base model it was trained on")
    load_adapter(loaded.module, adapter)
    return _with_adapter(loaded, device)


def adapted_restorer(
    base: str | os.PathLike[str] | LoadedModel | None, adapter: str | os.PathLike[str], **options: Any
) -> Restorer:
    """A :class:`Restorer` (``options``: :class:`~anyrestore.inference.InferenceOptions` fields) running
    ``base`` with ``adapter``."""
    return Restorer(load_adapted(base, adapter), **options)


def load_adapted_model(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu", prefer_ema: bool = True
) -> LoadedModel:
    """Weights saved by an adapter run (or any of our checkpoints): the base rebuilt from the descriptor,
    the recorded adapter injected, all weights loaded strictly
    (:func:`anyrestore.adapters.io.load_adapted_checkpoint`), with the adapter listed in its descriptor."""
    return _with_adapter(load_adapted_checkpoint(path, device=device, prefer_ema=prefer_ema), device)


def export_adapter(
    weights: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *, prefer_ema: bool = True
) -> Path:
    """Write the adapter-only file of an adapter run's weights (``model.safetensors`` or a checkpoint);
    default ``adapter.safetensors`` beside them."""
    weights = Path(weights)
    loaded = load_adapted_model(weights, prefer_ema=prefer_ema)
    if not loaded.descriptor.adapters:
        raise AdapterError(f"{weights}: the weights carry no adapter")
    return save_adapter(loaded.module, Path(out) if out is not None else weights.with_name(ADAPTER_FILE))
