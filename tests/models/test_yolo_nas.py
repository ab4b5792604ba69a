"""Golden checks of the exact model: super-gradients' state_dict, parameter counts, reference outputs."""

from __future__ import annotations

import pytest
import torch

from nas.models import build, expected_shapes
from nas.space import RELEASED, load_arch
from tests.helpers import reference_keys, seeded_input
from tests.helpers import test_vectors as reference_vectors

PARAMS = {"yolo_nas_s": 19_053_888, "yolo_nas_m": 51_182_658, "yolo_nas_l": 66_976_392}
KEYS = {"yolo_nas_s": 921, "yolo_nas_m": 965, "yolo_nas_l": 1097}


@pytest.mark.parametrize("name", RELEASED)
def test_state_dict_keys_order_and_shapes_equal_super_gradients(name):
    ref = [(k, tuple(s)) for k, s in reference_keys(name)]
    got = list(expected_shapes(load_arch(name)).items())
    assert len(got) == KEYS[name]
    assert got == ref  # same keys, same order, same shapes


@pytest.mark.parametrize("name", RELEASED)
def test_exact_parameter_counts(name):
    with torch.device("meta"):
        model = build(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


def _close(got: float | torch.Tensor, ref, atol: float, what: str) -> None:
    got_t = torch.as_tensor(got, dtype=torch.float64)
    ref_t = torch.as_tensor(ref, dtype=torch.float64)
    assert got_t.shape == ref_t.shape, what
    err = (got_t - ref_t).abs().max().item()
    assert err <= atol, f"{what}: max abs error {err:.3g} > {atol:g}"


def _mean_std(t: torch.Tensor) -> list[float]:
    return [t.mean().item(), t.std().item()]


def _check_outputs(model, x, out, ref):
    with torch.no_grad():
        feats = model.backbone(x)
        neck = model.neck(feats)
    # The JSON rounds to 5-7 significant digits; the tolerances sit just above that rounding and far
    # below the 1e-2 an ordering or architecture bug produces.
    _close([_mean_std(f) for f in feats], ref["backbone_out_mean_std"], 2e-5, "backbone mean/std")
    _close([_mean_std(f) for f in neck], ref["neck_out_mean_std"], 2e-5, "neck mean/std")
    (boxes, scores), raw = out
    assert list(boxes.shape) == ref["boxes_shape"] and list(scores.shape) == ref["scores_shape"]
    _close(boxes[0, [0, 6400, 8000, 8399]], ref["boxes_rows_0_6400_8000_8399"], 1e-4, "box rows")
    _close(_mean_std(boxes), [ref["boxes_mean"], ref["boxes_std"]], 1e-4, "box mean/std")
    _close([scores.mean().item(), scores.max().item()], [ref["scores_mean"], ref["scores_max"]], 1e-6, "scores")
    _close(scores[0, 0, :5], ref["scores_row0_first5"], 1e-6, "scores row 0")
    _close(raw[0][0, 0, :5], ref["raw_cls_logits_row0_first5"], 2e-5, "cls logits row 0")
    _close(raw[1][0, 0, :5], ref["raw_reg_distri_row0_first5"], 2e-5, "DFL logits row 0")
    _close(_mean_std(raw[0]), ref["cls_logits_mean_std"], 2e-6, "cls logits mean/std")
    _close(_mean_std(raw[1]), ref["reg_distri_mean_std"], 2e-6, "DFL logits mean/std")


@pytest.mark.parametrize("name", RELEASED)
def test_outputs_match_the_reference_test_vectors(seeded, name):
    model, out = seeded(name)
    _check_outputs(model, seeded_input(), out, reference_vectors()[name])


def test_outputs_match_the_reference_at_320x480(seeded):
    model, _ = seeded("yolo_nas_s")
    ref = reference_vectors()["yolo_nas_s"]["input_320x480"]
    with torch.no_grad():
        (boxes, scores), (_, _, anchors, _, num_anchors, _) = model(seeded_input(320, 480))
    assert list(boxes.shape) == ref["boxes_shape"] and list(anchors.shape) == ref["anchors_shape"]
    assert num_anchors == ref["num_anchors_list"]
    _close(boxes[0, [0, 2400, 3149]], ref["boxes_rows_0_2400_3149"], 1e-4, "box rows 320x480")
    _close(scores.mean().item(), ref["scores_mean"], 1e-6, "score mean 320x480")


def test_eval_output_structure(seeded):
    _, out = seeded("yolo_nas_s")
    (boxes, scores), raw = out
    cls_logits, reg_distri, anchors, anchor_points, num_anchors, stride_tensor = raw
    n = 80 * 80 + 40 * 40 + 20 * 20
    assert boxes.shape == (1, n, 4) and scores.shape == (1, n, 80)
    assert cls_logits.shape == (1, n, 80) and reg_distri.shape == (1, n, 68)
    assert anchors.shape == (n, 4) and anchor_points.shape == (n, 2) and stride_tensor.shape == (n, 1)
    assert num_anchors == [6400, 1600, 400]
    torch.testing.assert_close(scores, cls_logits.sigmoid())
    assert stride_tensor[:6400].eq(8).all() and stride_tensor[-400:].eq(32).all()
    # anchor points are pixel centres (i + 0.5) * stride, row-major, level-major
    torch.testing.assert_close(anchor_points[:2], torch.tensor([[4.0, 4.0], [12.0, 4.0]]))
    torch.testing.assert_close(anchor_points[6400], torch.tensor([8.0, 8.0]))
    # training-assigner anchors: 5 x stride squares around those centres
    torch.testing.assert_close(anchors[0], torch.tensor([-16.0, -16.0, 24.0, 24.0]))
    # boxes decode the DFL expectation around the anchor points
    assert (boxes[..., :2] <= anchor_points).all() and (boxes[..., 2:] >= anchor_points).all()


def _tiny(**changes) -> dict:
    """A small non-released architecture (plain dict, so tests can vary any field)."""
    d = load_arch("yolo_nas_s").to_dict()
    d["name"] = "tiny"
    d["backbone"]["stem"]["out_channels"] = 16
    for s, (c, h) in zip(d["backbone"]["stages"], [(16, 8), (32, 16), (48, 16), (64, 24)]):
        s.update(out_channels=c, hidden_channels=h, num_blocks=1)
    d["backbone"]["context"]["out_channels"] = 64
    for s, c in zip([*d["neck"]["up"], *d["neck"]["down"]], [32, 16, 32, 64]):
        s.update(out_channels=c, hidden_channels=8, num_blocks=1)
    for h, c in zip(d["heads"]["heads"], [16, 32, 64]):
        h.update(inter_channels=c, width_mult=1.0)
    d["heads"]["num_classes"] = 3
    for path, value in changes.items():
        node = d
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[leaf] = value
    return d


NON_RELEASED = {
    "tiny": {},
    "repvgg": {"backbone.stem.block": "repvgg", "backbone.stages.0.block": "repvgg", "neck.up.0.block": "repvgg"},
    "conv": {"backbone.stages.1.block": "conv", "neck.up.1.block": "conv", "backbone.stem.block": "conv"},
    "qarepvgg_down": {"neck.down.0.block": "qarepvgg", "neck.down.1.block": "repvgg"},
    "concat": {
        "backbone.stages.2.concat_intermediates": True,
        "backbone.stages.2.num_blocks": 3,
        "neck.down.1.concat_intermediates": True,
        "neck.down.1.num_blocks": 2,
    },
    "grouped_heads": {"heads.heads.0.first_conv_group_size": 8, "heads.heads.1.first_conv_group_size": -1},
    "multipliers": {
        "neck.up.0.width_mult": 0.75,
        "neck.up.0.num_blocks": 2,
        "neck.up.0.depth_mult": 1.5,
        "neck.down.1.width_mult": 1.5,
        "heads.heads.2.width_mult": 0.5,
    },
    "pools_rgba": {"backbone.context.pool_sizes": [3, 5, 7, 9], "in_channels": 4, "heads.reg_max": 8},
}


@pytest.mark.parametrize("variant", list(NON_RELEASED))
def test_non_released_archs_build_and_run(variant):
    from nas.space import ArchConfig

    arch = ArchConfig.from_dict(_tiny(**NON_RELEASED[variant]))
    torch.manual_seed(0)
    model = build(arch).eval()
    assert list(model.state_dict()) == list(expected_shapes(arch))
    x = torch.rand(2, arch.in_channels, 64, 96)
    with torch.no_grad():
        (boxes, scores), raw = model(x)
    n = (8 * 12) + (4 * 6) + (2 * 3)
    assert boxes.shape == (2, n, 4) and scores.shape == (2, n, 3)
    assert raw[1].shape == (2, n, 4 * (arch.heads.reg_max + 1))
    assert torch.isfinite(boxes).all() and torch.isfinite(scores).all()
    model.train()
    (boxes, _), _ = model(x)  # train mode runs too (BN in batch mode) and is differentiable
    boxes.sum().backward()


def test_non_released_arch_details_reach_the_network():
    from nas.space import ArchConfig

    arch = ArchConfig.from_dict(_tiny(**NON_RELEASED["grouped_heads"], **NON_RELEASED["multipliers"]))
    model = build(arch)
    head1, head2 = model.heads.head1, model.heads.head2
    assert len(head1.cls_convs) == 2 and head1.cls_convs[0].seq.conv.groups == 16 // 8
    assert len(head2.reg_convs) == 2 and head2.reg_convs[0].seq.conv.groups == 1
    assert model.neck.neck1.conv.conv.out_channels == 24  # 32 x 0.75
    assert len(model.neck.neck1.blocks.bottlenecks) == 3  # round(2 x 1.5)
    assert model.heads.head3.stem.seq.conv.out_channels == 32  # 64 x 0.5
    assert all(m.eps == 1e-3 and m.momentum == 0.03 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
