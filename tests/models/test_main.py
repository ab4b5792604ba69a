"""`python -m nas.models`: the summary of S/M/L, and the FLOP count's small-input scaling."""

from __future__ import annotations

import pytest
import torch

from nas.models import build
from nas.models.__main__ import gflops, main
from nas.space import ArchConfig
from tests.models.test_yolo_nas import NON_RELEASED, _tiny


def test_demo_prints_the_released_summary(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_WEIGHTS_DIR", str(tmp_path))
    assert main(["flops=false"]) == 0
    out = capsys.readouterr().out
    for row in (
        "yolo_nas_s  19,053,888   921",
        "yolo_nas_m  51,182,658   965",
        "yolo_nas_l  66,976,392  1097",
        "12,184,240   625",
        "31,922,098   653",
        "42,017,784   737",
    ):
        assert row in out, row
    assert f"released weights directory: {tmp_path}" in out and "yolo_nas_s: not placed" in out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_gflops_counted_small_equals_counted_at_full_size():
    from fvcore.nn import FlopCountAnalysis

    model = build(ArchConfig.from_dict(_tiny(**NON_RELEASED["concat"]))).eval()
    with torch.no_grad():
        direct = FlopCountAnalysis(model, torch.zeros(1, 3, 320, 320)).unsupported_ops_warnings(False).total()
    assert direct > 0
    assert abs(gflops(model, 320) - 2 * direct / 1e9) < 1e-9
