"""The proxies of a search: which of them train, the checks of their settings (`proxy.*`, and `rerank.*` for the
two-stage selection's costly proxy), and the trainer's options of a training proxy. Everything is checked when the
search starts, so a bad setting fails in one line, not hours later."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from nas.errors import CheckpointError, ConfigError
from nas.models import read_checkpoint
from nas.proxy import zero_cost
from nas.proxy.train import SCORES as TRAINED_SCORES
from nas.proxy.train import proxy_options
from nas.search.config import ProxyConfig, SearchConfig, TrainingProxyConfig

if TYPE_CHECKING:
    from nas.train.options import TrainOptions

__all__ = ["TRAINED", "check_proxy_config", "rerank_proxy", "train_options"]

# proxies that train (nas.proxy.train) or score a trained supernet's sub-network (nas.supernet); the others are
# zero-cost
TRAINED = ("short_train", "inherit", "supernet")


# TrainOptions' keys as a TrainingProxyConfig names them
_TRAIN_KEYS = {"data": "train_data", "epochs": "train_epochs", "imgsz": "train_imgsz"}


def train_options(t: TrainingProxyConfig, seed: int, group: str = "proxy") -> TrainOptions:
    """The trainer's options of a training proxy: nas.proxy.train's preset with `group`'s train_data, train_epochs,
    train_imgsz and `seed`, checked by TrainOptions; an error names the user's key (`rerank.train_imgsz=100: ...`)."""
    try:
        return proxy_options(data=t.train_data, epochs=t.train_epochs, imgsz=t.train_imgsz, seed=seed)
    except ConfigError as e:
        key = _TRAIN_KEYS.get(getattr(e, "field_name", ""))
        if key is None:
            raise
        raise ConfigError(f"{group}.{key}={getattr(t, key)!r}: expected {e.expected}") from None  # type: ignore[attr-defined]


def check_proxy_config(p: ProxyConfig, group: str = "proxy") -> None:
    """The proxy's checks; `group` is where its training settings came from (`proxy`, or `rerank` for the re-rank)."""
    sel = "proxy" if group == "proxy" else f"{group}.proxy"  # the key that chose the training proxy
    names = list(p.proxies)
    zero_cost.check_proxies([n for n in names if n not in TRAINED] or ["params"])
    if not names:
        raise ConfigError(f"no proxies selected; choose from {', '.join((*zero_cost.PROXIES, *TRAINED))}")
    if p.combine not in zero_cost.COMBINE_METHODS:
        raise ConfigError(f"proxy.combine={p.combine!r}; choose one of {', '.join(zero_cost.COMBINE_METHODS)}")
    trained = [n for n in names if n in TRAINED]
    if trained and p.combine != "raw":
        raise ConfigError(
            f"proxy.proxies={names}: the training proxies ({', '.join(trained)}) are scored alone with proxy.combine=raw "
            "(a z-score vote would train the whole reference population first); use proxy=short_train or proxy=inherit"
        )
    if p.train_score not in TRAINED_SCORES:
        raise ConfigError(f"{group}.train_score={p.train_score!r}; choose one of {', '.join(TRAINED_SCORES)}")
    if p.train_epochs < (0 if "inherit" in names else 1):
        raise ConfigError(f"{group}.train_epochs={p.train_epochs}: must be >= 1 (>= 0 for inherit)")
    train_options(p, p.seed, group)
    if "inherit" in names:
        if not p.inherit_from:
            raise ConfigError(
                f"{sel}=inherit needs {group}.inherit_from=PATH: a checkpoint trained on {group}.train_data, e.g. "
                f"`nas train model=yolo_nas_l.yaml data=synthetic` then {group}.inherit_from=runs/train/exp/last.pt"
            )
        if not Path(p.inherit_from).is_file():
            raise ConfigError(
                f"{group}.inherit_from={p.inherit_from}: no such file (a trained checkpoint, e.g. last.pt)"
            )
        try:  # read now (restricted unpickler, checksum): a malicious or damaged parent is refused before the search,
            read_checkpoint(p.inherit_from)  # not after it when the two-stage re-rank first opens it
        except CheckpointError as e:
            raise ConfigError(f"{group}.inherit_from={p.inherit_from}: {e}") from None
        if p.train_score != "mAP50_95" and p.train_epochs == 0:
            raise ConfigError(
                f"{sel}=inherit with train_epochs=0 has no training loss: set {group}.train_score=mAP50_95"
            )
    if "supernet" in names:
        if not p.supernet:
            raise ConfigError(
                "proxy=supernet needs proxy.supernet=PATH: a supernet trained on proxy.train_data, e.g. "
                "`nas supernet train weights=yolo_nas_l data=synthetic` then proxy.supernet=runs/supernet/exp/best.pt"
            )
        if not Path(p.supernet).is_file():
            raise ConfigError(f"proxy.supernet={p.supernet}: no such file (a `nas supernet train` run's best.pt)")
        if p.train_score != "mAP50_95" or p.supernet_bn_images < 0:
            raise ConfigError(
                f"proxy=supernet scores mAP50_95 after re-estimating BatchNorm on supernet_bn_images >= 0 images; "
                f"got train_score={p.train_score}, supernet_bn_images={p.supernet_bn_images}"
            )
    if p.inherit_bn_images and ("inherit" not in names or p.train_epochs != 0 or p.inherit_bn_images < 0):
        raise ConfigError(
            f"proxy.inherit_bn_images={p.inherit_bn_images}: BatchNorm re-estimation applies to proxy=inherit with "
            "proxy.train_epochs=0 (fine-tuning re-estimates the statistics itself); a positive image count"
        )


def rerank_proxy(cfg: SearchConfig) -> ProxyConfig:
    """The costly proxy of the two-stage selection (`rerank.*`) as a training proxy's ProxyConfig, checked, with
    errors naming the `rerank.` fields; its values share the search's proxy cache."""
    r = cfg.rerank
    if r.k < 1:
        raise ConfigError(f"rerank.k={r.k}: the number of candidates per tier to re-rank, >= 1 (0 turns it off)")
    if r.proxy not in TRAINED[:2]:
        raise ConfigError(f"rerank.proxy={r.proxy!r}; choose one of {', '.join(TRAINED[:2])} (a training proxy)")
    training = {f.name: getattr(r, f.name) for f in dataclasses.fields(TrainingProxyConfig)}
    if not (r.proxy == "inherit" and r.train_epochs == 0):
        training["inherit_bn_images"] = 0  # BatchNorm re-estimation applies to inherited weights as they are only
    p = ProxyConfig(
        name="rerank", proxies=[r.proxy], combine="raw", seed=cfg.proxy.seed, cache_dir=cfg.proxy.cache_dir, **training
    )
    check_proxy_config(p, "rerank")  # the same checks as proxy=inherit / short_train, naming the rerank keys
    return p
