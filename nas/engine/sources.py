"""Turn a predict `source` (path, directory, glob, list, PIL image, numpy array) into BGR images."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.data.images import IMAGE_SUFFIXES, read_image
from nas.errors import DataError

__all__ = ["Image", "iter_images", "resolve_source"]


@dataclass
class Image:
    """One input image: BGR uint8 HWC pixels and where they came from (a path, or e.g. "image0.jpg")."""

    bgr: np.ndarray
    path: str


def resolve_source(source: Any) -> list[Any]:
    """Expand a source into a flat list of image paths (str) and in-memory images (PIL / numpy).

    str/Path: an image file, a directory (its images, sorted), or a glob pattern (`*`, `?`, `[`).
    list/tuple: any mix of the above. PIL.Image: used as is (RGB). numpy: HWC BGR uint8, as cv2 reads,
    or HW grayscale.
    """
    if isinstance(source, (list, tuple)):
        items = [x for s in source for x in resolve_source(s)]
        if not items:
            raise DataError("predict source is an empty list")
        return items
    if isinstance(source, np.ndarray) or _is_pil(source):
        return [source]
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"directory {text!r} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            return files
        if any(c in text for c in "*?["):
            files = sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"glob {text!r} matches no images")
            return files
        if path.is_file():
            return [str(path)]
        raise DataError(f"predict source {text!r} does not exist (expected an image, a directory or a glob)")
    raise DataError(
        f"unsupported predict source of type {type(source).__name__}; expected a path, directory, glob, "
        "list, PIL.Image or numpy array (HWC BGR uint8)"
    )


def _is_pil(x: Any) -> bool:
    try:
        from PIL import Image as PILImage
    except ImportError:  # pillow is a dependency; without it nothing can be a PIL image
        return False
    return isinstance(x, PILImage.Image)


def _to_bgr(x: Any, index: int) -> np.ndarray:
    if _is_pil(x):
        return np.ascontiguousarray(np.asarray(x.convert("RGB"))[..., ::-1])
    arr = np.asarray(x)
    if arr.dtype != np.uint8:
        raise DataError(f"numpy source #{index} has dtype {arr.dtype}; expected uint8 pixels (HWC BGR, as cv2 reads)")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DataError(f"numpy source #{index} has shape {arr.shape}; expected HxWx3 (BGR) or HxW")
    return np.ascontiguousarray(arr[..., :3])


def iter_images(items: list[Any]) -> Iterator[Image]:
    """Load resolved sources lazily, in order."""
    for i, item in enumerate(items):
        if isinstance(item, str):
            yield Image(read_image(item), item)
        else:
            yield Image(_to_bgr(item, i), f"image{i}.jpg")
