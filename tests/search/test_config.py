"""The Hydra configs compose against the structured schema: every group option, typos fail, overlays apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

import nas.search.__main__ as app
from nas.errors import ConfigError
from nas.options import from_dict
from nas.search import ProxyConfig, SearchConfig, StrategyConfig
from nas.search.config import LoggerConfig, StorageConfig, group_option, group_options, register_configs

CONF = Path(app.__file__).resolve().parent.parent / "conf"
GROUPS = ("proxy", "strategy", "data", "storage", "logger")


@pytest.fixture
def compose_cfg():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield lambda *overrides: compose("config", overrides=list(overrides), return_hydra_config=False)
    GlobalHydra.instance().clear()


def test_default_config_is_a_search_config(compose_cfg):
    cfg = compose_cfg("+space=yolo_nas")
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, SearchConfig)
    assert obj.space.name == "yolo_nas" and obj.strategy.name == "nsga2" and obj.storage.kind == "sqlite"
    assert obj.name == "yolo_nas-nsga2-seed0" == obj.study_name
    assert set(obj.tiers) == {"yolo_nas_s", "yolo_nas_m", "yolo_nas_l"}
    assert obj.hardware["name"] == "cpu_ort"  # the shipped CPU table is the default target
    assert OmegaConf.to_object(compose_cfg("+space=yolo_nas", "~hardware")).hardware is None


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(compose_cfg, group):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        obj = OmegaConf.to_object(compose_cfg("+space=yolo_nas", f"{group}={option}"))
        assert isinstance(obj, SearchConfig), option


@pytest.mark.parametrize(("group", "cls"), [("proxy", ProxyConfig), ("strategy", StrategyConfig)])
def test_group_options_read_without_hydra_equal_the_composed_ones(compose_cfg, group, cls):
    for option in group_options(group):
        composed = getattr(OmegaConf.to_object(compose_cfg("+space=yolo_nas", f"{group}={option}")), group)
        assert group_option(group, option, cls) == composed, option
        assert composed.name == option  # the name says which option it is
    with pytest.raises(ConfigError, match=f"unknown {group} 'nope'; available: "):
        group_option(group, "nope", cls)


def test_experiment_overlays_compose(compose_cfg):
    obj = OmegaConf.to_object(compose_cfg("+space=yolo_nas", "+experiment=smoke", "strategy=tpe", "seed=2"))
    assert obj.n_trials == 12 and obj.proxy.imgsz == 64 and obj.name == "yolo_nas-smoke-tpe-seed2"


@pytest.mark.parametrize("override", ["proxy.inpt_hw=64", "n_trails=3", "strategy.population=4", "seed=abc"])
def test_typos_fail_at_compose_time(compose_cfg, override):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        OmegaConf.to_object(compose_cfg("+space=yolo_nas", override))


def test_unknown_group_option_lists_the_choices(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="nsga2"):
        compose_cfg("+space=yolo_nas", "strategy=cmaes")


def test_without_a_space_the_name_is_missing(compose_cfg):
    cfg = compose_cfg()
    assert OmegaConf.is_missing(cfg.space, "name")
    assert app.available_space_options() == ["yolo_nas"]


def test_space_by_path_names_the_study_by_its_stem(compose_cfg, tiny_space_path):
    obj = OmegaConf.to_object(compose_cfg("+space=yolo_nas", f"space.name={tiny_space_path}", "strategy=random"))
    assert obj.name == "tiny_space-random-seed0"


def test_hardware_group_sets_the_cost_resolution(compose_cfg, tiny_space):
    from nas.search.objectives import Evaluator

    obj = OmegaConf.to_object(compose_cfg("+space=yolo_nas", "hardware=cpu_ort", "hardware.input_hw=[320,320]"))
    assert isinstance(obj.hardware, dict) and obj.hardware["name"] == "cpu_ort"
    ev = Evaluator(obj, tiny_space)
    assert ev.hardware == "cpu_ort" and ev.cost_imgsz == 320
    assert ev.fingerprint()["hardware"]["input_hw"] == [320, 320]  # overrides are part of the study's identity


def test_slurm_overlay_selects_the_nas_sweeper_and_submitit():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+space=yolo_nas", "+experiment=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)  # fmt: skip
    GlobalHydra.instance().clear()
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.nas_sweeper.nas_sweeper.NasSweeper"
    assert cfg.hydra.sweeper.n_jobs == 32
    assert "SlurmLauncher" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.partition == "gpu"


BAD_VALUES = [
    ("storage.kind=mysql", r"unknown storage 'mysql'; available storages: sqlite, postgres, journal, memory"),
    ("storage.retry_s=-1", r"storage\.retry_s=-1\.0: must be >= 0"),
    ("storage.heartbeat_interval_s=0", r"storage\.heartbeat_interval_s=0: must be >= 1 or null"),
    ("storage.grace_period_s=5", r"storage\.grace_period_s=5: must be larger than storage\.heartbeat_interval_s=10"),
    ("strategy.name=cmaes", r"unknown strategy 'cmaes'; available strategies: nsga2, tpe, random, gp"),
    ("strategy.population_size=1", r"strategy\.population_size=1: NSGA-II needs at least 2"),
    ("logger.name=mlflow", r"unknown logger 'mlflow'; available loggers: none, wandb"),
    ("logger.mode=loud", r"logger\.mode='loud'; choose offline, online or disabled"),
    ("n_trials=-1", r"n_trials=-1: must be >= 0"),
    ("threads=0", r"threads=0: must be >= 1"),
    ("max_int8_drop=-1", r"max_int8_drop=-1\.0: must be a non-negative number"),
    ("max_cost=0", r"max_cost=0\.0: must be a positive cost"),
    ("tier_start=uniform", r"tier_start='uniform'; choose one of stratified, none"),
    ("tier_target=window", r"tier_target='window'; choose one of mutate, constraint, none"),
    ("tier_target_every=0", r"tier_target_every=0: a whole number >= 1"),
    ("tier_start_trials=-1", r"tier_start_trials=-1: a number of trials >= 0"),
]


@pytest.mark.parametrize(("override", "match"), BAD_VALUES)
def test_a_bad_value_fails_where_the_config_is_built_naming_its_key(compose_cfg, override, match):
    """Each group's dataclass checks its values (nas.search.config): the Hydra config fails when it becomes a
    SearchConfig, before any run directory or study exists, and so does the same mapping without Hydra."""
    cfg = compose_cfg("+space=yolo_nas", override)
    with pytest.raises(ConfigError, match=match):
        OmegaConf.to_object(cfg)
    key, value = override.split("=")
    tree: dict = {"space": {"name": "yolo_nas"}}
    *groups, leaf = key.split(".")
    node = tree
    for g in groups:
        node = node.setdefault(g, {})
    node[leaf] = yaml.safe_load(value)
    with pytest.raises(ConfigError, match=match):
        from_dict(SearchConfig, tree)


def test_the_defaults_and_every_group_option_pass_their_checks():
    SearchConfig()
    for group, cls in (("strategy", StrategyConfig), ("storage", StorageConfig), ("logger", LoggerConfig)):
        for option in group_options(group):
            group_option(group, option, cls)
    assert StorageConfig(heartbeat_interval_s=None, grace_period_s=None).grace_period_s is None  # heartbeat off
