"""Device fingerprints: which CPU/GPU and libraries a latency table was measured with, and whether this is it.

A table's timings hold on the machine that measured them. The fingerprint records what selects the
kernels that run: the CPU's vendor, family, model and stepping, the ISA extensions that pick
onnxruntime's and oneDNN's code paths (AVX2, AVX-512F, AVX-512 VNNI/BF16, AMX), the core count, the
library versions; for CUDA the GPU, its compute capability, the driver and the CUDA/cuDNN versions.
A field a table does not record is `None` (unknown), never guessed. Imports no torch for CPU targets.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "ISA_FLAGS",
    "DeviceMismatchWarning",
    "current_fingerprint",
    "describe",
    "device_slug",
    "fingerprint_id",
    "mismatches",
    "short_describe",
    "warn_mismatch",
]

# our name -> the /proc/cpuinfo flag that says the CPU has it
ISA_FLAGS = {
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx": "amx_tile",
}
_LIBS = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "torch": ("torch",)}


class DeviceMismatchWarning(UserWarning):
    """A latency table (or its calibration) was measured on another device than this one."""


def _cpuinfo(text: str | None = None) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def cpu_fingerprint(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU vendor/model/family/stepping, kernel-selecting ISA flags and core count of this machine."""
    info = _cpuinfo(cpuinfo)
    flags = set(info.get("flags", "").split())
    return {
        "vendor": info.get("vendor_id"),
        "model_name": info.get("model name") or platform.processor() or None,
        "family": _int(info.get("cpu family")),
        "model": _int(info.get("model")),
        "stepping": _int(info.get("stepping")),
        "isa": {name: (flag in flags) if flags else None for name, flag in ISA_FLAGS.items()},
        "cores": os.cpu_count() if cpuinfo is None else len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or None,
        "machine": platform.machine(),
    }


def _version(dist_names: tuple[str, ...]) -> str | None:
    from importlib import metadata

    for name in dist_names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def gpu_fingerprint() -> dict[str, Any]:
    """Name, compute capability, driver, CUDA and cuDNN versions of CUDA device 0 (needs torch and a GPU)."""
    import torch

    if not torch.cuda.is_available():
        return {"name": None}
    major, minor = torch.cuda.get_device_capability(0)
    driver = None
    try:
        q = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"]
        driver = subprocess.run(q, capture_output=True, text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "name": torch.cuda.get_device_name(0),
        "capability": f"{major}.{minor}",
        "driver": driver,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def current_fingerprint(accelerator: str = "cpu") -> dict[str, Any]:
    """This machine's fingerprint (the GPU part only for accelerator "cuda")."""
    fp: dict[str, Any] = {
        "cpu": cpu_fingerprint(),
        "libs": {lib: _version(dists) for lib, dists in _LIBS.items()},
    }
    if accelerator == "cuda":
        fp["gpu"] = gpu_fingerprint()
    return fp


def _identity(fp: dict[str, Any], backend: str, accelerator: str, threads: int | None) -> dict[str, Any]:
    """The fields whose change changes timings on this target (stepping and driver are kept for the record)."""
    if accelerator == "cuda":
        gpu = fp.get("gpu") or {}
        return {
            "gpu": gpu.get("name"),
            "compute capability": gpu.get("capability"),
            "CUDA": gpu.get("cuda"),
            "torch": (fp.get("libs") or {}).get("torch"),
        }
    cpu = fp.get("cpu") or {}
    isa = cpu.get("isa") or {}
    ident = {
        "CPU vendor": cpu.get("vendor"),
        "CPU model name": cpu.get("model_name"),
        "CPU family": cpu.get("family"),
        "CPU model": cpu.get("model"),
        **{name: isa.get(name) for name in ISA_FLAGS},
        backend: (fp.get("libs") or {}).get(backend),
    }
    if threads is not None and threads > 1:
        ident["cores"] = cpu.get("cores")
    return ident


def mismatches(stored: dict[str, Any] | None, current: dict[str, Any], hw: Any) -> dict[str, tuple[Any, Any]]:
    """{field: (stored, current)} of the timing-relevant fields that differ or that `stored` does not record."""
    a = _identity(stored or {}, hw.backend, hw.accelerator, hw.threads)
    b = _identity(current, hw.backend, hw.accelerator, hw.threads)
    return {k: (a[k], b[k]) for k in a if a[k] is None or a[k] != b[k]}


def fingerprint_id(fp: dict[str, Any], hw: Any) -> str:
    """Short stable hash of the timing-relevant fields (names a user calibration file per machine)."""
    ident = _identity(fp, hw.backend, hw.accelerator, hw.threads)
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:10]


def describe(fp: dict[str, Any] | None, accelerator: str = "cpu") -> str:
    """One line naming the device, with '?' for what is not recorded."""

    def q(v: Any) -> str:
        return "?" if v is None else str(v)

    fp = fp or {}
    libs = fp.get("libs") or {}
    lib = ", ".join(f"{k} {q(v)}" for k, v in libs.items())
    if accelerator == "cuda":
        g = fp.get("gpu") or {}
        return (
            f"{q(g.get('name'))} (compute {q(g.get('capability'))}, driver {q(g.get('driver'))}, "
            f"CUDA {q(g.get('cuda'))}, cuDNN {q(g.get('cudnn'))}; {lib})"
        )
    c = fp.get("cpu") or {}
    isa = c.get("isa") or {}
    if all(v is None for v in isa.values()):
        flags = "ISA flags ?"
    else:
        flags = " ".join(n for n, v in isa.items() if v) or "no AVX2"
    return (
        f"{q(c.get('model_name'))} ({q(c.get('vendor'))} family {q(c.get('family'))} model {q(c.get('model'))} "
        f"stepping {q(c.get('stepping'))}; {flags}; {q(c.get('cores'))} cores; {lib})"
    )


def short_describe(description: str) -> str:
    """`describe`'s line cut to a table cell: 'AMD EPYC (AuthenticAMD family 25 model 17 ...)' -> 'AMD EPYC 25/17';
    a line in another form (older records: 'x86_64, 2 CPUs') -> its part before the first comma."""
    import re

    m = re.match(r"(.*?) \((\S+) family (\S+) model (\S+)", description)
    return f"{m.group(1).replace('(R)', '')} {m.group(3)}/{m.group(4)}" if m else description.split(",")[0]


def device_slug(fp: dict[str, Any]) -> str:
    """A file-name-safe short name of the GPU, e.g. 'h200' for 'NVIDIA H200' (cuda tables are named after it)."""
    name = (fp.get("gpu") or {}).get("name")
    if not name:
        return ""
    name = re.sub(r"^(NVIDIA|AMD)\s+", "", name.strip(), flags=re.I)
    name = re.sub(r"\b(\d+\s*GB|SXM\d*|PCIe|HBM\d*e?|NVL)\b", "", name, flags=re.I)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


_WARNED: set[tuple[str, str]] = set()


def warn_mismatch(what: str, stored: dict[str, Any] | None, current: dict[str, Any], hw: Any, fix: str) -> bool:
    """One DeviceMismatchWarning per (table, device) and process when `stored` is not this device."""
    diff = mismatches(stored, current, hw)
    if not diff:
        return False
    key = (what, fingerprint_id(current, hw))
    if key in _WARNED:
        return True
    _WARNED.add(key)
    unknown = [k for k, (a, _) in diff.items() if a is None]
    if all(k in unknown for k in ISA_FLAGS):
        unknown = [k for k in unknown if k not in ISA_FLAGS] + ["ISA flags"]
    differ = [f"{k} {a} vs {b}" for k, (a, b) in diff.items() if a is not None]
    why = "; ".join(
        ([f"differs in {', '.join(differ)}"] if differ else [])
        + ([f"does not record {', '.join(unknown)}"] if unknown else [])
    )
    warnings.warn(
        f"{what} was measured on {describe(stored, hw.accelerator)}; this machine is "
        f"{describe(current, hw.accelerator)}. The table {why}, so its milliseconds may be off by a large "
        f"factor here (ratios between networks hold better). Fix: `{fix}` (a few minutes; stored for this "
        "machine, the shipped table is kept)",
        DeviceMismatchWarning,
        stacklevel=3,
    )
    return True
