"""Who runs a trial, and whether that process is still alive: the `worker` attribute every running trial carries
(host, pid and the pid's start time, so that a reused pid is not taken for the worker)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

__all__ = ["dead_local", "worker_id"]


def _proc_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a live pid from a reused one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_id() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid)}


def dead_local(worker: Any) -> bool:
    """True when `worker` ran on this host and its process is gone (a killed run's trial)."""
    if not isinstance(worker, dict) or worker.get("host") != socket.gethostname():
        return False
    pid = int(worker.get("pid", -1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    start = worker.get("start")
    return start is not None and _proc_start(pid) not in (None, start)
