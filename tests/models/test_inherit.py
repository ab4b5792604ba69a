"""Weight inheritance: exact copies, structured slicing of channels / blocks / concatenations, the closest
source, and checkpoints written for emitted architectures."""

from __future__ import annotations

import pytest
import torch

from nas.errors import CheckpointError
from nas.models import build
from nas.models import checkpoints as ckpt
from nas.models.inherit import closest, inherit_weights, inheritable_fraction, save_inherited
from nas.space import load_arch
from tests.search.tiny import tiny_arch


def seeded_state(arch, seed: int = 7) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(arch)
    # non-trivial BN statistics too, so that buffers are checked as well
    sd = model.state_dict()
    for k, v in sd.items():
        if k.endswith(("running_mean", "running_var")):
            v.copy_(torch.rand(v.shape, generator=torch.Generator().manual_seed(len(k))) + 0.5)
    return sd


def test_same_architecture_is_an_exact_copy():
    arch = tiny_arch("a", {"backbone.stages.1.num_blocks": 1})
    src = seeded_state(arch)
    sd, rep = inherit_weights(arch.replace(name="renamed"), (arch, src))
    assert rep.exact and rep.fraction == 1.0 and rep.tensors_new == 0
    assert sd.keys() == src.keys() and all(torch.equal(sd[k], src[k]) for k in src)


def test_an_exact_copy_checks_every_key():
    arch = tiny_arch("a")
    src = seeded_state(arch)
    src.pop(next(iter(src)))
    with pytest.raises(CheckpointError, match="do not load strictly"):
        inherit_weights(arch, (arch, src))


def test_narrower_shallower_target_takes_the_leading_slices():
    big = tiny_arch(
        "big", {"backbone.stem.out_channels": 1, "backbone.stages.0.out_channels": 1, "backbone.stages.1.num_blocks": 1}
    )
    small = tiny_arch("small")
    src = seeded_state(big)
    sd, rep = inherit_weights(small, (big, src))
    assert not rep.exact and rep.fraction == 1.0, rep.summary()
    stem = "backbone.stem.conv.branch_3x3.conv.weight"  # [8, 3, 3, 3] from [16, 3, 3, 3]
    assert torch.equal(sd[stem], src[stem][:8])
    w = "backbone.stage1.downsample.branch_3x3.conv.weight"  # [16, 8] from [24, 16]
    assert torch.equal(sd[w], src[w][:16, :8])
    assert not any(k.startswith("backbone.stage2.blocks.bottlenecks.1.") for k in sd)  # one block of two
    assert torch.equal(
        sd["backbone.stage2.blocks.bottlenecks.0.cv1.post_bn.running_var"],
        src["backbone.stage2.blocks.bottlenecks.0.cv1.post_bn.running_var"],
    )
    # the inherited network runs
    model = build(small)
    model.load_state_dict(sd)
    model.eval()(torch.rand(1, 3, 64, 64))


def test_deeper_target_keeps_fresh_blocks_and_reports_the_fraction():
    small, deep = tiny_arch("s"), tiny_arch("d", {"backbone.stages.1.num_blocks": 1})
    src = seeded_state(small)
    sd, rep = inherit_weights(deep, (small, src), seed=3)
    params = dict(build(deep).named_parameters())
    new_block = "backbone.stage2.blocks.bottlenecks.1.cv1.branch_3x3.conv.weight"
    assert new_block not in src and new_block in sd
    total = sum(p.numel() for p in params.values())
    new = sum(p.numel() for k, p in params.items() if ".stage2.blocks.bottlenecks.1." in k)
    assert rep.params_total == total and rep.params_inherited == total - new
    assert rep.fraction == pytest.approx(1 - new / total)
    assert inheritable_fraction(deep, small) == pytest.approx(rep.fraction)


def test_concatenations_are_sliced_per_segment():
    # SPP: [x, pool5, pool9, pool13] -> [x, pool5, pool9]: the pool13 input channels are not taken
    src_arch = tiny_arch("three")
    dst_arch = tiny_arch("two", {"backbone.context.pool_sizes": 1})
    src = seeded_state(src_arch)
    sd, _ = inherit_weights(dst_arch, (src_arch, src))
    key = "backbone.context_module.cv2.conv.weight"  # hidden 16: [32, 64] -> [32, 48]
    assert torch.equal(sd[key], src[key][:, :48])
    # CSP conv3 reads cat(last bottleneck, conv2): a wider hidden width moves the conv2 segment
    wide = tiny_arch("wide", {"backbone.stages.2.hidden_channels": 1})  # hidden 8 -> 16
    sd, _ = inherit_weights(wide, (src_arch, src))
    key = "backbone.stage3.blocks.conv3.conv.weight"  # source [32, 8 + 8], target [32, 16 + 16]
    assert torch.equal(sd[key][:, :8], src[key][:, :8]) and torch.equal(sd[key][:, 16:24], src[key][:, 8:16])
    assert not torch.equal(sd[key][:, 8:16], torch.zeros_like(sd[key][:, 8:16]))  # fresh init kept


def test_head_grouping_is_respected():
    dense, grouped = tiny_arch("dense"), tiny_arch("grouped", {"heads.heads.0.first_conv_group_size": 2})
    src = seeded_state(grouped)
    sd, _ = inherit_weights(dense, (grouped, src))
    # dense target: its only 3x3 conv is the source's last (dense) conv, not the grouped first one
    assert torch.equal(sd["heads.head1.cls_convs.0.seq.conv.weight"], src["heads.head1.cls_convs.1.seq.conv.weight"])
    _, rep2 = inherit_weights(grouped, (dense, seeded_state(dense)))
    assert rep2.tensors_new > 0 and rep2.fraction < 1.0  # the grouped conv has no source


def test_closest_prefers_the_source_that_covers_most():
    m = tiny_arch(
        "m", {"backbone.stem.out_channels": 1, "backbone.stages.0.out_channels": 1, "backbone.stages.1.num_blocks": 1}
    )
    cands = [
        tiny_arch("s"),
        m,
        tiny_arch(
            "l",
            {
                p: 1
                for p in (
                    "backbone.stem.out_channels",
                    "backbone.stages.0.out_channels",
                    "backbone.stages.1.num_blocks",
                    "backbone.stages.2.out_channels",
                )
            },
        ),
    ]
    ranked = closest(m.replace(name="same_as_m"), cands)
    assert ranked[0] == ("m", 1.0)
    assert [f for _, f in ranked] == sorted((f for _, f in ranked), reverse=True)


def test_closest_released_model_of_a_released_architecture_is_itself():
    ranked = closest(load_arch("yolo_nas_m"))
    assert ranked[0] == ("yolo_nas_m", 1.0) and len(ranked) == 3


def test_checkpoint_sources_and_inherited_checkpoint_round_trip(tmp_path):
    src_arch, dst_arch = tiny_arch("src", {"backbone.stem.out_channels": 1}), tiny_arch("dst")
    src = seeded_state(src_arch)
    ckpt.save_checkpoint(tmp_path / "src.pt", src, src_arch, {})
    rep = save_inherited(dst_arch, tmp_path / "src.pt", tmp_path / "dst.pt")
    arch, sd = ckpt.load_checkpoint(tmp_path / "dst.pt")
    assert arch == dst_arch and rep.fraction == 1.0
    assert torch.equal(
        sd["backbone.stem.conv.branch_3x3.conv.weight"], src["backbone.stem.conv.branch_3x3.conv.weight"][:8]
    )
