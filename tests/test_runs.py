"""Run configuration: one schema (RunConfig) that train, config.json and --resume all read."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import pytest
from typer.testing import CliRunner

from rehabgen.cli import app
from rehabgen.config import RunConfig
from rehabgen.models import ModelError
from rehabgen.preprocess import PreprocessConfig
from rehabgen.runs import train_run

TINY = {"d_model": 16, "n_layers": 1, "ff": 32, "n_heads": 2, "batch_size": 4}


def test_preprocess_config_round_trips_through_json():
    p = PreprocessConfig(fps=7.5, buckets=(16, 32), smooth=None)
    back = PreprocessConfig.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back == p and back.buckets == (16, 32)
    with pytest.raises(ValueError, match=r"unknown preprocessing setting\(s\) \['fpss'\]"):
        PreprocessConfig.from_dict({"fpss": 3})


def test_resume_restores_every_run_config_field(kimore_tiny, tmp_path):
    default = RunConfig()
    cfg = RunConfig(data=str(kimore_tiny), model="diffusion", steps=4, seed=3, max_len=24, test_fraction=0.5,
                    max_minutes=30.0, ckpt_every=2, preprocess=replace(default.preprocess, fps=6.0, smooth=None),
                    hparams=dict(TINY), fold=1, folds=2)
    same = [f.name for f in fields(RunConfig) if getattr(cfg, f.name) == getattr(default, f.name)]
    # every other field differs from its default, so a lost one shows (log_with: test_tracking)
    assert same == ["model", "log_with"]
    out = tmp_path / "run"
    first = train_run(cfg, out, progress=False)
    saved = RunConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert saved.hparams == first["model"].hparams and saved.hparams["d_model"] == 16
    assert replace(saved, data=cfg.data, hparams=cfg.hparams) == cfg
    # resume from a bare RunConfig: everything comes from config.json, the new target wins
    again = train_run(RunConfig(), out, resume=True, progress=False, steps=6)
    assert RunConfig.from_dict(again["config"]) == replace(saved, steps=6)
    assert again["summary"]["steps"] == 6 and again["model"].spec.preprocess == cfg.preprocess
    with pytest.raises(ModelError, match="seed can't change when a run is resumed"):
        train_run(RunConfig(), out, resume=True, progress=False, seed=1)


def test_cli_resume_refuses_new_settings_and_shows_defaults(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--out", str(tmp_path), "--resume", "--seed", "2", "--max-len", "30"])
    assert r.exit_code == 2 and "max_len, seed can't change" in r.output
    r = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert "[default: 3000" in r.output and "[default: 80]" in r.output and "[default: 5.0]" in r.output
