"""Extraction: every architecture of the space is a sub-network, and the extracted network is the supernet run in
that configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas.errors import SpaceError
from nas.models import build
from nas.models.reparam import fuse
from nas.space import load_space, released_archs
from nas.supernet import SuperNet
from tests.supernet.tiny import write_space


def _outputs(model, x, arch=None):
    with torch.no_grad():
        (boxes, scores), raw = model(x) if arch is None else model(x, arch)
    return boxes, scores, raw[1]


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_extracted_equals_supernet_in_that_configuration(supernet, tiny_space, mode):
    rng = np.random.default_rng(0)
    archs = [supernet.largest, supernet.smallest, *(tiny_space.random(rng) for _ in range(6))]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for arch in archs:
        model = supernet.extract(arch)
        assert model.arch == arch and type(model) is type(build(arch))
        assert list(model.state_dict()) == list(build(arch).state_dict())  # super-gradients names and order
        model.train(mode == "train")
        supernet.train(mode == "train")
        for a, b in zip(_outputs(model, x), _outputs(supernet, x, arch)):
            assert torch.equal(a, b), arch.name
    supernet.eval()


def test_extracted_network_fuses_like_any_other(supernet):
    model = supernet.extract(supernet.largest).eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ref = _outputs(model, x)[1]
    fused = fuse(model)
    assert torch.allclose(_outputs(fused, x)[1], ref, atol=1e-5)


def test_gradients_reach_the_shared_weights(supernet):
    supernet.train()
    x = torch.rand(1, 3, 64, 64)
    (_boxes, scores), _ = supernet(x, supernet.smallest)
    scores.sum().backward()
    stem = supernet.backbone["stem/conv/branch_3x3/conv"].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    c = supernet.smallest.backbone.stem.out_channels
    assert stem.grad[c:].abs().sum() == 0  # channels the smallest does not use
    supernet.zero_grad(set_to_none=True)
    supernet.eval()


def test_qarepvgg_and_repvgg_share_kernels_not_batchnorms(supernet, tiny_space):
    big = tiny_space.values_of(supernet.largest.replace(heads=tiny_space.base.heads))
    rep = tiny_space.decode({**big, "backbone.stem.block": "repvgg"})
    qa = tiny_space.decode({**big, "backbone.stem.block": "qarepvgg"})
    a, b = supernet.extract(rep).state_dict(), supernet.extract(qa).state_dict()
    k = "backbone.stem.conv.branch_3x3.conv.weight"
    assert torch.equal(a[k], b[k])
    assert torch.equal(a["backbone.stem.conv.branch_1x1.conv.weight"], b["backbone.stem.conv.branch_1x1.weight"])
    bn = supernet.backbone["stem/conv/branch_3x3/bn@repvgg"]
    assert bn is not supernet.backbone["stem/conv/branch_3x3/bn@qarepvgg"]


def test_grouped_head_conv_is_the_block_diagonal_of_the_dense_one(supernet, tiny_space):
    base = tiny_space.values_of(supernet.largest.replace(heads=tiny_space.base.heads))
    dense = supernet.extract(tiny_space.decode({**base, "heads.heads.0.first_conv_group_size": -1}))
    grouped = supernet.extract(tiny_space.decode({**base, "heads.heads.0.first_conv_group_size": 8}))
    w, g = dense.heads.head1.cls_convs[0].seq.conv.weight, grouped.heads.head1.cls_convs[0].seq.conv.weight
    assert g.shape[1] == 8
    for o in range(w.shape[0]):
        start = o // 8 * 8
        assert torch.equal(g[o], w[o, start : start + 8])
    # with no extra conv (0) the last conv of the branch is the shared last conv
    none = supernet.extract(tiny_space.decode({**base, "heads.heads.0.first_conv_group_size": 0}))
    assert torch.equal(none.heads.head1.cls_convs[0].seq.conv.weight, dense.heads.head1.cls_convs[1].seq.conv.weight)


def test_released_s_m_l_extract_from_the_yolo_nas_supernet():
    """On the meta device (shapes and names only; the computation is the tiny space's test above)."""
    space = load_space("yolo_nas")
    with torch.device("meta"):
        net = SuperNet(space)
    assert net.largest.backbone.stages[3].out_channels == 1024 and net.smallest.backbone.stem.out_channels == 32
    for name, arch in released_archs().items():
        model = net.extract(arch)
        assert model.arch == arch
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in build(arch).parameters()), name


def test_an_architecture_outside_the_space_is_an_error_naming_the_dimension(supernet, tiny_space):
    values = tiny_space.values_of(supernet.largest.replace(heads=tiny_space.base.heads))
    arch = tiny_space.decode(values)
    stages = list(arch.backbone.stages)
    stages[0] = type(stages[0])(**{**stages[0].to_dict(), "out_channels": 40})
    outside = arch.replace(backbone=arch.backbone.__class__(arch.backbone.stem, tuple(stages), arch.backbone.context))
    with pytest.raises(SpaceError, match=r"backbone\.stages\.0\.out_channels=40"):
        supernet.extract(outside)


def test_a_space_the_supernet_cannot_express_is_an_error_naming_the_dimension(tmp_path):
    space = load_space(write_space(tmp_path, extra={"heads.reg_max": [16, 8]}))
    with pytest.raises(SpaceError, match=r"cannot express the dimension heads\.reg_max"):
        SuperNet(space)


def test_update_stats_false_leaves_the_running_statistics(supernet):
    supernet.train()
    before = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k}
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a = supernet(x, supernet.smallest, update_stats=False)
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items() if "running" in k)
    with torch.no_grad():
        b = supernet(x, supernet.smallest)
    assert torch.equal(a[0][1], b[0][1])  # the batch statistics normalize either way
    assert any(not torch.equal(before[k], v) for k, v in supernet.state_dict().items() if "running" in k)
    supernet.load_state_dict({**supernet.state_dict(), **before})
    supernet.eval()
