"""nas.proxy.train: BatchNorm re-estimation for inherited (sliced) weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.data import load_dataset
from nas.data.synthetic import SyntheticSpec, ensure_synthetic
from nas.errors import ConfigError
from nas.models import build
from nas.proxy.train import inherit_score, proxy_options, recalibrate_bn
from nas.train.run import train as nas_train
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
        inherit_score(tiny_arch(2, "tiny"), "never-read.pt", proxy_options(epochs=0), bn_images=-1)


def test_the_proxy_preset_is_the_trainers_options_with_epochs_0_as_a_mode():
    opts = proxy_options(epochs=0, imgsz=160, seed=3)
    assert (opts.epochs, opts.imgsz, opts.seed, opts.batch, opts.lr0, opts.workers, opts.device) == (
        0, 160, 3, 8, 1e-3, 0, "cpu",
    )  # fmt: skip
    assert (opts.warmup_epochs, opts.val_period, opts.close_mosaic) == (0.5, 1, 0)  # as the proxy's one epoch
    four = proxy_options(epochs=4)
    assert (four.warmup_epochs, four.val_period) == (1.0, 4), "the warm-up and the one validation follow epochs"
    with pytest.raises(ConfigError, match="imgsz"):
        proxy_options(imgsz=100)  # the trainer's own check
    with pytest.raises(ConfigError, match="epochs=0: nothing to train"):
        nas_train(None, opts)  # the trainer itself does not run epochs=0
