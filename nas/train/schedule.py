"""Optimizer parameter groups and the learning-rate schedule of the YOLO-NAS recipes (yolo_nas_training.md §2.2–2.3).

AdamW; no weight decay on normalization weights/biases and on any bias; linear warm-up from 0 to `lr` over
`warmup_steps`, then per-step cosine down to `final_ratio`·lr at the last step.
"""

from __future__ import annotations

import math

from torch import nn

__all__ = ["lr_at", "param_groups"]

NORMS = (nn.BatchNorm2d, nn.BatchNorm1d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: [decayed weights, no-decay (norm weights/biases and every bias)], in module order.

    All parameters are grouped whether or not they train now (a frozen backbone joins later), so the optimizer
    state of a resumed run lines up with the same groups."""
    no_decay, decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, NORMS) or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, lr: float, warmup_steps: int, final_ratio: float) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total - warmup_steps)
    return lr * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))
