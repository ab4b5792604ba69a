"""nas.proxy.train: BatchNorm re-estimation for inherited (sliced) weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.data import load_dataset
from nas.data.synthetic import SyntheticSpec, ensure_synthetic
from nas.errors import ConfigError
from nas.models import build
from nas.proxy.train import TrainedProxy, recalibrate_bn
from tests.zoo_helpers import tiny_arch


def test_recalibrate_bn_replaces_stale_statistics_from_forward_passes_only(tmp_path):
    data = ensure_synthetic(tmp_path, SyntheticSpec(seed=3, n_train=6, n_val=2)) / "synthetic.yaml"
    ds = load_dataset(str(data), "train")
    torch.manual_seed(0)
    model = build(tiny_arch(len(ds.category_ids), "tiny")).eval()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:  # the statistics of another network (as sliced from a parent)
        m.running_mean.fill_(50.0)
        m.running_var.fill_(1e-4)
    momenta = [m.momentum for m in bns]
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    assert recalibrate_bn(model, ds, imgsz=64, n_images=5, batch=2) == 5
    assert [m.momentum for m in bns] == momenta and None not in momenta, "each BatchNorm's momentum is restored"
    assert not model.training, "the model's mode is restored"
    for m in bns:
        assert torch.isfinite(m.running_mean).all() and (m.running_mean != 50.0).any() and (m.running_var > 1e-4).all()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights.items()), "no weight moves: no gradient step"


def test_bn_images_must_not_be_negative():
    with pytest.raises(ConfigError, match="bn_images"):
        TrainedProxy(epochs=0, bn_images=-1)
