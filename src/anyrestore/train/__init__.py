"""The training engine: recipes, the loop, mixed precision, EMA, checkpoints with exact resume, DDP.

``Trainer(load_recipe("tiny_denoise"), "out/tiny").run()`` or ``anyrestore train tiny_denoise``; under
``torchrun --nproc_per_node=N -m anyrestore train ...`` the same code runs data-parallel. Methods plug in
through :func:`register_objective`.
"""

from anyrestore.train.checkpoints import ResumeError, list_checkpoints, load_latest_checkpoint
from anyrestore.train.distributed import DistContext, DistributedError
from anyrestore.train.ema import ModelEMA
from anyrestore.train.losses import LOSSES, WeightedLoss
from anyrestore.train.objective import (
    OBJECTIVES,
    GeneratorBank,
    Objective,
    ObjectiveError,
    StepContext,
    register_objective,
)
from anyrestore.train.precision import Precision
from anyrestore.train.recipe import (
    Recipe,
    RecipeError,
    apply_overrides,
    find_recipe,
    load_recipe,
    packaged_recipes,
    recipe_from_dict,
)
from anyrestore.train.schedule import LRSchedule
from anyrestore.train.trainer import (
    CHECKPOINT_DIR,
    FINAL_WEIGHTS,
    RECIPE_FILE,
    Trainer,
    TrainError,
    TrainResult,
)
from anyrestore.train.validate import validate, validate_recipe

__all__ = [
    "CHECKPOINT_DIR",
    "FINAL_WEIGHTS",
    "LOSSES",
    "OBJECTIVES",
    "RECIPE_FILE",
    "DistContext",
    "DistributedError",
    "GeneratorBank",
    "LRSchedule",
    "ModelEMA",
    "Objective",
    "ObjectiveError",
    "Precision",
    "Recipe",
    "RecipeError",
    "ResumeError",
    "StepContext",
    "TrainError",
    "TrainResult",
    "Trainer",
    "WeightedLoss",
    "apply_overrides",
    "find_recipe",
    "list_checkpoints",
    "load_latest_checkpoint",
    "load_recipe",
    "packaged_recipes",
    "recipe_from_dict",
    "register_objective",
    "validate",
    "validate_recipe",
]
