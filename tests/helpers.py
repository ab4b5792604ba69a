"""Shared test utilities: the seeded weight fill of the reference test vectors, reference files."""

from __future__ import annotations

import json
import math
import zlib
from functools import cache
from pathlib import Path

import torch
from torch import nn

REFERENCE = Path(__file__).parent / "data" / "reference"


def seeded_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The deterministic, key-seeded weights of yolo_nas_test_vectors.json (see its `_weight_recipe`)."""
    out = {}
    for key, t in model.state_dict().items():
        if not t.is_floating_point():
            out[key] = t.clone()
            continue
        g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
        shape = t.shape
        if key.endswith("running_var"):
            v = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            v = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("alpha"):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif t.dim() == 1 and key.endswith("bn.weight"):
            v = 0.7 + 0.1 * torch.randn(shape, generator=g)
        elif t.dim() == 1:
            v = 0.1 * torch.randn(shape, generator=g)
        else:
            v = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        out[key] = v
    return out


def seeded_fill(model: nn.Module) -> nn.Module:
    model.load_state_dict(seeded_state_dict(model), strict=True)
    return model


def seeded_input(h: int = 640, w: int = 640) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(12345))


@cache
def test_vectors() -> dict:
    return json.loads((REFERENCE / "yolo_nas_test_vectors.json").read_text())


@cache
def reference_keys(name: str) -> list[tuple[str, list[int]]]:
    """Ordered (key, shape) of super-gradients' state_dict for yolo_nas_{s,m,l}."""
    rows = []
    for line in (REFERENCE / f"{name}_keys.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _dtype = line.split("\t")
        rows.append((key, json.loads(shape)))
    return rows


def run_on_small_tmpfs(cmd: list[str], disk: Path, size: str, cwd: Path, timeout: float):
    """`cmd` run with a `size` tmpfs mounted on `disk` (a real full disk, in a private mount namespace, no root
    needed); the calling test is skipped where unshare or user namespaces are missing."""
    import shlex
    import shutil
    import subprocess

    import pytest

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs")
    disk.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (user namespaces off?): {probe.stderr.strip()}")
    script = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(disk))} && exec {shlex.join(cmd)}"
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
