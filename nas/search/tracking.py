"""Experiment tracking: `none`, or `wandb` (offline by default; never prompts, needs no network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.search.config import LOGGERS, LoggerConfig

__all__ = ["LOGGERS", "NullTracker", "Tracker", "WandbTracker", "make_tracker"]


class Tracker:
    """What the search tells a tracker: the config, each finished trial, and the final summary."""

    def log_trial(self, number: int, params: dict[str, Any], values: dict[str, float], extra: dict[str, Any]) -> None:
        pass

    def log_summary(self, report: dict[str, Any], pareto_rows: list[dict[str, Any]], plot: Path | None) -> None:
        pass

    def close(self) -> None:
        pass


class NullTracker(Tracker):
    """Tracks nothing (`logger=none`)."""


class WandbTracker(Tracker):
    """One wandb run per search: a row per trial, then the Pareto table, the plot and the report summary."""

    def __init__(self, cfg: LoggerConfig, out_dir: Path, config: dict[str, Any], name: str):
        if cfg.mode == "online" and not (os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").exists()):
            raise ConfigError(
                "logger.mode=online needs wandb credentials (WANDB_API_KEY or `wandb login`); "
                "use logger.mode=offline and `wandb sync` later"
            )
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            group=cfg.group,
            tags=list(cfg.tags),
            name=name,
            config=config,
            dir=str(out_dir),
            mode=cfg.mode,
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log_trial(self, number: int, params: dict[str, Any], values: dict[str, float], extra: dict[str, Any]) -> None:
        row = {f"objective/{k}": v for k, v in values.items()}
        row.update({f"proxy/{k}": v for k, v in extra.get("proxies", {}).items()})
        row.update({f"param/{k}": v for k, v in params.items()})
        row.update({"trial": number, "feasible": int(bool(extra.get("feasible", True)))})
        self.run.log(row)

    def log_summary(self, report: dict[str, Any], pareto_rows: list[dict[str, Any]], plot: Path | None) -> None:
        if pareto_rows:
            cols = list(pareto_rows[0])
            self.run.log({"pareto": self._wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in pareto_rows])})
        if plot is not None and plot.exists():
            self.run.log({"pareto_plot": self._wandb.Image(str(plot))})
        for tier, t in report.get("tiers", {}).items():
            sel = t.get("selected")
            if sel:
                for k, v in sel["values"].items():
                    self.run.summary[f"selected/{tier}/{k}"] = v
        self.run.summary["pareto_size"] = report.get("pareto_size")
        self.run.summary["trials_complete"] = report.get("trials", {}).get("complete")

    def close(self) -> None:
        self.run.finish()


def make_tracker(cfg: LoggerConfig, out_dir: str | os.PathLike, config: dict[str, Any], name: str) -> Tracker:
    """The tracker of `cfg.name`."""
    if cfg.name == "none":
        return NullTracker()
    if cfg.name == "wandb":
        return WandbTracker(cfg, Path(out_dir), config, name)
    raise ConfigError(f"unknown logger {cfg.name!r}; available loggers: {', '.join(LOGGERS)}")
