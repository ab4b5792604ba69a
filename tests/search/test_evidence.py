"""nas.search.evidence: which proxy configurations the committed ground truth covers, the gate that keeps the
released layout where the truth test has not shown the pick better, and a search's report saying so."""

from __future__ import annotations

import dataclasses

import pytest

from nas.search import evidence as evmod
from nas.search import run_search
from nas.search.config import ProxyConfig
from nas.search.select import Selection, TrialRecord
from nas.space import load_arch
from tests.search.tiny import tiny_arch


def test_signal_keys_cover_only_the_settings_the_ground_truth_used():
    from nas.proxy.zero_cost import DEFAULT_PROXIES

    assert ProxyConfig().proxies == list(DEFAULT_PROXIES)  # one default, declared for the config without torch
    assert evmod.signal_key(ProxyConfig()) == "zero_cost[synflow]"  # the search's default
    vote = ProxyConfig(proxies=["synflow", "naswot", "snip", "zen"])
    assert evmod.signal_key(vote) == "zero_cost[synflow,naswot,snip,zen]"
    assert evmod.signal_key(ProxyConfig(name="flops", proxies=["flops"], combine="raw")) == "flops"
    assert evmod.signal_key(ProxyConfig(imgsz=64)) is None  # another proxy batch: not what was measured
    assert evmod.signal_key(ProxyConfig(), rerank_k=3) is None


def _evidence(space: str, decision: str | None) -> dict:
    signal = {"label": "x", "pairs_right": 0.61, "pairs_right_ci": [0.5, 0.7], "pairs": 90}
    truth = {"diff": 0.4, "ci": [-0.3, 1.1], "decision": decision, "n_pick_trainings": 9, "n_reference_trainings": 3}
    return {
        "space": space,
        "data": "synthetic, 160 px",
        "signals": {"k": signal},
        "truth_test": {"k": {"t_s": truth}} if decision else {},
    }


def _selection(tier: str, pick: str, ref: str) -> Selection:
    def rec(name: str, i: int) -> TrialRecord:
        arch = tiny_arch(name, {"backbone.stem.out_channels": i})
        return TrialRecord(number=i, arch=arch, values={"proxy_score": float(i)})

    return Selection(tier=tier, budget=1.0, record=rec(pick, 1), reference=rec(ref, 0))


@pytest.mark.parametrize(
    ("decision", "emits_pick"), [("better", True), ("not distinguishable", False), ("worse", False), (None, False)]
)
def test_the_gate_emits_the_pick_only_on_a_truth_test_that_says_better(decision, emits_pick):
    sel = {"t_s": _selection("t_s", "pick", "ref")}
    emit, withheld = evmod.gate(sel, _evidence("sp", decision), "sp", "k")
    assert (emit["t_s"].record is sel["t_s"].record) is emits_pick
    assert (emit["t_s"].record is sel["t_s"].reference) is not emits_pick and ("t_s" in withheld) is not emits_pick
    # not covered: another space, no evidence at all -> the pick, untouched
    for args in ((_evidence("other", decision), "sp", "k"), (None, "sp", "k")):
        assert evmod.gate(sel, *args) == (sel, {})
    # a proxy configuration the evidence has not measured, in a covered space: not shown better
    emit, withheld = evmod.gate(sel, _evidence("sp", "better"), "sp", None)
    assert emit["t_s"].record is sel["t_s"].reference and "t_s" in withheld
    line = evmod.sentence("t_s", "p", evmod.tier_evidence(_evidence("sp", "better"), "sp", None, "t_s"), {}, False)
    assert "no committed ground truth" in line and "no truth test yet" in line
    line = evmod.sentence("t_s", "p", evmod.tier_evidence(_evidence("sp", decision), "sp", "k", "t_s"), {}, emits_pick)
    assert "0.61 [0.50, 0.70]" in line and ("emitting the released layout" in line) is not emits_pick
    if decision:
        assert "+0.40 [-0.30, 1.10] mAP over 9 + 3 trainings" in line


def test_a_search_without_evidence_for_its_pick_emits_the_released_layout(tiny_cfg, tmp_path, monkeypatch):
    import nas.search.outputs as outputs

    monkeypatch.setattr(outputs, "signal_key", lambda proxy, rerank_k=0: "k")
    # tiny_s's budget opened up so that its best proxy score is not tiny_s itself
    tiny_cfg = dataclasses.replace(tiny_cfg, tiers={"tiny_s": 1e6})
    first = run_search(dataclasses.replace(tiny_cfg, evidence_gate=False), tmp_path / "free")
    moved = {t for t, s in first.selections.items() if s.record.arch != s.reference.arch}
    assert moved, "the tiny search picks something other than a reference in some tier"
    tier = sorted(moved)[0]
    ev = _evidence(first.report["space"], "not distinguishable")
    ev["truth_test"]["k"] = {tier: ev["truth_test"]["k"].pop("t_s")}
    monkeypatch.setattr(outputs, "load_evidence", lambda: ev)
    res = run_search(tiny_cfg, tmp_path / "gated")
    out = tmp_path / "gated" / "selected"
    assert load_arch(out / f"{tier}.yaml").digest() == res.selections[tier].reference.arch.digest()
    assert load_arch(out / f"{tier}.candidate.yaml").digest() == first.selections[tier].record.arch.digest()
    t = res.report["tiers"][tier]
    assert t["evidence"]["withheld"] and t["selected"]["equals_reference"] and t["candidate"]["name"]
    md = (tmp_path / "gated" / "report.md").read_text()
    assert "emitting the released layout" in md and "(not distinguishable)" in md
    # the same study with the gate off: the pick is emitted and the stale candidate file removed
    again = run_search(dataclasses.replace(tiny_cfg, evidence_gate=False), tmp_path / "gated")
    assert load_arch(out / f"{tier}.yaml").digest() == again.selections[tier].record.arch.digest()
    assert not (out / f"{tier}.candidate.yaml").exists()
