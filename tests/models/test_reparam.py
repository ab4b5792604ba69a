"""Re-parameterization: fused == unfused, idempotence, and super-gradients' fused key/parameter counts."""

from __future__ import annotations

import copy

import pytest
import torch

from nas.models import build, fuse, fuse_report
from nas.models.blocks import Conv, HeadConv, QARepVGGBlock, RepVGGBlock
from nas.space import RELEASED, ArchConfig
from tests.helpers import seeded_fill, seeded_input
from tests.models.test_yolo_nas import NON_RELEASED, _tiny

# (modules, parameters) of super-gradients' S/M/L after its prep_model_for_conversion (partial) and full fusion.
PARTIAL = {"yolo_nas_s": (625, 12_184_240), "yolo_nas_m": (653, 31_922_098), "yolo_nas_l": (737, 42_017_784)}
FULL = {"yolo_nas_s": (440, 12_175_888), "yolo_nas_m": (458, 31_906_578), "yolo_nas_l": (512, 41_999_192)}
OURS_FULL_KEYS = {"yolo_nas_s": 220, "yolo_nas_m": 230, "yolo_nas_l": 260}


def _assert_same_outputs(out, ref):
    (boxes, scores), raw = out
    (ref_boxes, ref_scores), ref_raw = ref
    # scores/logits are O(1): 1e-4 absolute; boxes are pixels up to ~900, where fp32 rounding alone is ~1e-4
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=1e-4)
    torch.testing.assert_close(raw[0], ref_raw[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(raw[1], ref_raw[1], rtol=0, atol=1e-4)
    torch.testing.assert_close(boxes, ref_boxes, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("mode", ["partial", "full"])
@pytest.mark.parametrize("name", RELEASED)
def test_fused_equals_unfused_released(seeded, name, mode):
    model, ref = seeded(name)
    fused = fuse(copy.deepcopy(model), mode)
    assert fused.fusion == mode and not fused.training
    with torch.no_grad():
        out = fused(seeded_input())
    _assert_same_outputs(out, ref)


@pytest.mark.parametrize("name", RELEASED)
def test_fused_key_and_parameter_counts_equal_super_gradients(name):
    with torch.device("meta"):  # counts need shapes only
        model = build(name)
    # Our "full" also folds the BatchNorm of every plain Conv-BN-ReLU (super-gradients' full fusion keeps
    # them): each folded BN drops 5 keys and 2C parameters and adds a C-channel conv bias.
    conv_bns = [m.bn if isinstance(m, Conv) else m.seq.bn for m in model.modules() if isinstance(m, (Conv, HeadConv))]
    report = fuse_report(model, "partial")
    assert (report.keys_after, report.params_after) == PARTIAL[name]
    assert all(m.fusion == "partial" for m in model.modules() if isinstance(m, QARepVGGBlock))
    report = fuse_report(model, "full")
    sg_keys, sg_params = FULL[name]
    assert report.keys_after == sg_keys - 4 * len(conv_bns)
    assert report.params_after == sg_params - sum(bn.num_features for bn in conv_bns)
    assert report.keys_after == len(model.state_dict()) == OURS_FULL_KEYS[name]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_fusion_is_idempotent_and_full_after_partial_completes_it(seeded):
    model, ref = seeded("yolo_nas_s")
    partial = fuse(copy.deepcopy(model), "partial")
    keys = {k: v.clone() for k, v in partial.state_dict().items()}
    again = fuse_report(partial, "partial")
    assert again.blocks_fused == 0 and again.keys_before == again.keys_after == PARTIAL["yolo_nas_s"][0]
    assert all(torch.equal(keys[k], v) for k, v in partial.state_dict().items())

    full = fuse_report(partial, "full")  # continues from the partial form
    assert full.keys_after == OURS_FULL_KEYS["yolo_nas_s"] and full.params_after == 12_167_600
    with torch.no_grad():
        out = partial(seeded_input())
    _assert_same_outputs(out, ref)
    assert fuse_report(partial, "full").blocks_fused == 0
    assert fuse_report(partial, "partial").keys_after == OURS_FULL_KEYS["yolo_nas_s"]  # partial after full: no-op


@pytest.mark.parametrize("variant", ["repvgg", "conv", "qarepvgg_down", "concat", "grouped_heads", "multipliers"])
def test_fused_equals_unfused_non_released(variant):
    arch = ArchConfig.from_dict(_tiny(**NON_RELEASED[variant]))
    model = seeded_fill(build(arch)).eval()
    x = torch.rand(1, arch.in_channels, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
        for mode in ("partial", "full"):
            _assert_same_outputs(fuse(copy.deepcopy(model), mode)(x), ref)
    fused = fuse(model, "full")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert all(m.fusion == "full" for m in fused.modules() if isinstance(m, (QARepVGGBlock, RepVGGBlock)))


def test_bad_mode_is_refused():
    with torch.device("meta"):
        model = build(ArchConfig.from_dict(_tiny()))
    with pytest.raises(ValueError, match="'partial' or 'full'"):
        fuse(model, "half")
