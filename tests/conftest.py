"""Suite-wide test settings."""

from __future__ import annotations

import os


def pytest_configure(config):
    # Under pytest-xdist every worker would start one torch thread per core: with 2 workers on 2 cores the
    # OpenMP threads oversubscribe the CPU and spin-wait (measured 3.5x slower wall time). Split the cores.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 0:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
