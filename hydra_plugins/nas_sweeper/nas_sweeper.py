"""`hydra/sweeper=nas`: the search study lives with the sweeper; each candidate is one Hydra job.

    python -m nas.search -m +space=yolo_nas hydra/sweeper=nas [hydra.sweeper.n_jobs=8] [hydra/launcher=...]

The sweeper samples candidates from the YAML search space (nas.search.sweep.CandidateSweep, Optuna 5),
launches `candidate=<yaml>` jobs through the configured launcher (basic, joblib, submitit local/SLURM),
tells the study the objectives the jobs return, and finally writes the search outputs into the sweep dir.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class NasSweeper(Sweeper):
    def __init__(self, n_jobs: int = 2, max_failures: int = 0):
        self.n_jobs, self.max_failures = n_jobs, max_failures
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _job_config(self, arguments: list[str]) -> Any:
        """The SearchConfig that every job sees (the sweep's config with the command-line overrides)."""
        from nas.search.__main__ import to_search_config

        assert self.config is not None and self.hydra_context is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(arguments))
        with open_dict(cfg):
            del cfg["hydra"]
        if OmegaConf.is_missing(cfg.space, "name"):
            from nas.search.__main__ import available_space_options

            raise ValueError(
                f"no search space selected: add +space=NAME (available: {', '.join(available_space_options())})"
            )
        return to_search_config(cfg)

    def sweep(self, arguments: list[str]) -> Any:
        from nas.search.sweep import CandidateSweep, JobOutcome

        parsed = OverridesParser.create().parse_overrides(arguments)
        swept = [o.input_line for o in parsed if o.is_sweep_override()]
        if swept:
            raise ValueError(
                f"hydra/sweeper=nas searches architectures; it does not sweep {swept}. "
                "Use the basic sweeper for grids of settings (e.g. strategy=nsga2,tpe seed=0,1,2)."
            )
        assert self.config is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        driver = CandidateSweep(self._job_config(arguments), sweep_dir, self.n_jobs, self.max_failures)

        def launch(paths: Sequence[Path]) -> list[JobOutcome]:
            overrides = [(*arguments, f"candidate={p.resolve()}") for p in paths]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            out = []
            for r in returns:
                try:
                    value = r.return_value  # raises the job's exception when it failed
                except Exception as err:
                    out.append(JobOutcome(None, "".join(traceback.format_exception_only(type(err), err)).strip()))
                    continue
                out.append(JobOutcome(value if r.status == JobStatus.COMPLETED else None, f"job status {r.status}"))
            return out

        result = driver.run(launch)
        log.info(
            "sweep finished: %d trials, Pareto front %d, outputs in %s",
            len(result.trials),
            len(result.pareto),
            sweep_dir,
        )
        return result.report
