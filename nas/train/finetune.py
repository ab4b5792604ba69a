"""Fine-tuning helpers: moving a detector onto another number of classes, and freezing the backbone.

Backbone, neck and every head layer but the class predictions load strictly (each key present, same shape); the
three `heads.head{i}.cls_pred` convolutions get the fresh initialization of `build(arch)` (prior-probability bias
0.01), and the report names them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from nas.errors import CheckpointError
from nas.models import build

__all__ = ["ClassAdaptation", "adapt_classes", "placeholders", "set_backbone_frozen"]


def _is_class_pred(key: str) -> bool:
    return key.startswith("heads.head") and ".cls_pred." in key


@dataclass(frozen=True)
class ClassAdaptation:
    old_classes: int
    new_classes: int
    reinitialized: tuple[str, ...]
    loaded: int

    def summary(self) -> str:
        return (
            f"fine-tuning {self.old_classes} -> {self.new_classes} classes: {self.loaded} tensors loaded strictly "
            f"(backbone, neck, heads), re-initialized: {', '.join(self.reinitialized)}"
        )


def adapt_classes(model: nn.Module, num_classes: int) -> tuple[nn.Module, ClassAdaptation | None]:
    """`model` itself if it already predicts `num_classes`; else a new `build(arch with num_classes)` carrying every
    weight of `model` except the class-prediction layers. Returns (model, report or None)."""
    arch = model.arch
    if arch.num_classes == num_classes:
        return model, None
    new_arch = dataclasses.replace(arch, heads=dataclasses.replace(arch.heads, num_classes=num_classes))
    new = build(new_arch)
    target, source = new.state_dict(), model.state_dict()
    missing = [k for k in target if not _is_class_pred(k) and k not in source]
    mismatched = [k for k in target if not _is_class_pred(k) and k in source and source[k].shape != target[k].shape]
    if missing or mismatched:
        raise CheckpointError(
            f"cannot move {arch.name!r} onto {num_classes} classes: keys missing {missing[:5]}, "
            f"shapes differ {mismatched[:5]}"
        )
    state = {k: (target[k] if _is_class_pred(k) else source[k]) for k in target}
    new.load_state_dict(state, strict=True)
    if hasattr(model, "checkpoint_meta"):
        new.checkpoint_meta = {k: v for k, v in model.checkpoint_meta.items() if k != "class_names"}
    re_init = tuple(sorted({k.rsplit(".", 1)[0] for k in target if _is_class_pred(k)}))
    return new, ClassAdaptation(arch.num_classes, num_classes, re_init, len(target) - 2 * len(re_init))


def placeholders(model: nn.Module) -> set[int]:
    """ids of the `rbr_reparam` placeholder parameters of unfused re-parameterizable blocks: unused in the forward
    pass, so they never train (DDP refuses parameters that never get a gradient)."""
    out: set[int] = set()
    for m in model.modules():
        if getattr(m, "fusion", None) == "none" and isinstance(getattr(m, "rbr_reparam", None), nn.Module):
            out |= {id(p) for p in m.rbr_reparam.parameters()}
    return out


def set_backbone_frozen(model: nn.Module, frozen: bool) -> int:
    """(Un)freeze the backbone's parameters; returns how many tensors changed. Frozen BN layers keep their
    running statistics (eval mode) while the rest trains."""
    n, skip = 0, placeholders(model)
    for p in model.backbone.parameters():
        if p.requires_grad == frozen and id(p) not in skip:
            p.requires_grad_(not frozen)
            n += 1
    for m in model.backbone.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train(not frozen and model.training)
    return n
