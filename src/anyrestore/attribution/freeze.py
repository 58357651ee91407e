"""From a unit ranking to which parameters fine-tune (RAM: the top 30% of PromptIR's units, 10% of SwinIR's).

A parameter trains iff its immediate owner module is one of the first floor(ratio * L) ranked units. Names
are resolved on the bare model, so a plan applies unchanged to a DDP-, ``torch.compile``- or
normalisation-wrapped model (whose parameters are the bare model's own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from anyrestore.attribution.ranking import Ranking
from anyrestore.attribution.units import AttributionError, attribution_units, owner_name
from anyrestore.models.normalize import bare_model


@dataclass(frozen=True)
class FreezePlan:
    """All units of a model (model order) and the selected, trainable ones."""

    units: tuple[str, ...]
    trainable: frozenset[str]
    ratio: float

    def _check(self, model: nn.Module) -> nn.Module:
        bare = bare_model(model)
        if tuple(attribution_units(bare)) != self.units:
            raise AttributionError("this freeze plan was made for a different model (its units differ)")
        return bare

    def apply(self, model: nn.Module) -> str:
        """Set ``requires_grad`` on every parameter of ``model`` per the plan; returns :meth:`summary`."""
        for name, param in self._check(model).named_parameters():
            param.requires_grad_(owner_name(name) in self.trainable)
        return self.summary(model)

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the plan trains (what goes to the optimiser)."""
        bare = self._check(model)
        return [p for name, p in bare.named_parameters() if owner_name(name) in self.trainable]

    def summary(self, model: nn.Module) -> str:
        """'N of L units, P of Q parameters (x%) trainable' for ``model`` under this plan."""
        bare = self._check(model)
        total = chosen = 0
        for name, param in bare.named_parameters():
            total += param.numel()
            if owner_name(name) in self.trainable:
                chosen += param.numel()
        share = 100.0 * chosen / total if total else 0.0
        return (
            f"{len(self.trainable)} of {len(self.units)} units, "
            f"{chosen:,} of {total:,} parameters ({share:.2f}%) trainable"
        )


def freeze_plan(model: nn.Module, ranking: Ranking | Sequence[str], ratio: float) -> FreezePlan:
    """Plan training the first floor(ratio * L) units of ``ranking`` (L = the model's unit count).

    The ranking must list exactly the model's units (names of the bare model); anything else is an error
    rather than a silently frozen network.
    """
    units = attribution_units(model)
    if isinstance(ranking, Ranking):
        ranked = ranking
    else:
        names = tuple(ranking)
        ranked = Ranking(names, (0.0,) * len(names), (-1,) * len(names))
    known = set(units)
    unknown = [u for u in ranked.units if u not in known]
    if unknown:
        raise AttributionError(
            f"ranking names {len(unknown)} unit(s) the model does not have, e.g. '{unknown[0]}' "
            f"(model units look like '{units[0]}')"
        )
    if len(ranked.units) != len(units):
        missing = next(u for u in units if u not in set(ranked.units))
        raise AttributionError(
            f"ranking lists {len(ranked)} of the model's {len(units)} units (missing '{missing}')"
        )
    count = ranked.top_count(ratio)
    return FreezePlan(tuple(units), frozenset(ranked.units[:count]), ratio)
