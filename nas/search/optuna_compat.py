"""Everything nas.search needs of Optuna that Optuna does not offer publicly, in one place.

Each function names the private piece it uses and why the public API does not do. The contract test
(tests/search/test_optuna_compat.py) runs every one against the installed Optuna; pyproject.toml allows only the
versions it has passed, so an Optuna release that moves one of them fails that test, not a search.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial

__all__ = [
    "ask",
    "copy_sampler_state",
    "heartbeat_enabled",
    "record_heartbeat",
    "set_trial_user_attr",
    "trial_id",
    "trial_user_attrs",
]

# Optuna warns on every `Study.ask` with a heartbeat storage, since only `Study.optimize` beats for a trial; the
# worker beats itself (record_heartbeat), so the warning is noise here.
_HEARTBEAT_WARNING = "Heartbeat of storage is supposed to be used"


def trial_id(trial: Trial | FrozenTrial) -> int:
    """The storage's id of `trial`. Storage methods take this id, not the trial number, and neither Trial nor
    FrozenTrial exposes it publicly (`_trial_id`)."""
    return trial._trial_id


def _storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The study's storage (`Study._storage`): the public API has no way to write a trial's attributes from
    outside its Trial object, to beat for a trial, or to read another trial's system attributes."""
    return study._storage


def ask(study: optuna.Study) -> Trial:
    """`study.ask()` without the heartbeat warning (the worker records the heartbeat itself)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_HEARTBEAT_WARNING)
        return study.ask()


def heartbeat_enabled(study: optuna.Study) -> bool:
    """True when the study's storage records heartbeats (an RDBStorage made with a `heartbeat_interval`).
    Optuna's own check (`optuna.storages._heartbeat.is_heartbeat_enabled`) is private."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(_storage(study))


def record_heartbeat(study: optuna.Study, trial: Trial | FrozenTrial) -> None:
    """Record a heartbeat of the running `trial`: `Study.optimize` does it in a thread of its own, which a worker
    that asks and tells itself (`Study.ask`/`tell`) does not get."""
    _storage(study).record_heartbeat(trial_id(trial))  # type: ignore[attr-defined]


def trial_user_attrs(study: optuna.Study, trial: Trial) -> dict[str, Any]:
    """The user attributes of `trial` as stored, including those `enqueue_trial(user_attrs=...)` gave it
    (`Trial.user_attrs` reads them too, but through a cached frozen copy that may be older)."""
    return _storage(study).get_trial(trial_id(trial)).user_attrs


def set_trial_user_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Set a user attribute of a running trial that a sampler holds as a FrozenTrial (in `before_trial`), which
    has no public setter; the frozen copy is updated too, as the running Trial reads its attributes from it."""
    _storage(study).set_trial_user_attr(trial_id(trial), key, value)
    trial.user_attrs[key] = value


def copy_sampler_state(study: optuna.Study, trial: Trial, number: int) -> dict[str, Any]:
    """Give running `trial` the sampler's bookkeeping (system attributes, e.g. NSGA-II's generation) of trial
    `number` that it re-runs. A retry's parameters are fixed, so its sampler never runs and never writes them;
    without them NSGA-II would count the retry in no generation. Not copied: what is the retry's own, its enqueued
    parameters (`fixed_params`) and its constraint values (`constraints`, set when it is told). Returns the copy."""
    storage = _storage(study)
    original = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    mine = storage.get_trial_system_attrs(trial_id(trial))
    copied = {
        k: v
        for k, v in storage.get_trial_system_attrs(original).items()
        if k not in mine and k != "fixed_params" and not k.startswith("constraints")
    }
    for k, v in copied.items():
        storage.set_trial_system_attr(trial_id(trial), k, v)
    return copied
