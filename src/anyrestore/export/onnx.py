"""Export a restorer to ONNX so that the graph maps [0, 1] RGB to [0, 1] RGB, as :class:`Restorer` does.

The exported graph is :class:`OnnxGraph`: the descriptor's input normalisation, reflect-padding to the
size multiple, the network, cropping back to ``scale`` times the input and clamping, so that consumers
feed plain images and never need the descriptor. Every export is checked with onnxruntime against
PyTorch on seeded random inputs before the file is renamed into place: a graph that does not reproduce
the model (a traced-in size, an unsupported operator) is never left behind.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.errors import AnyRestoreError
from anyrestore.models.checkpoint import LoadedModel
from anyrestore.models.foreign import is_foreign
from anyrestore.models.normalize import as_unit_range, bare_model

# Architectures whose export has been checked against PyTorch, static and with dynamic sizes.
EXPORTABLE = ("nafnet", "curve_nafnet", "restormer", "promptir", "ram_promptir", "swinir", "ram_swinir")
# Fixed-size-only architectures: their graphs bake the input size in (SwinIR's shifted-window masks).
STATIC_ONLY: tuple[str, ...] = ()
EXPORTERS = ("torchscript", "dynamo")
INPUT_CHANNEL_KEYS = ("in_chans", "inp_channels", "img_channel", "in_channels")
INPUT_NAME, OUTPUT_NAME = "image", "restored"
INSTALL_HINT = "pip install 'anyrestore[export]'"


class ExportError(AnyRestoreError):
    """A model cannot be exported, or the exported graph does not reproduce it."""


class OnnxGraph(nn.Module):
    """What gets exported: normalise, reflect-pad to the size multiple, run, crop, clamp to [0, 1].

    Needs inputs at least ``multiple`` pixels on each side (reflect padding needs a pad smaller than
    the side); the pad is computed from the traced input size, so dynamic-size graphs pad correctly.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.inner = as_unit_range(loaded.module, loaded.descriptor)
        # A network that pads itself (RAM's PromptIR, to 16) decides whether to pad from the traced size,
        # which tracing freezes; padding to its multiple here first keeps that decision constant (no pad).
        inner_multiple = int(getattr(bare_model(loaded.module), "pad_multiple", 1))
        self.multiple = math.lcm(max(1, int(loaded.descriptor.size_multiple)), max(1, inner_multiple))
        self.scale = max(1, int(loaded.descriptor.scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if self.multiple > 1:
            pad_h = (self.multiple - h % self.multiple) % self.multiple
            pad_w = (self.multiple - w % self.multiple) % self.multiple
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        y = self.inner(x)
        return y[:, :, : h * self.scale, : w * self.scale].clamp(0, 1)


@dataclass
class ExportReport:
    """Where the graph went and how closely onnxruntime reproduced PyTorch, per checked input shape."""

    path: Path
    architecture: str
    exporter: str
    opset: int
    dynamic: bool
    tolerance: float
    checks: list[tuple[tuple[int, ...], float]] = field(default_factory=list)

    @property
    def max_difference(self) -> float:
        return max((diff for _, diff in self.checks), default=0.0)

    def summary(self) -> str:
        """Two lines for the command line: what was written, and the measured differences."""
        size = self.path.stat().st_size / 1e6 if self.path.exists() else 0.0
        shape = "dynamic batch/height/width" if self.dynamic else "fixed size"
        checks = ", ".join(f"{diff:.2e} at {'x'.join(map(str, s))}" for s, diff in self.checks)
        return (
            f"exported {self.architecture} to {self.path} ({self.exporter}, opset {self.opset}, {shape}, "
            f"{size:.1f} MB)\nonnxruntime vs PyTorch, max |difference|: {checks} "
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


def _export_torchscript(
    graph: OnnxGraph, example: torch.Tensor, path: Path, opset: int, dynamic: bool
) -> None:
    kwargs: dict[str, object] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    if dynamic:
        kwargs["dynamic_axes"] = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
        }
    with warnings.catch_warnings():
        # The TorchScript exporter warns about its deprecation and about traced shape arithmetic, which
        # is intended here (the pad amounts must follow the input size).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            do_constant_folding=True,
            **kwargs,
        )


def _export_dynamo(graph: OnnxGraph, example: torch.Tensor, path: Path, opset: int, dynamic: bool) -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(f"--exporter dynamo needs onnxscript ({INSTALL_HINT})") from None
    dynamic_shapes = None
    if dynamic:
        dim = torch.export.Dim.DYNAMIC
        dynamic_shapes = ({0: dim, 2: dim, 3: dim},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    program.save(str(path))


def _add_metadata(path: Path, loaded: LoadedModel, multiple: int) -> int:
    """Record the descriptor and the input contract in the ONNX file; returns the file's opset."""
    import onnx

    model = onnx.load(str(path))
    entries = {
        "anyrestore.descriptor": loaded.descriptor.to_json(),
        "anyrestore.input": "float32 RGB (N, 3, H, W) in [0, 1]; output likewise, scaled by the model scale",
        "anyrestore.min_side": str(multiple),
    }
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 0)


def verify(
    path: Path, graph: OnnxGraph, shapes: list[tuple[int, int, int, int]], tolerance: float, seed: int = 0
) -> list[tuple[tuple[int, ...], float]]:
    """Max |onnxruntime - PyTorch| per input shape; raises :class:`ExportError` above ``tolerance``."""
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
    generator = torch.Generator().manual_seed(seed)
    checks = []
    for shape in shapes:
        x = torch.rand(shape, generator=generator)
        dims = "x".join(map(str, shape))
        with torch.no_grad():
            expected = graph(x).numpy()
        try:
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
        except Exception as exc:
            raise ExportError(f"onnxruntime failed on a {dims} input ({_one_line(exc)})") from None
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape}")
        diff = float(abs(got - expected).max())
        if not diff <= tolerance:  # also catches NaN
            raise ExportError(
                f"ONNX output differs from PyTorch by {diff:.2e} at {dims} "
                f"(tolerance {tolerance:.0e}); nothing written"
            )
        checks.append((tuple(shape), diff))
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
    example = torch.rand(shapes[0], generator=torch.Generator().manual_seed(1))
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
            actual_opset = _add_metadata(tmp, loaded, graph.multiple)
        except ImportError:
            raise ExportError(f"exporting needs the onnx package ({INSTALL_HINT})") from None
        checks = verify(tmp, graph, shapes, tolerance)
    return ExportReport(path, arch, exporter, actual_opset, dynamic, tolerance, checks)
