"""ABAIR's recipe options (``method.options``), checked as strictly as the rest of a recipe.

One recipe describes a whole ABAIR model: its top-level sections are Phase I's training run (backbone,
clean photos, schedule), and ``method.options`` holds what the three phases share (the degradations,
in adapter order) and the settings of Phases II and III, from which :mod:`anyrestore.methods.abair.pipeline`
derives their runs. Errors name the dotted key (``method.options.adapters.rank``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from anyrestore.data.spec import DatasetSpec
from anyrestore.methods.abair.errors import ABAIRError
from anyrestore.methods.abair.model import BLEND_MODES, LoRAConfig
from anyrestore.methods.abair.synthesis import (
    CLEAN,
    DEFAULT_DEGRADATIONS,
    Degradation,
    Synthesizer,
    check_name,
    parse_degradations,
)
from anyrestore.train.schema import SchemaError, convert, from_dict

WHERE = "method.options"


@dataclass
class SynthesisSection:
    """Phase I's mode probabilities (normalised) and limits; ``tasks``: the tasks whose samples are
    degraded on the fly from their clean image (the others keep their input: real paired data)."""

    clean: float = 0.05
    single: float = 0.35
    mixed: float = 0.2
    cutmix: float = 0.4
    max_mixed: int = 3
    cutmix_regions: int = 3
    cutmix_area: tuple[float, float] = (0.1, 0.5)
    tasks: list[str] = field(default_factory=lambda: [CLEAN])


@dataclass
class PhaseRun:
    """A derived training run: schedule, global batch, learning rate (cosine to ``min_lr``), data."""

    iterations: int = 2000
    batch_size: int | None = None  # None: Phase I's
    lr: float = 2e-4
    warmup: int = 0
    min_lr: float = 1e-6


@dataclass
class AdaptersSection(PhaseRun):
    """Phase II: one LoRA per degradation. ``data``: real training sets per degradation name (their
    samples are used as they are); a degradation without an entry trains on Phase I's clean photos,
    synthesised with that degradation alone."""

    rank: int = 4
    alpha: float | None = None  # None: rank (scaling 1)
    targets: list[str] = field(default_factory=lambda: ["q", "k", "v"])
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class EstimatorSection(PhaseRun):
    """Phase III: the estimator's architecture, its sample mix, its run. ``data``: training sets (default:
    Phase I's clean photos plus every real set given to the adapters)."""

    lr: float = 1e-3
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 96])
    hidden: int = 64
    crop: int = 256
    max_pixels: int = 512 * 512
    clean: float = 0.1
    single: float = 0.6
    mixed: float = 0.3
    data: list[DatasetSpec] | None = None


@dataclass
class ABAIROptions:
    """``method.options`` of every ABAIR phase (``bundle`` and ``adapter`` are set by the pipeline)."""

    degradations: dict[str, Any] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_DEGRADATIONS.items()}
    )
    seg_weight: float = 0.1
    seg_hidden: int | None = None
    aliases: dict[str, Any] = field(default_factory=dict)
    blend: Literal["soft", "onehot", "sum", "average", "backbone"] = "soft"
    synthesis: SynthesisSection = field(default_factory=SynthesisSection)
    adapters: AdaptersSection = field(default_factory=AdaptersSection)
    estimator: EstimatorSection = field(default_factory=EstimatorSection)
    bundle: str | None = None
    adapter: str | None = None

    # ------------------------------------------------------------------------------ derived parts

    def parsed_degradations(self) -> tuple[Degradation, ...]:
        return parse_degradations(self.degradations, f"{WHERE}.degradations")

    @property
    def names(self) -> list[str]:
        return list(self.degradations)

    def lora(self) -> LoRAConfig:
        a = self.adapters
        return LoRAConfig(a.rank, float(a.alpha if a.alpha is not None else a.rank), tuple(a.targets))

    def pretrain_synthesizer(self) -> Synthesizer:
        s = self.synthesis
        return Synthesizer(
            self.parsed_degradations(),
            clean=s.clean,
            single=s.single,
            mixed=s.mixed,
            cutmix=s.cutmix,
            max_mixed=s.max_mixed,
            cutmix_regions=s.cutmix_regions,
            cutmix_area=s.cutmix_area,
        )

    def adapter_synthesizer(self, name: str) -> Synthesizer:
        """Only degradation ``name``, on the whole image, every time."""
        chosen = [d for d in self.parsed_degradations() if d.name == name]
        if not chosen:
            raise ABAIRError(f"{WHERE}.adapter: '{name}' is none of the degradations {', '.join(self.names)}")
        return Synthesizer(chosen, clean=0.0, single=1.0, mixed=0.0, cutmix=0.0)

    def estimator_synthesizer(self) -> Synthesizer:
        e = self.estimator
        return Synthesizer(
            self.parsed_degradations(),
            clean=e.clean,
            single=e.single,
            mixed=e.mixed,
            cutmix=0.0,
            max_mixed=self.synthesis.max_mixed,
        )

    def adapter_sets(self, name: str) -> list[DatasetSpec] | None:
        """The real training sets given for adapter ``name`` (None: synthesise from clean photos)."""
        if name not in self.adapters.data:
            return None
        return convert(list[DatasetSpec], self.adapters.data[name], f"{WHERE}.adapters.data.{name}")


def parse_options(options: Mapping[str, Any], where: str = WHERE) -> ABAIROptions:
    """Validated :class:`ABAIROptions`; every problem is one :class:`ABAIRError` naming its key."""
    try:
        parsed = from_dict(ABAIROptions, dict(options), where)
        for key, value in parsed.adapters.data.items():
            convert(list[DatasetSpec], value, f"{where}.adapters.data.{key}")
    except SchemaError as exc:
        raise ABAIRError(str(exc)) from None
    degradations = parsed.parsed_degradations()
    names = [d.name for d in degradations]
    unknown = sorted(set(parsed.adapters.data) - set(names))
    if unknown:
        raise ABAIRError(
            f"{where}.adapters.data.{unknown[0]}: not one of the degradations {', '.join(names)}"
        )
    for task, target in parsed.aliases.items():
        if not isinstance(target, str) or (target != CLEAN and target not in names):
            raise ABAIRError(
                f"{where}.aliases.{task}: '{target}' is none of the classes clean, {', '.join(names)}"
            )
    if parsed.adapter is not None:
        check_name(parsed.adapter, f"{where}.adapter")
    checks = [
        (parsed.seg_weight >= 0, "seg_weight", "must be >= 0"),
        (parsed.adapters.rank >= 1, "adapters.rank", "must be >= 1"),
        (bool(parsed.adapters.targets), "adapters.targets", "needs at least one of q, k, v"),
        (set(parsed.adapters.targets) <= {"q", "k", "v"}, "adapters.targets", "must be among q, k, v"),
        (parsed.synthesis.max_mixed >= 2, "synthesis.max_mixed", "must be >= 2"),
        (
            0 < parsed.synthesis.cutmix_area[0] <= parsed.synthesis.cutmix_area[1] <= 1,
            "synthesis.cutmix_area",
            "must be 0 < low <= high <= 1",
        ),
        (parsed.blend in BLEND_MODES, "blend", f"must be one of {', '.join(BLEND_MODES)}"),
    ]
    for section in ("adapters", "estimator"):
        run = getattr(parsed, section)
        checks += [
            (run.iterations >= 1, f"{section}.iterations", "must be >= 1"),
            (run.batch_size is None or run.batch_size >= 1, f"{section}.batch_size", "must be >= 1"),
            (run.lr > 0, f"{section}.lr", "must be > 0"),
            (0 <= run.warmup < run.iterations, f"{section}.warmup", "must lie in 0..iterations-1"),
        ]
    for ok, key, problem in checks:
        if not ok:
            raise ABAIRError(f"{where}.{key}: {problem}")
    return parsed
