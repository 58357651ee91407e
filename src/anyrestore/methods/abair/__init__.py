"""ABAIR (Serrano-Lozano et al. 2024, "Adaptive Blind All-in-One Image Restoration"), on shared parts.

Phase I pre-trains a Restormer/PromptIR backbone on clean photos degraded on the fly (single, mixed and
region-mixed "degradation CutMix") with an auxiliary per-pixel segmentation head; Phase II trains one
LoRA adapter per degradation on the frozen backbone; Phase III trains a small estimator whose per-image
distribution blends the adapters (soft weights, one-hot, or the sum / average baselines). The choices the
paper leaves open are ours and documented in ``docs/abair.md``.

- :func:`build` / :func:`add_degradation` (:mod:`.pipeline`): the phases as engine runs, into a bundle;
- :class:`ABAIRModel`, :func:`load_bundle`, :func:`save_bundle` (:mod:`.model`, :mod:`.bundle`);
- the objectives ``abair_pretrain``, ``abair_adapter``, ``abair_estimator`` (:mod:`.objectives`,
  registered on import of this package).
"""

from anyrestore.methods.abair import experts, objectives  # noqa: F401  (register the training objectives)
from anyrestore.methods.abair.bundle import (
    Bundle,
    describe_bundle,
    export_adapter,
    is_bundle,
    load_bundle,
    load_bundle_model,
    read_bundle,
    save_bundle,
    write_bundle,
)
from anyrestore.methods.abair.errors import ABAIRError
from anyrestore.methods.abair.heads import DegradationEstimator, SegHead
from anyrestore.methods.abair.model import BLEND_MODES, ABAIRModel, LoRAConfig
from anyrestore.methods.abair.options import ABAIROptions, parse_options
from anyrestore.methods.abair.pipeline import add_degradation, build
from anyrestore.methods.abair.synthesis import (
    DEFAULT_DEGRADATIONS,
    Degradation,
    Synthesizer,
    parse_degradations,
    parse_variant,
)

__all__ = [
    "BLEND_MODES",
    "DEFAULT_DEGRADATIONS",
    "ABAIRError",
    "ABAIRModel",
    "ABAIROptions",
    "Bundle",
    "Degradation",
    "DegradationEstimator",
    "LoRAConfig",
    "SegHead",
    "Synthesizer",
    "add_degradation",
    "build",
    "describe_bundle",
    "export_adapter",
    "is_bundle",
    "load_bundle",
    "load_bundle_model",
    "parse_degradations",
    "parse_options",
    "parse_variant",
    "read_bundle",
    "save_bundle",
    "write_bundle",
]
