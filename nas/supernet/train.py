"""Training a supernet with the project's one trainer (`nas.train`): same loss, augmentation, EMA, LR schedule,
checkpoints and resume; only the step differs (the sandwich rule).

Per optimizer step (`Sandwich`): the largest sub-network on the ground truth, then the smallest and
`random_subnets` uniformly drawn ones (seeded by the run's seed and the step, so a resumed run draws the same),
each on the ground-truth loss plus `distill` x a distillation loss towards the largest's predictions of the same
batch (in-place distillation, BigNAS/once-for-all). Each of the others is back-propagated as soon as its loss is
known (memory: the largest's graph plus one other's), the largest's by the trainer: the gradient of a shared weight
is the sum over the sub-networks that use it. `distill=0` is the plain sandwich (the ablation).
Only the largest updates the BatchNorm running statistics, so the per-epoch validation (of the largest) and best.pt
see its own statistics; a scored sub-network re-estimates its own (`nas.supernet.score`).
Under torchrun every process draws the same sub-networks (seeded by the step) on its share of the global batch, and
the step's gradients are averaged over processes by hand after its backward passes (DDP's wrapper assumes one
forward per step; `nas.train.dist.Dist.average_gradients`); rank 0 writes.

    from nas.supernet import train_supernet
    result = train_supernet("yolo_nas", data="synthetic", epochs=20, imgsz=160, weights="runs/train/l/best.pt")
    result.last                                            # runs/supernet/exp/last.pt
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nas.data import load_dataset
from nas.errors import CheckpointError, ConfigError, DataError
from nas.io import increment_dir
from nas.options import check, keys_of, merge
from nas.space.schema import ArchConfig
from nas.space.space import SearchSpace
from nas.supernet.net import SuperNet
from nas.supernet.plan import with_classes
from nas.train.data import TrainSet
from nas.train.dist import setup
from nas.train.loss import ppyoloe_loss
from nas.train.options import TrainOptions
from nas.train.outputs import RunLog
from nas.train.run import RESUME_OVERRIDES, load_train_split
from nas.train.state import read_train_state, write_checkpoint
from nas.train.trainer import Run, TrainResult, run_epochs

__all__ = ["Sandwich", "SupernetOptions", "distill_loss", "load_supernet", "save_supernet", "train_supernet"]


@dataclass(frozen=True)
class SupernetOptions:
    """What a supernet run adds to `TrainOptions` (whose `weights` is the checkpoint to start from)."""

    space: str = "yolo_nas"
    random_subnets: int = 2
    distill: float = 1.0

    HELP: ClassVar = {
        "space": "search space whose architectures are the sub-networks: a shipped name or a space YAML",
        "random_subnets": "uniformly drawn sub-networks per step, besides the largest and the smallest",
        "distill": "weight of the in-place distillation from the largest (0: every sub-network on the labels alone)",
    }

    def __post_init__(self):
        check(self.random_subnets >= 0, "random_subnets", self.random_subnets, "an integer >= 0")
        check(self.distill >= 0, "distill", self.distill, "a number >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def distill_loss(student: Any, teacher: tuple[Tensor, Tensor]) -> Tensor:
    """Soft-target loss of a sub-network's raw outputs towards the largest's (detached) ones on the same batch:
    per anchor, binary cross-entropy to the teacher's class probabilities (summed over classes) plus the KL
    divergence of the four DFL side distributions, weighted by the teacher's top class probability (box knowledge
    where the teacher sees an object); means over the anchors."""
    s_cls, s_reg = student[1][0].float(), student[1][1].float()
    t_cls, t_reg = teacher
    p = t_cls.float().sigmoid()
    cls = F.binary_cross_entropy_with_logits(s_cls, p, reduction="none").sum(-1)
    b, n, _ = s_reg.shape
    log_s = F.log_softmax(s_reg.reshape(b, n, 4, -1), -1)
    log_t = F.log_softmax(t_reg.float().reshape(b, n, 4, -1), -1)
    kl = (log_t.exp() * (log_t - log_s)).sum((-1, -2))
    w = p.max(-1).values
    return cls.mean() + (w * kl).sum() / w.sum().clamp(min=1.0)


class Sandwich:
    """The step of a supernet run (`nas.train.trainer.Run.step_loss`)."""

    def __init__(self, supernet: SuperNet, opts: SupernetOptions, seed: int):
        self.supernet, self.opts, self.seed = supernet, opts, seed

    def archs(self, step: int) -> list[ArchConfig]:
        """[largest, smallest, random ...] of optimizer step `step` (the same on resume)."""
        rng = np.random.default_rng([self.seed, step])
        net = self.supernet
        randoms = [with_classes(net.space.random(rng), net.num_classes) for _ in range(self.opts.random_subnets)]
        return [net.largest, net.smallest, *randoms]

    def __call__(
        self, net, x: Tensor, batch, normalizer, step: int, dtype, scaler=None
    ) -> tuple[Tensor, dict[str, float]]:
        def ctx():
            return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()

        largest, *others = self.archs(step)
        with ctx():
            out = net(x, largest)
        largest_loss, parts = ppyoloe_loss(out, batch.boxes, batch.labels, normalizer)
        teacher = (out[1][0].detach(), out[1][1].detach())
        others_loss = torch.zeros((), device=x.device)
        for arch in others:
            with ctx():
                out = net(x, arch, update_stats=False)
            loss, _ = ppyoloe_loss(out, batch.boxes, batch.labels, normalizer)
            if self.opts.distill:
                loss = loss + self.opts.distill * distill_loss(out, teacher)
            if scaler is not None and torch.isfinite(loss):  # a non-finite one makes the sum non-finite: step skipped
                scaler.scale(loss).backward()
                loss = loss.detach()
            others_loss = others_loss + loss
            del out
        # the logged terms are the largest's; the loss is the sandwich's sum (the others' parts already back-propagated)
        return largest_loss + others_loss, parts


def save_supernet(net: SuperNet, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write `net` as a supernet checkpoint (what a training run writes, without its train state); `meta` adds to
    the recorded `supernet` entry (e.g. data=, imgsz=: what `weights=supernet:PATH` re-estimates BatchNorm on)."""
    return write_checkpoint(Path(path), net.arch, net.state_dict(), {"supernet": {**net.spec, **(meta or {})}}, None)


def load_supernet(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SuperNet:
    """A supernet checkpoint (a `nas supernet train` run's best.pt / last.pt) as a `SuperNet` with its weights."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"supernet {os.fspath(path)!r}: no such file (a `nas supernet train` run's best.pt)")
    obj = torch.load(p, map_location=map_location, weights_only=True)
    spec = (obj.get("meta") or {}).get("supernet") if isinstance(obj, dict) else None
    if not isinstance(spec, dict):
        raise CheckpointError(
            f"{p}: not a supernet checkpoint (its meta records no `supernet`); train one with `nas supernet train`"
        )
    net = SuperNet(spec, spec["num_classes"])
    net.load_state_dict(obj["state_dict"], strict=True)
    net.checkpoint_meta = {**obj["meta"], "path": str(p)}
    return net.eval()


def _split(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sup = set(keys_of(SupernetOptions))
    bad = sorted(set(overrides) - sup - set(keys_of(TrainOptions)))
    if bad:
        raise ConfigError(
            f"unknown option(s) {bad} for train_supernet; valid: {', '.join(keys_of(TrainOptions, SupernetOptions))}"
        )
    return {k: v for k, v in overrides.items() if k not in sup}, {k: v for k, v in overrides.items() if k in sup}


def train_supernet(
    space: SearchSpace | str | os.PathLike | None = None,
    opts: TrainOptions | None = None,
    supernet_opts: SupernetOptions | None = None,
    *,
    train_data: Any = None,
    val_data: Any = None,
    save: bool = True,
    on_epoch: Any = None,
    log: Any = print,
    **overrides: Any,
) -> TrainResult:
    """Train the supernet of `space` (default `supernet_opts.space`) with the sandwich rule; `overrides` are
    `TrainOptions` or `SupernetOptions` fields. `opts.weights`: a checkpoint (or released name) to start from (the
    largest inherits it where shapes allow, its own architecture exactly). `opts.resume`: the last.pt of a supernet
    run. Returns the trainer's `TrainResult` (`model`: the EMA supernet; validation is the largest sub-network's).
    Writes to <project>/supernet/<name> unless `save=False`; `on_epoch(row, ema_supernet)` after every epoch."""
    train_changes, sup_changes = _split(overrides)
    opts = merge(TrainOptions, opts, train_changes, "train_supernet")
    sopts = merge(SupernetOptions, supernet_opts, sup_changes, "train_supernet")
    resume_state, run_dir, spec = None, None, space if space is not None else sopts.space
    if opts.resume:
        if opts.resume is True:
            raise ConfigError(
                "resume=true needs the path of a supernet run's last.pt: resume=runs/supernet/exp/last.pt"
            )
        path = Path(os.fspath(opts.resume))
        _arch, meta, resume_state = read_train_state(path)
        saved = meta.get("supernet")
        if not isinstance(saved, dict):
            raise CheckpointError(f"{path}: not a supernet run's checkpoint; resume it with `nas train`")
        keep = {k: getattr(opts, k) for k in RESUME_OVERRIDES}
        opts = TrainOptions(**{**resume_state["options"], **keep})
        sopts = SupernetOptions(**{k: saved[k] for k in keys_of(SupernetOptions)})
        spec, run_dir = saved, path.parent
    d = setup(opts.device)
    torch.manual_seed(opts.seed)
    train_ds = train_data if train_data is not None else load_train_split(opts.data)
    val_ds = None
    if opts.val:
        val_ds = val_data if val_data is not None else load_dataset(opts.data, "val")
    nc = len(train_ds.category_ids)
    if val_ds is not None and len(val_ds.category_ids) != nc:
        raise DataError(f"the train split has {nc} classes but the val split {len(val_ds.category_ids)}")
    model = SuperNet(spec, nc, seed=opts.seed)
    inherited = None
    if opts.weights and resume_state is None:
        inherited = model.inherit_from(opts.weights, seed=opts.seed)
    say = log if opts.verbose else None
    if save and run_dir is None:
        run_dir = increment_dir(Path(opts.project) / "supernet" / opts.name, opts.exist_ok)
    if not save:
        run_dir = None
    runlog = RunLog(run_dir, opts.logger, opts.to_dict(), opts.name) if run_dir is not None else None
    names = [train_ds.names[i] for i in range(nc)]
    extra = {"supernet": {**model.spec, **sopts.to_dict(), "inherited": inherited}}
    extra["supernet"].update(data=opts.data if isinstance(opts.data, str) else None, imgsz=opts.imgsz)
    run = Run(opts, model, TrainSet(train_ds, opts), val_ds, names, d, run_dir, runlog, say, on_epoch, resume_state)
    run = dataclasses.replace(run, step_loss=Sandwich(model, sopts, opts.seed), extra_meta=extra)
    if say is not None:
        where = f" -> {run_dir}" if run_dir is not None else ""
        say(f"training the supernet of {model.space.name!r} ({sum(p.numel() for p in model.parameters()):,} weights; "
            f"largest + smallest + {sopts.random_subnets} random per step, distill {sopts.distill}) on "
            f"{len(train_ds)} images, {opts.epochs} epochs, imgsz {opts.imgsz}, batch {opts.batch}{where}")  # fmt: skip
    try:
        return run_epochs(run)
    finally:
        if runlog is not None:
            runlog.finish()
        d.close()
