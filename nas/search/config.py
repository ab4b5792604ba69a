"""Structured configuration of a search: plain dataclasses (the library's input) that are also the
Hydra schemas in the ConfigStore, so that a typo in `proxy.inpt_hw=...` fails when the config is composed.

Each group checks its own values in `__post_init__` (what is allowed is answered here, with the user's key in
the error), whether built by Hydra, `from_dict` or in Python. Library functions take these dataclasses; the Hydra
entry point converts its DictConfig with `OmegaConf.to_object` at the edge. Nothing here imports Hydra
(`register_configs` does, when called).
`group_option` reads a group's YAML (`proxy=flops`) the way Hydra composes it, for callers without Hydra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nas.errors import ConfigError
from nas.options import from_dict
from nas.options import replace as replace

T = TypeVar("T")
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
STRATEGIES = ("nsga2", "tpe", "random", "gp")  # samplers: nas.search.strategies.make_sampler
STORAGE_KINDS = ("sqlite", "postgres", "journal", "memory")  # nas.search.storage.make_storage
LOGGERS = ("none", "wandb")  # nas.search.tracking.make_tracker
LOGGER_MODES = ("offline", "online", "disabled")
TIER_STARTS = ("stratified", "none")
# how a directed draw (see nas.search.tiers.target_tier) aims at its tier: mutate a good candidate of the window,
# or only judge the trial's feasibility by the window (the sampler proposes it without knowing the target); none:
# no targets
TIER_TARGETS = ("mutate", "constraint", "none")


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


__all__ = [
    "LOGGERS",
    "STORAGE_KINDS",
    "STRATEGIES",
    "TIER_STARTS",
    "TIER_TARGETS",
    "DataConfig",
    "LoggerConfig",
    "ProxyConfig",
    "RerankConfig",
    "SearchConfig",
    "SpaceConfig",
    "StorageConfig",
    "StrategyConfig",
    "TrainingProxyConfig",
    "group_option",
    "group_options",
    "register_configs",
]


@dataclass
class SpaceConfig:
    """The search space: a shipped space name (`yolo_nas`) or the path of a space YAML."""

    name: str = "???"


@dataclass
class TrainingProxyConfig:
    """The training proxies' settings, the same keys in `proxy.*` and `rerank.*` (nas.proxy.train: a few epochs on
    train_data from nas.proxy.train.PROXY, the trainer's preset). Checked, with the user's key in the error, by
    nas.search.proxies (`train_options`) through the trainer's own TrainOptions checks."""

    # epochs of training from scratch (short_train) or of fine-tuning (inherit; 0: evaluated as inherited)
    train_epochs: int = 2
    train_imgsz: int = 160  # the training and val size (TrainOptions.imgsz)
    train_data: str = "synthetic"  # a nas.data dataset: trained on its train split, scored on its val split
    train_score: str = "tse"  # tse: minus the mean training loss; mAP50_95 on the val split; loss: the last epoch's
    inherit_from: str | None = None  # `inherit`: a checkpoint trained on train_data (e.g. a trained L's last.pt)
    # `inherit` with train_epochs=0: re-estimate BatchNorm statistics on this many train images before scoring
    # (sliced weights keep the parent's statistics and score near 0 without it); 0: as inherited
    inherit_bn_images: int = 0


@dataclass
class ProxyConfig(TrainingProxyConfig):
    """The accuracy-proxy objective (`proxy_score`): zero-cost proxies combined against a reference population, or
    one training proxy's own value (`proxy=short_train`, `proxy=inherit`).

    `name` is the preset it came from (an option of the `proxy` group: zero_cost, flops, params, vote); the
    score depends on the other fields only."""

    name: str = "zero_cost"
    proxies: list[str] = field(default_factory=lambda: ["synflow"])  # nas.proxy.zero_cost.DEFAULT_PROXIES (a test)
    combine: str = "zscore"  # zscore | rank | raw (one proxy's own value; see nas.proxy.zero_cost.combine)
    imgsz: int = 96  # square proxy batch resolution in pixels (multiple of 32)
    batch_size: int = 4
    batch_source: str = "synthetic"  # synthetic: first images of `data` (nas.data); random: seeded noise + boxes
    seed: int = 0  # weight init and random batch; part of the objective, not of the search seed
    n_reference: int = 10  # seeded random architectures added to the space's references to normalize the score
    cache_dir: str | None = None  # proxy values cached by arch digest; None: $NAS_CACHE_DIR or ~/.cache/...
    # The training proxies (`short_train`, `inherit` in `proxies`): the train_* fields of TrainingProxyConfig
    # `supernet` (proxy=supernet): a trained supernet checkpoint (`nas supernet train`); each candidate is its
    # extracted sub-network, BatchNorm re-estimated on supernet_bn_images train images, scored by mAP50_95 on
    # train_data's val split at train_imgsz; int8_drop / max_int8_drop then use the candidate's measured INT8 drop
    supernet: str | None = None
    supernet_bn_images: int = 64


@dataclass
class RerankConfig(TrainingProxyConfig):
    """Two stages: the search's proxy pre-filters, a costlier one picks. Per tier, the `k` best candidates by
    `proxy_score` under the tier's budget are scored by a training proxy (TrainingProxyConfig's fields) and the best
    of them is selected. k=0: off. The default ranker is the one with the lowest two-stage regret in
    experiments/proxy_correlation (results.json `rerank_choice`, checked by tests/proxy): one epoch of training
    from scratch, scored by its training speed (tse). `proxy=inherit` takes weights from `inherit_from`; with
    train_epochs=0 its BatchNorm statistics are re-estimated on `inherit_bn_images` images (docs/search.md)."""

    k: int = 0
    proxy: str = "short_train"  # short_train | inherit
    train_epochs: int = 1  # the defaults that differ from proxy.*'s
    inherit_bn_images: int = 64


@dataclass
class StrategyConfig:
    """The Optuna sampler. Fields not used by the chosen sampler are ignored."""

    name: str = "nsga2"  # nsga2 | tpe | random | gp
    population_size: int = 16  # nsga2
    crossover_prob: float = 0.9  # nsga2
    mutation_prob: float | None = None  # nsga2 (None: 1 / #dimensions)
    n_startup_trials: int = 10  # tpe, gp
    multivariate: bool = True  # tpe

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.name!r}; available strategies: {', '.join(STRATEGIES)}")
        if self.name == "nsga2" and self.population_size < 2:
            raise ConfigError(f"strategy.population_size={self.population_size}: NSGA-II needs at least 2")


@dataclass
class DataConfig:
    """Images for the proxy batch when `proxy.batch_source=synthetic` (a nas.data dataset name or path)."""

    name: str = "synthetic"
    split: str = "val"


@dataclass
class StorageConfig:
    """Where the Optuna study lives; resuming means pointing at the same storage + study name."""

    kind: str = "sqlite"  # sqlite | postgres | journal | memory
    url: str | None = None  # sqlite/postgres URL; default sqlite:///<out_dir>/study.db, postgres: $url_env
    path: str | None = None  # journal file; default <out_dir>/study.journal
    url_env: str = "NAS_STORAGE_URL"
    # RDB storages: a worker records a heartbeat every interval; a trial without one for grace_period_s is
    # failed and retried (a dead worker on this host is noticed at once, from its pid)
    heartbeat_interval_s: int | None = 10
    grace_period_s: int | None = 40
    retry_s: float = 60.0  # how long a worker retries a lost database connection before it stops

    def __post_init__(self) -> None:
        if self.kind not in STORAGE_KINDS:
            raise ConfigError(f"unknown storage {self.kind!r}; available storages: {', '.join(STORAGE_KINDS)}")
        if self.retry_s < 0:
            raise ConfigError(f"storage.retry_s={self.retry_s}: must be >= 0 (seconds to retry a lost connection)")
        hb, grace = self.heartbeat_interval_s, self.grace_period_s
        if hb is not None and hb < 1:
            raise ConfigError(f"storage.heartbeat_interval_s={hb}: must be >= 1 or null (off)")
        if hb and (grace is None or grace <= hb):
            raise ConfigError(
                f"storage.grace_period_s={grace}: must be larger than storage.heartbeat_interval_s={hb} (a trial is "
                "declared dead after this many seconds without a heartbeat)"
            )


@dataclass
class LoggerConfig:
    """Experiment tracking: `none` or `wandb` (offline by default: never prompts, never needs network)."""

    name: str = "none"  # none | wandb
    project: str = "yolo-nas-search"
    entity: str | None = None
    mode: str = "offline"  # offline | online | disabled
    group: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.name not in LOGGERS:
            raise ConfigError(f"unknown logger {self.name!r}; available loggers: {', '.join(LOGGERS)}")
        if self.mode not in LOGGER_MODES:
            raise ConfigError(f"logger.mode={self.mode!r}; choose offline, online or disabled")


@dataclass
class SearchConfig:
    """A whole search. `tiers` maps an output name to a budget on the cost objective; a None budget is the
    cost of the space's reference of that name (e.g. the released yolo_nas_s)."""

    space: SpaceConfig = field(default_factory=SpaceConfig)
    hardware: Any = None  # a nas.latency hardware name or its composed YAML (needed by `latency_ms`)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    name: str | None = None  # study name (and Hydra run-dir name); default <space>-<strategy>-seed<seed>
    # None: [proxy_score, latency_ms] with a hardware, else [proxy_score, flops_g]
    objectives: list[str] | None = None
    cost: str | None = None  # objective the tier budgets apply to; default: the first minimized objective
    n_trials: int = 60  # finished trials in the study (a resumed study only runs the missing ones)
    timeout_s: float | None = None
    seed: int = 0
    tiers: dict[str, float | None] | None = None  # None: one tier per reference of the space
    max_cost: float | None = None  # constraint cost <= max_cost; None: the largest tier budget
    constrain: bool = True  # pass the cost budget to the sampler as an Optuna constraint
    # constraint int8_drop <= max_int8_drop (estimated mAP50-95 points lost by INT8, nas.quant.estimate), passed to
    # the sampler like the cost budget and required of the selected tiers; None: no INT8 constraint
    max_int8_drop: float | None = None
    int8_drop_table: str | None = None  # measured per-block drops behind int8_drop; None: nas/quant/block_drop.json
    enqueue_references: bool = True  # the space's references (released S/M/L) are the first trials
    # emit a tier's pick only where the committed ground truth shows it beats the released layout; else the released
    # layout, with the pick beside it as <tier>.candidate.yaml (nas.search.evidence). false: emit the pick
    evidence_gate: bool = True
    # stratified: after the references, the first population has an equal share in each tier window
    # (nas.search.tiers), so every tier gets candidates; none: the strategy's own start (uniform draws)
    tier_start: str = "stratified"
    tier_start_trials: int | None = None  # None: the strategy's first population less the references
    # after the start, one sampled trial in `tier_target_every` aims at a tier (round-robin, smallest first;
    # nas.search.tiers.target_tier): mutate: its parameters mutate a best candidate of that tier's window;
    # constraint: the strategy draws it, its Optuna constraint is the window; none: every draw is the strategy's
    tier_target: str = "mutate"
    tier_target_every: int = 2
    progress: bool = True
    # torch CPU threads during the search (None: torch's default). Proxy batches are small: one thread loses
    # little on a quiet machine and is many times faster than several on a busy one. Restored afterwards.
    threads: int | None = 1
    candidate: str | None = None  # sweeper jobs: evaluate this ArchConfig YAML and return its objectives

    def __post_init__(self) -> None:
        """The top-level keys' checks; each group checks its own (objectives, tiers and the proxy depend on the
        space and hardware, and are checked by nas.search.objectives and nas.search.study)."""
        if self.n_trials < 0:
            raise ConfigError(f"n_trials={self.n_trials}: must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads={self.threads}: must be >= 1 (or null for torch's default)")
        if self.max_int8_drop is not None and not (math.isfinite(self.max_int8_drop) and self.max_int8_drop >= 0):
            raise ConfigError(f"max_int8_drop={self.max_int8_drop}: must be a non-negative number of mAP points")
        if self.constrain and self.max_cost is not None and not (math.isfinite(self.max_cost) and self.max_cost > 0):
            raise ConfigError(
                f"max_cost={self.max_cost}: must be a positive {self.cost or 'cost (of the first minimized objective)'}"
            )
        if self.tier_start not in TIER_STARTS:
            raise ConfigError(f"tier_start={self.tier_start!r}; choose one of {', '.join(TIER_STARTS)}")
        if self.tier_target not in TIER_TARGETS:
            raise ConfigError(f"tier_target={self.tier_target!r}; choose one of {', '.join(TIER_TARGETS)}")
        k = self.tier_target_every
        if not _whole(k) or k < 1:
            raise ConfigError(
                f"tier_target_every={k!r}: a whole number >= 1 (1: every sampled trial aims at a tier; 3: one in three)"
            )
        n = self.tier_start_trials
        if n is not None and (not _whole(n) or n < 0):
            raise ConfigError(
                f"tier_start_trials={n!r}: a number of trials >= 0, or null for the strategy's first population "
                "less the references"
            )

    @property
    def study_name(self) -> str:
        return self.name or f"{_stem(self.space.name)}-{self.strategy.name}-seed{self.seed}"


def _stem(name: str) -> str:
    return Path(name).stem if name.endswith((".yaml", ".yml")) else name


def group_options(group: str) -> list[str]:
    """The options of a config group (`nas/conf/<group>/*.yaml`)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _group_values(group: str, name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A group option's values with its same-group `defaults` merged first (where `_self_` is), as Hydra does."""
    import yaml

    path = CONF_DIR / group / f"{name}.yaml"
    if name not in group_options(group) or name in seen:
        raise ConfigError(f"unknown {group} {name!r}; available: {', '.join(group_options(group))}")
    data = yaml.safe_load(path.read_text()) or {}
    defaults = data.pop("defaults", None) or ["_self_"]
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    merged: dict[str, Any] = {}
    for entry in defaults:
        if entry == "_self_":
            merged.update(data)
        elif isinstance(entry, str):
            merged.update(_group_values(group, entry, (*seen, name)))
        else:
            raise ConfigError(f"{path}: defaults entry {entry!r}: only options of the same group are supported here")
    return merged


def group_option(group: str, name: str, cls: type[T]) -> T:
    """Option `name` of config group `group` as dataclass `cls`, e.g. `group_option("proxy", "flops", ProxyConfig)`:
    what `group=name` composes on the command line, for notebooks and tests without Hydra."""
    return from_dict(cls, _group_values(group, name), source=str(CONF_DIR / group / f"{name}.yaml"))


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore (called by the Hydra entry point and the sweeper plugin)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    # ${nas_stem:path/to/space.yaml} -> space (study and run-dir names of a space given by path)
    OmegaConf.register_new_resolver("nas_stem", _stem, replace=True)
    cs = ConfigStore.instance()
    # The groups' YAML files merge into the typed fields of this node, so each group is checked too.
    cs.store(name="search_schema", node=SearchConfig)
