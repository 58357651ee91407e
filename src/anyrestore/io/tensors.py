"""safetensors files: their tensors and string metadata, read in one place."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from anyrestore.errors import AnyRestoreError

if TYPE_CHECKING:
    import torch


def read_safetensors(
    path: str | os.PathLike[str], error: Callable[[str], Exception] = AnyRestoreError
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor of a safetensors file (on the CPU) and its metadata (``{}`` when it has none).

    A file that cannot be read raises ``error("<path>: not a readable safetensors file (<why>)")``, so
    each caller reports it with its own error type.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    except Exception as exc:
        raise error(f"{path}: not a readable safetensors file ({exc})") from None
    return tensors, metadata


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The metadata of a ``.safetensors`` file from its header alone (no tensor is read); ``None`` when
    ``path`` is no readable safetensors file."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception:  # noqa: BLE001 - unreadable: no metadata to report
        return None
