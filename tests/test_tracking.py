"""Experiment tracking (`--log-with`): TensorBoard event files that tensorboard's own reader
parses, the step axis across a resume, the csv default unchanged, and one-line errors."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys

import pytest
from typer.testing import CliRunner

from rehabgen.cli import app
from rehabgen.config import ConfigError, RunConfig
from rehabgen.tracking import eval_scalars, log_evaluation

from conftest import write_subject

runner = CliRunner()
TINY = ["--set", "d_model=16", "--set", "n_layers=1", "--set", "ff=32", "--set", "n_heads=2", "--batch-size", "4",
        "--max-len", "24", "--fps", "6", "--test-fraction", "0", "--threads", "1"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _no(monkeypatch, *modules):
    """Make packages unimportable, as if not installed."""
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


def _csv(run_dir) -> list[dict]:
    with (run_dir / "log.csv").open() as f:
        return list(csv.DictReader(f))


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in a folder of event files, read by tensorboard itself."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(folder))
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("trk") / "kimore"
    write_subject(root, "Expert", "E_ID1", seed=1)
    write_subject(root, "Stroke", "S_ID1", seed=2)
    return root


@pytest.fixture(scope="module")
def tb_run(data, tmp_path_factory):
    """A run trained 25 steps with --log-with tensorboard, then resumed to 40; in between, a
    point logged past the checkpoint (what a hard-killed session leaves behind)."""
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("tb") / "run"
    r = run("train", "--data", data, "--out", out, "--steps", 25, "--ckpt-every", 10, "--log-with", "tensorboard", *TINY)
    assert r.exit_code == 0, r.output
    assert f"view with: tensorboard --logdir {out / 'tracking'}" in r.output
    first = _scalars(out / "tracking")
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(out / "tracking"))
    w.add_scalar("train/loss", 999.0, 30)
    w.close()
    r = run("train", "--out", out, "--resume", "--steps", 40, "--threads", 1)
    assert r.exit_code == 0, r.output
    return out, first


def test_tensorboard_event_files_hold_the_logged_scalars(tb_run):
    out, first = tb_run
    assert json.loads((out / "config.json").read_text())["log_with"] == "tensorboard"
    rows = [r for r in _csv(out) if int(r["step"]) <= 25]
    cols = [k for k in rows[0] if k not in ("step", "seconds")]
    assert {"loss", "loss_ema", "lr"} <= set(cols)
    assert set(first) == {f"train/{k}" for k in cols} | {"train/steps_per_s"}  # losses, lr, steps/s
    for k in cols:
        assert [s for s, _ in first[f"train/{k}"]] == [10, 20, 25]  # every 10 steps and the last one
        for (_, v), row in zip(first[f"train/{k}"], rows):
            assert v == pytest.approx(float(row[k]), rel=1e-5, abs=1e-9), k  # the same numbers as log.csv
    assert all(0 < v < 1e5 for _, v in first["train/steps_per_s"])


def test_resume_goes_on_along_the_same_step_axis(tb_run):
    out, _ = tb_run
    sc, rows = _scalars(out / "tracking"), _csv(out)
    assert [int(r["step"]) for r in rows] == [10, 20, 25, 30, 40]
    for tag in ("train/loss", "train/lr", "train/steps_per_s"):
        assert [s for s, _ in sc[tag]] == [10, 20, 25, 30, 40], tag  # no doubles, no gap
    # the point a killed session left past the checkpoint was purged; the resumed run's is there
    assert [v for _, v in sc["train/loss"]] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-5)
    assert len(list((out / "tracking").glob("events.out.tfevents.*"))) == 3  # one file per session, same folder


def test_evaluation_is_logged_at_the_runs_last_step(tb_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tb_run[0], out)
    nan = float("nan")
    summary = {"model_step": 40,
               "metrics": {"fid": {"generated": {"mean": 1.5, "std": 0.1}, "real_reference": {"mean": 0.25}},
                           "acpd": {"generated": {"mean": nan}, "real_reference": {"mean": 0.4}}},
               "evaluator": {"accuracy": 1.0, "score_mae": 3.5, "n": 20},
               "downstream": {"conditions": {"real": {"held_out_test": {"rmse": {"mean": 10.0}, "mae": {"mean": 8.0}}},
                                             "tstr": {"held_out_test": {"rmse": {"mean": 12.5}, "mae": {"mean": nan}}}}}}
    logged = log_evaluation("tensorboard", out, summary)
    assert logged == eval_scalars(summary) and all(math.isfinite(v) for v in logged.values())
    sc = _scalars(out / "tracking")
    assert sc["eval/fid"] == [(40, 1.5)] and sc["eval/fid_real"] == [(40, 0.25)]
    assert sc["eval/acpd_real"] == [(40, pytest.approx(0.4))] and "eval/acpd" not in sc  # undefined: left out
    assert sc["eval/evaluator_accuracy"] == [(40, 1.0)] and "eval/evaluator_n" not in sc
    assert sc["eval/downstream_real_rmse"] == [(40, 10.0)] and sc["eval/downstream_tstr_rmse"] == [(40, 12.5)]
    assert "eval/downstream_tstr_mae" not in sc
    assert [s for s, _ in sc["train/loss"]] == [10, 20, 25, 30, 40]  # the training curves stay
    assert log_evaluation("csv", out, summary) == {}  # csv: metrics.json holds it all


def test_resume_without_the_tracker_package_is_one_line(tb_run, monkeypatch):
    out, _ = tb_run
    before = (out / "checkpoint" / "trainer.json").read_text()
    _no(monkeypatch, "tensorboard", "tensorboardX")
    r = run("train", "--out", out, "--resume", "--steps", 50, "--threads", 1)
    assert r.exit_code == 2
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert errors == r.output.strip().splitlines()[-1:] == ["error: --log-with tensorboard: the tensorboard package is "
                                                            "not installed; pip install 'rehabgen[tensorboard]'"]
    assert (out / "checkpoint" / "trainer.json").read_text() == before


def test_csv_default_is_unchanged_and_needs_no_tracker(data, tmp_path, monkeypatch):
    _no(monkeypatch, "tensorboard", "tensorboardX", "wandb")
    out = tmp_path / "run"
    r = run("train", "--data", data, "--out", out, "--steps", 12, *TINY)
    assert r.exit_code == 0, r.output
    assert "tensorboard" not in r.output and "wandb" not in r.output
    assert json.loads((out / "config.json").read_text())["log_with"] == "csv"
    assert not (out / "tracking").exists()
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["step", "loss_ema", "loss"] and header[-2:] == ["lr", "seconds"]
    assert "steps_per_s" not in header and [int(r["step"]) for r in _csv(out)] == [10, 12]


def test_unknown_tracker_is_one_line(tmp_path, monkeypatch):
    msg = "error: --log-with must be one of csv, tensorboard, wandb, got 'tensorbord'"
    r = run("train", "--data", tmp_path, "--out", tmp_path / "run", "--log-with", "tensorbord")
    assert r.exit_code == 2 and r.output.strip().splitlines() == [msg] and not (tmp_path / "run").exists()
    r = run("evaluate", tmp_path / "run", "--data", tmp_path, "--out", tmp_path / "rep", "--log-with", "tensorbord")
    assert r.exit_code == 2 and r.output.strip().splitlines() == [msg] and not (tmp_path / "rep").exists()
    with pytest.raises(ConfigError, match="--log-with must be one of csv, tensorboard, wandb, got 'mlflow'"):
        RunConfig(log_with="mlflow").check()


def test_missing_tracker_package_is_one_line(tmp_path, monkeypatch):
    _no(monkeypatch, "tensorboard", "tensorboardX", "wandb")
    for name, pip in (("tensorboard", "pip install 'rehabgen[tensorboard]'"), ("wandb", "pip install wandb")):
        msg = f"error: --log-with {name}: the {name} package is not installed; {pip}"
        r = run("train", "--data", tmp_path, "--out", tmp_path / "run", "--log-with", name)
        assert r.exit_code == 2 and r.output.strip().splitlines() == [msg], r.output
        r = run("evaluate", tmp_path / "run", "--data", tmp_path, "--out", tmp_path / "rep", "--log-with", name)
        assert r.exit_code == 2 and r.output.strip().splitlines() == [msg], r.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "rep").exists()


def test_evaluate_passes_the_tracker_on(tmp_path, monkeypatch):
    from rehabgen import evaluate
    from rehabgen.data import DataError

    seen = {}

    def fake(*args, **kw):
        seen.update(kw)
        raise DataError("stop here")

    monkeypatch.setattr(evaluate, "evaluate_run", fake)
    r = run("evaluate", tmp_path / "run", "--data", tmp_path, "--out", tmp_path / "rep", "--log-with", "csv",
            "--threads", 1)
    assert r.exit_code == 2 and "stop here" in r.output and seen["log_with"] == "csv"


def test_wandb_offline_resumes_the_same_run(data, tmp_path, monkeypatch):
    """Runs only where wandb is installed (not a dependency): offline by default, one W&B run
    per run folder, which a resume continues."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_MODE")  # unset, and restored as unset afterwards
    out = tmp_path / "run"
    r = run("train", "--data", data, "--out", out, "--steps", 10, "--log-with", "wandb", *TINY)
    assert r.exit_code == 0, r.output
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    rid = (out / "tracking" / "wandb_run_id").read_text()
    r = run("train", "--out", out, "--resume", "--steps", 20, "--threads", 1)
    assert r.exit_code == 0, r.output
    sessions = sorted((out / "tracking" / "wandb").glob("offline-run-*"))
    assert len(sessions) == 2 and all(s.name.endswith(f"-{rid}") for s in sessions)
    assert all(b"train/steps_per_s" in next(s.glob("*.wandb")).read_bytes() for s in sessions)
