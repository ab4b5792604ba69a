from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nas.errors import LatencyTableMissError, SpaceError
from nas.latency.hardware import load_hardware
from nas.latency.predictor import (
    FEATURES,
    Calibration,
    LatencyPredictor,
    calibration_archs,
    fit_calibration,
    load_predictor,
    unit_features,
)
from nas.latency.spacemap import SpaceMap, choice_indices
from nas.latency.tables import LatencyTable
from nas.latency.units import decompose
from nas.space import load_arch, load_space

from .conftest import fake_timer, tiny_hardware


@pytest.fixture(scope="module")
def space():
    return load_space("yolo_nas")


@pytest.fixture(scope="module")
def fake(space, tmp_path_factory) -> LatencyPredictor:
    """In-memory table of the whole yolo_nas space at 64x64 with synthetic latencies, calibrated."""
    hw = tiny_hardware(tmp_path_factory.mktemp("fake"), "fake")
    table = LatencyTable(hw, hw.table_path)
    timer = fake_timer()
    for u in SpaceMap(space, hw.input_hw).units():
        table.units[u.key] = timer(u)
    archs = calibration_archs(space, 12, seed=0)
    x = np.stack([unit_features(decompose(a, 64), table) for a in archs])
    measured = 0.9 * x[:, 0] + 0.001 * x[:, 3] + 0.05  # a "whole network" a little faster than its parts
    return LatencyPredictor(table, fit_calibration(x, measured), space)


@pytest.fixture(scope="module")
def real(tiny_table, tiny_files) -> LatencyPredictor:
    return load_predictor(tiny_table.hardware, space=str(tiny_files["space"]))


def _archs(space, n=30, seed=0):
    rng = np.random.default_rng(seed)
    return [space.random(rng) for _ in range(n)] + list(space.references.values())


@pytest.mark.parametrize("which", ["fake", "real"])
def test_predictor_contract(request, which):
    pred: LatencyPredictor = request.getfixturevalue(which)
    archs = _archs(pred.space, 30 if which == "fake" else 8)
    scalar = np.array([pred.predict(a) for a in archs])
    assert (scalar > 0).all() and np.isfinite(scalar).all()
    assert all(isinstance(pred.predict(a), float) for a in archs[:2])
    np.testing.assert_allclose([pred.predict(a) for a in archs], scalar, rtol=0)  # deterministic
    idx = choice_indices(pred.space, archs)
    np.testing.assert_allclose(pred.predict_many(idx), scalar, rtol=1e-9)  # vectorized == scalar
    np.testing.assert_allclose(pred.predict_many(archs), scalar, rtol=1e-9)
    assert pred.predict_many(idx[:0]).shape == (0,)
    assert pred.hardware.name in repr(pred)


def test_more_and_wider_blocks_are_slower(fake):
    s = load_arch("yolo_nas_s")
    base = fake.predict(s)

    def stage(i, **kw):
        stages = list(s.backbone.stages)
        stages[i] = dataclasses.replace(stages[i], **kw)
        return s.replace(backbone=dataclasses.replace(s.backbone, stages=tuple(stages)))

    assert fake.predict(stage(2, num_blocks=6)) > base
    assert fake.predict(stage(1, hidden_channels=128)) > base
    assert fake.predict(stage(3, concat_intermediates=True)) > base
    heads = tuple(dataclasses.replace(h, first_conv_group_size=-1) for h in s.heads.heads)
    assert fake.predict(s.replace(heads=dataclasses.replace(s.heads, heads=heads))) > base
    assert (
        fake.predict(load_arch("yolo_nas_s"))
        < fake.predict(load_arch("yolo_nas_m"))
        < fake.predict(load_arch("yolo_nas_l"))
    )


def test_calibration_recovers_a_known_linear_relation():
    rng = np.random.default_rng(0)
    x = np.column_stack(
        [rng.uniform(10, 100, 40), rng.uniform(1, 50, 40), rng.uniform(1, 9, 40), rng.integers(50, 90, 40)]
    )
    y = 1.2 * x[:, 0] + 3.0
    cal = fit_calibration(x, y)
    np.testing.assert_allclose(cal.apply(x), y, rtol=1e-6)
    assert "lut_ms" in cal.features and cal.loo_rel_rmse < 1e-6
    assert Calibration.from_dict(cal.to_dict()) == cal
    assert cal.weights().shape == (len(FEATURES),)
    with pytest.raises(ValueError, match="at least 3"):
        fit_calibration(x[:2], y[:2])


def test_a_richer_calibration_must_win_by_a_margin_not_by_noise():
    rng = np.random.default_rng(3)
    x = np.column_stack(
        [rng.uniform(100, 1000, 40), rng.uniform(1, 50, 40), rng.uniform(1, 9, 40), rng.integers(50, 90, 40)]
    )
    noise = rng.normal(0, 0.03, 40)  # 3% measurement noise, as on the shipped tables' networks
    y = (0.9 * x[:, 0] + 5.0) * (1 + noise)
    assert fit_calibration(x, y).features == ("lut_ms",)
    y = (0.5 * x[:, 0] + 20.0 * x[:, 1]) * (1 + noise / 10)  # a GMACs term that is really there
    assert "gmacs" in fit_calibration(x, y).features


def test_calibration_weights_are_non_negative_so_predictions_stay_positive():
    rng = np.random.default_rng(1)
    x = np.column_stack(
        [rng.uniform(10, 100, 30), rng.uniform(1, 50, 30), rng.uniform(1, 9, 30), rng.integers(50, 90, 30)]
    )
    y = 2.0 * x[:, 0] - 15.0 - 0.2 * x[:, 3]  # a negative intercept / unit weight would fit these best
    cal = fit_calibration(x, y)
    assert cal.intercept >= 0 and min(cal.coef) >= 0 and cal.weights()[0] > 0
    assert cal.apply(np.array([[0.01, 0.0, 0.0, 1.0]]))[0] > 0


def test_bad_index_matrices_are_refused(fake):
    d = len(fake.space.dimensions)
    with pytest.raises(SpaceError, match=rf"\[N, {d}\]"):
        fake.predict_many(np.zeros((3, d - 1), dtype=int))
    idx = np.zeros((2, d), dtype=int)
    idx[1, 0] = 99
    with pytest.raises(SpaceError, match=fake.space.dimensions[0].path):
        fake.predict_many(idx)


def test_missing_units_name_the_unit_and_the_build_command(fake, space):
    table = LatencyTable(fake.hardware, fake.table.path, {**fake.table.data, "units": dict(fake.table.units)})
    s = load_arch("yolo_nas_s")
    victim = decompose(s, 64)[5]
    del table.units[victim.key]
    pred = LatencyPredictor(table, fake.calibration, space)
    with pytest.raises(LatencyTableMissError, match=r"python -m nas\.latency build hardware=fake") as e:
        pred.predict(s)
    assert victim.key in str(e.value)
    with pytest.raises(LatencyTableMissError, match=r"and \d+ more|space=yolo_nas"):
        pred.predict_many(choice_indices(space, [s]))


def test_load_predictor_errors_and_uncalibrated_use(tmp_path, tiny_space):
    hw = tiny_hardware(tmp_path)
    with pytest.raises(LatencyTableMissError, match=r"no latency table.*build hardware=tiny_torch"):
        load_predictor(hw)
    from nas.latency.build import build_table

    build_table(hw, tiny_space, calib=0, progress=False, timer=fake_timer())
    with pytest.raises(LatencyTableMissError, match=r"no calibration yet.*calibrated=False"):
        load_predictor(hw)
    raw = load_predictor(hw, space=tiny_space, calibrated=False)
    arch = tiny_space.base
    assert raw.predict(arch) == pytest.approx(raw.features(arch)[0])


def test_calibration_networks_are_seeded_and_exclude_the_references(space):
    a, b = calibration_archs(space, 10, seed=0), calibration_archs(space, 10, seed=0)
    assert a == b and len({x.digest() for x in a}) == 10
    assert not {x.digest() for x in a} & {r.digest() for r in space.references.values()}


def test_shipped_hardware_predictor():
    hw = load_hardware("cpu_ort")
    assert hw.table_path.is_file(), (
        f"{hw.table_path} is shipped; rebuild it: python -m nas.latency build hardware=cpu_ort"
    )
    pred = load_predictor("cpu_ort")
    s, m, large = (pred.predict(load_arch(n)) for n in ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l"))
    assert 0 < s < m < large


def test_shipped_int8_table_is_complete_fingerprinted_and_calibrated():
    """cpu_ort_int8 ships like cpu_ort: every unit of the space, the device it was measured on, a calibration
    on whole INT8 networks; INT8 predicts faster than FP32 for S/M/L and keeps their order."""
    hw = load_hardware("cpu_ort_int8")
    table = LatencyTable.load(hw)
    missing = [u.key for u in SpaceMap(load_space("yolo_nas"), hw.input_hw).units() if u not in table]
    assert not missing, f"{len(missing)} units missing; run python -m nas.latency build hardware=cpu_ort_int8"
    fp = table.data["fingerprint"]["cpu"]
    assert fp["family"] is not None and fp["model"] is not None and fp["isa"]["avx2"] is not None
    assert len(table.calibration_archs) >= 40 and table.data["calibration"]["fit"]
    int8, fp32 = load_predictor("cpu_ort_int8"), load_predictor("cpu_ort")
    s, m, large = (int8.predict(load_arch(n)) for n in ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l"))
    assert 0 < s < m < large
    assert s < fp32.predict(load_arch("yolo_nas_s"))
