"""Writes checkpoints in the released ultralytics format (a whole super-gradients model pickled with torch.save)
without super-gradients: throwaway `super_gradients.*` modules, generated into a temp dir and imported only by a
subprocess, whose classes mirror super-gradients' attribute layout (module names and registration order,
non-persistent `id_tensor` / `proj_conv` buffers, plain attributes, a preprocessing object). The test process
never has them importable, so loading proves that no super-gradients code is needed.

Layouts follow super-gradients' modules (`src/super_gradients/modules/`, `training/models/detection_models/`) and
ultralytics' pickled `yolo_nas_{s,m,l}.pt`. `era="3.1.1"` leaves out the attributes that later
super-gradients versions added (drop_path, dropout, cls/reg_dropout_rate), as the ultralytics assets do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FILES = {
    "modules/skip_connections.py": """
        from torch import nn
        class Residual(nn.Module):
            def forward(self, x):
                return x
    """,
    "modules/conv_bn_act_block.py": """
        from torch import nn
        class Conv(nn.Module):
            def __init__(self, cin, cout, kernel, stride=1, activation_type=nn.ReLU, padding=None, groups=None):
                super().__init__()
                self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if padding is None else padding,
                                      groups=groups or 1, bias=False)
                self.bn = nn.BatchNorm2d(cout)
                self.act = activation_type(inplace=True)
    """,
    "modules/conv_bn_relu_block.py": """
        from torch import nn
        class ConvBNReLU(nn.Module):
            def __init__(self, cin, cout, kernel, padding=0, groups=1, bias=False):
                super().__init__()
                self.seq = nn.Sequential()
                self.seq.add_module("conv", nn.Conv2d(cin, cout, kernel, 1, padding, groups=groups, bias=bias))
                self.seq.add_module("bn", nn.BatchNorm2d(cout))
                self.seq.add_module("act", nn.ReLU(inplace=True))
    """,
    "modules/qarepvgg_block.py": """
        import torch
        from torch import nn
        from super_gradients.modules.skip_connections import Residual
        class QARepVGGBlock(nn.Module):
            def __init__(self, cin, cout, stride=1, use_residual_connection=True):
                super().__init__()
                self.in_channels, self.out_channels, self.stride, self.groups, self.dilation = cin, cout, stride, 1, 1
                self.nonlinearity = nn.ReLU(inplace=True)
                self.se = nn.Identity()
                self.branch_3x3 = nn.Sequential()
                self.branch_3x3.add_module("conv", nn.Conv2d(cin, cout, 3, stride, 1, bias=False))
                self.branch_3x3.add_module("bn", nn.BatchNorm2d(cout))
                self.branch_1x1 = nn.Conv2d(cin, cout, 1, stride, 0, bias=True)
                if use_residual_connection:
                    self.identity = Residual()
                    ident = torch.zeros(cin, cin, 3, 3)
                    ident[torch.arange(cin), torch.arange(cin), 1, 1] = 1.0
                    self.register_buffer("id_tensor", ident, persistent=False)
                else:
                    self.identity = None
                self.alpha = 1.0
                self.post_bn = nn.BatchNorm2d(cout)
                self.rbr_reparam = nn.Conv2d(cin, cout, 3, stride, 1, bias=True)
                self.partially_fused = False
                self.fully_fused = False
    """,
    "modules/detection_modules.py": """
        from torch import nn
        class NStageBackbone(nn.Module):
            def __init__(self, stem, stages, context_module):
                super().__init__()
                self.out_layers = ["stage1", "stage2", "stage3", "context_module"]
                self.stem = stem
                for i, s in enumerate(stages, start=1):
                    setattr(self, f"stage{i}", s)
                self.context_module = context_module
                self._out_channels = [96, 192, 384, 768]
    """,
    "training/models/detection_models/csp_darknet53.py": """
        from torch import nn
        from super_gradients.modules.conv_bn_act_block import Conv
        class SPP(nn.Module):
            def __init__(self, cin, cout, k):
                super().__init__()
                hidden = cin // 2
                self.cv1 = Conv(cin, hidden, 1)
                self.cv2 = Conv(hidden * (len(k) + 1), cout, 1)
                self.m = nn.ModuleList(nn.MaxPool2d(x, 1, x // 2) for x in k)
    """,
    "training/models/detection_models/yolo_nas/yolo_stages.py": """
        import torch
        from torch import nn
        from super_gradients.modules.conv_bn_act_block import Conv
        from super_gradients.modules.qarepvgg_block import QARepVGGBlock
        from super_gradients.modules.skip_connections import Residual
        NEW = False  # set by the writer: True mimics super-gradients >= 3.1.3 (drop_path / dropout attributes)
        class YoloNASBottleneck(nn.Module):
            def __init__(self, ch, block):
                super().__init__()
                self.cv1 = block(ch, ch)
                self.cv2 = block(ch, ch)
                self.add = True
                self.shortcut = Residual()
                if NEW:
                    self.drop_path = nn.Identity()
                self.alpha = nn.Parameter(torch.tensor([1.0]))
        class SequentialWithIntermediates(nn.Sequential):
            def __init__(self, output_intermediates, *mods):
                super().__init__(*mods)
                self.output_intermediates = output_intermediates
        class YoloNASCSPLayer(nn.Module):
            def __init__(self, cin, cout, n, block, hidden, concat):
                super().__init__()
                self.conv1 = Conv(cin, hidden, 1)
                self.conv2 = Conv(cin, hidden, 1)
                self.conv3 = Conv(hidden * (2 + concat * n), cout, 1)
                self.bottlenecks = SequentialWithIntermediates(concat, *(YoloNASBottleneck(hidden, block) for _ in range(n)))
                if NEW:
                    self.dropout = nn.Identity()
        class YoloNASStem(nn.Module):
            def __init__(self, cin, cout):
                super().__init__()
                self.in_channels, self._out_channels = cin, cout
                self.conv = QARepVGGBlock(cin, cout, stride=2, use_residual_connection=False)
        class YoloNASStage(nn.Module):
            def __init__(self, cin, cout, n, hidden, concat):
                super().__init__()
                self.in_channels, self._out_channels = cin, cout
                self.downsample = QARepVGGBlock(cin, cout, stride=2, use_residual_connection=False)
                self.blocks = YoloNASCSPLayer(cout, cout, n, QARepVGGBlock, hidden, concat)
        class YoloNASUpStage(nn.Module):
            def __init__(self, cin, skip1, skip2, out, n, hidden, concat):
                super().__init__()
                self.in_channels = [cin, skip1, skip2]
                self.reduce_skip1 = Conv(skip1, out, 1)
                self.reduce_skip2 = Conv(skip2, out, 1)
                self.conv = Conv(cin, out, 1)
                self.upsample = nn.ConvTranspose2d(out, out, kernel_size=2, stride=2)
                self.downsample = Conv(out, out, 3, stride=2)
                self.reduce_after_concat = Conv(3 * out, out, 1)
                self.blocks = YoloNASCSPLayer(out, out, n, QARepVGGBlock, hidden, concat)
                self._out_channels = [out, out]
        class YoloNASDownStage(nn.Module):
            def __init__(self, cin, skip, out, n, hidden, concat):
                super().__init__()
                self.in_channels = [cin, skip]
                self.conv = Conv(cin, out // 2, 3, 2)
                conv3x3 = lambda a, b: Conv(a, b, 3, 1)  # noqa: E731  (not pickled: only used to build)
                self.blocks = YoloNASCSPLayer(out // 2 + skip, out, n, conv3x3, hidden, concat)
                self._out_channels = out
    """,
    "training/models/detection_models/yolo_nas/panneck.py": """
        from torch import nn
        class YoloNASPANNeckWithC2(nn.Module):
            def __init__(self, necks):
                super().__init__()
                for i, m in enumerate(necks, start=1):
                    setattr(self, f"neck{i}", m)
    """,
    "training/models/detection_models/yolo_nas/dfl_heads.py": """
        import math
        import torch
        from torch import nn
        from super_gradients.modules.conv_bn_relu_block import ConvBNReLU
        from super_gradients.training.models.detection_models.yolo_nas import yolo_stages
        class YoloNASDFLHead(nn.Module):
            def __init__(self, cin, inter, groups, num_classes, stride, reg_max):
                super().__init__()
                self.num_classes, self.stride, self.prior_prob = num_classes, stride, 0.01
                self.stem = ConvBNReLU(cin, inter, 1, 0)
                first = [ConvBNReLU(inter, inter, 3, 1, groups=groups)] if groups else []
                self.cls_convs = nn.Sequential(*first, ConvBNReLU(inter, inter, 3, 1))
                first = [ConvBNReLU(inter, inter, 3, 1, groups=groups)] if groups else []
                self.reg_convs = nn.Sequential(*first, ConvBNReLU(inter, inter, 3, 1))
                self.cls_pred = nn.Conv2d(inter, num_classes, 1)
                self.reg_pred = nn.Conv2d(inter, 4 * (reg_max + 1), 1)
                if yolo_stages.NEW:
                    self.cls_dropout_rate = nn.Identity()
                    self.reg_dropout_rate = nn.Identity()
                self.grid = torch.zeros(1)
                nn.init.constant_(self.cls_pred.bias, -math.log((1 - 0.01) / 0.01))
        class NDFLHeads(nn.Module):
            def __init__(self, heads, num_classes, reg_max):
                super().__init__()
                self.num_classes, self.reg_max = num_classes, reg_max
                self.grid_cell_scale, self.grid_cell_offset, self.eval_size = 5.0, 0.5, None
                self.fpn_strides = (8, 16, 32)
                proj = torch.linspace(0, reg_max, reg_max + 1).reshape(1, reg_max + 1, 1, 1)
                self.register_buffer("proj_conv", proj, persistent=False)
                for i, h in enumerate(heads, start=1):
                    setattr(self, f"head{i}", h)
    """,
    "training/models/detection_models/customizable_detector.py": """
        from torch import nn
        class CustomizableDetector(nn.Module):
            pass
    """,
    "training/models/detection_models/yolo_nas/yolo_nas_variants.py": """
        from super_gradients.training.models.detection_models.customizable_detector import CustomizableDetector
        class YoloNAS(CustomizableDetector):
            pass
        class YoloNAS_S(YoloNAS):
            pass
        class YoloNAS_M(YoloNAS):
            pass
        class YoloNAS_L(YoloNAS):
            pass
    """,
    "training/processing/processing.py": """
        class ComposeProcessing:
            def __init__(self, processings):
                self.processings = processings
        class DetectionLongestMaxSizeRescale:
            def __init__(self, output_shape):
                self.output_shape = output_shape
        class DetectionCenterPadding:
            def __init__(self, output_shape, pad_value):
                self.output_shape, self.pad_value = output_shape, pad_value
        class StandardizeImage:
            def __init__(self, max_value=255.0):
                self.max_value = max_value
        class ImagePermute:
            def __init__(self, permutation=(2, 0, 1)):
                self.permutation = permutation
    """,
}

_WRITER = r"""
import json, sys
import torch
from torch import nn
sys.path.insert(0, sys.argv[1])
from nas.space import ArchConfig
from super_gradients.training.models.detection_models.yolo_nas import yolo_stages as st, yolo_nas_variants as var
from super_gradients.training.models.detection_models.yolo_nas.dfl_heads import NDFLHeads, YoloNASDFLHead
from super_gradients.training.models.detection_models.yolo_nas.panneck import YoloNASPANNeckWithC2
from super_gradients.training.models.detection_models.csp_darknet53 import SPP
from super_gradients.modules.detection_modules import NStageBackbone
from super_gradients.training.processing import processing as pp

for job in json.loads(sys.argv[2]):
    st.NEW = job["era"] != "3.1.1"
    src = torch.load(job["source"], weights_only=True)
    a = ArchConfig.from_dict(src["arch"])
    b = a.backbone
    stages, cin = [], b.stem.out_channels
    for s in b.stages:
        stages.append(st.YoloNASStage(cin, s.out_channels, s.num_blocks, s.hidden_channels, s.concat_intermediates))
        cin = s.out_channels
    backbone = NStageBackbone(st.YoloNASStem(a.in_channels, b.stem.out_channels), stages,
                              SPP(cin, b.context.out_channels, list(b.context.pool_sizes)))
    c2, c3, c4, c5 = (*(s.out_channels for s in b.stages[:3]), b.context.out_channels)
    (u1, u2), (d1, d2) = a.neck.up, a.neck.down
    o = lambda s: s.effective_out_channels
    n = lambda s: s.effective_num_blocks
    neck = YoloNASPANNeckWithC2([
        st.YoloNASUpStage(c5, c4, c3, o(u1), n(u1), u1.hidden_channels, u1.concat_intermediates),
        st.YoloNASUpStage(o(u1), c3, c2, o(u2), n(u2), u2.hidden_channels, u2.concat_intermediates),
        st.YoloNASDownStage(o(u2), o(u2), o(d1), n(d1), d1.hidden_channels, d1.concat_intermediates),
        st.YoloNASDownStage(o(d1), o(u1), o(d2), n(d2), d2.hidden_channels, d2.concat_intermediates),
    ])
    heads = []
    for cin, h in zip(a.neck_out_channels, a.heads.heads):
        inter, g = h.effective_inter_channels, h.first_conv_group_size
        groups = 0 if g == 0 else (1 if g == -1 else inter // g)
        heads.append(YoloNASDFLHead(cin, inter, groups, a.heads.num_classes, h.stride, a.heads.reg_max))
    model = getattr(var, job["cls"])()
    model.backbone, model.neck = backbone, neck
    model.heads = NDFLHeads(heads, a.heads.num_classes, a.heads.reg_max)
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.eps, m.momentum = a.bn_eps, a.bn_momentum
    model.heads_params = {"num_classes": a.heads.num_classes, "reg_max": a.heads.reg_max}
    model.bn_eps, model.bn_momentum, model.inplace_act, model.in_channels = a.bn_eps, a.bn_momentum, True, 3
    model._class_names = job["class_names"]
    model._image_processor = pp.ComposeProcessing([
        pp.DetectionLongestMaxSizeRescale((636, 636)), pp.DetectionCenterPadding((640, 640), 114),
        pp.StandardizeImage(255.0), pp.ImagePermute((2, 0, 1))])
    model._default_nms_iou, model._default_nms_conf = 0.7, 0.25
    sd = src["state_dict"]
    assert list(model.state_dict()) == list(sd), "fake super-gradients key order differs from nas.models.build"
    model.load_state_dict(sd, strict=True)
    model.eval()
    torch.save(model, job["out"], _use_new_zipfile_serialization=not job.get("legacy", False))
print("ok")
"""


def write_fake_sg(root: Path) -> Path:
    """Generate the throwaway `super_gradients` package under `root`; returns `root`."""
    pkg = root / "super_gradients"
    for rel, src in _FILES.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(src).lstrip())
        for parent in path.relative_to(root).parents:  # every folder on the way is a package
            if str(parent) != ".":
                (root / parent / "__init__.py").touch()
    return root


def write_ultralytics_checkpoints(jobs: list[dict], workdir: Path) -> None:
    """Pickle whole fake-SG models in a subprocess. A job: source (our own-format checkpoint), out, cls
    (YoloNAS_S|M|L), era ("3.1.1" or "3.6"), class_names, optional legacy (torch's pre-1.6 file format)."""
    sg_root = write_fake_sg(workdir / "fake_sg")
    env = dict(os.environ, PYTHONPATH=str(sg_root))
    proc = subprocess.run(
        [sys.executable, "-c", _WRITER, str(ROOT), json.dumps(jobs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 or "ok" not in proc.stdout:
        raise RuntimeError(f"fake super-gradients writer failed:\n{proc.stdout}\n{proc.stderr}")
