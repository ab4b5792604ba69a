"""Scoring with a supernet: the proxy of a search (cached by architecture and supernet digest), the measured INT8
drop, and the weights of an emitted architecture."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nas.errors import ConfigError
from nas.models import read_checkpoint
from nas.search.config import ProxyConfig, SearchConfig, SpaceConfig, group_option
from nas.search.emit import main as emit_main
from nas.search.objectives import Evaluator
from nas.supernet import SuperNet, save_supernet, score
from nas.supernet.plan import with_classes


@pytest.fixture(scope="module")
def checkpoint(tiny_space, tiny_data, tmp_path_factory):
    net = SuperNet(tiny_space, num_classes=8, seed=0)  # the synthetic set's 8 classes
    return save_supernet(net, tmp_path_factory.mktemp("sn") / "supernet.pt", {"data": tiny_data, "imgsz": 64})


def test_score_is_deterministic_and_measures_the_int8_drop(checkpoint, tiny_space, tiny_data):
    arch = tiny_space.random(np.random.default_rng(1))
    a = score(arch, checkpoint, data=tiny_data, imgsz=64, bn_images=8, int8=True, calib_images=4)
    b = score(arch, checkpoint, data=tiny_data, imgsz=64, bn_images=8)
    assert a["mAP50_95"] == b["mAP50_95"] and 0 <= a["mAP50_95"] <= 100
    assert a["int8_drop"] == pytest.approx(a["mAP50_95"] - a["int8_mAP50_95"])


def test_search_proxy_supernet_scores_caches_and_measures_int8_drop(
    checkpoint, tiny_space_path, tiny_space, tiny_data, tmp_path
):
    proxy = group_option("proxy", "supernet", ProxyConfig)
    proxy = dataclasses.replace(proxy, supernet=str(checkpoint), train_data=tiny_data, train_imgsz=64, supernet_bn_images=8,
                                cache_dir=str(tmp_path))  # fmt: skip
    cfg = SearchConfig(space=SpaceConfig(name=str(tiny_space_path)), proxy=proxy, max_int8_drop=50.0)
    ev = Evaluator(cfg, tiny_space)
    arch = tiny_space.random(np.random.default_rng(2))
    first = ev.evaluate(arch)
    assert not first.cached and set(first.values) >= {"proxy_score", "flops_g", "int8_drop"}
    again = ev.evaluate(arch)
    assert again.cached and again.values == first.values
    direct = score(arch, checkpoint, data=tiny_data, imgsz=64, bn_images=8, int8=True)
    assert first.values["proxy_score"] == pytest.approx(direct["mAP50_95"])
    assert first.values["int8_drop"] == pytest.approx(direct["int8_drop"])  # measured, not the block table
    with pytest.raises(ConfigError, match=r"proxy\.supernet=PATH"):
        Evaluator(dataclasses.replace(cfg, proxy=dataclasses.replace(proxy, supernet=None)), tiny_space)


def test_emit_writes_supernet_weights_for_an_architecture(checkpoint, tiny_space, tmp_path, capsys):
    arch = tiny_space.random(np.random.default_rng(3))
    yaml = tmp_path / "s.yaml"
    yaml.write_text(arch.to_yaml())
    assert emit_main(["inherit", str(yaml), f"weights=supernet:{checkpoint}", f"out={tmp_path / 's.pt'}"]) == 0
    assert "sub-network of supernet" in capsys.readouterr().out
    ckpt = read_checkpoint(tmp_path / "s.pt")
    assert ckpt.arch == with_classes(arch, 8) and ckpt.meta["supernet_weights"]["bn_images"] == 8
    w = ckpt.state_dict["backbone.stem.conv.branch_3x3.conv.weight"]
    c = arch.backbone.stem.out_channels
    assert torch.equal(
        w, torch.load(checkpoint, weights_only=True)["state_dict"]["backbone.stem/conv/branch_3x3/conv.weight"][:c]
    )


def test_nas_takes_supernet_weights_for_an_architecture(checkpoint, tiny_space, tmp_path):
    from nas import NAS

    arch = tiny_space.random(np.random.default_rng(4))
    yaml = tmp_path / "a.yaml"
    yaml.write_text(arch.to_yaml())
    model = NAS(str(yaml), weights=f"supernet:{checkpoint}")
    assert model.arch == with_classes(arch, 8) and model.inherited.exact and model.inherited.fraction == 1.0
    assert str(checkpoint) in model.inherited.source


def test_a_search_space_beyond_the_supernet_is_refused_naming_the_dimension(checkpoint, tiny_data, tmp_path):
    from nas.space import load_space
    from tests.supernet.tiny import write_space

    wider = write_space(tmp_path, extra={"backbone.stem.out_channels": [8, 16, 32]})
    proxy = dataclasses.replace(group_option("proxy", "supernet", ProxyConfig), supernet=str(checkpoint),
                                train_data=tiny_data, cache_dir=str(tmp_path))  # fmt: skip
    cfg = SearchConfig(space=SpaceConfig(name=str(wider)), proxy=proxy)
    with pytest.raises(ConfigError, match=r"cannot express backbone\.stem\.out_channels=32"):
        Evaluator(cfg, load_space(wider))


def test_fingerprint_names_the_supernet_content_and_is_unchanged_without_one(checkpoint, tiny_space_path, tiny_space):
    from nas.supernet import supernet_digest

    plain = Evaluator(SearchConfig(space=SpaceConfig(name=str(tiny_space_path))), tiny_space).fingerprint()
    assert not any(k.startswith("supernet") for k in plain["proxy"])  # resumed older studies still match
    proxy = dataclasses.replace(group_option("proxy", "supernet", ProxyConfig), supernet=str(checkpoint))
    cfg = SearchConfig(space=SpaceConfig(name=str(tiny_space_path)), proxy=proxy)
    assert Evaluator(cfg, tiny_space).fingerprint()["proxy"]["supernet_digest"] == supernet_digest(checkpoint)
