"""nas/io.py: run directories under concurrency, temp files left by killed writers."""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nas.io import STALE_TEMP_S, atomic_path, file_lock, increment_dir, remove_stale_temps, write_bytes_atomic

PROCS = 4


def _in_processes(fn: Callable[[tuple[str, int, object]], object], folder: Path, n: int) -> list:
    """fn((folder, n, barrier)) in PROCS forked processes that share one barrier; their results."""
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCS)
        with ctx.Pool(PROCS) as pool:
            return pool.map(fn, [(str(folder), n, barrier)] * PROCS)


def _claim(args: tuple[str, int, object]) -> list[str]:
    root, rounds, barrier = args
    claimed = []
    for r in range(rounds):  # each round, every process claims runs/<r>/exp* at the same moment
        barrier.wait()
        claimed.append(str(increment_dir(Path(root) / str(r) / "exp")))
    return claimed


def test_increment_dir_gives_each_of_several_processes_its_own_directory(tmp_path):
    rounds = 100
    claimed = [d for ds in _in_processes(_claim, tmp_path, rounds) for d in ds]
    assert len(claimed) == PROCS * rounds
    assert len(set(claimed)) == len(claimed), f"{len(claimed) - len(set(claimed))} run directories given twice"
    assert sorted(str(p) for p in tmp_path.glob("*/*")) == sorted(claimed)


def test_increment_dir_exist_ok_reuses_and_numbers_in_order(tmp_path):
    assert increment_dir(tmp_path / "exp") == tmp_path / "exp"
    assert increment_dir(tmp_path / "exp") == tmp_path / "exp2"
    assert increment_dir(tmp_path / "exp", exist_ok=True) == tmp_path / "exp"
    assert increment_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"  # parents are made


_WRITER = """
import sys, time
from nas.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"x" * 100_000)  # a checkpoint being written...
    print(tmp, flush=True)
    time.sleep(60)  # ...when the job is killed
"""


def test_a_temp_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"good")
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    leftover = Path(writer.stdout.readline().strip())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    assert leftover.is_file() and target.read_bytes() == b"good"  # what kill -9 leaves
    live = tmp_path / f".last.pt.tmp{os.getppid()}"  # a temp file whose writer (pytest's parent) still runs
    live.write_bytes(b"")
    old = time.time() - STALE_TEMP_S - 1
    for p in (leftover, live):
        os.utime(p, (old, old))
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert not leftover.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "last.pt"]


def test_a_recent_temp_file_of_a_dead_writer_is_kept(tmp_path):
    """Within STALE_TEMP_S it may belong to a live writer on another host sharing the directory."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tmp = tmp_path / f".x.json.tmp{int(dead.stdout)}"
    tmp.write_bytes(b"")
    assert remove_stale_temps(tmp_path / "x.json") == [] and tmp.exists()
    assert remove_stale_temps(tmp_path / "x.json", min_age_s=0) == [tmp] and not tmp.exists()


def test_atomic_path_relabels_only_a_full_disk(tmp_path):
    # an OSError handled inside the block stays in the chain only
    with pytest.raises(ValueError, match="a bug"), atomic_path(tmp_path / "a.txt"):
        try:
            (tmp_path / "missing").read_text()
        except FileNotFoundError:
            raise ValueError("a bug") from None
    # torch.save's RuntimeError over ENOSPC: the OSError, with the file
    with pytest.raises(OSError) as e, atomic_path(tmp_path / "b.pt"):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "b.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temp file left either way


def _count_under_lock(args: tuple[str, int, object]) -> None:
    folder, n, barrier = args
    barrier.wait()
    counter = Path(folder) / "count"
    for _ in range(n):
        with file_lock(Path(folder) / ".count.lock"):
            value = int(counter.read_text()) if counter.exists() else 0
            time.sleep(0.0005)  # widen the window a lost update needs
            counter.write_text(str(value + 1))


def test_file_lock_excludes_other_processes_and_leaves_no_file(tmp_path):
    n = 40
    _in_processes(_count_under_lock, tmp_path, n)
    assert int((tmp_path / "count").read_text()) == PROCS * n  # no update lost: never two holders at once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["count"]  # the lock file is gone
