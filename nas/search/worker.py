"""The worker loop of a search: ask, sample, skip duplicates, evaluate, tell; until the study holds `n_trials`.

Several workers (processes, hosts) may run this loop on one study. They agree through the storage alone:
- a trial is only started while the study needs one (complete + running < n_trials) and only completed while it
  still does (checked under the study lock), so a study never holds more than `n_trials` complete trials;
- an architecture that is complete or running in another trial is not evaluated again: that trial is told
  PRUNED (marked `duplicate_of`) and the worker asks again (each trial number has its own sampler seed);
- a worker whose remaining trials run elsewhere waits for them, and picks up their retry if their worker died;
- a lost database connection is retried with a bound (`storage.retry_s`), see nas.search.storage; a trial that
  another worker failed meanwhile (no heartbeat for the grace period) is left to its retry.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search import optuna_compat
from nas.search.liveness import worker_id
from nas.search.signals import SIGNALS, interruptible
from nas.search.study import Session

__all__ = ["Worker", "interruptible"]

log = logging.getLogger("nas.search")
Callback = Callable[[optuna.Study, FrozenTrial], None]


class _Heartbeat:
    """Records the running trial's heartbeat every interval; a missed beat (database away) is retried next time."""

    def __init__(self, study: optuna.Study, trial: optuna.trial.Trial, interval_s: float):
        self._stop = threading.Event()
        self._beat = lambda: optuna_compat.record_heartbeat(study, trial)
        with contextlib.suppress(Exception):
            self._beat()
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), daemon=True, name="nas-heartbeat")
        self._thread.start()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            with contextlib.suppress(Exception):  # lost connection: the next beat tries again
                self._beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    """Runs trials of `session`'s study until it holds `n_trials` complete ones (or `timeout_s` passes)."""

    def __init__(
        self, session: Session, callbacks: Sequence[Callback] = (), poll_s: float = 1.0, max_redraws: int = 50
    ):
        self.session, self.callbacks, self.poll_s, self.max_redraws = session, list(callbacks), poll_s, max_redraws
        self.n_trials = session.cfg.n_trials
        hb = session.cfg.storage.heartbeat_interval_s
        self._heartbeat_s = hb if hb and optuna_compat.heartbeat_enabled(session.study) else None
        self.duplicates = 0
        self._outages = session.backend.outages

    def run(self, timeout_s: float | None = None) -> None:
        s = self.session
        t_end = None if timeout_s is None else time.monotonic() + timeout_s
        redraws, waiting = 0, False
        while t_end is None or time.monotonic() < t_end:
            s.db(s.recover)
            c = s.db(s.counts)
            done, running = c.get("complete", 0), c.get("running", 0)
            if done >= self.n_trials:
                return
            if done + running >= self.n_trials:
                if not waiting:
                    log.info("waiting for %d running trial(s) of other workers to finish", running)
                    waiting = True
                time.sleep(self.poll_s)
                continue
            waiting = False
            outcome = self._one_trial(redraws >= self.max_redraws)
            redraws = redraws + 1 if outcome == "duplicate" else 0
            if redraws == self.max_redraws:
                log.warning(
                    "the sampler proposed %d architectures in a row that the study already has (a small or "
                    "exhausted space?): evaluating the next one anyway",
                    redraws,
                )

    def _ask(self) -> optuna.trial.Trial:
        study = self.session.study
        trial = optuna_compat.ask(study)
        trial.set_user_attr("worker", worker_id())
        retry_of = optuna_compat.trial_user_attrs(study, trial).get("retry_of")
        if retry_of is not None:
            # A retry's parameters are fixed, so its sampler never runs: it takes over the sampler's bookkeeping
            # of the trial it re-runs (NSGA-II's generation), as that trial would have had on completion.
            optuna_compat.copy_sampler_state(study, trial, retry_of)
        return trial

    def _surplus(self, trial: optuna.trial.Trial) -> bool:
        """True when the study had enough trials before this one (workers asked at the same time: the higher
        trial number yields)."""
        trials = self.session.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        ahead = sum(t.state == TrialState.COMPLETE or t.number < trial.number for t in trials)
        return ahead + 1 > self.n_trials

    def _fail(self, trial: optuna.trial.Trial, attr: str, value: Any, state: TrialState = TrialState.FAIL) -> None:
        s = self.session

        def mark() -> None:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                trial.set_user_attr(attr, value)
            s.study.tell(trial, state=state, skip_if_finished=True)

        with SIGNALS.atomic():
            s.db(mark)

    def _one_trial(self, accept_duplicate: bool) -> str:
        s = self.session
        with SIGNALS.atomic():
            trial = s.db(self._ask)
        if s.backend.outages != self._outages:  # a trial asked during the outage may be left RUNNING: fail it
            self._outages = s.backend.outages
            s.db(s.fail_own_running, optuna_compat.trial_id(trial))
        if s.db(self._surplus, trial):
            self._fail(trial, "surplus", True)
            return "surplus"
        heartbeat = _Heartbeat(s.study, trial, self._heartbeat_s) if self._heartbeat_s else None
        try:
            arch = s.db(s.sample, trial)
            digest = arch.digest()
            s.db(trial.set_user_attr, "digest", digest)
            dup = s.db(s.duplicate_of, digest, trial.number)
            if dup is not None and not accept_duplicate:
                self.duplicates += 1
                self._fail(trial, "duplicate_of", dup, TrialState.PRUNED)
                return "duplicate"
            try:
                ev = s.evaluator.evaluate(arch)
            except KeyboardInterrupt:
                self._fail(trial, "interrupted", True)
                raise
            except Exception as e:
                self._fail(trial, "error", f"{type(e).__name__}: {e}")
                raise
            s.db(s.store, trial, arch, ev)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker failed it meanwhile: its heartbeat could not reach the database for the grace period (an
            # outage), so the trial was declared dead, and `recover` enqueues its retry, which runs it again.
            log.warning(
                "trial %d was failed by another worker while this one ran it (no heartbeat reached the database for "
                "storage.grace_period_s=%s s); its retry runs it again",
                trial.number,
                s.cfg.storage.grace_period_s,
            )
            return "lost"
        finally:
            if heartbeat is not None:
                heartbeat.stop()
        with SIGNALS.atomic():
            frozen = s.db(self._tell, trial, ev.objective_values(s.objectives))
        if frozen is not None and frozen.state == TrialState.COMPLETE:
            for cb in self.callbacks:
                cb(s.study, frozen)
            return "complete"
        return "surplus"

    def _tell(self, trial: optuna.trial.Trial, values: list[float]) -> FrozenTrial | None:
        """Complete `trial` unless the study already holds `n_trials` complete ones (then it is marked surplus)."""
        s = self.session
        with s.lock("tell"):
            if s.n_complete() >= self.n_trials:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    trial.set_user_attr("surplus", True)
                return s.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # skip_if_finished's warning: another worker failed it meanwhile
                return s.study.tell(trial, values, skip_if_finished=True)
