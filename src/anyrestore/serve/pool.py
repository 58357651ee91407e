"""The models a server offers: listed up front, loaded once on first use, run one request at a time.

The optional degradation-analysis hook (``analyze(image)``, found by
:func:`anyrestore.inference.hooks.find_analyzer`, as ``anyrestore analyze`` finds it): a model that has
it gets its analysis shown; any other model simply has none. ``/api/models`` reports it for every model,
loading a model not yet loaded to find out, so the list and ``/api/analyze`` always agree.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anyrestore.errors import AnyRestoreError
from anyrestore.inference import Restorer
from anyrestore.inference.hooks import find_analyzer
from anyrestore.models.checkpoint import LoadedModel
from anyrestore.serve.errors import ServeError


@dataclass(frozen=True)
class ModelEntry:
    """One choice on the page: the id the page sends back, what it shows, and what to load."""

    id: str
    label: str
    description: str
    spec: str | None  # for resolve_model; None for models added already loaded


def _as_weights(result: Any) -> dict[str, float]:
    """``analyze()``'s mapping as plain floats, largest first; anything else is a clear error."""
    if not isinstance(result, Mapping):
        raise ServeError(
            f"analyze() returned {type(result).__name__}, expected a dict of degradation weights"
        )
    weights = {}
    for name, value in result.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ServeError(f"analyze() weight {name!r} has {value.numel()} values, expected one")
            value = value.item()
        weights[str(name)] = float(value)
    return dict(sorted(weights.items(), key=lambda kv: -kv[1]))


class ModelPool:
    """Embedded models plus the given checkpoints; each loaded once and cached, inference serialised.

    One lock covers loading and running: requests for two models never hold both in flight at once
    (memory stays bounded), and a model is never run from two threads (tiling state is per restorer).
    """

    def __init__(
        self,
        specs: Sequence[str] = (),
        *,
        device: str = "auto",
        precision: str = "fp32",
        tile: int | None = None,
        include_embedded: bool = True,
    ) -> None:
        self.device, self.precision, self.tile = device, precision, tile
        self._entries: dict[str, ModelEntry] = {}
        self._loaded: dict[str, LoadedModel] = {}
        self._restorers: dict[str, Restorer] = {}
        self._lock = threading.Lock()
        self.default_id: str | None = None
        for spec in specs:
            self.add_spec(spec)
        if include_embedded:
            self._add_embedded()
        if self.default_id is None and self._entries:
            self.default_id = next(iter(self._entries))

    # ------------------------------------------------------------------ listing

    def _unique_id(self, base: str) -> str:
        candidate, n = base, 2
        while candidate in self._entries:
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def _add_embedded(self) -> None:
        from anyrestore.models.zoo import DEFAULT_MODEL, EMBEDDED, embedded_path

        listed_files = set()
        for name, model in sorted(EMBEDDED.items(), key=lambda kv: (kv[0] != DEFAULT_MODEL, kv[0])):
            if name in self._entries or model.filename in listed_files:
                continue  # already offered, or another name of a file already offered (default-v2)
            try:
                embedded_path(name)
            except AnyRestoreError:
                continue  # listed in the package but its weights are not installed
            self._entries[name] = ModelEntry(name, f"{name} (embedded)", model.description, name)
            listed_files.add(model.filename)
            if name == DEFAULT_MODEL and self.default_id is None:
                self.default_id = name

    def add_spec(self, spec: str) -> str:
        """Add a checkpoint file or embedded name; files are loaded now so a bad one fails at start."""
        from anyrestore.models.zoo import EMBEDDED, resolve_model

        path = Path(spec)
        if not path.exists() and spec in EMBEDDED:
            if spec not in self._entries:
                self._entries[spec] = ModelEntry(spec, f"{spec} (embedded)", EMBEDDED[spec].description, spec)
            self.default_id = self.default_id or spec
            return spec
        loaded = resolve_model(spec, device="cpu")
        return self.add_loaded(path.name, loaded, description=str(path), spec=spec)

    def add_loaded(
        self, name: str, loaded: LoadedModel, *, description: str = "", spec: str | None = None
    ) -> str:
        """Offer an already loaded model under ``name`` (made unique); returns its id."""
        model_id = self._unique_id(name)
        label = f"{name} ({loaded.descriptor.architecture})"
        self._entries[model_id] = ModelEntry(model_id, label, description or label, spec)
        self._loaded[model_id] = loaded
        self.default_id = self.default_id or model_id
        return model_id

    @property
    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def describe(self) -> list[dict[str, Any]]:
        """The JSON the page lists: each model with its architecture and whether ``/api/analyze`` works
        on it (models not loaded yet are loaded to find out, so the answer is never a guess)."""
        out = []
        with self._lock:
            for entry in self._entries.values():
                loaded = self._load(entry.id)
                out.append(
                    {
                        "id": entry.id,
                        "label": entry.label,
                        "description": entry.description,
                        "default": entry.id == self.default_id,
                        "architecture": loaded.descriptor.architecture,
                        "analyze": find_analyzer(loaded) is not None,
                    }
                )
        return out

    # ------------------------------------------------------------------ running

    def _load(self, model_id: str) -> LoadedModel:
        """The :class:`LoadedModel` of ``model_id``, loaded on first use; call with the lock held."""
        from anyrestore.models.zoo import resolve_model

        if model_id not in self._entries:
            known = ", ".join(self._entries) or "none"
            raise ServeError(f"unknown model {model_id!r} (available: {known})", 404)
        if model_id not in self._loaded:
            self._loaded[model_id] = resolve_model(self._entries[model_id].spec, device="cpu")
        return self._loaded[model_id]

    def _restorer(self, model_id: str) -> Restorer:
        """The cached :class:`Restorer` of ``model_id``, built on first use; call with the lock held."""
        if model_id not in self._restorers:
            self._restorers[model_id] = Restorer(
                self._load(model_id), device=self.device, precision=self.precision, tile=self.tile
            )
        return self._restorers[model_id]

    def has_analyzer(self, model_id: str) -> bool:
        with self._lock:
            return find_analyzer(self._load(model_id)) is not None

    def restore(
        self,
        model_id: str,
        pixels: torch.Tensor,
        jpeg_tables: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Restore a (1, 3, H, W) [0, 1] batch with ``model_id`` (``jpeg_tables``: the uploaded JPEG's, for
        models that take side information); returns it on the CPU."""
        with self._lock:
            return self._restorer(model_id)(pixels, jpeg_tables=jpeg_tables).cpu()

    def analyze(self, model_id: str, pixels: torch.Tensor) -> dict[str, float]:
        """Degradation weights of a (1, 3, H, W) [0, 1] image, largest first."""
        with self._lock:
            analyzer = find_analyzer(self._load(model_id))
            if analyzer is None:
                raise ServeError(f"model {model_id!r} has no degradation estimator", 409)
            restorer = self._restorer(model_id)  # puts the model on its device
            with torch.no_grad():
                result = analyzer(pixels.to(restorer.device, torch.float32))
        return _as_weights(result)
