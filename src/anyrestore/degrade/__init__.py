"""Degradation library: pure, batched, seeded operators on (N, 3, H, W) float images in [0, 1].

Every operator takes ``(x, *, generator=None, **params)``, never modifies ``x``, returns a new tensor
clipped to [0, 1] with the input's dtype and device, and draws randomness only from ``generator`` (the
global RNG when None; for a CUDA input the generator must live on that device). JPEG alone runs on CPU
(a real Pillow codec round trip) and returns to the input's device.

- :data:`OPERATORS` / :func:`apply_op` / :func:`sample_params`: the registry with typed parameters and the
  papers' sampling presets (``"default"``; for noise, blur and jpeg ``"ram"``, the ranges of RAM's
  released code, and ``"ram_paper"``, those its paper states).
- :func:`parse_op_spec`: ``"noise:sigma=25"`` style text specs for the CLI.
- :func:`apply_sequence`, :func:`apply_regions`, :func:`apply_pipeline`: hybrid and region-mixed
  degradations with per-pixel label maps.
"""

from .blur import gaussian_blur, gaussian_kernel, line_coverage, motion_blur, motion_kernel
from .compose import (
    NAMED_PIPELINES,
    apply_pipeline,
    apply_regions,
    apply_sequence,
    labels_to_index,
    random_boxes,
)
from .jpeg import jpeg_compress
from .light import low_light
from .noise import gaussian_noise, poisson_noise, salt_pepper, speckle_noise
from .quantize import quantize
from .registry import (
    OPERATORS,
    Dist,
    Operator,
    Param,
    apply_op,
    describe_operators,
    get_operator,
    resolve_params,
    sample_params,
)
from .resize import downsample, imresize, modcrop
from .spec import format_op_spec, parse_op_spec
from .weather import depth_proxy, flake_kernel, haze, rain, snow

__all__ = [
    "NAMED_PIPELINES",
    "OPERATORS",
    "Dist",
    "Operator",
    "Param",
    "apply_op",
    "apply_pipeline",
    "apply_regions",
    "apply_sequence",
    "depth_proxy",
    "describe_operators",
    "downsample",
    "flake_kernel",
    "format_op_spec",
    "gaussian_blur",
    "gaussian_kernel",
    "gaussian_noise",
    "get_operator",
    "haze",
    "imresize",
    "jpeg_compress",
    "labels_to_index",
    "line_coverage",
    "low_light",
    "modcrop",
    "motion_blur",
    "motion_kernel",
    "parse_op_spec",
    "poisson_noise",
    "quantize",
    "rain",
    "random_boxes",
    "resolve_params",
    "salt_pepper",
    "sample_params",
    "snow",
    "speckle_noise",
]
