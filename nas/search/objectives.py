"""The objectives of a search and their evaluation for one architecture, cached on disk by arch digest.

Objectives: `proxy_score` (maximize; zero-cost proxies combined against a fixed reference population),
`latency_ms` (minimize; nas.latency's predictor on the selected hardware), `flops_g` (minimize; GFLOPs =
2 x multiply-adds of the deployed network at the cost resolution) and `params_m` (minimize). The three
costs are counted from the `ArchConfig` (`nas.latency.counting`, the numbers `nas info` prints): no
model is built for them; only the proxies that need one build it.
Quantization-aware: `int8_latency_ms` (minimize; the predictor of the `cpu_ort_int8` target, the network
quantized by nas.quant) and `int8_drop` (minimize; estimated mAP50-95 points lost by INT8 post-training
quantization, `nas.quant.estimate`).

`Evaluator` checks a search's objectives at start and combines three parts: the proxy values and their reference
population (`nas/search/scoring.py`, cached on disk), the costs (`nas/search/costs.py`) and `int8_drop`
(`nas/search/int8.py`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError, SpaceError
from nas.proxy import zero_cost
from nas.search.config import ProxyConfig, SearchConfig
from nas.search.costs import CostModel, hardware_name
from nas.search.int8 import Int8Drop
from nas.search.proxies import check_proxy_config, rerank_proxy
from nas.search.scoring import DiskCache, ProxyScorer, default_cache_dir, json_digest
from nas.space import ArchConfig, SearchSpace
from nas.supernet import supernet_digest
from nas.supernet.score import load_cached

__all__ = ["OBJECTIVES", "DiskCache", "Evaluation", "Evaluator", "check_objectives", "default_cache_dir"]

OBJECTIVES: dict[str, str] = {
    "proxy_score": "maximize",
    "latency_ms": "minimize",
    "flops_g": "minimize",
    "params_m": "minimize",
    "int8_latency_ms": "minimize",
    "int8_drop": "minimize",
}


def check_objectives(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate the objective list (known names, no duplicates, at least one minimized cost)."""
    names = tuple(names)
    bad = [n for n in names if n not in OBJECTIVES]
    if bad:
        raise ConfigError(f"unknown objective {bad[0]!r}; available objectives: {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError(
            f"objectives={list(names)}: need at least two distinct objectives, e.g. [proxy_score, latency_ms]"
        )
    if not any(OBJECTIVES[n] == "minimize" and n != "int8_drop" for n in names):
        raise ConfigError(
            f"objectives={list(names)}: need a cost to minimize (latency_ms, int8_latency_ms, flops_g or params_m)"
        )
    return names


@dataclass(frozen=True)
class Evaluation:
    """All metrics of one architecture (`values` holds every known objective) and the raw proxy values."""

    values: dict[str, float]
    proxies: dict[str, float]
    eval_s: float
    cached: bool

    def objective_values(self, names: tuple[str, ...]) -> list[float]:
        return [self.values[n] for n in names]


class Evaluator:
    """Evaluates architectures on the configured objectives: checks the configuration at start, then combines its
    parts, the proxy values (`scorer`, cached on disk), the costs (`cost_model`) and `int8_drop` (`int8`)."""

    def __init__(self, cfg: SearchConfig, space: SearchSpace):
        self.cfg, self.space = cfg, space
        hardware = hardware_name(cfg.hardware)
        default = ["proxy_score", "latency_ms" if hardware is not None else "flops_g"]
        self.objectives = check_objectives(cfg.objectives if cfg.objectives is not None else default)
        self.cost = cfg.cost or next(n for n in self.objectives if OBJECTIVES[n] == "minimize")
        if self.cost not in self.objectives or OBJECTIVES[self.cost] != "minimize":
            raise ConfigError(f"cost={self.cost!r} must be one of the minimized objectives {list(self.objectives)}")
        self.proxy: ProxyConfig = cfg.proxy
        check_proxy_config(self.proxy)
        if "supernet" in self.proxy.proxies:  # every candidate must be a sub-network: one line now, not mid-search
            try:
                load_cached(self.proxy.supernet).check_space(space)
            except SpaceError as e:
                raise ConfigError(f"proxy.supernet={self.proxy.supernet}: {e}") from None
        if "latency_ms" in self.objectives and hardware is None:
            raise ConfigError(
                "objective latency_ms needs a hardware: add hardware=cpu_ort (or another nas.latency hardware)"
            )
        self.scorer = ProxyScorer(self.proxy, space, cfg.data.name, progress=cfg.progress)
        # int8_drop is computed when it is an objective or a constraint
        wants_int8_drop = "int8_drop" in self.objectives or cfg.max_int8_drop is not None
        self.int8 = Int8Drop(cfg.int8_drop_table, self.proxy, self.scorer.cache) if wants_int8_drop else None
        self.cost_model = CostModel(cfg.hardware, int8_latency="int8_latency_ms" in self.objectives)
        # the two-stage selection's costly proxy (rerank.k > 0), checked now rather than when the search ends; its
        # values share the search's proxy cache
        self.reranker: ProxyScorer | None = None
        if cfg.rerank.k:
            self.reranker = ProxyScorer(rerank_proxy(cfg), space, cfg.data.name, progress=cfg.progress)

    # ---- identity ----------------------------------------------------------------------------
    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[n] for n in self.objectives]

    @property
    def hardware(self) -> str | None:
        return self.cost_model.hardware

    @property
    def cost_imgsz(self) -> int:
        return self.cost_model.cost_imgsz

    def fingerprint(self) -> dict[str, Any]:
        """What the objective values depend on: a resumed study must have the same fingerprint."""
        proxy = dataclasses.asdict(self.proxy)
        proxy.pop("cache_dir")
        proxy.pop("name")  # a label: the preset's values are what the score depends on
        if proxy.get("supernet"):  # the supernet's content, not its path (a retrained file at the same path)
            proxy["supernet_digest"] = supernet_digest(self.proxy.supernet)
        else:  # fields added with proxy=supernet: the fingerprints of earlier studies stay valid
            proxy.pop("supernet", None)
            proxy.pop("supernet_bn_images", None)
        return {
            "space": self.space.name,
            "dimensions": json_digest([[d.path, list(map(str, d.choices))] for d in self.space.dimensions]),
            "objectives": list(self.objectives),
            "cost": self.cost,
            "hardware": self.cost_model.hardware_spec,
            "proxy": proxy,
            "data": dataclasses.asdict(self.cfg.data) if self.proxy.batch_source == "synthetic" else None,
            "proxy_version": zero_cost.PROXY_VERSION,
        }

    # ---- the parts, as the study and the experiments use them ---------------------------------
    @property
    def cache(self) -> DiskCache:
        """The proxy cache (proxy values and measured INT8 drops)."""
        return self.scorer.cache

    @cache.setter
    def cache(self, cache: DiskCache) -> None:
        self.scorer.cache = cache
        if self.int8 is not None:
            self.int8.cache = cache

    @property
    def batch(self) -> zero_cost.ProxyBatch:
        return self.scorer.batch

    def measure(self, arch: ArchConfig) -> tuple[dict[str, Any], bool]:
        """Raw proxy values of `arch` (from the cache when present)."""
        return self.scorer.measure(arch)

    def reference(self) -> list[dict[str, float]]:
        """Raw proxy values of the reference population (computed once, then cached); none for combine=raw."""
        return self.scorer.reference()

    def set_reference(self, values: list[dict[str, float]]) -> None:
        """Use a reference population computed elsewhere (by the study's first worker)."""
        self.scorer.set_reference(values)

    def latency_ms(self, arch: ArchConfig) -> float:
        return self.cost_model.latency_ms(arch)

    def costs(self, arch: ArchConfig) -> dict[str, float]:
        """The cost metrics of `arch` from its ArchConfig alone (no model): flops_g, params_m, latency_ms."""
        return self.cost_model.costs(arch)

    # ---- evaluation --------------------------------------------------------------------------
    def rerank_score(self, arch: ArchConfig) -> float:
        """The two-stage selection's costly proxy value of `arch` (cached like every proxy value)."""
        if self.reranker is None:
            raise ConfigError("rerank_score needs rerank.k >= 1 and its proxy settings")
        m, _ = self.reranker.measure(arch)
        return float(m["proxies"][self.reranker.proxy.proxies[0]])

    def evaluate(self, arch: ArchConfig) -> Evaluation:
        """Every metric of `arch`; objectives absent from the config are still reported when cheap."""
        t0 = time.perf_counter()
        m, cached = self.measure(arch)
        values = {"proxy_score": self.scorer.score(m["proxies"]), **self.costs(arch)}
        if self.int8 is not None:
            values["int8_drop"] = self.int8(arch)
        return Evaluation(values, dict(m["proxies"]), time.perf_counter() - t0, cached)
