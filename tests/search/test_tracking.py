"""logger=wandb logs every trial and the final Pareto table and plot, offline, without any prompt."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from nas.errors import ConfigError
from nas.search import LoggerConfig, StorageConfig, run_search


def test_wandb_offline_run_files(tiny_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc, no cached login
    cfg = dataclasses.replace(
        tiny_cfg, storage=StorageConfig(kind="memory"), n_trials=4, logger=LoggerConfig(name="wandb", mode="offline")
    )
    res = run_search(cfg, tmp_path)  # the tracker's close() is run.finish()
    import wandb

    # The offline run file is written by wandb's service process, which may still be flushing it when
    # run.finish() returns; teardown() returns once that process has exited, i.e. the file is complete.
    wandb.teardown()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run = runs[0]
    # the offline run log is protobuf records: keys and string values appear verbatim
    log = next(run.glob("run-*.wandb")).read_bytes()
    assert log.count(b"objective/proxy_score") >= 4, "one history row per trial"
    for key in (b"param/backbone.stem.out_channels", b"proxy/synflow", b"pareto_size", b"selected/tiny_s/proxy_score"):
        assert key in log, key
    assert cfg.study_name.encode() in log, "the search config is the run config"
    table = json.loads(next((run / "files" / "media" / "table").glob("pareto_*.table.json")).read_text())
    assert len(table["data"]) == len(res.pareto) and "proxy_score" in table["columns"]
    assert [row[0] for row in table["data"]] == [r.number for r in res.pareto]
    assert list((run / "files" / "media" / "images").glob("pareto_plot_*.png"))
    assert os.environ.get("WANDB_MODE") is None, "the tracker passes the mode; it does not set environment variables"


def test_wandb_online_without_credentials_fails_before_any_prompt(tiny_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = dataclasses.replace(
        tiny_cfg, storage=StorageConfig(kind="memory"), n_trials=1, logger=LoggerConfig(name="wandb", mode="online")
    )
    with pytest.raises(ConfigError, match=r"logger\.mode=offline"):
        run_search(cfg, tmp_path)
