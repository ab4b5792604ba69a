"""File utilities at the bottom of the house: atomic writes and YAML text in and out (no torch, no nas imports but errors)."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from nas.errors import ConfigError, SpaceError

__all__ = [
    "atomic_path",
    "dump_yaml",
    "file_lock",
    "increment_dir",
    "machine_error_text",
    "os_error",
    "parse_yaml",
    "read_text",
    "remove_stale_temps",
    "write_bytes_atomic",
    "write_text_atomic",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it replaces `path`, on error it is removed.

    A half-written file never replaces a good one, and readers never see a partial file. Temp files of `path`
    left by a killed writer (kill -9, preemption) are removed here, by the next write of the same file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as e:
        # torch.save on a full disk raises RuntimeError("... unexpected pos ...") over the OSError: surface the
        # OSError itself, with the file it was writing, so that the caller (and the CLI) can name the cause
        cause = os_error(e)
        if cause is not None and cause.errno in NO_SPACE and not (cause is e and cause.filename):
            raise OSError(cause.errno, os.strerror(cause.errno), str(path)) from e
        raise  # anything else as it was (an OSError handled inside the block must not relabel another error)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """A cross-process mutex on `path` (flock) that leaves no file behind: the holder removes the file before it
    lets go, and a waiter that then wakes on the removed file retries on the current one, so two holders never
    overlap (the check-the-inode-after-locking pattern). Released by the OS when a holder dies. Without fcntl
    (Windows): filelock's FileLock, whose file stays."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        from filelock import FileLock

        with FileLock(os.fspath(path)):
            yield
        return
    path = os.fspath(path)
    for _ in range(10_000):  # each retry means another holder came and went: bounded all the same
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                now = os.stat(path)
                current = (mine.st_ino, mine.st_dev) == (now.st_ino, now.st_dev)
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)  # we locked a file its holder had already removed: take the one at `path` now
    else:
        raise OSError(errno.EAGAIN, "could not take the lock: its file kept being replaced", path)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it: whoever waits on this file will retry
        os.close(fd)


def os_error(e: BaseException | None) -> OSError | None:
    """The first OSError with an errno in `e`'s chain (`e` itself, its cause, its context, ...), or None."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e
        e = e.__cause__ or e.__context__
    return None


NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_SQLITE_FULL = "database or disk is full"  # sqlite3.OperationalError's text for SQLITE_FULL (no errno)


def _chain(e: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while e is not None and all(e is not x for x in out):
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def machine_error_text(e: BaseException) -> str | None:
    """One line for a failure of the machine rather than of the input (full disk, name too long, no permission)
    anywhere in `e`'s chain, naming the cause and the fix; None for anything else (a bug keeps its traceback)."""
    cause = os_error(e)
    if cause is None:
        if any(_SQLITE_FULL in str(x) for x in _chain(e)):  # a full disk under sqlite (an Optuna study's database)
            return (
                "no space left on the device (the SQLite database reports it full); free some space or write "
                "elsewhere (a search: hydra.run.dir=PATH); what was written before is kept"
            )
        return None
    where = f" writing {cause.filename}" if cause.filename else ""
    if cause.errno in NO_SPACE:
        return (
            f"no space left on the device{where} ({cause.strerror}); free some space or write elsewhere "
            "(project=...); files written before are kept"
        )
    if cause.errno == errno.ENAMETOOLONG:
        return f"a file name is too long{where.replace(' writing', ':')}; shorten name= / project= (255 bytes per name)"
    if cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write{where}: {cause.strerror}; choose a writable folder (project=...)"
    return None


def read_text(path: str | os.PathLike, error: type[Exception] = ConfigError) -> str:
    """A UTF-8 text file's content; a binary file (a PNG named .yaml) is `error` naming the file, not a UnicodeDecodeError."""
    try:
        return Path(path).read_text()
    except UnicodeDecodeError as e:
        raise error(
            f"{os.fspath(path)}: not a text file (byte {e.start} is {e.object[e.start : e.start + 1]!r}, not UTF-8); "
            "expected a YAML / JSON text file: check the path"
        ) from None


# A temp file is stale when its writer's process is gone and it has not changed for this long (the age guards
# against a live writer on another host sharing the directory, whose pid means nothing here).
STALE_TEMP_S = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike, min_age_s: float = STALE_TEMP_S) -> list[Path]:
    """Remove `.<name>.tmp<pid>` files next to `path` whose process is gone and which are older than `min_age_s`."""
    path, removed = Path(path), []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp*"):
        pid = tmp.name.rpartition(".tmp")[2]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            if time.time() - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()
                removed.append(tmp)
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` through a temp file and rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` through a temp file and rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def increment_dir(path: Path, exist_ok: bool = False) -> Path:
    """`path` if free (or exist_ok), else path2, path3, ... (created): run directories like ultralytics' runs/<mode>/exp, exp2, ...

    The directory is claimed by `mkdir` itself, which fails if it exists: processes starting together each get
    their own (an exists() check followed by mkdir gave two of them the same one).
    """
    path = Path(path)
    if exist_ok:
        path.mkdir(parents=True, exist_ok=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = path if n == 1 else path.with_name(f"{path.name}{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ConfigError(f"{path}: 9,999 run directories exist; choose another name= or project=")


class _Dumper(yaml.SafeDumper):
    pass


def _repr_float(dumper: yaml.SafeDumper, value: float) -> yaml.ScalarNode:
    # repr() is the shortest string that reads back to the same float; keep a dot so YAML 1.1
    # parsers (PyYAML) read it back as a float rather than a string.
    text = repr(value)
    if "e" in text and "." not in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}.0e{exp}"
    return dumper.represent_scalar("tag:yaml.org,2002:float", text)


_Dumper.add_representer(float, _repr_float)


def dump_yaml(data: Any) -> str:
    """Readable YAML: nested mappings in block style, leaf mappings and lists inline, key order kept."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=4096)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """yaml.safe_load; malformed YAML is a SpaceError naming `source`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"{source}: malformed YAML: {e}") from None
