"""Adapters: AdaptIR's exact size, identity at injection, freezing, training, adapter-only files, LoRA merge,
removal, and injection into every supported backbone.

Parameter counts on the paper's base models (built on the meta device):
- AdaptIR: IPT 24 x 29,069 = 697,656 and EDT-B SR x4 36 x 4,817 = 173,412, as the authors' code.
- Baselines on IPT with the defaults (the AdaptIR paper's Table 1 budgets): LoRA r=12 on q and v of all
  36 attentions 995,328 (paper 995K), Adapter m=12 after self-attention and FFN 691,776 (691K),
  AdaptFormer m=24 677,952 (677K), VPT 64 prompts per layer 884,736 (884K), MoE 3 x m=8 664,128 (667K);
  SSF 248,832 (the paper's 373K also scales the fused q/k/v in-projection, which is not a module in
  IPT's layout); FacT-TT r=24 221,184 (the paper does not state its IPT rank; on EDT-B r=24 gives
  174,528, the paper's 174K).

At injection AdaptIR, LoRA, Adapter, AdaptFormer, SSF, FacT and MoE leave the output bitwise unchanged
(zero-initialised up projections / factors, identity scales); VPT changes it (the image tokens attend to
the prompts at once). "Unchanged" is measured against the frozen model: PyTorch may pick a different
matmul kernel when ``requires_grad`` flips, so the reference is computed after ``requires_grad_(False)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from anyrestore.adapters import (
    METHODS,
    AdapterError,
    AdaptIR,
    adapter_state_dict,
    attached_adapters,
    inject,
    load_adapter,
    merge_lora,
    read_adapter,
    remove,
    save_adapter,
    trainable_parameters,
)
from anyrestore.adapters.base import to_map
from anyrestore.adapters.sites import find_backbone
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.edt import EDT
from anyrestore.models.ipt import IPT
from anyrestore.models.promptir import PromptIR
from anyrestore.models.restormer import Restormer
from anyrestore.models.swinir import RamSwinIR, SwinIR

IDENTITY_METHODS = ("adaptir", "lora", "adapter", "adaptformer", "ssf", "fact", "moe")

# Tiny backbones, wide enough for AdaptIR's default widths (hidden = d // reduction >= 2), with an input.
BACKBONES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "edt": (
        lambda: EDT(
            scales=(2,), num_feat=4, embed_dim=28, depths=(2,), num_heads=(2,), window_size=(2, 4), img_size=8
        ),
        (1, 3, 8, 12),
    ),
    "ipt": (lambda: IPT(scales=(2, 1), n_feats=8, patch_size=12, num_heads=4, num_layers=1), (1, 3, 12, 12)),
    "swinir": (
        lambda: SwinIR(embed_dim=28, depths=(2,), num_heads=(2,), window_size=4, img_size=8),
        (1, 3, 8, 12),
    ),
    "restormer": (
        lambda: Restormer(dim=16, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2)),
        (1, 3, 16, 16),  # 2x2 at the lowest level: AdaptIR's BatchNorm needs more than one value to train
    ),
    "promptir": (
        lambda: PromptIR(
            dim=16,
            num_blocks=(1, 1, 1, 1),
            num_refinement_blocks=1,
            heads=(1, 1, 2, 2),
            prompt_dims=(8, 16, 32),
            prompt_sizes=(4, 4, 4),
            unused_reduce_dims=(8, 16, 32),
        ),
        (1, 3, 16, 16),
    ),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread, and the CPU is shared; the setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _frozen(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    build, shape = BACKBONES[name]
    model = build().eval().requires_grad_(False)
    return model, torch.rand(shape)


def _run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _train_steps(model: nn.Module, x: torch.Tensor, steps: int = 2) -> None:
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = (model(x) - x.mean()).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


# ------------------------------------------------------------------------------------------ sizes


def test_adaptir_module_size_matches_the_paper() -> None:
    assert sum(p.numel() for p in AdaptIR(576, hidden=24, rank=12, gate_hidden=3).parameters()) == 29_069
    assert sum(p.numel() for p in AdaptIR(180, hidden=12, rank=6, gate_hidden=3).parameters()) == 4_817


def test_adaptir_branches_at_initialisation() -> None:
    """The frequency affine starts as the identity (the global branch is |x|) and the up projection at zero:
    the adapter outputs exactly zero until its up projection trains."""
    torch.manual_seed(0)
    module = AdaptIR(48, hidden=8, rank=4, gate_hidden=2).eval()
    x = torch.randn(2, 8, 6, 10)
    torch.testing.assert_close(module._frequency_affine(x), x.abs(), rtol=0, atol=1e-5)
    y = torch.randn(2, 48, 6, 10)
    assert torch.equal(module(y), torch.zeros_like(y))
    with torch.no_grad():
        module.tail.weight.normal_()
    assert module(y).abs().amax() > 0


@pytest.fixture(scope="module")
def paper_models() -> dict[str, nn.Module]:
    """The AdaptIR paper's base models, shapes only: the six-task IPT and EDT-B SR x4."""
    with torch.device("meta"):
        return {"ipt": IPT(), "edt": EDT(scales=(4,))}


@pytest.mark.parametrize(("name", "sites", "per_site"), [("ipt", 24, 29_069), ("edt", 36, 4_817)])
def test_adaptir_trainable_parameters_on_the_paper_models(paper_models, name: str, sites: int, per_site: int):
    model = paper_models[name]
    record = inject(model, "adaptir")
    try:
        assert len(record.modules) == sites
        assert trainable_parameters(model) == sites * per_site  # 697,656 / 173,412
    finally:
        remove(model)


def test_baseline_sizes_on_the_paper_models(paper_models) -> None:
    sizes = {}
    for method in ("lora", "adapter", "adaptformer", "vpt", "moe", "ssf", "fact"):
        inject(paper_models["ipt"], method)
        sizes[method] = trainable_parameters(paper_models["ipt"])
        remove(paper_models["ipt"])
    assert sizes == {
        "lora": 995_328,
        "adapter": 691_776,
        "adaptformer": 677_952,
        "vpt": 884_736,
        "moe": 664_128,
        "ssf": 248_832,
        "fact": 221_184,
    }
    inject(paper_models["edt"], "fact")
    assert trainable_parameters(paper_models["edt"]) == 174_528  # the paper's FacT on EDT: 174K
    remove(paper_models["edt"])


# ------------------------------------------------------------------------------------------ behaviour


@pytest.mark.parametrize("method", IDENTITY_METHODS)
def test_identity_at_injection_and_training(method: str) -> None:
    model, x = _frozen("edt")
    reference = _run(model, x)
    base = {k: v.clone() for k, v in model.state_dict().items()}

    record = inject(model, method)
    assert torch.equal(_run(model, x), reference)

    # Only the adapter's own parameters train.
    prefixes = tuple(f"{name}." for name in record.modules)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(prefixes) for n in trainable)
    assert trainable_parameters(model) == sum(
        p.numel() for m in record.modules.values() for p in m.parameters()
    )

    adapter_before = {k: v.clone() for k, v in adapter_state_dict(model).items()}
    _train_steps(model, x)
    adapter_after = adapter_state_dict(model)
    assert any(not torch.equal(adapter_before[k], adapter_after[k]) for k in adapter_before)
    assert not torch.equal(_run(model, x), reference)

    remove(model)
    after = model.state_dict()
    assert list(after) == list(base)
    assert all(torch.equal(after[k], base[k]) for k in base)  # every base weight bitwise unchanged
    assert torch.equal(_run(model, x), reference)


def test_vpt_changes_the_output_at_once() -> None:
    for name in ("edt", "swinir", "ipt"):
        model, x = _frozen(name)
        reference = _run(model, x)
        inject(model, "vpt", num_prompts=3)
        out = _run(model, x)
        assert out.shape == reference.shape and not torch.equal(out, reference)
        remove(model)
        assert torch.equal(_run(model, x), reference)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_injection_into_every_backbone(name: str) -> None:
    model, x = _frozen(name)
    keys = list(model.state_dict())
    reference = _run(model, x)
    inject(model, "adaptir")
    assert torch.equal(_run(model, x), reference)
    model.train()
    model(x).square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    remove(model)
    assert list(model.state_dict()) == keys
    for method in ("lora", "adapter", "ssf", "fact"):
        model.eval()
        inject(model, method)
        assert torch.equal(_run(model, x), reference), method
        remove(model)


def test_swin_tokens_get_their_spatial_size_from_the_block() -> None:
    """SwinIR blocks see (B, L, C) tokens; AdaptIR needs the (H, W) the block is called with."""
    model, _ = _frozen("swinir")
    inject(model, "adaptir")
    model.train()
    for shape in ((1, 3, 8, 12), (2, 3, 16, 8)):
        x = torch.rand(shape)
        assert model(x).shape == shape


def test_ipt_adaptir_reads_the_ffn_input_of_every_layer() -> None:
    model, x = _frozen("ipt")
    record = inject(model, "adaptir")
    assert sorted(record.modules) == ["body.decoder.layers.0.adaptir", "body.encoder.layers.0.adaptir"]
    seen = []
    for module in record.modules.values():
        module.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    with torch.no_grad():
        model(torch.rand(1, 3, 12, 20))  # tiled: several 12x12 patches, each a 4x4 token grid
    assert seen and all(s[1:] == (72, 4, 4) for s in seen)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_adaptir_reads_exactly_the_second_layernorms_output(name: str) -> None:
    """The paper's placement, x = x + FFN(LN2(x)) + AdaptIR(LN2(x)), checked on values: in every block,
    the tensor each AdaptIR module receives is the output of that block's FFN LayerNorm (norm2; norm3 in
    IPT's decoder layers, whose norm2 precedes cross-attention), token for token."""
    model, x = _frozen(name)
    record = inject(model, "adaptir")
    assert record.modules
    norms: dict[str, list[torch.Tensor]] = {}
    inputs: dict[str, list[torch.Tensor]] = {}
    for key, adapter in record.modules.items():
        site = key.rsplit(".", 1)[0]
        block = model.get_submodule(site)
        norm = block.norm3 if hasattr(block, "norm3") else block.norm2
        norm.register_forward_hook(lambda m, args, out, site=site: norms.setdefault(site, []).append(out))
        adapter.register_forward_pre_hook(
            lambda m, args, site=site: inputs.setdefault(site, []).append(args[0])
        )
    layout = find_backbone(model).sites[0].layout
    with torch.no_grad():
        model(x)
    assert set(inputs) == set(norms) and len(inputs) == len(record.modules)
    for site, seen in inputs.items():
        assert len(seen) == len(norms[site])
        for adapter_in, normed in zip(seen, norms[site], strict=True):
            assert torch.equal(adapter_in, to_map(normed, layout, tuple(adapter_in.shape[-2:]))), site


def test_remove_restores_modules_keys_and_flags() -> None:
    torch.manual_seed(0)
    model = SwinIR(embed_dim=28, depths=(2,), num_heads=(2,), window_size=4, img_size=8)
    model.conv_first.requires_grad_(False)  # a user's own choice, restored after removal
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modules = {n: type(m) for n, m in model.named_modules()}
    keys = list(model.state_dict())
    for method in METHODS:
        inject(model, method)
        remove(model)
        assert list(model.state_dict()) == keys, method
        assert {n: type(m) for n, m in model.named_modules()} == modules, method
        assert {n: p.requires_grad for n, p in model.named_parameters()} == flags, method
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()), method


def test_lora_merge_equals_unmerged() -> None:
    model, x = _frozen("ipt")
    keys = list(model.state_dict())
    original = model.body.encoder.layers[0].self_attn.in_proj_weight.clone()
    inject(model, "lora", rank=4)
    _train_steps(model, x)
    unmerged = _run(model, x)
    weight = model.body.encoder.layers[0].self_attn.in_proj_weight.detach().clone()
    merge_lora(model)
    torch.testing.assert_close(_run(model, x), unmerged, rtol=1e-5, atol=1e-5)
    assert list(model.state_dict()) == keys
    assert not any("lora" in n or "parametrizations" in n for n, _ in model.named_parameters())
    merged = model.body.encoder.layers[0].self_attn.in_proj_weight
    assert torch.equal(merged, weight) and not torch.equal(merged, original)
    d = merged.shape[1]
    assert torch.equal(merged[d : 2 * d], original[d : 2 * d])  # keys untouched: LoRA adapts q and v
    assert attached_adapters(model) == ()
    with pytest.raises(AdapterError, match="needs a LoRA"):
        merge_lora(model)


# ------------------------------------------------------------------------------------------ files


@pytest.mark.parametrize("method", ["adaptir", "lora", "fact", "vpt"])
def test_save_load_round_trip(tmp_path, method: str) -> None:
    model, x = _frozen("edt")
    inject(model, method, **({"num_prompts": 2} if method == "vpt" else {}))
    _train_steps(model, x)  # also moves AdaptIR's BatchNorm statistics, saved with the adapter
    expected = _run(model, x)
    path = save_adapter(model, tmp_path / f"{method}.safetensors")
    assert path.stat().st_size < 200_000

    fresh, _ = _frozen("edt")
    record = load_adapter(fresh, path)
    assert record.method == method
    assert torch.equal(_run(fresh, x), expected)
    meta, tensors = read_adapter(path)
    assert meta["base"]["fingerprint"] == record.base["fingerprint"]
    assert set(tensors) == set(adapter_state_dict(fresh))


def test_loading_onto_another_base_is_refused(tmp_path) -> None:
    model, _ = _frozen("edt")
    inject(model, "adaptir")
    path = save_adapter(model, tmp_path / "a.safetensors")

    other = EDT(
        scales=(3,), num_feat=4, embed_dim=28, depths=(2,), num_heads=(2,), window_size=(2, 4), img_size=8
    )
    with pytest.raises(AdapterError, match="adapter was trained on"):
        load_adapter(other, path)
    assert not hasattr(other, "_anyrestore_adapter")
    swin, _ = _frozen("swinir")
    with pytest.raises(AdapterError, match="not this"):
        load_adapter(swin, path)

    injected, _ = _frozen("edt")
    inject(injected, "lora")
    with pytest.raises(AdapterError, match="already carries"):
        load_adapter(injected, path)
    with pytest.raises(AdapterError, match="no such adapter file"):
        load_adapter(other, tmp_path / "missing.safetensors")


def test_descriptor_lists_attached_adapters() -> None:
    model, _ = _frozen("edt")
    assert attached_adapters(model) == ()
    inject(model, "adaptformer", hidden=6)
    adapters = attached_adapters(model)
    assert adapters == ({"method": "adaptformer", "config": {"hidden": 6, "scale": 0.1}},)
    descriptor = ModelDescriptor(architecture="edt", adapters=adapters)
    assert ModelDescriptor.from_json(descriptor.to_json()).adapters == adapters
    assert "adaptformer" in descriptor.summary()


# ------------------------------------------------------------------------------------------ API edges


def test_errors_are_one_line_adapter_errors() -> None:
    model, _ = _frozen("restormer")
    with pytest.raises(AdapterError, match="unknown adapter method"):
        inject(model, "prefix")
    with pytest.raises(AdapterError, match="unknown option"):
        inject(model, "lora", rnak=4)
    with pytest.raises(AdapterError, match="attends across channels"):
        inject(model, "vpt")
    assert not any(m._forward_hooks for m in model.modules())  # a failed injection leaves nothing behind
    inject(model, "ssf")
    with pytest.raises(AdapterError, match="already carries"):
        inject(model, "lora")
    remove(model)
    with pytest.raises(AdapterError, match="carries no adapter"):
        remove(model)
    with pytest.raises(AdapterError, match="do not support"):
        inject(nn.Conv2d(3, 3, 3), "lora")


def test_deep_copy_of_an_adapted_model_is_independent() -> None:
    """EMA keeps a deep copy: its hooks must drive its own adapter, not the original's."""
    model, x = _frozen("swinir")
    inject(model, "adaptir")
    _train_steps(model, x, steps=1)
    twin = copy.deepcopy(model)
    assert torch.equal(_run(twin, x), _run(model, x))
    with torch.no_grad():
        for p in twin.parameters():
            if p.requires_grad:
                p.add_(0.1)
    assert not torch.equal(_run(twin, x), _run(model, x))
    remove(twin)
    remove(model)


def test_wrapped_models_are_unwrapped() -> None:
    """RAM's SwinIR runs inside the ImageNet-normalisation wrapper; adapters go into the bare model."""
    from anyrestore.models.normalize import ImageNetNormalized

    torch.manual_seed(0)
    wrapped = ImageNetNormalized(
        RamSwinIR(embed_dim=28, depths=(2,), num_heads=(2,), window_size=4, img_size=8)
    )
    inject(wrapped, "adaptir")
    assert attached_adapters(wrapped)[0]["method"] == "adaptir"
    assert wrapped(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    remove(wrapped)
