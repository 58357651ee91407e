"""ABAIR Phases II and III on a network with built-in experts (methods/abair/experts.py): what each
estimator objective's loss is made of, and that only the estimator trains."""

from __future__ import annotations

import pytest
import torch

from anyrestore.methods.abair.experts import EstimatorObjective
from anyrestore.models.context_nafnet import ContextNAFNet
from anyrestore.train import GeneratorBank, StepContext, WeightedLoss
from anyrestore.train.objective import ObjectiveError
from anyrestore.train.recipe import LossTerm

TINY = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1], "context_width": 8}


def _parts(objective: EstimatorObjective) -> tuple[float, dict[str, torch.Tensor], ContextNAFNet]:
    torch.manual_seed(0)
    model = objective.prepare_model(ContextNAFNet(**TINY))
    with torch.no_grad():  # as if trained: fresh experts and NAFNet block scales are zero, so no blend
        for p in model.parameters():  # would change the output
            p.normal_(0.0, 0.2)
    gt = torch.rand(2, 3, 32, 32)
    batch = {"lq": (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1), "gt": gt, "task": ["noise", "clean"]}
    cpu = torch.device("cpu")
    ctx = StepContext(1, cpu, WeightedLoss.from_terms([LossTerm("l1")]), GeneratorBank(0, 0, cpu))
    loss, parts = objective.loss(model, batch, ctx)
    loss.backward()
    return float(loss.detach()), parts, model


def test_estimator_loss_weighs_the_choice_and_the_restoration() -> None:
    """Cross-entropy alone (ABAIR's Phase III), restoration alone (choice_weight 0: the blend that restores
    best), or both; in every case only the estimator head gets gradients."""
    ce, ce_parts, _ = _parts(EstimatorObjective({}))
    assert ce == pytest.approx(float(ce_parts["choice"])) and "restore_l1" not in ce_parts
    blend, parts, model = _parts(EstimatorObjective({}, restore_weight=1.0, choice_weight=0.0))
    assert blend == pytest.approx(float(parts["restore_l1"])) and blend != pytest.approx(ce)
    both, parts, _ = _parts(EstimatorObjective({}, restore_weight=2.0, choice_weight=0.5))
    assert both == pytest.approx(0.5 * float(parts["choice"]) + 2.0 * float(parts["restore_l1"]))
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert trained and all(n.startswith("estimator.") for n in trained)
    with pytest.raises(ObjectiveError, match="cannot both be 0"):
        EstimatorObjective({}, restore_weight=0.0, choice_weight=0.0)
    with pytest.raises(ObjectiveError, match="choice_weight must be >= 0"):
        EstimatorObjective({}, choice_weight=-1.0)
