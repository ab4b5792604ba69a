"""Suite-wide test settings."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config):
    # Under pytest-xdist every worker would start one torch thread per core: with 2 workers on 2 cores the
    # OpenMP threads oversubscribe the CPU and spin-wait (measured 3.5x slower wall time). Split the cores.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 0:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_and_weights(tmp_path_factory):
    """Every test (and the subprocesses it starts) keeps the synthetic set in this session's temp folder,
    shared by xdist workers, and sees an empty weights directory unless it sets its own."""
    from tests.zoo_helpers import synthetic_root

    weights = tmp_path_factory.mktemp("no_weights")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAS_DATASETS_DIR", str(synthetic_root(tmp_path_factory)))
        mp.setenv("NAS_WEIGHTS_DIR", str(weights))
        yield
