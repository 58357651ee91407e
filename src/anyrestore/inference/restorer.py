"""Run any loaded restorer on images of any size: padding, tiling, precision, self-ensemble.

Callers hand [0, 1] RGB batches to a :class:`Restorer` and get [0, 1] RGB back; the descriptor decides
input normalisation, size multiple and scale. Large images are tiled with a tile size chosen from a
memory budget (halved and retried on out-of-memory), so a 12-megapixel photo restores on a laptop.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from anyrestore.devices import resolve_device
from anyrestore.errors import AnyRestoreError
from anyrestore.inference.padding import crop_to, pad_to_multiple
from anyrestore.inference.tiling import tiled_forward
from anyrestore.models.checkpoint import LoadedModel
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.normalize import as_unit_range
from anyrestore.models.side import (
    JPEG_BLOCK,
    SIDE_DIM,
    encode_side,
    has_tables,
    side_from_pixels,
    takes_side,
    transpose_side,
    whole_image_context,
)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MIN_TILE = 64
DEFAULT_OVERLAP = 32
# Peak memory of a forward pass relative to its widest activation (attention and FFN intermediates).
PEAK_OVER_WIDEST = 12
INPUT_CHANNEL_KEYS = ("in_chans", "inp_channels", "img_channel", "in_channels")
# Self-ensemble modes: how many of the 8 flips/transpositions of the input are averaged. "flips" keeps
# every orientation upright (rain streaks stay near-vertical, as a model trained on rain saw them).
ENSEMBLES = {"off": 1, "flips": 4, "x8": 8}
# Most images of one size restored in one call (Restorer.batch_capacity; `anyrestore restore` on a folder).
MAX_BATCH = 8


class InferenceError(AnyRestoreError):
    """The requested device, precision or tiling cannot run this model."""


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def check_tiling(tile: int | None, overlap: int, minimum: int = 1) -> None:
    """Refuse, in one line, tile settings that cannot work: ``tile`` must be None (automatic), 0 (never
    tile) or at least ``minimum`` pixels; the overlap must not be negative. The command line passes
    ``minimum=MIN_TILE`` and also wants the tile at least twice the overlap: smaller tiles multiply the
    forward passes for nothing (``--tile 8`` ran 16-px tiles for minutes)."""
    if overlap < 0:
        raise InferenceError(f"tile overlap {overlap} is negative")
    if tile is None or tile == 0:
        return
    if tile < minimum:
        raise InferenceError(f"tile size {tile} is below the minimum of {minimum} px (0 never tiles)")
    if minimum > 1 and tile < 2 * overlap:
        raise InferenceError(f"tile size {tile} must be at least twice the overlap ({overlap})")


def default_memory_budget(device: torch.device) -> int:
    """Bytes one forward pass may use: 60% of free GPU memory, or min(4 GiB, 30% of RAM) on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(4 << 30, total * 0.3))


def widest_activation_bytes_per_pixel(model: nn.Module, device: torch.device, multiple: int) -> float:
    """Bytes per input pixel of the largest tensor any module outputs, from a small probe forward."""
    side = max(64, multiple * math.ceil(64 / max(multiple, 1)))
    widest = 0

    def hook(_module, _inputs, output) -> None:
        nonlocal widest
        tensors = output if isinstance(output, tuple | list) else (output,)
        for t in tensors:
            if isinstance(t, torch.Tensor):
                widest = max(widest, t.numel() * t.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side, device=device))
    finally:
        for h in handles:
            h.remove()
    return widest / (side * side)


@dataclass
class InferenceOptions:
    """How to run a model; every field has a safe default."""

    device: str | torch.device | None = None
    precision: str = "fp32"
    tile: int | None = None  # None: chosen from the memory budget; 0: never tile
    tile_overlap: int = DEFAULT_OVERLAP
    memory_budget: int | None = None  # bytes; None: default_memory_budget(device)
    # "off", "flips" or "x8" (True = "x8", False = "off"); None: what the model's descriptor recommends
    # (``extra["self_ensemble"]``), else "off".
    self_ensemble: str | bool | None = None
    channels_last: bool = False
    compile: bool = False


class Restorer:
    """A model ready to restore (N, 3, H, W) batches in [0, 1] of any size."""

    def __init__(self, model: LoadedModel | nn.Module, descriptor: ModelDescriptor | None = None, **options):
        loaded = model if isinstance(model, LoadedModel) else None
        if loaded is not None:
            model, descriptor = loaded.module, loaded.descriptor
        if descriptor is None:
            raise ValueError("a bare module needs its ModelDescriptor")
        self.options = InferenceOptions(**options)
        check_tiling(self.options.tile, self.options.tile_overlap)
        self.descriptor = descriptor
        # the model's file, for errors that concern the model rather than the image
        self.source = str(loaded.path) if loaded is not None and loaded.path else descriptor.architecture
        channels = [descriptor.config[k] for k in INPUT_CHANNEL_KEYS if k in descriptor.config]
        if any(c != 3 for c in channels):
            raise InferenceError(
                f"{descriptor.architecture} with {channels[0]} input channels is not an RGB restorer "
                "(grayscale and dual-pixel checkpoints are not supported for inference)"
            )
        self.device = resolve_device(self.options.device)
        precision = self.options.precision
        if precision not in PRECISIONS:
            raise InferenceError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
        if precision not in descriptor.precisions:
            supported = ", ".join(descriptor.precisions)
            raise InferenceError(
                f"{descriptor.architecture} does not support {precision} (supported: {supported})"
            )
        self.dtype = PRECISIONS[precision]
        self.multiple = max(1, descriptor.size_multiple)
        self.scale = max(1, descriptor.scale)
        module = as_unit_range(model, descriptor).eval().to(self.device)
        for p in module.parameters():
            p.requires_grad_(False)
        if self.options.channels_last:
            module = to_channels_last(module)
        self.module = module
        self._forward_module: nn.Module = torch.compile(module) if self.options.compile else module
        # What the model takes besides pixels (models/side.py decides): JPEG side information, and the
        # whole image's conditioning, handed back to every tile.
        self.takes_side = takes_side(module)
        self._context = whole_image_context(module)
        self.ensemble = ensemble_mode(self.options.self_ensemble, descriptor)
        self._tile = self.options.tile
        if self._tile is None:
            self._tile = self.auto_tile()

    # ------------------------------------------------------------------ tile size

    def auto_tile(self) -> int:
        """Largest square tile (multiple of the size multiple) whose estimated peak fits the budget."""
        budget = self.options.memory_budget or default_memory_budget(self.device)
        per_pixel = widest_activation_bytes_per_pixel(self.module, self.device, self.multiple)
        if self.dtype != torch.float32:
            per_pixel /= 2
        side = int(math.sqrt(budget / max(per_pixel * PEAK_OVER_WIDEST, 1.0)))
        side = max(MIN_TILE, min(side, 4096))
        return max(self.multiple, side // max(self.multiple, 8) * max(self.multiple, 8))

    @property
    def tile(self) -> int:
        return int(self._tile or 0)

    def batch_capacity(self, height: int, width: int, most: int = MAX_BATCH) -> int:
        """How many ``height`` x ``width`` images one call may take at once (at most ``most``): as many as
        fit in the pixels of one tile, which the memory budget sized (1 when they are tiled anyway, or
        when tiling is off and no budget was measured)."""
        tile = self.tile
        padded_h = -(-height // self.multiple) * self.multiple
        padded_w = -(-width // self.multiple) * self.multiple
        if not tile or max(padded_h, padded_w) > tile:
            return 1
        return max(1, min(most, tile * tile // (padded_h * padded_w)))

    # ------------------------------------------------------------------ forward passes

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _forward(self, x: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """One forward pass on an input whose sides are already multiples of the size multiple."""
        return self._run(self._forward_module, x, **inputs)

    def _run(self, module: nn.Module, x: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """``module`` (the model, or one stage of a model that splits for tiling: ``tiling_stages``) on
        ``x`` (and ``inputs``: side information) with the inference options: memory format, no gradients,
        precision; float32 out."""
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), self._autocast():
            return module(x, **inputs).float()

    def _restore_once(self, x: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        """Pad the whole image to the size multiple, run it (whole or in tiles, self-ensembled or not),
        crop back; on out-of-memory halve the tile and try again.

        With JPEG tables in ``side`` the padded sides are also multiples of the 8-pixel block, so that
        the flips of the ensemble and the tile origins keep the block grid where the tables say it is."""
        padded, size = pad_to_multiple(x, self._step(side))
        while True:
            tile = self.tile
            try:
                return crop_to(self._restore_padded(padded, tile, side, x), size, self.scale)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                if not _is_oom(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                current = tile or max(padded.shape[-2:])
                if current // 2 < MIN_TILE:
                    raise InferenceError(
                        f"out of memory even with {current}px tiles; try --device cpu or a smaller image"
                    ) from None
                self._tile = current // 2

    def _restore_padded(
        self,
        padded: torch.Tensor,
        tile: int,
        side: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The model on an input padded to the size multiple, averaged over the ensemble's transforms.

        Padding before tiling means a tile at the image border sees the same mirrored pixels as the
        whole-image pass, so tiling changes nothing but the receptive field cut at interior tile edges.
        A model that splits (``tiling_stages``) runs its global first stage once on the whole,
        untransformed image (its estimates, and a JPEG grid, belong to the image as it is); only the
        local rest is tiled and self-ensembled.

        A model that takes side information gets the same ``side`` (tables transposed with the image) in
        every tile of a pass, and a model that takes ``cond`` the conditioning of the whole unpadded
        ``image`` as that pass transforms it; with JPEG tables, tiles start on the 8-pixel block grid.
        """
        transforms = range(ENSEMBLES[self.ensemble])
        tiled = bool(tile) and max(padded.shape[-2:]) > tile
        split = getattr(self.module, "tiling_stages", None)
        forward, source = self._forward, padded
        apart = split is not None and (tiled or len(transforms) > 1)
        if apart:
            whole, local = split()
            source = self._run(whole, padded)
            forward = functools.partial(self._run, local)
        total = None
        for k in transforms:
            t = _transform(source, k)
            inputs = self._inputs(image, side, k)
            run = functools.partial(forward, **inputs) if inputs else forward
            if tiled:
                y = tiled_forward(
                    run,
                    t,
                    tile=tile,
                    overlap=self.options.tile_overlap,
                    scale=self.scale,
                    multiple=self._step(side),
                )
            else:
                y = run(t)
            y = _untransform(y, k)
            total = y if total is None else total + y
        assert total is not None
        out = total / len(transforms)
        finish = getattr(self.module, "finish", None)
        if apart and callable(finish):
            # The model's last step on its whole output (run as one, ``forward`` takes it itself).
            with torch.no_grad():
                out = finish(padded, out).float()
        return out

    def _step(self, side: torch.Tensor | None) -> int:
        """What padded sides and tile origins are multiples of: the size multiple, and with JPEG tables
        the 8-pixel block too."""
        return math.lcm(self.multiple, JPEG_BLOCK) if has_tables(side) else self.multiple

    def _inputs(
        self, image: torch.Tensor | None, side: torch.Tensor | None, k: int
    ) -> dict[str, torch.Tensor]:
        """What ensemble pass ``k`` feeds the model besides pixels: ``side`` (tables transposed when the
        pass transposes) and ``cond``, the conditioning of the whole transformed ``image``."""
        inputs = {} if side is None else {"side": transpose_side(side) if k >= 4 else side}
        if self._context is not None and image is not None:
            inputs["cond"] = self._run(self._context, _transform(image, k), **inputs)
        return inputs

    def side_for(
        self,
        x: torch.Tensor,
        side: torch.Tensor | None = None,
        jpeg_tables: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor | None:
        """The (N, SIDE_DIM) side vectors of a batch ``x`` for a model that takes them (``None`` for one
        that does not): ``side`` as given, else ``jpeg_tables`` (a file's tables, for every image), else
        each image's tables estimated from its pixels (zeros where none show)."""
        if not self.takes_side:
            return None
        if side is None:
            side = side_from_pixels(x) if jpeg_tables is None else encode_side(jpeg_tables)[None]
        side = side.reshape(1, -1) if side.dim() == 1 else side
        if side.shape[0] == 1:
            side = side.expand(x.shape[0], -1)
        if tuple(side.shape) != (x.shape[0], SIDE_DIM):
            raise InferenceError(
                f"side information of shape {tuple(side.shape)} for {x.shape[0]} image(s); "
                f"expected ({x.shape[0]}, {SIDE_DIM})"
            )
        return side.to(self.device, torch.float32)

    def __call__(
        self,
        x: torch.Tensor,
        side: torch.Tensor | None = None,
        *,
        jpeg_tables: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Restore a (N, 3, H, W) or (3, H, W) batch in [0, 1]; returns the same layout, scaled.

        A model that takes JPEG side information gets :meth:`side_for` of the whole batch (``side``, else
        the file's ``jpeg_tables`` as ``ImageData.jpeg_tables`` holds them, else the pixels' estimate),
        computed once before padding and tiling; other models ignore both."""
        single = x.dim() == 3
        if single:
            x = x[None]
        if x.dim() != 4 or x.shape[1] != 3:
            raise InferenceError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        out = self._restore_once(x, self.side_for(x, side, jpeg_tables))
        if not bool(torch.isfinite(out).all()):
            hint = f" at {self.options.precision} (try fp32)" if self.dtype != torch.float32 else ""
            raise InferenceError(f"{self.source}: the model's output holds NaN or Inf values{hint}")
        out = out.clamp(0, 1)
        return out[0] if single else out


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module`` with its 4-D weights and buffers in channels-last layout, in place. (``Module.to(
    memory_format=...)`` refuses models that also hold tensors of other ranks, such as PromptIR's 5-D
    prompts.)"""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module


def ensemble_mode(option: str | bool | None, descriptor: ModelDescriptor) -> str:
    """The self-ensemble mode to run: ``option``, or with ``None`` the one the model's descriptor
    recommends (``extra["self_ensemble"]``, e.g. the default model's "flips"), else "off"."""
    if option is None:
        option = descriptor.extra.get("self_ensemble", "off")
    if option is True:
        return "x8"
    if option is False:
        return "off"
    if option not in ENSEMBLES:
        raise InferenceError(f"unknown self-ensemble {option!r} (choose from {', '.join(ENSEMBLES)})")
    return str(option)


def _transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/transpositions (0: identity; bit 0 flips left-right, bit 1 flips up-down,
    k >= 4 transposes first); 0-3 keep the orientation of vertical and horizontal lines."""
    if k >= 4:
        x = x.transpose(-2, -1)
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if k & bit]
    return x.flip(dims) if dims else x


def _untransform(y: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`_transform` (flips are their own inverse; transpose last)."""
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if k & bit]
    y = y.flip(dims) if dims else y
    return y.transpose(-2, -1) if k >= 4 else y
