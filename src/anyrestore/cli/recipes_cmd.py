"""``anyrestore recipes``: the packaged training recipes, or one of them in full."""

from __future__ import annotations

import argparse

HELP = "list the packaged training recipes, or print one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="print this recipe (copy it to customise)")


def run(args: argparse.Namespace) -> int:
    from anyrestore.train import RecipeError, packaged_recipes
    from anyrestore.train.recipe import read_recipe_data

    recipes = packaged_recipes()
    if args.name:
        if args.name not in recipes:
            raise RecipeError(f"no packaged recipe '{args.name}'; packaged: {', '.join(recipes) or 'none'}")
        print(recipes[args.name].read_text(), end="")
        return 0
    width = max((len(n) for n in recipes), default=0)
    for name, path in recipes.items():
        description = " ".join(str(read_recipe_data(path).get("description", "")).split())
        first = description.split(". ")[0].rstrip(".")
        print(f"{name:<{width}}  {first}")
    return 0
