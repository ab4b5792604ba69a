"""Zero-cost proxies: the contract every proxy meets (finite, seed-deterministic, RNG-neutral), the batch
sources, the count baselines (no model built), and the score combination."""

from __future__ import annotations

import math

import pytest
import torch

from nas.errors import ConfigError
from nas.models import build
from nas.proxy import zero_cost
from nas.proxy.zero_cost import PROXIES, combine, compute_proxies, make_batch, random_batch
from tests.search.tiny import tiny_arch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def batch():
    return random_batch(64, 2, seed=0)


@pytest.fixture(scope="module")
def arch():
    return tiny_arch("t", {"backbone.stages.1.num_blocks": 1, "heads.heads.0.first_conv_group_size": 2})


@pytest.mark.parametrize("name", list(PROXIES))
def test_every_proxy_is_finite_and_seed_deterministic(name, arch, batch):
    state = torch.random.get_rng_state()
    a = compute_proxies(arch, batch, [name], seed=3)[name]
    b = compute_proxies(arch, batch, [name], seed=3)[name]
    assert math.isfinite(a)
    assert a == b
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG must be left untouched"


@pytest.mark.parametrize("name", ["synflow", "naswot", "snip", "grad_norm", "zen"])
def test_init_dependent_proxies_change_with_the_seed(name, arch, batch):
    assert compute_proxies(arch, batch, [name], seed=0)[name] != compute_proxies(arch, batch, [name], seed=1)[name]


def test_proxies_do_not_depend_on_which_others_are_computed(arch, batch):
    alone = {n: compute_proxies(arch, batch, [n], seed=0)[n] for n in PROXIES}
    together = compute_proxies(arch, batch, list(reversed(PROXIES)), seed=0)
    assert together == alone
    assert list(together) == list(reversed(PROXIES))


def test_size_baselines_grow_with_the_network(batch):
    small, big = tiny_arch("s"), tiny_arch("b", {"backbone.stages.2.out_channels": 1, "neck.down.1.out_channels": 1})
    s, b = compute_proxies(small, batch, ["params", "flops"]), compute_proxies(big, batch, ["params", "flops"])
    assert b["params"] > s["params"] and b["flops"] > s["flops"]


def test_count_baselines_come_from_the_arch_without_building_a_model(arch, batch, monkeypatch):
    from nas.latency.counting import count_macs, count_params

    def no_build(*_a, **_k):
        raise AssertionError("params / flops must not build a model")

    monkeypatch.setattr(zero_cost, "_init_model", no_build)
    values = compute_proxies(arch, batch, ["params", "flops"])
    assert values["params"] == pytest.approx(math.log(sum(p.numel() for p in build(arch).parameters())))
    assert values["params"] == pytest.approx(math.log(count_params(arch)))
    assert values["flops"] == pytest.approx(math.log(count_macs(arch, batch.input_hw)))


def test_random_batch_is_seeded_and_has_boxes_inside():
    a, b, c = random_batch(64, 3, 5), random_batch(64, 3, 5), random_batch(64, 3, 6)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    for boxes in a.boxes:
        assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 64


def test_batch_errors_name_the_fix():
    with pytest.raises(ConfigError, match="multiple of 32"):
        random_batch(50, 2, 0)
    with pytest.raises(ConfigError, match="random, synthetic"):
        make_batch("imagenet", 64, 2, 0)
    with pytest.raises(ConfigError, match="available proxies"):
        compute_proxies(tiny_arch("t"), random_batch(64, 2, 0), ["synflw"])


def test_synthetic_batch_reads_the_embedded_set():
    b = make_batch("synthetic", 64, 2, 0)
    assert b.images.shape == (2, 3, 64, 64) and float(b.images.min()) >= 0.0 and float(b.images.max()) <= 1.0
    assert len(b.boxes) == 2 and b.source.startswith("synthetic")


def test_detection_loss_is_positive_and_differentiable(arch, batch):
    model = build(arch).train()
    loss = zero_cost.detection_loss(model, batch)
    loss.backward()
    assert float(loss.detach()) > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_combine_zscore_and_rank():
    ref = [{"a": 0.0, "b": 1.0}, {"a": 2.0, "b": 1.0}]  # a: mean 1, std 1; b: constant
    assert combine({"a": 3.0, "b": 5.0}, ref, ["a", "b"], "zscore") == pytest.approx((2.0 + 0.0) / 2)
    assert combine({"a": 1.0, "b": 1.0}, ref, ["a", "b"], "rank") == pytest.approx((0.5 + 0.5) / 2)
    assert combine({"a": 9.0, "b": 0.0}, ref, ["a", "b"], "rank") == pytest.approx((1.0 + 0.0) / 2)
    # a non-finite value is the worst, clipped; non-finite references are ignored
    assert combine({"a": -math.inf}, [*ref, {"a": math.inf}], ["a"]) == -10.0
    assert combine({"a": 1e9}, ref, ["a"]) == 10.0
    with pytest.raises(ConfigError, match="zscore, rank"):
        combine({"a": 1.0}, ref, ["a"], "mean")
