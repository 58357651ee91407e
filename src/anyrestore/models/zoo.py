"""Models that ship inside the package, by name, and resolving ``--model FILE|NAME``.

Nothing is ever downloaded: a name refers to a safetensors file in ``anyrestore/weights/``.
:func:`resolve_model` is the one way every command (``restore``, ``serve``, ``analyze``, ``mac``,
``info``, ``export``) and ``anyrestore.load_model`` open a model. Files that hold more than one network
(an ABAIR bundle: backbone, adapters, estimator) are recognised by the formats listed in
:data:`PLUGINS`, which :func:`load_plugins` imports; no registration happens as a side effect of
importing anything.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from anyrestore.models.checkpoint import CHECKPOINT_SUFFIXES, CheckpointError, LoadedModel, load_model


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    filename: str
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {}
DEFAULT_MODEL = "default"


def register_embedded(model: EmbeddedModel) -> None:
    EMBEDDED[model.name] = model


_V2 = (
    "ContextNAFNet (2.32M parameters: a NAFNet conditioned on a whole-image thumbnail and on JPEG "
    "quantisation tables, seven low-rank experts blended by an estimator) trained on CPU on the photo "
    "manifest's train split: noise, blur, motion blur, JPEG, haze, rain, low light and mixtures; "
    "29.44 dB against v1's 28.70 on the frozen test split (docs/default-model-v2.md)"
)
register_embedded(EmbeddedModel(DEFAULT_MODEL, "default-v2.safetensors", f"the default model, v2: {_V2}"))
register_embedded(
    EmbeddedModel("default-v2", "default-v2.safetensors", f"default model v2 (the default): {_V2}")
)
register_embedded(
    EmbeddedModel(
        "default-v1",
        "default-v1.safetensors",
        "the first default model, kept for comparison: CurveNAFNet (2.94M parameters: JPEG deblocking and "
        "dequantisation, tone curves from a thumbnail, blind deblurring, then a NAFNet; run with the flips "
        "self-ensemble) trained on CPU on 27 photos; not motion blur (docs/default-model.md)",
    )
)


@dataclass(frozen=True)
class FormatPlugin:
    """A file format that holds more than one network: how to recognise a file and load it whole."""

    name: str
    recognises: Callable[[Path], bool]
    load: Callable[..., LoadedModel]  # load(path, device=...) -> LoadedModel


# The one list of such formats, as "module:attribute" of a FormatPlugin. The methods build on the models,
# so the models name them here rather than import them; load_plugins() imports them when a file is opened.
PLUGINS: tuple[str, ...] = (
    "anyrestore.methods.abair.bundle:BUNDLE_FORMAT",
    "anyrestore.adapters.io:ADAPTED_FORMAT",
)


@functools.cache
def load_plugins() -> tuple[FormatPlugin, ...]:
    """The :class:`FormatPlugin` objects that :data:`PLUGINS` names, in order (imported once)."""
    plugins = []
    for entry in PLUGINS:
        module, _, attribute = entry.partition(":")
        plugin = getattr(importlib.import_module(module), attribute)
        if not isinstance(plugin, FormatPlugin):
            raise TypeError(f"{entry} is not a FormatPlugin")
        plugins.append(plugin)
    return tuple(plugins)


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


def _load_file(
    path: Path, device: str | torch.device, architecture: str | None, prefer_ema: bool
) -> LoadedModel:
    for plugin in load_plugins():
        if plugin.recognises(path):
            return plugin.load(path, device=device)
    return load_model(path, device=device, architecture=architecture, prefer_ema=prefer_ema)


def resolve_model(
    spec: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    architecture: str | None = None,
    prefer_ema: bool = True,
) -> LoadedModel:
    """Load ``spec``: an existing checkpoint path, or the name of an embedded model (default: the default).

    A file of a :data:`PLUGINS` format loads whole (an ABAIR bundle as its blended model, adapters and
    estimator included); any other goes to the checkpoint loader (``architecture``, ``prefer_ema``).
    """
    if spec is None:
        spec = DEFAULT_MODEL
    path = Path(spec)
    if path.exists():
        return _load_file(path, device, architecture, prefer_ema)
    if str(spec) not in EMBEDDED and path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"{path}: no such file")
    return _load_file(embedded_path(str(spec)), device, architecture, prefer_ema)
