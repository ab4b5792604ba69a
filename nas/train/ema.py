"""Exponential moving average of the weights, as super-gradients' "threshold" EMA (yolo_nas_training.md §2.2)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """EMA of every floating-point state entry (weights and BN statistics), decay min(d, (1+s)/(10+s)).

    `s` counts the updates (optimizer steps, 1-based). `state_dict()` / `load_state_dict()` carry the averaged
    weights and the update count, so a resumed run continues the same ramp."""

    def __init__(self, model: nn.Module, decay: float = 0.9997):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        source = model.state_dict()
        avg, new = [], []
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                avg.append(v)
                new.append(source[k].detach())
            else:
                v.copy_(source[k])
        torch._foreach_lerp_(avg, new, 1 - d)  # v += (1 - d) (new - v), one fused pass (3x faster than a loop)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "decay": self.decay, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"], strict=True)
        self.updates, self.decay = int(state["updates"]), float(state["decay"])
