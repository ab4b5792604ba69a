"""Fixtures of the trainer tests: a 16-image synthetic set, a tiny architecture, fast options."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.train.options import TrainOptions

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """data YAML of a synthetic set with 16 train and 4 val images (8 classes)."""
    from nas.data.synthetic import SyntheticSpec, ensure_synthetic

    folder = ensure_synthetic(tmp_path_factory.mktemp("tiny_synth"), SyntheticSpec(seed=3, n_train=16, n_val=4))
    return folder / "synthetic.yaml"


@pytest.fixture
def fast(tiny_data, tmp_path) -> TrainOptions:
    """One epoch of 8 steps at 64 px in the main process, files under tmp_path."""
    return TrainOptions(
        data=str(tiny_data),
        epochs=1,
        imgsz=64,
        batch=2,
        workers=0,
        lr0=1e-3,
        warmup_epochs=0.5,
        close_mosaic=0,
        project=str(tmp_path / "runs"),
        verbose=False,
        plots=False,
    )


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine OpenMP threads spin-wait (measured
    10x slower with 2 threads than with 1 under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
