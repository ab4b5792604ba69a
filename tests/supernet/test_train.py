"""Supernet training: the trainer's run with the sandwich step, its checkpoints, resume and starting weights."""

from __future__ import annotations

import pytest
import torch

from nas.errors import CheckpointError
from nas.models import build, save_checkpoint
from nas.supernet import Sandwich, SupernetOptions, load_supernet, train_supernet
from nas.supernet.plan import with_classes

FAST = dict(imgsz=64, batch=4, workers=0, device="cpu", plots=False, verbose=False)


def test_sandwich_draws_largest_smallest_and_seeded_randoms(supernet):
    s = Sandwich(supernet, SupernetOptions(random_subnets=2), seed=3)
    a, b = s.archs(5), s.archs(5)
    assert a == b and len(a) == 4 and a[0] == supernet.largest and a[1] == supernet.smallest
    assert s.archs(6)[2:] != a[2:]


def test_training_writes_supernet_checkpoints_that_load_back(tiny_space_path, tiny_data, tmp_path):
    result = train_supernet(tiny_space_path, data=tiny_data, epochs=1, project=str(tmp_path), random_subnets=1, **FAST)
    assert "mAP50_95" in result.history[0]  # the largest sub-network, validated
    assert result.last == tmp_path / "supernet" / "exp" / "last.pt"
    net = load_supernet(result.last)
    assert net.num_classes == 8 and net.checkpoint_meta["supernet"]["random_subnets"] == 1
    for k, v in result.model.state_dict().items():  # the EMA weights
        assert torch.equal(net.state_dict()[k], v)
    with pytest.raises(CheckpointError, match="not a supernet checkpoint"):
        path = save_checkpoint(tmp_path / "plain.pt", build(net.smallest), net.smallest)
        load_supernet(path)


def test_resume_continues_bit_for_bit(tiny_space_path, tiny_data, tmp_path):
    opts = dict(data=tiny_data, epochs=2, val=False, random_subnets=1, **FAST)
    full = train_supernet(tiny_space_path, project=str(tmp_path / "a"), **opts)

    def stop(row, _model):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_supernet(tiny_space_path, project=str(tmp_path / "b"), on_epoch=stop, **opts)
    last = tmp_path / "b" / "supernet" / "exp" / "last.pt"
    resumed = train_supernet(None, resume=str(last), verbose=False)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_starting_weights_place_the_source_architecture_exactly(supernet, tiny_space_path, tiny_data, tmp_path):
    arch = with_classes(supernet.smallest, 8)
    torch.manual_seed(1)
    source = build(arch)
    path = save_checkpoint(tmp_path / "small.pt", source, arch)
    result = train_supernet(tiny_space_path, data=tiny_data, epochs=1, val=False, save=False, weights=str(path), lr0=1e-12,
                            ema_decay=0.0, random_subnets=0, **FAST)  # fmt: skip
    got = result.model.extract(arch).state_dict()
    want = source.state_dict()
    same = [k for k in want if "rbr_reparam" not in k and "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in same)


def test_backward_per_sub_network_equals_one_backward_of_the_sum(supernet):
    from types import SimpleNamespace

    batch = SimpleNamespace(boxes=[torch.tensor([[4.0, 4.0, 40.0, 30.0]])] * 2, labels=[torch.tensor([1])] * 2)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sandwich = Sandwich(supernet, SupernetOptions(random_subnets=1), seed=0)
    grads = []
    for scaler in (None, torch.amp.GradScaler("cuda", enabled=False)):
        state = {k: v.clone() for k, v in supernet.state_dict().items()}
        supernet.train()
        loss, _ = sandwich(supernet, x, batch, None, 0, None, scaler)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None})
        supernet.zero_grad(set_to_none=True)
        supernet.load_state_dict(state)
    supernet.eval()
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])
