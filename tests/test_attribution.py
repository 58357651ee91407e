"""Attribution: units, MAC / IG conductance, rankings and their files, freeze plans, ``anyrestore mac``."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from anyrestore.attribution import (
    AttributionError,
    MaskAttributePath,
    Ranking,
    attribution_units,
    conductance,
    edge_energy,
    freeze_plan,
    integrated_gradients,
    integrated_gradients_reference,
    load_attribution_images,
    mac,
    mac_reference,
    parse_data_spec,
    plot_ranking,
    random_ranking,
    read_ranking,
    write_ranking,
)
from anyrestore.cli import mac_cmd
from anyrestore.models import build_model
from anyrestore.models.checkpoint import save_model
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.normalize import ImageNetNormalized

TINY_NAFNET = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}
TINY_PROMPTIR = {
    "dim": 8,
    "num_blocks": (1, 1, 1, 1),
    "num_refinement_blocks": 1,
    "heads": (1, 1, 1, 1),
    "prompt_dims": (8, 16, 32),
}
TINY_SWINIR = {"img_size": 8, "window_size": 4, "embed_dim": 12, "depths": (1, 1), "num_heads": (2, 2)}


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny convolutions are much slower with threads fighting over shared cores
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_cnn(inplace: bool = False) -> nn.Sequential:
    """conv -> tanh -> conv -> leaky relu -> conv; every conv cuts the network."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=inplace),
        nn.Conv2d(4, 3, 3, padding=1),
    ).double()


def _photo64(photos: torch.Tensor, size: int) -> torch.Tensor:
    return photos[:, :, :size, :size].double().contiguous()


# ------------------------------------------------------------------------------------------------ units


def test_released_ram_models_have_the_papers_unit_counts() -> None:
    with torch.device("meta"):
        promptir = build_model("ram_promptir")
        swinir = build_model("ram_swinir")
    assert len(attribution_units(promptir)) == 445
    units = attribution_units(swinir)
    assert len(units) == 263
    assert "" not in units and "mask_token" not in units  # root-owned parameters are no unit
    assert units[0] == "conv_first" and len(set(units)) == len(units)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compile machinery
def test_unit_names_ignore_compile_and_normalisation_wrappers() -> None:
    model = build_model("nafnet", **TINY_NAFNET)
    plain = attribution_units(model)
    compiled = torch.compile(model)  # wraps as _orig_mod; compiles only when called
    assert next(iter(dict(compiled.named_parameters()))).startswith("_orig_mod.")
    assert attribution_units(compiled) == plain
    assert attribution_units(ImageNetNormalized(compiled)) == plain
    assert plain[0] == "intro" and not any(u.startswith(("module.", "_orig_mod.", "inner.")) for u in plain)


def test_unit_names_and_freeze_plan_under_real_ddp(tmp_path) -> None:
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    model = build_model("nafnet", **TINY_NAFNET)
    ranking = random_ranking(model, seed=3)
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        assert next(iter(dict(ddp.named_parameters()))).startswith("module.")
        assert attribution_units(ddp) == attribution_units(model)
        plan = freeze_plan(ddp, ranking, 0.3)
        plan.apply(ddp)
        chosen = set(ranking.top(0.3))
        for name, param in model.named_parameters():
            assert param.requires_grad == (name.rpartition(".")[0] in chosen)
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------------- the path


def test_mask_attribute_path_follows_the_definition() -> None:
    h, w, steps = 6, 7, 10
    n = h * w
    path = MaskAttributePath([(h, w)], steps=steps, seed=1)
    assert path.alpha(0) == 0.5 and path.alpha(steps - 1) == pytest.approx(0.95)
    ranks = path.ranks[0]
    assert sorted(ranks.tolist()) == list(range(n))
    masks = path(0, torch.arange(steps))
    assert masks.shape == (steps, 1, h, w) and masks.dtype == torch.float64
    for t in range(steps):
        a = path.alpha(t)
        flat = masks[t].flatten()
        on = ranks < math.ceil(a * n)
        assert int((flat > 0).sum()) == math.ceil(a * n)
        expected = torch.sigmoid(1e4 * (a - ranks.double() / n))
        assert torch.allclose(flat[on], expected[on]) and torch.all(flat[~on] == 0)
        # a pixel enters at sigmoid(k (a - i/N)) >= 0.5: the path jumps (see the completeness test)
        assert float(flat[on].min()) >= 0.5
    assert torch.all(masks[1:] >= masks[:-1])  # pixels are only ever revealed
    again = MaskAttributePath([(h, w)], steps=steps, seed=1)(0, torch.arange(steps))
    other = MaskAttributePath([(h, w)], steps=steps, seed=2)(0, torch.arange(steps))
    assert torch.equal(masks, again) and not torch.equal(masks, other)


def test_edge_energy_matches_its_formula_and_has_finite_gradients() -> None:
    y = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    expected = torch.zeros(2, dtype=torch.float64)
    for i in range(4):
        for j in range(5):
            dv = y[:, :, i, j] - y[:, :, i + 1, j]
            dh = y[:, :, i, j] - y[:, :, i, j + 1]
            expected += torch.sqrt(dv**2 + dh**2 + 1e-12).sum(1)
    assert torch.allclose(edge_energy(y), expected)
    flat = torch.zeros(1, 3, 4, 4, requires_grad=True)
    edge_energy(flat).sum().backward()
    assert torch.all(torch.isfinite(flat.grad))


# ----------------------------------------------------------------------------------------- conductance


def _errors(result) -> torch.Tensor:
    """|sum C - (F(x_last) - F(x_first))| per image, for the first conv (it cuts the network)."""
    return (result.totals[:, 0] - (result.f_end - result.f_start)).abs()


def test_conductance_is_complete_and_converges_on_a_straight_path(photos) -> None:
    model = _tiny_cnn()
    x = _photo64(photos, 16)
    coarse = integrated_gradients(model, x, steps=8, batch_size=5)
    fine = integrated_gradients(model, x, steps=64, batch_size=24)
    change = (fine.f_end - fine.f_start).abs()
    assert torch.all(_errors(fine) < 1e-2 * change)
    assert torch.all(_errors(fine) < _errors(coarse) / 4)  # first-order convergence: about 1/8
    # every cut gives the same total; the first and last conv (the output) included
    assert torch.allclose(fine.totals[:, 0], fine.totals[:, 2], rtol=1e-2)


def test_conductance_is_complete_on_a_continuous_pixelwise_mask_path(photos) -> None:
    """MAC's machinery (per-pixel masks, chunks carried over) on a reveal path without jumps."""
    model = _tiny_cnn(inplace=True)
    x = _photo64(photos, 12)
    start = torch.rand(12 * 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5

    def errors(points: int) -> torch.Tensor:
        def path(i: int, t: torch.Tensor) -> torch.Tensor:
            a = t.double()[:, None] / (points - 1)
            return ((a - start[None]) / 0.5).clamp(0, 1).view(-1, 1, 12, 12)

        result = conductance(model, x, path, points, batch_size=56)
        assert result.f_start[0] == result.f_start[1]  # both start all hidden: the same zero image
        return _errors(result) / (result.f_end - result.f_start).abs()

    coarse, fine = errors(32), errors(256)
    assert torch.all(fine < 0.05) and torch.all(fine < coarse / 4)  # first order: about 1/8


def test_mac_path_jumps_so_mac_is_not_complete(photos) -> None:
    """Documents why completeness is checked on continuous paths: MAC reveals pixels in jumps."""
    result = mac(_tiny_cnn(), _photo64(photos, 12), steps=144, batch_size=144)
    assert torch.all(_errors(result) > 0.05 * (result.f_end - result.f_start).abs())


@pytest.mark.parametrize("batch_size", [1, 5, 24])
def test_batched_mac_equals_the_step_by_step_reference(photos, batch_size: int) -> None:
    model = _tiny_cnn(inplace=True)  # the inplace activation rewrites a unit's output
    images = [photos[0, :, :10, :10], photos[1, :, :10, :10], photos[0, :, 20:28, 30:42]]
    images = [im.double() for im in images]
    batched = mac(model, images, steps=12, seed=4, batch_size=batch_size)
    reference = mac_reference(model, images, steps=12, seed=4)
    assert batched.units == reference.units == ["0", "2", "4"]
    assert torch.allclose(batched.scores, reference.scores, rtol=1e-10, atol=0)
    assert torch.allclose(batched.totals, reference.totals, rtol=1e-10, atol=1e-12)
    assert torch.allclose(batched.f_end, reference.f_end, rtol=1e-12)
    assert torch.all(batched.scores > 0)


@pytest.mark.parametrize(("arch", "cfg"), [("ram_promptir", TINY_PROMPTIR), ("ram_swinir", TINY_SWINIR)])
def test_batched_mac_equals_reference_on_ram_backbones(photos, arch: str, cfg: dict) -> None:
    torch.manual_seed(0)
    model = ImageNetNormalized(build_model(arch, **cfg).double())
    x = _photo64(photos, 16)[:1]
    batched = mac(model, x, steps=4, batch_size=3)
    reference = mac_reference(model, x, steps=4)
    assert torch.allclose(batched.scores, reference.scores, rtol=1e-8, atol=1e-30)
    assert batched.units == attribution_units(model)
    assert (batched.scores > 0).float().mean() > 0.9  # nearly every unit sees the path


class _SignalNet(nn.Module):
    """``carrier`` makes the output, ``weak`` adds 1% of its own, ``dead`` is computed and thrown away.
    Registered dead first and carrier last, so parameter order cannot produce the expected ranking."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.dead = nn.Conv2d(3, 3, 3, padding=1)
        self.weak = nn.Conv2d(3, 3, 3, padding=1)
        self.carrier = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.dead(x)  # unused output
        return self.carrier(x) + 0.01 * self.weak(x)


@pytest.mark.parametrize("method", ["mac", "ig"])
def test_ranking_puts_the_signal_first_and_the_unused_unit_last(photos, method: str) -> None:
    """The outcome of a ranking, not only its arithmetic: the unit carrying the output ranks first, the
    1%-branch second, and a unit whose output is never used scores exactly zero and ranks last."""
    model = _SignalNet().double()
    x = _photo64(photos, 12)
    result = (mac if method == "mac" else integrated_gradients)(model, x, steps=16, batch_size=16)
    ranking = result.ranking()
    assert list(ranking.units) == ["carrier", "weak", "dead"]
    scores = dict(zip(ranking.units, ranking.scores, strict=True))
    assert scores["dead"] == 0.0 and scores["weak"] > 0.0
    assert scores["carrier"] > 20 * scores["weak"]


def test_mac_runs_in_the_models_input_space(photos) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GELU(), nn.Conv2d(4, 3, 3, padding=1)).double()
    wrapped = ImageNetNormalized(net)
    x = _photo64(photos, 8)
    via_wrapper = mac(wrapped, x, steps=5)
    by_hand = mac(net, wrapped.normalize(x), steps=5)
    assert torch.allclose(via_wrapper.scores, by_hand.scores, rtol=1e-12)


def test_ig_is_deterministic_and_matches_its_reference(photos) -> None:
    model = _tiny_cnn()
    x = _photo64(photos, 8)
    a = integrated_gradients(model, x, steps=6, batch_size=4)
    b = integrated_gradients(model, x, steps=6, batch_size=4)
    ref = integrated_gradients_reference(model, x, steps=6)
    assert torch.equal(a.scores, b.scores) and a.ranking() == b.ranking()
    assert torch.allclose(a.scores, ref.scores, rtol=1e-10)
    assert a.ranking().method == "ig" and a.steps == 7  # T + 1 points


# ---------------------------------------------------------------------------------------------- ranking


def test_random_ranking_is_seeded() -> None:
    model = build_model("nafnet", **TINY_NAFNET)
    a, b, c = random_ranking(model, 5), random_ranking(model, 5), random_ranking(model, 6)
    assert a == b and a.units != c.units
    assert sorted(a.units) == sorted(attribution_units(model)) and a.method == "random"
    assert list(a.scores) == sorted(a.scores, reverse=True)


def test_ranking_file_round_trip_and_plot(tmp_path) -> None:
    units = [f"block{i}.conv" for i in range(40)]
    scores = [10.0 ** (-(i % 7)) * (1 + i / 100) for i in range(40)]
    ranking = Ranking.from_scores(units, scores, "mac", {"steps": "200", "model": "tiny.safetensors"})
    assert list(ranking.scores) == sorted(scores, reverse=True)
    assert ranking.units[ranking.depths.index(3)] == "block3.conv"
    path = write_ranking(tmp_path / "r.tsv", ranking)
    lines = path.read_text().splitlines()
    assert "unit\tscore\tdepth" in lines and lines[-1].count("\t") == 2
    back = read_ranking(path)
    assert back == ranking
    assert ranking.top(0.3) == list(ranking.units[:12])

    png = plot_ranking(tmp_path / "plot" / "mac.png", ranking, 0.3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.load()
        assert im.size == (1100, 440)
        colours = {c for _, c in im.getcolors(1 << 16)}
    assert (214, 39, 40) in colours  # the top 30% are drawn in red
    assert not list(tmp_path.glob("**/.*.tmp"))

    plain = tmp_path / "names.txt"
    plain.write_text("\n".join(ranking.units) + "\n")
    names = read_ranking(plain)
    assert names.units == ranking.units and math.isnan(names.scores[0])
    with pytest.raises(AttributionError, match="no depths"):
        plot_ranking(tmp_path / "x.png", names, 0.3)


# ----------------------------------------------------------------------------------------------- freeze


def test_freeze_plan_trains_exactly_the_selected_units() -> None:
    model = build_model("nafnet", **TINY_NAFNET)
    units = attribution_units(model)
    ranking = random_ranking(model, 1)
    plan = freeze_plan(ImageNetNormalized(model), ranking, 0.3)
    assert len(plan.trainable) == math.floor(0.3 * len(units))
    summary = plan.apply(ImageNetNormalized(model))
    chosen = set(ranking.units[: len(plan.trainable)])
    total = trainable = 0
    for name, param in model.named_parameters():
        assert param.requires_grad == (name.rpartition(".")[0] in chosen)
        total += param.numel()
        trainable += param.numel() * param.requires_grad
    assert summary == (
        f"{len(chosen)} of {len(units)} units, {trainable:,} of {total:,} parameters "
        f"({100 * trainable / total:.2f}%) trainable"
    )
    assert {id(p) for p in plan.trainable_parameters(model)} == {
        id(p) for p in model.parameters() if p.requires_grad
    }
    assert freeze_plan(model, list(ranking.units), 0.0).apply(model).startswith("0 of ")
    assert not any(p.requires_grad for p in model.parameters())


def test_freeze_plan_rejects_names_of_a_wrapped_model() -> None:
    model = build_model("nafnet", **TINY_NAFNET)
    prefixed = ["module." + u for u in attribution_units(model)]  # the released code's trap
    with pytest.raises(AttributionError, match="does not have"):
        freeze_plan(model, prefixed, 0.3)
    with pytest.raises(AttributionError, match="missing"):
        freeze_plan(model, attribution_units(model)[:-1], 0.3)


# ------------------------------------------------------------------------------------------ data and cli


def _write_photos(folder) -> None:
    from skimage import data

    folder.mkdir()
    for name in ("astronaut", "chelsea"):
        im = Image.fromarray(getattr(data, name)())
        im.resize((im.width // 6, im.height // 6), Image.Resampling.LANCZOS).save(folder / f"{name}.png")


def test_data_specs(tmp_path) -> None:
    src = parse_data_spec("clean=/x/y,ops=noise:sigma=25+blur:sigma=2+jpeg:quality=30")
    assert [op for op, _ in src.ops] == ["noise", "blur", "jpeg"] and src.ops[0][1] == {"sigma": 25.0}
    assert parse_data_spec("lq=/a/b").folder.as_posix() == "/a/b" and not parse_data_spec("/a/b").ops
    for bad in ("clean=/x", "clean=/x,ops=nosuchop", "clear=/x"):
        with pytest.raises(AttributionError):
            parse_data_spec(bad)
    _write_photos(tmp_path / "clean")
    spec = f"clean={tmp_path / 'clean'},ops=noise:sigma=25+jpeg:quality=30"
    samples = load_attribution_images([spec, f"lq={tmp_path / 'clean'}"], per_task=2, crop=24, seed=0)
    assert [s.task for s in samples] == ["noise:sigma=25.0"] * 2 + ["jpeg:quality=30"] * 2 + ["clean"] * 2
    assert all(s.image.shape == (3, 24, 24) for s in samples)
    again = load_attribution_images([spec], per_task=2, crop=24, seed=0)
    assert all(torch.equal(a.image, b.image) for a, b in zip(samples, again, strict=False))
    with pytest.raises(AttributionError, match="smaller"):
        load_attribution_images([spec], per_task=1, crop=4000)


def _run_mac_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    mac_cmd.add_arguments(parser)
    return mac_cmd.run(parser.parse_args(argv))


def test_mac_cli_end_to_end(tmp_path, capsys) -> None:
    _write_photos(tmp_path / "photos")
    torch.manual_seed(0)
    model = build_model("nafnet", **TINY_NAFNET)
    ckpt = save_model(
        tmp_path / "tiny.safetensors", ModelDescriptor.for_architecture("nafnet", TINY_NAFNET), model
    )
    data = f"clean={tmp_path / 'photos'},ops=noise:sigma=25+blur:sigma=2"
    out, png = tmp_path / "ranking.tsv", tmp_path / "mac.png"
    common = ["--model", str(ckpt), "--data", data, "--per-task", "2", "--crop", "32", "--quiet"]
    assert _run_mac_cli([*common, "--steps", "3", "--batch", "4", "-o", str(out), "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "4 images from 2 task(s)" in printed and "units" in printed
    ranking = read_ranking(out)
    assert sorted(ranking.units) == sorted(attribution_units(model)) and ranking.method == "mac"
    assert ranking.meta["architecture"] == "nafnet" and png.read_bytes()[:4] == b"\x89PNG"
    assert np.all(np.diff(ranking.scores) <= 0)

    ig = tmp_path / "ig.tsv"
    assert _run_mac_cli([*common, "--method", "ig", "--steps", "2", "-o", str(ig)]) == 0
    assert read_ranking(ig).method == "ig"
    rnd = tmp_path / "random.tsv"
    assert _run_mac_cli(["--model", str(ckpt), "--method", "random", "--seed", "2", "-o", str(rnd)]) == 0
    assert read_ranking(rnd).units == random_ranking(model, 2).units
    with pytest.raises(AttributionError, match="needs --data"):
        _run_mac_cli(["--model", str(ckpt), "-o", str(tmp_path / "x.tsv")])
