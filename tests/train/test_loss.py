"""YOLO-NAS's training loss (TAL + VFL + GIoU + DFL), EMA, parameter groups, schedule and the short-training proxy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import ConfigError
from nas.models import build
from nas.proxy.train import SHORT, train
from nas.train.ema import EMA
from nas.train.loss import assign, dfl_loss, pad_targets, ppyoloe_loss
from nas.train.schedule import lr_at, param_groups
from tests.zoo_helpers import tiny_arch


def reference_assign(scores, pred_boxes, points, boxes, labels, topk=13, alpha=1.0, beta=6.0, eps=1e-9):
    """The Task-Aligned Assigner written out per image, per box and per anchor (yolo_nas_training.md §1.5)."""
    b, n, c = scores.shape
    out_labels = torch.full((b, n), c, dtype=torch.long)
    out_boxes, out_scores = torch.zeros(b, n, 4), torch.zeros(b, n, c)
    for i in range(b):
        m = len(boxes[i])
        if m == 0:
            continue
        iou = torch.zeros(m, n)
        metric = torch.zeros(m, n)
        inside = torch.zeros(m, n, dtype=torch.bool)
        for g in range(m):
            x1, y1, x2, y2 = boxes[i][g].tolist()
            for a in range(n):
                px1, py1, px2, py2 = pred_boxes[i, a].tolist()
                iw, ih = max(0.0, min(x2, px2) - max(x1, px1)), max(0.0, min(y2, py2) - max(y1, py1))
                inter = iw * ih
                union = max(0.0, x2 - x1) * max(0.0, y2 - y1) + max(0.0, px2 - px1) * max(0.0, py2 - py1) - inter
                iou[g, a] = inter / (union + eps)
                metric[g, a] = scores[i, a, labels[i][g]] ** alpha * iou[g, a] ** beta
                ax, ay = points[a].tolist()
                inside[g, a] = min(ax - x1, ay - y1, x2 - ax, y2 - ay) > eps
        pos = torch.zeros(m, n, dtype=torch.bool)
        for g in range(m):
            top = torch.topk(metric[g] * inside[g], min(topk, n)).indices
            pos[g, top] = True
        pos &= inside
        for a in range(n):
            if pos[:, a].sum() > 1:
                keep = int(iou[:, a].argmax())
                pos[:, a] = False
                pos[keep, a] = True
        t_max = [(metric[g] * pos[g]).max() for g in range(m)]
        u_max = [(iou[g] * pos[g]).max() for g in range(m)]
        for a in range(n):
            gs = pos[:, a].nonzero().flatten().tolist()
            if not gs:
                continue
            g = gs[0]
            out_labels[i, a] = labels[i][g]
            out_boxes[i, a] = boxes[i][g]
            out_scores[i, a, labels[i][g]] = metric[g, a] * u_max[g] / (t_max[g] + eps)
    return out_labels, out_boxes, out_scores, out_labels < c


def _random_problem(seed: int, b: int = 3, side: int = 8, c: int = 4):
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(side) + 0.5, torch.arange(side) + 0.5, indexing="ij")
    points = torch.stack([xs, ys], -1).reshape(-1, 2) * 8.0  # one level, stride 8, 64x64 input
    n = len(points)
    scores = torch.rand(b, n, c, generator=g)
    centre = points[None] + (torch.rand(b, n, 2, generator=g) - 0.5) * 8
    wh = 6 + 30 * torch.rand(b, n, 2, generator=g)
    pred = torch.cat([centre - wh / 2, centre + wh / 2], -1)
    boxes, labels = [], []
    for i in range(b):
        k = [3, 0, 5][i % 3]  # one image without boxes
        xy = torch.rand(k, 2, generator=g) * 40
        bwh = 4 + torch.rand(k, 2, generator=g) * 24  # overlapping boxes, some smaller than a cell
        boxes.append(torch.cat([xy, xy + bwh], 1))
        labels.append(torch.randint(0, c, (k,), generator=g))
    return scores, pred, points, boxes, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assigner_matches_the_written_out_reference(seed):
    scores, pred, points, boxes, labels = _random_problem(seed)
    got = assign(scores, pred, points, *pad_targets(boxes, labels))
    want = reference_assign(scores, pred, points, boxes, labels)
    assert torch.equal(got[3], want[3]) and got[3].any()
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1][got[3]], want[1][want[3]])  # boxes of background anchors are unused
    torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-7)
    # soft targets never exceed the best IoU of their box and every box with an anchor centre inside gets positives
    assert float(got[2].max()) <= 1.0


def test_assigner_without_ground_truth_is_all_background():
    scores, pred, points, _, _ = _random_problem(0)
    labels, boxes, soft, fg = assign(scores, pred, points, *pad_targets([torch.zeros(0, 4)] * 3, [torch.zeros(0)] * 3))
    assert not fg.any() and (labels == scores.shape[-1]).all() and soft.sum() == 0 and boxes.abs().sum() == 0


def test_dfl_is_cross_entropy_interpolated_between_the_two_nearest_bins():
    logits = torch.randn(5, 4, 17)
    whole = torch.full((5, 4), 3.0)
    ce3 = F.cross_entropy(logits.reshape(-1, 17), torch.full((20,), 3), reduction="none").view(5, 4)
    torch.testing.assert_close(dfl_loss(logits, whole), ce3.mean(-1))
    frac = torch.full((5, 4), 3.25)
    ce4 = F.cross_entropy(logits.reshape(-1, 17), torch.full((20,), 4), reduction="none").view(5, 4)
    torch.testing.assert_close(dfl_loss(logits, frac), (0.75 * ce3 + 0.25 * ce4).mean(-1))
    # a distribution peaked between the right bins is close to its minimum (its entropy)
    peaked = torch.full((1, 4, 17), -30.0)
    peaked[..., 3], peaked[..., 4] = math.log(0.75), math.log(0.25)
    assert float(dfl_loss(peaked, torch.full((1, 4), 3.25))) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), abs=1e-5
    )


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build(tiny_arch(num_classes=3)).train()


def test_loss_components_sum_and_backpropagate(tiny):
    x = torch.rand(2, 3, 64, 64)
    boxes = [torch.tensor([[4.0, 6.0, 40.0, 30.0], [30.0, 30.0, 60.0, 62.0]]), torch.zeros(0, 4)]
    labels = [torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long)]
    tiny.zero_grad()
    loss, parts = ppyoloe_loss(tiny(x), boxes, labels)
    assert float(loss.detach()) == pytest.approx(sum(parts.values()), rel=1e-5)
    assert all(v > 0 for v in parts.values())
    loss.backward()
    grads = [p.grad for p in tiny.heads.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_loss_without_any_box_is_classification_only(tiny):
    loss, parts = ppyoloe_loss(tiny(torch.rand(2, 3, 64, 64)), [torch.zeros(0, 4)] * 2, [torch.zeros(0).long()] * 2)
    assert parts["iou"] == 0 and parts["dfl"] == 0 and parts["cls"] > 0
    loss.backward()  # the graph is intact


def test_loss_rejects_class_ids_beyond_the_model(tiny):
    with pytest.raises(ConfigError, match="class id is 3 but the model has 3 classes"):
        ppyoloe_loss(tiny(torch.rand(1, 3, 64, 64)), [torch.tensor([[1.0, 1.0, 30.0, 30.0]])], [torch.tensor([3])])


def test_ema_threshold_ramp():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.9997)
    old = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    d = 2 / 11  # (1 + 1) / (10 + 1)
    torch.testing.assert_close(ema.module.weight, d * old + (1 - d) * model.weight.detach())
    ema.updates = 10**6
    ema.update(model)  # far along the ramp the decay is capped
    assert min(0.9997, (1 + ema.updates) / (10 + ema.updates)) == 0.9997


def test_param_groups_put_norms_and_biases_without_weight_decay(tiny):
    decay, no_decay = param_groups(tiny, 1e-5)
    assert decay["weight_decay"] == 1e-5 and no_decay["weight_decay"] == 0.0
    trainable = [p for p in tiny.parameters() if p.requires_grad]
    assert len(decay["params"]) + len(no_decay["params"]) == len(trainable)
    bn = next(m for m in tiny.modules() if isinstance(m, nn.BatchNorm2d))
    ids = {id(p) for p in no_decay["params"]}
    assert id(bn.weight) in ids and id(bn.bias) in ids
    assert id(tiny.heads.head1.cls_pred.bias) in ids and id(tiny.heads.head1.cls_pred.weight) not in ids
    assert all(p.ndim > 1 or p.numel() == 1 for p in decay["params"])  # conv weights (and shortcut scalars)


def test_schedule_warms_up_then_decays_to_the_final_ratio():
    def at(step):
        return lr_at(step, 100, 1e-3, 10, 0.1)

    assert at(0) == pytest.approx(1e-4) and at(9) == pytest.approx(1e-3)
    assert at(10) == pytest.approx(1e-3)
    assert at(100) == pytest.approx(1e-4)
    lrs = [at(s) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert at(55) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))


def test_ema_state_round_trips():
    model = nn.Linear(2, 1)
    ema = EMA(model)
    for _ in range(3):
        ema.update(model)
    other = EMA(nn.Linear(2, 1))
    other.load_state_dict(ema.state_dict())
    assert other.updates == 3 and torch.equal(other.module.weight, ema.module.weight)


def test_the_loss_is_trainable_on_one_batch():
    """Forty AdamW steps on one fixed batch: the loss (every term of it) falls far below where it started."""
    torch.manual_seed(0)
    model = build(tiny_arch(num_classes=3)).train()
    x = torch.rand(2, 3, 64, 64)
    boxes = [torch.tensor([[4.0, 6.0, 40.0, 30.0], [30.0, 30.0, 60.0, 62.0]]), torch.tensor([[10.0, 8.0, 50.0, 56.0]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    opt = torch.optim.AdamW(param_groups(model, 0.0), lr=3e-3)
    first = None
    for _ in range(40):
        loss, parts = ppyoloe_loss(model(x), boxes, labels)
        first = first or parts
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sum(parts.values()) < 0.5 * sum(first.values()), (first, parts)
    assert parts["iou"] < 0.5 * first["iou"] and parts["dfl"] < first["dfl"]


def test_short_training_proxy_runs_the_trainer(tmp_path):
    """Two epochs on four synthetic images: steps, history rows and validation on the EMA weights."""
    from nas.data.synthetic import SyntheticSpec, ensure_synthetic

    folder = ensure_synthetic(tmp_path, SyntheticSpec(seed=3, n_train=4, n_val=3))
    torch.manual_seed(0)
    model = build(tiny_arch(num_classes=8))
    rows = []
    opts = SHORT.replace(epochs=2, imgsz=64, batch=2, lr0=3e-3, warmup_epochs=1.0)
    ema, history = train(model, folder / "synthetic.yaml", opts, val_data=folder / "synthetic.yaml", log=None,
                         on_epoch=lambda row, m: rows.append((row, m)))  # fmt: skip
    assert [r for r, _ in rows] == history and [r["steps"] for r in history] == [2, 4]
    assert all(m is ema for _, m in rows)
    assert all(r["loss"] == pytest.approx(r["cls"] + r["iou"] + r["dfl"], abs=1e-3) for r in history)
    assert all(0 <= r["mAP50_95"] <= r["mAP50"] <= 1 for r in history)
    assert not ema.training and ema is not model
    assert not (tmp_path / "runs").exists()  # the proxy writes nothing
    with pytest.raises(ConfigError, match="batch=8 is larger than the 4 training images"):
        train(model, folder / "synthetic.yaml", SHORT.replace(epochs=1, imgsz=64, batch=8), log=None)
