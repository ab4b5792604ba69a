"""`nas train key=value ...`: keys from TrainOptions, a run directory, the best.pt path printed."""

from __future__ import annotations

import csv
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
    assert 0 <= out["mAP50_95"] <= out["mAP50"] <= 1 and out["scale"] == "fraction"  # as nas val prints it
    run = tmp_path / "runs" / "train" / "exp"
    row = next(csv.DictReader((run / "results.csv").open()))  # the trainer's own record, on the same scale
    assert out["mAP50_95"] == float(row["mAP50_95"])
    assert f"| all | {out['mAP50_95']:.4f} |" in (run / "summary.md").read_text()


def test_nas_train_rejects_bad_keys_and_values(capsys):
    assert main(["train", "lr=0.1"]) == 2
    assert "unknown key 'lr' for nas train" in capsys.readouterr().err
    assert main(["train", "imgsz=100"]) == 2
    assert "imgsz: got 100; expected a positive multiple of 32" in capsys.readouterr().err
    assert main(["train", "amp=fp8"]) == 2
    assert "amp='fp8': expected one of auto, bf16, fp16, off" in capsys.readouterr().err


def _train_cmd(tiny_data, tmp_path, project, epochs: int) -> list[str]:
    import sys

    yaml = tmp_path / "tiny.yaml"
    yaml.write_text(dump_yaml(tiny_arch(80).to_dict()))
    return [sys.executable, "-m", "nas", "train", f"model={yaml}", f"data={tiny_data}", f"epochs={epochs}",
            "imgsz=64", "batch=2", "workers=0", f"project={project}", "verbose=true", "plots=false"]  # fmt: skip


def test_ctrl_c_in_nas_train_is_one_line_and_exit_130(tiny_data, tmp_path):
    import signal
    import subprocess
    import time

    from tests.train.conftest import ROOT

    # epochs=2000: a tiny epoch takes under a second, so 50 could all finish before the signal lands (CI saw it)
    # A pytest-xdist worker ignores SIGINT and a child inherits that (Python then installs no KeyboardInterrupt):
    # the child starts with the default disposition, as from a terminal
    proc = subprocess.Popen(_train_cmd(tiny_data, tmp_path, tmp_path / "runs", epochs=2000), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 240
    while not (tmp_path / "runs" / "train" / "exp" / "last.pt").exists():  # training for real, an epoch written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    assert proc.poll() is None, "the training ended before the signal"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "nas train: interrupted (Ctrl-C); last.pt of the last finished epoch is kept" in err


def test_a_full_disk_during_training_is_one_line(tiny_data, tmp_path):
    """A real full disk: a 512 KiB tmpfs as project= (in a private mount namespace), too small for last.pt."""
    from tests.helpers import run_on_small_tmpfs
    from tests.train.conftest import ROOT

    disk = tmp_path / "disk"
    run = run_on_small_tmpfs(_train_cmd(tiny_data, tmp_path, disk, epochs=1), disk, "512k", ROOT, timeout=300)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("nas train: error:")]
    assert "no space left on the device writing" in line and "last.pt" in line and "project=" in line
