"""One search session on an Optuna study: creation or resumption, references, stale trials, the objective.

Every trial stores its architecture (`arch`, the ArchConfig as a dict), all metrics, the raw proxy
values, its feasibility and the worker that ran it as user attributes, so any trial can be rebuilt with
`ArchConfig.from_dict(trial.user_attrs["arch"])` and a study can be reported without re-evaluation.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.search.config import SearchConfig
from nas.search.liveness import dead_local, worker_id
from nas.search.objectives import Evaluation, Evaluator
from nas.search.optuna_compat import trial_id
from nas.search.select import TrialRecord
from nas.search.storage import make_storage
from nas.search.strategies import CONSTRAINT_KEY, INT8_CONSTRAINT_KEY, TrialSeededSampler
from nas.search.tiers import TierDirector, start_count, stratified_start, tier_budgets, tier_windows, window_constraint
from nas.space import ArchConfig, SearchSpace, load_space

__all__ = ["FINGERPRINT_ATTR", "REFERENCE_ATTR", "TIER_START_ATTR", "Session"]

log = logging.getLogger("nas.search")
FINGERPRINT_ATTR = "nas_fingerprint"
REFERENCE_ATTR = "nas_reference_population"  # raw proxy values of the reference population, computed once
TIER_START_ATTR = "nas_tier_start"  # the stratified start [[tier, params], ...], planned once per study
# FAIL trials carrying one of these were not stopped from outside: they are not retried
NOT_RETRIED = ("error", "duplicate_of", "surplus", "not_needed")


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(
            f"run directory {folder} is not writable ({e.strerror}); choose another one with hydra.run.dir=PATH "
            "(or out_dir= in Python) or fix its permissions"
        ) from None


class Session:
    """A search's study, evaluator, budgets and objective; shared by `run` and the Hydra sweeper."""

    def __init__(self, cfg: SearchConfig, out_dir: str | os.PathLike, space: SearchSpace | None = None):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        _check_writable(self.out_dir)  # before any storage file is created in it
        self.space = space if space is not None else load_space(cfg.space.name)
        self.evaluator = Evaluator(cfg, self.space)
        self.objectives = self.evaluator.objectives
        self.directions = self.evaluator.directions
        self.backend = make_storage(cfg.storage, self.out_dir)
        self.storage, self.storage_desc = self.backend.storage, self.backend.desc
        self.budgets = tier_budgets(self.cfg.tiers, self.space, self.cost_of, self.evaluator.cost)
        self.max_cost = self._max_cost()
        director = None
        if cfg.tier_target != "none":
            ev = self.evaluator
            director = TierDirector(
                cfg.tier_target, cfg.tier_target_every, self.budgets, self.space, self.cost_of, ev.cost, cfg.seed
            )
        self.study = self.db(
            optuna.create_study,
            study_name=cfg.study_name,
            storage=self.storage,
            sampler=TrialSeededSampler(cfg.strategy, cfg.seed, director),
            directions=self.directions,
            load_if_exists=True,
        )
        self.db(self._check_fingerprint)
        self.db(self._claim_reference)

    def db(self, fn, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args)` with lost database connections retried (bounded by storage.retry_s)."""
        return self.backend.call(fn, *args, **kwargs)

    def lock(self, what: str):
        """The study-level lock for `what` (shared by every worker of this study)."""
        return self.backend.lock(self.cfg.study_name, what)

    # ---- setup -------------------------------------------------------------------------------
    def _check_fingerprint(self) -> None:
        want = self.evaluator.fingerprint()
        with self.lock("setup"):
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

    def _claim_reference(self) -> None:
        """The proxy reference population is computed by the first worker of a study and stored in it; the others
        (and resumed runs, on any host) read it back instead of computing it again."""
        values = self.study.user_attrs.get(REFERENCE_ATTR)
        if values is None:
            with self.lock("reference"):
                values = self.study.user_attrs.get(REFERENCE_ATTR)  # another worker may have been first
                if values is None:
                    values = self.evaluator.reference()
                    self.study.set_user_attr(REFERENCE_ATTR, values)
        self.evaluator.set_reference(values)

    def _max_cost(self) -> float | None:
        if not self.cfg.constrain:
            return None
        if self.cfg.max_cost is not None:  # a positive number (SearchConfig)
            return float(self.cfg.max_cost)
        return max(self.budgets.values()) if self.budgets else None

    def enqueue_references(self) -> None:
        """The space's references (the released S/M/L) are the first trials, once per study, whoever starts it."""
        with self.lock("references"):
            have = {t.user_attrs.get("reference") for t in self.study.get_trials(deepcopy=False)}
            for name, ref in self.space.references.items():
                if name not in have:
                    self.study.enqueue_trial(self.space.params_of(ref), user_attrs={"reference": name})

    def enqueue_tier_start(self) -> None:
        """Plan the stratified start (nas.search.tiers) once per study, whoever starts it, and enqueue what the
        study needs of it now (the rest follows in `recover`, as the study needs trials). A study whose sampler
        has already run keeps its own start."""
        with self.lock("tier_start"):
            if TIER_START_ATTR not in self.study.user_attrs:
                trials = self.study.get_trials(deepcopy=False)
                n_refs = sum(bool(t.user_attrs.get("reference")) for t in trials)
                started = any(not t.user_attrs.get("reference") for t in trials)
                n = 0 if started else start_count(self.cfg, n_refs, len(self.budgets))
                exclude = [a.digest() for a in self.space.references.values()]
                start = stratified_start(self.space, self.cost_of, self.budgets, n, self.cfg.seed, exclude)
                plan = [[tier, self.space.params_of(arch)] for tier, arch in start]
                self.study.set_user_attr(TIER_START_ATTR, plan)
                if plan:
                    per_tier = {t: sum(tier == t for tier, _ in plan) for t in self.budgets}
                    log.info("stratified start: %s trial(s) per tier window", per_tier)
        with self.lock("recover"):
            self._enqueue_due_start(self.study.get_trials(deepcopy=False))

    def tier_start_counts(self) -> dict[str, int]:
        """Complete stratified start trials per tier ({} when the study has no stratified start)."""
        if not self.study.user_attrs.get(TIER_START_ATTR):
            return {}
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return {tier: sum(t.user_attrs.get("tier_start") == tier for t in done) for tier in self.budgets}

    def tier_target_counts(self) -> dict[str, dict[str, int]]:
        """Complete trials aimed at each tier after the start (`aimed`) and those of them that were directed
        mutations (`mutated`), see nas.search.tiers.TierDirector."""
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return {
            tier: {
                "aimed": sum(t.user_attrs.get("tier_target") == tier for t in done),
                "mutated": sum(
                    t.user_attrs.get("tier_target") == tier and t.user_attrs.get("tier_mutation") is True for t in done
                ),
            }
            for tier in self.budgets
        }

    def _enqueue_due_start(self, trials: list[optuna.trial.FrozenTrial]) -> int:
        """Enqueue the planned start trials not enqueued yet, as far as the study needs trials (so a study
        that grows on resume runs the start an uninterrupted study runs, and none is left waiting)."""
        plan = self.study.user_attrs.get(TIER_START_ATTR) or []
        have = {t.user_attrs["start_index"] for t in trials if "start_index" in t.user_attrs}
        c = self.counts(trials)
        need = self.cfg.n_trials - c.get("complete", 0) - c.get("running", 0) - c.get("waiting", 0)
        n = 0
        for i, (tier, params) in enumerate(plan):
            if n >= need:
                break
            if i not in have:
                self.study.enqueue_trial(params, user_attrs={"tier_start": tier, "start_index": i})
                n += 1
        return n

    def cost_of(self, arch: ArchConfig) -> float:
        """The tier cost of `arch`, counted from its ArchConfig (no model, no proxy)."""
        return self.evaluator.costs(arch)[self.evaluator.cost]

    def recover(self) -> int:
        """Fail the running trials of dead workers (same host: process gone; any host: no heartbeat, or no worker
        named, for the grace period) and enqueue failed trials that were stopped from outside again, once each and only while the
        study still needs trials. Idempotent, under the study lock: concurrent restarts do not race."""
        with self.lock("recover"):
            self._fail_stale()
            trials = self.study.get_trials(deepcopy=False)
            c = self.counts(trials)
            need = self.cfg.n_trials - c.get("complete", 0) - c.get("running", 0) - c.get("waiting", 0)
            n = self._retry_failed(trials, need)
            if n:
                log.info("re-enqueued %d interrupted or stale trial(s)", n)
            if n < need:
                self._enqueue_due_start(self.study.get_trials(deepcopy=False))
        return n

    def _fail_stale(self) -> None:
        """Fail the running trials of dead workers: gone on this host, nameless or without heartbeat."""
        grace_s = self.cfg.storage.grace_period_s or 60
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # A worker names itself right after asking; a trial nameless after the grace period lost its
            # worker in between (killed), and has no heartbeat to go stale either.
            nameless = (
                "worker" not in t.user_attrs
                and t.datetime_start is not None
                and ((datetime.now() - t.datetime_start).total_seconds() > grace_s)
            )
            if nameless or dead_local(t.user_attrs.get("worker")):
                self._fail(trial_id(t), "stale")  # False: it finished (or another worker failed it) meanwhile
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)

    def _retry_failed(self, trials: list[optuna.trial.FrozenTrial], need: int) -> int:
        """Enqueue again (once each, at most `need`) the failed trials that were stopped from outside."""
        retried = {t.user_attrs.get("retry_of") for t in trials}
        n = 0
        for t in trials:
            if n >= need:
                break
            redo = t.state == TrialState.FAIL and not any(k in t.user_attrs for k in NOT_RETRIED)
            if redo and t.number not in retried:
                # no parameters yet (stopped before sampling): redrawn with the same seed, see draw_index
                attrs: dict[str, Any] = {"retry_of": t.number}
                params = t.params
                for k in ("tier_start", "start_index"):
                    if k in t.user_attrs:
                        attrs[k] = t.user_attrs[k]
                if "start_index" in attrs:
                    params = params or self.study.user_attrs[TIER_START_ATTR][attrs["start_index"]][1]
                if t.user_attrs.get("reference"):
                    attrs["reference"] = t.user_attrs["reference"]
                    params = params or self.space.params_of(self.space.references[attrs["reference"]])
                self.study.enqueue_trial(params, user_attrs=attrs)
                n += 1
        return n

    def drop_unneeded(self) -> int:
        """Once the study is complete, retries still waiting are not needed: fail them (marked), so that no trial
        stays WAITING forever."""
        n = 0
        with self.lock("recover"):
            if self.n_complete() < self.cfg.n_trials:
                return 0
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                n += self._fail(trial_id(t), "not_needed")
        return n

    def _fail(self, trial_id: int, marker: str) -> bool:
        """Mark trial `trial_id` with user attr `marker` and fail it; False when another process finished it first."""
        try:
            self.storage.set_trial_user_attr(trial_id, marker, True)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def fail_own_running(self, keep: int | None = None) -> int:
        """Fail (and mark interrupted) this process's trials that are still RUNNING, except trial id `keep`."""
        me = worker_id()
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            w = t.user_attrs.get("worker")
            mine = isinstance(w, dict) and w.get("host") == me["host"] and w.get("pid") == me["pid"]
            if mine and trial_id(t) != keep:
                n += self._fail(trial_id(t), "interrupted")
        return n

    # ---- trials ------------------------------------------------------------------------------
    def sample(self, trial: optuna.trial.BaseTrial) -> ArchConfig:
        arch = self.space.sample(trial)
        ref = trial.user_attrs.get("reference")
        return arch.replace(name=ref) if ref else arch

    def duplicate_of(self, digest: str, number: int) -> int | None:
        """The number of a complete or running trial (other than `number`) of the architecture `digest`."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if t.number != number and t.user_attrs.get("digest") == digest:
                return t.number
        return None

    def attrs(self, arch: ArchConfig, ev: Evaluation) -> dict[str, Any]:
        """The user attributes stored with a finished trial."""
        over = ev.values[self.evaluator.cost] - self.max_cost if self.max_cost is not None else 0.0
        drop_over = self._int8_drop_over(ev)
        return {
            "arch": arch.to_dict(),
            "digest": arch.digest(),
            "metrics": ev.values,
            "proxies": ev.proxies,
            "eval_s": round(ev.eval_s, 4),
            "cached": ev.cached,
            "feasible": over <= 0.0 and drop_over <= 0.0,
            "over_budget": over,
            **({INT8_CONSTRAINT_KEY: drop_over} if self.cfg.max_int8_drop is not None else {}),
        }

    def _int8_drop_over(self, ev: Evaluation) -> float:
        """int8_drop - max_int8_drop (<= 0: within the INT8 constraint); 0 without one."""
        return ev.values["int8_drop"] - self.cfg.max_int8_drop if self.cfg.max_int8_drop is not None else 0.0

    def store(self, trial: optuna.trial.Trial, arch: ArchConfig, ev: Evaluation) -> None:
        """Record a running trial's attributes and, under a budget, its constraint (before it is told): the cost
        over `max_cost`, or for a trial aimed at a tier under `tier_target=constraint`, outside that tier's
        window; and under `max_int8_drop`, the estimated INT8 drop over it. The trial's `feasible` attribute, which
        the tier selection reads, is the `max_cost` and `max_int8_drop` one."""
        attrs = self.attrs(arch, ev)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if self.cfg.max_int8_drop is not None:
            trial.set_constraint(INT8_CONSTRAINT_KEY, attrs[INT8_CONSTRAINT_KEY])
        if self.max_cost is None:
            return
        tier = trial.user_attrs.get("tier_target")
        if self.cfg.tier_target == "constraint" and tier in self.budgets:
            lo, hi = tier_windows(self.budgets)[tier]
            trial.set_constraint(CONSTRAINT_KEY, window_constraint(ev.values[self.evaluator.cost], lo, hi))
        else:
            trial.set_constraint(CONSTRAINT_KEY, attrs["over_budget"])

    def n_complete(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def records(self) -> list[TrialRecord]:
        """Finished trials as plain records, in trial order."""
        return [
            TrialRecord.from_attrs(t.number, t.user_attrs)
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ]

    def counts(self, trials: list[optuna.trial.FrozenTrial] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.study.get_trials(deepcopy=False) if trials is None else trials:
            out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
        return out
