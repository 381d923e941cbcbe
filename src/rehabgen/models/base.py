"""The contract every generative model family shares (fit / sample / save / load).

A family is one file: a subclass of `GenerativeModel` that builds its networks, says how one
training step goes and how to generate in normalised space. Everything about data (cleaning,
normalisation and its inverse, conditions) lives here so that all families see the same data
and return the same thing: positions (n, T, J, 3) in metres in the dataset's skeleton.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from rehabgen.data.dataset import SCORE_RANGES, DataError, Dataset
from rehabgen.io import save_weights_dir
from rehabgen.preprocess import PreprocessConfig, preprocess_dataset, to_arrays
from rehabgen.skeleton import Skeleton

FORMAT_VERSION = 2  # 2: smooth score embedding (3 Fourier frequencies instead of 8)


class ModelError(ValueError):
    """A model or checkpoint can't be used as asked (unknown exercise, corrupt checkpoint...)."""


# --------------------------------------------------------------------------------------------
# data normalisation shared by all families
# --------------------------------------------------------------------------------------------
@dataclass
class Normalizer:
    """Standardised features <-> metres.

    After preprocessing a sequence is root-centred, facing the camera and of unit body size.
    Models see z = (x - mean) / std per coordinate (statistics over observed values only, so
    dropouts don't bias them). Decoding puts a typical body back at a typical place.
    """

    mean: np.ndarray  # (J*3,)
    std: np.ndarray  # (J*3,)
    ref_scale: float  # median body size (metres, sum of bone lengths)
    ref_offset: np.ndarray  # (3,) median first-frame root position, camera coordinates
    score_lo: float
    score_hi: float

    @classmethod
    def fit(cls, x: np.ndarray, mask: np.ndarray, ref_scale: float, ref_offset: np.ndarray,
            score: np.ndarray, score_name: str) -> "Normalizer":
        N, T, J, _ = x.shape
        m = np.repeat(mask[..., None], 3, axis=-1).reshape(N * T, J * 3)
        v = x.reshape(N * T, J * 3).astype(np.float64)
        cnt = np.maximum(m.sum(0), 1)
        mean = (v * m).sum(0) / cnt
        var = (((v - mean) ** 2) * m).sum(0) / cnt
        std = np.sqrt(var)
        std = np.maximum(std, max(1e-3, float(np.median(std)) * 0.05))  # a still joint must not blow up
        if score_name in SCORE_RANGES:
            lo, hi = SCORE_RANGES[score_name]
        else:
            ok = score[np.isfinite(score)]
            lo, hi = (float(ok.min()), float(ok.max())) if ok.size else (0.0, 1.0)
            if hi <= lo:
                hi = lo + 1.0
        return cls(mean.astype(np.float32), std.astype(np.float32), float(ref_scale),
                   np.asarray(ref_offset, np.float32), float(lo), float(hi))

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(..., J, 3) normalised body -> (..., J*3) standardised."""
        flat = x.reshape(*x.shape[:-2], -1)
        return ((flat - self.mean) / self.std).astype(np.float32)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """(..., J*3) standardised -> (..., J, 3) metres in camera coordinates."""
        flat = np.asarray(z, np.float64) * self.std + self.mean
        x = flat.reshape(*flat.shape[:-1], -1, 3)
        return (x * self.ref_scale + self.ref_offset).astype(np.float32)

    def decode_body(self, z: np.ndarray) -> np.ndarray:
        """(..., J*3) standardised -> (..., J, 3) normalised body (centred, unit size)."""
        flat = np.asarray(z, np.float64) * self.std + self.mean
        return flat.reshape(*flat.shape[:-1], -1, 3).astype(np.float32)

    def score_to_unit(self, s):
        return (np.asarray(s, np.float32) - self.score_lo) / (self.score_hi - self.score_lo)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "ref_scale": self.ref_scale,
                "ref_offset": self.ref_offset.tolist(), "score_lo": self.score_lo, "score_hi": self.score_hi}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32), float(d["ref_scale"]),
                   np.asarray(d["ref_offset"], np.float32), float(d["score_lo"]), float(d["score_hi"]))


@dataclass
class DataSpec:
    """What a trained model knows about its data: enough to sample without the data."""

    skeleton: Skeleton
    exercises: tuple[str, ...]
    fps: float
    max_len: int
    default_length: dict[str, int]  # median length per exercise (frames at `fps`)
    score_name: str
    normalizer: Normalizer
    preprocess: dict
    bone_pairs: list[tuple[int, int]] = field(default_factory=list)
    text_encoder: str = ""  # name of the frozen sentence encoder ("" = no text conditioning)
    text_dim: int = 0
    # what the text says about quality -> score condition: {"quality": AttributeReader dict,
    # "band_scores": {band: unit score}} (empty: text carries no score, as in models before it)
    text_reader: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.skeleton.n_joints * 3

    def to_dict(self) -> dict:
        return {"skeleton": self.skeleton.to_dict(), "exercises": list(self.exercises), "fps": self.fps,
                "max_len": self.max_len, "default_length": self.default_length, "score_name": self.score_name,
                "normalizer": self.normalizer.to_dict(), "preprocess": self.preprocess,
                "text_encoder": self.text_encoder, "text_dim": self.text_dim, "text_reader": self.text_reader}

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        sk = Skeleton.from_dict(d["skeleton"])
        return cls(sk, tuple(d["exercises"]), float(d["fps"]), int(d["max_len"]),
                   {k: int(v) for k, v in d["default_length"].items()}, d["score_name"],
                   Normalizer.from_dict(d["normalizer"]), d["preprocess"], sk.bones, d.get("text_encoder", ""),
                   int(d.get("text_dim", 0)), d.get("text_reader", {}))


@dataclass
class TrainArrays:
    """Training tensors in the model's space. z: (N, T, J*3); mask/observed: (N, T, J)."""

    z: np.ndarray
    mask: np.ndarray  # known (observed or gap-filled) and inside the sequence
    observed: np.ndarray  # really observed
    lengths: np.ndarray
    exercise: np.ndarray
    score: np.ndarray  # in [0, 1], NaN where absent
    subject: np.ndarray
    text: np.ndarray | None = None  # (N, K, D_text): K embedded descriptions of each sequence
    text_score: np.ndarray | None = None  # (N, K): the score where description k states a quality, else NaN


def prepare_data(ds: Dataset, pcfg: PreprocessConfig, max_len: int, score_name: str = "TS",
                 normalizer: Normalizer | None = None, text_encoder: str = "", text_variants: int = 8,
                 seed: int = 0) -> tuple[DataSpec, TrainArrays]:
    """Preprocess a dataset and turn it into standardised, padded arrays plus its DataSpec."""
    if len(ds) == 0:
        raise DataError("no sequences to train on")
    pre, tfs = preprocess_dataset(ds, pcfg)
    arr = to_arrays(pre, length=max_len, score=score_name)
    if normalizer is None:
        ref_scale = float(np.median([t.scale for t in tfs]))
        ref_offset = np.median(np.array([t.offset for t in tfs]), axis=0)
        normalizer = Normalizer.fit(arr["x"], arr["mask"], ref_scale, ref_offset, arr["score"], score_name)
    z = normalizer.encode(arr["x"])
    z = z * np.repeat(arr["mask"], 3, axis=-1)  # unknown values are exactly 0 (the data mean)
    default_length = {}
    for e, name in enumerate(pre.exercises):
        ls = arr["lengths"][arr["exercise"] == e]
        default_length[name] = int(np.median(ls)) if ls.size else int(np.median(arr["lengths"]))
    score = normalizer.score_to_unit(arr["score"])
    text = text_score = None
    text_dim, reader_meta = 0, {}
    if text_encoder:
        from rehabgen.text.corpus import QUALITY, describe, quality_band
        from rehabgen.text.encoder import get_encoder
        from rehabgen.text.reader import quality_reader

        enc = get_encoder(text_encoder)
        full = np.array([s.n_frames for s in pre.sequences], np.float64)  # before cropping
        typical = {e: np.median(full[arr["exercise"] == k]) for k, e in enumerate(pre.exercises)}
        rng = np.random.default_rng(seed)
        sentences = [describe(s.exercise, float(u), full[i] / typical[s.exercise], rng, "train")
                     for i, (s, u) in enumerate(zip(pre.sequences, score)) for _ in range(text_variants)]
        # the reader takes the quality out of each description: the denoiser gets the rest of the
        # words, and the score exactly when a quality was stated, as at sampling time. (With the
        # quality left in the words, the denoiser learned it from them, barely, and ignored the score.)
        reader = quality_reader(text_encoder)
        bands, _, rest = reader.split(sentences)
        text = enc.encode(rest).reshape(len(pre.sequences), text_variants, -1)
        text_dim = enc.dim
        stated = np.array([b is not None for b in bands]).reshape(len(pre.sequences), -1)
        text_score = np.where(stated, score[:, None], np.nan).astype(np.float32)
        bands = np.array([quality_band(u) for u in score])
        centre = {"high": 0.875, "mid": 0.625, "low": 0.25}  # used where a band has no training sequence
        reader_meta = {"quality": reader.to_dict(),
                       "band_scores": {b: float(np.median(score[bands == b])) if (bands == b).any() else centre[b]
                                       for b in QUALITY}}
    spec = DataSpec(ds.skeleton, pre.exercises, pre.fps, max_len, default_length, score_name, normalizer,
                    pcfg.to_dict(), ds.skeleton.bones, text_encoder, text_dim, reader_meta)
    return spec, TrainArrays(z, arr["mask"], arr["observed"], arr["lengths"], arr["exercise"], score, arr["subject"],
                             text, text_score)


# --------------------------------------------------------------------------------------------
# the contract
# --------------------------------------------------------------------------------------------
class GenerativeModel:
    """Base of every family. Subclasses set `family`, `defaults` and implement
    `build`, `generate` (and `train_step` when one loss and one optimizer don't fit)."""

    family: ClassVar[str] = "base"
    defaults: ClassVar[dict] = {}

    def __init__(self, spec: DataSpec, **hparams):
        unknown = set(hparams) - set(self.defaults) - {"lr", "batch_size", "weight_decay", "grad_clip", "ema"}
        if unknown:
            raise ModelError(f"{self.family}: unknown hyper-parameter(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        self.spec = spec
        self.hparams = {"lr": 2e-4, "batch_size": 32, "weight_decay": 0.0, "grad_clip": 1.0, "ema": 0.0,
                        **self.defaults, **hparams}
        self.nets: dict[str, nn.Module] = self.build()
        self.step = 0
        # exponential moving average of the weights (used for sampling when ema > 0): on tiny
        # data and short CPU budgets it removes most of the step-to-step noise of the weights
        self.ema: dict[str, dict[str, torch.Tensor]] = {}

    # ---- weight averaging --------------------------------------------------------------------
    @torch.no_grad()
    def ema_update(self, nets: dict[str, nn.Module] | None = None) -> None:
        decay = float(self.hparams["ema"])
        if decay <= 0:
            return
        for k, net in (nets or self.nets).items():
            sd = net.state_dict()
            if k not in self.ema:
                self.ema[k] = {n: t.detach().clone().float() for n, t in sd.items()}
                continue
            # warm-up: average from the start instead of from the random initialisation
            d = min(decay, (1 + self.step) / (10 + self.step))
            for n, t in sd.items():
                e = self.ema[k][n]
                if t.dtype.is_floating_point:
                    e.mul_(d).add_(t.detach().float(), alpha=1 - d)
                else:
                    e.copy_(t)

    def averaged(self):
        """Context in which the nets hold their EMA weights (a no-op without EMA)."""
        import contextlib

        @contextlib.contextmanager
        def ctx():
            if not self.ema:
                yield
                return
            saved = {k: {n: t.detach().clone() for n, t in net.state_dict().items()} for k, net in self.nets.items()}
            for k, net in self.nets.items():
                if k in self.ema:
                    net.load_state_dict({n: self.ema[k][n].to(t.dtype) for n, t in net.state_dict().items()})
            try:
                yield
            finally:
                for k, net in self.nets.items():
                    net.load_state_dict(saved[k])

        return ctx()

    # ---- to implement ---------------------------------------------------------------------
    def build(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def loss(self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Training loss of one batch (single-optimizer families)."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, exercise: torch.Tensor, score: torch.Tensor, length: int, generator: torch.Generator,
                 **kwargs) -> torch.Tensor:
        """Standardised motion (n, length, J*3) for conditions exercise (n,) long, score (n,) in [0, 1]."""
        raise NotImplementedError

    # ---- training hooks (defaults: one optimizer over all nets, one loss) ------------------
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = [p for net in self.nets.values() for p in net.parameters()]
        return {"main": torch.optim.AdamW(params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])}

    def train_step(self, nets, optimizers, batch, accelerator) -> dict:
        opt = optimizers["main"]
        loss, logs = self.loss(nets, batch)
        accelerator.backward(loss)
        if self.hparams["grad_clip"]:
            accelerator.clip_grad_norm_([p for n in nets.values() for p in n.parameters()], self.hparams["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach()), **logs}

    # ---- public API ---------------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, ds: Dataset, preprocess: PreprocessConfig | None = None, max_len: int = 80,
                     score_name: str = "TS", **hparams) -> tuple["GenerativeModel", TrainArrays]:
        spec, arrays = prepare_data(ds, preprocess or PreprocessConfig(fps=5.0), max_len, score_name,
                                    text_encoder=hparams.get("text_encoder", ""))
        return cls(spec, **hparams), arrays

    def fit(self, ds: Dataset | TrainArrays, steps: int = 1000, seed: int = 0, out_dir: str | Path | None = None,
            **train_kwargs) -> "GenerativeModel":
        from rehabgen.train import train

        arrays = ds if isinstance(ds, TrainArrays) else prepare_data(
            ds, PreprocessConfig(**self.spec.preprocess) if self.spec.preprocess else PreprocessConfig(),
            self.spec.max_len, self.spec.score_name, self.spec.normalizer, self.spec.text_encoder)[1]
        train(self, arrays, steps=steps, seed=seed, out_dir=out_dir, **train_kwargs)
        return self

    def conditions(self, exercise, score, n: int) -> tuple[torch.Tensor, torch.Tensor, list[str], np.ndarray]:
        names = [exercise] * n if isinstance(exercise, str) else list(exercise)
        if len(names) != n:
            raise ModelError(f"got {len(names)} exercises for n={n} samples")
        idx = []
        for e in names:
            if e not in self.spec.exercises:
                raise ModelError(f"unknown exercise {e!r}; this model knows {list(self.spec.exercises)}")
            idx.append(self.spec.exercises.index(e))
        unit, sc = self.unit_scores(score, n)
        return torch.tensor(idx, dtype=torch.long), unit, names, sc

    def unit_scores(self, score, n: int) -> tuple[torch.Tensor, np.ndarray]:
        """Scores (scalar or (n,), None/NaN = unknown) -> (unit scores (n,), checked raw scores)."""
        sc = np.broadcast_to(np.asarray(np.nan if score is None else score, np.float32), (n,)).copy()
        lo, hi = self.spec.normalizer.score_lo, self.spec.normalizer.score_hi
        bad = np.isfinite(sc) & ((sc < lo - 1e-6) | (sc > hi + 1e-6))
        if bad.any():
            raise ModelError(f"score {sc[bad][0]:g} outside the {self.spec.score_name} range [{lo:g}, {hi:g}]")
        return torch.from_numpy(self.spec.normalizer.score_to_unit(sc)), sc

    def sample(self, exercise: str | list[str], score: float | np.ndarray | None = None, length: int | None = None,
               n: int = 1, seed: int = 0, batch_size: int = 64, **kwargs) -> np.ndarray:
        """Positions (n, T, J, 3) in metres. score None = unconditional on score."""
        ex, sc, names, _ = self.conditions(exercise, score, n)
        if length is None:
            length = self.spec.default_length[names[0]]
        if not 2 <= length <= self.spec.max_len:
            raise ModelError(f"length {length} outside [2, {self.spec.max_len}] frames (at {self.spec.fps:g} fps)")
        for net in self.nets.values():
            net.eval()
        gen = torch.Generator().manual_seed(int(seed))
        out = []
        with self.averaged():
            for i in range(0, n, batch_size):
                z = self.generate(ex[i:i + batch_size], sc[i:i + batch_size], int(length), gen, **kwargs)
                out.append(z.float().cpu().numpy())
        return self.spec.normalizer.decode(np.concatenate(out))

    def sample_text(self, text: str | list[str], n: int = 1, length: int | None = None, seed: int = 0,
                    exercise: str | None = None, score: float | None = None, **kwargs) -> np.ndarray:
        """Positions (n, T, J, 3) from a free-text description (labels optional, usually left free)."""
        texts = [text] * n if isinstance(text, str) else list(text)
        if len(texts) != n:
            raise ModelError(f"got {len(texts)} texts for n={n} samples")
        emb, sc = self.text_conditions(texts, score)
        if exercise is None:
            ex = torch.full((n,), len(self.spec.exercises), dtype=torch.long)  # the null label
        else:
            ex = self.conditions(exercise, None, n)[0]
        length = length or int(np.median(list(self.spec.default_length.values())))
        if not 2 <= length <= self.spec.max_len:
            raise ModelError(f"length {length} outside [2, {self.spec.max_len}] frames (at {self.spec.fps:g} fps)")
        for net in self.nets.values():
            net.eval()
        gen = torch.Generator().manual_seed(int(seed))
        with self.averaged():
            z = self.generate(ex, sc, int(length), gen, text=emb, **kwargs)
        return self.spec.normalizer.decode(z.float().cpu().numpy())

    def sample_timeline(self, texts: list[str], n: int = 1, length: int | None = None, seed: int = 0,
                        score: float | None = None, overlap: int | None = None, **kwargs) -> np.ndarray:
        """Positions (n, T, J, 3) of one movement per description, in order ("raise the arms",
        then "squat down"): new exercises composed from known movements. The segments share
        `length` frames equally (default: each as long as a window allows); each reads its own
        quality unless `score` is given."""
        if self.family != "diffusion":
            raise ModelError(f"timelines of descriptions need a diffusion model, not {self.family!r}")
        texts = [str(t) for t in texts]
        if not texts:
            raise ModelError("a timeline needs at least one description")
        emb, unit = self.text_conditions(texts, score)  # (k, D_text), (k,)
        k = len(texts)
        if length is None:
            length = k * min(int(np.median(list(self.spec.default_length.values()))), self.spec.max_len)
        if length < 2 * k:
            raise ModelError(f"length {length} is too short for {k} segments")
        bounds = np.linspace(0, length, k + 1).round().astype(int)
        segments = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        ex = torch.full((k, n), len(self.spec.exercises), dtype=torch.long)  # text only: the null label
        for net in self.nets.values():
            net.eval()
        gen = torch.Generator().manual_seed(int(seed))
        with self.averaged():
            z = self.generate(ex, unit[:, None].expand(k, n).contiguous(), int(length), gen,
                              text=emb[:, None].expand(k, n, -1).contiguous(), segments=segments, overlap=overlap,
                              **kwargs)
        return self.spec.normalizer.decode(z.float().cpu().numpy())

    def text_conditions(self, texts: list[str], score: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (embeddings of the words other than the quality (n, D_text), unit scores (n,)):
        the quality the text states, or `score` when given."""
        if not self.spec.text_encoder:
            raise ModelError(f"this {self.family} model was trained without text; train it with `--text`")
        from rehabgen.text.encoder import get_encoder

        _, stated, rest = self.read_text(texts)
        emb = torch.from_numpy(get_encoder(self.spec.text_encoder).encode(rest))
        return emb, torch.from_numpy(stated) if score is None else self.unit_scores(score, len(texts))[0]

    def timeline_overlap(self) -> int:
        """Frames made anew around each seam of a timeline: 1.5 s, at most max_len/4."""
        return min(int(round(1.5 * self.spec.fps)), self.spec.max_len // 4)

    def read_text(self, texts: list[str]) -> tuple[list[str | None], np.ndarray, list[str]]:
        """What the texts state about quality: band per text (None: nothing stated), the unit
        score it stands for (NaN where nothing is stated, or for models without a reader) and
        the texts without their quality clauses (what the denoiser was trained to read)."""
        texts = [str(t) for t in texts]
        if not self.spec.text_reader:
            return [None] * len(texts), np.full(len(texts), np.nan, np.float32), texts
        from rehabgen.text.reader import AttributeReader

        bands, _, rest = AttributeReader.from_dict(self.spec.text_reader["quality"]).split(texts)
        table = self.spec.text_reader["band_scores"]
        return bands, np.array([np.nan if b is None else table[b] for b in bands], np.float32), rest

    def body(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised (..., J*3) -> normalised body (..., J, 3), differentiable (geometric losses)."""
        n = self.spec.normalizer
        x = z * torch.as_tensor(n.std, device=z.device) + torch.as_tensor(n.mean, device=z.device)
        return x.reshape(*z.shape[:-1], -1, 3)

    def n_parameters(self) -> int:
        return sum(p.numel() for net in self.nets.values() for p in net.parameters())

    # ---- persistence: safetensors weights + JSON metadata --------------------------------------
    def metadata(self) -> dict:
        return {"format_version": FORMAT_VERSION, "family": self.family, "hparams": self.hparams,
                "step": self.step, "spec": self.spec.to_dict()}

    def save(self, path: str | Path) -> Path:
        """Write `model.safetensors` + `model.json` into the folder `path`, atomically."""
        tensors = {f"{k}.{n}": t for k, net in self.nets.items() for n, t in net.state_dict().items()}
        tensors.update({f"ema.{k}.{n}": t for k, sd in self.ema.items() for n, t in sd.items()})
        return save_weights_dir(path, "model", tensors, self.metadata())

    @classmethod
    def load(cls, path: str | Path) -> "GenerativeModel":
        from rehabgen.models import get_family

        meta, tensors = read_checkpoint(path)
        family = get_family(meta["family"]) if cls is GenerativeModel else cls
        if family.family != meta["family"]:
            raise ModelError(f"{path}: holds a {meta['family']!r} model, not {family.family!r}")
        hp = {k: v for k, v in meta["hparams"].items()}
        model = family(DataSpec.from_dict(meta["spec"]), **hp)
        model.load_tensors(tensors, source=str(path))
        model.step = int(meta.get("step", 0))
        return model

    def load_tensors(self, tensors: dict[str, torch.Tensor], source: str = "") -> None:
        self.ema = {}
        for k in self.nets:
            e = {n[len(k) + 5:]: t.float().clone() for n, t in tensors.items() if n.startswith(f"ema.{k}.")}
            if e:
                self.ema[k] = e
        for k, net in self.nets.items():
            sd = {n[len(k) + 1:]: t for n, t in tensors.items() if n.startswith(k + ".")}
            try:
                net.load_state_dict(sd, strict=True)
            except RuntimeError as e:
                raise ModelError(f"{source}: weights don't fit the {self.family} network '{k}' ({str(e)[:200]})") from None


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    mj, mw = path / "model.json", path / "model.safetensors"
    if not mj.is_file() or not mw.is_file():
        raise ModelError(f"{path}: not a model folder (needs model.json and model.safetensors)")
    try:
        meta = json.loads(mj.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{mj}: not valid JSON ({e.msg})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{mj}: format version {meta.get('format_version')} not supported (expected {FORMAT_VERSION}; "
                         "models saved by rehabgen before the smooth score embedding must be retrained)")
    try:
        tensors = load_file(mw)
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{mw}: unreadable weights ({e})") from None
    return meta, tensors


def unit_score_nan_to_mask(score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(score with NaN replaced by 0, bool mask of where a score is known)."""
    known = torch.isfinite(score)
    return torch.where(known, score, torch.zeros_like(score)), known


def cosine_warmup(step: int, total: int, warmup: int = 100) -> float:
    if step < warmup:
        return (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
