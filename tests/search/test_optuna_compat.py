"""Contract of nas.search.optuna_compat against the installed Optuna: every private piece of Optuna the search uses
still does what the search relies on. pyproject.toml allows only the Optuna versions this file has passed; widen
the range only after running it on the new version."""

from __future__ import annotations

import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from nas.search import optuna_compat


@pytest.fixture
def rdb(tmp_path):
    """A heartbeat-enabled sqlite storage, as nas.search.storage makes one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1, grace_period=1)


def _study(storage=None, sampler=None, directions=("minimize",)) -> optuna.Study:
    return optuna.create_study(storage=storage, sampler=sampler, directions=list(directions))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_trial_id_is_the_id_storage_methods_take(kind, rdb):
    """Session fails trials through storage methods, which take the trial id, not the number."""
    storage = optuna.storages.InMemoryStorage() if kind == "memory" else rdb
    study = _study(storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    running = study.ask()
    for t in [*study.get_trials(deepcopy=False), running]:
        assert storage.get_trial(optuna_compat.trial_id(t)).number == t.number


def test_heartbeat_is_recorded_per_trial(rdb):
    """The worker beats for the trial it runs (Study.optimize's heartbeat thread is not there with ask/tell):
    a beaten trial survives optuna.storages.fail_stale_trials, one without a beat for the grace period does not."""
    study = _study(rdb)
    assert optuna_compat.heartbeat_enabled(study)
    assert not optuna_compat.heartbeat_enabled(_study(optuna.storages.InMemoryStorage()))
    stale, alive = optuna_compat.ask(study), optuna_compat.ask(study)
    optuna_compat.record_heartbeat(study, stale)
    time.sleep(2.2)  # more than grace_period=1 s at the database clock's resolution (sqlite: whole seconds)
    optuna_compat.record_heartbeat(study, alive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {stale.number: TrialState.FAIL, alive.number: TrialState.RUNNING}


def test_ask_silences_only_the_heartbeat_warning(rdb):
    """Optuna warns on every ask with a heartbeat storage; the filter matches its message text."""
    study = _study(rdb)
    with pytest.warns(UserWarning, match=optuna_compat._HEARTBEAT_WARNING):
        study.ask()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optuna_compat.ask(study)
    assert [str(w.message) for w in caught] == []


def test_trial_user_attrs_include_the_enqueued_ones():
    """A retry is recognised by the `retry_of` user attribute it was enqueued with."""
    study = _study()
    study.enqueue_trial({"x": 0.5}, user_attrs={"retry_of": 7})
    trial = optuna_compat.ask(study)
    assert optuna_compat.trial_user_attrs(study, trial)["retry_of"] == 7


def test_a_sampler_sets_user_attrs_of_the_trial_it_starts():
    """TierDirector writes `tier_target` in the sampler's before_trial, where it holds a FrozenTrial; the
    running Trial and the stored trial both see it."""

    class Marking(optuna.samplers.RandomSampler):
        def before_trial(self, study, trial):
            super().before_trial(study, trial)
            optuna_compat.set_trial_user_attr(study, trial, "tier_target", "S")

    study = _study(sampler=Marking(seed=0))
    trial = study.ask()
    assert trial.user_attrs["tier_target"] == "S"
    study.tell(trial, 1.0)
    assert study.trials[0].user_attrs["tier_target"] == "S"


def test_a_retry_takes_over_nsga2s_generation():
    """A retry's parameters are fixed, so NSGA-II's sample_relative never runs for it and it gets no generation;
    copy_sampler_state gives it the one of the trial it re-runs, and keeps its own fixed_params and constraints."""
    sampler = optuna.samplers.NSGAIISampler(population_size=2, seed=0)
    study = _study(sampler=sampler, directions=("minimize", "minimize"))

    def objective(t: optuna.Trial) -> tuple[float, float]:
        x = t.suggest_float("x", 0, 1)
        t.set_constraint("cost_over", x - 0.5)  # as Session.store does
        return x, 1 - x

    study.enqueue_trial({"x": 0.25})
    study.optimize(objective, n_trials=5)
    key = "NSGAIISampler:generation"
    assert key not in study.trials[0].system_attrs  # an enqueued trial (fixed parameters) gets no generation
    first = study.trials[-1]
    assert first.system_attrs[key] == 1 and "constraints:cost_over" in first.system_attrs

    study.enqueue_trial(first.params, user_attrs={"retry_of": first.number})
    retry = optuna_compat.ask(study)
    own = study.get_trials(deepcopy=False)[retry.number].system_attrs
    assert key not in own and "fixed_params" in own  # why the copy is needed, and what stays the retry's own
    copied = optuna_compat.copy_sampler_state(study, retry, first.number)
    assert copied[key] == first.system_attrs[key]
    assert "fixed_params" not in copied and not any(k.startswith("constraints") for k in copied)
    study.tell(retry, [0.25, 0.75])
    assert study.trials[retry.number].system_attrs[key] == first.system_attrs[key]
