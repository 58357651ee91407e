"""What a restorer is, in a few fields: enough to rebuild it and to run it correctly.

The descriptor travels with our checkpoints (JSON in the safetensors metadata under
``anyrestore.descriptor``) and is recovered from the keys and shapes of foreign checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from anyrestore.models.registry import get_architecture

METADATA_KEY = "anyrestore.descriptor"


@dataclass(frozen=True)
class ModelDescriptor:
    """Architecture, its constructor kwargs, and how the inference layer must feed it."""

    architecture: str
    config: dict[str, Any] = field(default_factory=dict)
    scale: int = 1
    normalization: str = "none"
    size_multiple: int = 1
    precisions: tuple[str, ...] = ("fp32",)
    adapters: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_architecture(
        cls, name: str, config: dict[str, Any] | None = None, **extra: Any
    ) -> ModelDescriptor:
        """The descriptor the registry implies for ``name`` built with ``config``."""
        arch = get_architecture(name)
        config = dict(config or {})
        return cls(
            architecture=name,
            config=config,
            scale=int(arch.scale(config)),
            normalization=arch.normalization,
            size_multiple=int(arch.size_multiple(config)),
            precisions=tuple(arch.precisions),
            extra=dict(extra),
        )

    def build(self) -> nn.Module:
        """A freshly initialised module of this architecture and config."""
        return get_architecture(self.architecture).build(**self.config)

    def to_json(self) -> str:
        data = asdict(self)
        data["precisions"] = list(self.precisions)
        data["adapters"] = list(self.adapters)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelDescriptor:
        data = json.loads(text)
        data["config"] = dict(data.get("config", {}))
        data["precisions"] = tuple(data.get("precisions", ("fp32",)))
        data["adapters"] = tuple(data.get("adapters", ()))
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown descriptor field(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_metadata(self) -> dict[str, str]:
        return {METADATA_KEY: self.to_json()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None) -> ModelDescriptor | None:
        if not metadata or METADATA_KEY not in metadata:
            return None
        return cls.from_json(metadata[METADATA_KEY])

    def summary(self) -> str:
        """Human-readable multi-line description (``anyrestore info``)."""
        cfg = ", ".join(f"{k}={v}" for k, v in sorted(self.config.items())) or "(paper defaults)"
        lines = [
            f"architecture   {self.architecture}",
            f"config         {cfg}",
            f"scale          x{self.scale}",
            f"normalization  {self.normalization}",
            f"size multiple  {self.size_multiple}",
            f"precisions     {', '.join(self.precisions)}",
        ]
        if self.adapters:
            lines.append(f"adapters       {', '.join(a.get('method', '?') for a in self.adapters)}")
        for key, value in sorted(self.extra.items()):
            lines.append(f"{key:<14} {value}")
        return "\n".join(lines)
