"""A training run on disk: RUN_DIR/{config.json, split.json, log.csv, checkpoint/, model/}.

`train_run` is what `rehabgen train` and `rehabgen demo` call; the generative model trains on
the training subjects only, so evaluation can compare against subjects it never saw.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from rehabgen.data import DataError, Dataset, load_dataset
from rehabgen.data.splits import subject_split
from rehabgen.models import GenerativeModel, ModelError, get_family, prepare_data
from rehabgen.preprocess import PreprocessConfig


def write_json(path: Path, obj) -> None:
    from rehabgen.io import atomic_write_bytes

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


def split_dataset(ds: Dataset, test: float, seed: int) -> tuple[Dataset, Dataset, dict]:
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


def load_model(run_dir: str | Path) -> GenerativeModel:
    """A trained model from a run folder (its model/ or, if training is unfinished, its checkpoint)."""
    p = Path(run_dir)
    for cand in (p / "model", p / "checkpoint" / "model", p):
        if (cand / "model.json").is_file():
            return GenerativeModel.load(cand)
    raise ModelError(f"{p}: no trained model here (expected {p}/model/model.json from `rehabgen train`)")


def train_run(data: str | Path, family: str, out: str | Path, steps: int | None = None, seed: int = 0,
              resume: bool = False, max_len: int = 80, fps: float = 5.0, test_fraction: float = 0.2,
              max_minutes: float | None = None, ckpt_every: int = 200, hparams: dict | None = None,
              progress: bool = True, accelerator=None, is_main: bool = True) -> dict:
    out = Path(out)
    cfg_path = out / "config.json"
    if resume:
        if not cfg_path.is_file():
            raise ModelError(f"{out}: nothing to resume (no config.json from an earlier `rehabgen train`)")
        cfg = json.loads(cfg_path.read_text())
        data, family, seed = cfg["data"], cfg["model"], cfg["seed"]
        max_len, fps, test_fraction = cfg["max_len"], cfg["preprocess"]["fps"], cfg["test_fraction"]
        hparams = cfg["hparams"]
        steps = steps or cfg["steps"]  # a new --steps on resume changes the target (and the LR schedule)
    elif (out / "checkpoint").exists() or (out / "model").exists():
        raise ModelError(f"{out}: already holds a run; use --resume to continue it or choose another --out")
    steps = steps or 2000
    ds = load_dataset(data)
    if len(ds) == 0:
        raise DataError(f"{data}: no usable sequence (see `rehabgen data inspect {data}`)")
    train_ds, test_ds, split = split_dataset(ds, test_fraction, seed)
    cls = get_family(family)
    pcfg = PreprocessConfig(fps=fps)
    if resume:
        model = GenerativeModel.load(out / "checkpoint" / "model")
        _, arrays = prepare_data(train_ds, pcfg, max_len, model.spec.score_name, model.spec.normalizer,
                                 model.spec.text_encoder)
    else:
        import torch

        torch.manual_seed(seed)  # initial weights follow --seed
        model, arrays = cls.from_dataset(train_ds, pcfg, max_len=max_len, **(hparams or {}))
    cfg = {
        "command": "train", "data": str(Path(data).resolve()), "model": family, "seed": seed, "steps": steps,
        "max_len": max_len, "test_fraction": test_fraction, "max_minutes": max_minutes, "ckpt_every": ckpt_every,
        "preprocess": pcfg.to_dict(), "hparams": model.hparams, "n_parameters": model.n_parameters(),
        "n_train_sequences": len(train_ds), "n_test_sequences": len(test_ds),
        "quarantined": len(ds.quarantined), "versions": versions(),
    }
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(cfg_path, cfg)
        write_json(out / "split.json", split)
    from rehabgen.train import train

    summary = train(model, arrays, steps=steps, seed=seed, out_dir=out, resume=resume, ckpt_every=ckpt_every,
                    progress=progress, max_minutes=max_minutes, accelerator=accelerator)
    if is_main:
        write_json(out / "train_summary.json", summary)
    return {"config": cfg, "summary": summary, "model": model}
