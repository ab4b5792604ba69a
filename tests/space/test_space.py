from __future__ import annotations

import sys
import textwrap

import numpy as np
import optuna
import pytest

from nas.errors import SpaceError
from nas.space import RELEASED, load_arch, load_space
from nas.space.__main__ import main as space_main


@pytest.fixture(scope="module")
def space():
    return load_space("yolo_nas")


def test_space_is_large_and_contains_the_releases(space):
    assert space.log10_size >= 14
    assert set(space.references) == set(RELEASED)
    for name in RELEASED:
        ref = load_arch(name)
        assert space.contains(ref)
        rebuilt = space.from_params(space.params_of(ref))
        assert rebuilt == ref
        assert rebuilt.to_dict() | {"name": name} == ref.to_dict()


def test_sampling_a_release_by_its_parameters_on_a_real_optuna_trial(space):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for name in RELEASED:
        study.enqueue_trial(space.params_of(load_arch(name)))
    for name in RELEASED:
        trial = study.ask()
        assert space.sample(trial) == load_arch(name)
    free = space.sample(study.ask())
    assert space.contains(free)


def test_random_points_are_valid_and_distinct(space):
    rng = np.random.default_rng(0)
    archs = [space.random(rng) for _ in range(200)]
    assert all(space.contains(a) for a in archs)
    assert len(set(archs)) == 200
    assert all(a == type(a).from_yaml(a.to_yaml()) for a in archs[:20])


def test_random_points_build_and_run(space):
    torch = pytest.importorskip("torch")
    from nas.models import build

    rng = np.random.default_rng(1)
    for _ in range(3):
        arch = space.random(rng)
        model = build(arch).eval()
        with torch.no_grad():
            (boxes, scores), _ = model(torch.rand(1, 3, 64, 96))
        assert boxes.shape == (1, 8 * 12 + 4 * 6 + 2 * 3, 4)
        assert scores.shape[-1] == arch.num_classes


def test_encode_mutate_and_seeded_determinism(space):
    s = load_arch("yolo_nas_s")
    x = space.encode(s)
    assert x.shape == (len(space.dimensions),) and ((x >= 0) & (x <= 1)).all()
    m = space.mutate(s, np.random.default_rng(0), prob=0.05)
    assert m != s and space.contains(m)
    a = [space.random(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]


def test_points_outside_the_space_are_named(space):
    s = load_arch("yolo_nas_s")
    odd = s.replace(backbone=s.backbone.__class__(s.backbone.stem.__class__(40), s.backbone.stages, s.backbone.context))
    with pytest.raises(SpaceError, match=r"backbone\.stem\.out_channels=40 is not among the choices \[32, 48, 64\]"):
        space.values_of(odd)
    fewer = s.replace(heads=s.heads.__class__(s.heads.heads, num_classes=3))
    with pytest.raises(SpaceError, match=r"heads\.num_classes=3 .*not searched"):
        space.values_of(fewer)


def _write(tmp_path, body: str):
    p = tmp_path / "space.yaml"
    p.write_text(textwrap.dedent(body))
    return p


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name: x\nbase: yolo_nas_s\ndimensions: {a.b: [1]}\nextra: 1\n", r"unknown key\(s\) \['extra'\]"),
        ("name: x\nbase: yolo_nas_s\n", r"required key 'dimensions' is missing"),
        ("name: x\nbase: yolo_nas_q\ndimensions: {backbone.stem.out_channels: [48]}\n", r"base: unknown architecture"),
        (
            "name: x\nbase: yolo_nas_s\ndimensions: {backbone.stages.7.num_blocks: [1]}\n",
            r"dimensions\.backbone\.stages\.7\.num_blocks: no such field",
        ),
        (
            "name: x\nbase: yolo_nas_s\ndimensions: {backbone.stages.0.block: [qarepvgg, mbconv]}\n",
            r"backbone\.stages\.0\.block=.mbconv.*allowed block types: qarepvgg, repvgg, conv",
        ),
        ("name: x\nbase: yolo_nas_s\ndimensions: {backbone.stem.out_channels: 48}\n", r"expected a non-empty list"),
        ("name: x\nbase: yolo_nas_s\ndimensions: {backbone.stem.out_channels: [48, 48]}\n", r"duplicate choices"),
        ("name: x\nbase: yolo_nas_s\ndimensions: {backbone.stages: [1]}\n", r"is a section, not a field"),
        (
            "name: x\nbase: yolo_nas_s\ndimensions:\n  heads.heads.0.width_mult: [0.5, 0.75]\n"
            "  heads.heads.0.first_conv_group_size: [0, 64]\n",
            r"combination \[heads\.heads\.0\.width_mult=0\.75, heads\.heads\.0\.first_conv_group_size=64\]",
        ),
        (
            "name: x\nbase: yolo_nas_s\nreferences: [yolo_nas_m]\ndimensions: {backbone.stem.out_channels: [48]}\n",
            r"reference yolo_nas_m is not in the space",
        ),
        ("name: x\nbase: [unclosed\n", r"malformed YAML"),
    ],
)
def test_malformed_space_files_name_file_path_and_allowed_values(tmp_path, body, message):
    p = _write(tmp_path, body)
    with pytest.raises(SpaceError, match=message) as info:
        load_space(p)
    assert str(p) in str(info.value)


def test_unknown_space_lists_available():
    with pytest.raises(SpaceError, match="available spaces are yolo_nas"):
        load_space("nope")


def test_space_command_prints_dimensions_and_size(capsys):
    assert space_main(["+space=yolo_nas"]) == 0
    out = capsys.readouterr().out
    assert "backbone.stages.2.num_blocks" in out and "S=5 M=5 L=5" in out
    assert "(10^28." in out
    assert space_main([]) == 2
    assert "available spaces: yolo_nas" in capsys.readouterr().err


def test_space_imports_no_torch_or_optuna():
    import subprocess

    code = "import sys, nas.space; s = nas.space.load_space('yolo_nas'); print('torch' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_sampled_architecture_is_named_by_its_digest_as_the_search_report_names_it():
    import numpy as np

    from nas.space import load_space

    space = load_space("yolo_nas")
    arch = space.random(np.random.default_rng(3))
    # trials.csv's name; the report's is <tier>_<digest[:8]> (nas.search.emit.emitted_name): the same 8 hex digits
    assert arch.name == f"{space.name}_{arch.digest()[:8]}"
    assert space.random(np.random.default_rng(3), name="mine").name == "mine"
