"""The one image reader: a file -> BGR uint8 HWC pixels (as cv2 decodes it), used by val, predict, proxies and training."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nas.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "check_image", "read_image", "read_rgb"]

# What ultralytics accepts as image files (lower-case suffixes): data directories and predict sources alike.
IMAGE_SUFFIXES = frozenset({".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"})


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as BGR uint8 HWC (cv2), with a clear error when it cannot be decoded."""
    import cv2  # cv2's import costs ~0.1 s: only the modes that read pixels pay it

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {str(path)!r} does not exist")
    # imdecode over np.fromfile also reads non-ASCII paths, which cv2.imread does not on every platform
    image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{str(path)!r} is not a readable image (supported: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return image


def _tail_is_complete(head: bytes, tail: bytes) -> bool:
    """Whether a JPEG / PNG ends as a whole file does (other formats: assumed so). Trailing zero padding is allowed."""
    tail = tail.rstrip(b"\x00")
    if head.startswith(b"\xff\xd8"):  # JPEG: the end-of-image marker
        return tail.endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):  # PNG: the IEND chunk (type + CRC)
        return tail.endswith(b"IEND\xaeB`\x82")
    return True


def check_image(path: str | os.PathLike) -> None:
    """DataError if the file would not decode: cheap for whole files (the last bytes), a full decode only for a
    JPEG or PNG cut short (a copy interrupted after the header, which the header readers accept)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, path.stat().st_size - 64))
        tail = f.read()
    if not _tail_is_complete(head, tail):
        read_image(path)  # raises if cv2 cannot decode it; a decodable truncated file (grey at the end) is kept


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """`read_image` in RGB channel order (what the training and proxy tensors hold)."""
    return np.ascontiguousarray(read_image(path)[..., ::-1])
