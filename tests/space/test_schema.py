"""ArchConfig: YAML round trip, the released values, validation messages, hashing."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from nas.errors import SpaceError
from nas.space import RELEASED, ArchConfig, load_arch, released_archs
from nas.space.schema import depth_multiplier, width_multiplier

ROOT = Path(__file__).resolve().parents[2]

# super-gradients' recipes/arch_params/yolo_nas_{s,m,l}_arch_params.yaml: (out, num_blocks, hidden, concat_intermediates) per backbone stage,
# (out, num_blocks, hidden) per neck stage, head width_mult.
REFERENCE = {
    "yolo_nas_s": {
        "stages": [(96, 2, 32, False), (192, 3, 64, False), (384, 5, 96, False), (768, 2, 192, False)],
        "neck": [(192, 2, 64), (96, 2, 48), (192, 2, 64), (384, 2, 64)],
        "head_width_mult": 0.5,
        "head_inter": (64, 128, 256),
    },
    "yolo_nas_m": {
        "stages": [(96, 2, 64, True), (192, 3, 128, True), (384, 5, 256, True), (768, 2, 384, False)],
        "neck": [(192, 2, 192), (96, 3, 64), (192, 2, 192), (384, 3, 256)],
        "head_width_mult": 0.75,
        "head_inter": (96, 192, 384),
    },
    "yolo_nas_l": {
        "stages": [(96, 2, 96, True), (192, 3, 128, True), (384, 5, 256, True), (768, 2, 512, True)],
        "neck": [(192, 4, 128), (96, 4, 128), (192, 4, 128), (384, 4, 256)],
        "head_width_mult": 1.0,
        "head_inter": (128, 256, 512),
    },
}


@pytest.mark.parametrize("name", RELEASED)
def test_released_values_equal_the_reference(name):
    a, ref = load_arch(name), REFERENCE[name]
    assert a.name == name
    assert (a.in_channels, a.bn_eps, a.bn_momentum) == (3, 1e-3, 0.03)
    assert (a.backbone.stem.out_channels, a.backbone.stem.block) == (48, "qarepvgg")
    got = [(s.out_channels, s.num_blocks, s.hidden_channels, s.concat_intermediates) for s in a.backbone.stages]
    assert got == ref["stages"]
    assert all(s.block == "qarepvgg" for s in a.backbone.stages)
    assert (a.backbone.context.out_channels, a.backbone.context.pool_sizes) == (768, (5, 9, 13))
    necks = [*a.neck.up, *a.neck.down]
    assert [(s.out_channels, s.num_blocks, s.hidden_channels) for s in necks] == ref["neck"]
    assert [s.block for s in necks] == ["qarepvgg", "qarepvgg", "conv", "conv"]
    assert all(not s.concat_intermediates and s.width_mult == 1.0 and s.depth_mult == 1.0 for s in necks)
    h = a.heads
    assert [x.inter_channels for x in h.heads] == [128, 256, 512]
    assert [x.width_mult for x in h.heads] == [ref["head_width_mult"]] * 3
    assert tuple(x.effective_inter_channels for x in h.heads) == ref["head_inter"]
    assert [x.stride for x in h.heads] == [8, 16, 32] and all(x.first_conv_group_size == 0 for x in h.heads)
    assert (h.num_classes, h.reg_max, h.grid_cell_scale, h.grid_cell_offset) == (80, 16, 5.0, 0.5)
    assert a.neck_out_channels == (96, 192, 384)


@pytest.mark.parametrize("name", RELEASED)
def test_yaml_round_trip_is_exact(name):
    a = load_arch(name)
    text = a.to_yaml()
    b = ArchConfig.from_yaml(text)
    assert b == a and b.name == a.name and b.to_dict() == a.to_dict()
    assert b.to_yaml() == text


def test_round_trip_of_a_modified_arch_keeps_every_field(tmp_path):
    a = load_arch("yolo_nas_s")
    d = a.to_dict()
    d["name"] = "custom"
    d["backbone"]["stages"][2].update(block="repvgg", concat_intermediates=True)
    d["backbone"]["context"]["pool_sizes"] = [3, 7]
    d["neck"]["up"][1].update(width_mult=0.75, depth_mult=1.5)
    d["heads"]["heads"][1]["first_conv_group_size"] = 16
    d["heads"]["num_classes"] = 7
    d["bn_eps"] = 1e-5
    b = ArchConfig.from_dict(d)
    path = tmp_path / "custom.yaml"
    path.write_text(b.to_yaml())
    c = load_arch(path)
    assert c == b and c.name == "custom" and c.to_dict() == d
    assert c.bn_eps == 1e-5 and isinstance(c.bn_eps, float)


def test_equality_and_hash_ignore_the_name_digest_is_stable():
    s = load_arch("yolo_nas_s")
    renamed = s.replace(name="my_copy")
    assert renamed == s and hash(renamed) == hash(s) and renamed.digest() == s.digest()
    assert {s: 1}[renamed] == 1
    # The digest is a cache key shared across processes and machines: it must not drift.
    assert s.digest() == "d3112a80df8f3756"
    assert load_arch("yolo_nas_m").digest() == "71151f8314cec73c"
    assert load_arch("yolo_nas_l").digest() == "aa06cfed921b6575"
    other = s.replace(heads=s.heads.__class__(s.heads.heads, num_classes=3))
    assert other != s and other.digest() != s.digest()
    assert len({a.digest() for a in released_archs().values()}) == 3


def _err(mutate) -> str:
    d = copy.deepcopy(load_arch("yolo_nas_s").to_dict())
    mutate(d)
    with pytest.raises(SpaceError) as e:
        ArchConfig.from_dict(d)
    return str(e.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda d: d["backbone"]["stages"][1].__setitem__("block", "foo"),
            ["backbone.stages[1].block", "'foo'", "qarepvgg, repvgg, conv"],
        ),
        (lambda d: d["backbone"]["stages"].pop(), ["backbone.stages", "3 stages", "exactly 4"]),
        (lambda d: d["neck"]["up"][0].__setitem__("width_mult", 0), ["neck.up[0].width_mult", "0", "(0.0, 4.0]"]),
        (
            lambda d: d["heads"]["heads"][0].__setitem__("first_conv_group_size", 7),
            ["heads.heads[0].first_conv_group_size", "got 7", "64"],
        ),
        (lambda d: d["backbone"].__setitem__("bogus", 1), ["backbone", "['bogus']", "['stem', 'stages', 'context']"]),
        (lambda d: d["backbone"]["stages"][0].pop("num_blocks"), ["backbone.stages[0].num_blocks", "missing"]),
        (lambda d: d["backbone"]["context"].__setitem__("pool_sizes", [4]), ["context.pool_sizes", "[4]", "odd"]),
        (lambda d: d["heads"]["heads"][2].__setitem__("stride", 64), ["heads.heads", "[8, 16, 64]", "[8, 16, 32]"]),
        (lambda d: d.__setitem__("bn_eps", "x"), ["bn_eps", "'x'", "number"]),
        (lambda d: d["backbone"]["stages"][0].__setitem__("num_blocks", 0), ["stages[0].num_blocks", "got 0", ">= 1"]),
        (
            lambda d: d["neck"]["down"][0].__setitem__("concat_intermediates", "yes"),
            ["down[0].concat", "'yes'", "true"],
        ),
        (lambda d: d.__setitem__("name", ""), ["name", "non-empty"]),
    ],
)
def test_validation_errors_name_the_path_the_value_and_what_is_allowed(mutate, expected):
    message = _err(mutate)
    for part in expected:
        assert part in message, (part, message)


def test_yaml_errors_name_the_source():
    with pytest.raises(SpaceError, match=r"f\.yaml: malformed YAML"):
        ArchConfig.from_yaml("name: x\nbackbone: [1", source="f.yaml")
    bad = load_arch("yolo_nas_s").to_yaml().replace("block: conv", "block: dw", 1)
    with pytest.raises(SpaceError, match=r"f\.yaml: neck\.down\[0\]\.block: got 'dw'"):
        ArchConfig.from_yaml(bad, source="f.yaml")


def test_load_arch_errors(tmp_path):
    with pytest.raises(SpaceError, match=r"unknown architecture 'yolo_nas_xl'.*yolo_nas_s"):
        load_arch("yolo_nas_xl")
    with pytest.raises(SpaceError, match="does not exist"):
        load_arch(tmp_path / "missing.yaml")


def test_multipliers_follow_super_gradients_rounding():
    assert width_multiplier(128, 0.5) == 64 and width_multiplier(256, 0.75) == 192
    assert width_multiplier(100, 0.33) == 40  # int(33.0) = 33 -> next multiple of 8
    assert depth_multiplier(1, 3.0) == 1 and depth_multiplier(4, 0.33) == 1 and depth_multiplier(3, 1.5) == 4


def test_nas_space_does_not_import_torch():
    code = "import sys, nas.space; nas.space.load_arch('yolo_nas_l'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
