"""Text specs of degradations, as the CLI takes them: ``name[:key=value,key=value]``.

- ``noise`` alone: the operator's defaults.
- ``noise:sigma=25``: typed values; integers for int parameters, numbers for float ones, and for an
  RGB parameter either one number or three joined by ``/`` (``haze:airlight=0.8/0.85/0.9``).
- ``noise:random``: parameters sampled from the ``default`` preset; ``noise:preset=ram`` from a named
  preset; ``noise:preset=ram,sigma=10`` samples then overrides. Sampling happens when the step is applied,
  with the caller's generator (see :func:`~anyrestore.degrade.registry.resolve_params`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .registry import PRESET_KEY, get_operator

RANDOM_WORD = "random"


def parse_op_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse ``name[:key=value,...]`` into ``(name, params)`` with typed, range-checked values.

    Raises ValueError (one line naming the operator and the bad part, listing the valid choices) for an
    unknown operator, unknown parameter, malformed item, duplicate key, bad value or unknown preset.
    """
    text = spec.strip()
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"empty degradation name in spec '{spec}'")
    op = get_operator(name)
    params: dict[str, Any] = {}
    if not rest.strip():
        return name, params
    for raw in rest.split(","):
        item = raw.strip()
        if item == RANDOM_WORD:
            key, value = PRESET_KEY, "default"
        elif "=" in item:
            key, _, value = (part.strip() for part in item.partition("="))
        else:
            raise ValueError(
                f"degradation '{name}': expected key=value or '{RANDOM_WORD}', got '{item}'; "
                f"valid: {op.param_list()}"
            )
        if key in params:
            raise ValueError(f"degradation '{name}': parameter '{key}' given twice")
        if key == PRESET_KEY:
            if value not in op.ranges:
                raise ValueError(
                    f"degradation '{name}': unknown preset '{value}'; valid: {', '.join(op.presets)}"
                )
            params[key] = value
            continue
        if key in op.params and op.params[key].kind == "tensor":
            raise ValueError(f"degradation '{name}': '{key}' cannot be given in a spec (API only)")
        params.update(op.validate({key: value}))
    return name, params


def format_op_spec(name: str, params: Mapping[str, Any] | None = None) -> str:
    """Inverse of :func:`parse_op_spec` for scalar parameters (tensors are left out)."""
    items = [
        f"{k}={_text(v)}" for k, v in (params or {}).items() if v is not None and not hasattr(v, "shape")
    ]
    return name if not items else f"{name}:{','.join(items)}"


def _text(value: Any) -> str:
    # repr() of a float is the shortest text that parses back to the same float.
    if isinstance(value, (tuple, list)):
        return "/".join(_text(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)
