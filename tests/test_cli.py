"""`nas MODE key=value`: typed parsing, errors (exit 2, no traceback), run directories, each mode end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from nas.cli import MODES, increment_dir, main, parse_args
from nas.data.synthetic_render import CLASSES
from nas.errors import ConfigError
from tests.zoo_helpers import make_checkpoint, write_image

SYNTHETIC_NAMES = list(CLASSES)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("cli") / "tiny.pt", 8, SYNTHETIC_NAMES)


def test_parse_typed_values_and_defaults():
    mode, args = parse_args(["predict", "conf=0.3", "imgsz=320", "half=true", "classes=0,2", "device=none"])
    assert mode == "predict"
    assert (args["conf"], args["imgsz"], args["half"], args["classes"], args["device"]) == (
        0.3,
        320,
        True,
        [0, 2],
        None,
    )
    assert args["iou"] == 0.7 and args["max_det"] == 300 and args["model"] == "yolo_nas_s"
    assert parse_args(["val"])[1]["data"] == "auto"
    assert parse_args([]) == ("help", {})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "foo=1"], "unknown key 'foo' for nas predict; valid keys: model, weights, source"),
        (["predict", "imgsz=abc"], "imgsz='abc': expected an integer"),
        (["val", "half=maybe"], "half='maybe': expected true or false"),
        (["val", "protocol=coco"], "protocol='coco': expected one of ultralytics, sg"),
        (["export", "opset"], "is not key=value"),
        (
            ["fit"],
            "unknown mode 'fit'; valid modes: predict, train, val, info, latency, benchmark, export, search, space, supernet, help",
        ),
        (["latency", "measure=sometimes"], "measure='sometimes': expected true or false"),
    ],
)
def test_bad_arguments_exit_2_with_valid_choices(argv, message, capsys):
    with pytest.raises(ConfigError) as err:
        parse_args(argv)
    assert message in str(err.value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_help_lists_modes_and_keys(capsys):
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    for name, mode in MODES.items():
        assert f"nas {name} keys:" in out
        assert all(f"{key}=" in out for key in mode.keys)


def test_python_dash_m_nas_entry_point():
    done = subprocess.run([sys.executable, "-m", "nas", "predict", "bogus=1"], capture_output=True, text=True)
    assert done.returncode == 2 and "valid keys" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "nas", "help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: nas MODE" in done.stdout


def test_increment_dir(tmp_path):
    assert increment_dir(tmp_path / "exp") == tmp_path / "exp"
    assert increment_dir(tmp_path / "exp") == tmp_path / "exp2"
    assert increment_dir(tmp_path / "exp") == tmp_path / "exp3"
    assert increment_dir(tmp_path / "exp", exist_ok=True) == tmp_path / "exp"


def test_predict_writes_a_fresh_run_dir(ckpt, tmp_path, capsys):
    src = tmp_path / "src"
    write_image(src / "a.jpg", 240, 320, seed=1)
    write_image(src / "b.jpg", 200, 200, seed=2)
    argv = ["predict", f"model={ckpt}", f"source={src}", "imgsz=128", "conf=0.2", f"project={tmp_path / 'runs'}"]
    assert main(argv) == 0
    run = tmp_path / "runs" / "predict" / "exp"
    assert sorted(p.name for p in run.iterdir()) == ["a.jpg", "b.jpg", "predictions.json", "predictions.jsonl"]
    records = json.loads((run / "predictions.json").read_text())
    assert [r["orig_shape"] for r in records] == [[240, 320], [200, 200]]
    assert all(d["name"] in SYNTHETIC_NAMES for r in records for d in r["detections"])
    out = capsys.readouterr().out
    assert "image 1 " in out
    assert "2 image(s) at imgsz 128. The first image is slower: PyTorch" in out, "the slow first image is explained"
    assert "fused='full'" in out  # predict runs the re-parameterized network (S at 640: 279 -> 246 ms)
    assert main([*argv, "save=false"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "predict" / "exp2").iterdir()) == [
        "predictions.json",
        "predictions.jsonl",
    ]


def test_predict_keeps_the_results_before_and_after_a_bad_image(ckpt, tmp_path, capsys):
    src = tmp_path / "src"
    write_image(src / "a.jpg", 240, 320, seed=1)
    (src / "b.jpg").write_bytes(b"not an image")
    write_image(src / "c.jpg", 200, 200, seed=2)
    argv = ["predict", f"model={ckpt}", f"source={src}", "imgsz=128", "batch=2", f"project={tmp_path / 'runs'}"]
    assert main(argv) == 1
    run = tmp_path / "runs" / "predict" / "exp"
    records = json.loads((run / "predictions.json").read_text())
    assert [r["path"] for r in records] == [str(src / "a.jpg"), str(src / "c.jpg")]
    lines = (run / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records, "written as it goes, one line per image"
    assert sorted(p.name for p in run.glob("*.jpg")) == ["a.jpg", "c.jpg"]
    err = capsys.readouterr().err
    assert "1 of 3 images unreadable" in err and str(src / "b.jpg") in err and "Traceback" not in err


def test_runs_that_fail_before_any_result_leave_no_run_dir(ckpt, tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "x.jpg").write_bytes(b"garbage")
    assert main(["predict", f"model={ckpt}", f"source={src}", f"project={tmp_path / 'runs'}"]) == 1
    assert main(["val", f"model={ckpt}", "half=true", f"project={tmp_path / 'runs'}"]) == 2  # fp16 needs CUDA
    assert not (tmp_path / "runs" / "predict").exists() or not any((tmp_path / "runs" / "predict").iterdir())
    assert not any((tmp_path / "runs" / "val").glob("exp*"))


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_mode_help_lists_that_modes_keys(flag, capsys):
    assert main(["predict", flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nas predict key=value") and all(f"{k}=" in out for k in MODES["predict"].keys)
    assert "nas val keys" not in out
    assert main(["help", "val"]) == 0 and "protocol=" in capsys.readouterr().out


def test_help_names_each_default_once(capsys):
    assert main(["help"]) == 0
    for line in capsys.readouterr().out.splitlines():
        assert not ("(default" in line and "[default:" in line), line


def test_val_info_export_modes(ckpt, tmp_path, capsys):
    project = f"project={tmp_path / 'runs'}"
    assert main(["val", f"model={ckpt}", "imgsz=128", "batch=16", project]) == 0
    metrics = json.loads((tmp_path / "runs" / "val" / "exp" / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP50_95"] <= 1.0 and metrics["protocol"] == "ultralytics"
    assert main(["info", f"model={ckpt}", "imgsz=64", "fuse=true"]) == 0
    assert "fused: full" in capsys.readouterr().out
    onnx_file = tmp_path / "out" / "m.onnx"
    assert main(["export", f"model={ckpt}", "imgsz=64", "nms=true", f"file={onnx_file}"]) == 0
    out = capsys.readouterr().out
    assert onnx_file.is_file() and "matches torch" in out
    assert out.index("exporting ") < out.index("matches torch"), "the export says what it is doing first"


def test_runtime_errors_have_no_traceback(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAS_WEIGHTS_DIR", str(tmp_path))
    assert main(["info", "model=yolo_nas_s"]) == 1  # released weights absent: say where to put them
    err = capsys.readouterr().err
    assert "Place" in err and "Traceback" not in err
    assert main(["predict", f"model={ckpt}", f"source={tmp_path / 'none.jpg'}", f"project={tmp_path}"]) == 1
    assert "does not exist" in capsys.readouterr().err
    for mode in ("predict", "val", "info", "export"):
        assert (
            main([mode, f"model={ckpt}", "imgsz=100", f"project={tmp_path}"][: 3 if mode in ("info", "export") else 4])
            == 2
        )
        assert "multiple of 32" in capsys.readouterr().err
    assert main(["predict", f"model={ckpt}", "conf=2", f"project={tmp_path}"]) == 2
    assert "conf=2.0: expected a number in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "predict").exists() and not (tmp_path / "val").exists()  # no empty run dirs
    if not torch.cuda.is_available():
        assert main(["info", f"model={ckpt}", "device=cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_info_and_latency_modes_predict_on_a_hardware_target(capsys):
    from nas.latency import load_hardware
    from nas.latency.tables import LatencyTable

    table = LatencyTable.load(load_hardware("cpu_ort"))  # shipped: a missing table fails here
    assert table.data.get("calibration", {}).get("fit"), "the shipped cpu_ort.json has no calibration"
    assert main(["latency", "model=yolo_nas_s"]) == 0
    out = capsys.readouterr().out
    assert "yolo_nas_s on cpu_ort: predicted" in out and " ms " in out
    assert main(["info", "model=yolo_nas_s.yaml", "imgsz=64", "hardware=cpu_ort"]) == 0
    assert "ms predicted on cpu_ort (onnxruntime fp32, 640x640, batch 1)" in capsys.readouterr().out
    assert main(["latency", "model=yolo_nas_s", "hardware=tpu9"]) == 2
    err = capsys.readouterr().err
    assert "tpu9" in err and "cpu_ort" in err and "Traceback" not in err


def test_space_and_search_modes_pass_arguments_through():
    done = subprocess.run([sys.executable, "-m", "nas", "space", "+space=yolo_nas"], capture_output=True, text=True)
    assert done.returncode == 0 and "backbone.stages.0.num_blocks" in done.stdout
    done = subprocess.run([sys.executable, "-m", "nas", "search", "n_trials=1"], capture_output=True, text=True)
    assert done.returncode != 0 and "yolo_nas" in done.stderr and "Traceback" not in done.stderr


def test_a_binary_file_named_yaml_is_one_line(tmp_path, capsys):
    binary = tmp_path / "model.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary")
    assert main(["info", f"model={binary}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{binary}: not a text file" in err and "UnicodeDecodeError" not in err
    assert main(["val", f"data={binary}", f"project={tmp_path / 'runs'}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{binary}: not a text file" in err


def test_a_run_name_over_255_bytes_is_refused_before_anything_runs(tmp_path, capsys):
    for mode in ("val", "predict", "train"):
        assert main([mode, "name=" + "x" * 300, f"project={tmp_path}"]) == 2
        err = capsys.readouterr().err
        assert "name: got 'xxxxxxxxxxxxxxxxxxxx...xxxxxxxxxx (300 bytes)'; expected a folder name of at most 255" in err
    assert not any(tmp_path.iterdir())


def test_errors_of_the_machine_are_one_line_naming_cause_and_fix():
    import errno

    from nas.io import machine_error_text

    full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    full.__context__ = OSError(errno.ENOSPC, "No space left on device", "runs/train/exp/last.pt")
    assert machine_error_text(full).startswith("no space left on the device writing runs/train/exp/last.pt")
    long = OSError(errno.ENAMETOOLONG, "File name too long", "runs/x")
    assert "shorten name= / project=" in machine_error_text(long)
    assert machine_error_text(ValueError("a bug")) is None  # anything else keeps its traceback


def test_bare_val_picks_a_dataset_of_the_models_classes(tmp_path, ckpt, capsys):
    coco_like = make_checkpoint(tmp_path / "coco80.pt", 80)  # 80 classes, as the released S/M/L
    assert main(["val", f"model={coco_like}", f"project={tmp_path / 'runs'}"]) == 1
    err = capsys.readouterr().err
    assert "coco8 'val' images are not under the datasets root" in err  # the data it needs, and where to put it
    assert "80 classes but the dataset has 8" not in err and "not for the 80-class released weights" in err
    assert main(["val", f"model={ckpt}", "imgsz=64", f"project={tmp_path / 'runs'}"]) == 0  # synthetic's 8 classes
    assert "mAP50-95" in capsys.readouterr().out
