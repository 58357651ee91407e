"""Restoration backbones, one file each, registered in :mod:`anyrestore.models.registry`."""

from anyrestore.models import promptir  # noqa: F401  (registers promptir, ram_promptir)
from anyrestore.models.registry import (
    ARCHITECTURES,
    Architecture,
    build_model,
    count_parameters,
    get_architecture,
    register_architecture,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "build_model",
    "count_parameters",
    "get_architecture",
    "register_architecture",
]
