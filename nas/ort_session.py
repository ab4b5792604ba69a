"""The CPU onnxruntime session that runs an exported model (predict, val, export checks, INT8 sensitivity).

onnxruntime is an optional dependency (the `export` extra): imported when a session is made. Latency timing
builds its own sessions (nas.latency.runtimes), with the hardware's timing settings.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["cpu_session"]


def cpu_session(path: str | os.PathLike, threads: int | None = None, quiet: bool = True) -> Any:
    """An `onnxruntime.InferenceSession` of the model at `path` on the CPU provider; `threads`: intra-op threads
    (None or 0: onnxruntime's default); `quiet`: errors only in onnxruntime's log."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if quiet:
        opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
