"""`proxy=short_train` and `proxy=inherit`: a search whose accuracy objective trains each candidate (a tiny space,
a tiny set), cached by architecture, and the settings checked with clear errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nas.errors import ConfigError
from nas.models import build
from nas.models.checkpoints import save_checkpoint
from nas.search import run_search
from nas.search.config import ProxyConfig, group_option
from nas.search.objectives import Evaluator
from tests.search.tiny import tiny_config


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    from nas.data.synthetic import SyntheticSpec, ensure_synthetic

    return (
        ensure_synthetic(tmp_path_factory.mktemp("set"), SyntheticSpec(seed=3, n_train=8, n_val=2)) / "synthetic.yaml"
    )


def _trained_cfg(space_path, tmp_path, tiny_set, name="short_train", **proxy):
    cfg = tiny_config(space_path, tmp_path / "cache", n_trials=3)
    base = group_option("proxy", name, ProxyConfig)
    fields = dict(train_epochs=1, train_imgsz=64, train_data=str(tiny_set), cache_dir=str(tmp_path / "cache"))
    return dataclasses.replace(cfg, proxy=dataclasses.replace(base, **{**fields, **proxy}))


def test_a_search_scored_by_short_training(tiny_space_path, tiny_set, tmp_path):
    cfg = _trained_cfg(tiny_space_path, tmp_path, tiny_set)
    result = run_search(cfg, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["trials"]["complete"] == 3 and report["proxy"]["proxies"] == ["short_train"]
    scores = [r.values["proxy_score"] for r in result.trials]
    assert len(scores) == 3 and all(-20 < v < 0 for v in scores), "minus a mean training loss"
    assert all(r.proxies["short_train"] == r.values["proxy_score"] for r in result.trials)
    # the same architecture again: from the cache, no training
    from nas.space import load_space

    space = load_space(tiny_space_path)
    ev = Evaluator(cfg, space)
    again = ev.evaluate(result.trials[0].arch)
    assert again.cached and again.values["proxy_score"] == scores[0]


def test_inherit_scores_candidates_from_a_trained_parent(tiny_space_path, tiny_space, tiny_set, tmp_path):
    parent = next(iter(tiny_space.references.values()))
    parent = parent.replace(heads=dataclasses.replace(parent.heads, num_classes=8))
    save_checkpoint(tmp_path / "parent.pt", build(parent).state_dict(), parent, {})
    cfg = _trained_cfg(tiny_space_path, tmp_path, tiny_set, "inherit", inherit_from=str(tmp_path / "parent.pt"))
    ev = Evaluator(cfg, tiny_space)
    out = ev.evaluate(next(iter(tiny_space.references.values())))
    assert 0 <= out.values["proxy_score"] <= 100 and out.proxies.keys() == {"inherit"}


def test_training_proxy_settings_are_checked(tiny_space_path, tiny_space, tiny_set, tmp_path):
    def check(**proxy):
        Evaluator(_trained_cfg(tiny_space_path, tmp_path, tiny_set, **proxy), tiny_space)

    with pytest.raises(ConfigError, match=r"scored alone with proxy.combine=raw"):
        check(proxies=["short_train", "synflow"], combine="zscore")
    with pytest.raises(ConfigError, match=r"proxy.train_score='map'; choose one of mAP50_95, tse, loss"):
        check(train_score="map")
    with pytest.raises(ConfigError, match=r"proxy.train_imgsz=50"):
        check(train_imgsz=50)
    with pytest.raises(ConfigError, match=r"proxy=inherit needs proxy.inherit_from=PATH"):
        Evaluator(_trained_cfg(tiny_space_path, tmp_path, tiny_set, "inherit"), tiny_space)
    with pytest.raises(ConfigError, match=r"proxy.inherit_from=.*nope.pt: no such file"):
        Evaluator(_trained_cfg(tiny_space_path, tmp_path, tiny_set, "inherit", inherit_from="nope.pt"), tiny_space)
    with pytest.raises(ConfigError, match=r"combine=raw takes exactly one proxy"):
        from nas.proxy.zero_cost import combine

        combine({"a": 1.0, "b": 2.0}, [], ["a", "b"], "raw")


def test_inherit_with_batchnorm_re_estimation_is_its_own_cached_setting(
    tiny_space_path, tiny_space, tiny_set, tmp_path
):
    parent = next(iter(tiny_space.references.values()))
    parent = parent.replace(heads=dataclasses.replace(parent.heads, num_classes=8))
    save_checkpoint(tmp_path / "parent.pt", build(parent).state_dict(), parent, {})
    common = dict(inherit_from=str(tmp_path / "parent.pt"), train_epochs=0, train_score="mAP50_95")
    plain = _trained_cfg(tiny_space_path, tmp_path, tiny_set, "inherit", **common)
    bn = _trained_cfg(tiny_space_path, tmp_path, tiny_set, "inherit", inherit_bn_images=4, **common)
    arch = next(iter(tiny_space.references.values()))
    ev_plain, ev_bn = Evaluator(plain, tiny_space), Evaluator(bn, tiny_space)
    key_plain, key_bn = ev_plain.scorer.measure_key(arch), ev_bn.scorer.measure_key(arch)
    assert key_plain != key_bn, "a different setting, a different cache entry"
    out = ev_bn.evaluate(arch)
    assert 0 <= out.values["proxy_score"] <= 100 and not out.cached
    with pytest.raises(ConfigError, match="inherit_bn_images"):  # fine-tuning re-estimates the statistics itself
        Evaluator(
            _trained_cfg(
                tiny_space_path,
                tmp_path,
                tiny_set,
                "inherit",
                inherit_bn_images=4,
                inherit_from=str(tmp_path / "parent.pt"),
                train_epochs=1,
            ),
            tiny_space,
        )


def test_two_stages_select_the_best_inherited_of_the_k_best_zero_cost(
    tiny_space_path, tiny_space, tiny_set, tmp_path, proxy_cache
):
    parent = next(iter(tiny_space.references.values()))
    parent = parent.replace(heads=dataclasses.replace(parent.heads, num_classes=8))
    save_checkpoint(tmp_path / "parent.pt", build(parent).state_dict(), parent, {})
    cfg = tiny_config(tiny_space_path, proxy_cache, n_trials=6)
    rerank = dataclasses.replace(
        cfg.rerank, k=2, proxy="inherit", train_epochs=0, train_score="mAP50_95", inherit_from=str(tmp_path / "parent.pt"),
        train_imgsz=64, train_data=str(tiny_set), inherit_bn_images=4,
    )  # fmt: skip
    run_search(dataclasses.replace(cfg, rerank=rerank), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["rerank"]["k"] == 2
    for tier, t in report["tiers"].items():
        cands = t["rerank"]
        assert 1 <= len(cands) <= 2 and all(0 <= c["rerank"] <= 100 for c in cands)
        assert [c["proxy_score"] for c in cands] == sorted((c["proxy_score"] for c in cands), reverse=True)
        best = max(cands, key=lambda c: c["rerank"])  # first of the best on a tie, as selected
        assert t["selected"]["trial"] == best["trial"], tier
        assert "re-ranked proxy score" in (tmp_path / "run" / t["selected"]["path"]).read_text()
    assert "Two stages (`rerank.k=2`)" in (tmp_path / "run" / "report.md").read_text()
    # the same command with other rerank settings re-selects from the finished study (no new trial); the default
    # ranker: one epoch of training from scratch, scored by minus its mean loss (tse)
    default = dataclasses.replace(cfg.rerank, k=1, train_imgsz=64, train_data=str(tiny_set))
    again = run_search(dataclasses.replace(cfg, rerank=default), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["rerank"]["k"] == 1 and report["rerank"]["proxy"] == "short_train"
    assert report["trials"]["complete"] == 6 == len(again.trials)
    assert all(len(t["rerank"]) == 1 and t["rerank"][0]["rerank"] < 0 for t in report["tiers"].values())
    run_search(cfg, tmp_path / "run")  # one stage again
    assert json.loads((tmp_path / "run" / "report.json").read_text())["rerank"] is None


def test_two_stage_settings_are_checked_before_the_search(tiny_space_path, tiny_space, tmp_path, proxy_cache):
    cfg = tiny_config(tiny_space_path, proxy_cache, n_trials=2)

    def check(**fields):
        Evaluator(dataclasses.replace(cfg, rerank=dataclasses.replace(cfg.rerank, **fields)), tiny_space)

    with pytest.raises(ConfigError, match=r"rerank.proxy=inherit needs rerank.inherit_from=PATH"):
        check(k=3, proxy="inherit")
    with pytest.raises(ConfigError, match=r"rerank.inherit_from=.*nope.pt: no such file"):
        check(k=3, proxy="inherit", inherit_from="nope.pt")
    with pytest.raises(ConfigError, match=r"rerank.train_epochs=0: must be >= 1"):
        check(k=3, train_epochs=0)  # short training needs an epoch
    with pytest.raises(ConfigError, match=r"^rerank.train_imgsz=100: expected a positive multiple of 32"):
        check(k=3, train_imgsz=100)  # TrainOptions' own check, named as the user wrote the key
    with pytest.raises(ConfigError, match=r"rerank.proxy='synflow'; choose one of short_train, inherit"):
        check(k=3, proxy="synflow")
    with pytest.raises(ConfigError, match=r"rerank.k=-1"):
        check(k=-1)
    assert Evaluator(cfg, tiny_space).reranker is None  # k=0: one stage


def test_a_malicious_inherit_parent_is_refused_before_the_search(tiny_space_path, tiny_space, tiny_set, tmp_path):
    import os
    import pickle

    from nas.search.config import RerankConfig
    from nas.search.objectives import Evaluator as _Evaluator

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "last.pt"
    evil.write_bytes(pickle.dumps({"arch": {}, "state_dict": Payload(), "meta": {}}))
    cfg = _trained_cfg(tiny_space_path, tmp_path, tiny_set, "short_train")
    cfg = dataclasses.replace(cfg, rerank=RerankConfig(k=2, proxy="inherit", inherit_from=str(evil), train_epochs=0,
                                                       train_score="mAP50_95"))  # fmt: skip
    refused = rf"rerank.inherit_from=.*last.pt: .*refused to unpickle global .{os.system.__module__}\.system"
    with pytest.raises(ConfigError, match=refused):
        _Evaluator(cfg, tiny_space)  # at start, not when the re-rank first opens the file after the search
    assert not marker.exists()
