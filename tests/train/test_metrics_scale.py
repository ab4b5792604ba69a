"""One mAP scale (fractions, 0-1) in everything a run shows: history, results.csv, checkpoints, `nas train`'s line,
and the same number `nas val` gives for best.pt; a run resumed from a checkpoint written in points converts it."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import nas.engine.val
from nas.api import NAS
from nas.cli import main
from nas.io import dump_yaml
from nas.models import build, read_checkpoint
from nas.proxy.train import proxy_options, short_train_score
from nas.train.outputs import in_points
from nas.train.run import train
from nas.train.state import read_train_state, write_checkpoint
from tests.zoo_helpers import tiny_arch

ROOT = Path(__file__).resolve().parents[2]

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


def _experiment(path: Path, name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(path.parent))  # the experiment's own modules (report.py beside run.py)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_experiments_and_the_proxy_scores_stay_in_points(tiny_data, tmp_path, monkeypatch, known_map):
    """Their committed JSON files and the search's trials are in points: converted where they are written."""
    score = short_train_score(tiny_arch(8), proxy_options(data=str(tiny_data), epochs=1, imgsz=64, batch=4))
    assert score["mAP50_95"] == 43.21
    # a ground-truth unit of experiments/proxy_correlation
    pc = _experiment(ROOT / "experiments/proxy_correlation/run.py", "pc_run_scale", monkeypatch)
    for attr, sub in (("ARCHS", "archs"), ("RESULTS", "results"), ("RUNS", "runs"), ("HERE", "")):
        monkeypatch.setattr(pc, attr, tmp_path / sub)
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "tiny.yaml").write_text(tiny_arch(8, "tiny").to_yaml())
    recipe = {**pc.RECIPE, "data": str(tiny_data), "epochs": 1, "imgsz": 64, "batch": 4, "val_period": 1}
    monkeypatch.setattr(pc, "RECIPE", recipe)
    assert pc.train_one(argparse.Namespace(name="tiny", seed=0, device="cpu", workers=0, verbose=False)) == 0
    unit = json.loads(pc.gt_path("tiny", 0).read_text())
    assert unit["mAP50_95"] == unit["history"][-1]["mAP50_95"] == 43.21 and unit["mAP50"] == 65.43
    # experiments/synthetic_difficulty: its curve in points, the checkpoint it saves on the trainer's scale
    sd = _experiment(ROOT / "experiments/synthetic_difficulty/run.py", "sd_run_scale", monkeypatch)
    out = tmp_path / "sd"
    args = ["--data", str(tiny_data), "--epochs", "1", "--imgsz", "64", "--batch", "4", "--warmup-steps", "1",
            "--threads", "1", "--out", str(out), "--save", str(tmp_path / "sd.pt")]  # fmt: skip
    assert sd.main(args) == 0
    assert json.loads((out / "results.json").read_text())["final"]["mAP50_95"] == 43.21
    assert read_checkpoint(tmp_path / "sd.pt").meta["train"]["mAP50_95"] == KNOWN["mAP50_95"]
