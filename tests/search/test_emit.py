"""Emitted architectures: YAML round trip and `python -m nas.search.emit inherit` with released weights."""

from __future__ import annotations

import pytest
import torch

from nas.models import build, load_checkpoint, save_checkpoint
from nas.search import emit
from nas.search.select import Selection, TrialRecord
from nas.space import load_arch, load_space


@pytest.fixture(scope="module")
def near_s():
    """A point of the yolo_nas space next to the released S (stage 3 one block shorter, wider stem)."""
    space = load_space("yolo_nas")
    values = space.values_of(load_arch("yolo_nas_s"))
    values["backbone.stages.2.num_blocks"] = 4
    values["backbone.stem.out_channels"] = 64
    return space.decode(values)


def test_emitted_yaml_round_trips_and_names(tmp_path, near_s):
    s = load_arch("yolo_nas_s")
    sel = {
        "yolo_nas_s": Selection("yolo_nas_s", 1.0, TrialRecord(3, near_s, {"proxy_score": 1.0, "flops_g": 0.5}), None),
        "yolo_nas_m": Selection("yolo_nas_m", 2.0, TrialRecord(0, s, {"proxy_score": 0.0, "flops_g": 1.0}), None),
        "yolo_nas_l": Selection("yolo_nas_l", 3.0, None, None),
    }
    (tmp_path / "yolo_nas_l.yaml").write_text("stale")
    paths = emit.write_selected(sel, tmp_path, {"yolo_nas_s": s}, {"cost": "flops_g"})
    assert set(paths) == {"yolo_nas_s", "yolo_nas_m"} and not (tmp_path / "yolo_nas_l.yaml").exists()
    a = load_arch(paths["yolo_nas_s"])
    assert a == near_s and a.name == f"yolo_nas_s_{near_s.digest()[:8]}"
    assert load_arch(paths["yolo_nas_m"]).name == "yolo_nas_s"  # equal to a release: keeps its name


def test_inherit_cli_writes_a_checkpoint_from_the_closest_present_release(tmp_path, monkeypatch, near_s, capsys):
    weights = tmp_path / "weights"
    s = load_arch("yolo_nas_s")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_checkpoint(weights / "yolo_nas_s.pt", build(s), s, {})  # only S is present
    monkeypatch.setenv("NAS_WEIGHTS_DIR", str(weights))
    yaml_path = tmp_path / "cand.yaml"
    yaml_path.write_text(near_s.to_yaml())
    assert emit.main(["inherit", str(yaml_path), "weights=auto"]) == 0
    out = capsys.readouterr().out
    assert "inherited from yolo_nas_s" in out
    arch, sd = load_checkpoint(tmp_path / "cand.pt")
    assert arch == near_s
    src = load_checkpoint(weights / "yolo_nas_s.pt")[1]
    key = "backbone.stage3.blocks.bottlenecks.3.cv2.branch_3x3.conv.weight"  # 4th of S's 5 blocks: kept
    assert torch.equal(sd[key], src[key]) and "backbone.stage3.blocks.bottlenecks.4.alpha" not in sd
    assert emit.main(["inherit", str(yaml_path), "weights=yolo_nas_l"]) == 2
    assert "yolo_nas_l" in capsys.readouterr().err


def test_inherit_cli_usage_errors(capsys):
    assert emit.main(["inherit", "x.yaml"]) == 2
    assert emit.main(["inherit", "x.yaml", "weights=auto", "bogus=1"]) == 2
    assert "usage" in capsys.readouterr().err
