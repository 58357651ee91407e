"""The assembled ABAIR restorer: frozen backbone, K LoRA adapters, estimator and segmentation head.

``model(x)`` restores a batch in [0, 1]: the estimator gives each image a distribution over ``clean``
and the adapters, turned into one coefficient per adapter by the blend mode, and the backbone runs with
``W + sum_k c_k B_k A_k`` on every fused q/k/v weight (:mod:`anyrestore.methods.abair.bank`):

- ``soft``: c_k = p(adapter k) (the ``clean`` share adds no adapter);
- ``onehot``: the most probable class only (c = 1; nothing when it is ``clean``);
- ``sum`` / ``average``: every adapter with c = 1 / c = 1/K, the paper's baselines (no estimator);
- ``backbone``: no adapter (the Phase I model).

Images of a batch with different coefficients are run one at a time. :meth:`ABAIRModel.merged` folds a
given blend into a plain backbone (zero overhead when the mix is known in advance, e.g. one-hot on a
batch of one kind); it goes through the shared ``inject("lora")`` + ``merge_lora`` with the adapters'
factors concatenated, an independent check that blending equals merging.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from anyrestore.adapters import inject, merge_lora
from anyrestore.methods.abair.bank import Mixer, adapter_tensors, add_adapter, attach_banks, plain_state_dict
from anyrestore.methods.abair.errors import ABAIRError
from anyrestore.methods.abair.heads import DegradationEstimator, SegHead, tap_features
from anyrestore.methods.abair.synthesis import CLEAN, check_name
from anyrestore.models.checkpoint import load_strict
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.normalize import as_unit_range

BLEND_MODES = ("soft", "onehot", "sum", "average", "backbone")


@dataclass(frozen=True)
class LoRAConfig:
    """Shape of every ABAIR adapter: rank, alpha (scaling alpha / rank) and q/k/v targets."""

    rank: int = 4
    alpha: float = 4.0
    targets: tuple[str, ...] = ("q", "k", "v")

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha, "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoRAConfig:
        rank = int(data.get("rank", 4))
        alpha = data.get("alpha")
        return cls(
            rank, float(alpha if alpha is not None else rank), tuple(data.get("targets", ("q", "k", "v")))
        )


@dataclass
class AdapterInfo:
    """What the bundle records about one adapter besides its tensors."""

    name: str
    specs: list[str] = field(default_factory=list)
    note: str = ""


class ABAIRModel(nn.Module):
    """See the module docstring. ``descriptor`` is the backbone's (to rebuild a plain copy of it)."""

    def __init__(
        self,
        backbone: nn.Module,
        descriptor: ModelDescriptor,
        *,
        lora: LoRAConfig | None = None,
        seg_head: SegHead | None = None,
        seg_classes: Sequence[str] = (),
        estimator: DegradationEstimator | None = None,
        blend: str = "soft",
    ) -> None:
        super().__init__()
        self.descriptor = descriptor
        self.lora = lora or LoRAConfig()
        self.backbone = backbone.requires_grad_(False)
        self.mixer = Mixer()
        self.banks = attach_banks(self.backbone, self.mixer)
        self.info: dict[str, AdapterInfo] = {}
        self._store: dict[str, torch.Tensor] = {}
        self.seg_head = seg_head
        self.seg_classes = tuple(seg_classes)
        if seg_head is not None:
            if len(self.seg_classes) != seg_head.num_classes:
                raise ABAIRError(
                    f"segmentation head has {seg_head.num_classes} classes, names {self.seg_classes}"
                )
            tap_features(self.backbone, self._store)
            seg_head.requires_grad_(False)
        self.estimator = estimator.requires_grad_(False) if estimator is not None else None
        self.blend = blend
        self._fixed: list[float] | None = None
        self.check_blend(blend)

    # ------------------------------------------------------------------------------ composition

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(self.mixer.names)

    @property
    def classes(self) -> tuple[str, ...]:
        """What the estimator tells apart: ``clean`` and the adapters, in order."""
        return (CLEAN, *self.adapters)

    def _like(self) -> torch.Tensor:
        return next(self.backbone.parameters())

    def add_adapter(
        self, name: str, tensors: Mapping[str, torch.Tensor], info: AdapterInfo | None = None
    ) -> None:
        """Add adapter ``name`` from its tensors (single-LoRA key names); the others are untouched."""
        check_name(name, "adapter")
        if name in self.mixer.names:
            raise ABAIRError(f"adapter '{name}' is already in the model")
        r = self.lora
        add_adapter(
            self.banks, name, tensors, rank=r.rank, alpha=r.alpha, targets=r.targets, like=self._like()
        )
        self.mixer.names.append(name)
        self.mixer.coefficients.append(0.0)
        self.info[name] = info or AdapterInfo(name)

    def adapter_tensors(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self.mixer.names:
            raise ABAIRError(f"no adapter '{name}' (adapters: {', '.join(self.adapters) or 'none'})")
        return adapter_tensors(self.banks, name)

    def set_estimator(self, estimator: DegradationEstimator | None) -> None:
        self.estimator = estimator.requires_grad_(False).to(self._like().device) if estimator else None

    def check_blend(self, mode: str) -> None:
        if mode not in BLEND_MODES:
            raise ABAIRError(f"unknown blend mode '{mode}' (modes: {', '.join(BLEND_MODES)})")

    # ------------------------------------------------------------------------------ plain copies

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The frozen backbone's own weights, under the bare backbone's keys."""
        return plain_state_dict(self.backbone.state_dict())

    def plain_backbone(self) -> nn.Module:
        """A fresh copy of the bare backbone (no adapters), frozen, in eval mode, on this model's device."""
        plain = self.descriptor.build()
        load_strict(plain, self.backbone_state_dict(), "ABAIR backbone")
        return plain.to(self._like().device).eval().requires_grad_(False)

    def merged(self, weights: Mapping[str, float] | Sequence[float]) -> nn.Module:
        """A plain backbone with ``sum_k w_k B_k A_k`` merged into its weights.

        Built with the shared LoRA: ``inject(plain, "lora", rank=r*m)`` whose factors are the m active
        adapters' A stacked and their w-scaled B side by side, then ``merge_lora``.
        """
        coefficients = self._vector(weights)
        plain = self.plain_backbone()
        active = [(n, c) for n, c in zip(self.adapters, coefficients, strict=True) if c != 0.0]
        if not active:
            return plain
        rank = self.lora.rank * len(active)
        scaling = self.lora.alpha / self.lora.rank
        record = inject(plain, "lora", rank=rank, alpha=scaling * rank, targets=self.lora.targets)
        with torch.no_grad():
            for prefix, module in record.modules.items():
                bank = self.banks[prefix]
                for t in module.targets:
                    parts = [getattr(bank.adapters[n], t) for n, _ in active]
                    getattr(module, t).lora_A.copy_(torch.cat([p.lora_A for p in parts]))
                    getattr(module, t).lora_B.copy_(
                        torch.cat([c * p.lora_B for p, (_, c) in zip(parts, active, strict=True)], dim=1)
                    )
        merge_lora(plain)
        return plain.eval().requires_grad_(False)

    def _vector(self, weights: Mapping[str, float] | Sequence[float] | torch.Tensor) -> list[float]:
        if isinstance(weights, Mapping):
            unknown = set(weights) - set(self.adapters)
            if unknown:
                raise ABAIRError(
                    f"no adapter(s) {', '.join(sorted(unknown))} (adapters: {', '.join(self.adapters)})"
                )
            return [float(weights.get(n, 0.0)) for n in self.adapters]
        values = [float(v) for v in (weights.tolist() if isinstance(weights, torch.Tensor) else weights)]
        if len(values) != len(self.adapters):
            raise ABAIRError(f"{len(values)} weights for {len(self.adapters)} adapters")
        return values

    # ------------------------------------------------------------------------------ estimation

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1 + K) estimator distribution over ``classes`` for a batch in [0, 1]."""
        if self.estimator is None:
            raise ABAIRError("this ABAIR model has no estimator yet (train Phase III)")
        if self.estimator.num_classes != len(self.classes):
            raise ABAIRError(
                f"the estimator knows {self.estimator.num_classes} classes, the model has "
                f"{len(self.classes)} (clean + adapters); retrain it"
            )
        with torch.no_grad():
            return self.estimator.probabilities(x)

    @property
    def can_analyze(self) -> bool:
        """Whether :meth:`analyze` works (an estimator is attached); see :mod:`anyrestore.inference.hooks`."""
        return self.estimator is not None

    @property
    def can_segment(self) -> bool:
        """Whether :meth:`segment_logits` works (a segmentation head is attached)."""
        return self.seg_head is not None

    def analyze(self, image: torch.Tensor) -> dict[str, float]:
        """Degradation mix of one (1, 3, H, W) image in [0, 1]: class -> probability (the web demo's hook)."""
        p = self.probabilities(image[:1])[0].tolist()
        return dict(zip(self.classes, p, strict=True))

    def coefficients(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """(N, K) adapter coefficients for a batch under ``mode`` (default: the model's blend mode)."""
        mode = mode or self.blend
        self.check_blend(mode)
        n, k = x.shape[0], len(self.adapters)
        if self._fixed is not None:
            return torch.tensor(self._fixed).expand(n, k)
        if mode == "backbone" or k == 0:
            return torch.zeros(n, k)
        if mode in ("sum", "average"):
            return torch.full((n, k), 1.0 if mode == "sum" else 1.0 / k)
        p = self.probabilities(x).cpu()
        if mode == "soft":
            return p[:, 1:]
        return torch.nn.functional.one_hot(p.argmax(1), k + 1)[:, 1:].to(torch.float32)

    @contextlib.contextmanager
    def fixed(self, weights: Mapping[str, float] | Sequence[float]) -> Iterator[None]:
        """Use these adapter coefficients for every image inside the block (oracle runs, benchmarks)."""
        previous, self._fixed = self._fixed, self._vector(weights)
        try:
            yield
        finally:
            self._fixed = previous

    # ------------------------------------------------------------------------------ forward passes

    def run(self, x: torch.Tensor, coefficients: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """The backbone on ``x`` (in [0, 1]) with one set of adapter coefficients for the whole batch."""
        self.mixer.set(self._vector(coefficients))
        try:
            if self.descriptor.normalization == "none":
                return self.backbone(x)
            return as_unit_range(self.backbone, self.descriptor).to(x.device)(x)
        finally:
            self.mixer.set([0.0] * len(self.adapters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.coefficients(x)
        if bool((c == c[:1]).all()):
            return self.run(x, c[0])
        return torch.cat([self.run(x[i : i + 1], c[i]) for i in range(x.shape[0])])

    def segment_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S, H, W) segmentation logits over ``seg_classes``, from the backbone without adapters.

        H and W must suit the backbone (a multiple of its ``size_multiple``).
        """
        if self.seg_head is None:
            raise ABAIRError("this ABAIR model has no segmentation head")
        self._store.clear()
        with torch.no_grad():
            self.run(x, [0.0] * len(self.adapters))
            return self.seg_head(self._store.pop("features"))

    def loaded_descriptor(self) -> ModelDescriptor:
        """The descriptor of this restorer as a whole ([0, 1] in and out, its adapters listed)."""
        adapters = tuple(
            {"method": "lora", "name": n, "config": self.lora.as_dict(), "specs": self.info[n].specs}
            for n in self.adapters
        )
        summary = (
            f"{len(self.adapters)} adapter(s) ({', '.join(self.adapters) or 'none'}), blend {self.blend}"
        )
        extra = {**self.descriptor.extra, "abair": summary}
        return replace(self.descriptor, normalization="none", adapters=adapters, extra=extra)
