"""Stop signals wait for a database call to finish (never a half-done commit) and are raised right after it."""

from __future__ import annotations

import os
import signal

import optuna
import pytest

from nas.search.signals import SIGNALS, interruptible
from nas.search.storage import StudyStorage, _error_kind


def test_a_signal_during_a_database_call_is_raised_after_it():
    backend = StudyStorage(optuna.storages.InMemoryStorage(), "memory")
    done = []

    def write():
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the "commit"
        done.append("committed")
        return 7

    with interruptible(), pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        backend.call(write)
    assert done == ["committed"], "the call ran to its end before the interrupt"
    assert SIGNALS.pending is None and SIGNALS.depth == 0


def test_a_signal_outside_a_database_call_interrupts_at_once():
    with interruptible(), pytest.raises(KeyboardInterrupt, match="SIGINT"):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000_000):  # the handler runs between bytecodes: long before the loop ends
            pass
        pytest.fail("not interrupted")


def test_a_signal_during_a_failing_call_is_still_raised():
    backend = StudyStorage(optuna.storages.InMemoryStorage(), "memory")

    def broken():
        os.kill(os.getpid(), signal.SIGINT)
        raise ValueError("bad data")

    with interruptible(), pytest.raises(KeyboardInterrupt) as info:
        backend.call(broken)
    assert isinstance(info.value.__context__, ValueError), "the call's own error stays visible"
    assert SIGNALS.pending is None


def test_driver_errors_name_their_db_api_kind():
    class OperationalError(Exception):
        pass

    class AdminShutdown(OperationalError):  # psycopg2.errors.AdminShutdown: the server stopped under a connection
        pass

    assert _error_kind(AdminShutdown()) == "AdminShutdown (OperationalError)"
    assert _error_kind(OperationalError()) == "OperationalError"
    assert _error_kind(ValueError()) == "ValueError"


def test_the_outage_reason_is_the_driver_error_not_sqlalchemy_bookkeeping():
    import sqlalchemy.exc

    from nas.search.storage import _root_cause

    class OperationalError(Exception):  # the driver's (psycopg2.OperationalError)
        pass

    driver = OperationalError("connection refused")
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, driver)
    try:
        try:
            raise wrapped
        except Exception:
            raise sqlalchemy.exc.InvalidatePoolError() from None  # the pool's own bookkeeping, raised on top
    except Exception as e:
        outer = e
    outer.__context__ = wrapped
    assert _root_cause(outer) is driver
    assert _root_cause(ValueError("x")).args == ("x",)
