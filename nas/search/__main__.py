"""Hydra entry point: `python -m nas.search +space=yolo_nas [strategy=tpe] [n_trials=100] [seed=1] ...`.

Runs a search (or resumes it: the run directory and study name depend on space, strategy and seed), or,
as a job of the `nas` Hydra sweeper, evaluates one candidate architecture (`candidate=<yaml>`) and
returns its metrics. The only module that imports Hydra; the DictConfig becomes a `SearchConfig` here.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nas.errors import ConfigError, NasError
from nas.io import machine_error_text
from nas.options import MAX_NAME_BYTES
from nas.search.config import SearchConfig, register_configs
from nas.search.runner import run_search
from nas.search.storage import StorageUnavailableError
from nas.search.sweep import evaluate_candidate

log = logging.getLogger("nas.search")
# Optuna's relational storages hold a study name in VARCHAR(512) (optuna.storages._rdb.models): PostgreSQL refuses a
# longer one mid-run, SQLite silently keeps it, so a study could not move between them. Refused up front everywhere.
MAX_STUDY_NAME = 512
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

register_configs()


def available_space_options() -> list[str]:
    """The options of the `space` config group."""
    return sorted(p.stem for p in (CONF_DIR / "space").glob("*.yaml"))


def _missing_space(out_dir: Path) -> None:
    # Hydra created the run directory before the task could check the config: remove it if it only
    # holds what Hydra put there, so a mistyped command leaves nothing behind.
    if out_dir.is_dir() and {p.name for p in out_dir.iterdir()} <= {".hydra", "__main__.log"}:
        shutil.rmtree(out_dir, ignore_errors=True)
    options = ", ".join(available_space_options())
    raise ConfigError(
        f"no search space selected: add +space=NAME (available: {options}), e.g. python -m nas.search +space=yolo_nas"
    )


def unwritable_reason(folder: Path) -> str | None:
    """Why `folder` cannot be created or written (None when it can), checked without creating anything."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


class RunDirCheck(Callback):
    """Refuses an unwritable run (or sweep) directory before Hydra writes anything: one line, exit status 2."""

    def _check(self, folder: str, key: str) -> None:
        long = [part for part in Path(folder).parts if len(part.encode()) > MAX_NAME_BYTES]
        if long:
            print(
                f"error: a folder name in the run directory is {len(long[0].encode())} bytes (at most "
                f"{MAX_NAME_BYTES}): {long[0][:40]}...; shorten name= (or set {key}=PATH)",
                file=sys.stderr,
            )
            raise SystemExit(2)
        reason = unwritable_reason(Path(folder).expanduser())
        if reason is not None:
            print(f"error: cannot write the run directory {folder}: {reason}; set {key}=PATH", file=sys.stderr)
            raise SystemExit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")


def to_search_config(cfg: DictConfig) -> SearchConfig:
    """The typed config (a plain dataclass) of a composed DictConfig."""
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, SearchConfig):
        raise ConfigError(f"the composed config is not a SearchConfig (got {type(obj).__name__})")
    return obj


def _task(cfg: DictConfig) -> Any:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if OmegaConf.is_missing(cfg.space, "name"):
        _missing_space(out_dir)
    search_cfg = to_search_config(cfg)
    if len(search_cfg.study_name) > MAX_STUDY_NAME:
        raise ConfigError(
            f"name: the study name is {len(search_cfg.study_name)} characters; Optuna's storages hold at most "
            f"{MAX_STUDY_NAME} (PostgreSQL refuses a longer one): shorten name="
        )
    if search_cfg.candidate is not None:
        return evaluate_candidate(search_cfg, search_cfg.candidate, out_dir)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress bar and log say what happens
    result = run_search(search_cfg, out_dir)
    log.info("outputs in %s: %s", out_dir, ", ".join(sorted(result.report["files"].values())))
    if result.interrupted:
        raise SystemExit(130)
    return {"study": result.study_name, "pareto_size": len(result.pareto), "out_dir": str(out_dir)}


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    if cfg.get("candidate") is not None:
        return _task(cfg)  # a sweeper job: errors go back to the sweeper through Hydra's job result
    try:
        return _task(cfg)
    except StorageUnavailableError as e:  # the database went away for longer than storage.retry_s
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except NasError as e:
        # A clear message instead of a traceback; exit status 2 like other usage errors.
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as e:  # a full disk under the study's database (Optuna's StorageInternalError), ...
        text = machine_error_text(e)
        if text is None:
            raise
        print(f"error: {text}", file=sys.stderr)
        raise SystemExit(1) from None


MULTIRUN_FLAGS = ("-m", "--multirun")


def multirun_first(argv: list[str]) -> list[str]:
    """`-m` anywhere among the overrides, moved to the front: Hydra's parser only takes it before them
    (`+space=yolo_nas -m strategy=tpe,random` would fail with `unrecognized arguments`)."""
    flags = [a for a in argv if a in MULTIRUN_FLAGS]
    return [*flags[:1], *(a for a in argv if a not in MULTIRUN_FLAGS)]


if __name__ == "__main__":
    sys.argv[1:] = multirun_first(sys.argv[1:])
    main()
