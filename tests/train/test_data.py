"""The training data stream's loader: how many worker processes by default."""

from __future__ import annotations

import os

import pytest

from nas.errors import ConfigError
from nas.options import parse_text
from nas.train.data import loader_workers
from nas.train.options import TrainOptions


def test_default_workers_leave_a_core_for_the_training():
    cpus = os.cpu_count() or 1
    n = loader_workers(TrainOptions().workers)
    assert 0 <= n <= min(8, cpus - 1) and n == max(0, min(8, cpus - 1))  # 1 on a 2-core machine, not 8
    assert loader_workers(TrainOptions().workers, world=cpus) == 0  # one process per core under torchrun
    assert loader_workers(TrainOptions(workers=3).workers) == 3 and loader_workers(0) == 0  # given: as given
    assert parse_text(TrainOptions, "workers", "none") is None and parse_text(TrainOptions, "workers", "2") == 2
    with pytest.raises(ConfigError, match="workers"):
        TrainOptions(workers=-1)
