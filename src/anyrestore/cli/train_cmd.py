"""``anyrestore train``: run a recipe on one CPU or GPU, or data-parallel under ``torchrun``."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train or fine-tune a model from a recipe (resumable; torchrun for several GPUs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="recipe file, or the name of a packaged recipe")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="recipe overrides, e.g. schedule.iterations=1000 data.train.sets.0.patch_size=64",
    )
    parser.add_argument("--out", metavar="DIR", help="run folder (default: out/<recipe name>)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        choices=[True, "auto"],
        metavar="auto",
        help="continue the run in --out from its last complete checkpoint; '--resume auto': continue it "
        "when there is one, else start (for torchrun --max-restarts and sbatch --requeue)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import anyrestore.methods.abair  # noqa: F401  (registers the abair_* objectives)
    import anyrestore.methods.adaptir  # noqa: F401  (registers the "adapter" training method)
    import anyrestore.methods.ram.objectives  # noqa: F401  (registers ram_pretrain, ram_finetune)
    from anyrestore.train import Trainer, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    out_dir = Path(args.out) if args.out else Path("out") / recipe.name
    Trainer(recipe, out_dir, resume=args.resume, progress=not args.quiet).run()
    return 0
