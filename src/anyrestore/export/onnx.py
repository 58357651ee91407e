"""Export a restorer to ONNX so that the graph maps [0, 1] RGB to [0, 1] RGB, as :class:`Restorer` does.

The exported graph is :class:`OnnxGraph`: the descriptor's input normalisation, reflect-padding to the
size multiple, the network, cropping back to ``scale`` times the input and clamping, so that consumers
feed plain images and never need the descriptor. A model that takes JPEG side information gets a second
input ``side`` (N, 129), computed as the ``anyrestore.side`` metadata says.

Every export is checked with onnxruntime against the PyTorch model's eval path before the file is renamed
into place, on a real photo and on a real JPEG of it (quality 20, its side vector from the file's tables):
a graph that does not reproduce the model (a traced-in size, an unsupported operator, a path that export
leaves out) is never left behind. A model whose eval path is known not to export is refused up front.
"""

from __future__ import annotations

import inspect
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from anyrestore.errors import AnyRestoreError
from anyrestore.models.checkpoint import LoadedModel
from anyrestore.models.foreign import is_foreign
from anyrestore.models.normalize import as_unit_range, bare_model
from anyrestore.models.padding import graph_reflect_pad
from anyrestore.models.side import (
    JPEG_BLOCK,
    SIDE_DIM,
    encode_side,
    side_for,
    takes_side,
    whole_image_context,
)

# Architectures whose export has been checked against PyTorch, static and with dynamic sizes.
EXPORTABLE = (
    "nafnet",
    "curve_nafnet",
    "context_nafnet",
    "restormer",
    "promptir",
    "ram_promptir",
    "swinir",
    "ram_swinir",
)
# Fixed-size-only architectures: their graphs bake the input size in (SwinIR's shifted-window masks).
STATIC_ONLY: tuple[str, ...] = ()
EXPORTERS = ("torchscript", "dynamo")
INPUT_CHANNEL_KEYS = ("in_chans", "inp_channels", "img_channel", "in_channels")
INPUT_NAME, SIDE_NAME, OUTPUT_NAME = "image", "side", "restored"
# The real inputs every export is verified on: scikit-image's astronaut (NASA, public domain), 192 px, resized
# to each checked shape, and the same picture saved as a JPEG of this quality.
VERIFY_PHOTO = Path(__file__).with_name("astronaut.png")
VERIFY_JPEG_QUALITY = 20
SIDE_METADATA = (
    f"float32 (N, {SIDE_DIM}), one row per image: log2 of the JPEG file's 64 luma and then 64 chroma "
    "quantisation steps (8x8 tables in row-major order, as the decoded pixels are oriented: transposed "
    "when EXIF turns the image by 90 degrees), each divided by 8, then 1; all zeros for an image without "
    "JPEG tables. In Python: anyrestore.models.side.side_for(pixels, anyrestore.io.read_image(path)."
    "jpeg_tables), which estimates the tables of a decoded JPEG from its pixels when no file has them"
)
# Architectures whose eval path leaves the graph for some configurations: (the configuration test, why).
NOT_EXPORTABLE = {
    "curve_nafnet": (
        lambda config: bool(config.get("dequant_width")),
        "curve_nafnet with a dequantisation stage (default model v1) cannot be exported faithfully: its "
        "JPEG dequantisation and finish read each image's JPEG table outside the graph, so an export "
        "differs from the model on JPEGs (by up to 23/255 on a 256 px JPEG of quality 20)",
    )
}
INSTALL_HINT = "pip install 'anyrestore[export]'"


class ExportError(AnyRestoreError):
    """A model cannot be exported, or the exported graph does not reproduce it."""


class OnnxGraph(nn.Module):
    """What gets exported: normalise, reflect-pad to the size multiple, run, crop, clamp to [0, 1].

    Needs inputs at least ``multiple`` pixels on each side (reflect padding needs a pad smaller than
    the side); the pad is computed from the traced input size, so dynamic-size graphs pad correctly.
    A model that takes JPEG side information takes ``side`` too (zeros when not given), pads to the 8-pixel
    JPEG block as well, and a model that takes ``cond`` gets its conditioning of the unpadded image, as
    :class:`~anyrestore.inference.Restorer` does.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.inner = as_unit_range(loaded.module, loaded.descriptor)
        # A network that pads itself (RAM's PromptIR, to 16) decides whether to pad from the traced size,
        # which tracing freezes; padding to its multiple here first keeps that decision constant (no pad).
        inner_multiple = int(getattr(bare_model(loaded.module), "pad_multiple", 1))
        self.multiple = math.lcm(max(1, int(loaded.descriptor.size_multiple)), max(1, inner_multiple))
        self.takes_side = takes_side(loaded.module)
        if self.takes_side:
            self.multiple = math.lcm(self.multiple, JPEG_BLOCK)
        self.context = whole_image_context(loaded.module)
        self.scale = max(1, int(loaded.descriptor.scale))

    def forward(self, x: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        inputs: dict[str, torch.Tensor] = {}
        if self.takes_side:
            inputs["side"] = x.new_zeros(x.shape[0], SIDE_DIM) if side is None else side
        if self.context is not None:
            inputs["cond"] = self.context(x, inputs.get("side"))
        if self.multiple > 1:
            x = graph_reflect_pad(x, self.multiple)
        y = self.inner(x, **inputs)
        return y[:, :, : h * self.scale, : w * self.scale].clamp(0, 1)


@dataclass
class ExportReport:
    """Where the graph went and how closely onnxruntime reproduced PyTorch, per checked input: (what it
    was, its shape, max |difference|)."""

    path: Path
    architecture: str
    exporter: str
    opset: int
    dynamic: bool
    tolerance: float
    checks: list[tuple[str, tuple[int, ...], float]] = field(default_factory=list)
    side: bool = False

    @property
    def max_difference(self) -> float:
        return max((diff for _, _, diff in self.checks), default=0.0)

    def summary(self) -> str:
        """Two lines for the command line: what was written, and the measured differences."""
        size = self.path.stat().st_size / 1e6 if self.path.exists() else 0.0
        shape = "dynamic batch/height/width" if self.dynamic else "fixed size"
        inputs = (
            f"inputs {INPUT_NAME} and {SIDE_NAME} (JPEG tables, see metadata)"
            if self.side
            else f"input {INPUT_NAME}"
        )
        checks = ", ".join(
            f"{diff:.2e} on the {what} at {'x'.join(map(str, s))}" for what, s, diff in self.checks
        )
        return (
            f"exported {self.architecture} to {self.path} ({self.exporter}, opset {self.opset}, {shape}, "
            f"{inputs}, {size:.1f} MB)\nonnxruntime vs PyTorch, max |difference|: {checks} "
            f"(tolerance {self.tolerance:.0e})"
        )


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def check_exportable(loaded: LoadedModel, *, dynamic: bool) -> None:
    """Raise :class:`ExportError` for architectures not known to export, and for non-RGB models."""
    descriptor = loaded.descriptor
    arch = descriptor.architecture
    if arch not in EXPORTABLE and not is_foreign(descriptor):  # spandrel's models are tried as they are
        raise ExportError(f"{arch} models cannot be exported to ONNX (exportable: {', '.join(EXPORTABLE)})")
    refusal = NOT_EXPORTABLE.get(arch)
    if refusal is not None and refusal[0](descriptor.config):
        raise ExportError(refusal[1])
    if dynamic and arch in STATIC_ONLY:
        raise ExportError(f"{arch} exports only at a fixed size: leave out --dynamic and pass --size")
    channels = [descriptor.config[k] for k in INPUT_CHANNEL_KEYS if k in descriptor.config]
    if any(c != 3 for c in channels):
        raise ExportError(f"{arch} with {channels[0]} input channels is not an RGB restorer; cannot export")


def check_shapes(size: int, multiple: int, dynamic: bool) -> list[tuple[int, int, int, int]]:
    """Input shapes to verify: the export size; with dynamic sizes also a batch of 2 at an odd size."""
    if size < multiple:
        raise ExportError(f"--size {size} is smaller than the model's size multiple {multiple}")
    shapes = [(1, 3, size, size)]
    if dynamic:
        # Not multiples of the size multiple, so the in-graph padding is exercised too.
        height = max(multiple, size * 3 // 4 + 3)
        width = max(multiple, size // 2 + 5)
        shapes.append((2, 3, height, width))
    return shapes


def _photo(height: int, width: int) -> torch.Tensor:
    """The verification photo as a (3, height, width) tensor in [0, 1], exactly 8-bit valued."""
    import numpy as np
    from PIL import Image

    with Image.open(VERIFY_PHOTO) as im:
        array = np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.LANCZOS))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


def _jpeg_of(photo: torch.Tensor, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``photo`` saved as a JPEG of :data:`VERIFY_JPEG_QUALITY` and read back as ``restore`` reads files:
    its decoded pixels and its (1, SIDE_DIM) side vector from the file's tables."""
    from PIL import Image

    from anyrestore.io import read_image

    path = folder / f"verify-{photo.shape[-2]}x{photo.shape[-1]}.jpg"
    array = (photo * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path, quality=VERIFY_JPEG_QUALITY)
    data = read_image(path)
    return data.pixels, encode_side(data.jpeg_tables)[None]


def verification_inputs(
    shapes: list[tuple[int, int, int, int]],
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(what, images, side)`` to check an export on: at each (1, 3, H, W) shape the photo and its JPEG,
    at a batch of 2 the two together; ``side`` as inference computes it (the photo's from its pixels)."""
    jpeg = f"JPEG q{VERIFY_JPEG_QUALITY}"
    inputs = []
    with tempfile.TemporaryDirectory(prefix="anyrestore-export-") as tmp:
        for n, _, h, w in shapes:
            photo = _photo(h, w)
            decoded, jpeg_side = _jpeg_of(photo, Path(tmp))
            photo_side = side_for(photo, None)
            if n == 1:
                inputs += [("photo", photo[None], photo_side), (jpeg, decoded[None], jpeg_side)]
            else:
                images, sides = torch.stack([photo, decoded]), torch.cat([photo_side, jpeg_side])
                inputs.append((f"photo and {jpeg}", images.repeat(n // 2 + 1, 1, 1, 1)[:n], sides[:n]))
    return inputs


def _names(graph: OnnxGraph) -> list[str]:
    return [INPUT_NAME, SIDE_NAME] if graph.takes_side else [INPUT_NAME]


def _export_torchscript(
    graph: OnnxGraph, example: tuple[torch.Tensor, ...], path: Path, opset: int, dynamic: bool
) -> None:
    kwargs: dict[str, object] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    if dynamic:
        axes = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
        }
        if graph.takes_side:
            axes[SIDE_NAME] = {0: "batch"}
        kwargs["dynamic_axes"] = axes
    with warnings.catch_warnings():
        # The TorchScript exporter warns about its deprecation and about traced shape arithmetic, which
        # is intended here (the pad amounts must follow the input size).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            example,
            str(path),
            input_names=_names(graph),
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            do_constant_folding=True,
            **kwargs,
        )


def _export_dynamo(
    graph: OnnxGraph, example: tuple[torch.Tensor, ...], path: Path, opset: int, dynamic: bool
) -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(f"--exporter dynamo needs onnxscript ({INSTALL_HINT})") from None
    dynamic_shapes = None
    if dynamic:
        dim = torch.export.Dim.DYNAMIC
        dynamic_shapes = ({0: dim, 2: dim, 3: dim}, {0: dim})[: len(example)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            example,
            input_names=_names(graph),
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    program.save(str(path))


def _add_metadata(path: Path, loaded: LoadedModel, multiple: int, side: bool = False) -> int:
    """Record the descriptor and the input contract in the ONNX file; returns the file's opset."""
    import onnx

    model = onnx.load(str(path))
    entries = {
        "anyrestore.descriptor": loaded.descriptor.to_json(),
        "anyrestore.input": f"{INPUT_NAME}: float32 RGB (N, 3, H, W) in [0, 1]"
        + (f"; {SIDE_NAME}: JPEG side information, see anyrestore.side" if side else "")
        + "; output likewise, scaled by the model scale",
        "anyrestore.min_side": str(multiple),
    }
    if side:
        entries["anyrestore.side"] = SIDE_METADATA
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 0)


def verify(
    path: Path,
    graph: OnnxGraph,
    inputs: list[tuple[str, torch.Tensor, torch.Tensor]],
    tolerance: float,
) -> list[tuple[str, tuple[int, ...], float]]:
    """Max |onnxruntime - PyTorch| per input (:func:`verification_inputs`), PyTorch running the model's
    eval path as ``restore`` does; raises :class:`ExportError` above ``tolerance``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError(f"checking the export needs onnxruntime ({INSTALL_HINT})") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot load the exported graph ({_one_line(exc)})") from None
    checks = []
    for what, x, side in inputs:
        dims = "x".join(map(str, x.shape))
        feed = {INPUT_NAME: x.numpy()}
        if graph.takes_side:
            feed[SIDE_NAME] = side.numpy()
        with torch.no_grad():
            expected = graph(x, side).numpy() if graph.takes_side else graph(x).numpy()
        try:
            (got,) = session.run([OUTPUT_NAME], feed)
        except Exception as exc:
            raise ExportError(f"onnxruntime failed on the {what} at {dims} ({_one_line(exc)})") from None
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape}")
        diff = float(abs(got - expected).max())
        if not diff <= tolerance:  # also catches NaN
            raise ExportError(
                f"ONNX output differs from PyTorch by {diff:.2e} on the {what} at {dims} "
                f"(tolerance {tolerance:.0e}); nothing written"
            )
        checks.append((what, tuple(x.shape), diff))
    return checks


def export_onnx(
    loaded: LoadedModel,
    path: str | os.PathLike[str],
    *,
    size: int = 256,
    opset: int = 17,
    dynamic: bool = False,
    tolerance: float = 1e-4,
    exporter: str = "torchscript",
) -> ExportReport:
    """Export ``loaded`` to ``path`` (atomically), verified with onnxruntime against PyTorch.

    ``size`` is the (square) example and verification size; without ``dynamic`` it is also the only
    size the graph accepts. ``exporter`` is ``"torchscript"`` (fast, opsets 9-20) or ``"dynamo"``
    (``torch.export``, opset 18 and up, needs onnxscript; far slower on CPU). The module is moved to
    the CPU in float32 (in place) for the export.
    """
    from anyrestore.io import atomic_output

    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r} (choose from {', '.join(EXPORTERS)})")
    if exporter == "dynamo" and opset < 18:
        raise ExportError(f"the dynamo exporter writes opset 18 or later, not {opset}: pass --opset 18")
    check_exportable(loaded, dynamic=dynamic)
    path = Path(path)
    if loaded.path is not None and path.resolve() == Path(loaded.path).resolve():
        raise ExportError(f"{path}: refusing to overwrite the model's own checkpoint")
    module = loaded.module.float().cpu().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    graph = OnnxGraph(LoadedModel(module, loaded.descriptor, loaded.path, loaded.source)).eval()
    shapes = check_shapes(size, graph.multiple, dynamic)
    inputs = verification_inputs(shapes)
    _, photo, photo_side = inputs[0]
    example = (photo, photo_side) if graph.takes_side else (photo,)
    export = _export_torchscript if exporter == "torchscript" else _export_dynamo
    arch = loaded.descriptor.architecture
    with atomic_output(path) as tmp:
        try:
            with torch.no_grad():
                export(graph, example, tmp, opset, dynamic)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"{arch}: ONNX export failed ({_one_line(exc)})") from None
        try:
            actual_opset = _add_metadata(tmp, loaded, graph.multiple, graph.takes_side)
        except ImportError:
            raise ExportError(f"exporting needs the onnx package ({INSTALL_HINT})") from None
        checks = verify(tmp, graph, inputs, tolerance)
    return ExportReport(path, arch, exporter, actual_opset, dynamic, tolerance, checks, graph.takes_side)
