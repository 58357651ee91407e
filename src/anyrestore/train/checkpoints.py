"""Training checkpoints and exact resume.

A checkpoint at iteration ``i`` is two files in ``<out>/checkpoints/``: ``iter_<i>.safetensors`` (weights:
``params.*`` and ``params_ema.*`` with the model descriptor, loadable by ``load_model``) and
``iter_<i>.state.pt`` (optimiser, scaler, RNG states of every process, iteration, recipe). Both are
written atomically (temporary file, then rename), weights first: the state file is the commit mark, so
a pair is complete exactly when its state file exists. A crash mid-write leaves at most a temporary file
or a weights file without state, which resuming ignores; a damaged newest pair falls back to the one
before.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyrestore.errors import AnyRestoreError
from anyrestore.io import atomic_output
from anyrestore.models.checkpoint import CheckpointError, read_checkpoint, save_model
from anyrestore.models.descriptor import ModelDescriptor

STATE_FORMAT = 1
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"
_NAME = re.compile(r"iter_(\d+)\.state\.pt")


class ResumeError(AnyRestoreError):
    """There is nothing (usable) to resume from, or the run to resume does not match."""


@dataclass(frozen=True)
class CheckpointFiles:
    iteration: int
    weights: Path
    state: Path


def checkpoint_files(folder: Path, iteration: int) -> CheckpointFiles:
    stem = f"iter_{iteration:08d}"
    return CheckpointFiles(iteration, folder / f"{stem}{WEIGHTS_SUFFIX}", folder / f"{stem}{STATE_SUFFIX}")


def list_checkpoints(folder: Path) -> list[CheckpointFiles]:
    """Complete checkpoints (state file and weights present), oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        m = _NAME.fullmatch(path.name)
        if m:
            files = checkpoint_files(folder, int(m.group(1)))
            if files.weights.is_file():
                found.append(files)
    return sorted(found, key=lambda f: f.iteration)


def save_checkpoint(
    folder: Path,
    iteration: int,
    descriptor: ModelDescriptor,
    params: Mapping[str, torch.Tensor],
    params_ema: Mapping[str, torch.Tensor] | None,
    state: dict[str, Any],
) -> CheckpointFiles:
    """Write the weights, then the state (the commit mark)."""
    files = checkpoint_files(folder, iteration)
    save_model(files.weights, descriptor, params, params_ema)
    payload = {**state, "format": STATE_FORMAT, "iteration": iteration, "weights": files.weights.name}
    with atomic_output(files.state) as tmp:
        torch.save(payload, tmp)
    return files


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; drop older ones, orphans and leftover temp files."""
    complete = list_checkpoints(folder)
    for files in complete[:-keep] if keep > 0 else complete:
        files.state.unlink(missing_ok=True)  # state first: a half-deleted pair is then simply incomplete
        files.weights.unlink(missing_ok=True)
    newest = complete[-1].iteration if complete else None
    for path in folder.iterdir():
        if path.name.startswith(".iter_") and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
        elif path.name.endswith(WEIGHTS_SUFFIX) and newest is not None:
            state = path.with_name(path.name.removesuffix(WEIGHTS_SUFFIX) + STATE_SUFFIX)
            m = re.fullmatch(r"iter_(\d+)", path.name.removesuffix(WEIGHTS_SUFFIX))
            if m and int(m.group(1)) < newest and not state.exists():
                path.unlink(missing_ok=True)


@dataclass
class LoadedCheckpoint:
    files: CheckpointFiles
    params: dict[str, torch.Tensor]
    params_ema: dict[str, torch.Tensor] | None
    state: dict[str, Any]


def _load(files: CheckpointFiles) -> LoadedCheckpoint:
    state = torch.load(files.state, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError("not a training state of this version")
    if state.get("iteration") != files.iteration or state.get("weights") != files.weights.name:
        raise ValueError("state and weights files do not belong together")
    contents, _ = read_checkpoint(files.weights)
    if not isinstance(contents, dict) or "params" not in contents:
        raise ValueError("weights file has no params")
    return LoadedCheckpoint(files, contents["params"], contents.get("params_ema"), state)


def load_latest_checkpoint(folder: Path) -> LoadedCheckpoint | None:
    """The newest checkpoint that loads; damaged ones are skipped with a warning. None when there is none."""
    for files in reversed(list_checkpoints(folder)):
        try:
            return _load(files)
        except (OSError, RuntimeError, ValueError, CheckpointError, EOFError) as exc:
            warnings.warn(f"{files.state.name}: skipped, cannot be loaded ({exc})", stacklevel=2)
    return None


# ------------------------------------------------------------------------------------------- RNG states


def capture_rng(device: torch.device, generators: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The global RNG states of this process (torch, CUDA, NumPy, Python) and its named generators."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "python": random.getstate(),
        "generators": dict(generators),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    """Set the global RNG states captured by :func:`capture_rng` (named generators are the caller's)."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
