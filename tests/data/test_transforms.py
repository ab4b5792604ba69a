"""Letterbox geometry of ultralytics' predict and val, super-gradients' resize-and-pad, and their inverses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas.data.transforms import (
    Geometry,
    letterbox,
    predict_transform,
    rect_batch_shapes,
    scale_boxes,
    sg_transform,
    to_tensor,
    val_resize,
    val_transform,
)


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("hw", "imgsz", "input_hw", "pad_tl"),
    [
        ((480, 640), 640, (480, 640), (0, 0)),  # 4:3 needs no padding at all
        ((640, 480), 640, (640, 480), (0, 0)),
        ((540, 960), 640, (384, 640), (12, 0)),  # 640x360 + 12/12
        ((480, 640), 320, (256, 320), (8, 0)),  # 320x240 + 8/8
        ((1080, 1920), 640, (384, 640), (12, 0)),
        ((500, 333), 640, (640, 448), (0, 11)),  # 426 wide: 22 px split 11/11
    ],
)
def test_predict_letterbox_shapes(hw, imgsz, input_hw, pad_tl):
    out, geometry = predict_transform(_img(*hw), imgsz)
    assert out.shape == (*input_hw, 3)
    assert geometry.input_hw == input_hw and geometry.orig_hw == hw and geometry.pad_tl == pad_tl
    assert geometry.gain_hw is None  # predict derives one gain from the shapes, as ultralytics does


def test_letterbox_padding_split_and_value():
    # 615 rows into 640: 25 px of padding split round(12.5 - 0.1) = 12 on top, round(12.5 + 0.1) = 13 below
    img = np.full((615, 640, 3), 7, dtype=np.uint8)
    out, (top, left) = letterbox(img, (640, 640), auto=False)
    assert (top, left) == (12, 0)
    assert (out[:12] == 114).all() and (out[-13:] == 114).all() and (out[12:-13] == 7).all()
    # an even split stays even: round(12 - 0.1) = round(12 + 0.1) = 12
    out, (top, _) = letterbox(np.zeros((616, 640, 3), np.uint8), (640, 640), auto=False)
    assert top == 12 and (out[-12:] == 114).all() and not (out[-13] == 114).any()


def test_letterbox_scaleup_false_keeps_small_images():
    out, (top, left) = letterbox(_img(100, 200), (512, 672), scaleup=False)
    assert out.shape == (512, 672, 3) and (top, left) == (206, 236)
    assert np.array_equal(out[206:306, 236:436], _img(100, 200))


@pytest.mark.parametrize(
    ("hw", "batch_hw"),
    [((480, 640), (512, 672)), ((640, 480), (672, 512)), ((540, 960), (384, 672)), ((640, 640), (672, 672))],
)
def test_val_rect_shapes_one_image_per_batch(hw, batch_hw):
    order, shapes = rect_batch_shapes([hw], 640, batch=1)
    assert shapes == [batch_hw] and order.tolist() == [0]
    out, geometry = val_transform(_img(*hw), 640, batch_hw)
    assert out.shape[:2] == batch_hw and geometry.input_hw == batch_hw


def test_val_rect_batches_sorted_by_aspect_ratio():
    hw = [(640, 480), (480, 640), (540, 960), (640, 640), (300, 400)]  # h/w: 1.33, .75, .5625, 1, .75
    order, shapes = rect_batch_shapes(hw, 640, batch=2)
    assert order.tolist()[0] == 2 and order.tolist()[-1] == 0
    assert sorted(order.tolist()[1:3]) == [1, 4]
    # batch 0: ratios .5625, .75 -> max .75 -> 512 x 672; batch 1: .75, 1 -> 672 x 672; batch 2: 1.33 -> 672 x 512
    assert shapes == [(512, 672), (672, 672), (672, 512)]


def test_val_resize_rounds_up():
    # 333 x 500 (w x h): 333 * 1.28 = 426.24 -> ceil 427 (predict's round would give 426)
    assert val_resize(_img(500, 333), 640).shape[:2] == (640, 427)
    assert val_resize(_img(480, 640), 640).shape[:2] == (480, 640)  # already 640 long: untouched


def test_sg_transform_resizes_to_636_and_centre_pads():
    out, geometry = sg_transform(_img(480, 640))
    assert out.shape == (640, 640, 3)
    assert geometry.pad_tl == ((640 - 477) // 2, 2)  # 636 x 477 inside 640 x 640
    assert (out[:81] == 114).all() and (out[:, :2] == 114).all()
    assert geometry.gain_hw == (636 / 640, 636 / 640)


def test_to_tensor_is_rgb_in_unit_range():
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 255  # B, G, R
    x = to_tensor([img, img])
    assert x.shape == (2, 3, 2, 3) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([255, 20, 10]) / 255)


@pytest.mark.parametrize("hw", [(480, 640), (540, 960), (500, 333), (1080, 1920), (333, 777)])
def test_scale_boxes_round_trip_predict(hw):
    h0, w0 = hw
    _, geometry = predict_transform(_img(h0, w0), 640)
    top, left = geometry.pad_tl
    r = min(640 / h0, 640 / w0)
    sy, sx = round(h0 * r) / h0, round(w0 * r) / w0  # the resized pixels' own scale, per axis (ultralytics 8.4)
    boxes0 = torch.tensor([[0.25 * w0, 0.1 * h0, 0.75 * w0, 0.9 * h0], [1.0, 2.0, 3.5, 4.5]], dtype=torch.float64)
    forward = boxes0 * torch.tensor([sx, sy, sx, sy], dtype=torch.float64) + torch.tensor([left, top, left, top])
    assert torch.allclose(scale_boxes(forward.clone(), geometry), boxes0, atol=1e-9)


def test_scale_boxes_uses_val_gains_and_clips():
    _, geometry = val_transform(_img(500, 333), 640, (672, 480))
    sy, sx = geometry.gain_hw
    assert sx == 427 / 333 and sy == 640 / 500
    top, left = geometry.pad_tl
    boxes0 = torch.tensor([[10.0, 20.0, 100.0, 200.0], [-5.0, 490.0, 340.0, 510.0]], dtype=torch.float64)
    forward = boxes0 * torch.tensor([sx, sy, sx, sy], dtype=torch.float64) + torch.tensor([left, top, left, top])
    back = scale_boxes(forward, geometry)
    assert torch.allclose(back[0], boxes0[0], atol=1e-9)
    assert back[1].tolist() == pytest.approx([0.0, 490.0, 333.0, 500.0])  # clipped to the image


def test_scale_boxes_numpy_and_explicit_geometry():
    geometry = Geometry(orig_hw=(100, 200), input_hw=(64, 128), pad_tl=(0, 0))
    boxes = np.array([[0.0, 0.0, 64.0, 32.0]])
    assert scale_boxes(boxes, geometry).tolist() == [[0.0, 0.0, 100.0, 50.0]]
