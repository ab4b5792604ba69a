"""One search session on an Optuna study: creation or resumption, references, stale trials, the objective.

Every trial stores its architecture (`arch`, the ArchConfig as a dict), all metrics, the raw proxy
values, its feasibility and the worker that ran it as user attributes, so any trial can be rebuilt with
`ArchConfig.from_dict(trial.user_attrs["arch"])` and a study can be reported without re-evaluation.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.search.config import SearchConfig
from nas.search.objectives import Evaluation, Evaluator
from nas.search.select import TrialRecord
from nas.search.storage import make_storage
from nas.search.strategies import CONSTRAINT_KEY, make_sampler
from nas.space import ArchConfig, SearchSpace, load_space

__all__ = ["FINGERPRINT_ATTR", "Session"]

log = logging.getLogger("nas.search")
FINGERPRINT_ATTR = "nas_fingerprint"


def _proc_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a live pid from a reused one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_id() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid)}


def _dead_local(worker: Any) -> bool:
    """True when `worker` ran on this host and its process is gone (a killed run's trial)."""
    if not isinstance(worker, dict) or worker.get("host") != socket.gethostname():
        return False
    pid = int(worker.get("pid", -1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    start = worker.get("start")
    return start is not None and _proc_start(pid) not in (None, start)


class Session:
    """A search's study, evaluator, budgets and objective; shared by `run` and the Hydra sweeper."""

    def __init__(self, cfg: SearchConfig, out_dir: str | os.PathLike, space: SearchSpace | None = None):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.space = space if space is not None else load_space(cfg.space.name)
        self.evaluator = Evaluator(cfg, self.space)
        self.objectives = self.evaluator.objectives
        self.directions = self.evaluator.directions
        self.storage, self.storage_desc = make_storage(cfg.storage, self.out_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = make_sampler(cfg.strategy, cfg.seed)
        self.study = optuna.create_study(
            study_name=cfg.study_name,
            storage=self.storage,
            sampler=sampler,
            directions=self.directions,
            load_if_exists=True,
        )
        self._check_fingerprint()
        self.budgets = self._budgets()
        self.max_cost = self._max_cost()

    # ---- setup -------------------------------------------------------------------------------
    def _check_fingerprint(self) -> None:
        want = self.evaluator.fingerprint()
        have = self.study.user_attrs.get(FINGERPRINT_ATTR)
        if have is None:
            if self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                raise ConfigError(
                    f"study {self.cfg.study_name!r} in {self.storage_desc} has trials but was not created by "
                    "nas.search; choose another name=..."
                )
            self.study.set_user_attr(FINGERPRINT_ATTR, want)
            return
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        if diff:
            detail = "; ".join(f"{k}: study has {have.get(k)!r}, config has {want.get(k)!r}" for k in diff)
            raise ConfigError(
                f"study {self.cfg.study_name!r} in {self.storage_desc} was created with other objective settings "
                f"({detail}). Its values would not be comparable: resume with the original settings, or start "
                "a new study with name=<new name> (or another run directory / storage)."
            )

    def _budgets(self) -> dict[str, float]:
        tiers = self.cfg.tiers if self.cfg.tiers is not None else dict.fromkeys(self.space.references)
        budgets = {}
        for tier, budget in tiers.items():
            if budget is None:
                ref = self.space.references.get(tier)
                if ref is None:
                    raise ConfigError(
                        f"tier {tier!r} has no budget and is not a reference of space {self.space.name!r} "
                        f"(references: {', '.join(self.space.references) or 'none'}); set tiers.{tier}=<max {self.evaluator.cost}>"
                    )
                budget = self.evaluator.costs(ref)[self.evaluator.cost]  # counts only: no model, no proxy
            budgets[tier] = float(budget)
        return budgets

    def _max_cost(self) -> float | None:
        if not self.cfg.constrain:
            return None
        if self.cfg.max_cost is not None:
            return float(self.cfg.max_cost)
        return max(self.budgets.values()) if self.budgets else None

    def enqueue_references(self) -> None:
        """The space's references (the released S/M/L) are the first trials, once per study."""
        for name, ref in self.space.references.items():
            self.study.enqueue_trial(self.space.params_of(ref), user_attrs={"reference": name}, skip_if_exists=True)

    def recover(self) -> int:
        """Fail the running trials of dead local workers; enqueue them and interrupted trials again (once)."""
        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials} | {t.system_attrs.get("failed_trial") for t in trials}
        n = 0
        for t in trials:
            stale = t.state == TrialState.RUNNING and _dead_local(t.user_attrs.get("worker"))
            if stale:
                self.storage.set_trial_user_attr(t._trial_id, "stale", True)
                self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            redo = stale or (
                t.state == TrialState.FAIL and (t.user_attrs.get("interrupted") or t.user_attrs.get("stale"))
            )
            if redo and t.number not in retried and t.params:
                attrs: dict[str, Any] = {"retry_of": t.number}
                if t.user_attrs.get("reference"):
                    attrs["reference"] = t.user_attrs["reference"]
                self.study.enqueue_trial(t.params, user_attrs=attrs)
                n += 1
        if n:
            log.info("re-enqueued %d interrupted or stale trial(s)", n)
        return n

    def fail_own_running(self) -> int:
        """After an interruption: fail (and mark) this process's trials that are still RUNNING."""
        me = worker_id()
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            w = t.user_attrs.get("worker")
            if isinstance(w, dict) and w.get("host") == me["host"] and w.get("pid") == me["pid"]:
                self.storage.set_trial_user_attr(t._trial_id, "interrupted", True)
                self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                n += 1
        return n

    # ---- trials ------------------------------------------------------------------------------
    def sample(self, trial: optuna.trial.BaseTrial) -> ArchConfig:
        arch = self.space.sample(trial)
        ref = trial.user_attrs.get("reference")
        return arch.replace(name=ref) if ref else arch

    def attrs(self, arch: ArchConfig, ev: Evaluation) -> dict[str, Any]:
        """The user attributes stored with a finished trial."""
        over = ev.values[self.evaluator.cost] - self.max_cost if self.max_cost is not None else 0.0
        return {
            "arch": arch.to_dict(),
            "digest": arch.digest(),
            "metrics": ev.values,
            "proxies": ev.proxies,
            "eval_s": round(ev.eval_s, 4),
            "cached": ev.cached,
            "feasible": over <= 0.0,
            "over_budget": over,
        }

    def objective(self, trial: optuna.trial.Trial) -> list[float]:
        """Optuna objective: sample, evaluate, store the attributes, return the objective values."""
        trial.set_user_attr("worker", worker_id())
        try:
            arch = self.sample(trial)
            ev = self.evaluator.evaluate(arch)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        self.store(trial, arch, ev)
        return ev.objective_values(self.objectives)

    def store(self, trial: optuna.trial.Trial, arch: ArchConfig, ev: Evaluation) -> None:
        """Record a running trial's attributes and, under a budget, its constraint (before it is told)."""
        attrs = self.attrs(arch, ev)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if self.max_cost is not None:
            trial.set_constraint(CONSTRAINT_KEY, attrs["over_budget"])

    def n_complete(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def records(self) -> list[TrialRecord]:
        """Finished trials as plain records, in trial order."""
        return [
            TrialRecord.from_attrs(t.number, t.user_attrs)
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.study.get_trials(deepcopy=False):
            out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
        return out
