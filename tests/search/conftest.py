"""Fixtures of the search tests: the tiny space, a shared proxy cache, a tiny config."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.search.config import SearchConfig
from nas.space import load_space
from tests.search.tiny import tiny_config, write_tiny_space


@pytest.fixture(scope="session")
def tiny_space_path(tmp_path_factory) -> Path:
    return write_tiny_space(tmp_path_factory.mktemp("tiny_space"))


@pytest.fixture(scope="session")
def tiny_space(tiny_space_path):
    return load_space(tiny_space_path)


@pytest.fixture(scope="session")
def proxy_cache(tmp_path_factory) -> Path:
    """One proxy cache for the whole session: the tiny reference population is computed once."""
    return tmp_path_factory.mktemp("proxy_cache")


@pytest.fixture
def tiny_cfg(tiny_space_path, proxy_cache) -> SearchConfig:
    return tiny_config(tiny_space_path, proxy_cache)
