"""The trainer end to end on tiny settings: outputs, checkpoints, guards and bad input."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.data import DataWarning
from nas.errors import CheckpointError, ConfigError, DataError, TrainingError
from nas.models import build, load_model, read_checkpoint
from nas.space import ArchConfig
from nas.train.run import train
from nas.train.state import read_train_state
from tests.zoo_helpers import tiny_arch, write_image


def _model(nc: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return build(tiny_arch(nc))


def test_run_writes_checkpoints_curves_and_summary(fast):
    result = train(_model(), fast.replace(epochs=2, plots=True))
    run = result.run_dir
    assert run.name == "exp" and result.best == run / "best.pt" and result.last == run / "last.pt"
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0 <= float(r["mAP50_95"]) <= float(r["mAP50"]) <= 1 for r in rows)  # fractions, as nas val
    assert (run / "results.png").stat().st_size > 1000 and "| all |" in (run / "summary.md").read_text()
    steps = (run / "steps.csv").read_text().splitlines()
    assert len(steps) == 1 + 16  # header + 8 steps per epoch
    # best.pt / last.pt are ordinary checkpoints of the project's format holding the EMA weights
    ckpt = read_checkpoint(run / "best.pt")
    assert ckpt.format == "nas" and ckpt.meta["class_names"][0] == "circle" and ckpt.arch.num_classes == 8
    last = read_checkpoint(run / "last.pt").state_dict
    assert all(torch.equal(last[k], v.cpu()) for k, v in result.model.state_dict().items())  # the EMA weights
    model = load_model(run / "last.pt")
    assert model.num_classes == 8
    _arch, meta, state = read_train_state(run / "last.pt")
    assert state["epoch"] == 2 and state["batch"] == 0 and state["global_step"] == 16 and meta["train"]["epoch"] == 2
    assert result.metrics["epoch"] in (1, 2) and "per_class" in result.metrics
    # a second run increments the directory like ultralytics
    again = train(_model(), fast.replace(val=False))
    assert again.run_dir.name == "exp2" and again.best is not None


def test_val_period_validates_every_n_epochs_and_after_the_last(fast):
    result = train(_model(), fast.replace(epochs=3, val_period=2))
    assert ["mAP50_95" in r for r in result.history] == [False, True, True]
    assert read_checkpoint(result.best).meta["train"]["epoch"] in (2, 3), "best.pt only at a validated epoch"
    with pytest.raises(ConfigError, match="val_period"):
        fast.replace(val_period=0)


def test_non_finite_losses_skip_steps_then_stop_with_where_and_why(fast):
    model = _model()
    with torch.no_grad():
        model.heads.head1.cls_pred.weight.fill_(float("inf"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TrainingError, match=r"3 consecutive non-finite steps, the last at epoch 1, batch 2 .*lr0"):
            train(model, fast.replace(max_bad_steps=3, val=False))
    skipped = [w for w in caught if "step skipped" in str(w.message)]
    assert len(skipped) == 3 and "epoch 1, batch 0" in str(skipped[0].message)


def test_cuda_out_of_memory_suggests_a_smaller_batch(fast, monkeypatch):
    model = _model()

    def oom(_x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "forward", oom)  # the allocation failure itself needs a GPU
    with pytest.raises(
        TrainingError, match=r"out of memory at epoch 1, batch 0 \(batch=2.*smaller batch \(e.g. batch=1\)"
    ):
        train(model, fast.replace(val=False))


def test_batch_larger_than_the_dataset(fast):
    with pytest.raises(ConfigError, match="batch=32 is larger than the 16 training images; use batch<=16"):
        train(_model(), fast.replace(batch=32, val=False))
    assert not (Path(fast.project) / "train" / "exp").exists()  # no empty run directory left behind


def _yolo_set(root, rows: dict[str, str | None], names=("a", "b")):
    """A YOLO-format set: image name -> label file text (None: no label file)."""
    for i, (stem, text) in enumerate(rows.items()):
        write_image(root / "images" / "train" / f"{stem}.jpg", 48, 64, seed=i)
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames: {list(names)}\n")
    return yaml


def test_label_id_beyond_the_names_is_skipped_with_a_warning_naming_file_and_line_as_in_val(tmp_path, fast):
    data = _yolo_set(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.3 0.3\n5 0.2 0.2 0.1 0.1\n"})
    with pytest.warns(
        DataWarning, match=r"1 objects of an unknown category.*b\.txt:2: '5 0\.2 0\.2 0\.1 0\.1'.*0\.\.1"
    ):
        result = train(_model(2), fast.replace(data=str(data), val=False))
    assert result.history[0]["steps"] == 1


def test_a_jpeg_truncated_after_its_header_is_skipped_not_fatal_in_training_and_val(tmp_path, fast):
    from tests.data.test_images import photo, truncate_after_header

    rows = {"a": "0 0.5 0.5 0.4 0.4\n", "b": "1 0.5 0.5 0.3 0.3\n", "c": "0 0.3 0.3 0.2 0.2\n"}
    data = _yolo_set(tmp_path / "set", rows)
    truncate_after_header(photo(tmp_path / "set" / "images" / "train" / "b.jpg", 64, 48))
    with pytest.warns(DataWarning, match=r"\[unreadable_image\].*b\.jpg"):
        result = train(_model(2), fast.replace(data=str(data), project=str(tmp_path / "r")))
    assert result.history[0]["steps"] == 1 and "mAP50_95" in result.history[0]  # trained and validated


def test_background_images_and_degenerate_boxes(tmp_path, fast):
    rows = {"a": "0 0.5 0.5 0.4 0.4\n", "b": None, "c": "1 0.5 0.5 0.0 0.3\n1 0.3 0.3 0.2 0.2\n", "d": ""}
    data = _yolo_set(tmp_path / "set", rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(_model(2), fast.replace(data=str(data), val=False, project=str(tmp_path / "r")))
    degenerate = [w for w in caught if "[degenerate_box]" in str(w.message)]
    assert len(degenerate) == 1 and "1 boxes with zero or negative size" in str(degenerate[0].message)
    assert result.history[0]["steps"] == 2  # the two background images train too


def test_data_yaml_with_a_missing_train_folder_names_it(tmp_path, fast):
    yaml = tmp_path / "data.yaml"
    yaml.write_text(f"path: {tmp_path}\ntrain: images/nowhere\nval: images/nowhere\nnames: [a]\n")
    with pytest.raises(DataError, match="images/nowhere"):
        train(_model(1), fast.replace(data=str(yaml)))


def test_resume_refuses_another_architecture_and_plain_checkpoints(fast, tmp_path):
    result = train(_model(), fast.replace(val=False))
    a = tiny_arch(8, name="other").to_dict()
    a["backbone"]["stem"]["out_channels"] = 16
    other = build(ArchConfig.from_dict(a))
    with pytest.raises(CheckpointError, match=r"architecture 'tiny'.*the model to resume is 'other'"):
        train(other, fast.replace(resume=str(result.last)))
    from nas.models import save_checkpoint

    plain = save_checkpoint(tmp_path / "plain.pt", _model(), tiny_arch(8))
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        train(None, fast.replace(resume=str(plain)))


def test_frozen_backbone_stays_put_for_the_frozen_epochs(fast):
    model = _model()
    start = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    seen = []
    fast = fast.replace(epochs=2, freeze_epochs=1, val=False, ema_decay=0.0)
    train(model, fast, save=False, on_epoch=lambda row, m: seen.append({k: v.clone() for k, v in m.backbone.state_dict().items()}))  # fmt: skip
    assert all(torch.equal(start[k], seen[0][k]) for k in start)  # weights and BN statistics
    assert not all(torch.equal(start[k], seen[1][k]) for k in start)
    heads = model.heads.head1.cls_pred.weight
    assert heads.requires_grad


def test_options_are_checked_once(fast, monkeypatch):
    """One check per option, in TrainOptions: a bad value gets the same message whichever way the options are
    given (constructor, `key=value` arguments, a mapping, `NAS.train` keywords), and a run does not check again."""
    from nas.options import from_args, from_dict, merge
    from nas.train.options import TrainOptions

    builds = (
        lambda: TrainOptions(imgsz=100),
        lambda: from_args(TrainOptions, ["imgsz=100"], "train"),
        lambda: from_dict(TrainOptions, {"imgsz": 100}),
        lambda: merge(TrainOptions, None, {"imgsz": 100}, "NAS.train"),
    )
    messages = set()
    for build_options in builds:
        with pytest.raises(ConfigError) as e:
            build_options()
        messages.add(str(e.value))
    assert messages == {"imgsz: got 100; expected a positive multiple of 32 (e.g. 640)"}
    checks = []
    post_init = TrainOptions.__post_init__
    monkeypatch.setattr(TrainOptions, "__post_init__", lambda self: (checks.append(self), post_init(self))[1])
    opts = fast.replace(val=False)
    assert len(checks) == 1
    train(_model(), opts, save=False)
    assert len(checks) == 1, "train() checked its options again"
    with pytest.raises(ConfigError, match="imgsz: got 100; expected a positive multiple of 32"):
        TrainOptions(imgsz=100)
    with pytest.raises(ConfigError, match="amp: got 'fp8'; expected one of auto, bf16, fp16, off"):
        TrainOptions(amp="fp8")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['lr'\]"):
        TrainOptions().replace(lr=1.0)
    assert TrainOptions(resume="true").resume is True and TrainOptions(resume="a/last.pt").resume == "a/last.pt"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_on_cuda(fast, amp):
    result = train(_model(), fast.replace(device="cuda", amp=amp, val=False))
    assert np.isfinite(result.history[0]["loss"])


def test_wandb_logger_runs_offline(fast, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = train(_model(), fast.replace(logger="wandb", val=False))
    offline = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].rglob("*.wandb"))


def test_resume_takes_workers_and_verbose_from_the_run_not_from_the_defaults(fast):
    from nas.train.options import TrainOptions

    class Preempted(Exception):
        pass

    def preempt(row, model):
        raise Preempted

    with pytest.raises(Preempted):  # killed after epoch 1 of 2 (last.pt is written before on_epoch)
        train(_model(), fast.replace(epochs=2, val=False, workers=0, verbose=False), on_epoch=preempt)
    last = fast.project + "/train/exp/last.pt"
    assert TrainOptions().workers != 0 and TrainOptions().verbose is True  # the command line's defaults
    lines: list[str] = []
    result = train(None, TrainOptions(resume=last), log=lines.append)
    _arch, _meta, state = read_train_state(result.last)
    assert state["epoch"] == 2 and state["options"]["workers"] == 0 and state["options"]["verbose"] is False
    assert lines == []  # verbose=false kept: nothing printed


def test_an_image_damaged_after_loading_does_not_stop_training(tmp_path, fast):
    from nas.train.run import load_train_split
    from tests.data.test_images import photo, truncate_after_header

    rows = {"a": "0 0.5 0.5 0.4 0.4\n", "b": "1 0.5 0.5 0.3 0.3\n", "c": "0 0.3 0.3 0.2 0.2\n", "d": ""}
    data = _yolo_set(tmp_path / "set", rows)
    ds = load_train_split(str(data))  # checked and clean at load
    truncate_after_header(photo(tmp_path / "set" / "images" / "train" / "b.jpg", 64, 48))  # then damaged
    with pytest.warns(DataWarning, match=r"b\.jpg.*grey image without objects"):
        result = train(_model(2), fast.replace(val=False, mosaic=0.0, project=str(tmp_path / "r")), train_data=ds)
    assert result.history[0]["steps"] == 2 and np.isfinite(result.history[0]["loss"])
