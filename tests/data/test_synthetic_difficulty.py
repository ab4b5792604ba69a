"""experiments/synthetic_difficulty/run.py trains, validates by pycocotools and writes its curve after every epoch."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nas.data.synthetic import SyntheticSpec, ensure_synthetic

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def experiment():
    spec = importlib.util.spec_from_file_location(
        "synthetic_difficulty", ROOT / "experiments/synthetic_difficulty/run.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_letterbox_moves_boxes_with_the_image(experiment):
    import numpy as np

    img = np.zeros((50, 100, 3), np.uint8)
    img[10:20, 30:40] = 255  # a white square at x 30..40, y 10..20
    out, boxes = experiment.letterbox_with_boxes(img, np.array([[30, 10, 40, 20]], np.float32), 64)
    assert out.shape == (64, 64, 3)
    x0, y0, x1, y1 = boxes[0]
    assert (x1 - x0, y1 - y0) == pytest.approx((6.4, 6.4))
    # the box lands on the white pixels of the letterboxed image
    ys, xs = np.nonzero(out[..., 0] > 128)
    assert xs.min() >= x0 - 1 and xs.max() <= x1 and ys.min() >= y0 - 1 and ys.max() <= y1


def test_flip_mirrors_boxes(experiment):
    import torch

    images = torch.zeros(2, 3, 8, 10)
    images[0, :, 0, 0] = 1.0
    boxes = [torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[1.0, 2.0, 3.0, 4.0]])]
    out, flipped = experiment.flip(images, boxes, torch.tensor([True, False]))
    assert out[0, 0, 0, 9] == 1.0 and out[0, 0, 0, 0] == 0.0
    assert flipped[0].tolist() == [[7.0, 2.0, 9.0, 4.0]] and flipped[1].tolist() == [[1.0, 2.0, 3.0, 4.0]]


def test_runs_end_to_end_and_writes_the_curve(tmp_path, experiment):
    folder = ensure_synthetic(tmp_path / "datasets", SyntheticSpec(seed=3, n_train=4, n_val=3))
    out = tmp_path / "out"
    args = ["--data", str(folder / "synthetic.yaml"), "--epochs", "2", "--imgsz", "64", "--batch", "2",
            "--warmup-steps", "1", "--threads", "1", "--out", str(out)]  # fmt: skip
    assert experiment.main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["epoch"] for r in res["history"]] == [1, 2] and res["final"] == res["history"][-1]
    assert res["train_images"] == 4 and res["val_images"] == 3 and res["num_classes"] == 8
    assert res["history"][-1]["steps"] == 4
    for r in res["history"]:
        assert 0.0 <= r["mAP50_95"] <= r["mAP50"] <= 100.0 and r["train_loss"] > 0
    md = (out / "results.md").read_text()
    assert sum(line.startswith("|") for line in md.splitlines()) == 2 + 2  # header, rule, one row per epoch
