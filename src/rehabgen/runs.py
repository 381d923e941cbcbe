"""A training run on disk: RUN_DIR/{config.json, split.json, log.csv, checkpoint/, model/} and,
with a tracker other than csv, tracking/ (`rehabgen.tracking`).

`train_run` is what `rehabgen train` and `rehabgen demo` call; the generative model trains on
the training subjects only, so evaluation can compare against subjects it never saw.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from rehabgen.config import RunConfig
from rehabgen.data import DataError, Dataset, load_dataset
from rehabgen.data.splits import subject_kfold, subject_split
from rehabgen.devices import resolve_device
from rehabgen.io import atomic_write_bytes, replace_dir
from rehabgen.models import GenerativeModel, ModelError, get_family, prepare_data
from rehabgen.train import CKPT, train


CUDA_BATCH = 128  # default batch size when training on a GPU without --batch-size


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, default=str) + "\n").encode())


def versions() -> dict:
    import numpy
    import torch

    import rehabgen

    out = {"rehabgen": rehabgen.__version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__}
    try:
        import diffusers

        out["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    return out


def split_dataset(ds: Dataset, test: float, seed: int, fold: int | None = None,
                  folds: int = 5) -> tuple[Dataset, Dataset, dict]:
    """Held-out subjects: a `test` share drawn with `seed`, or, with `fold`, fold `fold` of a
    subject-wise `folds`-fold partition drawn with seed 0, so every seed and family of a sweep
    holds out the same subjects on that fold."""
    if fold is not None:
        train_idx, test_idx = subject_kfold(ds, k=folds, seed=0)[fold]
        train, held = ds.subset(train_idx), ds.subset(test_idx)
        return train, held, {"train": train.subjects, "test": held.subjects, "fold": fold, "folds": folds}
    if test <= 0:
        return ds, ds.subset([]), {"train": ds.subjects, "test": []}
    sp = subject_split(ds, val=0.0, test=test, seed=seed)
    train, held = ds.subset(sp["train"] + sp["val"]), ds.subset(sp["test"])
    return train, held, {"train": train.subjects, "test": held.subjects}


def load_split(run_dir: Path, ds: Dataset) -> tuple[Dataset, Dataset]:
    """The run's train/test subjects applied to a dataset (all data as train if no split)."""
    f = Path(run_dir) / "split.json"
    if not f.is_file():
        return ds, ds.subset([])
    sp = json.loads(f.read_text())
    return ds.by_subjects(sp["train"]), ds.by_subjects(sp["test"])


def load_model(run_dir: str | Path, device: str = "cpu", precision: str = "fp32") -> GenerativeModel:
    """A trained model from a run folder (its model/ or, if training is unfinished, its checkpoint),
    in eval mode on `device` ('auto', 'cpu', 'cuda', 'cuda:N')."""
    p = Path(run_dir)
    for cand in (p / "model", p / "checkpoint" / "model", p):
        if (cand / "model.json").is_file():
            return GenerativeModel.load(cand, device=device, precision=precision)
    raise ModelError(f"{p}: no trained model here (expected {p}/model/model.json from `rehabgen train`)")


def checkpoint_step(run_dir: str | Path) -> int | None:
    """The step of the run's checkpoint, None when it has none yet."""
    tj = Path(run_dir) / CKPT / "trainer.json"
    if not tj.is_file():
        return None
    try:
        return int(json.loads(tj.read_text())["step"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{tj}: unreadable checkpoint state ({type(e).__name__}: {e})") from None


def read_summary(run_dir: str | Path) -> dict | None:
    """The run's train_summary.json, None when absent or unreadable: a resume must not fail on it."""
    f = Path(run_dir) / "train_summary.json"
    try:
        return json.loads(f.read_text()) if f.is_file() else None
    except json.JSONDecodeError:
        return None


def train_run(cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True, accelerator=None,
              is_main: bool = True, log=None, device: str = "auto", **changes) -> dict:
    """Train (or, with `resume`, continue) the run in `out`. On resume the run's own config.json
    is the configuration; `changes` may set the RESUMABLE fields only. `log(message)` hears the
    warnings about the data (quarantined files, an unfinished folder).

    Returns {"config", "summary", "model"}; resuming a run that already reached its planned steps
    returns {"finished_at": step, "config", "summary"} and writes nothing, so its recorded results
    stay as they are. A run stopped before its first checkpoint resumes from step 0."""
    out = Path(out)
    say = log if (log and is_main) else (lambda msg: None)
    cfg_path = out / "config.json"
    if resume:
        if not cfg_path.is_file():
            raise ModelError(f"{out}: nothing to resume (no config.json from an earlier `rehabgen train`)")
        fixed = sorted(set(changes) - set(RunConfig.RESUMABLE))
        if fixed:
            raise ModelError(f"{out}: {', '.join(fixed)} can't change when a run is resumed (only "
                             f"{', '.join(RunConfig.RESUMABLE)}); start a new run with another --out")
        cfg = replace(RunConfig.from_dict(json.loads(cfg_path.read_text())), **changes).check()
        at = checkpoint_step(out)
        if at is not None and at >= cfg.steps:
            return {"finished_at": at, "config": json.loads(cfg_path.read_text()), "summary": read_summary(out)}
        if at is None:
            say(f"{out}: no checkpoint yet (stopped before its first step); starting it again from step 0 "
                "with its config.json")
            resume = False
    else:
        cfg = replace(cfg, **changes).check()
        if is_main and ((out / CKPT).exists() or (out / "model").exists()):  # only the writer checks: no race
            raise ModelError(f"{out}: already holds a run; use --resume to continue it or choose another --out")
    if cfg.data is None:
        raise DataError("no data folder given (--data)")
    ds = load_dataset(cfg.data)
    for w in ds.warnings():
        say(w)
    if len(ds) == 0:
        raise DataError(f"{cfg.data}: no usable sequence (see `rehabgen data inspect {cfg.data}`)")
    train_ds, test_ds, split = split_dataset(ds, cfg.test_fraction, cfg.seed, cfg.fold, cfg.folds)
    if len(train_ds) == 0:
        raise DataError(f"{cfg.data}: --test-fraction {cfg.test_fraction:g} leaves no training subject "
                        f"(of {len(ds.subjects)})")
    if resume:
        model = GenerativeModel.load(out / CKPT / "model")
        _, arrays = prepare_data(train_ds, cfg.preprocess, cfg.max_len, model.spec.score_name, model.spec.normalizer,
                                 model.spec.text_encoder, augment=model.hparams["augment"])
    else:
        import torch

        torch.manual_seed(cfg.seed)  # initial weights follow --seed
        if accelerator is None and "batch_size" not in cfg.hparams and resolve_device(device).type == "cuda":
            # a GPU waits on Python at the CPU's batch of 32 (57 steps/s measured on an H100): a larger
            # default batch keeps it busy (its effect on quality per step is not measured here)
            cfg = replace(cfg, hparams={**cfg.hparams, "batch_size": CUDA_BATCH})
            say(f"device {device}: batch size {CUDA_BATCH} (the GPU default; --batch-size to choose)")
        model, arrays = _build(cfg, train_ds)
    cfg = replace(cfg, data=str(Path(cfg.data).resolve()), hparams=model.hparams)
    record = {"command": "train", **cfg.to_dict(), "n_parameters": model.n_parameters(),
              "n_train_sequences": len(train_ds), "n_test_sequences": len(test_ds),
              "quarantined": len(ds.quarantined), "versions": versions()}
    earlier = read_summary(out) if resume else None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(cfg_path, record)
        write_json(out / "split.json", split)
    summary = train(model, arrays, steps=cfg.steps, seed=cfg.seed, out_dir=out, resume=resume,
                    ckpt_every=cfg.ckpt_every, progress=progress, max_minutes=cfg.max_minutes, accelerator=accelerator,
                    log_with=cfg.log_with, device=device)
    if earlier and earlier.get("first_loss") is not None:
        summary["first_loss"] = earlier["first_loss"]  # the run's first loss, not this session's
    if is_main:
        write_json(out / "train_summary.json", summary)
    return {"config": record, "summary": summary, "model": model}


def _build(cfg: RunConfig, train_ds: Dataset) -> tuple[GenerativeModel, object]:
    """A new model and its training arrays; hyper-parameters that can't build the networks
    (e.g. d_model not divisible by n_heads) become one ModelError naming them."""
    try:
        return get_family(cfg.model).from_dataset(train_ds, cfg.preprocess, max_len=cfg.max_len, **cfg.hparams)
    except (DataError, ModelError):
        raise
    except (ValueError, TypeError, AssertionError, NotImplementedError, RuntimeError) as e:
        given = ", ".join(f"{k}={v!r}" for k, v in sorted(cfg.hparams.items())) or "the defaults"
        raise ModelError(f"the {cfg.model} model can't be built with {given}: {e}") from None


def distill_run(run_dir: str | Path, out: str | Path, data: str | Path | None = None, student_steps: int = 4,
                teacher_steps: int = 20, trajectories: int = 2048, steps: int = 1500, batch: int = 64,
                lr: float = 2e-4, seed: int = 0, device: str = "cpu", progress: bool = True,
                grid: str = "late") -> dict:
    """Distil the diffusion model of `run_dir` into a few-step student, written as a run folder
    `out` (model/, config.json, split.json, log.csv, distill_summary.json) that `sample`,
    `evaluate` and every other command use like the teacher's run. The student learns from the
    teacher's trajectories under the conditions of the teacher's own training subjects (its
    split.json): the held-out subjects stay held out."""
    from rehabgen.models.distill import distill
    from rehabgen.train import _write_log

    run_dir, out = Path(run_dir), Path(out)
    teacher = load_model(run_dir, device)
    cfg_path = run_dir / "config.json"
    record = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    data = data or record.get("data")
    if data is None:
        raise DataError(f"{run_dir}: no config.json naming its data folder; give --data")
    ds = load_dataset(data)
    train_ds, _ = load_split(run_dir, ds)
    if len(train_ds) == 0:
        raise DataError(f"{data}: none of the run's training subjects is in this folder")
    arrays = teacher.arrays(train_ds, augment="")  # the trajectories' conditions: no training copies
    log: list[dict] = []
    student, summary = distill(teacher, arrays, student_steps=student_steps, teacher_steps=teacher_steps,
                               n_trajectories=trajectories, steps=steps, batch=batch, lr=lr, seed=seed,
                               progress=progress, log=log, grid=grid)
    summary["teacher_run"] = str(run_dir.resolve())
    tmp = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None, prefix=f".{out.name}."))
    try:
        student.save(tmp / "model")
        write_json(tmp / "config.json", {**record, "command": "distill", "data": str(Path(data).resolve()),
                                         "hparams": student.hparams, "teacher": str(run_dir.resolve()),
                                         "distill": {"student_steps": student_steps, "teacher_steps": teacher_steps,
                                                     "trajectories": trajectories, "steps": steps, "batch": batch,
                                                     "grid": grid, "lr": lr, "seed": seed, "device": str(teacher.device)},
                                         "versions": versions()})
        if (run_dir / "split.json").is_file():
            shutil.copy2(run_dir / "split.json", tmp / "split.json")
        _write_log(tmp / "log.csv", log)
        write_json(tmp / "distill_summary.json", summary)
        out.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {"summary": summary, "model": student}
