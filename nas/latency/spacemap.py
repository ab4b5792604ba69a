"""Every slot of the network tabulated over a search space: which dimensions it reads, and its units for
every combination of their choices. This is what makes unit enumeration exact and prediction vectorized.

Dependencies are recorded, not declared: a slot is evaluated through an accessor that notes each path
it reads; the product of the choices of those paths is evaluated again (a branch may read more), until
the set of read dimensions stops growing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.errors import SpaceError
from nas.latency.units import SLOTS, Unit, check_input_hw, flat_values
from nas.space.schema import ArchConfig
from nas.space.space import SearchSpace

__all__ = ["SlotSum", "SlotTable", "SpaceMap", "choice_indices"]

_MAX_SLOT_COMBOS = 1_000_000  # guards against a slot that reads half the space (a decomposition bug)


@dataclass(frozen=True)
class SlotTable:
    """One slot over the space: the dimension indices it reads and its units per combination (C order)."""

    name: str
    dims: tuple[int, ...]
    shape: tuple[int, ...]
    units: tuple[tuple[Unit, ...], ...]

    def flat_index(self, idx: np.ndarray) -> np.ndarray:
        """Row of `units` for each row of a choice-index matrix [N, D]."""
        if not self.dims:
            return np.zeros(len(idx), dtype=np.intp)
        return np.ravel_multi_index(tuple(idx[:, d] for d in self.dims), self.shape)


class SpaceMap:
    """All slots of the YOLO-NAS topology tabulated over a search space at one input size."""

    def __init__(self, space: SearchSpace, input_hw: Any):
        self.space, self.input_hw = space, check_input_hw(input_hw)
        self._base = flat_values(space.base)
        self._dim_of = {d.path: i for i, d in enumerate(space.dimensions)}
        self.slots = tuple(self._tabulate(name) for name in SLOTS)

    def _evaluate(self, name: str, assignment: dict[str, Any], read: set[str]) -> tuple[Unit, ...]:
        values = self._base | assignment

        def v(path: str) -> Any:
            read.add(path)
            return values[path]

        return tuple(SLOTS[name](v, self.input_hw))

    def _tabulate(self, name: str) -> SlotTable:
        dims: list[int] = []
        while True:
            choices = [self.space.dimensions[i].choices for i in dims]
            n = math.prod(len(c) for c in choices)
            if n > _MAX_SLOT_COMBOS:
                raise SpaceError(f"latency slot {name} reads {len(dims)} searched fields ({n:,} combinations)")
            read: set[str] = set()
            units = []
            for combo in itertools.product(*choices):
                assignment = {self.space.dimensions[i].path: c for i, c in zip(dims, combo)}
                units.append(self._evaluate(name, assignment, read))
            more = sorted(self._dim_of[p] for p in read if p in self._dim_of and self._dim_of[p] not in dims)
            if not more:
                shape = tuple(len(c) for c in choices)
                return SlotTable(name, tuple(dims), shape, tuple(units))
            dims = sorted(dims + more)

    def units(self) -> list[Unit]:
        """Every distinct unit the space can produce, in a stable order."""
        seen: dict[str, Unit] = {}
        for slot in self.slots:
            for us in slot.units:
                for u in us:
                    seen.setdefault(u.key, u)
        return [seen[k] for k in sorted(seen)]

    def indices(self, archs: Iterable[ArchConfig]) -> np.ndarray:
        """Choice-index matrix [N, D] of architectures of the space."""
        return choice_indices(self.space, archs)


def choice_indices(space: SearchSpace, archs: Iterable[ArchConfig] | Sequence[ArchConfig]) -> np.ndarray:
    """[N, D] int matrix: row n holds, per dimension, the index of arch n's value among the choices."""
    rows = []
    for a in archs:
        values = space.values_of(a)
        rows.append([d.index(values[d.path]) for d in space.dimensions])
    return np.asarray(rows, dtype=np.intp).reshape(-1, len(space.dimensions))


class SlotSum:
    """Vectorized sum over the slots of `value(slot units)` for a choice-index matrix [N, D].

    Each slot's values are computed once per combination of the choices it reads; slots reading the
    same dimensions are added up in advance. A batch is then one gather and add per distinct group.
    """

    def __init__(self, smap: SpaceMap, value: Callable[[tuple[Unit, ...]], float]):
        self.space = smap.space
        merged: dict[tuple[int, ...], tuple[tuple[int, ...], np.ndarray]] = {}
        for slot in smap.slots:
            contrib = np.array([value(us) if us else 0.0 for us in slot.units], dtype=np.float64)
            strides = tuple(int(s) for s in np.cumprod((1, *slot.shape[::-1]))[-2::-1]) if slot.dims else ()
            if slot.dims in merged:
                contrib = contrib + merged[slot.dims][1]
            merged[slot.dims] = (strides, contrib)
        self._groups = [(dims, strides, contrib) for dims, (strides, contrib) in merged.items()]
        self._sizes = np.array([len(d.choices) for d in self.space.dimensions])

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        dims = self.space.dimensions
        idx = np.asarray(idx)
        if idx.ndim != 2 or idx.shape[1] != len(dims) or idx.dtype.kind not in "iu":
            raise SpaceError(
                f"expected an integer choice-index matrix [N, {len(dims)}] of space {self.space.name!r}, "
                f"got {idx.dtype} {idx.shape}"
            )
        if len(idx) and (idx.min() < 0 or (idx >= self._sizes).any()):
            col = int(np.argmax((idx < 0).any(0) | (idx >= self._sizes).any(0)))
            raise SpaceError(f"choice index out of range for {dims[col].path} (it has {self._sizes[col]} choices)")
        total = np.zeros(len(idx), dtype=np.float64)
        for sdims, strides, contrib in self._groups:
            if not sdims:
                total += contrib[0]
                continue
            flat = idx[:, sdims[0]] * strides[0]
            for d, s in zip(sdims[1:], strides[1:]):
                flat = flat + idx[:, d] * s
            total += contrib[flat]
        return total
