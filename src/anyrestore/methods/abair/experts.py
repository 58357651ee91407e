"""ABAIR's Phases II and III for networks with built-in degradation experts (ContextNAFNet).

ABAIR trains one low-rank adapter per degradation on a frozen backbone, then an estimator that blends
them per image. A :class:`~anyrestore.models.context_nafnet.ContextNAFNet` holds those adapters (its
experts) and the estimator inside one module, so both phases are ordinary training runs of that module:

- ``abair_experts``: only the experts train; each sample switches on the experts of its task (one-hot for
  a single degradation, none for a clean sample, an even split for a mixture), given explicitly as
  ``forward(x, side, experts=...)``, so each expert learns its own degradation, as in ABAIR's Phase II;
- ``abair_experts_estimator``: only the estimator head trains, with cross-entropy against the task's classes
  (an even distribution over a mixture's), as in ABAIR's Phase III; ``restore_weight`` adds the L1 of
  the restoration through the estimator's own blend, which teaches it which blend restores best, and
  ``choice_weight`` (1) scales the cross-entropy: ``choice_weight: 0, restore_weight: 1`` learns the blend
  from restoration alone, for when telling the degradations apart is too hard for the estimator and a
  confident wrong blend restores worse than a soft one.

A task maps to experts by its name (``noise`` -> the ``noise`` expert; ``clean`` -> none) or through the
``tasks`` option (``{blur_noise: [blur, noise]}``); a task that maps to nothing known is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from anyrestore.methods.abair.synthesis import CLEAN
from anyrestore.models.normalize import bare_model
from anyrestore.models.side import side_inputs
from anyrestore.train.objective import (
    Objective,
    ObjectiveError,
    StepContext,
    register_objective,
    train_only,
)


def _experts_of(model: nn.Module, method: str) -> tuple[str, ...]:
    names = getattr(bare_model(model), "expert_names", None)
    if not names:
        raise ObjectiveError(f"method '{method}': {type(bare_model(model)).__name__} has no experts")
    return tuple(names)


class TaskExperts:
    """Maps a batch's task names to (N, K) expert weights over ``experts``."""

    def __init__(self, experts: Sequence[str], tasks: Mapping[str, Sequence[str]], method: str) -> None:
        self.experts, self.tasks, self.method = tuple(experts), dict(tasks), method
        for task, names in self.tasks.items():
            unknown = [n for n in names if n not in self.experts]
            if unknown:
                raise ObjectiveError(
                    f"method.options.tasks.{task}: unknown expert(s) {', '.join(unknown)}; "
                    f"known: {', '.join(self.experts)}"
                )

    def names(self, task: str) -> Sequence[str]:
        if task in self.tasks:
            return self.tasks[task]
        if task == CLEAN:
            return ()
        if task in self.experts:
            return (task,)
        raise ObjectiveError(
            f"method '{self.method}': task '{task}' names no expert; map it in method.options.tasks "
            f"(experts: {', '.join(self.experts)})"
        )

    def weights(self, tasks: Sequence[str], device: torch.device) -> torch.Tensor:
        out = torch.zeros(len(tasks), len(self.experts))
        for i, task in enumerate(tasks):
            names = self.names(task)
            for name in names:
                out[i, self.experts.index(name)] = 1.0 / len(names)
        return out.to(device)

    def targets(self, tasks: Sequence[str], device: torch.device) -> torch.Tensor:
        """(N, 1 + K) class distributions over (clean, *experts)."""
        w = self.weights(tasks, device)
        clean = (w.sum(dim=1, keepdim=True) == 0).to(w.dtype)
        return torch.cat([clean, w], dim=1)


def _tasks_option(method: str, options: Mapping[str, Any]) -> dict[str, list[str]]:
    tasks = options.get("tasks", {}) or {}
    if not isinstance(tasks, Mapping) or not all(
        isinstance(v, Sequence) and not isinstance(v, str) for v in tasks.values()
    ):
        raise ObjectiveError(f"method.options.tasks of '{method}' must map task names to lists of experts")
    return {str(k): [str(n) for n in v] for k, v in tasks.items()}


class ExpertsObjective(Objective):
    """Phase II: train the experts only, each on the samples of its own degradation."""

    method = "abair_experts"

    def __init__(self, tasks: Mapping[str, Sequence[str]]) -> None:
        self.tasks = dict(tasks)
        self.mapping: TaskExperts | None = None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        self.mapping = TaskExperts(_experts_of(model, self.method), self.tasks, self.method)
        prefixes = sorted(
            {name.rpartition(".")[0] for name, _ in model.named_parameters() if ".experts." in name}
        )
        train_only(model, prefixes, self.method)
        return model

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert self.mapping is not None
        lq = batch["lq"]
        weights = self.mapping.weights(list(batch["task"]), lq.device)
        pred = model(lq, experts=weights, **side_inputs(model, lq))
        return ctx.loss(pred, batch["gt"], batch.get("mask"))


class EstimatorObjective(Objective):
    """Phase III: train the estimator head only (one process: it runs outside DDP's forward)."""

    method = "abair_experts_estimator"

    def __init__(
        self, tasks: Mapping[str, Sequence[str]], restore_weight: float = 0.0, choice_weight: float = 1.0
    ) -> None:
        for name, value in (("restore_weight", restore_weight), ("choice_weight", choice_weight)):
            if value < 0:
                raise ObjectiveError(f"method.options.{name} must be >= 0, got {value}")
        if not restore_weight and not choice_weight:
            raise ObjectiveError("method.options: choice_weight and restore_weight cannot both be 0")
        self.tasks, self.restore_weight = dict(tasks), float(restore_weight)
        self.choice_weight = float(choice_weight)
        self.mapping: TaskExperts | None = None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise ObjectiveError(f"method '{self.method}' trains a small head: run it in one process")
        self.mapping = TaskExperts(_experts_of(model, self.method), self.tasks, self.method)
        train_only(model, ["estimator"], self.method)
        return model

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert self.mapping is not None
        lq = batch["lq"]
        side = side_inputs(model, lq)
        logits = bare_model(model).estimate(lq, **side).float()
        target = self.mapping.targets(list(batch["task"]), lq.device)
        choice = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        accuracy = (logits.argmax(dim=1) == target.argmax(dim=1)).float().mean()
        parts = {"choice": choice.detach(), "acc": accuracy.detach()}
        if not self.restore_weight:
            return self.choice_weight * choice, parts
        restored, restore_parts = ctx.loss(model(lq, **side), batch["gt"], batch.get("mask"))
        parts.update({f"restore_{k}": v for k, v in restore_parts.items()})
        return self.choice_weight * choice + self.restore_weight * restored, parts


def _experts(options: Mapping[str, Any]) -> Objective:
    unknown = set(options) - {"tasks"}
    if unknown:
        raise ObjectiveError(f"method 'abair_experts' takes only tasks, got: {', '.join(sorted(unknown))}")
    return ExpertsObjective(_tasks_option("abair_experts", options))


def _estimator(options: Mapping[str, Any]) -> Objective:
    unknown = set(options) - {"tasks", "restore_weight", "choice_weight"}
    if unknown:
        raise ObjectiveError(
            f"method '{EstimatorObjective.method}' takes tasks, restore_weight and choice_weight, "
            f"got: {', '.join(sorted(unknown))}"
        )
    return EstimatorObjective(
        _tasks_option("abair_experts_estimator", options),
        float(options.get("restore_weight", 0)),
        float(options.get("choice_weight", 1)),
    )


register_objective("abair_experts", _experts)
register_objective("abair_experts_estimator", _estimator)
