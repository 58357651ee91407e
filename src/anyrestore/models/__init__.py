"""Restoration backbones, one file each, registered in :mod:`anyrestore.models.registry`."""

from anyrestore.models import (  # noqa: F401  (registrations)
    context_nafnet,
    curve_nafnet,
    edt,
    ipt,
    nafnet,
    promptir,
    restormer,
    swinir,
)
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
