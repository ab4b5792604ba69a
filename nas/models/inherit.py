"""Weight inheritance: initial weights for a searched architecture from a released (or any) checkpoint.

When the architecture equals the source's, the state_dict is copied exactly (every key and shape checked).
Otherwise weights are transferred by structured slicing, tensor by tensor under the same module name:

- blocks: stage/neck depth is inherited from the front (a target with k blocks takes the source's first
  k; blocks beyond the source's depth keep their fresh initialization), as in once-for-all's elastic depth;
- channels: the leading channels of every dimension (min of both sizes); channels the source lacks keep
  their initialization;
- concatenations are sliced per segment, aligned by meaning (CSP: the conv2 branch, the last block's
  output at any depth, intermediate outputs by block index; SPP: identity and each pool by kernel size;
  PAN: upsampled / skip inputs), so a wider or narrower branch never shifts the channels of the next one;
- a tensor whose block type differs (e.g. qarepvgg vs repvgg 1x1 branch) or whose grouping differs (head
  `first_conv_group_size`) is not inherited.

The report gives the fraction of the target's parameters (elements) copied from the source. `closest`
ranks candidate sources by that fraction computed from shapes alone (meta tensors, no weights needed):
distance = 1 - inheritable fraction, ties to the smaller source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nas.errors import CheckpointError, WeightsNotFoundError
from nas.models import build
from nas.models.checkpoints import load_checkpoint, resolve_weights, save_checkpoint
from nas.space.io import RELEASED, load_arch
from nas.space.schema import ArchConfig

__all__ = ["InheritReport", "closest", "inherit_weights", "inheritable_fraction", "save_inherited"]

Source = str | os.PathLike | tuple[ArchConfig, Mapping[str, Tensor]]


@dataclass(frozen=True)
class InheritReport:
    """What was inherited: counts over the target's parameters (elements and tensors)."""

    source: str
    source_arch: str
    exact: bool
    params_total: int
    params_inherited: int
    tensors_full: int
    tensors_partial: int
    tensors_new: int

    @property
    def fraction(self) -> float:
        return self.params_inherited / self.params_total if self.params_total else 0.0

    def summary(self) -> str:
        how = "exact copy" if self.exact else "structured slicing"
        return (
            f"{self.fraction:.1%} of {self.params_total:,} parameters inherited from {self.source_arch} ({self.source}; {how}); "
            f"tensors: {self.tensors_full} full, {self.tensors_partial} partial, {self.tensors_new} new"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "fraction": self.fraction}


# ---- concatenation segments ----------------------------------------------------------------------

_STAGE = re.compile(r"^backbone\.stage([1-4])\.blocks\.conv3\.conv\.weight$")
_NECK_CSP = re.compile(r"^neck\.neck([1-4])\.blocks\.conv3\.conv\.weight$")
_NECK_DOWN_IN = re.compile(r"^neck\.neck([34])\.blocks\.conv[12]\.conv\.weight$")
_NECK_UP_CAT = re.compile(r"^neck\.neck([12])\.reduce_after_concat\.conv\.weight$")
_SPP_OUT = "backbone.context_module.cv2.conv.weight"


def _csp_segments(num_blocks: int, hidden: int, concat: bool) -> list[tuple[str, int]]:
    # CSPLayer.conv3 input: cat(*bottleneck outputs, conv2(x)); with intermediates the first is conv1(x).
    # The last block's output is "last" at any depth (elastic depth: conv3 reads whichever block ends).
    inner = [("in", hidden), *((f"b{i}", hidden) for i in range(1, num_blocks))] if concat else []
    return [*inner, ("last", hidden), ("conv2", hidden)]


def _segments(arch: ArchConfig, key: str) -> list[tuple[str, int]] | None:
    """Labelled input-channel segments of a conv that reads a concatenation (None: not one)."""
    if m := _STAGE.match(key):
        s = arch.backbone.stages[int(m[1]) - 1]
        return _csp_segments(s.num_blocks, s.hidden_channels, s.concat_intermediates)
    neck = [*arch.neck.up, *arch.neck.down]
    if m := _NECK_CSP.match(key):
        s = neck[int(m[1]) - 1]
        return _csp_segments(s.effective_num_blocks, s.hidden_channels, s.concat_intermediates)
    if m := _NECK_DOWN_IN.match(key):
        i = int(m[1])
        skip = arch.neck.up[1] if i == 3 else arch.neck.up[0]
        return [("down", neck[i - 1].effective_out_channels // 2), ("skip", skip.effective_out_channels)]
    if m := _NECK_UP_CAT.match(key):
        out = arch.neck.up[int(m[1]) - 1].effective_out_channels
        return [("up", out), ("skip1", out), ("skip2", out)]
    if key == _SPP_OUT:
        hidden = arch.backbone.stages[3].out_channels // 2
        return [("x", hidden), *((f"pool{k}", hidden) for k in arch.backbone.context.pool_sizes)]
    return None


_HEAD_CONV = re.compile(r"^(heads\.head([123])\.(?:cls|reg)_convs)\.(\d+)\.(.*)$")


def _head_key_map(target: ArchConfig, source: ArchConfig, key: str) -> str | None:
    """Source key of a head conv: the grouped first conv maps only to an equally grouped one, the last
    dense conv to the source's last dense conv (their Sequential indices differ with the grouping)."""
    m = _HEAD_CONV.match(key)
    if m is None:
        return key
    prefix, level, idx, rest = m[1], int(m[2]) - 1, int(m[3]), m[4]
    g_t = target.heads.heads[level].first_conv_group_size
    g_s = source.heads.heads[level].first_conv_group_size
    first_t = g_t != 0 and idx == 0
    if first_t:
        return f"{prefix}.0.{rest}" if g_s == g_t else None
    return f"{prefix}.{1 if g_s != 0 else 0}.{rest}"


# ---- transfer ------------------------------------------------------------------------------------


def _copy(dst: Tensor, src: Tensor, segs: tuple[list[tuple[str, int]], list[tuple[str, int]]] | None) -> int:
    """Copy the overlapping block of `src` into `dst` (in place); returns the number of elements copied."""
    if dst.dim() != src.dim():
        return 0
    if dst.dim() == 0:
        dst.copy_(src)
        return 1
    if segs is None or dst.dim() < 2:
        idx = tuple(slice(0, min(a, b)) for a, b in zip(dst.shape, src.shape))
        dst[idx] = src[idx]
        n = 1
        for s in idx:
            n *= s.stop
        return n
    t_segs, s_segs = segs
    s_off, off = {}, 0
    for label, size in s_segs:
        s_off[label] = (off, size)
        off += size
    if off != src.shape[1] or sum(s for _, s in t_segs) != dst.shape[1]:
        raise CheckpointError(
            f"internal: concatenation segments {t_segs} / {s_segs} do not match shapes {dst.shape} / {src.shape}"
        )
    rest = tuple(slice(0, min(a, b)) for a, b in zip(dst.shape[2:], src.shape[2:]))
    n_out = min(dst.shape[0], src.shape[0])
    copied, t = 0, 0
    for label, size in t_segs:
        if label in s_off:
            so, ssize = s_off[label]
            m = min(size, ssize)
            dst[(slice(0, n_out), slice(t, t + m), *rest)] = src[(slice(0, n_out), slice(so, so + m), *rest)]
            k = n_out * m
            for s in rest:
                k *= s.stop
            copied += k
        t += size
    return copied


def _transfer(
    arch: ArchConfig,
    target: dict[str, Tensor],
    param_keys: Iterable[str],
    source_arch: ArchConfig,
    source: Mapping[str, Tensor],
) -> tuple[int, int, int, int, int]:
    """Slice `source` into `target` in place; (params total, params inherited, full, partial, new)."""
    params = set(param_keys)
    total = inherited = full = partial = new = 0
    for key, dst in target.items():
        src_key = _head_key_map(arch, source_arch, key)
        src = source.get(src_key) if src_key is not None else None
        t_seg = _segments(arch, key)
        segs = (t_seg, _segments(source_arch, src_key)) if t_seg is not None and src is not None else None
        n = 0
        if src is not None and src.dtype == dst.dtype:
            with torch.no_grad():
                n = _copy(dst, src.to(dst.device), segs)
        if key in params:
            total += dst.numel()
            inherited += n
            if n == dst.numel():
                full += 1
            elif n:
                partial += 1
            else:
                new += 1
    return total, inherited, full, partial, new


def _meta_state(arch: ArchConfig) -> tuple[dict[str, Tensor], set[str]]:
    with torch.device("meta"):
        model = build(arch)
    return dict(model.state_dict()), {k for k, _ in model.named_parameters()}


def inheritable_fraction(arch: ArchConfig, source_arch: ArchConfig) -> float:
    """Fraction of `arch`'s parameters that inheritance from `source_arch` would fill (shapes only)."""
    if arch == source_arch:
        return 1.0
    target, params = _meta_state(arch)
    source, _ = _meta_state(source_arch)
    total, inherited, *_ = _transfer(arch, target, params, source_arch, source)
    return inherited / total if total else 0.0


def closest(arch: ArchConfig, candidates: Sequence[str | ArchConfig] = RELEASED) -> list[tuple[str, float]]:
    """Candidate sources ranked by inheritable fraction (highest first; ties: the smaller source)."""
    scored = []
    for c in candidates:
        a = load_arch(c)
        state, param_keys = _meta_state(a)
        params = sum(t.numel() for k, t in state.items() if k in param_keys)
        scored.append((-inheritable_fraction(arch, a), params, a.name))
    return [(name, -neg) for neg, _p, name in sorted(scored)]


# ---- sources -------------------------------------------------------------------------------------


def _load_source(source: Source) -> tuple[ArchConfig, Mapping[str, Tensor], str]:
    if isinstance(source, tuple):
        source_arch, sd = source
        return load_arch(source_arch), sd, "state_dict"
    key = os.fspath(source)
    path = Path(resolve_weights(key)) if key in RELEASED else Path(key).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {str(path)!r} does not exist")
    source_arch, sd = load_checkpoint(path)
    return source_arch, sd, str(path)


def _auto_source(arch: ArchConfig) -> Source:
    """The closest released model whose weights are present."""
    missing = []
    for name, _fraction in closest(arch):
        try:
            resolve_weights(name)
            return name
        except WeightsNotFoundError as e:
            missing.append(f"{name}: {e}")
    raise WeightsNotFoundError("no released weights found for weights=auto:\n  " + "\n  ".join(missing))


def inherit_weights(
    arch: ArchConfig | str, source: Source = "auto", seed: int = 0
) -> tuple[dict[str, Tensor], InheritReport]:
    """A state_dict for `arch` and what it inherited from `source` (a released name, `auto`, a checkpoint
    path, or an `(ArchConfig, state_dict)` pair). Parts not inherited keep a `seed`-ed fresh init."""
    arch = load_arch(arch)
    if isinstance(source, (str, os.PathLike)) and os.fspath(source) == "auto":
        source = _auto_source(arch)
    source_arch, sd, where = _load_source(source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(arch)
    if source_arch == arch:
        try:
            model.load_state_dict(dict(sd), strict=True)
        except RuntimeError as e:
            raise CheckpointError(
                f"{where}: its architecture equals {arch.name} but its weights do not load strictly: {e}"
            ) from None
        n = sum(p.numel() for p in model.parameters())
        k = len(list(model.parameters()))
        return dict(model.state_dict()), InheritReport(where, source_arch.name, True, n, n, k, 0, 0)
    target = {k: v.clone() for k, v in model.state_dict().items()}
    params = {k for k, _ in model.named_parameters()}
    total, inherited, full, partial, new = _transfer(arch, target, params, source_arch, sd)
    return target, InheritReport(where, source_arch.name, False, total, inherited, full, partial, new)


def save_inherited(arch: ArchConfig | str, source: Source, out: str | os.PathLike, seed: int = 0) -> InheritReport:
    """Write a checkpoint of `arch` with inherited weights (the core's checkpoint format, report in its meta)."""
    arch = load_arch(arch)
    sd, report = inherit_weights(arch, source, seed)
    save_checkpoint(out, sd, arch, {"inherited": report.to_dict()})
    return report
