"""What a training step computes, and the registry through which methods plug into the engine.

The engine owns the loop (data, precision, DDP, optimiser, EMA, checkpoints); an :class:`Objective` owns
the two things a method changes: the model before training (freeze layers, attach adapters) and the loss
of a batch. ``restore`` is plain supervised restoration: ``loss(model(lq), gt)``. A method registers its
own with :func:`register_objective` and recipes select it with ``method: {name: ..., options: {...}}``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyrestore.data.seeding import derive_seed
from anyrestore.errors import AnyRestoreError
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.side import side_inputs
from anyrestore.train.losses import WeightedLoss, psnr_loss


class ObjectiveError(AnyRestoreError):
    """Unknown training method, or options it does not take."""


class GeneratorBank:
    """Named random generators for the loop's own draws (e.g. RAM's pixel masks), one set per process.

    ``bank("mask")`` is created on first use, seeded from (run seed, name, rank), on the training device;
    the states of all of them are saved in the training state and restored on resume.
    """

    def __init__(self, seed: int, rank: int, device: torch.device) -> None:
        self.seed, self.rank, self.device = seed, rank, device
        self._generators: dict[str, torch.Generator] = {}

    def __call__(self, name: str) -> torch.Generator:
        if name not in self._generators:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(derive_seed(self.seed, "generator", name, self.rank))
            self._generators[name] = generator
        return self._generators[name]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: g.get_state() for name, g in self._generators.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        for name, value in state.items():
            self(name).set_state(value)


@dataclass
class StepContext:
    """What a loss computation may use besides the model and the batch."""

    iteration: int
    device: torch.device
    loss: WeightedLoss
    generators: GeneratorBank
    extra: dict[str, Any] = field(default_factory=dict)


class Objective:
    """Plain supervised restoration; methods subclass it and override what they change."""

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Called once on the bare model before the optimiser is built: freeze, inject, replace."""
        return model

    def describe(self, descriptor: ModelDescriptor, model: nn.Module) -> ModelDescriptor:
        """The descriptor saved with the weights (methods add their adapters here)."""
        return descriptor

    def finish(self, model: nn.Module, out_dir: Path) -> None:
        """Called once on the main process after the final weights are written; ``model`` is the module
        they serve by default (the EMA copy when EMA is on). Methods write extra artefacts here."""
        return None

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar loss to minimise, detached values to log) for one micro-batch on the device."""
        pred = model(batch["lq"], **side_inputs(model, batch["lq"]))
        return ctx.loss(pred, batch["gt"], batch.get("mask"))


ObjectiveFactory = Callable[[Mapping[str, Any]], Objective]


def _restore(options: Mapping[str, Any]) -> Objective:
    if options:
        raise ObjectiveError(f"method 'restore' takes no options, got: {', '.join(options)}")
    return Objective()


def train_only(model: nn.Module, prefixes: Sequence[str], method: str) -> None:
    """Freeze every parameter of ``model`` but those under the module paths ``prefixes`` (``deblur``
    covers ``deblur.head.0.weight``, not ``deblurx.*``); a prefix that matches nothing is an error."""

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(under(name, prefix) for name in names):
            raise ObjectiveError(f"method '{method}': train prefix '{prefix}' matches no parameter")
    for name, param in model.named_parameters():
        param.requires_grad_(any(under(name, prefix) for prefix in prefixes))


class StagedObjective(Objective):
    """Supervise a model's intermediate restorations too (deep supervision), optionally training only
    some of its parts.

    For models whose ``forward(x, return_stages=True)`` returns ``(output, [stage outputs])``, e.g.
    CurveNAFNet's curve and deblur stages: the loss is ``final_weight * loss(output) + stage_weight *
    sum(loss(stage))``, all against the clean target. Each stage is then pushed to do its own part (the
    curve stage the global corrections) instead of waiting for gradients that the later stages may
    absorb. ``train`` (parameter-name prefixes, e.g. ``[deblur]``) freezes everything else, so a stage
    added to a trained model can be trained alone (with ``final_weight: 0`` on its own output only).
    Calling the wrapped model with a keyword keeps DDP's gradient synchronisation intact.
    """

    def __init__(
        self, stage_weight: float, final_weight: float = 1.0, train: Sequence[str] | None = None
    ) -> None:
        if stage_weight < 0 or final_weight < 0 or stage_weight + final_weight == 0:
            raise ObjectiveError(
                "method.options.stage_weight and final_weight must be >= 0 and not both 0, "
                f"got {stage_weight} and {final_weight}"
            )
        if train is not None and (isinstance(train, str) or not all(isinstance(t, str) for t in train)):
            raise ObjectiveError(
                f"method.options.train must be a list of parameter-name prefixes, got {train!r}"
            )
        self.stage_weight = float(stage_weight)
        self.final_weight = float(final_weight)
        self.train = tuple(train) if train is not None else None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if "return_stages" not in inspect.signature(model.forward).parameters:
            raise ObjectiveError(f"method 'stages': {type(model).__name__} has no intermediate stages")
        if self.train is not None:
            train_only(model, self.train, "stages")
        return model

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pred, stages = model(batch["lq"], return_stages=True)
        total, parts = ctx.loss(pred, batch["gt"], batch.get("mask"))
        total = self.final_weight * total
        for i, stage in enumerate(stages):
            value, _ = ctx.loss(stage, batch["gt"], batch.get("mask"))
            parts[f"stage{i}"] = value.detach()
            total = total + self.stage_weight * value
        return total, parts


def _stages(options: Mapping[str, Any]) -> Objective:
    unknown = set(options) - {"stage_weight", "final_weight", "train"}
    if unknown:
        raise ObjectiveError(
            f"method 'stages' takes stage_weight, final_weight and train, got: {', '.join(sorted(unknown))}"
        )
    return StagedObjective(
        float(options.get("stage_weight", 0.5)), float(options.get("final_weight", 1.0)), options.get("train")
    )


class BankChoiceObjective(Objective):
    """Teach a CurveNAFNet's blur (``stage="deblur"``) or JPEG (``"deblock"``) estimator to pick, image by
    image, the bank entry (identity, or one of the deblurring kernels / deblocking filter sets) that
    restores it best.

    Restoring through the blend and back-propagating makes a poor teacher: a sharpening kernel wrecks a
    noisy image by far more than it mends a blurred one, so until the estimator tells them apart the
    gradient only says "sharpen less". Here each image is filtered by every bank entry, the one nearest
    the clean target (mean squared error) is the label, and the estimator's blend weights, read as
    probabilities, are trained with cross-entropy. Cross-entropy alone leaves the weights spread over
    neighbouring entries (the labels of blur widths between two entries are ambiguous), and the blend of
    a spread is a poor filter: ``blend_weight`` adds that times the PSNR loss of the stage's actual
    output, the blend. Only the estimator learns; the bank and the rest of the model stay as they are.
    Accuracy (``acc``) is logged. When the batch holds ``before`` (synthetic sets with ``before: jpeg``),
    that is the target instead of the clean image: the deblocking stage should undo JPEG only, and not
    smooth away noise, which is the NAFNet's to remove.
    """

    def __init__(self, stage: str, blend_weight: float = 0.0) -> None:
        if blend_weight < 0:
            raise ObjectiveError(f"method.options.blend_weight must be >= 0, got {blend_weight}")
        self.stage = stage
        self.method = f"{stage}_choice"
        self.blend_weight = float(blend_weight)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if getattr(model, self.stage, None) is None:
            setting = {"deblur": "deblur_sigmas", "deblock": "deblock_qualities"}[self.stage]
            raise ObjectiveError(
                f"method '{self.method}': {type(model).__name__} has no {self.stage} stage (a curve_nafnet "
                f"with {setting})"
            )
        train_only(model, (f"{self.stage}.features", f"{self.stage}.head"), self.method)
        return model

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        weights, options = model(batch["lq"], **{f"{self.stage}_options": True})
        gt = batch.get("before", batch["gt"]).float()
        errors = (options.detach().float() - gt[:, None]).pow(2).flatten(2).mean(2)  # (N, 1 + K)
        best = errors.argmin(dim=1)
        choice = torch.nn.functional.nll_loss(torch.log(weights.float() + 1e-8), best)
        accuracy = (weights.argmax(dim=1) == best).float().mean()
        parts = {"choice": choice.detach(), "acc": accuracy.detach()}
        if not self.blend_weight:
            return choice, parts
        blend = torch.einsum("nk,nkchw->nchw", weights.float(), options.float())
        blend_loss = psnr_loss(blend, gt)
        parts["blend_psnr"] = -blend_loss.detach()
        return choice + self.blend_weight * blend_loss, parts


def _bank_choice(stage: str) -> ObjectiveFactory:
    def factory(options: Mapping[str, Any]) -> Objective:
        unknown = set(options) - {"blend_weight"}
        if unknown:
            raise ObjectiveError(
                f"method '{stage}_choice' takes only blend_weight, got: {', '.join(sorted(unknown))}"
            )
        return BankChoiceObjective(stage, float(options.get("blend_weight", 0.0)))

    return factory


class DequantObjective(Objective):
    """Train a CurveNAFNet's JPEG dequantisation stage alone (everything else frozen).

    Each training input is read for its JPEG signature on the grid at the crop's corner (synthetic sets
    compress the crop itself), which gives its quantisation table; crops without one (flat sky, too few
    nonzero coefficients) are left out of the step. The loss is the mean squared error of the luma
    against the image before JPEG (``before: jpeg``; the clean image without it), which is the squared
    error of the block DCT coefficients too. ``gain`` logs the PSNR of the luma over the input's.
    """

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if getattr(model, "dequant", None) is None:
            raise ObjectiveError(
                f"method 'dequant': {type(model).__name__} has no dequantisation stage (a curve_nafnet "
                "with dequant_width)"
            )
        train_only(model, ("dequant",), "dequant")
        return model

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from anyrestore.models.jpeg_dequant import detect_jpeg, luma_255

        lq, target = batch["lq"], batch.get("before", batch["gt"])
        found = [detect_jpeg(image, grid=(0, 0)) for image in lq]
        keep = [i for i, s in enumerate(found) if s is not None]
        if not keep:
            zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return zero, {"found": torch.zeros(())}
        out = model(lq[keep], jpeg_qualities=[found[i].quality for i in keep])
        target_y = luma_255(target[keep].float())
        error = (luma_255(out.float()) - target_y).pow(2).mean()
        before = (luma_255(lq[keep].float()) - target_y).pow(2).mean()
        gain = 10 * torch.log10(before.detach() / error.detach().clamp_min(1e-12))
        return error / 255.0**2, {"gain": gain, "found": torch.tensor(len(keep) / len(found))}


def _dequant(options: Mapping[str, Any]) -> Objective:
    if options:
        raise ObjectiveError(f"method 'dequant' takes no options, got: {', '.join(options)}")
    return DequantObjective()


OBJECTIVES: dict[str, ObjectiveFactory] = {
    "restore": _restore,
    "stages": _stages,
    "deblur_choice": _bank_choice("deblur"),
    "deblock_choice": _bank_choice("deblock"),
    "dequant": _dequant,
}


def register_objective(name: str, factory: ObjectiveFactory) -> ObjectiveFactory:
    """Make ``method: {name: <name>}`` available to recipes; ``factory(options)`` builds the objective."""
    if name in OBJECTIVES:
        raise ValueError(f"training method {name!r} is already registered")
    OBJECTIVES[name] = factory
    return factory


def build_objective(name: str, options: Mapping[str, Any]) -> Objective:
    if name not in OBJECTIVES:
        raise ObjectiveError(f"method.name: unknown training method '{name}'; known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name](options)
