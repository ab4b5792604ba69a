"""Checkpoint formats: round trips in both released formats and our own, strictness, weights directory."""

from __future__ import annotations

import importlib.util
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from nas.errors import CheckpointError, WeightsNotFoundError
from nas.models import (
    build,
    load_checkpoint,
    load_model,
    read_checkpoint,
    resolve_weights,
    save_checkpoint,
    weights_dir,
)
from nas.models import unpickle as unpickle_mod
from nas.space import ArchConfig, load_arch
from tests.helpers import seeded_fill, seeded_input
from tests.models.sg_fake import write_ultralytics_checkpoints
from tests.models.test_yolo_nas import NON_RELEASED, _tiny

COCO_LIKE = [f"class_{i}" for i in range(80)]


def _outputs(model, x):
    with torch.no_grad():
        return model(x)


def _assert_equal_outputs(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def _assert_same_state(sd, ref):
    assert list(sd) == list(ref)
    for k, v in ref.items():
        assert torch.equal(sd[k], v), k


@pytest.fixture(scope="module")
def s_model(seeded):
    model, _ = seeded("yolo_nas_s")
    return model


@pytest.fixture(scope="module")
def tiny_model():
    arch = ArchConfig.from_dict(_tiny(**NON_RELEASED["concat"], **NON_RELEASED["grouped_heads"]))
    return seeded_fill(build(arch)).eval()


@pytest.fixture(scope="module")
def x_small():
    return seeded_input(320, 320)


@pytest.fixture(scope="module")
def files(tmp_path_factory, s_model, tiny_model):
    """Checkpoints of S and of a tiny non-released arch in the ultralytics pickle format (written by a
    subprocess from throwaway super_gradients modules) and in our own format."""
    root = tmp_path_factory.mktemp("ckpt")
    own_s = save_checkpoint(root / "own_s.pt", s_model, "yolo_nas_s", meta={"class_names": COCO_LIKE})
    own_tiny = save_checkpoint(root / "own_tiny.pt", tiny_model, tiny_model.arch)
    jobs = [
        {"source": str(own_s), "out": str(root / "yolo_nas_s.pt"), "cls": "YoloNAS_S", "era": "3.1.1"},
        {"source": str(own_tiny), "out": str(root / "tiny_ultra.pt"), "cls": "YoloNAS_M", "era": "3.6"},
        {
            "source": str(own_tiny),
            "out": str(root / "tiny_legacy.pt"),
            "cls": "YoloNAS_L",
            "era": "3.1.1",
            "legacy": True,
        },
    ]
    for job in jobs:
        job["class_names"] = COCO_LIKE
    write_ultralytics_checkpoints(jobs, root)
    return {
        "own_s": own_s,
        "own_tiny": own_tiny,
        "ultra_s": root / "yolo_nas_s.pt",
        "ultra_tiny": jobs[1]["out"],
        "ultra_tiny_legacy": jobs[2]["out"],
    }


# ---------------------------------------------------------------- ultralytics pickles


def test_super_gradients_is_not_importable_here():
    assert importlib.util.find_spec("super_gradients") is None


def test_ultralytics_pickle_really_is_a_pickled_super_gradients_model(files):
    with zipfile.ZipFile(files["ultra_s"]) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"super_gradients.training.models.detection_models.yolo_nas.yolo_nas_variants" in data
    assert b"super_gradients.modules.qarepvgg_block" in data and b"QARepVGGBlock" in data
    assert b"id_tensor" in data and b"proj_conv" in data and b"_image_processor" in data
    assert b"drop_path" not in data  # the 3.1.1-era layout of the ultralytics assets
    with pytest.raises(Exception, match="super_gradients"):  # so torch's weights_only loader cannot read it
        torch.load(files["ultra_s"], weights_only=True)


def test_ultralytics_s_round_trip(files, s_model, x_small):
    ckpt = read_checkpoint(files["ultra_s"])
    assert ckpt.format == "ultralytics"
    assert ckpt.arch == load_arch("yolo_nas_s") and ckpt.arch.name == "yolo_nas_s"
    assert ckpt.meta["class_names"] == COCO_LIKE
    assert ckpt.meta["pickled_class"].endswith("yolo_nas_variants.YoloNAS_S")
    _assert_same_state(ckpt.state_dict, s_model.state_dict())  # id_tensor / proj_conv left out, order kept
    model = load_model(files["ultra_s"])
    assert not model.training and model.checkpoint_meta["format"] == "ultralytics"
    _assert_equal_outputs(_outputs(model, x_small), _outputs(s_model, x_small))


def test_ultralytics_s_loads_fused(files, s_model, x_small):
    model = load_model(files["ultra_s"], fuse=True)
    assert model.fusion == "full"
    (boxes, scores), _ = _outputs(model, x_small)
    (ref_boxes, ref_scores), _ = _outputs(s_model, x_small)
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=1e-4)
    torch.testing.assert_close(boxes, ref_boxes, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("key", ["ultra_tiny", "ultra_tiny_legacy"])
def test_ultralytics_pickle_of_a_non_released_arch(files, tiny_model, key):
    assert zipfile.is_zipfile(files[key]) == (key == "ultra_tiny")
    arch, sd = load_checkpoint(files[key])
    assert arch == tiny_model.arch  # inferred from the shapes alone
    _assert_same_state(sd, tiny_model.state_dict())
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    _assert_equal_outputs(_outputs(load_model(files[key]), x), _outputs(tiny_model, x))


# ---------------------------------------------------------------- super-gradients .pth


def _forbid_restricted_unpickler(monkeypatch):
    def fail(*args):
        raise AssertionError("the restricted unpickler was used; this format must load with weights_only=True")

    monkeypatch.setattr(unpickle_mod.Unpickler, "find_class", fail)


def test_super_gradients_pth_prefers_ema_net_and_strips_module_prefix(tmp_path, s_model, x_small, monkeypatch):
    sd = s_model.state_dict()
    stale = OrderedDict((f"module.{k}", torch.zeros_like(v)) for k, v in sd.items())
    path = tmp_path / "yolo_nas_s_coco.pth"
    torch.save(
        {
            "net": stale,
            "ema_net": OrderedDict((f"module.{k}", v) for k, v in sd.items()),
            "acc": torch.tensor(0.475),
            "epoch": 299,
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.1}]},
            "processing_params": {"class_names": COCO_LIKE, "iou": 0.7, "conf": 0.25},
        },
        path,
    )
    _forbid_restricted_unpickler(monkeypatch)
    ckpt = read_checkpoint(path)
    assert ckpt.format == "super-gradients" and ckpt.arch == load_arch("yolo_nas_s")
    assert ckpt.meta == {"source_key": "ema_net", "epoch": 299, "class_names": COCO_LIKE}
    _assert_same_state(ckpt.state_dict, sd)
    _assert_equal_outputs(_outputs(load_model(path), x_small), _outputs(s_model, x_small))


@pytest.mark.parametrize(
    "layout",
    ["net", "net_module_prefix", "ema_only", "ema_none", "bare", "bare_module_prefix", "net_ema_model_prefix"],
)
@pytest.mark.parametrize("legacy", [False, True])
def test_super_gradients_layouts(tmp_path, tiny_model, layout, legacy, monkeypatch):
    sd = tiny_model.state_dict()
    prefixed = OrderedDict((f"module.{k}", v) for k, v in sd.items())
    obj = {
        "net": {"net": sd, "acc": 0.3, "epoch": 1},
        "net_module_prefix": {"net": prefixed},
        "ema_only": {"ema_net": sd},
        "ema_none": {"net": sd, "ema_net": None},
        "bare": sd,
        "bare_module_prefix": prefixed,
        "net_ema_model_prefix": {"net": OrderedDict((f"ema_model.{k}", v) for k, v in sd.items())},
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    _forbid_restricted_unpickler(monkeypatch)
    arch, loaded = load_checkpoint(path)
    assert arch == tiny_model.arch
    _assert_same_state(loaded, sd)


def test_super_gradients_training_checkpoint_with_numpy_metrics(tmp_path, tiny_model):
    # torch's weights_only loader refuses numpy scalars; the restricted unpickler keeps them inert.
    import numpy as np

    path = tmp_path / "ckpt_best.pth"
    sd = tiny_model.state_dict()
    torch.save({"net": sd, "acc": np.float64(0.5), "metrics": {"mAP@0.50": np.float32(0.3)}, "epoch": 7}, path)
    with pytest.raises(Exception, match="numpy"):
        torch.load(path, weights_only=True)
    ckpt = read_checkpoint(path)
    assert ckpt.format == "super-gradients" and ckpt.meta == {"source_key": "net", "epoch": 7}
    _assert_same_state(ckpt.state_dict, sd)


def test_plain_state_dict_of_a_released_model(tmp_path, s_model):
    path = tmp_path / "weights.pt"
    torch.save(s_model.state_dict(), path)
    ckpt = read_checkpoint(path)
    assert ckpt.format == "state_dict" and ckpt.arch.name == "yolo_nas_s"


# ---------------------------------------------------------------- our own format


def test_own_format_round_trip_with_weights_only(files, s_model, x_small, monkeypatch):
    raw = torch.load(files["own_s"], weights_only=True)
    assert set(raw) == {"arch", "state_dict", "meta"}
    assert ArchConfig.from_dict(raw["arch"]) == load_arch("yolo_nas_s") and raw["arch"]["name"] == "yolo_nas_s"
    assert raw["meta"]["class_names"] == COCO_LIKE and raw["meta"]["format_version"] == 1
    _forbid_restricted_unpickler(monkeypatch)
    ckpt = read_checkpoint(files["own_s"])
    assert ckpt.format == "nas" and ckpt.arch.name == "yolo_nas_s"
    _assert_equal_outputs(_outputs(load_model(files["own_s"]), x_small), _outputs(s_model, x_small))


def test_own_format_keeps_what_shapes_cannot_tell(tmp_path):
    d = _tiny(**NON_RELEASED["multipliers"])
    d["backbone"]["context"]["pool_sizes"] = [3, 7]
    d["bn_eps"] = 1e-5
    d["name"] = "my_search_result"
    arch = ArchConfig.from_dict(d)
    path = save_checkpoint(tmp_path / "result.pt", build(arch), arch)
    loaded = load_model(path)
    assert loaded.arch == arch and loaded.arch.name == "my_search_result"
    assert loaded.backbone.context_module.m[0].kernel_size == 3
    assert infer_differs(arch)


def infer_differs(arch: ArchConfig) -> bool:
    """The shapes alone give an equal-shaped but different ArchConfig (what the own format preserves)."""
    from nas.models import expected_shapes, infer_arch

    with torch.device("meta"):
        inferred = infer_arch(build(arch).state_dict())
    return inferred != arch and expected_shapes(inferred) == expected_shapes(arch)


def test_save_refuses_weights_of_another_arch(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match=r"do not fit architecture 'yolo_nas_s'.*\n  missing \(261\): backbone"):
        save_checkpoint(tmp_path / "x.pt", tiny_model, "yolo_nas_s")
    assert not (tmp_path / "x.pt").exists()


def test_save_refuses_non_plain_meta(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match=r"x\.pt: meta\.when: date is not allowed"):
        import datetime

        save_checkpoint(tmp_path / "x.pt", tiny_model, tiny_model.arch, meta={"when": datetime.date.today()})


def test_save_is_atomic(tmp_path, tiny_model, monkeypatch):
    path = save_checkpoint(tmp_path / "keep.pt", tiny_model, tiny_model.arch, meta={"v": 1})
    good = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, tiny_model, tiny_model.arch, meta={"v": 2})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]  # no temp file left behind


def test_recorded_arch_that_does_not_match_its_weights(tmp_path, tiny_model):
    path = tmp_path / "bad.pt"
    sd = dict(tiny_model.state_dict())
    sd.pop("heads.head3.reg_pred.bias")
    sd["heads.head1.cls_pred.weight"] = torch.zeros(5, 16, 1, 1)
    sd["bogus.weight"] = torch.zeros(1)
    torch.save({"arch": tiny_model.arch.to_dict(), "state_dict": sd, "meta": {}}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    text = str(e.value)
    assert str(path) in text and "recorded architecture 'tiny'" in text
    assert "missing (1): heads.head3.reg_pred.bias" in text and "unexpected (1): bogus.weight" in text
    assert "shape mismatch (1): heads.head1.cls_pred.weight: checkpoint [5, 16, 1, 1] vs model [3, 16, 1, 1]" in text


def test_bad_recorded_arch_names_the_field(tmp_path, tiny_model):
    d = tiny_model.arch.to_dict()
    d["backbone"]["stem"]["block"] = "mobile"
    path = tmp_path / "bad_arch.pt"
    torch.save({"arch": d, "state_dict": tiny_model.state_dict(), "meta": {}}, path)
    with pytest.raises(CheckpointError, match=r"bad_arch\.pt: arch: backbone\.stem\.block: got 'mobile'"):
        load_checkpoint(path)


# ---------------------------------------------------------------- strict loading


def test_strict_loading_into_another_arch_lists_the_differences(files):
    from nas.models import expected_shapes

    s, m = expected_shapes(load_arch("yolo_nas_s")), expected_shapes(load_arch("yolo_nas_m"))
    missing, unexpected = [k for k in m if k not in s], [k for k in s if k not in m]
    mismatched = [k for k in m if k in s and m[k] != s[k]]
    assert missing and mismatched and len(mismatched) > 5
    with pytest.raises(CheckpointError) as e:
        load_model(files["own_s"], arch="yolo_nas_m")
    text = str(e.value)
    assert str(files["own_s"]) in text and "'yolo_nas_m'" in text
    assert f"missing ({len(missing)}): {missing[0]}" in text
    assert ("unexpected" in text) == bool(unexpected)
    assert f"shape mismatch ({len(mismatched)}): {mismatched[0]}: checkpoint " in text
    assert f"(+{len(mismatched) - 5} more)" in text  # the first few, then the count
    assert mismatched[5] not in text


def test_unrecognised_content(tmp_path):
    for name, obj in {"list.pt": [1, 2, 3], "dict.pt": {"model": "x", "lr": 0.1}, "empty_dict.pt": {}}.items():
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(CheckpointError, match=rf"{name}: (unrecognised|the file is not a state_dict)"):
            load_checkpoint(path)


# ---------------------------------------------------------------- weights directory


def test_weights_dir_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("NAS_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights_dir() == tmp_path / "home" / ".cache" / "yolo-nas-search" / "weights"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_dir() == tmp_path / "xdg" / "yolo-nas-search" / "weights"
    monkeypatch.setenv("NAS_WEIGHTS_DIR", str(tmp_path / "w"))
    assert weights_dir() == tmp_path / "w"


def test_missing_weights_say_what_to_place_where(monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("yolo_nas_m")
    text = str(e.value)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, CheckpointError)
    for expected in (
        str(tmp_path / "yolo_nas_m.pt"),
        str(tmp_path / "yolo_nas_m_coco.pth"),
        "NAS_WEIGHTS_DIR",
        "https://github.com/ultralytics/assets/releases/download/v8.2.0/yolo_nas_m.pt",
        "super-gradients model zoo: yolo_nas_m_coco.pth",
        "LICENSE.YOLONAS.md",
        "non-commercial",
    ):
        assert expected in text, expected
    with pytest.raises(WeightsNotFoundError, match=r"yolo_nas_l\.pt"):
        load_model("yolo_nas_l")
    with pytest.raises(WeightsNotFoundError, match=re.escape(str(tmp_path / "yolo_nas_s_coco.pth"))):
        load_checkpoint("yolo_nas_s_coco.pth")


def test_released_names_resolve_in_the_weights_dir(monkeypatch, tmp_path, files, s_model, x_small):
    monkeypatch.setenv("NAS_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "yolo_nas_s_coco.pth").symlink_to(files["own_s"])
    assert resolve_weights("yolo_nas_s") == tmp_path / "yolo_nas_s_coco.pth"
    (tmp_path / "yolo_nas_s.pt").symlink_to(files["ultra_s"])
    assert resolve_weights("yolo_nas_s") == tmp_path / "yolo_nas_s.pt"  # the ultralytics name comes first
    model = load_model("yolo_nas_s")
    assert model.checkpoint_meta["format"] == "ultralytics"
    _assert_equal_outputs(_outputs(model, x_small), _outputs(s_model, x_small))
    assert load_checkpoint("yolo_nas_s_coco.pth")[0].name == "yolo_nas_s"


def test_unknown_names_and_missing_paths(tmp_path):
    with pytest.raises(CheckpointError, match="unknown released model 'yolo_nas_xl'"):
        resolve_weights("yolo_nas_xl")
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(missing))}: no such checkpoint file"):
        load_checkpoint(missing)
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


def test_path_objects_and_strings_both_work(files):
    assert load_checkpoint(str(files["own_tiny"]))[0] == load_checkpoint(Path(files["own_tiny"]))[0]


def _rot(path: Path, nbytes: int = 4096) -> str:
    """Overwrite `nbytes` inside the largest tensor's data in a torch.save zip, as a disk error would; its name."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        f.seek(info.header_offset + 30 + name_len + extra_len + min(1024, info.file_size // 4))
        f.write(bytes(range(256)) * (nbytes // 256))
    return info.filename


def test_bit_rot_in_the_weights_is_refused_on_load(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model, tiny_model.arch)
    assert len(torch.load(path, weights_only=True)["meta"]["weights_sha256"]) == 64
    load_checkpoint(path)  # the intact file loads
    _rot(path)
    torch.load(path, weights_only=True)  # torch itself reads the damaged file without complaint
    with pytest.raises(CheckpointError, match=r"checksum.*damaged"):
        load_checkpoint(path)


def test_a_file_written_before_checksums_still_loads(tmp_path, tiny_model):
    path = tmp_path / "old.pt"
    torch.save({"arch": tiny_model.arch.to_dict(), "state_dict": tiny_model.state_dict(), "meta": {}}, path)
    assert load_checkpoint(path)[0] == tiny_model.arch
