"""experiments/synthetic_difficulty/run.py trains, validates by pycocotools and writes its curve after every epoch."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from nas.data.synthetic import CLASSES, SyntheticSpec, ensure_synthetic

ROOT = Path(__file__).resolve().parents[2]


def test_runs_end_to_end_and_writes_the_curve(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "synthetic_difficulty", ROOT / "experiments/synthetic_difficulty/run.py"
    )
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    folder = ensure_synthetic(tmp_path / "datasets", SyntheticSpec(seed=3, n_train=4, n_val=3))
    out = tmp_path / "out"
    args = ["--data", str(folder / "synthetic.yaml"), "--epochs", "2", "--imgsz", "64", "--batch", "2",
            "--warmup-steps", "1", "--threads", "1", "--out", str(out), "--save", str(tmp_path / "sd.pt")]  # fmt: skip
    assert experiment.main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["epoch"] for r in res["history"]] == [1, 2] and res["final"] == res["history"][-1]
    assert res["train_images"] == 4 and res["val_images"] == 3 and res["num_classes"] == 8
    assert res["config"]["imgsz"] == 64 and res["history"][-1]["steps"] == 4
    assert res["best_mAP50_95"] == max(r["mAP50_95"] for r in res["history"])
    for r in res["history"]:
        assert 0.0 <= r["mAP50_95"] <= r["mAP50"] <= 100.0 and r["loss"] > 0
    md = (out / "results.md").read_text()
    assert sum(line.startswith("| ") and line[2].isdigit() for line in md.splitlines()) == 2  # a row per epoch
    assert "| class | circle |" in md and "by object size" in md  # the last epoch's per-class and per-size AP
    assert res["final"]["per_class"] and set(res["final"]["per_class"]) <= set(CLASSES)  # classes present in val
    # the saved EMA weights open as a zoo model with the set's class names
    from nas import NAS

    model = NAS(tmp_path / "sd.pt")
    assert model.names == {i: n for i, n in enumerate(CLASSES)} and model.arch.num_classes == 8
