"""Experiment tracking: the scalars of `log.csv` (and of an evaluation) sent to TensorBoard or
Weights & Biases through accelerate's tracker API, so a run can be watched while it trains.

`log.csv` is always written (resume reads it back); `csv`, the default, is that alone and needs
no package. The other trackers write under RUN/tracking/: TensorBoard its event files there,
W&B its `wandb/` folder, offline unless WANDB_MODE says otherwise (this machine has no
internet; `wandb sync` uploads later). Only the main process logs. A resumed run goes on in the
same place at its checkpoint's step; events an earlier session wrote after that checkpoint (a
hard kill) are discarded by TensorBoard's readers (`purge_step`), so the step axis has no
doubles. A new run in the folder (also after `--force`) starts a new RUN/tracking/.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import time
from pathlib import Path

# the names and their check live with the run config, which checks them (no import cycle)
from rehabgen.config import _PACKAGES, INSTALL, TRACKERS, ConfigError, tracker_available as available  # noqa: F401
from rehabgen.config import check_tracker as check  # noqa: F401

DEFAULT = "csv"
TRACKING_DIR = "tracking"  # RUN/tracking/: TensorBoard's event files, W&B's wandb/ folder
WANDB_PROJECT = "rehabgen"
_WANDB_ID = "wandb_run_id"  # RUN/tracking/wandb_run_id: a resumed run and its evaluation log into the same W&B run


def tracking_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / TRACKING_DIR


def accelerator_kwargs(name: str, run_dir: str | Path | None) -> dict:
    """What `Accelerator(...)` needs to log to tracker `name` for the run in `run_dir` ({} for csv)."""
    if name == "csv":
        return {}
    if run_dir is None:
        raise ConfigError(f"--log-with {name} needs a run folder to write into")
    from accelerate.utils import ProjectConfiguration

    # TensorBoard writes into logging_dir/<project name>: RUN/tracking (see start)
    return {"log_with": name, "project_config": ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir))}


def start(acc, name: str, run_dir: str | Path | None, step: int | None, config: dict | None = None) -> None:
    """`acc.init_trackers` for the run in `run_dir`, training from `step` on: 0 is a new run,
    whose earlier RUN/tracking/ is removed (it belongs to a run that was replaced or never
    reached a checkpoint); None adds to what is there and purges nothing (an evaluation).
    W&B gets the run's config.json as its run config."""
    if name == "csv" or run_dir is None or not acc.is_main_process:
        return
    tdir = tracking_dir(run_dir)
    if step == 0 and tdir.exists():
        shutil.rmtree(tdir)
    tdir.mkdir(parents=True, exist_ok=True)
    if name == "tensorboard":
        # purge_step: readers drop what an earlier session logged after the checkpoint we resume from
        kw = {} if step is None else {"purge_step": step + 1 if step else 0}
        acc.init_trackers(TRACKING_DIR, init_kwargs={"tensorboard": kw})
    else:  # wandb: offline unless the user chose otherwise; one W&B run per run folder, resumed by id
        os.environ.setdefault("WANDB_MODE", "offline")
        if config is None and step is not None and (Path(run_dir) / "config.json").is_file():
            config = json.loads((Path(run_dir) / "config.json").read_text())
        acc.init_trackers(WANDB_PROJECT, config=_flat(config) if config else None, init_kwargs={"wandb": {
            "dir": str(tdir), "id": _wandb_id(tdir), "name": Path(run_dir).resolve().name, "resume": "allow"}})


def finish(acc) -> None:
    """Close the trackers (flush TensorBoard's writer, end the W&B run). Not `acc.end_training()`,
    which also destroys the process group that a multi-process `rehabgen train` still needs for
    its clean exit."""
    for t in acc.trackers:
        t.finish()
    acc.trackers.clear()


def _wandb_id(tdir: Path) -> str:
    f = tdir / _WANDB_ID
    if f.is_file() and f.read_text().strip():
        return f.read_text().strip()
    from rehabgen.io import atomic_write_bytes

    rid = secrets.token_hex(4)
    atomic_write_bytes(f, rid.encode())
    return rid


def _flat(d: dict, pre: str = "") -> dict:
    """Nested config -> {"a.b": scalar}: what trackers take as hyper-parameters."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{pre}{k}."))
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[f"{pre}{k}"] = v
        else:
            out[f"{pre}{k}"] = json.dumps(v, default=str)
    return out


class StepRate:
    """Steps per second between two log points (the training speed right now, not the average)."""

    def __init__(self, step: int):
        self.step, self.t = step, time.perf_counter()

    def __call__(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self.step) / max(now - self.t, 1e-9)
        self.step, self.t = step, now
        return rate


def train_scalars(row: dict, steps_per_s: float) -> dict[str, float]:
    """One log.csv row as tracker scalars: train/loss, train/loss_ema, every family loss,
    train/lr, train/steps_per_s (step and seconds are the axes)."""
    out = {f"train/{k}": float(v) for k, v in row.items() if k not in ("step", "seconds")}
    out["train/steps_per_s"] = float(steps_per_s)
    return out


def eval_scalars(summary: dict) -> dict[str, float]:
    """The scalar results of an evaluation (metrics.json): eval/<metric> (generated, mean over
    repeats) beside eval/<metric>_real (the real reference), the evaluator networks' own test
    scores, and the downstream study's held-out RMSE/MAE per condition. Undefined (NaN) values
    are left out."""
    out: dict[str, float] = {}
    for k, v in (summary.get("metrics") or {}).items():
        out[f"eval/{k}"] = v["generated"]["mean"]
        out[f"eval/{k}_real"] = v["real_reference"]["mean"]
    for k, v in (summary.get("evaluator") or {}).items():
        if isinstance(v, float):
            out[f"eval/evaluator_{k}"] = v
    study = summary.get("downstream") or {}
    for cond, res in (study.get("conditions") or {}).items():
        for stat in ("rmse", "mae"):
            v = (res.get("held_out_test") or {}).get(stat)
            if isinstance(v, dict):
                out[f"eval/downstream_{cond}_{stat}"] = v["mean"]
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def log_evaluation(name: str, run_dir: str | Path, summary: dict) -> dict[str, float]:
    """Log an evaluation's scalars to the run's tracker at the evaluated model's step (the
    run's last), next to its training curves; returns what was logged ({} for csv: metrics.json
    holds it all)."""
    if check(name) == "csv":
        return {}
    import torch
    from accelerate import Accelerator

    acc = Accelerator(cpu=not torch.cuda.is_available(), **accelerator_kwargs(name, run_dir))
    start(acc, name, run_dir, None)
    values = eval_scalars(summary)
    acc.log(values, step=int(summary["model_step"]))
    finish(acc)
    return values


def hint(name: str, run_dir: str | Path) -> str | None:
    """Where tracker `name` put the curves of the run in `run_dir`, and how to look (None for csv)."""
    tdir = tracking_dir(run_dir)
    if name == "tensorboard":
        return f"tensorboard: event files in {tdir}; view with: tensorboard --logdir {tdir}"
    if name == "wandb":
        mode = os.environ.get("WANDB_MODE", "offline")
        return (f"wandb ({mode}): {tdir / 'wandb'}" + ("; upload with: wandb sync " + str(tdir / "wandb" / "offline-run-*")
                                                       if mode == "offline" else ""))
    return None
