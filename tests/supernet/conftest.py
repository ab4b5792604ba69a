"""Fixtures of the supernet tests: the tiny elastic space and its supernet, one torch thread."""

from __future__ import annotations

import pytest
import torch

from nas.space import load_space
from nas.supernet import SuperNet
from tests.supernet.tiny import write_space


@pytest.fixture(autouse=True)
def _one_thread():
    # two cores shared with other work: several OpenMP threads on tiny convolutions spin-wait (10x slower)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> str:
    """data YAML of a synthetic set with 8 train and 4 val images (8 classes)."""
    from nas.data.synthetic import SyntheticSpec, ensure_synthetic

    folder = ensure_synthetic(tmp_path_factory.mktemp("supernet_synth"), SyntheticSpec(seed=3, n_train=8, n_val=4))
    return str(folder / "synthetic.yaml")


@pytest.fixture(scope="session")
def tiny_space_path(tmp_path_factory):
    return write_space(tmp_path_factory.mktemp("supernet_space"))


@pytest.fixture(scope="session")
def tiny_space(tiny_space_path):
    return load_space(tiny_space_path)


@pytest.fixture(scope="session")
def supernet(tiny_space):
    return SuperNet(tiny_space, seed=0)
