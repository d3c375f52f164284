"""Decompression bombs in image folders: file size, zip compression ratio and header pixels are capped
before anything is inflated or decoded, each refusal naming the file and the flag that raises the cap."""

import struct
import zipfile
import zlib

import pytest

from tf_lottery import data
from tf_lottery.config import ConfigError, ExperimentConfig
from tf_lottery.data import DataError, image_decoding

MiB = 2**20


def png(width, height):
    """A grey 8-bit PNG of zeros, written without decoding libraries (fast at any size)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = (b"\0" * (width + 1)) * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def image_zip(path, first, compression=zipfile.ZIP_DEFLATED):
    """train/ and test/ of two classes, 8x8 PNGs, with `first` as train/a/0.png."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("train/a/0.png", first)
        for name in ("train/b/0.png", "test/a/0.png", "test/b/0.png"):
            archive.writestr(name, png(8, 8))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails a test that decodes any image: the refusals come from indexes and headers."""
    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded")
    monkeypatch.setattr(image_decoding, "decode_all", refuse)
    monkeypatch.setattr("tf_lottery.data.image_folder.decode_all", refuse)


def test_a_zip_member_that_inflates_past_the_size_cap_is_refused_from_the_index(tmp_path, no_decoding):
    # An 8x8 PNG followed by 65 MiB of zeros: 65 KiB in the zip, 65 MiB inflated.
    bomb = png(8, 8) + bytes(65 * MiB)
    archive = image_zip(tmp_path / "bomb.zip", bomb)
    assert archive.stat().st_size < MiB
    with pytest.raises(DataError) as error:
        data.load("image_folder", data_dir=archive, validation_size=0)
    assert str(error.value) == (f"{archive}/train/a/0.png: {len(bomb):,} bytes, more than "
                                "image_max_bytes=67,108,864 (raise --image_max_bytes for larger files)")


def test_a_zip_member_inflating_a_thousandfold_is_refused_from_the_index(tmp_path, no_decoding):
    bomb = png(8, 8) + bytes(8 * MiB)
    archive = image_zip(tmp_path / "ratio.zip", bomb)
    info = zipfile.ZipFile(archive).getinfo("train/a/0.png")
    assert info.file_size > 500 * info.compress_size
    with pytest.raises(DataError) as error:
        data.load("image_folder", data_dir=archive, validation_size=0)
    assert str(error.value) == (f"{archive}/train/a/0.png: inflates {info.compress_size:,} bytes to "
                                f"{info.file_size:,}, a ratio above image_max_ratio=100 (a zip bomb? raise "
                                "--image_max_ratio to read it)")


@pytest.mark.parametrize("as_zip", [True, False])
def test_an_image_whose_header_gives_too_many_pixels_is_refused_before_decoding(tmp_path, no_decoding,
                                                                               as_zip):
    large = png(8000, 8000)  # 64 million pixels in about 64 KiB
    if as_zip:
        where = image_zip(tmp_path / "large.zip", large, zipfile.ZIP_STORED)
        name = f"{where}/train/a/0.png"
    else:
        where = tmp_path / "large"
        for relative, content in (("train/a/0.png", large), ("train/b/0.png", png(8, 8)),
                                  ("test/a/0.png", png(8, 8)), ("test/b/0.png", png(8, 8))):
            (where / relative).parent.mkdir(parents=True, exist_ok=True)
            (where / relative).write_bytes(content)
        name = str(where / "train/a/0.png")
    with pytest.raises(DataError) as error:
        data.load("image_folder", data_dir=where, validation_size=0)
    assert str(error.value) == (f"{name}: 8000x8000 pixels (64,000,000), more than "
                                "image_max_pixels=40,000,000 (raise --image_max_pixels for larger images)")


def test_a_4_kb_zip_of_an_8000x8000_png_is_refused_before_decoding(tmp_path, no_decoding):
    archive = image_zip(tmp_path / "large.zip", png(8000, 8000))  # deflated twice: a few hundred bytes
    assert archive.stat().st_size < 4096
    with pytest.raises(DataError, match=r"train/a/0.png: inflates \d+ bytes to 62,\d+, a ratio above "
                                        "image_max_ratio=100"):
        data.load("image_folder", data_dir=archive, validation_size=0)
    with pytest.raises(DataError, match=r"train/a/0.png: 8000x8000 pixels \(64,000,000\), more than "
                                        "image_max_pixels=40,000,000"):
        data.load("image_folder", data_dir=archive, validation_size=0,
                  image_limits=data.ImageLimits(max_ratio=1000))


def test_a_file_in_a_folder_over_the_size_cap_is_refused_before_it_is_read(tmp_path, no_decoding):
    root = tmp_path / "images"
    for relative in ("train/a/0.png", "train/b/0.png", "test/a/0.png", "test/b/0.png"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(png(8, 8))
    (root / "test/b/0.png").write_bytes(png(8, 8) + bytes(2000))
    with pytest.raises(DataError) as error:
        data.load("image_folder", data_dir=root, validation_size=0,
                  image_limits=data.ImageLimits(max_bytes=1000))
    assert str(error.value) == (f"{root}/test/b/0.png: {len(png(8, 8)) + 2000:,} bytes, more "
                                "than image_max_bytes=1,000 (raise --image_max_bytes for larger files)")


def test_the_flags_raise_the_caps(tmp_path):
    archive = image_zip(tmp_path / "big.zip", png(300, 200))
    with pytest.raises(DataError, match="image_max_pixels=50,000"):
        data.load("image_folder", data_dir=archive, validation_size=0,
                  image_limits=data.ImageLimits(max_pixels=50_000), image_size=32)
    config = ExperimentConfig.from_flat(dataset="image_folder", data_dir=str(archive), image_size=32,
                                        image_max_pixels=60_000, image_max_bytes=10**6, image_max_ratio=500)
    assert config.data.image_limits() == data.ImageLimits(max_bytes=10**6, max_ratio=500.0,
                                                          max_pixels=60_000)
    splits = data.load("image_folder", data_dir=archive, validation_size=0, image_size=32,
                       image_limits=config.data.image_limits())
    assert splits.input_shape == (32, 32, 3)


@pytest.mark.parametrize("values, message", [
    ({"image_max_pixels": 0}, "image_max_pixels: must be >= 1, got 0"),
    ({"image_max_bytes": -1}, "image_max_bytes: must be >= 1, got -1"),
    ({"image_max_ratio": 0.5}, "image_max_ratio: must be >= 1, got 0.5"),
    ({"image_size": 8000}, "image_size: 8000x8000 is more than image_max_pixels=40,000,000, got 8000"),
])
def test_bad_caps_are_refused(values, message):
    with pytest.raises(ConfigError) as error:
        ExperimentConfig.from_flat(dataset="image_folder", data_dir="/tmp", **values)
    assert str(error.value) == message
