"""The text hook of the model contract: what a text-conditioned model trains on and reads.

Only models trained with a sentence encoder come here; the contract itself works for any
dataset and any exercise names. Training: every sequence gets K descriptions from the corpus
(`describe`), the quality reader takes the stated quality out of each, the denoiser reads the
rest of the words and gets the score exactly where a quality was stated, as at sampling time.
(With the quality left in the words, the denoiser learned it from them, barely, and ignored
the score.)
"""

from __future__ import annotations

import numpy as np

from rehabgen.data.dataset import DataError, Dataset
from rehabgen.text.corpus import DESCRIPTIONS, QUALITY, describe, quality_band
from rehabgen.text.encoder import get_encoder
from rehabgen.text.reader import AttributeReader, quality_reader

BAND_CENTRES = {"high": 0.875, "mid": 0.625, "low": 0.25}  # unit score of a band with no training sequence


def training_texts(pre: Dataset, exercise: np.ndarray, unit_score: np.ndarray, encoder: str, variants: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, int, dict]:
    """K = `variants` embedded descriptions per sequence of a preprocessed dataset.

    Returns text (N, K, D) embeddings of the words other than the quality, text_score (N, K)
    (the unit score where description k states a quality, else NaN), D, and the reader's
    metadata saved with the model: {"quality": reader, "band_scores": {band: unit score}}.
    """
    unknown = sorted(set(pre.exercises) - set(DESCRIPTIONS))
    if unknown:
        raise DataError(f"text conditioning needs descriptions of every exercise; the corpus has none for {unknown} "
                        f"(it covers {list(DESCRIPTIONS)}); train without text")
    enc = get_encoder(encoder)
    full = np.array([s.n_frames for s in pre.sequences], np.float64)  # before cropping
    typical = {e: np.median(full[exercise == k]) for k, e in enumerate(pre.exercises)}
    rng = np.random.default_rng(seed)
    sentences = [describe(s.exercise, float(u), full[i] / typical[s.exercise], rng, "train")
                 for i, (s, u) in enumerate(zip(pre.sequences, unit_score)) for _ in range(variants)]
    reader = quality_reader(encoder)
    bands, _, rest = reader.split(sentences)
    n = len(pre.sequences)
    text = enc.encode(rest).reshape(n, variants, -1)
    stated = np.array([b is not None for b in bands]).reshape(n, -1)
    text_score = np.where(stated, unit_score[:, None], np.nan).astype(np.float32)
    seq_bands = np.array([quality_band(u) for u in unit_score])
    band_scores = {b: float(np.median(unit_score[seq_bands == b])) if (seq_bands == b).any() else BAND_CENTRES[b]
                   for b in QUALITY}
    return text, text_score, enc.dim, {"quality": reader.to_dict(), "band_scores": band_scores}


def read_quality(text_reader: dict, texts: list[str]) -> tuple[list[str | None], np.ndarray, list[str]]:
    """What the texts state about quality: band per text (None: nothing stated), the unit score
    it stands for (NaN where nothing is stated, or for models without a reader) and the texts
    without their quality clauses (what the denoiser was trained to read)."""
    texts = [str(t) for t in texts]
    if not text_reader:
        return [None] * len(texts), np.full(len(texts), np.nan, np.float32), texts
    bands, _, rest = AttributeReader.from_dict(text_reader["quality"]).split(texts)
    table = text_reader["band_scores"]
    return bands, np.array([np.nan if b is None else table[b] for b in bands], np.float32), rest


def embed(encoder: str, texts: list[str]) -> np.ndarray:
    """(n, D) sentence embeddings with the model's frozen encoder."""
    return get_encoder(encoder).encode(texts)
