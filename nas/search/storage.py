"""Optuna storages by kind (sqlite in the run dir by default, PostgreSQL, a journal file, or in memory), the
study-level lock that workers of one study take to claim shared work, and a bounded retry of lost connections."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import optuna

from nas.errors import ConfigError, NasError
from nas.io import file_lock
from nas.search.config import STORAGE_KINDS, StorageConfig
from nas.search.signals import SIGNALS

__all__ = ["STORAGE_KINDS", "StorageUnavailableError", "StudyStorage", "make_storage", "redact"]

log = logging.getLogger("nas.search")
T = TypeVar("T")
_MEMORY_LOCKS: dict[str, threading.Lock] = {}


class StorageUnavailableError(NasError):
    """The study's database stayed unreachable for longer than `storage.retry_s`."""


def redact(url: str) -> str:
    """A storage URL without its password (for logs and reports)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (e.g. a journal path): nothing to hide
        return url


def _root_cause(exc: BaseException) -> BaseException:
    """The driver's error behind a chain: psycopg2's "connection refused" under SQLAlchemy's wrapper under
    Optuna's StorageInternalError; the innermost exception when no driver error is in the chain (SQLAlchemy's
    own pool bookkeeping, such as InvalidatePoolError, is in the chain too and says nothing)."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        orig = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's exception
        if isinstance(orig, BaseException):
            return orig
        exc = exc.__cause__ or exc.__context__
    for e in chain:
        if not type(e).__module__.startswith(("sqlalchemy", "optuna")) and _dbapi_kind(e):
            return e
    return chain[-1]


_DBAPI_KINDS = ("OperationalError", "InterfaceError", "DatabaseError")


def _lost_connection(exc: BaseException) -> bool:
    """A database server's connection-level failure (its driver's OperationalError: refused, "the database system is
    starting up", a shut-down server): an outage even when the probe right after it already succeeds (the server
    came back in between). sqlite's OperationalError (a full disk, a locked file) is not a lost connection."""
    cause = _root_cause(exc)
    return _dbapi_kind(cause) == "OperationalError" and not type(cause).__module__.startswith("sqlite3")


def _error_kind(exc: BaseException) -> str:
    """The error's class name and its DB-API kind when they differ: psycopg2's AdminShutdown (a server shut down
    under an open connection) is shown as "AdminShutdown (OperationalError)"."""
    name, kind = type(exc).__name__, _dbapi_kind(exc)
    return name if kind in (None, name) else f"{name} ({kind})"


def _dbapi_kind(exc: BaseException) -> str | None:
    return next((c.__name__ for c in type(exc).__mro__ if c.__name__ in _DBAPI_KINDS), None)


@dataclass
class StudyStorage:
    """A storage, where it is (printable), how to lock a study in it, and how to ride out a lost connection."""

    storage: optuna.storages.BaseStorage
    desc: str
    lock_file: Path | None = None  # sqlite/journal: a file lock beside this file
    retry_s: float = 60.0
    outages: int = 0  # connection losses ridden out so far (a worker re-checks its own trials after one)
    _outage_since: float | None = field(default=None, repr=False)

    # ---- the study lock ------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, study_name: str, what: str) -> Iterator[None]:
        """A cross-process mutex for `what` of one study: a PostgreSQL advisory lock, a file lock (flock) beside a
        sqlite or journal file, a thread lock in memory. Released by the server or the OS when a holder dies."""
        key = f"{study_name}/{what}"
        if isinstance(self.storage, optuna.storages.RDBStorage) and self.storage.engine.dialect.name == "postgresql":
            from sqlalchemy import text

            k = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            with self.storage.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": k})
                conn.commit()
                try:
                    yield
                finally:
                    with contextlib.suppress(Exception):  # a dropped connection releases it too
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": k})
                        conn.commit()
            return
        if self.lock_file is not None:
            path = self.lock_file.with_name(f"{self.lock_file.name}.{hashlib.sha256(key.encode()).hexdigest()[:12]}")
            with file_lock(path):  # leaves no lock file behind (a search left one per lock name)
                yield
            return
        with _MEMORY_LOCKS.setdefault(key, threading.Lock()):
            yield

    # ---- lost connections ------------------------------------------------------------------------
    def _reachable(self) -> BaseException | None:
        """None when the database answers, else the error of the probe."""
        if not isinstance(self.storage, optuna.storages.RDBStorage):
            return None
        from sqlalchemy import text

        try:
            with self.storage.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:
            return e
        return None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args)`, retried while the database is unreachable, for at most `retry_s` seconds.

        An error is a lost connection when a probe of the database fails too; the first one is logged once
        with its real cause (not Optuna's generic StorageInternalError). Other errors propagate at once.
        """
        while True:
            try:
                with SIGNALS.atomic():  # a stop signal waits for the call: never a half-done commit
                    out = fn(*args, **kwargs)
            except (KeyboardInterrupt, NasError, optuna.exceptions.UpdateFinishedTrialError):
                raise
            except Exception as e:
                probe = self._reachable()
                if probe is None and not _lost_connection(e):
                    raise
                now = time.monotonic()
                cause = _root_cause(probe if probe is not None else e)
                reason = f"{_error_kind(cause)}: {str(cause).strip().splitlines()[0] if str(cause) else ''}"
                if self._outage_since is None:
                    self._outage_since = now
                    self.outages += 1
                    log.warning(
                        "lost the connection to %s (%s); retrying for up to %.0f s", self.desc, reason, self.retry_s
                    )
                if now - self._outage_since > self.retry_s:
                    raise StorageUnavailableError(
                        f"{self.desc} unreachable for {now - self._outage_since:.0f} s ({reason}); stopped. Completed "
                        "trials are kept; the running one is retried when a worker starts again (storage.retry_s "
                        "sets the bound)"
                    ) from e
                time.sleep(min(2.0, max(0.2, self.retry_s / 30)))
                continue
            if self._outage_since is not None:
                log.warning("%s reachable again after %.0f s", self.desc, time.monotonic() - self._outage_since)
                self._outage_since = None
            return out


def _rdb(cfg: StorageConfig, url: str, engine_kwargs: dict) -> optuna.storages.RDBStorage:
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # No stale-trial callback: nas.search.study.Session.recover() re-enqueues failed trials (once, when needed).
        for attempt in range(3):
            try:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=cfg.heartbeat_interval_s or None,
                    grace_period=cfg.grace_period_s if cfg.heartbeat_interval_s else None,
                )
            except (IntegrityError, ProgrammingError):
                # Workers started together on an empty database race to create Optuna's tables; the
                # loser sees a duplicate-type/table error and finds the tables there on the next try.
                if attempt == 2:
                    raise
                time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def make_storage(cfg: StorageConfig, out_dir: str | os.PathLike) -> StudyStorage:
    """The storage of `cfg`, a printable description of where it is (password redacted) and its study lock."""
    out_dir = Path(out_dir)
    kind = cfg.kind
    if kind == "memory":
        return StudyStorage(optuna.storages.InMemoryStorage(), "memory (not persistent: no resume)")
    if kind == "sqlite":
        url = cfg.url or f"sqlite:///{(out_dir / 'study.db').resolve()}"
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"storage.url={url!r}: storage=sqlite expects sqlite:///path/to/study.db")
        db = Path(url[len("sqlite:///") :])
        db.parent.mkdir(parents=True, exist_ok=True)
        lock_file = db.with_name(f".{db.name}.lock")
        with file_lock(lock_file):  # processes started together would race to create the tables
            # sqlite serializes writers; wait instead of failing when another process holds the lock.
            storage = _rdb(cfg, url, {"connect_args": {"timeout": 60}})
        return StudyStorage(storage, redact(url), lock_file=lock_file, retry_s=cfg.retry_s)
    if kind == "postgres":
        url = cfg.url or os.environ.get(cfg.url_env)
        if not url:
            raise ConfigError(
                f"storage=postgres needs a URL: set storage.url=postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB "
                f"or the environment variable {cfg.url_env}"
            )
        if not url.startswith(("postgresql://", "postgresql+")):
            raise ConfigError(f"storage.url={redact(url)!r}: storage=postgres expects a postgresql:// URL")
        return StudyStorage(_rdb(cfg, url, {"pool_pre_ping": True}), redact(url), retry_s=cfg.retry_s)
    if kind == "journal":
        path = Path(cfg.path).expanduser() if cfg.path else out_dir / "study.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        return StudyStorage(storage, f"journal {path}", lock_file=path.with_name(f".{path.name}.lock"))
    raise ConfigError(f"unknown storage {kind!r}; available storages: {', '.join(STORAGE_KINDS)}")
