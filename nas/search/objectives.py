"""The objectives of a search and their evaluation for one architecture, cached on disk by arch digest.

Objectives: `proxy_score` (maximize; zero-cost proxies combined against a fixed reference population),
`latency_ms` (minimize; nas.latency's predictor on the selected hardware), `flops_g` (minimize; GFLOPs =
2 x multiply-adds of the deployed network at the cost resolution) and `params_m` (minimize). The three
costs are counted from the `ArchConfig` (`nas.latency.counting`, the numbers `nas info` prints): no
model is built for them; only the proxies that need one build it.
Quantization-aware: `int8_latency_ms` (minimize; the predictor of the `cpu_ort_int8` target, the network
quantized by nas.quant) and `int8_drop` (minimize; estimated mAP50-95 points lost by INT8 post-training
quantization, `nas.quant.estimate`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError, SpaceError
from nas.io import write_text_atomic
from nas.latency import arch_cost, load_hardware, load_predictor
from nas.proxy import zero_cost
from nas.proxy.train import inherit_score, short_train_score
from nas.quant.estimate import int8_drop_estimate, load_block_drop
from nas.search.config import ProxyConfig, RerankConfig, SearchConfig
from nas.search.proxies import TRAINED, check_proxy_config, rerank_proxy, train_options
from nas.space import ArchConfig, SearchSpace
from nas.supernet import score as supernet_score
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
INT8_HARDWARE = "cpu_ort_int8"
log = logging.getLogger("nas.search")
COST_IMGSZ = 640  # resolution of `flops_g` when the hardware does not name one
_MEASURE_KEYS = {"proxies", "digest"}  # a cache value without them is recomputed


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


def default_cache_dir() -> Path:
    """$NAS_CACHE_DIR, else ~/.cache/yolo-nas-search."""
    env = os.environ.get("NAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yolo-nas-search"


class DiskCache:
    """JSON values under a directory, one file per key; writes are atomic, so readers never see half a file."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._warned = False

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The value of `key`, or None when absent or unreadable (a corrupt entry is recomputed, with a warning)."""
        path = self._path(key)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # truncated or garbled JSON, bad encoding, unreadable file
            log.warning("proxy cache entry %s is unreadable (%s): recomputing it", path, e)
            return None

    def put(self, key: str, value: Any) -> None:
        """Store `value`; a cache that cannot be written only costs a recomputation later (warned once)."""
        try:
            write_text_atomic(self._path(key), json.dumps(value, sort_keys=True))
        except OSError as e:
            if not self._warned:
                log.warning("proxy cache %s is not writable (%s): values are not cached", self.root, e)
                self._warned = True


@dataclass(frozen=True)
class Evaluation:
    """All metrics of one architecture (`values` holds every known objective) and the raw proxy values."""

    values: dict[str, float]
    proxies: dict[str, float]
    eval_s: float
    cached: bool

    def objective_values(self, names: tuple[str, ...]) -> list[float]:
        return [self.values[n] for n in names]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _hardware_name(hardware: Any) -> str | None:
    if hardware is None or isinstance(hardware, str):
        return hardware
    if isinstance(hardware, dict) and "name" in hardware:
        return str(hardware["name"])
    raise ConfigError(f"hardware={hardware!r}: expected a hardware name (e.g. cpu_ort) or a mapping with a `name`")


def _parent_key(path: str | None) -> str | None:
    """The inherit parent's identity in the cache key: its path, size and modification time."""
    if path is None:
        return None
    st = Path(path).stat()
    return f"{Path(path).resolve()}:{st.st_size}:{int(st.st_mtime)}"


class Evaluator:
    """Evaluates architectures on the configured objectives; proxy values are cached on disk."""

    def __init__(self, cfg: SearchConfig, space: SearchSpace):
        self.cfg, self.space = cfg, space
        self.hardware = _hardware_name(cfg.hardware)
        self._hardware_spec = cfg.hardware  # a name or the composed hardware YAML (with any overrides)
        default = ["proxy_score", "latency_ms" if self.hardware is not None else "flops_g"]
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
        if "latency_ms" in self.objectives and self.hardware is None:
            raise ConfigError(
                "objective latency_ms needs a hardware: add hardware=cpu_ort (or another nas.latency hardware)"
            )
        self.int8_drop_table = cfg.int8_drop_table
        # int8_drop is computed when it is an objective or a constraint
        self.wants_int8_drop = "int8_drop" in self.objectives or cfg.max_int8_drop is not None
        if self.wants_int8_drop:
            load_block_drop(self.int8_drop_table)  # a bad table fails here, naming the file, not mid-search
        self._predictor: Any = None
        self._int8_predictor: Any = None
        self._hw: Any = None
        self.cost_imgsz = self._hardware_imgsz() if self.hardware is not None else COST_IMGSZ
        cache_root = Path(self.proxy.cache_dir).expanduser() if self.proxy.cache_dir else default_cache_dir()
        self.cache = DiskCache(cache_root / "proxy")
        self._batch: zero_cost.ProxyBatch | None = None
        self._batch_key = ""
        self._reference: list[dict[str, float]] | None = None
        # the two-stage selection's costly proxy (rerank.k > 0), checked now rather than when the search ends
        self.reranker: Evaluator | None = None
        if cfg.rerank.k:
            self.reranker = Evaluator(dataclasses.replace(cfg, proxy=rerank_proxy(cfg), rerank=RerankConfig()), space)

    # ---- identity ----------------------------------------------------------------------------
    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[n] for n in self.objectives]

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
            "dimensions": _hash([[d.path, list(map(str, d.choices))] for d in self.space.dimensions]),
            "objectives": list(self.objectives),
            "cost": self.cost,
            "hardware": self._hardware_spec,
            "proxy": proxy,
            "data": dataclasses.asdict(self.cfg.data) if self.proxy.batch_source == "synthetic" else None,
            "proxy_version": zero_cost.PROXY_VERSION,
        }

    # ---- pieces ------------------------------------------------------------------------------
    @property
    def batch(self) -> zero_cost.ProxyBatch:
        if self._batch is None:
            p = self.proxy
            self._batch = zero_cost.make_batch(p.batch_source, p.imgsz, p.batch_size, p.seed, self.cfg.data.name)
            self._batch_key = self._batch.fingerprint()
        return self._batch

    @property
    def batch_key(self) -> str:
        """Content hash of the proxy batch: part of every cache key."""
        if self._batch is None:
            self._batch = self.batch
        return self._batch_key

    def _measure_key(self, arch: ArchConfig) -> str:
        p = self.proxy
        spec = [arch.digest(), sorted(p.proxies), self.batch_key, p.seed]
        if any(n in TRAINED for n in p.proxies):
            spec.append([p.train_epochs, p.train_imgsz, p.train_data, p.train_score, _parent_key(p.inherit_from)])
            if p.inherit_bn_images:  # appended only when set: the keys of earlier caches stay valid
                spec.append(["bn_images", p.inherit_bn_images])
            if "supernet" in p.proxies:
                spec.append(["supernet", supernet_digest(p.supernet), p.supernet_bn_images])
        return _hash([spec, zero_cost.PROXY_VERSION])

    def _trained(self, name: str, arch: ArchConfig) -> float:
        p = self.proxy
        opts = train_options(p, p.seed)
        if name == "short_train":
            out = short_train_score(arch, opts)
        elif name == "supernet":
            out = supernet_score(
                arch, p.supernet, data=p.train_data, imgsz=p.train_imgsz, bn_images=p.supernet_bn_images, seed=p.seed
            )
        else:
            out = inherit_score(arch, p.inherit_from, opts, bn_images=p.inherit_bn_images)
        v = out[p.train_score]
        return float(v) if v is not None else float("-inf")

    def measure(self, arch: ArchConfig) -> tuple[dict[str, Any], bool]:
        """Raw proxy values of `arch` (from the cache when present)."""
        key = self._measure_key(arch)
        hit = self.cache.get(key)
        if isinstance(hit, dict) and hit.keys() >= _MEASURE_KEYS and hit["digest"] == arch.digest():
            return hit, True
        if hit is not None:
            log.warning("proxy cache entry for %s is incomplete: recomputing it", arch.name)
        names = self.proxy.proxies
        zc = [n for n in names if n not in TRAINED]
        raw = zero_cost.compute_proxies(arch, self.batch, zc, self.proxy.seed) if zc else {}
        raw.update({n: self._trained(n, arch) for n in names if n in TRAINED})
        proxies = {n: raw[n] for n in names}
        value = {"proxies": proxies, "digest": arch.digest()}
        self.cache.put(key, value)
        return value, False

    def reference_archs(self) -> list[ArchConfig]:
        """The space's references plus `n_reference` random points seeded by the proxy seed."""
        rng = np.random.default_rng(self.proxy.seed)
        randoms = [self.space.random(rng) for _ in range(self.proxy.n_reference)]
        return [*self.space.references.values(), *randoms]

    def reference(self) -> list[dict[str, float]]:
        """Raw proxy values of the reference population (computed once, then cached); none for combine=raw."""
        if self._reference is None and self.proxy.combine == "raw":
            self._reference = []
        if self._reference is None:
            archs = self.reference_archs()
            todo = sum(self.cache.get(self._measure_key(a)) is None for a in archs)
            bar = None
            if todo:
                log.info(
                    "proxy reference population: evaluating %d of %d architectures (cached afterwards)",
                    todo,
                    len(archs),
                )
                if self.cfg.progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=len(archs), desc="reference population", unit="arch")
            values = []
            for a in archs:
                values.append(self.measure(a)[0]["proxies"])
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            self._reference = values
        return self._reference

    def set_reference(self, values: list[dict[str, float]]) -> None:
        """Use a reference population computed elsewhere (by the study's first worker)."""
        self._reference = [dict(v) for v in values]

    def hardware_target(self) -> Any:
        """nas.latency's Hardware of the configured target."""
        if self._hw is None:
            self._hw = load_hardware(self._hardware_spec)
        return self._hw

    def _hardware_imgsz(self) -> int:
        h, w = self.hardware_target().input_hw
        if h != w:
            raise ConfigError(f"hardware {self.hardware!r}: input_hw {h}x{w}; flops_g assumes a square input")
        return int(h)

    def latency_ms(self, arch: ArchConfig) -> float:
        if self._predictor is None:
            self._predictor = load_predictor(self.hardware_target())
        return float(self._predictor.predict(arch))

    def int8_latency_ms(self, arch: ArchConfig) -> float:
        if self._int8_predictor is None:
            self._int8_predictor = load_predictor(load_hardware(INT8_HARDWARE))
        return float(self._int8_predictor.predict(arch))

    # ---- evaluation --------------------------------------------------------------------------
    def costs(self, arch: ArchConfig) -> dict[str, float]:
        """The cost metrics of `arch` from its ArchConfig alone (no model): flops_g, params_m, latency_ms."""
        cost = arch_cost(arch, self.cost_imgsz)
        values = {"flops_g": cost.gflops, "params_m": cost.params_m}
        if self.hardware is not None:
            values["latency_ms"] = self.latency_ms(arch)
        if "int8_latency_ms" in self.objectives:
            values["int8_latency_ms"] = self.int8_latency_ms(arch)
        return values

    def rerank_score(self, arch: ArchConfig) -> float:
        """The two-stage selection's costly proxy value of `arch` (cached like every proxy value)."""
        if self.reranker is None:
            raise ConfigError("rerank_score needs rerank.k >= 1 and its proxy settings")
        m, _ = self.reranker.measure(arch)
        return float(m["proxies"][self.reranker.proxy.proxies[0]])

    def int8_drop(self, arch: ArchConfig) -> float:
        """mAP50-95 points lost by INT8: measured on the candidate's supernet sub-network when proxy.supernet is
        given (nas.supernet.score, cached by architecture and supernet digest), else the block-table estimate."""
        p = self.proxy
        if not p.supernet:
            return int8_drop_estimate(arch, self.int8_drop_table)
        spec = [arch.digest(), "int8_drop", supernet_digest(p.supernet), p.train_data, p.train_imgsz]
        key = _hash([spec, p.supernet_bn_images, p.seed])
        hit = self.cache.get(key)
        if isinstance(hit, dict) and hit.get("digest") == arch.digest() and "int8_drop" in hit:
            return float(hit["int8_drop"])
        out = supernet_score(
            arch, p.supernet, data=p.train_data, imgsz=p.train_imgsz, bn_images=p.supernet_bn_images, int8=True,
            seed=p.seed,
        )  # fmt: skip
        self.cache.put(key, {"digest": arch.digest(), "int8_drop": out["int8_drop"], "mAP50_95": out["mAP50_95"]})
        return float(out["int8_drop"])

    def evaluate(self, arch: ArchConfig) -> Evaluation:
        """Every metric of `arch`; objectives absent from the config are still reported when cheap."""
        t0 = time.perf_counter()
        m, cached = self.measure(arch)
        score = zero_cost.combine(m["proxies"], self.reference(), self.proxy.proxies, self.proxy.combine)
        values = {"proxy_score": score, **self.costs(arch)}
        if self.wants_int8_drop:
            values["int8_drop"] = self.int8_drop(arch)
        return Evaluation(values, dict(m["proxies"]), time.perf_counter() - t0, cached)
