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


DDP_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
from nas.supernet import train_supernet
space, data, project, name = sys.argv[1:5]
result = train_supernet(space, data=data, epochs=2, imgsz=64, batch=8, workers=0, device="cpu", plots=False,
                        verbose=False, val=False, random_subnets=1, project=project, name=name, exist_ok=True)
rank = os.environ.get("RANK", "0")  # the run has closed its process group
state = result.model.state_dict()
torch.save({k: state[k] for k in sorted(state)}, f"{project}/{name}_rank{rank}.pt")
"""


@pytest.mark.slow
def test_two_gloo_processes_keep_one_supernet_and_follow_one_process(tiny_space_path, tiny_data, tmp_path):
    import csv
    import os
    import subprocess
    import sys

    from tests.train.test_resume_ddp import ROOT, _env, _free_port

    script = tmp_path / "run.py"
    script.write_text(DDP_SCRIPT)
    args = [str(script), str(tiny_space_path), str(tiny_data), str(tmp_path)]
    subprocess.run([sys.executable, *args, "one"], check=True, env=_env(), cwd=ROOT, timeout=300)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    subprocess.run([*torchrun, *args, "two"], check=True, env=_env(), cwd=ROOT, timeout=300)
    r0, r1 = (torch.load(tmp_path / f"two_rank{r}.pt") for r in (0, 1))
    # averaged gradients: both processes hold the same weights after every step (each saw other images)
    for k in r0:
        if r0[k].is_floating_point() and "running" not in k:  # BatchNorm statistics are each process's own
            assert torch.allclose(r0[k], r1[k], atol=1e-6), k
    one = torch.load(tmp_path / "one_rank0.pt")
    assert any(not torch.equal(one[k], r0[k]) for k in one)  # half the images per process: not a copy of one
    losses = {n: [float(r["loss"]) for r in csv.DictReader((tmp_path / "supernet" / n / "steps.csv").open())]
              for n in ("one", "two")}  # fmt: skip
    assert len(losses["one"]) == len(losses["two"]) == 2  # 8 images / global batch 8, 2 epochs: rank 0 logs the mean
    # same weights, images and sub-networks: only the BN batch statistics differ (4 images per process, not 8)
    assert losses["two"] == pytest.approx(losses["one"], rel=0.1)
    assert not os.path.exists(tmp_path / "supernet" / "two2")
