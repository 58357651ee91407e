"""The operator registry: every degradation with its typed parameters, defaults and sampling presets."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .blur import gaussian_blur, motion_blur
from .jpeg import jpeg_compress
from .light import low_light
from .noise import gaussian_noise, poisson_noise, salt_pepper, speckle_noise
from .quantize import quantize
from .resize import downsample
from .weather import haze, rain, snow

PRESET_KEY = "preset"


@dataclass(frozen=True)
class Param:
    """One operator parameter: its kind (``"int"``, ``"float"``, ``"rgb"`` = one float or one per channel,
    ``"tensor"`` = programmatic only), default, inclusive bounds, optional allowed values, one-line doc."""

    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    odd: bool = False
    doc: str = ""

    def describe(self) -> str:
        """Short type/range text such as ``int 1..100`` or ``int in {2, 3, 4}``."""
        if self.kind == "tensor":
            return "tensor, API only"
        if self.choices is not None:
            return f"{self.kind} in {{{', '.join(str(c) for c in self.choices)}}}"
        rng = f" {_fmt(self.low)}..{_fmt(self.high)}" if self.low is not None else ""
        kind = "float or R/G/B" if self.kind == "rgb" else self.kind
        return f"{'odd ' if self.odd else ''}{kind}{rng}"

    def coerce(self, op: str, key: str, value: Any) -> Any:
        """Convert ``value`` (a Python value or spec text) to this parameter's type and check its range."""

        def fail(why: str) -> ValueError:
            return ValueError(f"degradation '{op}': {key}={_show(value)} {why} (expected {self.describe()})")

        if self.kind == "tensor":
            if value is None or isinstance(value, torch.Tensor):
                return value
            raise fail("is not a tensor")
        if self.kind == "rgb" and (isinstance(value, Sequence) and not isinstance(value, str)):
            parts = list(value)
        elif self.kind == "rgb" and isinstance(value, str) and "/" in value:
            parts = value.split("/")
        else:
            parts = None
        if parts is not None:
            if len(parts) != 3:
                raise fail("needs one value or three (R/G/B)")
            return tuple(self._scalar(p, "float", fail) for p in parts)
        return self._scalar(value, "float" if self.kind == "rgb" else self.kind, fail)

    def _scalar(self, value: Any, kind: str, fail: Callable[[str], ValueError]) -> int | float:
        if isinstance(value, bool):
            raise fail(f"is not {'an integer' if kind == 'int' else 'a number'}")
        if isinstance(value, str):
            text = value.strip()
            try:
                value = int(text) if kind == "int" else float(text)
            except ValueError:
                raise fail(f"is not {'an integer' if kind == 'int' else 'a number'}") from None
        elif kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise fail("is not an integer")
        elif isinstance(value, (int, float)):
            value = float(value)
        else:
            raise fail("is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise fail("is not finite")
        if self.choices is not None and value not in self.choices:
            raise fail("is not allowed")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise fail("is out of range")
        if self.odd and value % 2 == 0:
            raise fail("is not odd")
        return value


@dataclass(frozen=True)
class Dist:
    """A sampling distribution for one parameter: ``uniform``, ``loguniform`` (floats, [lo, hi)),
    ``randint`` (integers, both ends included) or ``choice`` (one of ``args``, equally likely)."""

    kind: str
    args: tuple[Any, ...]

    def sample(self, generator: torch.Generator | None = None) -> Any:
        """Draw one value with ``generator`` (global RNG when None), on the generator's device."""
        device = generator.device if generator is not None else torch.device("cpu")
        if self.kind in ("uniform", "loguniform"):
            lo, hi = self.args
            u = torch.rand(1, generator=generator, device=device, dtype=torch.float64).item()
            if self.kind == "uniform":
                return lo + (hi - lo) * u
            return math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
        if self.kind == "randint":
            lo, hi = self.args
            return int(torch.randint(lo, hi + 1, (1,), generator=generator, device=device).item())
        if self.kind == "choice":
            i = int(torch.randint(0, len(self.args), (1,), generator=generator, device=device).item())
            return self.args[i]
        raise ValueError(f"unknown distribution kind {self.kind!r}")

    def bounds(self) -> tuple[Any, Any]:
        """Smallest and largest value this distribution can return."""
        if self.kind == "choice":
            return min(self.args), max(self.args)
        return self.args[0], self.args[1]

    def __str__(self) -> str:
        if self.kind == "uniform":
            return f"U({_fmt(self.args[0])}, {_fmt(self.args[1])})"
        if self.kind == "loguniform":
            return f"logU({_fmt(self.args[0])}, {_fmt(self.args[1])})"
        if self.kind == "randint":
            return f"int {self.args[0]}..{self.args[1]}"
        return "{" + ", ".join(_fmt(a) for a in self.args) + "}"


def uniform(lo: float, hi: float) -> Dist:
    return Dist("uniform", (float(lo), float(hi)))


def loguniform(lo: float, hi: float) -> Dist:
    return Dist("loguniform", (float(lo), float(hi)))


def randint(lo: int, hi: int) -> Dist:
    return Dist("randint", (int(lo), int(hi)))


def choice(*values: Any) -> Dist:
    return Dist("choice", tuple(values))


@dataclass(frozen=True, eq=False)
class Operator:
    """A registered degradation.

    ``apply(x, *, generator=None, **params)`` is the raw function; calling the operator itself validates
    the parameters first and fills in defaults. ``ranges`` maps a preset name to the distributions that
    :meth:`sample` draws from (parameters absent from a preset keep their defaults). ``resizes``: changes
    the spatial size. ``random``: draws from the generator. ``local``: changes only some pixels (rain,
    snow, impulse noise), so the composer labels the pixels it changed rather than all of them.
    """

    name: str
    apply: Callable[..., torch.Tensor]
    params: Mapping[str, Param]
    ranges: Mapping[str, Mapping[str, Dist]]
    summary: str
    resizes: bool = False
    random: bool = False
    local: bool = False
    defaults: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", {k: p.default for k, p in self.params.items()})

    @property
    def presets(self) -> tuple[str, ...]:
        return tuple(self.ranges)

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``params`` converted to their types; ValueError naming the bad parameter otherwise."""
        out = {}
        for key, value in params.items():
            if key not in self.params:
                raise ValueError(
                    f"degradation '{self.name}': unknown parameter '{key}'; valid: {self.param_list()}"
                )
            out[key] = self.params[key].coerce(self.name, key, value)
        return out

    def param_list(self) -> str:
        """``sigma (float 0..255), ...`` plus the ``preset`` pseudo-parameter, for messages and help."""
        items = [f"{k} ({p.describe()})" for k, p in self.params.items()]
        items.append(f"{PRESET_KEY} ({'/'.join(self.presets)})")
        return ", ".join(items)

    def sample(self, generator: torch.Generator | None = None, preset: str = "default") -> dict[str, Any]:
        """Draw a complete parameter dict from ``preset``; deterministic for a seeded generator."""
        if preset not in self.ranges:
            raise ValueError(
                f"degradation '{self.name}': unknown preset '{preset}'; valid: {', '.join(self.presets)}"
            )
        params = dict(self.defaults)
        for key, dist in self.ranges[preset].items():
            params[key] = self.params[key].coerce(self.name, key, dist.sample(generator))
        return params

    def resolve(self, params: Mapping[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        """Complete, concrete parameters: defaults, or a preset's sample when ``params`` holds
        ``preset=<name>``, overridden by the other given values."""
        params = dict(params)
        preset = params.pop(PRESET_KEY, None)
        given = self.validate(params)
        base = self.sample(generator, str(preset)) if preset is not None else dict(self.defaults)
        base.update(given)
        return base

    def __call__(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None, **params: Any
    ) -> torch.Tensor:
        return self.apply(x, generator=generator, **self.resolve(params, generator))

    def describe(self) -> str:
        """One line for the README and the CLI help: parameters with defaults, then each preset's ranges."""
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.defaults.items() if v is not None)
        presets = "; ".join(
            f"{name}: " + ", ".join(f"{k}~{d}" for k, d in dists.items())
            for name, dists in self.ranges.items()
        )
        return f"{self.name}({args}): {self.summary} [presets {presets}]"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "/".join(_fmt(a) for a in v)
    return str(v)


def _show(v: Any) -> str:
    text = v if isinstance(v, str) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _op(
    name: str, fn: Callable[..., torch.Tensor], summary: str, params: dict[str, Param], **kw: Any
) -> Operator:
    ranges = kw.pop("ranges")
    return Operator(name=name, apply=fn, params=params, ranges=ranges, summary=summary, **kw)


_OPS = [
    _op(
        "noise",
        gaussian_noise,
        "additive Gaussian noise, sigma on the 0..255 scale",
        {"sigma": Param("float", 25.0, 0, 255, doc="std on 0..255")},
        # "ram": RAM's released code (integer sigma); "ram_paper": the RAM paper's text, sigma in (0, 50]
        ranges={
            "default": {"sigma": uniform(0, 50)},
            "ram": {"sigma": randint(0, 50)},
            "ram_paper": {"sigma": uniform(0, 50)},
        },
        random=True,
    ),
    _op(
        "poisson",
        poisson_noise,
        "Poisson shot noise, Poisson(x*peak)/peak",
        {"peak": Param("float", 30.0, 0.1, 1e5, doc="photons at white")},
        ranges={"default": {"peak": loguniform(5, 100)}},
        random=True,
    ),
    _op(
        "salt_pepper",
        salt_pepper,
        "impulse noise on a fraction `amount` of the pixels",
        {
            "amount": Param("float", 0.05, 0, 1, doc="fraction of pixels hit"),
            "salt_vs_pepper": Param("float", 0.5, 0, 1, doc="share of white among hits"),
        },
        ranges={"default": {"amount": uniform(0.005, 0.1), "salt_vs_pepper": uniform(0.3, 0.7)}},
        random=True,
        local=True,
    ),
    _op(
        "speckle",
        speckle_noise,
        "multiplicative Gaussian noise x + x*N(0, sigma^2)",
        {"sigma": Param("float", 0.1, 0, 2, doc="std on the [0, 1] scale")},
        ranges={"default": {"sigma": uniform(0.05, 0.3)}},
        random=True,
    ),
    _op(
        "blur",
        gaussian_blur,
        "Gaussian blur, reflect padding",
        {
            "kernel_size": Param("int", 15, 1, 101, odd=True, doc="odd kernel size"),
            "sigma": Param("float", 2.0, 0, 50, doc="std in pixels"),
        },
        ranges={
            "default": {"kernel_size": choice(15), "sigma": uniform(0.1, 3.1)},
            "ram": {
                "kernel_size": choice(15),
                "sigma": choice(*(round(2.0 + 0.1 * i, 1) for i in range(11))),
            },
            "ram_paper": {"kernel_size": choice(15), "sigma": uniform(0.1, 3.1)},
        },
    ),
    _op(
        "motion_blur",
        motion_blur,
        "linear motion blur, anti-aliased line kernel summing to 1",
        {
            "length": Param("float", 15.0, 1, 201, doc="pixels"),
            "angle": Param("float", 0.0, -360, 360, doc="degrees counter-clockwise from horizontal"),
        },
        ranges={"default": {"length": uniform(5, 25), "angle": uniform(0, 180)}},
    ),
    _op(
        "jpeg",
        jpeg_compress,
        "real JPEG round trip (Pillow/libjpeg, 4:2:0 chroma)",
        {"quality": Param("int", 30, 1, 100, doc="JPEG quality")},
        ranges={
            "default": {"quality": randint(20, 90)},
            "ram": {"quality": randint(10, 90)},
            "ram_paper": {"quality": randint(20, 90)},
            "low": {"quality": randint(10, 50)},
        },
    ),
    _op(
        "downsample",
        downsample,
        "MATLAB bicubic downscaling by `scale` (bottom/right crop to a multiple first)",
        {"scale": Param("int", 4, choices=(2, 3, 4), doc="reduction factor")},
        ranges={"default": {"scale": choice(2, 3, 4)}},
        resizes=True,
    ),
    _op(
        "rain",
        rain,
        "rain streaks screened on: y = x + brightness*R*(1-x)",
        {
            "density": Param("float", 0.004, 0, 0.1, doc="streak seeds per pixel"),
            "length": Param("float", 20.0, 1, 200, doc="streak length, pixels"),
            "angle": Param("float", 10.0, -90, 90, doc="degrees from vertical"),
            "brightness": Param("float", 0.8, 0, 1, doc="streak opacity"),
            "width": Param("float", 1.0, 0.25, 10, doc="streak width, pixels"),
        },
        ranges={
            "default": {
                "density": uniform(0.001, 0.01),
                "length": uniform(10, 40),
                "angle": uniform(-30, 30),
                "brightness": uniform(0.5, 1.0),
                "width": uniform(0.75, 2.0),
            }
        },
        random=True,
        local=True,
    ),
    _op(
        "haze",
        haze,
        "atmospheric scattering x*t + A*(1-t), t = exp(-beta*d), d from the image or given",
        {
            "beta": Param("float", 1.0, 0, 10, doc="scattering coefficient"),
            "airlight": Param("rgb", 0.9, 0, 1, doc="atmospheric light A"),
            "depth": Param("tensor", None, doc="depth in [0, 1], 1 = far"),
        },
        ranges={"default": {"beta": uniform(0.5, 2.5), "airlight": uniform(0.7, 1.0)}},
    ),
    _op(
        "low_light",
        low_light,
        "gain*x^gamma plus Poisson-Gaussian sensor noise in that dark domain",
        {
            "gamma": Param("float", 2.0, 0.1, 10, doc=">1 darkens shadows"),
            "gain": Param("float", 0.3, 0, 1, doc="exposure factor"),
            "shot": Param("float", 0.05, 0, 1, doc="shot-noise std at white"),
            "read": Param("float", 0.01, 0, 1, doc="read-noise std"),
        },
        ranges={
            "default": {
                "gamma": uniform(1.5, 3.0),
                "gain": uniform(0.1, 0.5),
                "shot": uniform(0.01, 0.1),
                "read": uniform(0.002, 0.02),
            }
        },
        random=True,
    ),
    _op(
        "snow",
        snow,
        "snowflakes screened onto a veiled image",
        {
            "density": Param("float", 0.003, 0, 0.1, doc="flakes per pixel"),
            "size": Param("float", 3.0, 0.5, 50, doc="flake diameter, pixels"),
            "length": Param("float", 4.0, 1, 200, doc="flake streak length, pixels"),
            "angle": Param("float", 0.0, -90, 90, doc="degrees from vertical"),
            "brightness": Param("float", 0.9, 0, 1, doc="flake opacity"),
            "veil": Param("float", 0.15, 0, 1, doc="brightening at dense snowfall"),
        },
        ranges={
            "default": {
                "density": uniform(0.001, 0.01),
                "size": uniform(1.5, 5.0),
                "length": uniform(1, 12),
                "angle": uniform(-30, 30),
                "brightness": uniform(0.7, 1.0),
                "veil": uniform(0.05, 0.25),
            }
        },
        random=True,
        local=True,
    ),
    _op(
        "quantize",
        quantize,
        "bit-depth reduction to 2**bits levels",
        {"bits": Param("int", 4, 1, 16, doc="bits per channel")},
        ranges={"default": {"bits": randint(3, 6)}},
    ),
]

OPERATORS: dict[str, Operator] = {op.name: op for op in _OPS}


def get_operator(name: str) -> Operator:
    """The registered operator ``name``; ValueError listing the valid names otherwise."""
    try:
        return OPERATORS[name]
    except KeyError:
        raise ValueError(f"unknown degradation '{name}'; valid: {', '.join(OPERATORS)}") from None


def apply_op(
    x: torch.Tensor, name: str, *, generator: torch.Generator | None = None, **params: Any
) -> torch.Tensor:
    """Apply ``name`` with validated ``params`` (defaults for the rest, ``preset=<name>`` samples)."""
    return get_operator(name)(x, generator=generator, **params)


def sample_params(
    name: str, generator: torch.Generator | None = None, preset: str = "default"
) -> dict[str, Any]:
    """Draw a complete parameter dict for ``name`` from ``preset``."""
    return get_operator(name).sample(generator, preset)


def resolve_params(
    name: str, params: Mapping[str, Any] | None = None, generator: torch.Generator | None = None
) -> dict[str, Any]:
    """The concrete parameters :func:`apply_op` would use (samples a ``preset`` entry with ``generator``)."""
    return get_operator(name).resolve(params or {}, generator)


def describe_operators() -> str:
    """One line per operator (see :meth:`Operator.describe`)."""
    return "\n".join(op.describe() for op in OPERATORS.values())
