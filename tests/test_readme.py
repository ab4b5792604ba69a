"""The README's measured numbers are those of the result files they cite, and it claims nothing measured as unmeasured."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme() -> str:
    return " ".join((ROOT / "README.md").read_text().split())  # line breaks do not matter


def test_int8_numbers_are_the_measured_ones_and_name_their_cpu_kind():
    int8 = json.loads((ROOT / "experiments" / "int8" / "results.json").read_text())
    lat = int8["latency"]["qarepvgg_s0"]
    assert lat["avx512_vnni"] is True
    text = _readme()
    speedup = lat["threads"]["1"]["speedup"]["int8"]
    assert f"{speedup:.2f}× on an Intel Xeon with AVX-512 VNNI" in text  # the number with the CPU kind it holds for
    earlier = json.loads((ROOT / "experiments" / "int8" / "earlier" / "results_amd_avx2.json").read_text())
    assert earlier["machine"]["avx512_vnni"] is False
    old = earlier["models"]["qarepvgg"]["latency"]["threads"]["1"]["speedup"]["int8"]
    assert f"{old:.2f}× on AMD without VNNI" in text
    bench = json.loads(
        (ROOT / "experiments" / "benchmark" / "results" / "formats_authenticamd_f25m17_vnni.json").read_text()
    )
    vnni = next(r for r in bench["rows"] if r["name"] == "onnx_int8")["speedup"]["1"]
    assert (
        f"{vnni:.2f}× on AMD Zen 4 with VNNI" in text
    )  # measured interleaved on a VNNI machine (experiments/benchmark)
    p1, p2 = int8["P1_drop"]["qarepvgg"], int8["P2_repvgg_minus_qarepvgg"]
    lo, hi = p2["ci95"]
    assert f"RepVGG − QARepVGG {p2['mean']:.2f} [{lo:.2f}, {hi:.2f}]".replace("-", "−") in text
    assert f"{len(int8['seeds'])} training seeds" in text
    lo, hi = p1["ci95"]
    assert f"QARepVGG drop {p1['mean']:.2f} [{lo:.2f}, {hi:.2f}]".replace("-", "−") in text


def test_proxy_ranking_is_reported_from_proxy_correlation_not_as_unmeasured():
    res = json.loads((ROOT / "experiments" / "proxy_correlation" / "results.json").read_text())
    vote = next(p for p in res["proxies"] if p["proxy"].startswith("zero-cost vote"))
    lo, hi = vote["spearman_ci"]
    text = _readme()
    assert "zero-cost proxies rank architectures by trained mAP" not in text.split("Not measured yet:")[-1]
    assert f"ρ {vote['spearman']:.2f} [{lo:.2f}, {hi:.2f}]" in text
    assert f"{vote['n']} architectures" in text
    assert "experiments/proxy_correlation" in text and "docs/search.md" in text
