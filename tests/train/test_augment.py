"""Box transforms of the train-time augmentation against hand-computed cases; the sampler's order and slicing."""

from __future__ import annotations

import numpy as np
import pytest

from nas.errors import ConfigError
from nas.train.augment import (
    affine_matrix,
    box_candidates,
    hflip,
    hsv,
    letterbox_square,
    mosaic4,
    random_affine,
    warp_boxes,
)
from nas.train.data import EpochBatches


def _b(*rows):
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


def test_affine_identity_scale_translate_and_rotation_by_hand():
    ident = affine_matrix((64, 64), (64, 64), 1.0, (32, 32))
    np.testing.assert_allclose(ident, np.eye(3), atol=1e-12)
    # scale 2 about the centre: (24, 24)-(40, 40) -> (16, 16)-(48, 48)
    m = affine_matrix((64, 64), (64, 64), 2.0, (32, 32))
    np.testing.assert_allclose(warp_boxes(_b([24, 24, 40, 40]), m, (64, 64)), _b([16, 16, 48, 48]), atol=1e-5)
    # centre moved to (40, 32): everything shifts right by 8
    m = affine_matrix((64, 64), (64, 64), 1.0, (40, 32))
    np.testing.assert_allclose(warp_boxes(_b([0, 0, 10, 10]), m, (64, 64)), _b([8, 0, 18, 10]), atol=1e-5)
    # 90 degrees counter-clockwise about the centre: offsets (dx, dy) -> (dy, -dx)
    m = affine_matrix((64, 64), (64, 64), 1.0, (32, 32), degrees=90)
    np.testing.assert_allclose(warp_boxes(_b([32, 16, 48, 32]), m, (64, 64)), _b([16, 16, 32, 32]), atol=1e-5)
    # a 2x input (mosaic canvas) into a 1x output at scale 1: the output is the 64 x 64 window around its centre
    m = affine_matrix((128, 128), (64, 64), 1.0, (32, 32))
    np.testing.assert_allclose(warp_boxes(_b([40, 40, 50, 60]), m, (64, 64)), _b([8, 8, 18, 28]), atol=1e-5)


def test_warped_boxes_are_clipped_to_the_output():
    m = affine_matrix((64, 64), (64, 64), 1.0, (52, 32))  # shift right by 20
    np.testing.assert_allclose(warp_boxes(_b([30, 10, 60, 20]), m, (64, 64)), _b([50, 10, 64, 20]), atol=1e-5)


def test_box_candidates_drop_slivers_small_remnants_and_needles():
    old = _b([0, 0, 20, 20], [0, 0, 20, 20], [0, 0, 20, 20], [0, 0, 50, 2.5], [0, 0, 20, 20])
    new = _b([0, 0, 20, 20], [0, 0, 20, 1.5], [0, 0, 5, 5], [0, 0, 50, 2.5], [0, 0, 10, 10])
    # kept; 1.5 px high; 25/400 = 6 % of the area left; aspect 20; a 2x downscale keeps its full scaled area
    np.testing.assert_array_equal(box_candidates(old, new, 1.0)[:4], [True, False, False, False])
    assert box_candidates(old[4:], new[4:], 0.5)[0]


def test_hflip_mirrors_pixels_and_boxes():
    img = np.zeros((40, 100, 3), np.uint8)
    img[20:40, 10:30] = 255
    out, boxes = hflip(img, _b([10, 20, 30, 40]))
    np.testing.assert_allclose(boxes, _b([70, 20, 90, 40]))
    ys, xs = np.nonzero(out[..., 0])
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (70, 90, 20, 40)


def test_letterbox_square_centres_the_image():
    img = np.full((20, 40, 3), 7, np.uint8)
    out, boxes = letterbox_square(img, _b([0, 0, 40, 20]), 64)
    np.testing.assert_allclose(boxes, _b([12, 22, 52, 42]))
    assert out.shape == (64, 64, 3) and out[22, 12, 0] == 7 and out[21, 12, 0] == 114 and out[22, 52, 0] == 114


def test_mosaic_places_and_cuts_the_four_images_by_hand():
    parts = [(np.full((32, 32, 3), k, np.uint8), _b([0, 0, 10, 10]), np.array([k])) for k in range(4)]
    canvas, boxes, labels = mosaic4(parts, 32, (40, 24))
    # top-left image ends at the centre (40, 24): it spans x 8..40, y -8..24 (cut at the canvas top)
    # top-right starts at x 40, bottom-left / bottom-right at y 24
    np.testing.assert_allclose(boxes, _b([8, -8, 18, 2], [40, -8, 50, 2], [8, 24, 18, 34], [40, 24, 50, 34]))
    assert labels.tolist() == [0, 1, 2, 3]
    assert canvas.shape == (64, 64, 3)
    assert canvas[0, 8, 0] == 0 and canvas[0, 40, 0] == 1 and canvas[24, 8, 0] == 2 and canvas[24, 40, 0] == 3
    assert canvas[0, 7, 0] == 114 and canvas[60, 60, 0] == 114  # outside the four images: fill


@pytest.mark.parametrize("seed", range(5))
def test_random_affine_boxes_cover_the_object_pixels(seed):
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:40, 20:44] = 255
    rng = np.random.default_rng(seed)
    out, boxes, labels = random_affine(img, _b([20, 16, 44, 40]), np.array([3]), rng, 64, 0.5, 0.25, degrees=0)
    ys, xs = np.nonzero(out[..., 0] > 200)
    if len(boxes):
        x0, y0, x1, y1 = boxes[0]
        assert labels.tolist() == [3]
        assert xs.min() >= x0 - 1 and xs.max() + 1 <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() + 1 <= y1 + 1
        assert (x1 - x0) * (y1 - y0) == pytest.approx(len(xs), rel=0.25)
    else:
        assert len(xs) < 0.1 * 24 * 24 * 0.25  # dropped only when (almost) nothing of it is left


def test_hsv_value_shift_is_a_uniform_brightness_change():
    img = np.full((8, 8, 3), 100, np.uint8)  # grey: hue and saturation do not change it
    assert hsv(img, np.random.default_rng(0), (0, 0, 0), p=1.0) is img
    seen = set()
    for seed in range(20):
        out = hsv(img, np.random.default_rng(seed), (0, 0, 0.12), p=1.0)
        assert (out == out[0, 0]).all() and abs(int(out[0, 0, 0]) - 100) <= 31
        seen.add(int(out[0, 0, 0]))
    assert len(seen) > 3


def test_sampler_slices_global_batches_by_rank_and_resumes():
    one = EpochBatches(20, 8, seed=1)
    one.set_epoch(3)
    batches = [[k.index for k in b] for b in one]
    assert len(batches) == one.steps == 2 and len({i for b in batches for i in b}) == 16
    two = [EpochBatches(20, 8, seed=1, rank=r, world=2) for r in range(2)]
    for s in two:
        s.set_epoch(3)
    halves = [[[k.index for k in b] for b in s] for s in two]
    assert [a + b for a, b in zip(*halves)] == batches  # rank 0 and rank 1 halves make up each global batch
    one.set_epoch(3, start=1)
    assert [[k.index for k in b] for b in one] == batches[1:]
    one.set_epoch(4)
    assert [[k.index for k in b] for b in one] != batches
    with pytest.raises(ConfigError, match="batch=8 is larger than the 5 training images"):
        EpochBatches(5, 8, seed=0)
    with pytest.raises(ConfigError, match="divisible"):
        EpochBatches(20, 7, seed=0, world=2)
