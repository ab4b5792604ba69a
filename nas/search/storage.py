"""Optuna storages by kind: sqlite in the run dir (default), PostgreSQL, a journal file, or in memory."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import optuna

from nas.errors import ConfigError
from nas.search.config import StorageConfig

__all__ = ["STORAGE_KINDS", "make_storage", "redact"]

STORAGE_KINDS = ("sqlite", "postgres", "journal", "memory")


def redact(url: str) -> str:
    """A storage URL without its password (for logs and reports)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (e.g. a journal path): nothing to hide
        return url


def _rdb(cfg: StorageConfig, url: str, engine_kwargs: dict) -> optuna.storages.RDBStorage:
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # A trial of a worker that died is failed after the grace period and enqueued again, once.
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1) if cfg.heartbeat_interval_s else None
        for attempt in range(3):
            try:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=cfg.heartbeat_interval_s or None,
                    grace_period=cfg.grace_period_s if cfg.heartbeat_interval_s else None,
                    heartbeat_stale_trial_callback=retry,
                )
            except (IntegrityError, ProgrammingError):
                # Workers started together on an empty database race to create Optuna's tables; the
                # loser sees a duplicate-type/table error and finds the tables there on the next try.
                if attempt == 2:
                    raise
                time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def make_storage(cfg: StorageConfig, out_dir: str | os.PathLike) -> tuple[optuna.storages.BaseStorage, str]:
    """The storage and a printable description of where it is (password redacted)."""
    out_dir = Path(out_dir)
    kind = cfg.kind
    if kind == "memory":
        return optuna.storages.InMemoryStorage(), "memory (not persistent: no resume)"
    if kind == "sqlite":
        url = cfg.url or f"sqlite:///{(out_dir / 'study.db').resolve()}"
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"storage.url={url!r}: storage=sqlite expects sqlite:///path/to/study.db")
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        # sqlite serializes writers; wait instead of failing when another process holds the lock.
        return _rdb(cfg, url, {"connect_args": {"timeout": 60}}), redact(url)
    if kind == "postgres":
        url = cfg.url or os.environ.get(cfg.url_env)
        if not url:
            raise ConfigError(
                f"storage=postgres needs a URL: set storage.url=postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB "
                f"or the environment variable {cfg.url_env}"
            )
        if not url.startswith(("postgresql://", "postgresql+")):
            raise ConfigError(f"storage.url={redact(url)!r}: storage=postgres expects a postgresql:// URL")
        return _rdb(cfg, url, {"pool_pre_ping": True}), redact(url)
    if kind == "journal":
        path = Path(cfg.path).expanduser() if cfg.path else out_dir / "study.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path))), f"journal {path}"
    raise ConfigError(f"unknown storage {kind!r}; available storages: {', '.join(STORAGE_KINDS)}")
