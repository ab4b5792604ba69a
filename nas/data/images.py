"""The one image reader: a file -> BGR uint8 HWC pixels (as cv2 decodes it), used by val, predict, proxies and training."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nas.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "read_image", "read_rgb"]

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


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """`read_image` in RGB channel order (what the training and proxy tensors hold)."""
    return np.ascontiguousarray(read_image(path)[..., ::-1])
