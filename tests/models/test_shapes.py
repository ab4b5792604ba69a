"""Architecture inference from state_dict shapes: released models, and random non-released ones."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from nas.errors import CheckpointError
from nas.models import build, expected_shapes, fuse, infer_arch
from nas.space import RELEASED, ArchConfig, load_arch
from nas.space.schema import BLOCK_TYPES


def _meta_state_dict(arch: ArchConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build(arch).state_dict()


def random_arch(rng: random.Random, canonical: bool) -> ArchConfig:
    """A random valid architecture. canonical: every multiplier 1.0, standard pool sizes and no
    first_conv_group_size equal to the head width, so inference must return an equal ArchConfig."""

    def ch(lo: int = 1, hi: int = 6) -> int:
        return 8 * rng.randint(lo, hi)

    def mult() -> float:
        return 1.0 if canonical else rng.choice([0.5, 0.75, 1.0, 1.25])

    stages = [
        {
            "out_channels": ch(),
            "num_blocks": rng.randint(1, 3),
            "hidden_channels": ch(),
            "concat_intermediates": rng.random() < 0.5,
            "block": rng.choice(BLOCK_TYPES),
        }
        for _ in range(4)
    ]
    pools = rng.randint(1, 4)
    pool_sizes = [5 + 4 * j for j in range(pools)] if canonical else sorted(rng.sample([1, 3, 5, 7, 9, 11, 13], pools))
    neck = [
        {
            "out_channels": ch(2, 6),
            "num_blocks": rng.randint(1, 3),
            "hidden_channels": ch(),
            "block": rng.choice(BLOCK_TYPES),
            "concat_intermediates": rng.random() < 0.5,
            "width_mult": mult(),
            "depth_mult": mult(),
        }
        for _ in range(4)
    ]
    heads = []
    for stride in (8, 16, 32):
        inter = ch(2, 6)
        groups = [0, -1, 8] if canonical else [0, -1, 8, inter]
        heads.append(
            {
                "inter_channels": inter,
                "stride": stride,
                "width_mult": mult(),
                "first_conv_group_size": rng.choice(groups),
            }
        )
    for h in heads:  # a group size equal to the nominal width must divide the effective width
        if h["first_conv_group_size"] == h["inter_channels"]:
            h["width_mult"] = 1.0
    return ArchConfig.from_dict(
        {
            "name": "random",
            "backbone": {
                "stem": {"out_channels": ch(), "block": rng.choice(BLOCK_TYPES)},
                "stages": stages,
                "context": {"out_channels": ch(), "pool_sizes": pool_sizes},
            },
            "neck": {"up": neck[:2], "down": neck[2:]},
            "heads": {"heads": heads, "num_classes": rng.randint(1, 90), "reg_max": rng.randint(1, 16)},
            "in_channels": rng.randint(1, 4),
        }
    )


@pytest.mark.parametrize("name", RELEASED)
def test_released_models_are_recognised(name):
    arch = infer_arch(_meta_state_dict(load_arch(name)))
    assert arch == load_arch(name) and arch.name == name and arch.to_yaml() == load_arch(name).to_yaml()


def test_a_released_model_with_another_class_count_is_recognised():
    s = load_arch("yolo_nas_s")
    arch = s.replace(heads=dataclasses.replace(s.heads, num_classes=3))
    inferred = infer_arch(_meta_state_dict(arch))
    assert inferred == arch and inferred.name == "yolo_nas_s_3cls"


@pytest.mark.parametrize("seed", range(12))
def test_random_canonical_archs_are_inferred_exactly(seed):
    arch = random_arch(random.Random(seed), canonical=True)
    inferred = infer_arch(_meta_state_dict(arch))
    assert inferred == arch
    assert inferred.name.startswith("inferred_")


@pytest.mark.parametrize("seed", range(12))
def test_random_archs_infer_to_the_same_keys_and_shapes(seed):
    arch = random_arch(random.Random(1000 + seed), canonical=False)
    sd = _meta_state_dict(arch)
    inferred = infer_arch(sd)
    assert list(expected_shapes(inferred).items()) == [(k, tuple(v.shape)) for k, v in sd.items()]


def test_inference_works_on_real_tensors_too():
    arch = random_arch(random.Random(7), canonical=True)
    torch.manual_seed(0)
    assert infer_arch(build(arch).state_dict()) == arch


def test_spp_pool_sizes_are_assumed_from_their_count():
    arch = random_arch(random.Random(3), canonical=True)
    context = dataclasses.replace(arch.backbone.context, pool_sizes=(3, 7, 11))
    odd = arch.replace(backbone=dataclasses.replace(arch.backbone, context=context))
    inferred = infer_arch(_meta_state_dict(odd))
    assert inferred.backbone.context.pool_sizes == (5, 9, 13)
    assert expected_shapes(inferred) == expected_shapes(odd)


def test_missing_key_is_named():
    sd = _meta_state_dict(load_arch("yolo_nas_s"))
    sd.pop("backbone.context_module.cv1.conv.weight")
    with pytest.raises(CheckpointError, match=r"'backbone\.context_module\.cv1\.conv\.weight' is missing"):
        infer_arch(sd)


def test_extra_and_misshaped_keys_are_listed():
    sd = dict(_meta_state_dict(load_arch("yolo_nas_s")))
    sd["extra.weight"] = torch.empty(3)
    sd["neck.neck1.upsample.bias"] = torch.empty(7, device="meta")
    with pytest.raises(CheckpointError) as e:
        infer_arch(sd)
    text = str(e.value)
    assert "unexpected (1): extra.weight" in text
    assert "shape mismatch (1): neck.neck1.upsample.bias: checkpoint [7] vs model [192]" in text


def test_fused_state_dicts_are_explained():
    with torch.device("meta"):
        model = build(load_arch("yolo_nas_s"))
    fuse(model, "partial")
    with pytest.raises(CheckpointError, match=r"re-parameterized \(fused\); load the unfused weights"):
        infer_arch(model.state_dict())


def test_not_a_yolo_nas_state_dict():
    with pytest.raises(CheckpointError, match="not a YOLO-NAS state_dict"):
        infer_arch({"fc.weight": torch.empty(2, 2)})
