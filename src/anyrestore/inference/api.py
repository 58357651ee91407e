"""One-call restoration for scripts and notebooks: ``anyrestore.restore(path_or_image, model=...)``.

The restorer built for a model spec (a file, an embedded name or ``None``) and a set of options is kept,
so calling :func:`restore` in a loop loads the model and sizes its tiles once. A file is reloaded when it
changes on disk. For full control, build a :class:`~anyrestore.Restorer` once and call it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import torch

from anyrestore.inference.restorer import Restorer
from anyrestore.io import ImageData, read_image
from anyrestore.models.checkpoint import LoadedModel
from anyrestore.models.zoo import resolve_model

CACHE_SIZE = 2  # models kept alive by restore(); each may hold hundreds of MB
_restorers: OrderedDict[Hashable, Restorer] = OrderedDict()


def _cache_key(model: str | os.PathLike[str] | None, options: dict[str, Any]) -> Hashable | None:
    """What identifies a restorer: the model (a file by its real path, size and mtime) and the options;
    ``None`` for options that cannot be compared (they are not cached)."""
    spec: str | None = None if model is None else os.fspath(model)
    stamp = None
    if spec is not None and Path(spec).is_file():
        stat = Path(spec).stat()
        spec, stamp = str(Path(spec).resolve()), (stat.st_mtime_ns, stat.st_size)
    values = tuple(sorted((k, str(v) if isinstance(v, torch.device) else v) for k, v in options.items()))
    try:
        hash(values)
    except TypeError:
        return None
    return spec, stamp, values


def cached_restorer(model: str | os.PathLike[str] | None = None, **options: Any) -> Restorer:
    """The :class:`Restorer` for ``model`` and ``options``, built on first use and then reused."""
    key = _cache_key(model, options)
    if key is not None and key in _restorers:
        _restorers.move_to_end(key)
        return _restorers[key]
    restorer = Restorer(resolve_model(model), **options)
    if key is not None:
        _restorers[key] = restorer
        while len(_restorers) > CACHE_SIZE:
            _restorers.popitem(last=False)
    return restorer


def clear_cache() -> None:
    """Drop the restorers :func:`restore` keeps (frees their models' memory)."""
    _restorers.clear()


def restore(
    image: str | os.PathLike[str] | ImageData | torch.Tensor,
    model: str | os.PathLike[str] | LoadedModel | Restorer | None = None,
    **options: Any,
) -> ImageData | torch.Tensor:
    """Restore one image (a path, an :class:`ImageData` or a [0, 1] tensor) with ``model``.

    ``model`` is a checkpoint path, an embedded model name (``None``: the default model), a
    :class:`LoadedModel` or a ready :class:`Restorer`; ``options`` are :class:`InferenceOptions` fields.
    A path or name is loaded once and kept with its options (see :func:`cached_restorer`).
    A path or :class:`ImageData` gives back an :class:`ImageData` (alpha, bit depth and format kept);
    a tensor gives back a tensor of the same layout.
    """
    if isinstance(model, Restorer):
        restorer = model
    elif isinstance(model, LoadedModel):
        restorer = Restorer(model, **options)
    else:
        restorer = cached_restorer(model, **options)
    if isinstance(image, torch.Tensor):
        return restorer(image)
    data = image if isinstance(image, ImageData) else read_image(Path(image))
    return data.with_pixels(restorer(data.pixels, jpeg_tables=data.jpeg_tables))
