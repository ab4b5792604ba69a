"""The image reader and the load-time check: a JPEG or PNG cut short after a valid header is caught before use."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from nas.data.dataset import image_size
from nas.data.images import check_image, read_image
from nas.errors import DataError


def truncate_after_header(path: Path, keep_after_sos: int = 40) -> Path:
    """Cut a real JPEG a few bytes into its scan data: the header stays valid, the pixels are gone."""
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xff\xda") + keep_after_sos])
    return path


def photo(path: Path, w: int = 64, h: int = 48) -> Path:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    assert cv2.imwrite(str(path), img)
    return path


def test_a_truncated_jpeg_passes_the_header_reader_but_not_the_check(tmp_path):
    good = photo(tmp_path / "good.jpg")
    check_image(good)
    bad = truncate_after_header(photo(tmp_path / "bad.jpg"))
    assert image_size(bad) == (64, 48)  # the header is intact: this is how it slipped through
    with pytest.raises(DataError, match="not a readable image"):
        read_image(bad)
    with pytest.raises(DataError, match=r"bad\.jpg"):
        check_image(bad)


def test_a_truncated_png_is_caught_and_trailing_padding_is_not_damage(tmp_path):
    png = photo(tmp_path / "a.png")
    check_image(png)
    png.write_bytes(png.read_bytes()[:-40])
    with pytest.raises(DataError):
        check_image(png)
    padded = photo(tmp_path / "p.jpg")
    padded.write_bytes(padded.read_bytes() + b"\x00" * 16)  # some cameras pad files after the end marker
    check_image(padded)
