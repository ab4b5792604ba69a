from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
import torch

from nas.errors import ConfigError
from nas.latency.counting import count_macs, count_params
from nas.latency.modules import deployed_model, unit_module
from nas.latency.units import check_input_hw, decompose
from nas.models import build, fuse
from nas.space import load_arch, load_space

from .conftest import tiny_arch

RELEASED_PARAMS = {"yolo_nas_s": 19_053_888, "yolo_nas_m": 51_182_658, "yolo_nas_l": 66_976_392}


@pytest.fixture(scope="module")
def space():
    return load_space("yolo_nas")


@pytest.mark.parametrize("name", sorted(RELEASED_PARAMS))
def test_released_parameter_counts(name):
    arch = load_arch(name)
    assert count_params(arch) == RELEASED_PARAMS[name]  # incl. the unused rbr_reparam placeholders
    with torch.device("meta"):  # shapes only: no weight initialisation
        model = fuse(build(arch))
    assert count_params(arch, fused=True) == sum(p.numel() for p in model.parameters())


def test_parameter_counts_of_random_architectures_match_the_built_model(space):
    rng = np.random.default_rng(3)
    for _ in range(4):
        arch = space.random(rng)
        with torch.device("meta"):
            model = build(arch)
            assert count_params(arch) == sum(p.numel() for p in model.parameters())
            fuse(model)
        assert count_params(arch, fused=True) == sum(p.numel() for p in model.parameters())


def _param_shapes(module: torch.nn.Module) -> Counter:
    return Counter(tuple(p.shape) for p in module.parameters())


@pytest.mark.parametrize("which", ["yolo_nas_s", "tiny", "random"])
def test_units_cover_every_parameter_of_the_deployed_model_exactly_once(space, which):
    arch = {"tiny": tiny_arch(), "random": space.random(np.random.default_rng(7))}.get(which) or load_arch(which)
    model, _ = deployed_model(arch, (64, 64))
    from_units = Counter()
    for u in decompose(arch, 64):
        module, _ = unit_module(u)
        from_units += _param_shapes(module)
        assert u.params == sum(p.numel() for p in module.parameters()), u.key
    assert from_units == _param_shapes(model)


def test_flops_agree_with_fvcore_on_the_deployed_model(space):
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    rng = np.random.default_rng(11)
    cases = [(load_arch("yolo_nas_s"), (64, 64)), (tiny_arch(), (96, 64))]
    cases.append((space.random(rng), (64, 96)))
    for arch, hw in cases:
        model, x = deployed_model(arch, hw)
        fca = FlopCountAnalysis(model, x)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        assert count_macs(arch, hw) == fca.total(), arch.name
    s = load_arch("yolo_nas_s")
    assert count_macs(s, 640) == 100 * count_macs(s, 64)  # every conv scales with the area


def test_unit_keys_are_readable_and_depend_only_on_their_own_hyperparameters():
    s = load_arch("yolo_nas_s")
    units = decompose(s, 640)
    assert units[0].key == "conv(cin=3,cout=48,k=3,s=2,g=1,act=1)@640x640"
    assert units[-1].key == "decode(nc=80,reg_max=16)@640x640"
    kinds = Counter(u.kind for u in units)
    assert kinds["bottlenecks"] == 8 and kinds["spp"] == 1 and kinds["upsample"] == 2
    # the block type does not change the deployed network: every block fuses into one 3x3 conv
    stages = tuple(st.__class__(**{**st.to_dict(), "block": "repvgg"}) for st in s.backbone.stages)
    repvgg = s.replace(backbone=s.backbone.__class__(s.backbone.stem, stages, s.backbone.context))
    assert [u.key for u in decompose(repvgg, 640)] == [u.key for u in units]


def test_input_size_checks():
    assert check_input_hw(320) == (320, 320)
    assert check_input_hw([640, 384]) == (640, 384)
    for bad in (100, [640], (640, 0), "640"):
        with pytest.raises(ConfigError, match="multiples of 32"):
            check_input_hw(bad)


def test_count_predictors_vectorized_equal_scalar(space):
    from nas.latency.counting import CountPredictor
    from nas.latency.spacemap import choice_indices

    rng = np.random.default_rng(5)
    archs = [space.random(rng) for _ in range(20)] + list(space.references.values())
    idx = choice_indices(space, archs)
    for what, fn in (
        ("flops", lambda a: 2 * count_macs(a, 320) / 1e9),
        ("params", lambda a: count_params(a, True) / 1e6),
    ):
        pred = CountPredictor(what, 320, space)
        expected = np.array([fn(a) for a in archs])
        np.testing.assert_allclose(pred.predict_many(idx), expected, rtol=1e-12)
        np.testing.assert_allclose(pred.predict_many(archs), expected, rtol=1e-12)
        assert pred.predict(archs[-3]) == pytest.approx(expected[-3])
    with pytest.raises(ValueError, match="flops"):
        CountPredictor("latency")
