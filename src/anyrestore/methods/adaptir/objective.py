"""The ``adapter`` training objective: parameter-efficient adaptation of a frozen, pre-trained backbone.

``method: {name: adapter, options: {method: adaptir, ...}}`` injects one adapter method (AdaptIR or a PETL
baseline, see :data:`anyrestore.adapters.METHODS`) into the model the recipe builds (its weights from
``model.pretrained``) and freezes every other parameter, task heads and tails included, so the optimiser
sees the adapter alone. The loss is the recipe's (L1 for AdaptIR). The saved descriptor records the
adapter, and at the end of the run :meth:`AdapterObjective.finish` writes the adapter-only file
``adapter.safetensors`` beside ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from anyrestore.adapters import (
    METHODS,
    attached_adapters,
    inject,
    injection,
    save_adapter,
)
from anyrestore.adapters.inject import resolve_config
from anyrestore.errors import AnyRestoreError
from anyrestore.inference.adapters import ADAPTER_FILE
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.train.objective import Objective, ObjectiveError

OBJECTIVE_NAME = "adapter"


class AdapterObjective(Objective):
    """Train one injected adapter on a frozen base with the recipe's loss."""

    def __init__(self, method: str, **config: Any) -> None:
        try:
            resolve_config(method, config)  # unknown options fail here, before any data or model is built
        except AnyRestoreError as exc:
            raise ObjectiveError(f"method.options: {exc}") from None
        self.method = method
        self.config = dict(config)  # inject() fills in the defaults, some of them per backbone

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Inject the adapter and freeze everything else (heads, tails and body)."""
        inject(model, self.method, **self.config)
        return model

    def describe(self, descriptor: ModelDescriptor, model: nn.Module) -> ModelDescriptor:
        """The descriptor with the adapter (method and resolved config) recorded in ``adapters``."""
        return dataclasses.replace(descriptor, adapters=attached_adapters(model))

    def finish(self, model: nn.Module, out_dir: Path) -> Path:
        """Write the adapter alone (``out_dir/adapter.safetensors``) from the final weights."""
        if injection(model) is None:
            raise ObjectiveError("the trained model carries no adapter to save")
        return save_adapter(model, Path(out_dir) / ADAPTER_FILE)


def adapter_objective(options: Mapping[str, Any]) -> AdapterObjective:
    """Factory for ``method: {name: adapter, options: {method: <name>, <its options>...}}``."""
    options = dict(options)
    method = options.pop("method", None)
    if method is None:
        raise ObjectiveError(f"method.options.method: missing; one of {', '.join(METHODS)}")
    return AdapterObjective(str(method), **options)
