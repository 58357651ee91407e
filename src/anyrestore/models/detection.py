"""Helpers the ``infer_*_config`` functions share to recognise a state_dict from its keys and shapes."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn

from anyrestore.models.registry import StateDict

# (key, shape in the file, shape the model expects)
ShapeMismatch = tuple[str, tuple[int, ...], tuple[int, ...]]

# While recording: the shape mismatches of every config whose keys matched a state_dict exactly.
_NEAR_MISSES: ContextVar[list[list[ShapeMismatch]] | None] = ContextVar("near_misses", default=None)


@contextlib.contextmanager
def recording_near_misses() -> Iterator[list[list[ShapeMismatch]]]:
    """Collect, for each :func:`shapes_match` call inside, whose keys all matched but not every shape,
    the list of mismatched tensors: what a "wrong shape" error reports instead of "unrecognised"."""
    found: list[list[ShapeMismatch]] = []
    token = _NEAR_MISSES.set(found)
    try:
        yield found
    finally:
        _NEAR_MISSES.reset(token)


def describe_mismatches(mismatches: Sequence[ShapeMismatch], limit: int = 6) -> str:
    """``key (file AxB, model CxD), ...`` on one line, the first ``limit`` of them."""

    def dims(shape: tuple[int, ...]) -> str:
        return "x".join(map(str, shape)) or "scalar"

    shown = [f"{k} (file {dims(a)}, model {dims(b)})" for k, a, b in mismatches[:limit]]
    more = f" (+{len(mismatches) - limit} more)" if len(mismatches) > limit else ""
    return ", ".join(shown) + more


def shapes_match(
    state_dict: StateDict,
    build: Callable[..., nn.Module],
    cfg: Mapping[str, Any],
    optional_suffixes: tuple[str, ...] = (),
) -> bool:
    """Whether ``build(**cfg)`` has exactly the keys and shapes of ``state_dict``.

    Keys of the built model ending in one of ``optional_suffixes`` (deterministic buffers that some
    exports drop) may be missing from ``state_dict``. A config the constructor rejects with
    ``ValueError`` or ``RuntimeError`` does not match. The model is built on the meta device, which
    allocates nothing, so the check is cheap even at full size.
    """
    try:
        with torch.device("meta"):
            expected = build(**cfg).state_dict()
    except (ValueError, RuntimeError):
        return False
    if any(k not in expected for k in state_dict):
        return False
    if any(k not in state_dict and not k.endswith(optional_suffixes) for k in expected):
        return False
    mismatches = [
        (k, tuple(state_dict[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    recorder = _NEAR_MISSES.get()
    if mismatches and recorder is not None:
        recorder.append(mismatches)
    return not mismatches


def count_blocks(state_dict: StateDict, prefix: str) -> int:
    """Number of numbered children ``prefix.0``, ``prefix.1``, ... (highest index + 1; 0 if none)."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def expansion_factor(width_hidden: Sequence[tuple[int, int]]) -> float | None:
    """A decimal ``f`` with ``int(width * f) == hidden`` for every (width, hidden) pair.

    Inverts the hidden width of Restormer's GDFN, ``int(dim * ffn_expansion_factor)``. Every fitting
    factor builds the same network; this is the smallest of those with the fewest decimals, or ``None``
    if none with at most 9 decimals fits.
    """
    lo = max(h / c for c, h in width_hidden)
    for decimals in range(10):
        step = 10**decimals
        # lo * step can land just above an integer in floating point, so try the floor as well.
        for cand in (math.floor(lo * step) / step, math.ceil(lo * step) / step):
            if all(int(c * cand) == h for c, h in width_hidden):
                return cand
    return None
