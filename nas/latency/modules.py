"""The deployed (fully fused) torch module of each latency unit, built from the model's own blocks."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from nas.latency.units import HEAD_STRIDES, Unit
from nas.models.blocks import Bottleneck, Conv
from nas.models.reparam import fuse
from nas.models.yolo_nas import SPP, NDFLHeads, YoloNAS, build
from nas.space.io import load_arch
from nas.space.schema import ArchConfig, ContextConfig

__all__ = ["deployed_model", "unit_module"]


def _fused(module: nn.Module) -> nn.Module:
    return fuse(module, "full").eval()


class _CSPIn(nn.Module):
    def __init__(self, ins: tuple[int, ...], h: int):
        super().__init__()
        self.conv1, self.conv2 = Conv(sum(ins), h, 1), Conv(sum(ins), h, 1)

    def forward(self, *xs: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat(xs, 1) if len(xs) > 1 else xs[0]
        return self.conv1(x), self.conv2(x)


class _ConcatConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = Conv(cin, cout, 1)

    def forward(self, *xs: Tensor) -> Tensor:
        return self.conv(torch.cat(xs, 1))


class _RawHead(nn.Module):
    """Stands in for a DFL head: splits a ready-made [reg | cls] tensor so that only the decoding runs."""

    def __init__(self, reg_channels: int):
        super().__init__()
        self.reg_channels = reg_channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, : self.reg_channels], x[:, self.reg_channels :]


class _Decode(nn.Module):
    def __init__(self, nc: int, reg_max: int):
        super().__init__()
        base = load_arch("yolo_nas_s")
        arch = base.replace(heads=dataclasses.replace(base.heads, num_classes=nc, reg_max=reg_max))
        self.heads = NDFLHeads((8, 8, 8), arch)
        for i in (1, 2, 3):
            setattr(self.heads, f"head{i}", _RawHead(4 * (reg_max + 1)))

    def forward(self, *feats: Tensor):
        return self.heads(feats)


def _conv(u: Unit) -> nn.Module:
    if u["act"]:
        return Conv(u["cin"], u["cout"], u["k"], u["s"], u["g"])
    return nn.Conv2d(u["cin"], u["cout"], u["k"], u["s"], u["k"] // 2, groups=u["g"], bias=True)


def unit_module(u: Unit, batch: int = 1) -> tuple[nn.Module, tuple[Tensor, ...]]:
    """(fused eval module, example inputs) of a unit; seeded random weights and inputs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _unit_module(u, batch)


def _unit_module(u: Unit, batch: int) -> tuple[nn.Module, tuple[Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    h, w = u.hw

    def x(c: int, hh: int = h, ww: int = w) -> Tensor:
        return torch.rand(batch, c, hh, ww, generator=g)

    if u.kind == "conv":
        return _fused(_conv(u)), (x(u["cin"]),)
    if u.kind == "upsample":
        return nn.ConvTranspose2d(u["c"], u["c"], 2, 2, bias=True).eval(), (x(u["c"]),)
    if u.kind == "csp_in":
        return _fused(_CSPIn(u["ins"], u["h"])), tuple(x(c) for c in u["ins"])
    if u.kind == "bottlenecks":
        return _fused(nn.Sequential(*(Bottleneck(u["h"], "qarepvgg") for _ in range(u["n"])))), (x(u["h"]),)
    if u.kind == "concat_conv":
        return _fused(_ConcatConv(u["parts"] * u["c"], u["cout"])), tuple(x(u["c"]) for _ in range(u["parts"]))
    if u.kind == "spp":
        return _fused(SPP(u["cin"], ContextConfig(u["cout"], u["pools"]))), (x(u["cin"]),)
    if u.kind == "decode":
        c = 4 * (u["reg_max"] + 1) + u["nc"]
        return _Decode(u["nc"], u["reg_max"]).eval(), tuple(x(c, -(-h // s), -(-w // s)) for s in HEAD_STRIDES)
    raise ValueError(f"unknown unit kind {u.kind!r}")


def deployed_model(arch: ArchConfig, input_hw: tuple[int, int], batch: int = 1) -> tuple[YoloNAS, tuple[Tensor]]:
    """(fused eval network, seeded input) as it is timed end to end."""
    with torch.random.fork_rng(devices=[]):  # build() initialises from the global generator: keep it untouched
        torch.manual_seed(0)
        model = fuse(build(arch), "full")
    g = torch.Generator().manual_seed(0)
    return model, (torch.rand(batch, 3, *input_hw, generator=g),)
