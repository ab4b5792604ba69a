"""The proxy part of a search's objectives: the raw proxy values of an architecture, cached on disk by arch digest,
and the reference population that `proxy_score` is combined against (`nas.proxy.zero_cost.combine`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from nas.io import write_text_atomic
from nas.proxy import zero_cost
from nas.proxy.train import inherit_score, short_train_score
from nas.search.config import ProxyConfig
from nas.search.proxies import TRAINED, train_options
from nas.space import ArchConfig, SearchSpace
from nas.supernet import score as supernet_score
from nas.supernet import supernet_digest

__all__ = ["DiskCache", "ProxyScorer", "default_cache_dir", "json_digest"]

log = logging.getLogger("nas.search")
_MEASURE_KEYS = {"proxies", "digest"}  # a cache value without them is recomputed


def json_digest(obj: Any) -> str:
    """A short content hash of `obj`'s JSON form: the key of a cached value, a part of a study's fingerprint."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


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


def _parent_key(path: str | None) -> str | None:
    """The inherit parent's identity in the cache key: its path, size and modification time."""
    if path is None:
        return None
    st = Path(path).stat()
    return f"{Path(path).resolve()}:{st.st_size}:{int(st.st_mtime)}"


class ProxyScorer:
    """The proxy values of architectures under one (checked) ProxyConfig, cached in `<cache_dir>/proxy`.

    Args:
        data: the nas.data dataset of the proxy batch when `proxy.batch_source=synthetic`.
        progress: show a progress bar while the reference population is computed.
    """

    def __init__(self, proxy: ProxyConfig, space: SearchSpace, data: str, progress: bool = False):
        self.proxy, self.space, self.data, self.progress = proxy, space, data, progress
        cache_root = Path(proxy.cache_dir).expanduser() if proxy.cache_dir else default_cache_dir()
        self.cache = DiskCache(cache_root / "proxy")
        self._batch: zero_cost.ProxyBatch | None = None
        self._batch_key = ""
        self._reference: list[dict[str, float]] | None = None

    @property
    def batch(self) -> zero_cost.ProxyBatch:
        if self._batch is None:
            p = self.proxy
            self._batch = zero_cost.make_batch(p.batch_source, p.imgsz, p.batch_size, p.seed, self.data)
            self._batch_key = self._batch.fingerprint()
        return self._batch

    @property
    def batch_key(self) -> str:
        """Content hash of the proxy batch: part of every cache key."""
        if self._batch is None:
            self._batch = self.batch
        return self._batch_key

    def measure_key(self, arch: ArchConfig) -> str:
        """The cache key of `arch`'s proxy values: what they depend on (settings, batch, proxy version)."""
        p = self.proxy
        spec = [arch.digest(), sorted(p.proxies), self.batch_key, p.seed]
        if any(n in TRAINED for n in p.proxies):
            spec.append([p.train_epochs, p.train_imgsz, p.train_data, p.train_score, _parent_key(p.inherit_from)])
            if p.inherit_bn_images:  # appended only when set: the keys of earlier caches stay valid
                spec.append(["bn_images", p.inherit_bn_images])
            if "supernet" in p.proxies:
                spec.append(["supernet", supernet_digest(p.supernet), p.supernet_bn_images])
        return json_digest([spec, zero_cost.PROXY_VERSION])

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
        key = self.measure_key(arch)
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
            todo = sum(self.cache.get(self.measure_key(a)) is None for a in archs)
            bar = None
            if todo:
                log.info(
                    "proxy reference population: evaluating %d of %d architectures (cached afterwards)",
                    todo,
                    len(archs),
                )
                if self.progress:
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

    def score(self, proxies: dict[str, float]) -> float:
        """`proxy_score`: raw proxy values combined against the reference population (`proxy.combine`)."""
        return zero_cost.combine(proxies, self.reference(), self.proxy.proxies, self.proxy.combine)
