"""Default class names: COCO's 80 (the released models' classes), else placeholders."""

from __future__ import annotations

from nas.data.names import COCO80_NAMES

__all__ = ["default_names"]


def default_names(num_classes: int) -> dict[int, str]:
    """COCO's names for an 80-class model, else "class0", "class1", ..."""
    if num_classes == len(COCO80_NAMES):
        return dict(enumerate(COCO80_NAMES))
    return {i: f"class{i}" for i in range(num_classes)}
