"""Shared, expensive fixtures: released models with the seeded weights of the reference test vectors."""

from __future__ import annotations

import pytest
import torch

from nas.models import build
from tests.helpers import seeded_fill, seeded_input


class _Seeded:
    """Builds each released model once per session, with its 640x640 eval outputs."""

    def __init__(self):
        self._cache: dict[str, tuple[torch.nn.Module, object]] = {}

    def __call__(self, name: str):
        if name not in self._cache:
            model = seeded_fill(build(name)).eval()
            with torch.no_grad():
                out = model(seeded_input())
            self._cache[name] = (model, out)
        return self._cache[name]


@pytest.fixture(scope="session")
def seeded():
    """seeded(name) -> (eval model with the reference seeded weights, its output on seeded_input(640, 640))."""
    return _Seeded()
