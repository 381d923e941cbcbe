"""Timelines of descriptions: one movement per text, in order ("raise the arms", then "squat
down"), so new exercises are composed from known movements. Only for families that declare
`capabilities.timeline` (their `generate_timeline` denoises each segment under its own text and
in-betweens the seams)."""

from __future__ import annotations

import numpy as np
import torch

from rehabgen.models.base import GenerativeModel
from rehabgen.models.options import SamplerOptions
from rehabgen.models.spec import DataSpec, ModelError


def timeline_overlap(spec: DataSpec) -> int:
    """Frames made anew around each seam of a timeline: 1.5 s, at most max_len/4."""
    return min(int(round(1.5 * spec.fps)), spec.max_len // 4)


def sample_timeline(model: GenerativeModel, texts: list[str], n: int = 1, length: int | None = None, seed: int = 0,
                    score: float | None = None, overlap: int | None = None,
                    options: SamplerOptions | None = None) -> np.ndarray:
    """Positions (n, T, J, 3). The segments share `length` frames equally (default: each as long
    as a window allows); each reads its own quality unless `score` is given."""
    if not model.capabilities.timeline:
        raise ModelError(f"timelines of descriptions need a family that can compose them (diffusion), "
                         f"not {model.family!r}")
    texts = [str(t) for t in texts]
    if not texts:
        raise ModelError("a timeline needs at least one description")
    options = model.check_options(options)
    emb, unit = model.text_conditions(texts, score)  # (k, D_text), (k,)
    spec, k = model.spec, len(texts)
    if length is None:
        length = k * min(int(np.median(list(spec.default_length.values()))), spec.max_len)
    if length < 2 * k:
        raise ModelError(f"length {length} is too short for {k} segments")
    bounds = np.linspace(0, length, k + 1).round().astype(int)
    segments = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    check_segments(spec, segments, int(length))
    ex = torch.full((k, n), len(spec.exercises), dtype=torch.long)  # text only: the null label
    gen = torch.Generator().manual_seed(int(seed))
    dev = model.device
    with model.inference():
        z = model.generate_timeline(ex.to(dev), unit[:, None].expand(k, n).contiguous().to(dev),
                                    emb[:, None].expand(k, n, -1).contiguous().to(dev), segments, int(length), gen, options,
                                    timeline_overlap(spec) if overlap is None else int(overlap))
    return spec.normalizer.decode(z.float().cpu().numpy())


def check_segments(spec: DataSpec, segments: list[tuple[int, int]], length: int) -> None:
    bounds = [a for a, _ in segments] + [segments[-1][1]]
    if bounds[0] != 0 or bounds[-1] != length or any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise ModelError(f"segments {segments} must be consecutive, non-empty and cover 0..{length}")
    long = [(a, b) for a, b in segments if b - a > spec.max_len]
    if long:
        raise ModelError(f"segment {long[0][0]}:{long[0][1]} is longer than the {spec.max_len} frames this "
                         "model generates at once")
