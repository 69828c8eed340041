"""Faithful, bounded decoding (issue 11 item 8) and one-line errors for bad image files (issue 12)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featstore.datasets.images import (
    MAX_PIXELS,
    check_and_hash,
    check_and_hash_all,
    decode,
    load_image,
)
from featstore.errors import BadImageError
from featstore.specs import Preprocess


def _png(image: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **params)
    return buf.getvalue()


def test_16bit_png_is_scaled_to_8_bits_not_white():
    values = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16).repeat(4, axis=0)
    source = Image.fromarray(values)
    assert source.mode.startswith("I;16")
    rgb = np.asarray(decode(_png(source), "gray16.png"))
    assert rgb.shape == (4, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 64, 128, 255]


def test_32bit_integer_and_float_images_are_scaled():
    as_int = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.int32))
    assert as_int.mode == "I"
    buf = io.BytesIO()
    as_int.save(buf, "TIFF")
    assert np.asarray(decode(buf.getvalue(), "i.tif"))[0, :, 0].tolist() == [0, 128, 255]
    buf = io.BytesIO()
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(buf, "TIFF")
    assert np.asarray(decode(buf.getvalue(), "f.tif"))[0, :, 0].tolist() == [0, 128, 255]


def test_exif_orientation_is_applied_and_recorded_in_the_key():
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    wide.save(buf, format="JPEG", exif=exif.tobytes())
    assert decode(buf.getvalue(), "rotated.jpg").size == (20, 40)
    assert Preprocess().to_dict()["orientation"] == "exif"
    assert Preprocess.from_dict(Preprocess().to_dict()) == Preprocess()


def test_decompression_bomb_is_refused_from_its_header():
    side = int(MAX_PIXELS**0.5) + 100
    payload = _png(Image.new("1", (side, side)))  # a few KB that decode to > MAX_PIXELS
    assert len(payload) < 200_000
    with pytest.raises(BadImageError, match=r"^bomb.png is \d+x\d+ = \d+ megapixels, over the"):
        decode(payload, "bomb.png")


def test_extreme_aspect_ratio_is_refused():
    payload = _png(Image.new("L", (10000, 1)))
    assert len(payload) < 200
    with pytest.raises(BadImageError, match=r"^sliver.png is 10000x1, more than 20:1"):
        decode(payload, "sliver.png")


def test_a_non_image_names_the_file_not_a_bytesio(tmp_path: Path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    with pytest.raises(BadImageError) as info:
        check_and_hash(str(path))
    assert str(info.value) == (
        f"{path} is not a readable image (not a format Pillow can identify); fix or remove the file"
    )
    assert "BytesIO" not in str(info.value)


def test_a_fifo_named_jpg_is_refused_at_once(tmp_path: Path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(BadImageError, match=r"pipe.jpg is a FIFO, not an image file"):
        check_and_hash(str(fifo))


def test_a_symlink_loop_is_named(tmp_path: Path):
    loop = tmp_path / "loop.jpg"
    os.symlink(loop, loop)
    with pytest.raises(BadImageError, match=r"loop.jpg is a symlink loop"):
        load_image(str(loop))


def test_permission_denied_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(path)

    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", denied)  # root ignores chmod; the OS answer is what counts
    with pytest.raises(BadImageError, match=r"^permission denied reading image file .*secret.jpg"):
        check_and_hash(str(path))


def test_a_name_that_is_not_utf8_is_refused_and_skippable(tmp_path: Path):
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    bad_bytes = os.fsencode(str(tmp_path)) + b"/caf\xe9.png"
    with open(bad_bytes, "wb") as handle:
        handle.write(good.read_bytes())
    bad = os.fsdecode(bad_bytes)
    with pytest.raises(BadImageError, match=r"caf\\xe9.png is not valid UTF-8; rename the file"):
        check_and_hash(bad)
    hashes, skipped = check_and_hash_all([str(good), bad], skip_bad=True)
    assert hashes[0] is not None
    assert hashes[1] is None
    assert skipped[0]["path"].endswith("caf\\xe9.png")
    assert "not valid UTF-8" in skipped[0]["reason"]
