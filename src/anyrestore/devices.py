"""Choosing the torch device: the one place that turns ``auto`` / ``cpu`` / ``cuda:1`` into a device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from anyrestore.errors import AnyRestoreError

if TYPE_CHECKING:
    import torch

_NAMES = "auto, cpu, cuda, cuda:N or mps"


class DeviceError(AnyRestoreError, ValueError):
    """A device name torch does not know, or a device that is not there."""


def resolve_device(device: str | torch.device | None = None, local_rank: int | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else the CPU. ``local_rank`` gives ``auto`` and a bare
    ``cuda`` this process's GPU (DDP). A malformed name (``gpu0``), an unavailable device or an index past
    the last is a one-line :class:`DeviceError`."""
    import torch

    if device is None or device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = "cuda"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {device!r} (use {_NAMES})") from None
    if resolved.type == "cpu":
        return resolved
    backend = getattr(torch, resolved.type, None)
    if not callable(getattr(backend, "is_available", None)):
        raise DeviceError(f"device {str(device)!r} is not supported (use {_NAMES})")
    if not backend.is_available():
        raise DeviceError(f"device {str(device)!r} requested but no {resolved.type} device is available")
    if resolved.index is None and local_rank is not None and resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
    count = backend.device_count() if callable(getattr(backend, "device_count", None)) else 1
    if resolved.index is not None and resolved.index >= count:
        raise DeviceError(
            f"device {str(resolved)!r} requested but there are {count} {resolved.type} device(s)"
        )
    return resolved
