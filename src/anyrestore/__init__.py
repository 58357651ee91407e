"""anyrestore: blind all-in-one image restoration (RAM, AdaptIR, ABAIR) on shared parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from anyrestore.inference import Restorer, restore
    from anyrestore.models.zoo import resolve_model as load_model

__all__ = ["Restorer", "__version__", "load_model", "restore"]


def __getattr__(name: str) -> Any:
    # Lazy so that ``import anyrestore`` (and the CLI's --help) does not import torch and every model.
    if name == "load_model":
        # What every --model takes: a checkpoint file, an embedded name (None: "default"), or an ABAIR
        # bundle, loaded whole (adapters and estimator).
        from anyrestore.models.zoo import resolve_model as load_model

        return load_model
    if name == "restore":
        import anyrestore.models  # noqa: F401
        from anyrestore.inference import restore

        return restore
    if name == "Restorer":
        import anyrestore.models  # noqa: F401
        from anyrestore.inference import Restorer

        return Restorer
    raise AttributeError(f"module 'anyrestore' has no attribute {name!r}")
