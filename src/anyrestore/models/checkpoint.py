"""Loading any supported checkpoint, and saving ours.

Foreign checkpoints (``.pth`` / ``.ckpt`` / ``.safetensors``, as their authors released them) are read
without unpickling arbitrary objects: ``torch.load(weights_only=True)``, with any non-tensor class the
file mentions (Lightning's hyper-parameter containers, paths, ...) mapped to an inert placeholder. The
state_dict is unwrapped (``params_ema`` preferred, then ``params``, ``state_dict``, ``model``; Lightning
``net.``, DDP ``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes), the architecture and its
hyper-parameters are recognised from keys and shapes, and the weights load strictly.

Our own files are safetensors holding ``params.*`` and optionally ``params_ema.*`` tensors with the
:class:`ModelDescriptor` as JSON metadata.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyrestore.errors import AnyRestoreError
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.detection import ShapeMismatch, describe_mismatches, recording_near_misses
from anyrestore.models.registry import ARCHITECTURES, get_architecture

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "model_state_dict")
PREFIXES = ("module.", "net.", "_orig_mod.", "model.")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


class CheckpointError(AnyRestoreError):
    """A checkpoint cannot be read, recognised or loaded; the message names the file."""


class UnrecognisedArchitecture(ValueError):
    """The keys match none of the registered architectures."""


@dataclass
class LoadedModel:
    """A ready module in eval mode, the descriptor that says how to run it, and where it came from."""

    module: nn.Module
    descriptor: ModelDescriptor
    path: Path | None = None
    source: str = ""  # which entry of the file the weights came from, e.g. "params_ema"

    def __iter__(self):  # allows ``module, descriptor = load_model(path)``
        return iter((self.module, self.descriptor))


# --------------------------------------------------------------------------------------------- reading


class _Inert:
    """Stands in for any class a checkpoint mentions that is not a tensor type: holds, never runs, code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert(*args, **kwargs)


# Lines of torch.load's errors that advise, rather than say what is wrong: the hint to retry with
# weights_only=False (which would run whatever code the file holds) above all.
_ADVICE = ("weights only load failed", "weights_only", "please file an issue", "check the documentation")


def _reason(exc: BaseException) -> str:
    """One line out of torch.load's multi-paragraph errors: the line naming the refused global, else the
    first that states the problem; never torch's advice to load without ``weights_only``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line:
            return line
    facts = [line for line in lines if not any(a in line.lower() for a in _ADVICE)]
    return facts[0] if facts else "not a pickle of tensors"


def _torch_load_weights_only(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - retried with placeholders below, else reported
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_reason(first)})") from None
        if not names:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_reason(first)})") from None
        placeholders = [(_Inert, name) for name in names]
        try:
            with torch.serialization.safe_globals(placeholders):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_reason(exc)})") from None


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[Any, dict[str, str] | None]:
    """The raw contents of a checkpoint file (a nested dict of tensors) and its safetensors metadata."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    if path.suffix.lower() == ".safetensors":
        from anyrestore.io.tensors import read_safetensors

        tensors, metadata = read_safetensors(path, CheckpointError)
        return _nest(tensors), metadata or None
    return _torch_load_weights_only(path), None


def _nest(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Flat ``params.x`` / ``params_ema.x`` safetensors keys -> ``{"params": {...}, "params_ema": {...}}``."""
    for wrapper in ("params_ema", "params"):
        if any(k.startswith(wrapper + ".") for k in tensors):
            nested: dict[str, Any] = {}
            for key, value in tensors.items():
                head, _, rest = key.partition(".")
                if head in ("params", "params_ema") and rest:
                    nested.setdefault(head, {})[rest] = value
                else:
                    nested[key] = value
            return nested
    return tensors


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any) -> tuple[dict[str, torch.Tensor], str]:
    """Find the weights inside a checkpoint's contents; returns (state_dict, where it was found)."""
    source = ""
    for _ in range(3):
        if _is_state_dict(obj):
            break
        if not isinstance(obj, Mapping):
            raise ValueError(f"expected a dict of tensors, found {type(obj).__name__}")
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj, source = obj[key], f"{source}.{key}" if source else key
                break
        else:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if not tensors:
                raise ValueError(f"no tensors found (top-level keys: {', '.join(map(str, list(obj)[:8]))})")
            obj = tensors
    if not _is_state_dict(obj):
        raise ValueError("no state_dict found")
    return dict(obj), source or "state_dict"


def _candidates(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The state_dict itself, then with each wrapper prefix stripped (all keys, then keys having it)."""
    out = [state]
    current = state
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if current and all(k.startswith(prefix) for k in current):
                current = {k[len(prefix) :]: v for k, v in current.items()}
                out.append(current)
                changed = True
    for prefix in PREFIXES:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub and len(sub) < len(state):
            out.append(sub)
    return out


def _wrong_shapes(name: str, near: list[list[ShapeMismatch]]) -> ValueError:
    """The error for a state_dict with a model's keys but some other shapes: the closest config's list."""
    closest = min(near, key=len)
    return ValueError(
        f"the keys are those of a {name} model, but {len(closest)} tensor(s) have other shapes: "
        + describe_mismatches(closest)
    )


def detect_architecture(
    state: Mapping[str, torch.Tensor],
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Recognise the architecture of a state_dict; returns (name, constructor kwargs, cleaned state_dict).

    A state_dict with exactly some architecture's keys but a tensor of another shape is reported as such,
    with the mismatched keys and their shapes, not as unrecognised.
    """
    near: dict[str, list[list[ShapeMismatch]]] = {}
    for candidate in _candidates(dict(state)):
        matches = []
        for name, arch in ARCHITECTURES.items():
            with recording_near_misses() as misses:
                config = arch.infer_config(candidate)
            if config is not None:
                matches.append((name, config))
            elif misses:
                near.setdefault(name, []).extend(misses)
        if len(matches) == 1:
            return matches[0][0], matches[0][1], candidate
        if len(matches) > 1:
            names = ", ".join(m[0] for m in matches)
            raise ValueError(f"keys match several architectures ({names}); pass architecture= to choose")
    if near:
        name = min(near, key=lambda n: min(len(m) for m in near[n]))
        raise _wrong_shapes(name, near[name])
    first = ", ".join(list(state)[:4])
    known = ", ".join(sorted(ARCHITECTURES))
    raise UnrecognisedArchitecture(
        f"unrecognised architecture ({len(state)} tensors, first keys: {first}; known: {known})"
    )


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """``load_state_dict(strict=True)`` whose error lists the missing, unexpected and wrong-shaped keys
    (with both shapes) on one line; weights holding NaN or Inf are refused, naming the tensors."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        (k, tuple(state[k].shape), tuple(own[k].shape))
        for k in own
        if k in state and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_show(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {describe_mismatches(shapes)}")
        raise CheckpointError(f"{where}: weights do not fit the model; " + "; ".join(parts))
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{where}: {len(bad)} tensor(s) hold NaN or Inf values: {_show(bad)}")
    module.load_state_dict(state, strict=True)


def _show(keys: list[str], limit: int = 6) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_model(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    architecture: str | None = None,
    prefer_ema: bool = True,
    rebuild_adapters: Callable[[nn.Module, ModelDescriptor], None] | None = None,
) -> LoadedModel:
    """Load any supported checkpoint into a ready module (eval mode) and its descriptor.

    The weights of an adapter run record their adapter in the descriptor; the models layer cannot build
    adapters, so such a file needs ``rebuild_adapters(module, descriptor)`` to inject them before the
    weights load (:func:`anyrestore.adapters.load_adapted_checkpoint` passes it; ``anyrestore.load_model``
    finds that loader through the format plugins).
    """
    path = Path(path)
    contents, metadata = read_checkpoint(path)
    if not prefer_ema and isinstance(contents, Mapping) and "params" in contents and "params_ema" in contents:
        contents = {"params": contents["params"]}
    try:
        state, source = unwrap_state_dict(contents)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    descriptor = ModelDescriptor.from_metadata(metadata)
    if descriptor is None:
        try:
            if architecture is None:
                name, config, state = detect_architecture(state)
            else:
                arch = get_architecture(architecture)
                with recording_near_misses() as near:
                    for candidate in _candidates(state):
                        config = arch.infer_config(candidate)
                        if config is not None:
                            name, state = architecture, candidate
                            break
                if config is None:
                    if near:
                        raise _wrong_shapes(architecture, near)
                    raise ValueError(f"keys are not those of a {architecture} model")
        except UnrecognisedArchitecture as exc:
            # Last resort, after all of our architectures: the optional spandrel package (models/foreign.py)
            from anyrestore.models import foreign

            loaded = foreign.load_foreign(state, path, device)
            if loaded is not None:
                return loaded
            why = foreign.unavailable_reason()
            raise CheckpointError(f"{path}: {exc}{'; ' + why if why else ''}") from None
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        descriptor = ModelDescriptor.for_architecture(name, config)
    module = descriptor.build()
    if descriptor.adapters:
        if rebuild_adapters is None:
            methods = ", ".join(str(a.get("method")) for a in descriptor.adapters)
            raise CheckpointError(
                f"{path}: holds a {descriptor.architecture} with an adapter ({methods}); open it with "
                "anyrestore.load_model, which rebuilds the adapter"
            )
        rebuild_adapters(module, descriptor)
    load_strict(module, state, str(path))
    module.eval().to(device)
    return LoadedModel(module, descriptor, path, source)


# --------------------------------------------------------------------------------------------- writing


def save_model(
    path: str | os.PathLike[str],
    descriptor: ModelDescriptor,
    params: Mapping[str, torch.Tensor] | nn.Module,
    params_ema: Mapping[str, torch.Tensor] | nn.Module | None = None,
) -> Path:
    """Write weights as safetensors (``params.*``, ``params_ema.*``) with the descriptor, atomically."""
    from safetensors.torch import save_file

    from anyrestore.io import atomic_output

    def flat(prefix: str, weights: Mapping[str, torch.Tensor] | nn.Module) -> dict[str, torch.Tensor]:
        state = weights.state_dict() if isinstance(weights, nn.Module) else weights
        # clone: tied or shared tensors (params and params_ema of one module) must not share storage
        return {f"{prefix}.{k}": v.detach().cpu().clone().contiguous() for k, v in state.items()}

    tensors = flat("params", params)
    if params_ema is not None:
        tensors.update(flat("params_ema", params_ema))
    path = Path(path)
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=descriptor.to_metadata())
    return path
