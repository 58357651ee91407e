"""One-call restoration for scripts and notebooks: ``anyrestore.restore(path_or_image, model=...)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from anyrestore.inference.restorer import Restorer
from anyrestore.io import ImageData, read_image
from anyrestore.models.checkpoint import LoadedModel
from anyrestore.models.zoo import resolve_model


def restore(
    image: str | os.PathLike[str] | ImageData | torch.Tensor,
    model: str | os.PathLike[str] | LoadedModel | Restorer | None = None,
    **options: Any,
) -> ImageData | torch.Tensor:
    """Restore one image (a path, an :class:`ImageData` or a [0, 1] tensor) with ``model``.

    ``model`` is a checkpoint path, an embedded model name (``None``: the default model), a
    :class:`LoadedModel` or a ready :class:`Restorer`; ``options`` are :class:`InferenceOptions` fields.
    A path or :class:`ImageData` gives back an :class:`ImageData` (alpha, bit depth and format kept);
    a tensor gives back a tensor of the same layout.
    """
    if isinstance(model, Restorer):
        restorer = model
    else:
        if not isinstance(model, LoadedModel):
            model = resolve_model(model)
        restorer = Restorer(model, **options)
    if isinstance(image, torch.Tensor):
        return restorer(image)
    data = image if isinstance(image, ImageData) else read_image(Path(image))
    return data.with_pixels(restorer(data.pixels))
