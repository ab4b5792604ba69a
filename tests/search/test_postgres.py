"""A real PostgreSQL (Debian's server binaries, started by the fixture): two worker processes share one
study, and a study on PostgreSQL resumes. Skipped when the server binaries are not installed."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, ProgrammingError

from nas.search import StorageConfig, run_search
from tests.search.pg import PgServer, pg_bindir
from tests.search.tiny import tiny_config

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway cluster on loopback (fsync off); as root the server runs as the `postgres` user."""
    server = _server()
    try:
        yield server.url
    finally:
        server.close()


def _server() -> PgServer:
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root needs `runuser` to start PostgreSQL as the postgres user")
    return PgServer(bindir)


def test_two_workers_share_one_study(postgres_url, tiny_space_path, proxy_cache, tmp_path):
    _warm(tiny_space_path, proxy_cache, tmp_path)  # both workers start on the search itself
    n = 12
    procs = [_worker(tiny_space_path, proxy_cache, postgres_url, tmp_path / f"w{i}", n, heartbeat_s=5, grace_s=20)
             for i in range(2)]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    everything = study.get_trials()
    numbers = [t.number for t in everything]
    assert len(numbers) == len(set(numbers)), "unique trial numbers"
    # besides complete trials only skipped duplicates (pruned) and surplus trials (failed, not evaluated)
    assert all(
        t.state == TrialState.COMPLETE or "duplicate_of" in t.user_attrs or t.user_attrs.get("surplus")
        for t in everything
    ), [(t.state, t.user_attrs) for t in everything]
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == n, "no trial beyond n_trials"
    assert len({t.user_attrs["digest"] for t in trials}) == n, "the workers drew distinct architectures"
    workers = {t.user_attrs["worker"]["pid"] for t in trials}
    assert len(workers) == 2, "both workers evaluated trials"
    for i in range(2):
        assert (tmp_path / f"w{i}" / "report.json").is_file()


def test_resume_on_postgres(postgres_url, tiny_cfg, tmp_path):
    cfg = dataclasses.replace(
        tiny_cfg, name="resumed", storage=StorageConfig(kind="postgres", url=postgres_url), n_trials=3
    )
    first = run_search(cfg, tmp_path / "a")
    second = run_search(dataclasses.replace(cfg, n_trials=5), tmp_path / "b")
    assert [r.number for r in second.trials] == list(range(5))
    assert [r.arch.digest() for r in second.trials[:3]] == [r.arch.digest() for r in first.trials]
    assert second.report["storage"].startswith("postgresql+psycopg2://postgres@127.0.0.1")


def _worker(space, cache, url, out, n, **opts) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.search.worker_main", str(space), str(cache), "postgres", url, str(out), str(n),
         *(f"{k}={v}" for k, v in opts.items())],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _warm(space, cache, tmp_path):
    run_search(tiny_config(space, cache, storage=StorageConfig(kind="memory"), n_trials=0), tmp_path / "warm")


def _wait_for(cond, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _states(url, name):
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    except (KeyError, IntegrityError, ProgrammingError):  # no study yet, or the workers are creating the tables
        return []


def test_four_workers_one_killed_mid_trial_and_restarted(postgres_url, tiny_space_path, proxy_cache, tmp_path):
    _warm(tiny_space_path, proxy_cache, tmp_path)
    n, name = 16, "four"
    opts = dict(name=name, strategy="random", delay_s=0.5)
    # The victim's trials take longer, so that the trial seen running is still running when the kill lands (with
    # 0.5 s trials it could finish in between, leaving the killed worker between trials with nothing to fail).
    delays = [6, 0.5, 0.5, 0.5]
    procs = [_worker(tiny_space_path, proxy_cache, postgres_url, tmp_path / f"w{i}", n, **{**opts, "delay_s": d})
             for i, d in enumerate(delays)]  # fmt: skip
    victim = procs[0]

    def victim_running() -> bool:
        return any(
            t.state == TrialState.RUNNING and t.user_attrs.get("worker", {}).get("pid") == victim.pid
            for t in _states(postgres_url, name)
        )

    _wait_for(victim_running)
    before = {t.user_attrs["digest"] for t in _states(postgres_url, name) if t.state == TrialState.COMPLETE}
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    held = [
        t.number
        for t in _states(postgres_url, name)
        if t.user_attrs.get("worker", {}).get("pid") == victim.pid
        and (t.state == TrialState.RUNNING or t.user_attrs.get("stale"))
    ]
    assert len(held) == 1, f"the victim was killed mid-trial (held {held})"
    procs[0] = _worker(tiny_space_path, proxy_cache, postgres_url, tmp_path / "w0", n, **opts)  # restarted
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    trials = _states(postgres_url, name)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    digests = [t.user_attrs["digest"] for t in complete]
    assert len(complete) == n and len(set(digests)) / n >= 0.95
    assert before <= set(digests), "no completed trial is lost"
    stale = [t for t in trials if t.user_attrs.get("stale")]
    assert [t.number for t in stale] == held, "the killed worker's trial is failed"
    retry = [t for t in trials if t.user_attrs.get("retry_of") == stale[0].number]
    # re-run, or skipped because another worker completed that architecture meanwhile
    assert len(retry) == 1 and (retry[0].state == TrialState.COMPLETE or "duplicate_of" in retry[0].user_attrs)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    reports = [json.loads((tmp_path / f"w{i}" / "report.json").read_text()) for i in range(4)]
    assert all(r == reports[0] for r in reports), "every worker's report comes from the study and agrees"


def test_the_database_goes_away_and_comes_back(tiny_space_path, proxy_cache, tmp_path):
    server = _server()  # its own server: this test stops it
    try:
        _warm(tiny_space_path, proxy_cache, tmp_path)
        n, name = 10, "outage"
        opts = dict(name=name, strategy="random", delay_s=1.0, retry_s=60)
        procs = [_worker(tiny_space_path, proxy_cache, server.url, tmp_path / "run", n, **opts) for _ in range(2)]
        _wait_for(lambda: sum(t.state == TrialState.COMPLETE for t in _states(server.url, name)) >= 4)
        server.stop("fast")
        time.sleep(6)
        server.start()
        errs = []
        for p in procs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err
            errs.append(err)
        for err in errs:
            assert "Traceback" not in err and "StorageInternalError" not in err
        lost = [e for e in errs if "lost the connection to" in e]
        assert lost, "a worker reports the outage:\n" + "\n---\n".join(e[-3000:] for e in errs)
        assert all("OperationalError" in e or "InterfaceError" in e for e in lost), [
            line for e in lost for line in e.splitlines() if "lost the connection" in line
        ]
        trials = _states(server.url, name)
        assert sum(t.state == TrialState.COMPLETE for t in trials) == n
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

        # gone for longer than storage.retry_s: the worker stops with one clear message; a restart completes
        more = _worker(tiny_space_path, proxy_cache, server.url, tmp_path / "run", n + 6, **{**opts, "retry_s": 3})
        _wait_for(lambda: sum(t.state == TrialState.COMPLETE for t in _states(server.url, name)) >= n + 1)
        server.stop("fast")
        _, err = more.communicate(timeout=120)
        assert more.returncode == 1 and "Traceback" not in err
        assert "unreachable for" in err and "stopped. Completed trials are kept" in err
        server.start()
        again = _worker(tiny_space_path, proxy_cache, server.url, tmp_path / "run", n + 6, **opts)
        _, err = again.communicate(timeout=600)
        assert again.returncode == 0, err
        trials = _states(server.url, name)
        assert sum(t.state == TrialState.COMPLETE for t in trials) == n + 6
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finally:
        server.close()
