"""The INT8 drop estimate (measured per-block drops, interpolated by the RepVGG share) and the INT8 runtime."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from nas.errors import ConfigError
from nas.quant.estimate import block_counts, built_block_counts, int8_drop_estimate, load_block_drop
from nas.search.objectives import OBJECTIVES, check_objectives
from tests.zoo_helpers import tiny_arch


def _with_blocks(arch, block: str, stages: int = 4):
    bb = arch.backbone
    new = [dataclasses.replace(s, block=block) if i < stages else s for i, s in enumerate(bb.stages)]
    return dataclasses.replace(arch, backbone=dataclasses.replace(bb, stages=tuple(new)))


@pytest.fixture
def drops(tmp_path):
    p = tmp_path / "block_drop.json"
    p.write_text(json.dumps({"drop": {"qarepvgg": 0.2, "repvgg": 2.0}}))
    return str(p)


def test_estimate_interpolates_by_repvgg_share(drops):
    qa = tiny_arch(8)
    rep = _with_blocks(qa, "repvgg")
    n_qa, n_rep = block_counts(qa), block_counts(rep)
    assert n_qa["repvgg"] == 0 and n_rep["repvgg"] > 0 and sum(n_qa.values()) == sum(n_rep.values())
    assert n_rep == built_block_counts(rep) and n_qa == built_block_counts(qa)
    assert int8_drop_estimate(qa, drops) == pytest.approx(0.2)
    share = n_rep["repvgg"] / sum(n_rep.values())
    assert int8_drop_estimate(rep, drops) == pytest.approx(0.2 + share * 1.8)
    half = _with_blocks(qa, "repvgg", stages=2)
    assert 0.2 < int8_drop_estimate(half, drops) < int8_drop_estimate(rep, drops)


def test_block_count_from_the_arch_equals_the_built_network():
    import numpy as np

    from nas.space.space import load_space

    space = load_space("yolo_nas")
    rng = np.random.default_rng(3)
    for arch in [space.random(rng) for _ in range(2)]:
        assert block_counts(arch) == built_block_counts(arch)


def test_missing_or_bad_drop_file_is_named(tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match=r"experiments/int8/run\.py"):
        load_block_drop(str(bad))


def test_objectives_know_int8():
    assert OBJECTIVES["int8_drop"] == "minimize" and OBJECTIVES["int8_latency_ms"] == "minimize"
    assert check_objectives(["proxy_score", "int8_latency_ms", "int8_drop"])
    with pytest.raises(ConfigError, match="need a cost"):
        check_objectives(["proxy_score", "int8_drop"])


def test_int8_runtime_times_a_quantized_unit():
    from nas.latency import load_hardware
    from nas.latency.modules import unit_module
    from nas.latency.runtimes import OrtCPUInt8Runtime, make_runtime
    from nas.latency.spacemap import SpaceMap
    from nas.space.space import load_space

    hw = load_hardware("cpu_ort_int8", input_hw=(64, 64))
    runtime = make_runtime(hw)
    assert isinstance(runtime, OrtCPUInt8Runtime)
    unit = next(u for u in SpaceMap(load_space("yolo_nas"), (64, 64)).units() if u.kind == "conv")
    module, inputs = unit_module(unit)
    run = runtime.prepare(module, inputs)
    (y,) = run()
    with __import__("torch").no_grad():
        ref = module(*inputs).numpy()
    assert y.shape == ref.shape and np.abs(y - ref).max() < 0.2 * np.abs(ref).max()  # int8: close to fp32
