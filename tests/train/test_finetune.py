"""Fine-tuning: released-format weights onto another number of classes, inherited weights for another architecture."""

from __future__ import annotations

import torch

from nas import NAS
from nas.io import dump_yaml
from nas.models import build
from nas.space import ArchConfig
from nas.train.finetune import adapt_classes
from tests.zoo_helpers import tiny_arch


def _released_format(path, num_classes=80, seed=1):
    """A super-gradients-format checkpoint (`net` / `ema_net`, as the model zoo's .pth files) of the tiny arch."""
    torch.manual_seed(seed)
    sd = build(tiny_arch(num_classes)).state_dict()
    torch.save({"net": sd, "ema_net": sd, "epoch": 299}, path)
    return path, sd


def test_adapt_classes_keeps_everything_but_the_class_layers(tmp_path):
    _path, sd = _released_format(tmp_path / "w.pth")
    model = build(tiny_arch(80))
    model.load_state_dict(sd)
    new, report = adapt_classes(model, 3)
    assert report.reinitialized == ("heads.head1.cls_pred", "heads.head2.cls_pred", "heads.head3.cls_pred")
    assert (report.old_classes, report.new_classes) == (80, 3) and "80 -> 3 classes" in report.summary()
    out = new.state_dict()
    for k, v in sd.items():
        if ".cls_pred." in k:
            assert out[k].shape[0] == 3
        else:
            assert torch.equal(out[k], v), k
    assert report.loaded == len(out) - 6
    assert adapt_classes(new, 3) == (new, None)


def test_fine_tune_released_weights_onto_the_datasets_classes(tmp_path, fast, capsys):
    path, sd = _released_format(tmp_path / "yolo_fake_coco.pth")
    model = NAS(path)
    assert model.arch.num_classes == 80
    result = model.train(**{**fast.to_dict(), "val": True, "verbose": True})
    out = capsys.readouterr().out
    assert "re-initialized: heads.head1.cls_pred, heads.head2.cls_pred, heads.head3.cls_pred" in out
    assert result.adaptation.reinitialized == ("heads.head1.cls_pred", "heads.head2.cls_pred", "heads.head3.cls_pred")
    assert model.arch.num_classes == 8 and model.names[0] == "circle" and model.ckpt_path == result.best
    assert result.best.is_file() and 0 <= result.metrics["mAP50_95"] <= 1
    # one epoch moved the weights away from the released ones, starting from them
    key = next(k for k in sd if k.startswith("backbone.") and k.endswith("conv.weight") and "rbr_reparam" not in k)
    assert not torch.equal(model.model.state_dict()[key].cpu(), sd[key])


def test_fine_tune_a_searched_architecture_from_inherited_weights(tmp_path, fast, capsys):
    path, _sd = _released_format(tmp_path / "source.pth")
    a = tiny_arch(80, name="searched").to_dict()
    a["backbone"]["stages"][2]["out_channels"] = 16  # narrower than the source (24): weights are sliced
    yaml = tmp_path / "searched.yaml"
    yaml.write_text(dump_yaml(ArchConfig.from_dict(a).to_dict()))
    model = NAS(yaml)
    result = model.train(**{**fast.to_dict(), "weights": str(path), "val": False})
    assert "inherited from" in capsys.readouterr().out
    assert not model.inherited.exact and model.inherited.params_inherited > 0  # sliced from the wider source
    assert result.adaptation.new_classes == 8
    assert result.best.is_file() and model.arch.backbone.stages[2].out_channels == 16
