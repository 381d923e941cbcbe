"""What a model knows about its data: the normaliser (features <-> metres), the data spec saved
with every model, and `prepare_data`, which turns a dataset into the padded training arrays.

Everything about data lives here so that all families see the same data and return the same
thing: positions (n, T, J, 3) in metres in the dataset's skeleton.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rehabgen.data.dataset import DataError, Dataset, score_range
from rehabgen.preprocess import PreprocessConfig, augment_dataset, preprocess_dataset, to_arrays
from rehabgen.skeleton import Skeleton
from rehabgen.text.conditioning import training_texts


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
        lo, hi = score_range(score_name, score)
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
    preprocess: PreprocessConfig
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
                "normalizer": self.normalizer.to_dict(), "preprocess": self.preprocess.to_dict(),
                "text_encoder": self.text_encoder, "text_dim": self.text_dim, "text_reader": self.text_reader}

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        sk = Skeleton.from_dict(d["skeleton"])
        return cls(sk, tuple(d["exercises"]), float(d["fps"]), int(d["max_len"]),
                   {k: int(v) for k, v in d["default_length"].items()}, d["score_name"],
                   Normalizer.from_dict(d["normalizer"]), PreprocessConfig.from_dict(d["preprocess"]), sk.bones, d.get("text_encoder", ""),
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
                 seed: int = 0, augment: str = "") -> tuple[DataSpec, TrainArrays]:
    """Preprocess a dataset and turn it into standardised, padded arrays plus its DataSpec
    (`augment`: training copies, see `augment_dataset`; typical lengths come from the originals)."""
    if len(ds) == 0:
        raise DataError("no sequences to train on")
    pre, tfs = preprocess_dataset(ds, pcfg)
    n_orig = len(pre.sequences)
    pre = augment_dataset(pre, augment, max_len)
    arr = to_arrays(pre, length=max_len, score=score_name)
    if normalizer is None:
        ref_scale = float(np.median([t.scale for t in tfs]))
        ref_offset = np.median(np.array([t.offset for t in tfs]), axis=0)
        normalizer = Normalizer.fit(arr["x"], arr["mask"], ref_scale, ref_offset, arr["score"], score_name)
    z = normalizer.encode(arr["x"])
    z = z * np.repeat(arr["mask"], 3, axis=-1)  # unknown values are exactly 0 (the data mean)
    default_length = {}
    lengths, exercise = arr["lengths"][:n_orig], arr["exercise"][:n_orig]
    for e, name in enumerate(pre.exercises):
        ls = lengths[exercise == e]
        default_length[name] = int(np.median(ls)) if ls.size else int(np.median(lengths))
    score = normalizer.score_to_unit(arr["score"])
    text = text_score = None
    text_dim, reader_meta = 0, {}
    if text_encoder:  # the optional text hook: descriptions from the corpus, quality read out of them
        text, text_score, text_dim, reader_meta = training_texts(pre, arr["exercise"], score, text_encoder,
                                                                text_variants, seed)
    spec = DataSpec(ds.skeleton, pre.exercises, pre.fps, max_len, default_length, score_name, normalizer,
                    pcfg, ds.skeleton.bones, text_encoder, text_dim, reader_meta)
    return spec, TrainArrays(z, arr["mask"], arr["observed"], arr["lengths"], arr["exercise"], score, arr["subject"],
                             text, text_score)
