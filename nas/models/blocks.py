"""Building blocks of YOLO-NAS, with attribute names equal to super-gradients' state_dict names.

Blocks know how to fuse themselves (`reparameterize()`); `nas.models.reparam.fuse` walks a model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Bottleneck",
    "CSPLayer",
    "Conv",
    "HeadConv",
    "QARepVGGBlock",
    "RepVGGBlock",
    "SequentialWithIntermediates",
    "fold_bn",
    "make_block",
]

FUSION_MODES = ("none", "partial", "full")


def fold_bn(weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Kernel and bias of conv-then-BN as one conv (eval-mode BN)."""
    std = torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight / std
    b = bn.bias - bn.running_mean * scale
    if bias is not None:
        b = b + bias * scale
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), b


def _identity_kernel(channels: int, groups: int, like: Tensor) -> Tensor:
    per_group = channels // groups
    k = torch.zeros(channels, per_group, 3, 3, dtype=like.dtype, device=like.device)
    idx = torch.arange(channels, device=like.device)
    k[idx, idx % per_group, 1, 1] = 1.0
    return k


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU; super-gradients `Conv` (keys `conv.*`, `bn.*`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    def reparameterize(self) -> None:
        """Fold the BatchNorm into the conv (eval-mode statistics); idempotent."""
        if isinstance(self.bn, nn.Identity):
            return
        self.conv = _conv_with(self.conv, *fold_bn(self.conv.weight, self.conv.bias, self.bn))
        self.bn = nn.Identity()


class HeadConv(nn.Module):
    """Conv-BN-ReLU inside a Sequential named `seq`; super-gradients `ConvBNReLU` (keys `seq.conv.*`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, groups: int = 1):
        super().__init__()
        self.seq = nn.Sequential()
        self.seq.add_module(
            "conv", nn.Conv2d(in_channels, out_channels, kernel, 1, kernel // 2, groups=groups, bias=False)
        )
        self.seq.add_module("bn", nn.BatchNorm2d(out_channels))
        self.seq.add_module("act", nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)

    def reparameterize(self) -> None:
        if isinstance(self.seq.bn, nn.Identity):
            return
        self.seq.conv = _conv_with(self.seq.conv, *fold_bn(self.seq.conv.weight, self.seq.conv.bias, self.seq.bn))
        self.seq.bn = nn.Identity()


def _conv_with(template: nn.Conv2d, weight: Tensor, bias: Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(
        template.in_channels,
        template.out_channels,
        template.kernel_size,
        template.stride,
        template.padding,
        template.dilation,
        template.groups,
        bias=True,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv


class QARepVGGBlock(nn.Module):
    """Quantization-aware RepVGG block (S4 variant of arXiv 2212.01593, as in super-gradients).

    y = ReLU(post_bn(BN(conv3x3(x)) + conv1x1(x) + [x])). `rbr_reparam` is the placeholder conv that
    super-gradients registers unconditionally; it is part of the released state_dict and parameter counts.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, use_residual_connection: bool = True):
        super().__init__()
        if use_residual_connection and (in_channels != out_channels or stride != 1):
            raise ValueError(
                f"identity branch needs in == out and stride 1, got {in_channels}->{out_channels} s{stride}"
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.nonlinearity = nn.ReLU(inplace=True)
        self.branch_3x3 = nn.Sequential()
        self.branch_3x3.add_module("conv", nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False))
        self.branch_3x3.add_module("bn", nn.BatchNorm2d(out_channels))
        self.branch_1x1 = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=True)
        self.has_identity = use_residual_connection
        self.post_bn = nn.BatchNorm2d(out_channels)
        self.rbr_reparam = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=True)
        self.fusion = "none"

    def forward(self, x: Tensor) -> Tensor:
        if self.fusion == "full":
            return self.nonlinearity(self.rbr_reparam(x))
        if self.fusion == "partial":
            return self.nonlinearity(self.post_bn(self.rbr_reparam(x)))
        y = self.branch_3x3(x) + self.branch_1x1(x)
        if self.has_identity:
            y = y + x
        return self.nonlinearity(self.post_bn(y))

    def reparameterize(self, mode: str = "full") -> None:
        """Fuse the branches into `rbr_reparam` ("partial": keep post_bn, as super-gradients' default
        conversion does for QAT/TensorRT; "full": fold post_bn too). Idempotent; full after partial works."""
        if mode not in ("partial", "full"):
            raise ValueError(f"mode must be 'partial' or 'full', got {mode!r}")
        if self.fusion == "full" or self.fusion == mode:
            return
        with torch.no_grad():
            if self.fusion == "none":
                k, b = fold_bn(self.branch_3x3.conv.weight, None, self.branch_3x3.bn)
                k = k + F.pad(self.branch_1x1.weight, [1, 1, 1, 1])
                b = b + self.branch_1x1.bias
                if self.has_identity:
                    k = k + _identity_kernel(self.in_channels, 1, k)
                self.rbr_reparam.weight.copy_(k)
                self.rbr_reparam.bias.copy_(b)
                del self.branch_3x3, self.branch_1x1
                self.fusion = "partial"
            if mode == "full":
                k, b = fold_bn(self.rbr_reparam.weight, self.rbr_reparam.bias, self.post_bn)
                self.rbr_reparam.weight.copy_(k)
                self.rbr_reparam.bias.copy_(b)
                del self.post_bn
                self.fusion = "full"


class RepVGGBlock(nn.Module):
    """Classic RepVGG block (BN on every branch, no post-BN): the non-quantization-friendly baseline.

    Key names follow super-gradients' `RepVGGBlock` (`branch_3x3`, `branch_1x1`, `no_conv_branch`).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, use_residual_connection: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.nonlinearity = nn.ReLU(inplace=True)
        identity = use_residual_connection and in_channels == out_channels and stride == 1
        self.no_conv_branch = nn.BatchNorm2d(in_channels) if identity else None
        self.branch_3x3 = nn.Sequential()
        self.branch_3x3.add_module("conv", nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False))
        self.branch_3x3.add_module("bn", nn.BatchNorm2d(out_channels))
        self.branch_1x1 = nn.Sequential()
        self.branch_1x1.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False))
        self.branch_1x1.add_module("bn", nn.BatchNorm2d(out_channels))
        self.fusion = "none"

    def forward(self, x: Tensor) -> Tensor:
        if self.fusion != "none":
            return self.nonlinearity(self.rbr_reparam(x))
        y = self.branch_3x3(x) + self.branch_1x1(x)
        if self.no_conv_branch is not None:
            y = y + self.no_conv_branch(x)
        return self.nonlinearity(y)

    def reparameterize(self, mode: str = "full") -> None:
        """Fuse all branches into one 3x3 conv `rbr_reparam` (there is no post-BN, so partial == full)."""
        if self.fusion != "none":
            return
        with torch.no_grad():
            k, b = fold_bn(self.branch_3x3.conv.weight, None, self.branch_3x3.bn)
            k1, b1 = fold_bn(self.branch_1x1.conv.weight, None, self.branch_1x1.bn)
            k, b = k + F.pad(k1, [1, 1, 1, 1]), b + b1
            if self.no_conv_branch is not None:
                kid, bid = fold_bn(_identity_kernel(self.in_channels, 1, k), None, self.no_conv_branch)
                k, b = k + kid, b + bid
            self.rbr_reparam = _conv_with(self.branch_3x3.conv, k, b)
        del self.branch_3x3, self.branch_1x1, self.no_conv_branch
        self.fusion = "full"


def make_block(block: str, in_channels: int, out_channels: int, stride: int = 1, residual: bool = True) -> nn.Module:
    """A 3x3 block of the given type; `residual` enables the identity branch of (QA)RepVGG blocks."""
    if block == "qarepvgg":
        return QARepVGGBlock(in_channels, out_channels, stride, use_residual_connection=residual)
    if block == "repvgg":
        return RepVGGBlock(in_channels, out_channels, stride, use_residual_connection=residual)
    if block == "conv":
        return Conv(in_channels, out_channels, 3, stride)
    raise ValueError(f"unknown block type {block!r}")


class Bottleneck(nn.Module):
    """Two blocks and a learnable shortcut scale: out = alpha * x + cv2(cv1(x)) (`alpha` keys first)."""

    def __init__(self, channels: int, block: str):
        super().__init__()
        self.cv1 = make_block(block, channels, channels)
        self.cv2 = make_block(block, channels, channels)
        self.alpha = nn.Parameter(torch.tensor([1.0]))

    def forward(self, x: Tensor) -> Tensor:
        return self.alpha * x + self.cv2(self.cv1(x))


class SequentialWithIntermediates(nn.Sequential):
    """Returns [input, out1, ..., outN] when `output_intermediates`, else [outN]."""

    def __init__(self, output_intermediates: bool, *modules: nn.Module):
        super().__init__(*modules)
        self.output_intermediates = output_intermediates

    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        if self.output_intermediates:
            outs = [x]
            for m in self:
                outs.append(m(outs[-1]))
            return outs
        for m in self:
            x = m(x)
        return [x]


class CSPLayer(nn.Module):
    """YOLO-NAS CSP layer: conv3(cat([*bottlenecks(conv1(x)), conv2(x)]))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_blocks: int,
        hidden_channels: int,
        block: str,
        concat_intermediates: bool = False,
    ):
        super().__init__()
        self.conv1 = Conv(in_channels, hidden_channels, 1)
        self.conv2 = Conv(in_channels, hidden_channels, 1)
        self.conv3 = Conv(hidden_channels * (2 + concat_intermediates * num_blocks), out_channels, 1)
        self.bottlenecks = SequentialWithIntermediates(
            concat_intermediates, *(Bottleneck(hidden_channels, block) for _ in range(num_blocks))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(torch.cat((*self.bottlenecks(self.conv1(x)), self.conv2(x)), dim=1))
