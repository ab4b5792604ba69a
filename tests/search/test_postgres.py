"""A real PostgreSQL (Debian's server binaries, started by the fixture): two worker processes share one
study, and a study on PostgreSQL resumes. Skipped when the server binaries are not installed."""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.search import StorageConfig, run_search

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway cluster on loopback (fsync off); as root the server runs as the `postgres` user."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        pytest.skip("running as root needs `runuser` to start PostgreSQL as the postgres user")
    base = Path(tempfile.mkdtemp(prefix="nas-pg-"))  # /tmp: reachable by the postgres user, unlike pytest's tmp
    data = base / "data"

    def run(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        subprocess.run(full, check=True, capture_output=True, timeout=60)

    if as_root:
        shutil.chown(base, "postgres")
    port = _free_port()
    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    opts = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=50"
    )
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "server.log"), "-w", "start")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE nas_test")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/nas_test"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


WORKER = textwrap.dedent(
    """
    import dataclasses, sys
    from pathlib import Path
    from nas.search import StorageConfig, run_search
    from tests.search.tiny import tiny_config
    space, cache, url, out, n = sys.argv[1:6]
    cfg = tiny_config(Path(space), Path(cache), name="shared", n_trials=int(n),
                      storage=StorageConfig(kind="postgres", url=url, heartbeat_interval_s=5, grace_period_s=20))
    run_search(cfg, out)
    """
)


def test_two_workers_share_one_study(postgres_url, tiny_space_path, proxy_cache, tmp_path):
    # the reference population is computed once here, so both workers start on the search itself
    from tests.search.tiny import tiny_config

    run_search(
        dataclasses.replace(
            tiny_config(tiny_space_path, proxy_cache), storage=StorageConfig(kind="memory"), n_trials=0
        ),
        tmp_path / "warm",
    )
    n = 12
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(tiny_space_path),
                str(proxy_cache),
                postgres_url,
                str(tmp_path / f"w{i}"),
                str(n),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == len(trials), "unique trial numbers"
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert n <= len(trials) <= n + 1  # the other worker may finish the trial it was running when n was reached
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
