"""``anyrestore info``: what a checkpoint is (architecture, hyper-parameters, how it is run)."""

from __future__ import annotations

import argparse

HELP = "describe a checkpoint or embedded model: architecture, hyper-parameters, scale, normalisation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None, help="checkpoint file or embedded model name")


def run(args: argparse.Namespace) -> int:
    import anyrestore.models  # noqa: F401  (registers the architectures)
    from anyrestore.models import count_parameters
    from anyrestore.models.side import takes_side
    from anyrestore.models.zoo import resolve_model

    loaded = resolve_model(args.model)
    print(f"file           {loaded.path}")
    print(f"weights from   {loaded.source}")
    print(loaded.descriptor.summary())
    print(f"parameters     {count_parameters(loaded.module):,}")
    if takes_side(loaded.module):
        print("side input     JPEG quantisation tables: the file's, else estimated from the pixels")
    return 0
