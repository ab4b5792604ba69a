"""Zero-cost proxies: scores of a detector at initialization, computed on one small batch, no training.

Every proxy is "larger is better" and on a log scale (natural log), so that proxies can be combined by
z-scores or ranks against a reference population (`combine`). Established proxies, adapted to a
detector (their outputs are the raw head outputs, the loss YOLO-NAS's training loss):

- `synflow` (Tanaka et al. 2020; zero-cost-nas): ln sum |theta * dR/dtheta| over conv weights, with
  |theta| weights, eval-mode BN, an all-ones input, R = sum of the raw head outputs; float64.
- `naswot` (Mellor et al. 2021, the jacob_cov successor): ln det of the Hamming kernel of the binary
  ReLU activation codes of the batch (train-mode BN).
- `snip` (Lee et al. 2019) and `grad_norm` (Abdelfattah et al. 2021): ln sum |theta * dL/dtheta| and
  ln sum_layers ||dL/dW|| for YOLO-NAS's training loss on the batch (`detection_loss`, train-mode BN).
- `zen` (Lin et al. 2021; the entropy family of MAE-DET): Gaussian weights, train-mode BN; ln of the
  expected feature change under a small input perturbation at the three neck outputs (the detection
  features, MAE-DET's multi-scale view) plus the sum of ln BN scale factors.
- `params`, `flops` baselines: ln #parameters of the built model, ln multiply-adds of the deployed network at
  the batch resolution - both counted from the `ArchConfig` (`nas.latency.counting`), so no model is built.

Each proxy is a pure function of (architecture, batch, seed): weights are initialized from `seed`
inside a forked RNG, so results are deterministic and the global RNG is left untouched.
The batch is explicit (`random_batch` or `synthetic_batch`); `make_batch` picks by name.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from nas.errors import ConfigError
from nas.latency.counting import count_macs, count_params
from nas.models import build
from nas.proxy.batch import (
    BATCH_KINDS,
    ProxyBatch,
    detection_loss,
    make_batch,
    random_batch,
    raw_outputs,
    synthetic_batch,
)
from nas.space.schema import ArchConfig

__all__ = [
    "BATCH_KINDS",
    "COMBINE_METHODS",
    "DEFAULT_PROXIES",
    "PROXIES",
    "PROXY_VERSION",
    "VOTE_PROXIES",
    "ProxyBatch",
    "combine",
    "compute_proxies",
    "detection_loss",
    "make_batch",
    "random_batch",
    "synthetic_batch",
]

# Bump when a proxy's definition changes: it is part of every cache key of proxy values.
# 2: `flops` counts the deployed network from the ArchConfig (was: the unfused convs, by forward hooks).
PROXY_VERSION = 2
# The search's default proxy (nas/conf/proxy/zero_cost.yaml; chosen by experiments/proxy_correlation/PLAN.md's
# rule) and the four-proxy vote that was the default before it (nas/conf/proxy/vote.yaml, the ground truth's `vote`)
DEFAULT_PROXIES = ("synflow",)
VOTE_PROXIES = ("synflow", "naswot", "snip", "zen")
COMBINE_METHODS = ("zscore", "rank", "raw")
_Z_CLIP = 10.0  # one non-finite or extreme proxy must not dominate the vote


# ---- model helpers -------------------------------------------------------------------------------


def _init_model(arch: ArchConfig, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(arch)


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    """Conv layers that run in the unfused forward (QARepVGG's `rbr_reparam` placeholder does not)."""
    return [
        m
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and not name.endswith("rbr_reparam")
    ]


def _log(v: float) -> float:
    return math.log(v) if v > 0 else float("-inf")


# ---- the proxies ---------------------------------------------------------------------------------


class _Context:
    """One architecture's seeded initial model, shared by the proxies without copying its weights.

    The proxies run in the fixed order `_ORDER`: those reading the initial weights (`initial()`) first,
    without changing them (train-mode passes run with frozen BN statistics); then synflow, which makes the
    weights |theta| in float64; then zen, which re-initializes every weight it uses anyway.
    """

    def __init__(self, arch: ArchConfig, batch: ProxyBatch, seed: int):
        self.arch, self.batch, self.seed = arch, batch, seed
        self._pristine = True
        self._loss_grads: tuple[float, float] | None = None

    @functools.cached_property
    def model(self) -> nn.Module:
        """Built on first use: the count baselines never need it."""
        return _init_model(self.arch, self.seed)

    def initial(self) -> nn.Module:
        """The model at its initial weights and BN statistics, in train mode, without gradients."""
        if not self._pristine:
            raise RuntimeError("internal: a proxy reading the initial weights ran after one that changes them")
        self.model.zero_grad(set_to_none=True)
        return self.model.train()

    def consume(self) -> nn.Module:
        """The model for a proxy that changes its weights; later proxies must not read the initial ones."""
        self._pristine = False
        self.model.zero_grad(set_to_none=True)
        return self.model.train()

    def loss_grads(self) -> tuple[float, float]:
        """(snip, grad_norm) from one backward pass of the detection loss."""
        if self._loss_grads is None:
            model = self.initial()
            with _frozen_bn_stats(model):
                detection_loss(model, self.batch).backward()
            snip = grad_norm = 0.0
            for m in _weighted_layers(model):
                g = m.weight.grad
                if g is None:
                    continue
                snip += float((m.weight.detach() * g).abs().sum())
                grad_norm += float(g.norm())
            self._loss_grads = (_log(snip), _log(grad_norm))
            model.zero_grad(set_to_none=True)
        return self._loss_grads


@contextlib.contextmanager
def _frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Train-mode BN (batch statistics) that leaves its running statistics unchanged (momentum 0)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, before):
            m.momentum = mom


def _synflow(ctx: _Context) -> float:
    model = ctx.consume().eval().double()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    h, w = ctx.batch.input_hw
    _boxes, cls_logits, reg, _pts = raw_outputs(model, torch.ones(1, 3, h, w, dtype=torch.float64))
    (cls_logits.sum() + reg.sum()).backward()
    total = 0.0
    for m in _weighted_layers(model):
        if m.weight.grad is not None:
            total += float((m.weight.detach() * m.weight.grad).abs().sum())
    return _log(total)


def _naswot(ctx: _Context) -> float:
    model = ctx.initial()
    n = ctx.batch.images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_mod: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        codes = (out.detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad(), _frozen_bn_stats(model):
            model(ctx.batch.images)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) > 0 else float("-inf")


def _zen(ctx: _Context, alpha: float = 0.01) -> float:
    # Needs no initial weights: it re-initializes every conv and BN (BN statistics are batch statistics in
    # train mode; the shortcut scales alpha are 1 at init and after synflow's abs).
    model = ctx.consume().float()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    g = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(ctx.batch.images.shape, generator=g)
    eps = torch.randn(x.shape, generator=g)
    log_bn = 0.0

    def bn_hook(_mod: nn.Module, inp: tuple[Tensor, ...]) -> None:
        nonlocal log_bn
        var = inp[0].detach().double().var(dim=(0, 2, 3), unbiased=False).mean()
        log_bn += 0.5 * math.log(max(float(var), 1e-300))

    def features(t: Tensor) -> tuple[Tensor, ...]:
        return model.neck(model.backbone(t))

    with torch.no_grad():
        handles = [m.register_forward_pre_hook(bn_hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        try:
            clean = features(x)
        finally:
            for h in handles:
                h.remove()
        noisy = features(x + alpha * eps)
    delta = sum(float((a.double() - b.double()).abs().sum(dim=(1, 2, 3)).mean()) for a, b in zip(clean, noisy))
    return _log(delta) + log_bn


def _params(ctx: _Context) -> float:
    return _log(float(count_params(ctx.arch)))


def _flops(ctx: _Context) -> float:
    return _log(float(count_macs(ctx.arch, ctx.batch.input_hw)))


PROXIES: dict[str, Callable[[_Context], float]] = {
    "synflow": _synflow,
    "naswot": _naswot,
    "snip": lambda ctx: ctx.loss_grads()[0],
    "grad_norm": lambda ctx: ctx.loss_grads()[1],
    "zen": _zen,
    "params": _params,
    "flops": _flops,
}


# Proxies reading the initial weights first, then synflow (|weights|, float64), then zen (re-initializes).
_ORDER = ("params", "flops", "naswot", "snip", "grad_norm", "synflow", "zen")


def check_proxies(names: Sequence[str]) -> tuple[str, ...]:
    """Validate proxy names (error lists the available ones)."""
    if not names:
        raise ConfigError(f"no proxies selected; choose from {', '.join(PROXIES)}")
    bad = [n for n in names if n not in PROXIES]
    if bad:
        raise ConfigError(f"unknown proxy {bad[0]!r}; available proxies: {', '.join(PROXIES)}")
    return tuple(names)


def compute_proxies(
    arch: ArchConfig, batch: ProxyBatch, proxies: Sequence[str] = DEFAULT_PROXIES, seed: int = 0
) -> dict[str, float]:
    """Each selected proxy of `arch` at its `seed`-initialized weights on `batch` (larger is better).

    The model is built once, and only when a selected proxy needs it (not for `params` / `flops`).
    """
    names = check_proxies(proxies)
    if batch.images.shape[2] % 32 or batch.images.shape[3] % 32:
        raise ConfigError(f"proxy batch of {batch.input_hw} pixels: height and width must be multiples of 32")
    ctx = _Context(arch, batch, seed)
    out = {}
    for name in sorted(names, key=_ORDER.index):
        out[name] = float(PROXIES[name](ctx))
    return {name: out[name] for name in names}


def combine(
    values: Mapping[str, float],
    reference: Sequence[Mapping[str, float]],
    proxies: Sequence[str],
    method: str = "zscore",
) -> float:
    """One score from several proxies, relative to a fixed reference population of proxy values.

    `zscore`: mean over proxies of (value - mean_ref) / std_ref, each clipped to +-10 (a proxy that is
    constant over the reference contributes 0). `rank`: mean over proxies of the fraction of the
    reference population the value beats (ties count half) - a rank vote in [0, 1]. `raw`: the value of the
    one proxy itself (no reference used).
    Non-finite reference values are left out of the statistics; a non-finite value scores -10 / 0.
    """
    if method not in COMBINE_METHODS:
        raise ConfigError(f"unknown proxy combination {method!r}; choose one of {', '.join(COMBINE_METHODS)}")
    if method == "raw":  # one proxy's own value: no reference population needed (the training proxies)
        if len(proxies) != 1:
            raise ConfigError(f"proxy.combine=raw takes exactly one proxy, got {list(proxies)}; use zscore or rank")
        v = float(values[proxies[0]])
        return v if math.isfinite(v) else -1e30
    parts = []
    for p in proxies:
        ref = np.array([r[p] for r in reference], dtype=np.float64)
        ref = ref[np.isfinite(ref)]
        if ref.size == 0:
            raise ConfigError(f"proxy {p!r} is not finite on any reference architecture; drop it from the proxies")
        v = float(values[p])
        if method == "rank":
            parts.append(
                0.0 if not math.isfinite(v) else (float((ref < v).sum()) + 0.5 * float((ref == v).sum())) / ref.size
            )
            continue
        sd = float(ref.std())
        if not math.isfinite(v):
            parts.append(-_Z_CLIP)
        elif sd == 0.0:
            parts.append(0.0)
        else:
            parts.append(float(np.clip((v - ref.mean()) / sd, -_Z_CLIP, _Z_CLIP)))
    return float(np.mean(parts))
