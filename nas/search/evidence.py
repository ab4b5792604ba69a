"""What the committed ground truth says a search's pick is worth, and the gate that keeps the released layout when
it says the difference is not established (issue 23, experiments/proxy_correlation/PLAN.md).

`evidence.json` beside this module is written by `experiments/proxy_correlation/window_report.py` from the
committed trainings (a test keeps them equal). Per accuracy signal (a proxy configuration, `signal_key`): how often
it orders two trained architectures of the same latency right, and per tier the truth test of its searches' picks
against the released layout (pick - released trained mAP, its interval, the decision). A search of a space the
evidence covers emits its pick for a tier only where the truth test of its proxy configuration says "better"
(another configuration, or none measured yet: not shown better); elsewhere it emits the released layout and writes
its pick beside it (`<tier>.candidate.yaml`), saying why in one line.
`evidence_gate=false` emits the pick regardless.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.search.select import Selection

EVIDENCE_PATH = Path(__file__).with_name("evidence.json")
# The zero-cost settings the ground truth's proxies were computed with (experiments/proxy_correlation/run.py uses
# the search's defaults): evidence about a signal holds for these settings only.
EVIDENCE_SETTINGS = {"combine": "zscore", "imgsz": 96, "batch_size": 4, "batch_source": "synthetic", "seed": 0,
                     "n_reference": 10}  # fmt: skip


def signal_key(proxy: Any, rerank_k: int = 0) -> str | None:
    """The evidence's name for a proxy configuration (`zero_cost[synflow]`, `flops`, `params`), or None where the
    committed ground truth does not cover it (other settings, training proxies, a supernet, a two-stage rerank)."""
    if rerank_k or getattr(proxy, "supernet", None):
        return None
    if proxy.name in ("flops", "params"):
        return proxy.name
    if proxy.name != "zero_cost" or any(getattr(proxy, k) != v for k, v in EVIDENCE_SETTINGS.items()):
        return None
    return f"zero_cost[{','.join(proxy.proxies)}]"


def load_evidence(path: Path = EVIDENCE_PATH) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def tier_evidence(evidence: Mapping[str, Any] | None, space: str, key: str | None, tier: str) -> dict[str, Any]:
    """{"covered": bool, "signal": {...} | None, "truth": {...} | None} for one tier. The space is covered when the
    evidence is about it; `signal` and `truth` are None where this proxy configuration was not measured."""
    if not evidence or evidence.get("space") != space:
        return {"covered": False, "signal": None, "truth": None}
    signal = evidence.get("signals", {}).get(key) if key else None
    truth = (evidence.get("truth_test", {}).get(key) or {}).get(tier) if key else None
    return {"covered": True, "signal": signal, "truth": truth}


def sentence(tier: str, name: str, ev: Mapping[str, Any], evidence: Mapping[str, Any] | None, emits_pick: bool) -> str:
    """The report's one line on what the tier's pick is worth."""
    if not ev["covered"]:
        return (
            f"{tier}: `{name}` is untested: no committed ground truth covers this space"
            " (experiments/proxy_correlation); its proxy score is an estimate, not measured accuracy."
        )
    s, t = ev["signal"], ev["truth"]
    data = evidence.get("data", "the synthetic set") if evidence else "the synthetic set"
    if s is None:
        head = f"{tier}: this proxy configuration has no committed ground truth ({data})"
    else:
        lo, hi = s.get("pairs_right_ci") or (None, None)
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None else ""
        head = (
            f"{tier}: by the committed evidence ({data}), this proxy orders {s['pairs_right']:.2f}{ci} of"
            f" same-latency pairs of trained networks right ({s['pairs']} pairs; 0.5 is a coin)"
        )
    if t is None or t.get("diff") is None:
        tail = "; its picks have no truth test yet"
    else:
        tail = (
            f"; truth test of its picks: pick − released {t['diff']:+.2f} [{t['ci'][0]:.2f}, {t['ci'][1]:.2f}] mAP"
            f" over {t['n_pick_trainings']} + {t['n_reference_trainings']} trainings ({t['decision']})"
        )
    end = (
        f" — emitting the pick `{name}`."
        if emits_pick
        else f" — emitting the released layout; the pick `{name}` is written beside it as {tier}.candidate.yaml"
        " (evidence_gate=false emits it)."
    )
    return head + tail + end


def gate(
    selections: Mapping[str, Selection], evidence: Mapping[str, Any] | None, space: str, key: str | None
) -> tuple[dict[str, Selection], dict[str, Selection]]:
    """(what to emit per tier, the withheld picks): in a space the evidence covers, a tier whose pick is not the
    released layout emits the released layout unless the truth test of this proxy configuration's picks decided
    "better" (no truth test: not shown better)."""
    emit, withheld = dict(selections), {}
    for tier, sel in selections.items():
        if sel.record is None or sel.reference is None or sel.record.arch == sel.reference.arch:
            continue
        ev = tier_evidence(evidence, space, key, tier)
        if ev["covered"] and (ev["truth"] or {}).get("decision") != "better":
            emit[tier] = dataclasses.replace(sel, record=sel.reference)
            withheld[tier] = sel
    return emit, withheld
