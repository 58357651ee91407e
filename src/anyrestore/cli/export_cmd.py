"""``anyrestore export``: write a model as an ONNX graph mapping [0, 1] RGB to [0, 1] RGB, verified on a real
photo and a real JPEG. Models that take JPEG side information get a second input, ``side``."""

from __future__ import annotations

import argparse

HELP = (
    "export a model to ONNX ([0, 1] RGB in and out, plus the JPEG side input for models that take it), "
    "checked with onnxruntime against PyTorch on a real photo and a real JPEG"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="checkpoint file or embedded model name (default model)"
    )
    parser.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        help="input side used to export and verify on the built-in photo and its JPEG (default 256)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--dynamic", action="store_true", help="accept any batch size, height and width (default: fixed)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="max |ONNX - PyTorch| accepted (default 1e-4)"
    )
    parser.add_argument(
        "--exporter",
        default="torchscript",
        choices=["torchscript", "dynamo"],
        help="torch.onnx exporter: torchscript (fast, default) or dynamo (opset >= 18, needs onnxscript)",
    )


def run(args: argparse.Namespace) -> int:
    import anyrestore.models  # noqa: F401  (registers the architectures)
    from anyrestore.export import export_onnx
    from anyrestore.models.zoo import resolve_model

    report = export_onnx(
        resolve_model(args.model),
        args.onnx,
        size=args.size,
        opset=args.opset,
        dynamic=args.dynamic,
        tolerance=args.tolerance,
        exporter=args.exporter,
    )
    print(report.summary())
    return 0
