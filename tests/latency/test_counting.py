"""The one cost count: analytic (ArchConfig only) against fvcore on S/M/L and random architectures of the
space, and the same GFLOPs in `nas info` and in a search."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from nas.latency.counting import arch_cost, count_activations, count_flops, count_macs, count_params, gflops
from nas.latency.modules import deployed_model
from nas.models import build
from nas.space import load_arch, load_space


def _fvcore_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    fca = FlopCountAnalysis(model.eval(), x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        return int(fca.total())


def _archs():
    space = load_space("yolo_nas")
    rng = np.random.default_rng(2026)
    return [load_arch(n) for n in ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l")] + [space.random(rng) for _ in range(3)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("index", range(6), ids=["S", "M", "L", "random0", "random1", "random2"])
def test_analytic_counts_equal_fvcore_on_the_deployed_network(index):
    arch = _archs()[index]
    model, x = deployed_model(arch, (64, 96))
    assert count_macs(arch, (64, 96)) == _fvcore_macs(model, x)
    assert count_params(arch, fused=True) == sum(p.numel() for p in model.parameters())
    with torch.device("meta"):
        assert count_params(arch) == sum(p.numel() for p in build(arch).parameters())


def test_the_gflops_convention_and_released_values():
    s = load_arch("yolo_nas_s")
    assert count_flops(s, 640) == 2 * count_macs(s, 640)
    assert [round(gflops(load_arch(n), 640), 1) for n in ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l")] == [
        31.8,
        87.8,
        119.8,
    ]
    c = arch_cost(s, 640)
    assert (c.macs, c.flops, c.params, c.params_fused) == (
        count_macs(s, 640),
        count_flops(s, 640),
        19_053_888,
        12_167_600,
    )
    assert c.gflops == gflops(s, 640) and c.activations == count_activations(s, 640) > 0
    assert count_macs(s, 640) == 100 * count_macs(s, 64)  # every counted op scales with the pixels


def test_nas_info_and_a_search_report_print_the_same_gflops(tmp_path, capsys):
    """`nas info` of S and the report of a real search over the shipped space (count proxies only: no model
    is built for them) print the same GFLOPs at 640x640."""
    import json
    from importlib import resources

    import nas.search
    from nas.cli import main
    from nas.search.config import ProxyConfig

    yaml_path = resources.files("nas.space").joinpath("archs", "yolo_nas_s.yaml")  # S, randomly initialized
    assert main(["info", f"model={yaml_path}", "hardware=cpu_ort"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("yolo_nas_s summary"))
    assert "31.8 GFLOPs (deployed) at 640x640" in line

    proxy = ProxyConfig(proxies=["params", "flops"], batch_source="random", imgsz=64, batch_size=1, n_reference=2,
                        cache_dir=str(tmp_path / "cache"))  # fmt: skip
    res = nas.search.run("yolo_nas", proxy=proxy, strategy="random", n_trials=3, storage="memory",
                         out_dir=tmp_path / "run", progress=False, threads=1)  # fmt: skip
    report = json.loads(res.paths["report_json"].read_text())
    assert report["cost_imgsz"] == 640
    ref = report["tiers"]["yolo_nas_s"]["reference"]
    assert ref["values"]["flops_g"] == gflops(load_arch("yolo_nas_s"), 640)
    row = next(x for x in res.paths["report_md"].read_text().splitlines() if "reference `yolo_nas_s`" in x)
    assert "| 31.8 |" in row
