from __future__ import annotations

import numpy as np
import pytest

from nas.latency.spacemap import SpaceMap, choice_indices
from nas.latency.units import decompose
from nas.space import load_space


@pytest.fixture(scope="module")
def smap():
    return SpaceMap(load_space("yolo_nas"), 320)


def _dims(smap, name):
    slot = next(s for s in smap.slots if s.name == name)
    return {smap.space.dimensions[i].path for i in slot.dims}


def test_slots_read_exactly_the_fields_they_depend_on(smap):
    assert _dims(smap, "backbone.stem") == {"backbone.stem.out_channels"}
    assert _dims(smap, "backbone.stages.1.downsample") == {
        "backbone.stages.0.out_channels",
        "backbone.stages.1.out_channels",
    }
    assert _dims(smap, "neck.down.0.csp.in") == {
        "neck.down.0.out_channels",
        "neck.down.0.width_mult",
        "neck.up.1.out_channels",
        "neck.up.1.width_mult",
        "neck.down.0.hidden_channels",
    }
    assert _dims(smap, "heads.decode") == set()
    # block types never matter to the fused network
    assert not any(p.endswith(".block") for s in smap.slots for p in _dims(smap, s.name))


def test_tabulated_slots_reproduce_the_decomposition(smap):
    rng = np.random.default_rng(0)
    archs = [smap.space.random(rng) for _ in range(25)] + list(smap.space.references.values())
    idx = choice_indices(smap.space, archs)
    assert idx.shape == (len(archs), len(smap.space.dimensions))
    for row, arch in zip(idx, archs):
        tabulated = [u.key for s in smap.slots for u in s.units[s.flat_index(row[None])[0]]]
        assert tabulated == [u.key for u in decompose(arch, 320)]


def test_every_unit_of_every_sampled_network_is_enumerated(smap):
    keys = {u.key for u in smap.units()}
    rng = np.random.default_rng(1)
    for _ in range(25):
        assert {u.key for u in decompose(smap.space.random(rng), 320)} <= keys
    assert len(keys) == len(smap.units())
    assert 1000 < len(keys) < 5000  # few enough to time on the target
