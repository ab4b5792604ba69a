"""The `int8_drop` objective: mAP50-95 points lost by INT8 post-training quantization, measured on the candidate's
supernet sub-network when `proxy.supernet` is given (`nas.supernet.score`), else estimated from a table of per-block
drops (`nas.quant.estimate`)."""

from __future__ import annotations

from nas.quant.estimate import int8_drop_estimate, load_block_drop
from nas.search.config import ProxyConfig
from nas.search.scoring import DiskCache, json_digest
from nas.space import ArchConfig
from nas.supernet import score as supernet_score
from nas.supernet import supernet_digest

__all__ = ["Int8Drop"]


class Int8Drop:
    """`int8_drop` of architectures; a measured drop is cached in the proxy cache by architecture and supernet.

    Args:
        table: the block-drop table of the estimate (`int8_drop_table`); loaded now, so a bad table fails at start.
        proxy: the search's proxy settings (`supernet`, `train_data`, `train_imgsz`, `supernet_bn_images`, `seed`).
    """

    def __init__(self, table: str | None, proxy: ProxyConfig, cache: DiskCache):
        self.table, self.proxy, self.cache = table, proxy, cache
        load_block_drop(table)  # a bad table fails here, naming the file, not mid-search

    def __call__(self, arch: ArchConfig) -> float:
        """mAP50-95 points lost by INT8 (measured with proxy.supernet, else the block-table estimate)."""
        p = self.proxy
        if not p.supernet:
            return int8_drop_estimate(arch, self.table)
        spec = [arch.digest(), "int8_drop", supernet_digest(p.supernet), p.train_data, p.train_imgsz]
        key = json_digest([spec, p.supernet_bn_images, p.seed])
        hit = self.cache.get(key)
        if isinstance(hit, dict) and hit.get("digest") == arch.digest() and "int8_drop" in hit:
            return float(hit["int8_drop"])
        out = supernet_score(
            arch, p.supernet, data=p.train_data, imgsz=p.train_imgsz, bn_images=p.supernet_bn_images, int8=True,
            seed=p.seed,
        )  # fmt: skip
        self.cache.put(key, {"digest": arch.digest(), "int8_drop": out["int8_drop"], "mAP50_95": out["mAP50_95"]})
        return float(out["int8_drop"])
