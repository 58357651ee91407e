"""RAM (Qin et al. 2024, "Restore Anything with Masks"): masked pre-training pieces and twin-mask inference.

The MAC layer ranking and the freeze plan of RAM's fine-tuning live in :mod:`anyrestore.attribution`; the
training objectives ``ram_pretrain`` and ``ram_finetune`` (registered on import) in :mod:`.objectives`.
"""

from anyrestore.methods.ram.losses import masked_l1
from anyrestore.methods.ram.masks import apply_mask, mask_token_colour, mask_unit_range, random_pixel_mask
from anyrestore.methods.ram.objectives import RamFinetune, RamPretrain
from anyrestore.methods.ram.twin import TwinMaskResult, twin_mask_inference

__all__ = [
    "RamFinetune",
    "RamPretrain",
    "TwinMaskResult",
    "apply_mask",
    "mask_token_colour",
    "mask_unit_range",
    "masked_l1",
    "random_pixel_mask",
    "twin_mask_inference",
]
