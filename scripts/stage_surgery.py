"""What the scripts that grow the default model's CurveNAFNet share (``curve_from_nafnet.py``,
``add_deblur_stage.py``, ``add_deblock_stage.py``): the training photos, a model with one more stage,
and writing it once it is checked to restore as the model it grew from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyrestore.models.checkpoint import LoadedModel, load_model, save_model
from anyrestore.models.descriptor import ModelDescriptor

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


def photo_paths(photo_dir: Path) -> list[Path]:
    """The .png/.jpg files of ``photo_dir`` in name order; none is an error."""
    paths = [p for p in sorted(photo_dir.iterdir()) if p.suffix.lower() in PHOTO_SUFFIXES]
    if not paths:
        raise SystemExit(f"{photo_dir}: no .png or .jpg photos")
    return paths


def with_new_stage(
    source: str, stage: str, settings: dict[str, Any]
) -> tuple[LoadedModel, ModelDescriptor, nn.Module]:
    """``source`` (a curve_nafnet without the ``stage`` module) rebuilt with ``settings`` added to its
    configuration: every weight it had loaded, the new stage fresh. Returns the loaded source too."""
    loaded = load_model(source)
    if loaded.descriptor.architecture != "curve_nafnet" or getattr(loaded.module, stage, None) is not None:
        raise SystemExit(f"{source}: not a curve_nafnet without a {stage} stage")
    descriptor = ModelDescriptor.for_architecture("curve_nafnet", {**loaded.descriptor.config, **settings})
    model = descriptor.build().eval()
    missing, unexpected = model.load_state_dict(loaded.module.state_dict(), strict=False)
    if unexpected or any(not k.startswith(stage + ".") for k in missing):
        raise SystemExit(f"{source}: weights do not fit (missing {missing}, unexpected {unexpected})")
    return loaded, descriptor, model


def save_if_close(
    out: str, descriptor: ModelDescriptor, model: nn.Module, reference: nn.Module, tolerance: float, what: str
) -> float:
    """Write ``model`` to ``out`` if it restores a random image within ``tolerance`` of ``reference``
    (named ``what`` in the error); returns the largest difference."""
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        gap = float((model(x) - reference(x)).abs().max())
    if gap > tolerance:
        raise SystemExit(f"the new model differs from {what} by {gap:.2e}")
    save_model(out, descriptor, model, model)
    return gap
