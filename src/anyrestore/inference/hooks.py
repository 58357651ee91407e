"""What a loaded model can do besides restoring: the optional analysis hooks, found one way everywhere.

- ``analyze(image) -> {degradation: weight}`` on a (1, 3, H, W) image in [0, 1] on the model's device:
  the per-image degradation mix (an ABAIR bundle's estimator; the stage estimates of default-v1);
- ``segment_logits(x) -> (N, S, H, W)`` with ``seg_classes`` (S names): the per-pixel map (an ABAIR
  bundle's segmentation head).

The hooks are looked up on the :class:`LoadedModel`, its module, and the bare network inside
normalisation / DDP wrappers. An object that has a hook's method but not what it needs (an ABAIR model
before its estimator is trained) says so with ``can_analyze`` / ``can_segment`` set to False. ``anyrestore
analyze``, ``anyrestore serve`` (``/api/models`` and ``/api/analyze``) all ask these two functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from anyrestore.models.checkpoint import LoadedModel
from anyrestore.models.normalize import bare_model

Analyzer = Callable[[torch.Tensor], Mapping[str, Any]]
Segmenter = tuple[Callable[[torch.Tensor], torch.Tensor], Sequence[str]]


def _holders(loaded: LoadedModel) -> Iterator[Any]:
    yield from (loaded, loaded.module, bare_model(loaded.module))


def find_analyzer(loaded: LoadedModel) -> Analyzer | None:
    """The model's ``analyze`` callable, if it can estimate degradations; else ``None``."""
    for obj in _holders(loaded):
        analyze = getattr(obj, "analyze", None)
        if callable(analyze):
            return analyze if getattr(obj, "can_analyze", True) else None
    return None


def find_segmenter(loaded: LoadedModel) -> Segmenter | None:
    """``(segment_logits, seg_classes)`` if the model draws per-pixel degradation maps; else ``None``."""
    for obj in _holders(loaded):
        segment = getattr(obj, "segment_logits", None)
        if callable(segment):
            return (segment, tuple(obj.seg_classes)) if getattr(obj, "can_segment", True) else None
    return None
