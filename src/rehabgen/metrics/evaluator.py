"""Evaluator networks trained on real data: an exercise classifier and a clinical-score regressor.

Their penultimate features are the space where distribution metrics (FID, precision/recall,
density/coverage, MMS, APD) compare generated and real motion. Real and generated sequences
go through ONE input pipeline (normalised body, fixed length) so features are comparable.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rehabgen.data.dataset import DataError, Dataset, Sequence, score_range
from rehabgen.preprocess import PreprocessConfig, preprocess_dataset
from rehabgen.skeleton import Skeleton

EVAL_LENGTH = 64
FORMAT = 1


def _pipeline(detect_invalid: bool) -> PreprocessConfig:
    return PreprocessConfig(detect_invalid=detect_invalid, max_gap=10 ** 6, smooth="savgol", fps=None,
                            length=EVAL_LENGTH, center=True, facing=True, scale=True)


def _stack(ds: Dataset) -> np.ndarray:
    x = np.stack([s.positions for s in ds.sequences]).astype(np.float32)  # (n, L, J, 3)
    x = np.nan_to_num(x)  # joints never seen in a whole recording: at the root
    return x.reshape(x.shape[0], EVAL_LENGTH, -1)


def eval_inputs(ds: Dataset, score_name: str = "TS") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real data -> (x (n, 64, J*3) normalised bodies, exercise index (n,), score (n,))."""
    if len(ds) == 0:
        raise DataError("no sequences to evaluate")
    pre, _ = preprocess_dataset(ds, _pipeline(detect_invalid=True))
    ex = np.array([ds.exercise_index(s.exercise) for s in ds.sequences], np.int64)
    sc = np.array([s.score(score_name) for s in ds.sequences], np.float32)
    return _stack(pre), ex, sc


def eval_inputs_from_positions(positions: np.ndarray, skeleton: Skeleton, exercise_idx, scores,
                               fps: float = 30.0, lengths=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generated positions (n, T, J, 3) metres -> the same inputs as `eval_inputs`. Nothing is
    flagged or filled: whatever a generator produced is what gets judged. `lengths` (n,) cuts
    padded sequences to their true length first: like a real recording, each sequence is
    resampled to the input length from its own frames, not from a held last pose."""
    p = np.asarray(positions, np.float32)
    if p.ndim != 4 or p.shape[2:] != (skeleton.n_joints, 3):
        raise ValueError(f"positions must be (n, T, {skeleton.n_joints}, 3), got {p.shape}")
    n = np.full(len(p), p.shape[1]) if lengths is None else np.asarray(lengths, np.int64)
    if n.shape != (len(p),) or (n < 2).any() or (n > p.shape[1]).any():
        raise ValueError(f"lengths must be (n,) = ({len(p)},) between 2 and {p.shape[1]}, got {n.tolist()}")
    seqs = [Sequence("gen", "generated", "gen", q[:k], np.isfinite(q[:k]).all(-1), source=f"generated[{i}]")
            for i, (q, k) in enumerate(zip(p, n))]
    pre, _ = preprocess_dataset(Dataset(skeleton, seqs, exercises=("gen",), fps=fps), _pipeline(detect_invalid=False))
    return _stack(pre), np.asarray(exercise_idx, np.int64), np.asarray(scores, np.float32)


class FCN(nn.Module):
    """Temporal-conv network (Wang et al. 2017 FCN, smaller): (B, T, C) -> features (B, d)."""

    def __init__(self, channels: int, n_out: int, width: int = 64, d: int = 128):
        super().__init__()

        def block(i, o, k):
            return nn.Sequential(nn.Conv1d(i, o, k, padding=k // 2), nn.GroupNorm(8, o), nn.ReLU())

        self.body = nn.Sequential(block(channels, width, 7), block(width, d, 5), block(d, d, 3))
        self.head = nn.Linear(d, n_out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.transpose(1, 2)).mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Light regularisation for tiny data: scaling, jitter, small time shift (standardised x)."""
    B = x.shape[0]
    scale = 1 + 0.1 * (torch.rand(B, 1, 1, generator=g) - 0.5)
    x = x * scale + 0.05 * torch.randn(x.shape, generator=g)
    shift = int(torch.randint(-3, 4, (1,), generator=g))
    return torch.roll(x, shift, dims=1)


def train_fcn(x: np.ndarray, steps: int, seed: int, labels: np.ndarray | None = None, n_classes: int = 0,
              scores: np.ndarray | None = None, score_weight: float = 1.0, progress: bool = False, lr: float = 2e-3,
              batch: int = 32, desc: str = "evaluator", device: str | torch.device | None = None) -> FCN:
    """The one training loop of every FCN here (evaluators, downstream assessors), on
    standardised inputs x (n, T, C). Heads: output 0 regresses `scores` (n,) in [0, 1] (MSE, NaN
    ignored) when given; the next `n_classes` outputs classify `labels` (n,) (cross-entropy) when
    given. A score-only network trains on the labelled sequences only. Trains on `device` (the
    batches and their augmentation are drawn on the CPU, so a seed means the same batches on
    every device) and returns the network on the CPU, where the cheap feature passes run.

    Reproducible for a seed without touching the caller's randomness: the weights are drawn
    inside `torch.random.fork_rng` and batches/augmentation come from a private generator."""
    if labels is None and scores is None:
        raise ValueError("train_fcn needs labels, scores or both")
    keep = np.isfinite(scores) if labels is None else np.ones(len(x), bool)
    X = torch.from_numpy(x[keep]).float()
    E = torch.from_numpy(np.asarray(labels)[keep]).long() if labels is not None else None
    U = torch.from_numpy(np.asarray(scores, np.float32)[keep]) if scores is not None else None
    task = "classify" if scores is None else "regress" if labels is None else "assess"
    if len(X) < 2:
        raise DataError(f"too few labelled sequences to train the {task} network ({len(X)})")
    off = 1 if U is not None else 0  # first class output
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FCN(X.shape[-1], off + (n_classes if E is not None else 0))
    g = torch.Generator().manual_seed(seed)
    dev = torch.device("cpu" if device is None else device)
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"{desc} ({task})", unit="step", mininterval=1.0)
    net.train()
    for _ in it:
        idx = torch.randint(0, len(X), (min(batch, len(X)),), generator=g)
        out = net(augment(X[idx], g).to(dev))
        loss = nn.functional.cross_entropy(out[:, off:], E[idx].to(dev)) if E is not None else out.new_zeros(())
        if U is not None:
            ub = U[idx]
            known = torch.isfinite(ub)  # on the CPU: no device sync to decide
            if known.any():
                loss = loss + score_weight * nn.functional.mse_loss(out[known.to(dev), 0], ub[known].to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    return net.cpu()


def _batched(net: FCN, x: np.ndarray, fn: str, bs: int = 256) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + bs])).float()
            out.append((net.features(xb) if fn == "features" else net(xb)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class Evaluator:
    """Exercise classifier + score regressor trained on real training subjects only."""

    def __init__(self, exercises: tuple[str, ...], score_name: str, mean: np.ndarray, std: np.ndarray,
                 score_lo: float, score_hi: float, classifier: FCN, regressor: FCN, config: dict):
        self.exercises, self.score_name = tuple(exercises), score_name
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.score_lo, self.score_hi = float(score_lo), float(score_hi)
        self.classifier, self.regressor = classifier, regressor
        self.config = config
        self.from_cache = False

    # ---- fitting --------------------------------------------------------------------------
    @classmethod
    def fit(cls, train_ds: Dataset, score_name: str = "TS", steps: int = 400, seed: int = 0,
            progress: bool = False, device: str | torch.device | None = None) -> "Evaluator":
        x, ex, sc = eval_inputs(train_ds, score_name)
        mean = x.reshape(-1, x.shape[-1]).mean(0)
        std = x.reshape(-1, x.shape[-1]).std(0) + 1e-3
        lo, hi = score_range(score_name, sc)
        z = (x - mean) / std
        clf = train_fcn(z, steps, seed, labels=ex, n_classes=len(train_ds.exercises), progress=progress, device=device)
        reg = train_fcn(z, steps, seed + 1, scores=(sc - lo) / (hi - lo), progress=progress, device=device)
        cfg = {"steps": steps, "seed": seed, "length": EVAL_LENGTH, "n_train": len(train_ds),
               "train_subjects": train_ds.subjects}
        return cls(train_ds.exercises, score_name, mean, std, lo, hi, clf, reg, cfg)

    @classmethod
    def cached(cls, train_ds: Dataset, cache_dir: str | Path, key_extra: dict | None = None, **fit_kwargs) -> "Evaluator":
        """Load the evaluator of this exact training data and config, or fit and store it."""
        fit = {k: v for k, v in fit_kwargs.items() if k not in ("progress", "device")}  # device: same nets, up to rounding
        key = data_key(train_ds, {"extra": key_extra or {}, "fit": fit,
                                  "length": EVAL_LENGTH, "format": FORMAT})
        ev, hit = load_or_fit(Path(cache_dir) / key, "evaluator.json", cls.load, lambda: cls.fit(train_ds, **fit_kwargs))
        ev.from_cache = hit
        return ev

    # ---- use ----------------------------------------------------------------------------------
    def _z(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 3 or x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"evaluator inputs must be (n, T, {self.mean.shape[0]}), got {x.shape}")
        return ((x - self.mean) / self.std).astype(np.float32)

    def features(self, x: np.ndarray, which: str = "classifier") -> np.ndarray:
        net = {"classifier": self.classifier, "regressor": self.regressor}.get(which)
        if net is None:
            raise ValueError(f"which must be 'classifier' or 'regressor', got {which!r}")
        return _batched(net, self._z(x), "features")

    def predict_exercise(self, x: np.ndarray) -> np.ndarray:
        return _batched(self.classifier, self._z(x), "out").argmax(-1)

    def predict_score(self, x: np.ndarray) -> np.ndarray:
        u = _batched(self.regressor, self._z(x), "out")[:, 0]
        return np.clip(u, 0, 1) * (self.score_hi - self.score_lo) + self.score_lo

    def evaluate(self, test_ds: Dataset) -> dict:
        """Accuracy and score errors on real held-out subjects."""
        if len(test_ds) == 0:
            return {"accuracy": float("nan"), "score_mae": float("nan"), "score_rmse": float("nan"), "n": 0}
        x, ex, sc = eval_inputs(test_ds, self.score_name)
        pe, ps = self.predict_exercise(x), self.predict_score(x)
        ok = np.isfinite(sc)
        err = ps[ok] - sc[ok]
        return {"accuracy": float((pe == ex).mean()),
                "score_mae": float(np.abs(err).mean()) if ok.any() else float("nan"),
                "score_rmse": float(np.sqrt((err ** 2).mean())) if ok.any() else float("nan"),
                "n": int(len(ex)), "n_subjects": len(test_ds.subjects)}

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from rehabgen.io import save_weights_dir

        t = {f"classifier.{k}": v for k, v in self.classifier.state_dict().items()}
        t.update({f"regressor.{k}": v for k, v in self.regressor.state_dict().items()})
        meta = {"format": FORMAT, "exercises": list(self.exercises), "score_name": self.score_name,
                "mean": self.mean.tolist(), "std": self.std.tolist(), "score_lo": self.score_lo,
                "score_hi": self.score_hi, "config": self.config}
        return save_weights_dir(path, "evaluator", t, meta)

    @classmethod
    def load(cls, path: str | Path) -> "Evaluator":
        from safetensors.torch import load_file

        path = Path(path)
        try:
            meta = json.loads((path / "evaluator.json").read_text())
            w = load_file(path / "evaluator.safetensors")
        except FileNotFoundError:
            raise DataError(f"{path}: no evaluator here") from None
        C = len(meta["mean"])
        clf, reg = FCN(C, len(meta["exercises"])), FCN(C, 1)
        clf.load_state_dict({k[11:]: v for k, v in w.items() if k.startswith("classifier.")})
        reg.load_state_dict({k[10:]: v for k, v in w.items() if k.startswith("regressor.")})
        clf.eval()
        reg.eval()
        return cls(tuple(meta["exercises"]), meta["score_name"], np.array(meta["mean"]), np.array(meta["std"]),
                   meta["score_lo"], meta["score_hi"], clf, reg, meta["config"])


def load_or_fit(entry: Path, marker: str, load, fit):
    """(object, True) from the cache folder `entry` if it holds `marker` and loads; else fit it,
    store it and return (object, False). A broken entry is refitted; a concurrent writer wins."""
    if (entry / marker).is_file():
        try:
            return load(entry), True
        except (DataError, RuntimeError, KeyError, OSError, json.JSONDecodeError):
            pass
    obj = fit()
    try:
        obj.save(entry)
    except OSError:
        pass
    return obj, False


def data_key(ds: Dataset, extra: dict) -> str:
    """Hash of what a model trained on `ds` depends on: sequences, labels, positions, config."""
    h = hashlib.sha256()
    h.update(json.dumps({"exercises": list(ds.exercises), "skeleton": ds.skeleton.to_dict(), "extra": extra},
                        sort_keys=True, default=str).encode())
    for s in ds.sequences:
        h.update(f"{s.subject}|{s.exercise}|{s.n_frames}|{sorted(s.scores.items())}".encode())
        h.update(np.nan_to_num(s.positions).astype(np.float32).tobytes())
        h.update(s.valid.tobytes())
    return h.hexdigest()[:16]

