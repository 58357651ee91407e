"""Side information: a JPEG file's tables, read from the file or from the pixels, encoded alike."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from anyrestore.classical.jpeg_format import ijg_chroma_table, ijg_luma_table
from anyrestore.io import read_image
from anyrestore.models.context_nafnet import ContextNAFNet
from anyrestore.models.nafnet import NAFNet
from anyrestore.models.side import SIDE_DIM, encode_side, side_for, side_from_pixels, side_inputs, takes_side


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()[96:288, 160:352]


def _jpeg(photo: np.ndarray, quality: int, path) -> None:
    Image.fromarray(photo).save(path, format="JPEG", quality=quality, subsampling="4:2:0")


@pytest.mark.parametrize("quality", [10, 30, 75])
def test_file_tables_are_libjpeg_tables_and_the_pixels_tell_the_same(photo, tmp_path, quality) -> None:
    path = tmp_path / "photo.jpg"
    _jpeg(photo, quality, path)
    image = read_image(path)
    assert image.jpeg_tables is not None
    luma, chroma = image.jpeg_tables
    assert torch.equal(luma, ijg_luma_table(quality)) and torch.equal(chroma, ijg_chroma_table(quality))
    from_file = side_for(image.pixels, image.jpeg_tables)
    from_pixels = side_for(image.pixels, None)
    assert from_file.shape == (1, SIDE_DIM) and from_file[0, -1] == 1
    assert torch.equal(from_file, from_pixels)


def test_no_tables_for_a_png_photo_and_for_a_jpeg_rotated_by_exif(photo, tmp_path) -> None:
    png = tmp_path / "photo.png"
    Image.fromarray(photo).save(png)
    image = read_image(png)
    assert image.jpeg_tables is None
    assert torch.equal(side_for(image.pixels, None), torch.zeros(1, SIDE_DIM))

    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(photo[:, :128]).save(rotated, format="JPEG", quality=20, exif=exif.tobytes())
    luma, _ = read_image(rotated).jpeg_tables
    assert torch.equal(luma, ijg_luma_table(20).T)


def test_encoding_is_log_steps_and_a_flag() -> None:
    side = encode_side((torch.full((8, 8), 16.0), torch.full((8, 8), 256.0)))
    assert side.shape == (SIDE_DIM,)
    assert torch.allclose(side[:64], torch.full((64,), 0.5))
    assert torch.allclose(
        side[64:128], torch.ones(64) * torch.log2(torch.tensor(255.0)) / 8
    )  # clamped to 255
    assert side[-1] == 1
    assert torch.equal(encode_side(None), torch.zeros(SIDE_DIM))


def test_training_inputs_get_side_only_for_models_that_take_it(photo) -> None:
    x = torch.from_numpy(photo[:64, :64]).permute(2, 0, 1).float()[None] / 255
    buf = io.BytesIO()
    Image.fromarray(photo[:64, :64]).save(buf, format="JPEG", quality=40)
    jpeg = torch.from_numpy(np.asarray(Image.open(buf))).permute(2, 0, 1).float()[None] / 255
    batch = torch.cat([x, jpeg])
    model = ContextNAFNet(width=8, enc_blk_nums=[1], middle_blk_num=1, dec_blk_nums=[1], experts=())
    assert takes_side(model) and not takes_side(NAFNet(width=8, enc_blk_nums=[1], dec_blk_nums=[1]))
    side = side_inputs(model, batch)
    assert side["side"][0, -1] == 0 and side["side"][1, -1] == 1
    assert torch.equal(side["side"], side_from_pixels(batch))
    assert side_inputs(NAFNet(width=8, enc_blk_nums=[1], dec_blk_nums=[1]), batch) == {}
