"""`SuperNet`: one set of weights of which every architecture of a search space is a sub-network.

The weights are *slots* (nas.supernet.plan): plain modules holding the largest tensor each position needs, grouped
under `backbone`, `neck` and `heads` (so the trainer's backbone freezing and AdamW groups apply unchanged: BatchNorm
slots are `nn.BatchNorm2d`, biases are named `bias`). The configuration is an `ArchConfig`, passed to the forward:
`supernet(x, arch)` runs the plain network of `nas.models.build(arch)` (its module on the meta device, cached) with
views of the slots in place of its tensors (`torch.func.functional_call`), so gradients and BatchNorm statistics go
to the shared weights, and `extract(arch)` copies the same views into a real `build(arch)`: the two agree exactly.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from nas.errors import SpaceError
from nas.models import build
from nas.models.checkpoints import read_checkpoint
from nas.models.inherit import inherit_weights
from nas.space.io import load_arch
from nas.space.schema import ArchConfig
from nas.space.space import Dimension, SearchSpace, load_space
from nas.supernet.plan import Bounds, View, check_space, describe_mismatch, extreme_archs, plan, with_classes

__all__ = ["SuperNet", "take"]

_BN_ATTRS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_TEMPLATES: OrderedDict[str, nn.Module] = OrderedDict()
_MAX_TEMPLATES = 64


def _template(arch: ArchConfig) -> nn.Module:
    """`build(arch)` on the meta device (no memory, no init), cached by digest: the code the supernet runs."""
    key = arch.digest()
    tpl = _TEMPLATES.get(key)
    if tpl is None:
        with torch.device("meta"):
            tpl = build(arch)
        _TEMPLATES[key] = tpl
        if len(_TEMPLATES) > _MAX_TEMPLATES:
            _TEMPLATES.popitem(last=False)
    else:
        _TEMPLATES.move_to_end(key)
    return tpl


def take(t: Tensor, view: View) -> Tensor:
    """The sub-network tensor `view` of slot tensor `t` (a view for leading slices, a differentiable copy for
    concatenated segments and block-diagonal kernels)."""
    if t.dim() == 0:
        return t
    for axis, n in enumerate(view.shape):
        if view.segments[axis] is None and not (view.group and axis == 1):
            t = t.narrow(axis, 0, n)
    seg = view.segments[1] if len(view.segments) > 1 else None
    if seg is not None:
        t = torch.cat([t.narrow(1, s, k) for s, k in seg], 1) if len(seg) > 1 else t.narrow(1, *seg[0])
    if view.group:
        c, g = view.shape[0], view.group
        rows = torch.arange(c, device=t.device)
        cols = (rows // g * g)[:, None] + torch.arange(g, device=t.device)[None, :]
        t = t[rows[:, None], cols]
    return t


@torch.no_grad()
def _put(t: Tensor, view: View, value: Tensor) -> None:
    """Write `value` (a sub-network tensor) into slot tensor `t` at `view`."""
    if t.dim() == 0:
        t.copy_(value)
        return
    for axis, n in enumerate(view.shape):
        if view.segments[axis] is None and not (view.group and axis == 1):
            t = t.narrow(axis, 0, n)
    if view.group:
        c, g = view.shape[0], view.group
        rows = torch.arange(c, device=t.device)
        cols = (rows // g * g)[:, None] + torch.arange(g, device=t.device)[None, :]
        t[rows[:, None], cols] = value.to(t.dtype)
        return
    seg = view.segments[1] if len(view.segments) > 1 else None
    if seg is None:
        t.copy_(value)
        return
    at = 0
    for s, k in seg:
        t.narrow(1, s, k).copy_(value.narrow(1, at, k))
        at += k


def _field(tree: dict, path: str) -> Any:
    for part in path.split("."):
        tree = tree[int(part)] if part.isdigit() else tree[part]
    return tree


def _among(value: Any, choices: list) -> bool:
    key = tuple(value) if isinstance(value, (list, tuple)) else value
    return any((tuple(c) if isinstance(c, (list, tuple)) else c) == key for c in choices)


class _Weights(nn.Module):
    """A slot of conv (or transposed-conv, bias, alpha) tensors, with the attribute names of the layer."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        super().__init__()
        for attr, shape in shapes.items():
            self.register_parameter(attr, nn.Parameter(torch.zeros(shape)))


def _space_of(space: SearchSpace | str | os.PathLike | dict) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):  # the form a supernet checkpoint records (`SuperNet.spec`)
        dims = tuple(
            Dimension(p, tuple(tuple(c) if isinstance(c, list) else c for c in cs)) for p, cs in space["dimensions"]
        )
        return SearchSpace(space["name"], ArchConfig.from_dict(space["base"]), dims, {}, source="<supernet checkpoint>")
    return load_space(space)


class SuperNet(nn.Module):
    """The elastic supernet of `space` for `num_classes` (default: the space's base architecture's).

    `supernet(x)` runs the largest sub-network, `supernet(x, arch)` any architecture of the space;
    `extract(arch)` returns it as a plain `nas.models.build(arch)` network with the shared weights."""

    def __init__(self, space: SearchSpace | str | os.PathLike | dict, num_classes: int | None = None, seed: int = 0):
        super().__init__()
        self.space = _space_of(space)
        check_space(self.space)
        self.num_classes = int(num_classes or self.space.base.num_classes)
        self.largest, self.smallest, covering = extreme_archs(self.space, self.num_classes)
        self.arch = self.largest  # the default configuration: what the trainer validates and checkpoints name
        self.bounds = Bounds.of(self.space, self.largest)
        self._plans: OrderedDict[str, dict[str, View]] = OrderedDict()
        extents: dict[str, dict[str, tuple[int, ...]]] = {}
        for a in covering:
            for v in self.plan(a).values():
                have = extents.setdefault(v.slot, {}).get(v.attr)
                need = v.extent()
                extents[v.slot][v.attr] = need if have is None else tuple(map(max, have, need))
        self.backbone, self.neck, self.heads = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        for slot, shapes in sorted(extents.items()):
            if set(shapes) == set(_BN_ATTRS):
                module: nn.Module = nn.BatchNorm2d(shapes["weight"][0], self.largest.bn_eps, self.largest.bn_momentum)
            else:
                module = _Weights(shapes)
            part, rest = slot.split("/", 1)
            getattr(self, part)[rest] = module
        self._init(seed)

    # ---- structure -----------------------------------------------------------------------------
    def slot(self, name: str) -> nn.Module:
        part, rest = name.split("/", 1)
        return getattr(self, part)[rest]

    def plan(self, arch: ArchConfig) -> dict[str, View]:
        """The views of every tensor of `arch` (cached by digest)."""
        key = arch.digest()
        p = self._plans.get(key)
        if p is None:
            shapes = {k: tuple(v.shape) for k, v in _template(arch).state_dict().items()}
            p = plan(arch, self.bounds, shapes)
            self._plans[key] = p
            if len(self._plans) > _MAX_TEMPLATES:
                self._plans.popitem(last=False)
        return p

    def check(self, arch: ArchConfig | str) -> ArchConfig:
        """`arch` if it is a sub-network of this supernet, else SpaceError naming the dimension that is not."""
        arch = load_arch(arch)
        if arch.digest() not in self._plans:
            describe_mismatch(self.space, arch, self.num_classes)
        return arch

    def check_space(self, space: SearchSpace) -> None:
        """SpaceError naming the first dimension of `space` with an architecture that is not a sub-network (a
        search over `space` scored by this supernet would fail there); every point of `space` is one otherwise."""
        mine = {d.path: d for d in self.space.dimensions}
        base = self.space.base.to_dict()
        for d in space.dimensions:
            theirs = mine.get(d.path)
            allowed = list(theirs.choices) if theirs is not None else [_field(base, d.path)]
            extra = [c for c in d.choices if not _among(c, allowed)]
            if extra:
                raise SpaceError(
                    f"the supernet (space {self.space.name!r}) cannot express {d.path}={extra[0]!r} of space "
                    f"{space.name!r}: its choices there are {allowed}; train a supernet of this space"
                )
        self.check(with_classes(space.base, self.num_classes))

    def contains(self, arch: ArchConfig) -> bool:
        try:
            self.check(arch)
        except SpaceError:
            return False
        return True

    @property
    def spec(self) -> dict[str, Any]:
        """What rebuilds this supernet's structure (recorded in its checkpoints)."""
        s = self.space
        return {
            "name": s.name,
            "base": s.base.to_dict(),
            "dimensions": [[d.path, [list(c) if isinstance(c, tuple) else c for c in d.choices]] for d in s.dimensions],
            "num_classes": self.num_classes,
        }

    # ---- weights -------------------------------------------------------------------------------
    def tensors(self, arch: ArchConfig) -> dict[str, Tensor]:
        """Every tensor of `build(arch)` as a view of the slots (plus the DFL projection buffer)."""
        out = {name: take(getattr(self.slot(v.slot), v.attr), v) for name, v in self.plan(arch).items()}
        r = arch.heads.reg_max
        ref = out["heads.head1.cls_pred.weight"]
        out["heads.proj_conv"] = torch.linspace(0, r, r + 1, device=ref.device, dtype=ref.dtype).reshape(1, -1, 1, 1)
        return out

    def load_subnet(self, arch: ArchConfig, state_dict: dict[str, Tensor]) -> int:
        """Write a sub-network's weights into the slots (tensors whose shape differs are skipped); returns how many
        tensors were written."""
        n = 0
        for name, v in self.plan(arch).items():
            value = state_dict.get(name)
            if value is not None and tuple(value.shape) == v.shape:
                _put(getattr(self.slot(v.slot), v.attr), v, value)
                n += 1
        return n

    def _init(self, seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in self.modules():
                if isinstance(module, _Weights):
                    for attr, p in module.named_parameters():
                        if attr == "alpha":
                            nn.init.ones_(p)
                        elif p.dim() > 1:
                            nn.init.kaiming_uniform_(p, a=5**0.5)
            self.load_subnet(self.largest, build(self.largest).state_dict())  # the largest exactly as build inits

    def inherit_from(self, source: str | os.PathLike | tuple[ArchConfig, dict], seed: int = 0) -> dict[str, Any]:
        """Start from trained weights (a checkpoint path, a released name, or (arch, state_dict)): the largest
        sub-network inherits them where shapes allow (`nas.models.inherit`), then the source's own architecture,
        when it lies in the space, is written exactly; RepVGG BatchNorms start from their QARepVGG twins."""
        if not isinstance(source, tuple):
            ckpt = read_checkpoint(source)
            source = (ckpt.arch, ckpt.state_dict)
        src_arch, src_sd = source
        sd, report = inherit_weights(self.largest, (src_arch, src_sd), seed=seed)
        self.load_subnet(self.largest, sd)
        own = with_classes(src_arch, self.num_classes)
        exact = self.contains(own)
        if exact:
            self.load_subnet(own, src_sd)
        for name in list(self.state_dict()):
            if "@repvgg" in name:
                twin = name.replace("@repvgg", "@qarepvgg")
                try:
                    src, dst = self.get_parameter_or_buffer(twin), self.get_parameter_or_buffer(name)
                except AttributeError:
                    continue
                if src.shape == dst.shape:
                    with torch.no_grad():
                        dst.copy_(src)
        return {"source": src_arch.name, "inherited_fraction": report.fraction, "source_in_space": exact}

    def get_parameter_or_buffer(self, name: str) -> Tensor:
        module, attr = name.rsplit(".", 1)
        return getattr(self.get_submodule(module), attr)

    # ---- running and extracting ------------------------------------------------------------------
    def forward(self, x: Tensor, arch: ArchConfig | None = None, update_stats: bool = True):
        """The network of `arch` (default: the largest) on `x`. In train mode BatchNorm normalizes by the batch and
        updates the shared running statistics; `update_stats=False` leaves them as they are (the sandwich's other
        sub-networks: the statistics stay the largest's, every scored sub-network re-estimates its own)."""
        arch = self.largest if arch is None else self.check(arch)
        tpl = _template(arch)
        tpl.train(self.training)
        tensors = self.tensors(arch)
        if self.training and not update_stats:
            stats = ("running_mean", "running_var", "num_batches_tracked")
            tensors = {k: (v.clone() if k.rsplit(".", 1)[-1] in stats else v) for k, v in tensors.items()}
        return functional_call(tpl, tensors, (x,), strict=False)

    @torch.no_grad()
    def extract(self, arch: ArchConfig | str) -> nn.Module:
        """`nas.models.build(arch)` with the shared weights (super-gradients state_dict names; train mode, on the
        supernet's device). The unused `rbr_reparam` placeholders are zero."""
        arch = self.check(arch)
        ref = next(self.parameters())
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = build(arch)
        model = model.to_empty(device=ref.device)
        views = self.tensors(arch)
        state = {k: (views[k].detach().clone() if k in views else torch.zeros(v.shape, device=ref.device))
                 for k, v in model.state_dict().items()}  # fmt: skip
        model.load_state_dict(state, strict=True)
        model.heads.proj_conv = views["heads.proj_conv"].clone()
        return model
