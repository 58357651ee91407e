"""Parameter-efficient adaptation of frozen restoration backbones: AdaptIR and the PETL baselines.

``inject(model, method, **cfg)`` attaches one method to every transformer block of a supported backbone
(EDT, IPT, SwinIR, Restormer, PromptIR) and freezes everything else; ``remove`` undoes it,
``merge_lora`` folds LoRA into the weights, and ``save_adapter`` / ``load_adapter`` store the adapter alone,
tied to the identity of its base model.
"""

from anyrestore.adapters.adaptir import AdaptIR
from anyrestore.adapters.base import AdapterError
from anyrestore.adapters.inject import (
    METHODS,
    Injection,
    attached_adapters,
    base_identity,
    inject,
    injection,
    merge_lora,
    remove,
    trainable_parameters,
)
from anyrestore.adapters.io import adapter_state_dict, load_adapter, read_adapter, save_adapter

__all__ = [
    "METHODS",
    "AdaptIR",
    "AdapterError",
    "Injection",
    "adapter_state_dict",
    "attached_adapters",
    "base_identity",
    "inject",
    "injection",
    "load_adapter",
    "merge_lora",
    "read_adapter",
    "remove",
    "save_adapter",
    "trainable_parameters",
]
