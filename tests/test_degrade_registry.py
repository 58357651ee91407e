"""The degradation registry, its sampling presets and the CLI spec strings."""

from __future__ import annotations

import pytest
import torch

import anyrestore.degrade as D

REQUIRED = {
    "noise",
    "poisson",
    "salt_pepper",
    "speckle",
    "blur",
    "motion_blur",
    "jpeg",
    "downsample",
    "rain",
    "haze",
    "low_light",
    "snow",
    "quantize",
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_contents() -> None:
    assert set(D.OPERATORS) == REQUIRED
    for name, op in D.OPERATORS.items():
        assert op.name == name and callable(op.apply)
        assert op.validate(op.defaults) == op.defaults
        assert "default" in op.ranges
        line = op.describe()
        assert line.startswith(name + "(") and "\n" not in line
        with pytest.raises(AttributeError):
            op.name = "other"  # frozen
    assert [n for n, op in D.OPERATORS.items() if op.resizes] == ["downsample"]
    assert D.describe_operators().count("\n") == len(D.OPERATORS) - 1


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_samples_respect_ranges_and_seed(name: str) -> None:
    op = D.OPERATORS[name]
    for preset, dists in op.ranges.items():
        g = gen(1)
        draws = [op.sample(g, preset) for _ in range(40)]
        g = gen(1)
        assert draws == [D.sample_params(name, g, preset) for _ in range(40)]
        for params in draws:
            assert set(params) == set(op.params)
            op.validate(params)  # within the operator's own bounds
            for key, dist in dists.items():
                lo, hi = dist.bounds()
                assert lo <= params[key] <= hi, (name, preset, key, params[key])
                if dist.kind in ("randint", "choice"):
                    assert params[key] in (range(lo, hi + 1) if dist.kind == "randint" else dist.args)
        varying = [k for k, d in dists.items() if d.bounds()[0] != d.bounds()[1]]
        for key in varying:
            assert len({p[key] for p in draws}) > 1


def test_paper_presets() -> None:
    g = gen(2)
    ram_noise = [D.sample_params("noise", g, "ram")["sigma"] for _ in range(300)]
    assert all(float(s).is_integer() and 0 <= s <= 50 for s in ram_noise)  # integer sigma, float type
    assert min(ram_noise) <= 2 and max(ram_noise) >= 48
    ram_blur = [D.sample_params("blur", g, "ram") for _ in range(200)]
    assert {p["kernel_size"] for p in ram_blur} == {15}
    assert {p["sigma"] for p in ram_blur} == {round(2.0 + 0.1 * i, 1) for i in range(11)}
    ram_jpeg = [D.sample_params("jpeg", g, "ram")["quality"] for _ in range(300)]
    assert all(isinstance(q, int) for q in ram_jpeg) and min(ram_jpeg) >= 10 and max(ram_jpeg) <= 90
    blur = [D.sample_params("blur", g)["sigma"] for _ in range(200)]
    assert 0.1 <= min(blur) < 0.4 and 2.8 < max(blur) <= 3.1
    jpeg = [D.sample_params("jpeg", g)["quality"] for _ in range(300)]
    assert min(jpeg) >= 20 and max(jpeg) <= 90
    noise = [D.sample_params("noise", g)["sigma"] for _ in range(200)]
    assert min(noise) >= 0 and max(noise) <= 50
    with pytest.raises(ValueError, match="unknown preset 'ram'; valid: default"):
        D.sample_params("haze", g, "ram")
    with pytest.raises(ValueError, match="unknown degradation 'nosie'"):
        D.sample_params("nosie", g)


def test_apply_op_defaults_presets_and_validation() -> None:
    x = torch.rand(1, 3, 32, 32, generator=gen())
    torch.testing.assert_close(D.apply_op(x, "blur"), D.gaussian_blur(x, kernel_size=15, sigma=2.0))
    sampled = D.apply_op(x, "noise", generator=gen(4), preset="ram")
    g = gen(4)
    params = D.sample_params("noise", g, "ram")
    assert torch.equal(sampled, D.gaussian_noise(x, generator=g, **params))
    assert D.resolve_params("noise", {"preset": "ram", "sigma": 3}, gen())["sigma"] == 3.0
    assert D.resolve_params("jpeg") == {"quality": 30}
    for bad in ({"quality": 0}, {"quality": 30.5}, {"qualty": 30}, {"quality": "x"}):
        with pytest.raises(ValueError, match="jpeg"):
            D.apply_op(x, "jpeg", **bad)
    with pytest.raises(ValueError, match="kernel_size=4 is not odd"):
        D.apply_op(x, "blur", kernel_size=4)
    with pytest.raises(ValueError, match="scale=5 is not allowed"):
        D.apply_op(x, "downsample", scale=5)


# ---------------------------------------------------------------- spec strings


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("noise", ("noise", {})),
        ("noise:sigma=25", ("noise", {"sigma": 25.0})),
        (" jpeg : quality = 30 ", ("jpeg", {"quality": 30})),
        ("blur:kernel_size=7,sigma=1.5", ("blur", {"kernel_size": 7, "sigma": 1.5})),
        ("haze:beta=0.5,airlight=0.8/0.9/1.0", ("haze", {"beta": 0.5, "airlight": (0.8, 0.9, 1.0)})),
        ("haze:airlight=0.7", ("haze", {"airlight": 0.7})),
        ("noise:random", ("noise", {"preset": "default"})),
        ("noise:preset=ram", ("noise", {"preset": "ram"})),
        ("noise:preset=ram,sigma=10", ("noise", {"preset": "ram", "sigma": 10.0})),
        ("downsample:scale=3", ("downsample", {"scale": 3})),
    ],
)
def test_parse_valid(spec: str, expected: tuple) -> None:
    name, params = D.parse_op_spec(spec)
    assert (name, params) == expected
    for key, value in params.items():
        assert type(value) is type(expected[1][key])


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("", "empty degradation name"),
        ("nosie:sigma=3", "unknown degradation 'nosie'; valid: noise, poisson"),
        ("noise:sigm=3", "'noise': unknown parameter 'sigm'; valid: sigma"),
        ("noise:sigma=abc", "'noise': sigma=abc is not a number"),
        ("noise:sigma=nan", "'noise': sigma=nan is not finite"),
        ("noise:sigma=300", "'noise': sigma=300 is out of range"),
        ("jpeg:quality=30.5", "'jpeg': quality=30.5 is not an integer"),
        ("jpeg:quality=0", "'jpeg': quality=0 is out of range"),
        ("blur:kernel_size=4", "'blur': kernel_size=4 is not odd"),
        ("downsample:scale=5", "'downsample': scale=5 is not allowed"),
        ("noise:sigma", "'noise': expected key=value or 'random'"),
        ("noise:sigma=1,sigma=2", "'noise': parameter 'sigma' given twice"),
        ("noise:preset=foo", "'noise': unknown preset 'foo'; valid: default, ram"),
        ("haze:airlight=0.8/0.9", "'haze': airlight=0.8/0.9 needs one value or three"),
        ("haze:depth=1", "'haze': 'depth' cannot be given in a spec"),
    ],
)
def test_parse_errors(spec: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        D.parse_op_spec(spec)
    assert "\n" not in str(info.value)


def test_unknown_parameter_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        D.parse_op_spec("rain:speed=3")
    msg = str(info.value)
    for key in ("density", "length", "angle", "brightness", "width", "preset"):
        assert key in msg


def test_format_round_trip() -> None:
    g = gen(9)
    for name in sorted(REQUIRED):
        params = D.sample_params(name, g)
        text = D.format_op_spec(name, params)
        assert D.parse_op_spec(text) == (name, {k: v for k, v in params.items() if v is not None})
    assert D.format_op_spec("noise") == "noise"
