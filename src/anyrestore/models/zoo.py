"""Models that ship inside the package, by name, and resolving ``--model FILE|NAME``.

Nothing is ever downloaded: a name refers to a safetensors file in ``anyrestore/weights/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from anyrestore.models.checkpoint import CheckpointError, LoadedModel, load_model


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    filename: str
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {}
DEFAULT_MODEL = "default"


def register_embedded(model: EmbeddedModel) -> None:
    EMBEDDED[model.name] = model


register_embedded(
    EmbeddedModel(
        DEFAULT_MODEL,
        "default.safetensors",
        "compact all-in-one CurveNAFNet (2.94M parameters: JPEG deblocking and dequantisation, tone "
        "curves from a thumbnail, blind deblurring, then a NAFNet; run with the flips self-ensemble) "
        "trained on CPU: noise, Gaussian blur, JPEG, haze, rain, low light and mixtures; not motion "
        "blur (docs/default-model.md)",
    )
)


# Methods whose files hold more than one network (an ABAIR bundle: backbone, adapters, estimator) register
# how to recognise and load them; resolve_model tries these before the plain checkpoint loader.
SPECIAL_LOADERS: list[tuple[Callable[[Path], bool], Callable[..., LoadedModel]]] = []


def register_loader(recognises: Callable[[Path], bool], load: Callable[..., LoadedModel]) -> None:
    """Let ``resolve_model`` open files that ``recognises`` accepts with ``load(path, device=...)``."""
    SPECIAL_LOADERS.append((recognises, load))


def weights_dir() -> Path:
    return Path(str(resources.files("anyrestore") / "weights"))


def embedded_path(name: str) -> Path:
    if name not in EMBEDDED:
        known = ", ".join(sorted(EMBEDDED)) or "none"
        raise CheckpointError(f"{name}: neither a file nor an embedded model (embedded: {known})")
    path = weights_dir() / EMBEDDED[name].filename
    if not path.exists():
        raise CheckpointError(f"{path}: embedded model {name!r} is missing from this installation")
    return path


def resolve_model(
    spec: str | os.PathLike[str] | None = None, *, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load ``spec``: an existing checkpoint path, or the name of an embedded model (default: the default)."""
    if spec is None:
        spec = DEFAULT_MODEL
    path = Path(spec)
    if path.exists():
        for recognises, load in SPECIAL_LOADERS:
            if recognises(path):
                return load(path, device=device)
        return load_model(path, device=device)
    if isinstance(spec, str) and spec in EMBEDDED:
        return load_model(embedded_path(spec), device=device)
    if path.suffix.lower() in (".pth", ".pt", ".ckpt", ".safetensors", ".bin"):
        raise CheckpointError(f"{path}: no such file")
    return load_model(embedded_path(str(spec)), device=device)
