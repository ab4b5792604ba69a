"""`nas train key=value ...`: keys from TrainOptions, a run directory, the best.pt path printed."""

from __future__ import annotations

import json

from nas.cli import main
from nas.io import dump_yaml
from tests.zoo_helpers import tiny_arch


def test_nas_train_from_an_architecture_yaml(tiny_data, tmp_path, capsys):
    yaml = tmp_path / "tiny.yaml"
    yaml.write_text(dump_yaml(tiny_arch(80).to_dict()))
    args = [f"model={yaml}", "resume=false", f"data={tiny_data}", "epochs=1", "imgsz=64", "batch=4", "workers=0",
            f"project={tmp_path / 'runs'}", "verbose=false", "plots=false"]  # fmt: skip
    assert main(["train", *args]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["best"] == str(tmp_path / "runs" / "train" / "exp" / "best.pt") and out["epoch"] == 1
    assert 0 <= out["mAP50_95"] <= out["mAP50"] <= 100
    assert (tmp_path / "runs" / "train" / "exp" / "results.csv").is_file()


def test_nas_train_rejects_bad_keys_and_values(capsys):
    assert main(["train", "lr=0.1"]) == 2
    assert "unknown key 'lr' for nas train" in capsys.readouterr().err
    assert main(["train", "imgsz=100"]) == 2
    assert "imgsz: got 100; expected a positive multiple of 32" in capsys.readouterr().err
    assert main(["train", "amp=fp8"]) == 2
    assert "amp='fp8': expected one of auto, bf16, fp16, off" in capsys.readouterr().err
