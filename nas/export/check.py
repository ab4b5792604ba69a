"""Is an exported file's output the model's? A runtime's raw outputs against torch's, within the model's own noise.

Two correct fp32 implementations of one network (torch and onnxruntime, OpenVINO, a TorchScript trace) sum in
different orders, so they differ by about as much as either differs from exact arithmetic. How much that is
depends on the weights: released YOLO-NAS weights move fp32 boxes by 0.03-0.08 px from an fp64 forward, a
freshly initialized network by 1e-4 px. A fixed tolerance is therefore too tight for one and too loose for the
other; `check_outputs` measures the noise (torch in the input's dtype vs torch in fp64, same input) and allows
`NOISE_FACTOR` times it, never less than a floor of the old fixed tolerances.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["NOISE_FACTOR", "OutputCheck", "check_outputs", "failed_check_path", "torch_outputs"]

# Two fp32 implementations each differ from fp64 by up to the noise, so from each other by up to ~2x; 4x leaves
# room for a different input, while a wrong graph (a missing layer, a swapped channel) is off by orders more.
NOISE_FACTOR = 4.0
# The least tolerance per output (boxes in input pixels, scores in [0, 1]) for fp32 and fp16 graphs.
_FLOOR = {torch.float32: {"boxes": 1e-2, "scores": 1e-4}, torch.float16: {"boxes": 1.0, "scores": 1e-2}}
OUTPUTS = ("boxes", "scores")


@dataclass
class OutputCheck:
    """A runtime's raw outputs against torch's: per output the max abs difference, the torch fp32-vs-fp64
    difference on the same input (the model's own noise) and the tolerance allowed; `mismatches` says what failed."""

    max_abs_diff: dict[str, float] = field(default_factory=dict)
    noise: dict[str, float] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _raw(out) -> tuple[Tensor, Tensor]:
    # YOLO-NAS returns ((boxes, scores), aux) in eval mode and (boxes, scores) while tracing
    return tuple(out[0] if isinstance(out[0], (tuple, list)) else out)[:2]


def torch_outputs(model: nn.Module, x: Tensor) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(outputs in x's dtype, the same in fp64) of a YOLO-NAS `model` on `x`, as float64 arrays by name.

    The fp64 forward runs on a copy made first, so a model with state that changes per call is caught, not hidden.
    """
    exact = copy.deepcopy(model).double()
    with torch.no_grad():
        got = _raw(model(x))
        ref = _raw(exact(x.double()))
    as_np = lambda ts: {n: t.detach().double().cpu().numpy() for n, t in zip(OUTPUTS, ts)}  # noqa: E731
    return as_np(got), as_np(ref)


def check_outputs(
    model: nn.Module,
    x: Tensor,
    runtime: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    *,
    factor: float = NOISE_FACTOR,
) -> OutputCheck:
    """Check a runtime's raw ("boxes" [B, N, 4] px, "scores" [B, N, C]) outputs for input `x` against `model`.

    `model` is the network as exported (fused or not, in the dtype traced); `runtime` maps output names to
    arrays, or is (boxes, scores). Each output must be within max(floor, `factor` x torch's own fp32-vs-fp64
    difference) of torch's output in x's dtype.
    """
    got = dict(runtime) if isinstance(runtime, Mapping) else dict(zip(OUTPUTS, runtime))
    expected, exact = torch_outputs(model, x)
    floor = _FLOOR.get(x.dtype, _FLOOR[torch.float32])
    result = OutputCheck()
    for name in OUTPUTS:
        g, e = np.asarray(got[name], dtype=np.float64), expected[name]
        if g.shape != e.shape:
            result.mismatches.append(f"{name} shape {list(g.shape)} != torch's {list(e.shape)}")
            continue
        result.noise[name] = noise = float(np.abs(e - exact[name]).max(initial=0.0))
        result.tolerance[name] = tol = max(floor[name], factor * noise)
        result.max_abs_diff[name] = diff = float(np.abs(g - e).max(initial=0.0))
        if not diff <= tol:  # NaN fails too
            result.mismatches.append(
                f"{name} differ from torch by {diff:.3g} > tolerance {tol:.3g} "
                f"({factor:g} x torch's own fp32-vs-fp64 difference {noise:.3g}, at least {floor[name]:g})"
            )
    return result


def failed_check_path(path: str | Path) -> Path:
    """Where an export whose check failed is kept (for inspection), so it is never mistaken for a good one."""
    path = Path(path)
    return path.with_name(f"{path.stem}.check-failed{path.suffix}")
