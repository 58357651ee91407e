"""JPEG side information from the file (or the pixels) to the model, through every way of restoring.

A tiny ContextNAFNet (width 8, two levels) with every weight perturbed, so that its conditioning, side
input and experts all change the output.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import anyrestore
from anyrestore.classical.jpeg_format import detect_jpeg, ijg_chroma_table, ijg_luma_table
from anyrestore.inference import Restorer
from anyrestore.inference import restorer as restorer_module
from anyrestore.io import read_image
from anyrestore.models.checkpoint import LoadedModel
from anyrestore.models.context_nafnet import ContextNAFNet
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.side import SIDE_DIM, encode_side, takes_side, transpose_side

TINY = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}


def tiny_context_nafnet(seed: int = 0, conditioning_gain: float = 1.0) -> LoadedModel:
    """``conditioning_gain`` scales the weights that read the conditioning vector (its effect grows)."""
    descriptor = ModelDescriptor.for_architecture("context_nafnet", TINY)
    torch.manual_seed(seed)
    model = descriptor.build()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
            if ".cond." in name or name.startswith("context.mix"):
                p.mul_(conditioning_gain)
    return LoadedModel(model.eval(), descriptor)


@pytest.fixture
def forward_calls(monkeypatch) -> list[dict]:
    """Every ContextNAFNet forward call's input and keyword inputs, however the model is run."""
    calls: list[dict] = []
    original = ContextNAFNet.forward

    @functools.wraps(original)
    def spy(self, x, *args, **kwargs):
        calls.append({"x": x.detach().clone(), **{k: v.detach().clone() for k, v in kwargs.items()}})
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(ContextNAFNet, "forward", spy)
    return calls


def jpeg_file(photo_uint8: np.ndarray, path: Path, quality: int = 20, size=(90, 84)) -> Path:
    Image.fromarray(photo_uint8[: size[0], : size[1]]).save(path, quality=quality)
    return path


def test_the_model_takes_side_information() -> None:
    loaded = tiny_context_nafnet()
    assert takes_side(loaded.module) and Restorer(loaded, device="cpu", tile=0).takes_side
    assert not takes_side(torch.nn.Conv2d(3, 3, 1))


def test_info_says_the_model_takes_jpeg_side_information(tmp_path: Path, capsys) -> None:
    from anyrestore.cli.main import main
    from anyrestore.models.checkpoint import save_model

    loaded = tiny_context_nafnet()
    checkpoint = save_model(tmp_path / "tiny.safetensors", loaded.descriptor, loaded.module)
    assert main(["info", str(checkpoint)]) == 0
    assert "side input     JPEG quantisation tables: the file's, else estimated" in capsys.readouterr().out


def test_a_jpeg_files_tables_reach_the_model(tmp_path: Path, photo_uint8, forward_calls) -> None:
    # Quality 95 lies beyond what the pixels tell (5-90): only the file's own tables can reach the model.
    path = jpeg_file(photo_uint8, tmp_path / "photo.jpg", quality=95)
    data = read_image(path)
    assert data.jpeg_tables is not None
    restored = anyrestore.restore(path, tiny_context_nafnet(), device="cpu", tile=0, self_ensemble="off")
    assert restored.size == data.size
    (call,) = forward_calls
    assert torch.equal(call["side"], encode_side(data.jpeg_tables)[None])
    assert call["side"][0, -1] == 1 and "cond" in call


def test_a_png_of_a_decoded_jpeg_gets_the_estimated_tables(
    tmp_path: Path, photo_uint8, forward_calls
) -> None:
    decoded = read_image(jpeg_file(photo_uint8, tmp_path / "photo.jpg")).pixels
    png = tmp_path / "decoded.png"
    Image.fromarray((decoded * 255).round().byte().permute(1, 2, 0).numpy()).save(png)
    assert read_image(png).jpeg_tables is None
    anyrestore.restore(png, tiny_context_nafnet(), device="cpu", tile=0, self_ensemble="off")
    expected = encode_side((ijg_luma_table(20), ijg_chroma_table(20)))
    assert torch.equal(forward_calls[0]["side"][0], expected)


def test_a_png_photo_gets_zeros(tmp_path: Path, photo_uint8, forward_calls) -> None:
    png = tmp_path / "photo.png"
    Image.fromarray(photo_uint8).save(png)
    anyrestore.restore(png, tiny_context_nafnet(), device="cpu", tile=0, self_ensemble="off")
    assert torch.equal(forward_calls[0]["side"], torch.zeros(1, SIDE_DIM))


def test_the_command_line_and_the_server_pass_the_files_tables(
    tmp_path: Path, photo_uint8, forward_calls
) -> None:
    from anyrestore.cli.main import main
    from anyrestore.models.checkpoint import save_model
    from anyrestore.serve.pool import ModelPool

    loaded = tiny_context_nafnet()
    checkpoint = save_model(tmp_path / "tiny.safetensors", loaded.descriptor, loaded.module)
    path = jpeg_file(photo_uint8, tmp_path / "photo.jpg", quality=35)
    expected = encode_side(read_image(path).jpeg_tables)[None]
    argv = ["restore", str(path), "-o", str(tmp_path / "out"), "--model", str(checkpoint), "--quiet"]
    assert main([*argv, "--tile", "0", "--self-ensemble", "off", "--device", "cpu"]) == 0
    assert [torch.equal(c["side"], expected) for c in forward_calls] == [True]

    forward_calls.clear()
    pool = ModelPool(device="cpu", tile=0, include_embedded=False)
    model_id = pool.add_loaded("tiny", loaded)
    data = read_image(path)
    pool.restore(model_id, data.pixels[None], data.jpeg_tables)
    assert [torch.equal(c["side"], expected) for c in forward_calls] == [True]


def test_every_ensemble_pass_gets_the_same_tables_transposed_with_the_image(
    tmp_path: Path, photo_uint8, forward_calls
) -> None:
    data = read_image(jpeg_file(photo_uint8, tmp_path / "photo.jpg"))
    side = encode_side(data.jpeg_tables)[None]
    assert not torch.equal(side, transpose_side(side))  # the IJG tables are not symmetric
    restorer = Restorer(tiny_context_nafnet(), device="cpu", tile=0, self_ensemble="x8")
    restorer(data.pixels, jpeg_tables=data.jpeg_tables)
    assert len(forward_calls) == 8
    for call in forward_calls:
        transposed = call["x"].shape[-2] < call["x"].shape[-1]  # the 90 x 84 image is padded to 96 x 88
        assert torch.equal(call["side"], transpose_side(side) if transposed else side)
        # every pass sees the JPEG block grid at the corner, where the tables say it is (detect_jpeg
        # knows the IJG tables upright only)
        found = detect_jpeg(call["x"][0].transpose(-2, -1) if transposed else call["x"][0])
        assert found is not None and (found.dy, found.dx) == (0, 0) and found.quality == 20


def test_tiles_start_on_the_jpeg_grid_and_match_the_whole_image(
    tmp_path: Path, photo_uint8, forward_calls, monkeypatch
) -> None:
    data = read_image(jpeg_file(photo_uint8, tmp_path / "photo.jpg", size=(92, 84)))
    loaded = tiny_context_nafnet()
    assert loaded.descriptor.size_multiple == 4  # alone it would allow tiles at 4-pixel offsets
    origins: list[tuple[int, int]] = []
    real_tiled_forward = restorer_module.tiled_forward

    def recording_tiled_forward(fn, x, **kwargs):
        def record(piece):
            origins.append(divmod(piece.storage_offset(), x.shape[-1]))
            return fn(piece)

        return real_tiled_forward(record, x.contiguous(), **kwargs)

    monkeypatch.setattr(restorer_module, "tiled_forward", recording_tiled_forward)
    options = {"device": "cpu", "self_ensemble": "off"}
    whole = Restorer(loaded, tile=0, **options)(data.pixels, jpeg_tables=data.jpeg_tables)
    calls_whole = len(forward_calls)
    tiled = Restorer(loaded, tile=64, tile_overlap=16, **options)(data.pixels, jpeg_tables=data.jpeg_tables)
    tiles = forward_calls[calls_whole:]
    assert len(origins) == len(tiles) == 4 and {o % 8 for origin in origins for o in origin} == {0}
    # every tile is conditioned on the whole image, with the file's tables
    assert all(torch.equal(t["cond"], forward_calls[0]["cond"]) for t in tiles)
    assert all(torch.equal(t["side"], forward_calls[0]["side"]) for t in tiles)
    # what remains is the receptive field at tile edges and NAFNet's channel attention, which pools each
    # tile (measured: 1.4e-4 to 4e-3, depending on the random weights)
    assert (tiled - whole).abs().max() < 0.01
    assert (whole - data.pixels).abs().mean() > 1e-3  # the model does change the photo


def test_tiles_are_conditioned_on_the_whole_image(tmp_path: Path, photo_uint8) -> None:
    """A model whose conditioning matters (its weights scaled up): tiles conditioned on their own
    thumbnails would differ from the whole image ten times more."""
    data = read_image(jpeg_file(photo_uint8, tmp_path / "photo.jpg", size=(92, 84)))
    loaded = tiny_context_nafnet(conditioning_gain=10.0)
    options = {"device": "cpu", "self_ensemble": "off"}
    whole = Restorer(loaded, tile=0, **options)(data.pixels, jpeg_tables=data.jpeg_tables)
    tiled = Restorer(loaded, tile=64, tile_overlap=16, **options)
    shared = (tiled(data.pixels, jpeg_tables=data.jpeg_tables) - whole).abs().max()
    tiled._context = None  # as if each tile computed its own conditioning
    own = (tiled(data.pixels, jpeg_tables=data.jpeg_tables) - whole).abs().max()
    assert shared < 0.01 and own > 0.02  # measured: 0.005-0.006 and 0.047-0.062


def test_side_information_of_the_wrong_shape_is_a_clear_error(photo) -> None:
    from anyrestore.inference import InferenceError

    restorer = Restorer(tiny_context_nafnet(), device="cpu", tile=0)
    with pytest.raises(InferenceError, match=r"side information of shape \(2, 64\) for 1 image"):
        restorer(photo, torch.zeros(2, 64))
