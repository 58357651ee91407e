"""``anyrestore abair``: build an ABAIR model (three phases into one bundle), extend it, describe it."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "ABAIR: build a bundle from a recipe, add a degradation to it, describe or export it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="abair_command", metavar="ACTION", title="actions", required=True)

    build = sub.add_parser(
        "build",
        help="run Phases I-III of a recipe into <out>/bundle.safetensors (run again to resume)",
        description="Run (or continue) Phase I (recipe), II (one adapter per degradation) and III "
        "(estimator); each phase is a resumable run folder under --out.",
    )
    build.add_argument("recipe", metavar="RECIPE", help="recipe file or packaged recipe (abair_tiny, ...)")
    build.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides")
    build.add_argument("--out", metavar="DIR", help="run folder (default: out/<recipe name>)")
    build.add_argument("--quiet", action="store_true", help="no progress bars")

    add = sub.add_parser(
        "add-degradation",
        help="train an adapter for a new degradation and retrain the estimator; the rest stays bitwise",
        description="Train one more LoRA adapter on the bundle's frozen backbone and retrain the estimator "
        "with the new class; the backbone, the other adapters and the segmentation head are copied as they "
        "are. Overrides apply to the recipe the bundle records (data_root=..., "
        "method.options.adapters.data.<name>=[...] for real paired data).",
    )
    add.add_argument("bundle", metavar="BUNDLE", help="the bundle to extend (left unchanged)")
    add.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the recorded recipe")
    add.add_argument("--name", required=True, help="the new degradation's name, e.g. jpeg")
    add.add_argument(
        "--op",
        action="append",
        required=True,
        metavar="SPEC",
        help="its operator spec, ranges allowed (jpeg:quality=10..60); repeat for alternatives",
    )
    add.add_argument("--out", required=True, metavar="DIR", help="folder for the new runs")
    add.add_argument("-o", "--output", metavar="FILE", help="new bundle (default: <out>/bundle.safetensors)")
    add.add_argument("--quiet", action="store_true", help="no progress bars")

    info = sub.add_parser("info", help="what a bundle holds")
    info.add_argument("bundle", metavar="BUNDLE", help="bundle file (bundle.safetensors)")

    export = sub.add_parser(
        "export-adapter", help="write one adapter as an ordinary LoRA adapter file (anyrestore.adapters)"
    )
    export.add_argument("bundle", metavar="BUNDLE", help="bundle file holding the adapter")
    export.add_argument("name", metavar="NAME", help="adapter name")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="adapter file (.safetensors)")


def run(args: argparse.Namespace) -> int:
    from anyrestore.methods import abair

    if args.abair_command == "build":
        from anyrestore.train import load_recipe

        recipe = load_recipe(args.recipe, args.overrides)
        out = Path(args.out) if args.out else Path("out") / recipe.name
        path = abair.build(recipe, out, progress=not args.quiet)
        print(f"ABAIR bundle: {path}")
    elif args.abair_command == "add-degradation":
        path = abair.add_degradation(
            args.bundle,
            args.name,
            args.op,
            args.out,
            overrides=args.overrides,
            output=args.output,
            progress=not args.quiet,
        )
        print(f"ABAIR bundle: {path}")
    elif args.abair_command == "info":
        print(abair.describe_bundle(args.bundle))
    else:
        print(f"adapter file: {abair.export_adapter(args.bundle, args.name, args.output)}")
    return 0
