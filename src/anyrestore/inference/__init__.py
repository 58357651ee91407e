"""Running restorers: padding to the size multiple, seamless tiling, precision, self-ensemble."""

from anyrestore.inference.api import restore
from anyrestore.inference.hooks import find_analyzer, find_segmenter
from anyrestore.inference.padding import crop_to, pad_to_multiple, reflect_pad
from anyrestore.inference.restorer import InferenceError, InferenceOptions, Restorer, resolve_device
from anyrestore.inference.tiling import tiled_forward

__all__ = [
    "InferenceError",
    "InferenceOptions",
    "Restorer",
    "crop_to",
    "find_analyzer",
    "find_segmenter",
    "pad_to_multiple",
    "reflect_pad",
    "resolve_device",
    "restore",
    "tiled_forward",
]
