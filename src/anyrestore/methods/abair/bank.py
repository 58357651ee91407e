"""Several LoRA adapters on one frozen backbone, blended per forward pass.

:mod:`anyrestore.adapters` attaches one adapter at a time. ABAIR keeps K of them, so each fused q/k/v
weight the shared LoRA would re-parametrise (the same :class:`~anyrestore.adapters.base.Site` s, found by
:func:`~anyrestore.adapters.sites.find_backbone`) gets a :class:`LoRABank` instead: a
``torch.nn.utils.parametrize`` parametrisation holding one shared :class:`~anyrestore.adapters.lora.LoRA`
per adapter and computing ``W + sum_k c_k * delta_k``, with the coefficients ``c`` read from a
:class:`Mixer` shared by every bank of the model. LoRA is linear in its delta, so this is exactly the
weight obtained by merging ``sum_k c_k B_k A_k``.

Adapter tensors are named as :func:`anyrestore.adapters.adapter_state_dict` names a single injected LoRA
(``<module>.parametrizations.weight.0.q.lora_A``), so one ABAIR adapter is also an ordinary LoRA adapter
of the backbone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from anyrestore.adapters import AdapterError, injection
from anyrestore.adapters.lora import LoRA
from anyrestore.adapters.sites import find_backbone
from anyrestore.methods.abair.errors import ABAIRError

PARAMETRIZATIONS = ".parametrizations."


class Mixer:
    """The blend coefficients that every bank of one model reads: one per adapter, in adapter order."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.coefficients: list[float] = []

    def set(self, coefficients: Sequence[float]) -> None:
        if len(coefficients) != len(self.names):
            raise ABAIRError(f"{len(coefficients)} blend coefficients for {len(self.names)} adapters")
        self.coefficients = [float(c) for c in coefficients]


class LoRABank(nn.Module):
    """Parametrisation of a fused q/k/v weight: ``W + sum_k c_k delta_k`` over the bank's adapters."""

    def __init__(self, mixer: Mixer, weight_shape: Sequence[int]) -> None:
        super().__init__()
        self.adapters = nn.ModuleDict()
        self.mixer = mixer
        self.weight_shape = tuple(int(s) for s in weight_shape)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        out = weight
        for name, c in zip(self.mixer.names, self.mixer.coefficients, strict=True):
            if c != 0.0:
                out = out + (self.adapters[name].delta() * c).view_as(weight).to(weight.dtype)
        return out


def attach_banks(backbone: nn.Module, mixer: Mixer) -> dict[str, LoRABank]:
    """Parametrise every fused q/k/v weight of ``backbone`` with an empty bank.

    Returns the banks keyed by the prefix their adapters' tensors carry in a single-LoRA adapter file.
    """
    if injection(backbone) is not None:
        raise ABAIRError("the backbone already carries an adapter; ABAIR needs the bare backbone")
    try:
        sites = find_backbone(backbone).sites
    except AdapterError as exc:
        raise ABAIRError(str(exc)) from None
    names = {id(m): n for n, m in backbone.named_modules()}
    banks: dict[str, LoRABank] = {}
    for site in sites:
        for ref in site.qkv:
            weight = getattr(ref.module, ref.name)
            bank = LoRABank(mixer, weight.shape)
            parametrize.register_parametrization(ref.module, ref.name, bank)
            banks[f"{names[id(ref.module)]}{PARAMETRIZATIONS}{ref.name}.0"] = bank
    return banks


def add_adapter(
    banks: Mapping[str, LoRABank],
    name: str,
    tensors: Mapping[str, torch.Tensor],
    *,
    rank: int,
    alpha: float,
    targets: Sequence[str],
    like: torch.Tensor,
) -> None:
    """Give every bank a LoRA for adapter ``name`` and load its tensors (single-LoRA key names).

    The LoRA modules live on the device and in the dtype of ``like`` (a backbone parameter).
    """
    expected: set[str] = set()
    for prefix, bank in banks.items():
        lora = LoRA(bank.weight_shape, rank, alpha, tuple(targets)).to(device=like.device, dtype=like.dtype)
        own = {k: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        wanted = {f"{prefix}.{k}" for k in lora.state_dict()}
        expected |= wanted
        missing = sorted(wanted - set(own))
        if missing:
            raise ABAIRError(f"adapter '{name}': missing tensor {missing[0]}")
        state = lora.state_dict()
        shapes = [
            k for k in sorted(wanted) if tuple(own[k].shape) != tuple(state[k[len(prefix) + 1 :]].shape)
        ]
        if shapes:
            raise ABAIRError(f"adapter '{name}': tensor {shapes[0]} has the wrong shape for rank {rank}")
        lora.load_state_dict({k[len(prefix) + 1 :]: v for k, v in own.items()}, strict=True)
        lora.requires_grad_(False)
        bank.adapters[name] = lora
    unexpected = sorted(set(tensors) - expected)
    if unexpected:
        raise ABAIRError(f"adapter '{name}': unexpected tensor {unexpected[0]} (another backbone?)")


def adapter_tensors(banks: Mapping[str, LoRABank], name: str) -> dict[str, torch.Tensor]:
    """Adapter ``name``'s tensors under single-LoRA key names."""
    return {
        f"{prefix}.{key}": value
        for prefix, bank in banks.items()
        for key, value in bank.adapters[name].state_dict().items()
    }


def is_lora_key(key: str) -> bool:
    """True for the tensors of an injected (single) LoRA in a backbone's state_dict."""
    return PARAMETRIZATIONS in key and not key.endswith(".original")


def plain_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A parametrised backbone's state_dict with the original weights under their own keys and no
    adapter tensors: the state_dict of the bare backbone."""
    out = {}
    for key, value in state.items():
        head, sep, tail = key.partition(PARAMETRIZATIONS)
        if not sep:
            out[key] = value
            continue
        param, _, rest = tail.partition(".")
        if rest == "original":
            out[f"{head}.{param}"] = value
    return out
