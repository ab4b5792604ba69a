"""One mAP scale (fractions, 0-1) in everything a run shows: history, results.csv, checkpoints, `nas train`'s line,
and the same number `nas val` gives for best.pt; a run resumed from a checkpoint written in points converts it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import nas.engine.val
from nas.api import NAS
from nas.cli import main
from nas.io import dump_yaml
from nas.models import build, read_checkpoint
from nas.train.outputs import in_points
from nas.train.run import train
from nas.train.state import read_train_state, write_checkpoint
from tests.zoo_helpers import tiny_arch

# A tiny network trained for one epoch scores 0 mAP, on any scale: the evaluation is made to answer these (a
# fraction, as pycocotools gives it) so that a factor of 100 anywhere between it and the user shows
KNOWN = {"mAP50_95": 0.4321, "mAP50": 0.6543, "mAP75": 0.4102}


@pytest.fixture
def known_map(monkeypatch):
    real = nas.engine.val.coco_evaluate

    def evaluate(dataset, detections):
        m = dict(real(dataset, detections))
        m.update(KNOWN)
        m["per_class"] = {name: 0.25 for name in m["per_class"]}
        m["per_class_AP50"] = {name: 0.5 for name in m["per_class_AP50"]}
        return m

    monkeypatch.setattr(nas.engine.val, "coco_evaluate", evaluate)


def test_train_and_val_report_one_scale(fast, known_map):
    torch.manual_seed(0)
    result = train(build(tiny_arch(8)), fast)
    run = result.run_dir
    row = next(csv.DictReader((run / "results.csv").open()))
    shown = {
        "TrainResult.metrics": result.metrics,
        "history": result.history[-1],
        "results.csv": {k: float(row[k]) for k in KNOWN},
        "best.pt meta": read_checkpoint(run / "best.pt").meta["train"],
        "last.pt meta": read_checkpoint(run / "last.pt").meta["train"],
        "nas val of best.pt": NAS(str(result.best)).val(data=fast.data, imgsz=fast.imgsz, verbose=False),
    }
    for where, m in shown.items():
        assert {k: m[k] for k in KNOWN} == pytest.approx(KNOWN), where
    assert result.metrics["per_class"]["circle"] == 0.25 and result.metrics["per_class_AP50"]["circle"] == 0.5
    assert "| all | 0.4321 | 0.6543 |" in (run / "summary.md").read_text()
    # the experiments' ground truth stays in points: converted where they write it
    assert in_points(result.metrics)["mAP50_95"] == 43.21 and in_points(result.metrics)["per_class"]["circle"] == 25


def test_nas_train_prints_what_nas_val_prints(tiny_data, tmp_path, capsys, known_map):
    yaml = tmp_path / "tiny.yaml"
    yaml.write_text(dump_yaml(tiny_arch(8).to_dict()))
    args = [f"model={yaml}", "resume=false", f"data={tiny_data}", "epochs=1", "imgsz=64", "batch=4", "workers=0",
            f"project={tmp_path / 'runs'}", "verbose=true", "plots=false"]  # fmt: skip
    assert main(["train", *args]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = json.loads(lines[-1])
    assert out["mAP50_95"] == KNOWN["mAP50_95"] and out["scale"] == "fraction"
    epoch_line = next(line for line in lines if line.startswith("epoch=1 "))
    assert "mAP50_95=0.4321 " in epoch_line and "mAP50=0.6543 " in epoch_line
    assert main(["val", f"model={out['best']}", f"data={tiny_data}", "imgsz=64", f"project={tmp_path / 'runs'}"]) == 0
    metrics = json.loads(next((tmp_path / "runs" / "val").glob("*/metrics.json")).read_text())
    assert metrics["mAP50_95"] == pytest.approx(out["mAP50_95"]) and metrics["scale"] == "fraction"


def _as_old_checkpoint(last):
    """Rewrite a last.pt as the trainer wrote it before the scale was one: history and best fitness in points."""
    from nas.models.checkpoints import _torch_load

    obj, _ = _torch_load(last)
    state = obj["train_state"]
    del state["metrics_scale"]
    state["history"] = [in_points(r) for r in state["history"]]
    state["best_fitness"] = 100 * state["best_fitness"]
    write_checkpoint(last, read_train_state(last)[0], obj["state_dict"], obj["meta"], state)


class _Stop(Exception):
    pass


def _stop_after_the_first_epoch(row, _model):
    raise _Stop  # after last.pt of epoch 1 is written


def test_resume_from_a_checkpoint_in_points_converts_its_history(fast, known_map):
    torch.manual_seed(0)
    with pytest.raises(_Stop):
        train(build(tiny_arch(8)), fast.replace(epochs=2), on_epoch=_stop_after_the_first_epoch)
    last = Path(fast.project) / "train" / "exp" / "last.pt"
    _as_old_checkpoint(last)
    resumed = train(None, fast.replace(resume=str(last)))
    assert [r["mAP50_95"] for r in resumed.history] == [KNOWN["mAP50_95"]] * 2
    rows = list(csv.DictReader((resumed.run_dir / "results.csv").open()))
    assert [float(r["mAP50_95"]) for r in rows] == [KNOWN["mAP50_95"]] * 2
    assert resumed.metrics["per_class"]["circle"] == 0.25
    # best fitness converted too: a later epoch as good as the first does not look 100 times worse
    assert read_train_state(resumed.last)[2]["best_fitness"] == KNOWN["mAP50_95"]
