"""The YOLO-NAS detector assembled from an `ArchConfig`; module names equal super-gradients' keys."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nas.models.blocks import Conv, CSPLayer, HeadConv, make_block
from nas.space.io import load_arch
from nas.space.schema import ArchConfig, ContextConfig, HeadConfig, NeckStageConfig, StageConfig

__all__ = ["YoloNAS", "build", "make_anchors"]


class Stem(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, block: str):
        super().__init__()
        self.conv = make_block(block, in_channels, out_channels, stride=2, residual=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Stage(nn.Module):
    def __init__(self, in_channels: int, cfg: StageConfig):
        super().__init__()
        self.downsample = make_block(cfg.block, in_channels, cfg.out_channels, stride=2, residual=False)
        self.blocks = CSPLayer(
            cfg.out_channels,
            cfg.out_channels,
            cfg.num_blocks,
            cfg.hidden_channels,
            cfg.block,
            cfg.concat_intermediates,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class SPP(nn.Module):
    """Parallel max-pools of one tensor (SPP, not the sequential SPPF)."""

    def __init__(self, in_channels: int, cfg: ContextConfig):
        super().__init__()
        hidden = in_channels // 2
        self.cv1 = Conv(in_channels, hidden, 1)
        self.cv2 = Conv(hidden * (len(cfg.pool_sizes) + 1), cfg.out_channels, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in cfg.pool_sizes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x, *(m(x) for m in self.m)], dim=1))


class Backbone(nn.Module):
    """Stem, four stages and the SPP context module; returns [stage1, stage2, stage3, context]."""

    def __init__(self, arch: ArchConfig):
        super().__init__()
        cfg = arch.backbone
        self.stem = Stem(arch.in_channels, cfg.stem.out_channels, cfg.stem.block)
        channels = cfg.stem.out_channels
        for i, stage in enumerate(cfg.stages, start=1):
            setattr(self, f"stage{i}", Stage(channels, stage))
            channels = stage.out_channels
        self.context_module = SPP(channels, cfg.context)
        self.out_channels = (*(s.out_channels for s in cfg.stages[:3]), cfg.context.out_channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        c2 = self.stage1(x)
        c3 = self.stage2(c2)
        c4 = self.stage3(c3)
        c5 = self.context_module(self.stage4(c4))
        return [c2, c3, c4, c5]


class UpStage(nn.Module):
    """1x1 reduce, learned 2x upsample, fuse with a same-scale and a finer (stride-2 reduced) skip."""

    def __init__(self, in_channels: int, skip1_channels: int, skip2_channels: int, cfg: NeckStageConfig):
        super().__init__()
        out = cfg.effective_out_channels
        self.reduce_skip1 = Conv(skip1_channels, out, 1)
        self.reduce_skip2 = Conv(skip2_channels, out, 1)
        self.conv = Conv(in_channels, out, 1)
        self.upsample = nn.ConvTranspose2d(out, out, kernel_size=2, stride=2, bias=True)
        self.downsample = Conv(out, out, 3, stride=2)
        self.reduce_after_concat = Conv(3 * out, out, 1)
        self.blocks = CSPLayer(
            out, out, cfg.effective_num_blocks, cfg.hidden_channels, cfg.block, cfg.concat_intermediates
        )

    def forward(self, x: Tensor, skip1: Tensor, skip2: Tensor) -> tuple[Tensor, Tensor]:
        inter = self.conv(x)
        z = torch.cat([self.upsample(inter), self.reduce_skip1(skip1), self.downsample(self.reduce_skip2(skip2))], 1)
        return inter, self.blocks(self.reduce_after_concat(z))


class DownStage(nn.Module):
    """3x3 stride-2 conv to half the output width, concatenated with a skip, then a CSP layer."""

    def __init__(self, in_channels: int, skip_channels: int, cfg: NeckStageConfig):
        super().__init__()
        out = cfg.effective_out_channels
        self.conv = Conv(in_channels, out // 2, 3, stride=2)
        self.blocks = CSPLayer(
            out // 2 + skip_channels,
            out,
            cfg.effective_num_blocks,
            cfg.hidden_channels,
            cfg.block,
            cfg.concat_intermediates,
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.blocks(torch.cat([self.conv(x), skip], 1))


class PANNeck(nn.Module):
    """YOLO-NAS PAN neck with C2 skips; returns (p3, p4, p5)."""

    def __init__(self, in_channels: tuple[int, int, int, int], arch: ArchConfig):
        super().__init__()
        c2, c3, c4, c5 = in_channels
        up1, up2 = arch.neck.up
        down1, down2 = arch.neck.down
        self.neck1 = UpStage(c5, c4, c3, up1)
        self.neck2 = UpStage(up1.effective_out_channels, c3, c2, up2)
        self.neck3 = DownStage(up2.effective_out_channels, up2.effective_out_channels, down1)
        self.neck4 = DownStage(down1.effective_out_channels, up1.effective_out_channels, down2)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        c2, c3, c4, c5 = feats
        n1_inter, x = self.neck1(c5, c4, c3)
        n2_inter, p3 = self.neck2(x, c3, c2)
        p4 = self.neck3(p3, n2_inter)
        p5 = self.neck4(p4, n1_inter)
        return p3, p4, p5


class DFLHead(nn.Module):
    """Decoupled head for one level; returns (reg_logits [B, 4(R+1), H, W], cls_logits [B, C, H, W])."""

    def __init__(self, in_channels: int, cfg: HeadConfig, num_classes: int, reg_max: int):
        super().__init__()
        inter = cfg.effective_inter_channels
        g = cfg.first_conv_group_size
        groups = 0 if g == 0 else (1 if g == -1 else inter // g)
        self.stem = HeadConv(in_channels, inter, 1)
        first = [HeadConv(inter, inter, 3, groups=groups)] if groups else []
        self.cls_convs = nn.Sequential(*first, HeadConv(inter, inter, 3))
        first = [HeadConv(inter, inter, 3, groups=groups)] if groups else []
        self.reg_convs = nn.Sequential(*first, HeadConv(inter, inter, 3))
        self.cls_pred = nn.Conv2d(inter, num_classes, 1)
        self.reg_pred = nn.Conv2d(inter, 4 * (reg_max + 1), 1)
        self.stride = cfg.stride
        prior_prob = 0.01
        nn.init.constant_(self.cls_pred.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.stem(x)
        return self.reg_pred(self.reg_convs(x)), self.cls_pred(self.cls_convs(x))


def make_anchors(
    shapes: list[tuple[int, int]], strides: tuple[int, ...], offset: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Anchor centres in grid units [N, 2] (x, y; level-major, row-major) and strides [N, 1]."""
    points, stride_t = [], []
    for (h, w), s in zip(shapes, strides):
        xs = torch.arange(w, dtype=torch.float32, device=device) + offset
        ys = torch.arange(h, dtype=torch.float32, device=device) + offset
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx, yy], dim=-1).reshape(-1, 2).to(dtype))
        stride_t.append(torch.full((h * w, 1), s, dtype=dtype, device=device))
    return torch.cat(points), torch.cat(stride_t)


class NDFLHeads(nn.Module):
    """Three DFL heads plus anchor-free decoding to xyxy boxes in input pixels."""

    def __init__(self, in_channels: tuple[int, int, int], arch: ArchConfig):
        super().__init__()
        cfg = arch.heads
        self.num_classes, self.reg_max = cfg.num_classes, cfg.reg_max
        self.grid_cell_scale, self.grid_cell_offset = cfg.grid_cell_scale, cfg.grid_cell_offset
        self.fpn_strides = tuple(h.stride for h in cfg.heads)
        proj = torch.linspace(0, cfg.reg_max, cfg.reg_max + 1).reshape(1, cfg.reg_max + 1, 1, 1)
        self.register_buffer("proj_conv", proj, persistent=False)
        for i, (c, head) in enumerate(zip(in_channels, cfg.heads), start=1):
            setattr(self, f"head{i}", DFLHead(c, head, cfg.num_classes, cfg.reg_max))

    def forward(self, feats: tuple[Tensor, Tensor, Tensor]):
        cls_list, reg_list, dist_list, shapes = [], [], [], []
        r1 = self.reg_max + 1
        for head, feat in zip((self.head1, self.head2, self.head3), feats):
            b, _, h, w = feat.shape
            shapes.append((h, w))
            reg, cls = head(feat)
            reg_list.append(reg.flatten(2).permute(0, 2, 1))
            dist = reg.reshape(b, 4, r1, h * w).permute(0, 2, 3, 1).softmax(dim=1)
            dist_list.append((dist * self.proj_conv).sum(dim=1))
            cls_list.append(cls.reshape(b, self.num_classes, h * w))
        cls_logits = torch.cat(cls_list, dim=-1).permute(0, 2, 1)
        reg_distri = torch.cat(reg_list, dim=1)
        dist = torch.cat(dist_list, dim=1)
        feat0 = feats[0]
        anchor_points, stride_tensor = make_anchors(
            shapes, self.fpn_strides, self.grid_cell_offset, feat0.dtype, feat0.device
        )
        lt, rb = dist.split(2, dim=-1)
        boxes = torch.cat([anchor_points - lt, anchor_points + rb], dim=-1) * stride_tensor
        scores = cls_logits.sigmoid()
        if torch.jit.is_tracing() or torch.compiler.is_exporting():
            return boxes, scores
        raw = (cls_logits, reg_distri, *self._raw_anchors(shapes, feat0.device), stride_tensor)
        return (boxes, scores), raw

    def _raw_anchors(self, shapes: list[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor, list[int]]:
        """Pixel anchors of the training assigner: squares of grid_cell_scale x stride around each centre."""
        points, strides = make_anchors(shapes, self.fpn_strides, self.grid_cell_offset, torch.float32, device)
        centres = points * strides
        half = self.grid_cell_scale * strides * 0.5
        anchors = torch.cat([centres - half, centres + half], dim=-1)
        return anchors, centres, [h * w for h, w in shapes]


class YoloNAS(nn.Module):
    """YOLO-NAS detector. Eval forward on [B, 3, H, W] in [0, 1] (H, W multiples of 32) returns
    ((boxes xyxy [B, N, 4], scores [B, N, C]), (cls_logits, reg_distri, anchors, anchor_points,
    num_anchors_list, stride_tensor)); while tracing/exporting only (boxes, scores)."""

    def __init__(self, arch: ArchConfig):
        super().__init__()
        self.arch = arch
        self.backbone = Backbone(arch)
        self.neck = PANNeck(self.backbone.out_channels, arch)
        self.heads = NDFLHeads(arch.neck_out_channels, arch)
        for m in self.modules():
            if type(m) is nn.BatchNorm2d:
                m.eps, m.momentum = arch.bn_eps, arch.bn_momentum
        self.fusion = "none"

    @property
    def num_classes(self) -> int:
        return self.arch.num_classes

    def forward(self, x: Tensor):
        return self.heads(self.neck(self.backbone(x)))


def build(arch: ArchConfig | str) -> YoloNAS:
    """Build the network of an architecture (randomly initialised, train mode)."""
    if not isinstance(arch, ArchConfig):
        arch = load_arch(arch)
    return YoloNAS(arch)
