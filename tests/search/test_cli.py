"""`python -m nas.search` as users run it: the missing-space error, Ctrl-C and resume, multirun with the
basic sweeper, and the `nas` sweeper (one job per candidate) on the basic and submitit-local launchers."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[2]


def tiny_args(space: Path, cache: Path, **extra) -> list[str]:
    args = {
        "space.name": str(space),
        "tiers": "null",
        "proxy.imgsz": 64,
        "proxy.batch_size": 2,
        "proxy.batch_source": "random",
        "proxy.n_reference": 3,
        "proxy.cache_dir": str(cache),
        "strategy.population_size": 4,
        "threads": 1,
        "progress": "false",
        **extra,
    }
    # ~hardware: the tiny space's blocks are not in the shipped latency tables, so its cost is flops_g
    return ["+space=yolo_nas", "~hardware", *(f"{k}={v}" for k, v in args.items())]


def nas_search(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nas.search", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, **kw
    )


def test_missing_space_lists_the_available_ones(tmp_path):
    p = nas_search(f"hydra.run.dir={tmp_path / 'run'}")
    assert p.returncode == 2
    assert "add +space=NAME (available: yolo_nas)" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "run").exists(), "a mistyped command leaves no run directory behind"


def test_bad_value_is_a_clear_error(tmp_path, tiny_space_path, proxy_cache):
    p = nas_search(
        *tiny_args(tiny_space_path, proxy_cache, **{"strategy": "nsga2", "strategy.name": "annealing"}),
        f"hydra.run.dir={tmp_path}",
    )
    assert p.returncode == 2 and "error: unknown strategy 'annealing'; available strategies" in p.stderr


def _complete(db: Path, name: str) -> list[int]:
    """Numbers of the complete trials of study `name` in sqlite file `db`, read-only: a poll from the test never
    creates Optuna's tables itself, so it cannot race the search that is creating them."""
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
            rows = conn.execute(
                "SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "WHERE s.study_name = ? AND t.state = 'COMPLETE'",
                (name,),
            ).fetchall()
    except sqlite3.OperationalError:  # no tables yet
        return []
    return [r[0] for r in rows]


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path, tiny_space_path, proxy_cache):
    run_dir, name = tmp_path / "run", "sigint"
    args = [*tiny_args(tiny_space_path, proxy_cache, name=name), f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.search", *args, "n_trials=500"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while len(_complete(run_dir / "study.db", name)) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no progress"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err and "interrupted" in out + err
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")
    states = [t.state for t in study.get_trials()]
    assert TrialState.RUNNING not in states, "Ctrl-C leaves no running trial behind"
    report = json.loads((run_dir / "report.json").read_text())
    n_done = report["trials"]["complete"]
    assert report["interrupted"] and n_done >= 5
    before = {t.number: t.user_attrs["digest"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    # the same command with a target just above what is done: finishes, nothing finished is re-evaluated
    p = nas_search(*args, f"n_trials={n_done + 2}")
    assert p.returncode == 0, p.stderr
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")
    after = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(after) == n_done + 2
    assert {t.number: t.user_attrs["digest"] for t in after if t.number in before} == before
    interrupted = [t for t in study.get_trials() if t.user_attrs.get("interrupted")]
    for t in interrupted:  # re-run once: completed, or pruned as a duplicate when the tiny space drew its arch twice
        retries = [r for r in study.get_trials() if r.user_attrs.get("retry_of") == t.number]
        assert len(retries) == 1 and (
            retries[0].state == TrialState.COMPLETE
            or (retries[0].state == TrialState.PRUNED and "duplicate_of" in retries[0].user_attrs)
        ), [(r.state, r.user_attrs) for r in retries]
    assert not json.loads((run_dir / "report.json").read_text())["interrupted"]


def _search_processes(run_dir: Path) -> list[int]:
    """Pids of live processes whose command line names `run_dir` (a search working on it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if str(run_dir) in cmd and state != "Z":
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_nas_search_leaves_no_search_behind(tmp_path, tiny_space_path, proxy_cache, sig):
    run_dir, name, n = tmp_path / "run", "killed", 10
    args = [*tiny_args(tiny_space_path, proxy_cache, name=name), f"hydra.run.dir={run_dir}", f"n_trials={n}"]
    nas = [sys.executable, "-m", "nas", "search", *args]  # the `nas` console script's entry point
    proc = subprocess.Popen(nas, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while len(_complete(run_dir / "study.db", name)) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no progress"
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130), err
    time.sleep(0.5)  # what would have been an orphan would still be running now
    assert _search_processes(run_dir) == [], "no search process remains"
    p = subprocess.run(nas, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert len(_complete(run_dir / "study.db", name)) == n, "the re-run completes exactly n_trials"
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")
    assert not [t for t in study.get_trials() if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_multirun_flag_may_follow_overrides():
    from nas.search.__main__ import multirun_first

    assert multirun_first(["+space=yolo_nas", "-m", "strategy=tpe,random", "n_trials=10"]) == [
        "-m", "+space=yolo_nas", "strategy=tpe,random", "n_trials=10"
    ]  # fmt: skip
    assert multirun_first(["+space=yolo_nas", "n_trials=10"]) == ["+space=yolo_nas", "n_trials=10"]


@pytest.mark.slow
def test_multirun_with_the_basic_sweeper(tmp_path, tiny_space_path, proxy_cache):
    first, *rest = tiny_args(tiny_space_path, proxy_cache, n_trials=4)
    p = nas_search(
        first,
        "-m",  # the natural order: -m after the first override
        *rest,
        "strategy=nsga2,random",
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert p.returncode == 0, p.stderr
    reports = sorted(tmp_path.glob("*/report.json"))
    assert len(reports) == 4
    names = {json.loads(r.read_text())["study"] for r in reports}
    assert names == {f"tiny_space-{s}-seed{i}" for s in ("nsga2", "random") for i in (0, 1)}


@pytest.mark.parametrize("launcher", ["basic", pytest.param("submitit_local", marks=pytest.mark.slow)])
def test_nas_sweeper_runs_one_job_per_candidate(tmp_path, tiny_space_path, proxy_cache, launcher):
    p = nas_search(
        "-m",
        *tiny_args(tiny_space_path, proxy_cache, n_trials=5),
        "hydra/sweeper=nas",
        "hydra.sweeper.n_jobs=3",
        f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert p.returncode == 0, p.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["trials"]["complete"] == 5 and report["pareto_size"] >= 1
    assert sorted(p.name for p in (tmp_path / "candidates").glob("*.yaml")) == [f"trial_{i:05d}.yaml" for i in range(5)]
    jobs = [json.loads(f.read_text()) for f in tmp_path.glob("*/objectives.json")]
    assert len(jobs) == 5, "every candidate was evaluated by its own Hydra job"
    for tier in ("tiny_s", "tiny_m", "tiny_l"):
        assert (tmp_path / "selected" / f"{tier}.yaml").is_file()
    study = optuna.load_study(study_name="tiny_space-nsga2-seed0", storage=f"sqlite:///{tmp_path / 'study.db'}")
    digests = {t.user_attrs["digest"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert digests == {j["digest"] for j in jobs}


def test_nas_sweeper_refuses_setting_sweeps(tmp_path, tiny_space_path, proxy_cache):
    p = nas_search(
        "-m",
        *tiny_args(tiny_space_path, proxy_cache, n_trials=2),
        "hydra/sweeper=nas",
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert p.returncode != 0 and "does not sweep ['seed=0,1']" in p.stderr


def test_names_too_long_for_a_folder_or_a_study_are_one_line(tmp_path, tiny_space_path, proxy_cache):
    args = tiny_args(tiny_space_path, proxy_cache)
    p = nas_search(*args, "name=" + "n" * 300)  # the run directory runs/${name}: over 255 bytes
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "a folder name in the run directory is 300 bytes (at most 255)" in p.stderr and "shorten name=" in p.stderr
    p = nas_search(*args, "name=" + "s" * 600, f"hydra.run.dir={tmp_path / 'run'}")  # PostgreSQL's limit: 512
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "the study name is 600 characters; Optuna's storages hold at most 512" in p.stderr


def test_a_full_disk_during_a_search_is_one_line(tmp_path, tiny_space_path, proxy_cache):
    """A real full disk: the run directory on a 192 KiB tmpfs (private mount namespace); the study's SQLite
    database fills it (it was Optuna's 137-line StorageInternalError)."""
    from tests.helpers import run_on_small_tmpfs

    disk = tmp_path / "disk"
    cmd = [sys.executable, "-m", "nas.search", *tiny_args(tiny_space_path, proxy_cache), "n_trials=20",
           f"hydra.run.dir={disk / 'run'}"]  # fmt: skip
    p = run_on_small_tmpfs(cmd, disk, "192k", ROOT, timeout=600)
    assert p.returncode == 1, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "StorageInternalError" not in p.stderr, p.stderr[-3000:]
    assert "error: no space left on the device" in p.stderr
