"""ABAIR's three training phases as objectives of the shared engine (:mod:`anyrestore.train`).

- ``abair_pretrain`` (Phase I): the recipe's backbone plus a segmentation head
  (:class:`PretrainNet`); loss = the recipe's restoration loss + ``seg_weight`` x per-pixel
  cross-entropy against the synthesis labels.
- ``abair_adapter`` (Phase II): the backbone of ``options.bundle``, frozen, with one shared LoRA
  (``inject(model, "lora", ...)``) trained with the recipe's loss on degradation ``options.adapter``.
- ``abair_estimator`` (Phase III): the :class:`DegradationEstimator` alone, cross-entropy against the
  per-image class distribution.

Synthetic samples are drawn with the engine's named generator ``"abair"``, whose state is saved with
every checkpoint, so every phase resumes exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from anyrestore.adapters import attached_adapters, inject
from anyrestore.methods.abair.bundle import read_bundle
from anyrestore.methods.abair.errors import ABAIRError
from anyrestore.methods.abair.heads import DegradationEstimator, SegHead, feature_module, tap_features
from anyrestore.methods.abair.options import ABAIROptions, parse_options
from anyrestore.methods.abair.synthesis import Prepared, Synthesizer, prepare_batch, soft_cross_entropy
from anyrestore.models.checkpoint import CheckpointError, load_strict
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.train import Objective, StepContext, register_objective

GENERATOR = "abair"


class PretrainNet(nn.Module):
    """Phase I's network: a backbone and a segmentation head reading its last features.

    ``forward(x)`` is the restorer (validation runs it as such); ``forward(x, with_seg=True)`` also
    returns the segmentation logits. Saved keys: ``backbone.*`` and ``seg_head.*``.
    """

    def __init__(self, backbone: nn.Module, seg_head: SegHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.seg_head = seg_head
        self._store: dict[str, torch.Tensor] = {}
        tap_features(backbone, self._store)

    def forward(self, x: torch.Tensor, with_seg: bool = False):
        restored = self.backbone(x)
        features = self._store.pop("features")
        if with_seg:
            return restored, self.seg_head(features)
        return restored


def _describe(descriptor: ModelDescriptor, note: str, **changes: Any) -> ModelDescriptor:
    return replace(descriptor, extra={**descriptor.extra, "abair": note}, **changes)


class _PhaseObjective(Objective):
    """What the three phases share: options, a synthesizer, and how a batch is prepared with them."""

    options: ABAIROptions
    synthesizer: Synthesizer

    def _prepare(self, batch: Mapping[str, Any], ctx: StepContext, *, pixels: bool = False) -> Prepared:
        return prepare_batch(
            batch,
            self.synthesizer,
            ctx.generators(GENERATOR),
            synthesize=self.options.synthesis.tasks,
            aliases=self.options.aliases,
            pixels=pixels,
        )


class PretrainObjective(_PhaseObjective):
    """Phase I: restoration + auxiliary per-pixel degradation segmentation."""

    def __init__(self, options: ABAIROptions) -> None:
        self.options = options
        self.synthesizer = options.pretrain_synthesizer()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        channels = feature_module(model).in_channels
        head = SegHead(channels, len(self.synthesizer.classes), self.options.seg_hidden)
        return PretrainNet(model, head)

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        o = self.options
        prepared = self._prepare(batch, ctx, pixels=True)
        restored, logits = model(prepared.lq, with_seg=True)
        loss, parts = ctx.loss(restored, prepared.gt)
        seg = soft_cross_entropy(logits, prepared.pixel_target)
        parts = {**parts, "seg": seg.detach()}
        return loss + o.seg_weight * seg, parts

    def describe(self, descriptor: ModelDescriptor, model: nn.Module) -> ModelDescriptor:
        classes = ", ".join(self.synthesizer.classes)
        return _describe(descriptor, f"ABAIR Phase I: backbone + segmentation head ({classes})")


class AdapterObjective(_PhaseObjective):
    """Phase II: one LoRA on the bundle's frozen backbone, for one degradation."""

    def __init__(self, options: ABAIROptions) -> None:
        if options.bundle is None or options.adapter is None:
            raise ABAIRError(
                "abair_adapter needs method.options.bundle and method.options.adapter "
                "(anyrestore abair build sets them)"
            )
        self.options = options
        self.synthesizer = options.adapter_synthesizer(options.adapter)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        bundle = read_bundle(self.options.bundle)
        try:
            load_strict(model, bundle.backbone, f"{self.options.bundle} (backbone)")
        except CheckpointError as exc:
            raise ABAIRError(str(exc)) from None
        lora = self.options.lora()
        inject(model, "lora", rank=lora.rank, alpha=lora.alpha, targets=lora.targets)
        return model

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        prepared = self._prepare(batch, ctx)
        return ctx.loss(model(prepared.lq), prepared.gt)

    def describe(self, descriptor: ModelDescriptor, model: nn.Module) -> ModelDescriptor:
        note = f"ABAIR Phase II adapter '{self.options.adapter}' on {self.options.bundle}"
        return _describe(descriptor, note, adapters=attached_adapters(model))


class EstimatorObjective(_PhaseObjective):
    """Phase III: the degradation estimator alone (the backbone the engine builds is dropped)."""

    def __init__(self, options: ABAIROptions) -> None:
        self.options = options
        self.synthesizer = options.estimator_synthesizer()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        e = self.options.estimator
        return DegradationEstimator(len(self.synthesizer.classes), e.widths, e.hidden, e.crop, e.max_pixels)

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        prepared = self._prepare(batch, ctx)
        logits = model(prepared.lq)
        loss = soft_cross_entropy(logits, prepared.image_target)
        top = logits.argmax(1, keepdim=True)
        hit = (prepared.image_target.gather(1, top) > 0).float().mean()
        return loss, {"ce": loss.detach(), "top1": hit.detach()}

    def describe(self, descriptor: ModelDescriptor, model: nn.Module) -> ModelDescriptor:
        classes = ", ".join(self.synthesizer.classes)
        return _describe(descriptor, f"ABAIR Phase III estimator ({classes}); weights are the estimator's")


def _factory(cls: type[Objective]):
    def build(options: Mapping[str, Any]) -> Objective:
        return cls(parse_options(options))

    return build


PHASES: dict[str, type[Objective]] = {
    "abair_pretrain": PretrainObjective,
    "abair_adapter": AdapterObjective,
    "abair_estimator": EstimatorObjective,
}
for _name, _cls in PHASES.items():
    register_objective(_name, _factory(_cls))
