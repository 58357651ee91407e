"""Released restorers of architectures anyrestore does not implement, through the optional ``spandrel``.

The last step of loading a checkpoint: when its keys match none of our architectures, the state_dict
(already read weights-only) goes to spandrel's ``ModelLoader().load_from_state_dict``; what it recognises
(ESRGAN, Real-ESRGAN Compact, SPAN, SCUNet, FBCNN, HAT, DAT, ... the families chaiNNer runs) comes back as a
:class:`LoadedModel` whose descriptor carries spandrel's scale, size multiple, channels and precisions, so
``restore``, ``serve``, ``benchmark`` and ``export`` run it like our own. Without spandrel installed, the
unrecognised-architecture error says how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from anyrestore.models.checkpoint import CheckpointError, LoadedModel
from anyrestore.models.descriptor import ModelDescriptor

PREFIX = "spandrel:"
INSTALL_HINT = (
    "architectures of chaiNNer's spandrel (ESRGAN, SPAN, SCUNet, HAT, DAT, ...) load with "
    "pip install 'anyrestore[spandrel]'"
)


def unavailable_reason() -> str:
    """Why spandrel cannot load models here, as advice; empty when it can."""
    try:
        import spandrel  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name == "spandrel":
            return INSTALL_HINT
        return f"spandrel is installed but does not import ({exc}): install torchvision for this torch"
    except Exception as exc:  # noqa: BLE001 - e.g. a torchvision wheel built for another torch
        return f"spandrel is installed but does not import ({exc}): install torchvision for this torch"
    return ""


def _spandrel() -> Any | None:
    if unavailable_reason():
        return None
    import spandrel

    return spandrel


def spandrel_available() -> bool:
    return _spandrel() is not None


def is_foreign(descriptor: ModelDescriptor) -> bool:
    """True for a model loaded through spandrel (its architecture is not in our registry)."""
    return descriptor.architecture.startswith(PREFIX)


def descriptor_from_spandrel(found: Any) -> ModelDescriptor:
    """Our descriptor for a spandrel ``ImageModelDescriptor``: scale, size multiple, channels, precisions."""
    import spandrel

    precisions = ["fp32"]
    if found.supports_bfloat16:
        precisions.append("bf16")
    if found.supports_half:
        precisions.append("fp16")
    size = found.size_requirements
    extra = {
        "loaded_by": f"spandrel {spandrel.__version__}",
        "family": found.architecture.name,
        "purpose": found.purpose,
    }
    if found.tags:
        extra["tags"] = ", ".join(found.tags)
    if size.minimum or size.square:
        extra["size_requirements"] = f"minimum {size.minimum}, square {size.square}"
    return ModelDescriptor(
        architecture=f"{PREFIX}{found.architecture.id}",
        config={"in_channels": found.input_channels, "out_channels": found.output_channels},
        scale=int(found.scale),
        normalization="none",
        size_multiple=int(size.multiple_of),
        precisions=tuple(precisions),
        extra=extra,
    )


def load_foreign(
    state: dict[str, torch.Tensor], path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> LoadedModel | None:
    """The model spandrel builds from ``state``, or None when spandrel is absent or does not know it."""
    spandrel = _spandrel()
    if spandrel is None:
        return None
    try:
        found = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        return None
    except Exception as exc:  # noqa: BLE001 - spandrel recognised the keys but could not build the model
        raise CheckpointError(f"{path}: spandrel recognised the file but could not load it ({exc})") from None
    if not isinstance(found, spandrel.ImageModelDescriptor):
        raise CheckpointError(
            f"{path}: a {found.architecture.name} {found.purpose} model (spandrel); not an image restorer"
        )
    module = found.model.eval().to(device)
    return LoadedModel(module, descriptor_from_spandrel(found), Path(path), "spandrel")
