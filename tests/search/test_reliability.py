"""Workers that cooperate on one study (sqlite and journal), resume without repeats, recovery under races, cache
and run-directory errors, tier budgets, the TPE start-up hint."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import text

from nas.errors import ConfigError
from nas.search import StorageConfig, StrategyConfig, run_search
from nas.search.optuna_compat import trial_id
from nas.search.study import Session
from tests.search.tiny import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def _study(cfg, out: Path) -> optuna.Study:
    return Session(cfg, out).study


def _worker(space, cache, kind, url, out, n, **opts) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.search.worker_main", str(space), str(cache), kind, url, str(out), str(n),
         *(f"{k}={v}" for k, v in opts.items())],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_three_workers_share_one_study(tiny_space_path, proxy_cache, tmp_path, kind):
    run_search(tiny_config(tiny_space_path, proxy_cache, storage=StorageConfig(kind="memory"), n_trials=0), tmp_path)
    target = tmp_path / ("shared.db" if kind == "sqlite" else "shared.journal")
    url = f"sqlite:///{target}" if kind == "sqlite" else str(target)
    n = 12
    procs = [_worker(tiny_space_path, proxy_cache, kind, url, tmp_path / "run", n, strategy="random") for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    cfg = tiny_config(tiny_space_path, proxy_cache, name="shared", n_trials=n,
                      storage=StorageConfig(kind=kind, url=url if kind == "sqlite" else None,
                                            path=url if kind == "journal" else None))  # fmt: skip
    study = _study(cfg, tmp_path / "check")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == n, "exactly n_trials complete trials, none beyond"
    assert len({t.user_attrs["digest"] for t in complete}) == n, "every complete trial is a distinct architecture"
    assert sorted(t.user_attrs.get("reference") for t in study.trials if t.user_attrs.get("reference")) == [
        "tiny_l", "tiny_m", "tiny_s"
    ], "the references are enqueued once"  # fmt: skip
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(study.user_attrs["nas_outputs"]) == 1, "one run directory, written once"
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["trials"]["complete"] == n and "running" not in report["trials"]


def test_resume_reproduces_the_uninterrupted_sequence(tiny_cfg, tmp_path):
    for strategy in ("random", "nsga2"):
        cfg = dataclasses.replace(tiny_cfg, strategy=dataclasses.replace(tiny_cfg.strategy, name=strategy))
        whole = run_search(dataclasses.replace(cfg, n_trials=10), tmp_path / f"{strategy}-whole")
        run_search(dataclasses.replace(cfg, n_trials=5), tmp_path / f"{strategy}-parts")
        parts = run_search(dataclasses.replace(cfg, n_trials=10), tmp_path / f"{strategy}-parts")
        digests = [r.arch.digest() for r in parts.trials]
        assert digests == [r.arch.digest() for r in whole.trials], strategy
        assert len(set(digests)) == len(digests), "a resumed study does not re-draw what it has"


@pytest.mark.parametrize("strategy", ["random", "nsga2"])
def test_a_killed_trial_is_retried_once_and_the_rest_continues(tiny_cfg, tmp_path, strategy):
    cfg = dataclasses.replace(tiny_cfg, strategy=dataclasses.replace(tiny_cfg.strategy, name=strategy), n_trials=5)
    run_search(cfg, tmp_path)
    session = Session(dataclasses.replace(cfg, n_trials=12), tmp_path)  # a worker of the grown study
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    session.recover()  # as a worker does before it asks: enqueues the start trial due next
    trial = session.study.ask()  # left RUNNING by a process that is gone (kill -9)
    session.sample(trial)
    trial.set_user_attr("worker", {"host": __import__("socket").gethostname(), "pid": dead.pid, "start": None})
    res = run_search(dataclasses.replace(cfg, n_trials=12), tmp_path)
    study = session.study
    assert len(res.trials) == 12 and len({r.arch.digest() for r in res.trials}) == 12
    whole = run_search(dataclasses.replace(cfg, n_trials=12, storage=StorageConfig(kind="memory")), tmp_path / "w")
    assert [r.arch.digest() for r in res.trials] == [r.arch.digest() for r in whole.trials], "same draws in order"
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == trial.number]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_trial_killed_before_it_sampled_is_redrawn_with_its_seed(tiny_cfg, tmp_path):
    cfg = dataclasses.replace(tiny_cfg, strategy=dataclasses.replace(tiny_cfg.strategy, name="random"), n_trials=5)
    run_search(cfg, tmp_path)
    session = Session(dataclasses.replace(cfg, n_trials=8), tmp_path)  # a worker of the grown study
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    session.recover()  # as a worker does before it asks: enqueues the start trial due next
    trial = session.study.ask()  # killed between ask and sampling: no parameters
    trial.set_user_attr("worker", {"host": __import__("socket").gethostname(), "pid": dead.pid, "start": None})
    res = run_search(dataclasses.replace(cfg, n_trials=8), tmp_path)
    whole = run_search(dataclasses.replace(cfg, n_trials=8, storage=StorageConfig(kind="memory")), tmp_path / "w")
    assert [r.arch.digest() for r in res.trials] == [r.arch.digest() for r in whole.trials]
    assert [t.state for t in session.study.trials if t.user_attrs.get("retry_of") == trial.number] == [
        TrialState.COMPLETE
    ]


def test_a_trial_killed_before_its_worker_named_itself_is_retried(tiny_cfg, tmp_path):
    cfg = dataclasses.replace(
        tiny_cfg, n_trials=4, storage=StorageConfig(kind="sqlite", heartbeat_interval_s=1, grace_period_s=2)
    )
    run_search(cfg, tmp_path)
    session = Session(cfg, tmp_path)
    trial = session.study.ask()  # killed right after asking: no worker attribute, no heartbeat
    session.recover()
    assert session.study.trials[trial.number].state == TrialState.RUNNING, "within the grace period: maybe alive"
    start = session.study.trials[trial.number].datetime_start
    with session.storage.engine.begin() as db:  # the clock, not a sleep: the trial started 10 s ago
        db.execute(
            text("UPDATE trials SET datetime_start = :t WHERE trial_id = :i"),
            {"t": start - timedelta(seconds=10), "i": trial_id(trial)},
        )
    res = run_search(dataclasses.replace(cfg, n_trials=6), tmp_path)
    assert session.study.trials[trial.number].state == TrialState.FAIL
    assert [t.state for t in session.study.trials if t.user_attrs.get("retry_of") == trial.number] == [
        TrialState.COMPLETE
    ]
    assert len(res.trials) == 6


RECOVER = """
import sys, time
from pathlib import Path
from nas.search import StorageConfig
from nas.search.study import Session
from tests.search.tiny import tiny_config
space, cache, out, n = sys.argv[1:5]
cfg = tiny_config(Path(space), Path(cache), name="race", n_trials=int(n), storage=StorageConfig(kind="sqlite"))
s = Session(cfg, out)
while not Path(out, "go").exists():
    time.sleep(0.01)
s.enqueue_references()
print(s.recover())
"""


def test_concurrent_restarts_enqueue_and_recover_once(tiny_space_path, proxy_cache, tmp_path):
    cfg = tiny_config(tiny_space_path, proxy_cache, name="race", n_trials=20)
    session = Session(cfg, tmp_path)
    stopped = []
    for _ in range(2):  # two trials stopped from outside (interrupted), each must be retried exactly once
        t = session.study.ask()
        session.sample(t)
        t.set_user_attr("interrupted", True)
        session.study.tell(t, state=TrialState.FAIL)
        stopped.append(t.number)
    procs = [
        subprocess.Popen([sys.executable, "-c", RECOVER, str(tiny_space_path), str(proxy_cache), str(tmp_path), "20"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]  # fmt: skip
    (tmp_path / "go").touch()  # the processes wait for it, then all race
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    trials = session.study.get_trials()
    refs = [t.user_attrs["reference"] for t in trials if t.user_attrs.get("reference")]
    assert sorted(refs) == ["tiny_l", "tiny_m", "tiny_s"], "6 processes starting at once enqueue the references once"
    assert sorted(t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs) == stopped
    assert sum(int(o.strip()) for o, _ in outs) == 2


def test_a_retry_the_study_does_not_need_is_not_left_waiting(tiny_cfg, tmp_path):
    cfg = dataclasses.replace(tiny_cfg, n_trials=4)
    run_search(cfg, tmp_path)
    session = Session(cfg, tmp_path)
    session.study.enqueue_trial(session.study.trials[0].params, user_attrs={"retry_of": 0})  # as after a race
    run_search(cfg, tmp_path)
    assert not session.study.get_trials(states=(TrialState.WAITING,))
    assert len(session.study.get_trials(states=(TrialState.COMPLETE,))) == 4


def test_a_corrupt_cache_entry_is_recomputed(tiny_space_path, tmp_path, caplog):
    cache = tmp_path / "cache"
    cfg = tiny_config(tiny_space_path, cache, storage=StorageConfig(kind="memory"), n_trials=4)
    first = run_search(cfg, tmp_path / "a")
    entries = sorted((cache / "proxy").rglob("*.json"))
    entries[0].write_text(entries[0].read_text()[:10])  # truncated
    entries[1].write_text('{"proxies": {}}')  # a value of the wrong shape
    with caplog.at_level(logging.WARNING, logger="nas.search"):
        again = run_search(cfg, tmp_path / "b")
    assert [r.values for r in again.trials] == [r.values for r in first.trials]
    assert "unreadable" in caplog.text and "recomputing" in caplog.text


def test_an_unwritable_cache_warns_and_the_search_completes(tiny_space_path, tmp_path, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    cfg = tiny_config(tiny_space_path, blocker, storage=StorageConfig(kind="memory"), n_trials=4)
    with caplog.at_level(logging.WARNING, logger="nas.search"):
        res = run_search(cfg, tmp_path / "run")
    assert len(res.trials) == 4
    assert caplog.text.count("is not writable") == 1, "warned once"


def test_an_unwritable_run_dir_is_a_clear_error(tiny_cfg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"run directory .* is not writable"):
        run_search(tiny_cfg, blocker / "run")
    p = subprocess.run(
        [sys.executable, "-m", "nas.search", "+space=yolo_nas", f"hydra.run.dir={blocker / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"cannot write the run directory {blocker / 'run'}: {blocker} is not a directory" in p.stderr


@pytest.mark.parametrize("budget", [-5, 0, float("nan")])
def test_tier_budgets_must_be_positive(tiny_cfg, tmp_path, budget):
    cfg = dataclasses.replace(tiny_cfg, tiers={"tiny_s": budget}, storage=StorageConfig(kind="memory"))
    with pytest.raises(ConfigError, match=r"tiers\.tiny_s=.*a budget is a positive flops_g"):
        run_search(cfg, tmp_path)


def test_tpe_start_up_hint(tiny_cfg, tmp_path, caplog):
    cfg = dataclasses.replace(
        tiny_cfg, strategy=StrategyConfig(name="tpe", n_startup_trials=10), storage=StorageConfig(kind="memory")
    )
    with caplog.at_level(logging.WARNING, logger="nas.search"):
        run_search(dataclasses.replace(cfg, n_trials=4), tmp_path)
    assert "samples exactly like strategy=random" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nas.search"):
        run_search(
            dataclasses.replace(cfg, n_trials=4, strategy=StrategyConfig(name="tpe", n_startup_trials=2)), tmp_path
        )
    assert "samples exactly like" not in caplog.text


def test_a_trial_failed_by_another_worker_while_it_runs_is_left_to_its_retry(tiny_cfg, tmp_path, monkeypatch, caplog):
    # After a database outage longer than the heartbeat's grace period, another worker fails a live worker's trial
    # as stale (and enqueues its retry) while it is still being evaluated; the live worker's next write to it then
    # finds it finished. That worker goes on with the next trial; the retry runs the architecture again.
    cfg = dataclasses.replace(tiny_cfg, n_trials=6)
    store, taken = Session.store, []

    def store_after_another_worker_failed_it(self, trial, arch, ev):
        if not taken:
            taken.append(trial.number)
            self.storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)  # as fail_stale_trials does
        return store(self, trial, arch, ev)

    monkeypatch.setattr(Session, "store", store_after_another_worker_failed_it)
    with caplog.at_level(logging.WARNING, logger="nas.search"):
        res = run_search(cfg, tmp_path)
    study = _study(cfg, tmp_path)
    assert len(res.trials) == 6 and f"trial {taken[0]} was failed by another worker" in caplog.text
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == taken[0]]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert retries[0].params == study.trials[taken[0]].params
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_lost_connection_is_retried_even_when_the_server_is_back_by_the_probe():
    """CI's outage test: a write failed with "the database system is starting up" and the probe right after it
    succeeded (the server came up in between), so the write's error was raised instead of retried."""
    import sqlite3

    import psycopg2
    import sqlalchemy.exc

    from nas.search.storage import StudyStorage

    backend = StudyStorage(optuna.storages.InMemoryStorage(), "memory", retry_s=5.0)  # its probe always answers
    calls = []

    def write():
        calls.append(1)
        if len(calls) == 1:
            orig = psycopg2.OperationalError("FATAL:  the database system is starting up")
            try:
                raise sqlalchemy.exc.OperationalError("COMMIT", {}, orig)
            except sqlalchemy.exc.OperationalError as e:
                raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from e
        return "stored"

    assert backend.call(write) == "stored" and len(calls) == 2 and backend.outages == 1

    def full_disk():
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(sqlite3.OperationalError):  # sqlite's OperationalError is not a lost connection
        backend.call(full_disk)
