"""Stop signals of a search: SIGINT (Ctrl-C), SIGTERM (a scheduler's preemption) and SIGHUP (a closed terminal)
raise KeyboardInterrupt, but never in the middle of a write to the study's database.

Every database call of a search (`nas.search.storage.StudyStorage.call`) runs inside `SIGNALS.atomic()`: a signal
that arrives during it is held and raised as soon as the call returns. An interrupted SQLAlchemy commit would
otherwise leave the session (and sqlite's lock) in a state where the worker cannot fail its own running trial.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["SIGNALS", "STOP_SIGNALS", "interruptible"]

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class _Signals:
    """Ctrl-C, SIGTERM (a scheduler's preemption) and SIGHUP (a closed terminal) raise KeyboardInterrupt, except
    inside `atomic()`: a write to the study (asking a trial and naming its worker, telling it) is finished first,
    so that an interrupted worker never leaves a trial it cannot recognise as its own."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: str | None = None

    def handler(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.depth:
            self.pending = name
            return
        raise KeyboardInterrupt(f"signal {name}")

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Hold stop signals until the block is done (signals reach only the main thread: others pass through)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                name, self.pending = self.pending, None
                raise KeyboardInterrupt(f"signal {name}")


SIGNALS = _Signals()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP stop the search like Ctrl-C (see `_Signals`)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), SIGNALS.handler)
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
