"""``anyrestore serve``: a local web page to restore photos, compare before/after and download."""

from __future__ import annotations

import argparse
import sys

HELP = "start a local web page: upload a photo, pick a model, restore, compare, download"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--model",
        action="extend",
        nargs="+",
        default=[],
        metavar="FILE|NAME",
        help="checkpoints or embedded model names to offer besides the embedded ones (repeatable)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="arithmetic of the forward pass; bf16/fp16 are faster on a GPU (default fp32)",
    )
    parser.add_argument(
        "--tile", type=int, default=None, help="tile size in pixels; 0 = never tile; default: auto"
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=64, help="largest accepted upload (default 64)"
    )
    parser.add_argument(
        "--max-megapixels", type=float, default=50, help="largest accepted image (default 50 megapixels)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")


def run(args: argparse.Namespace) -> int:
    import anyrestore.models  # noqa: F401  (registers the architectures)
    from anyrestore.serve import ModelPool, create_server, serve_until_interrupted

    pool = ModelPool(args.model, device=args.device, precision=args.precision, tile=args.tile)
    server = create_server(
        pool,
        args.host,
        args.port,
        max_upload_bytes=int(args.max_upload_mb * 1e6),
        max_pixels=int(args.max_megapixels * 1e6),
        quiet=args.quiet,
    )
    if server.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {server.host}: other computers can reach this page", file=sys.stderr)
    print(f"anyrestore: serving {len(pool.entries)} model(s) on {server.url} (Ctrl-C to stop)", flush=True)
    serve_until_interrupted(server)
    return 0
