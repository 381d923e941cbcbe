"""Completion of incomplete sequences (lost joints, dropped frames) by inpainting, for every
family that declares `capabilities.inpaint`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from rehabgen.data.dataset import Dataset, Sequence
from rehabgen.models.base import GenerativeModel
from rehabgen.models.options import SamplerOptions
from rehabgen.models.spec import ModelError
from rehabgen.preprocess import preprocess_dataset


def complete_sequence(model: GenerativeModel, seq: Sequence, fps: float, seed: int = 0,
                      drop_frames: tuple[int, int] | None = None, options: SamplerOptions | None = None) -> dict:
    """Fill what the data layer marked invalid, keeping every observed value.

    Returns positions (T, J, 3) in the sequence's own camera coordinates at the model's frame
    rate, `known` (T, J) (what was kept) and `observed` (the input's positions, NaN where missing).
    """
    if not model.capabilities.inpaint:
        raise ModelError(f"completion needs a family that can inpaint (diffusion), this run holds a {model.family!r} model")
    options = model.check_options(options)
    spec = model.spec
    if seq.exercise not in spec.exercises:
        raise ModelError(f"{seq.source}: exercise {seq.exercise!r} unknown to the model ({list(spec.exercises)})")
    pcfg = replace(spec.preprocess, max_gap=0, length=None)  # what is missing stays missing: it is generated
    pre, tfs = preprocess_dataset(Dataset(spec.skeleton, [seq], exercises=spec.exercises, fps=fps), pcfg)
    s, tf = pre.sequences[0], tfs[0]
    known = s.valid & np.isfinite(s.positions).all(-1)
    if drop_frames is not None:
        a, b = drop_frames
        if not 0 <= a < b <= s.n_frames:
            raise ModelError(f"--drop {a}:{b} outside the sequence's {s.n_frames} frames (at {spec.fps:g} fps)")
        known[a:b] = False
    z = spec.normalizer.encode(np.nan_to_num(s.positions))
    z = z * np.repeat(known, 3, axis=-1)
    T = s.n_frames
    ex = torch.tensor([spec.exercises.index(seq.exercise)])
    unit = model.unit_scores(float(seq.score(spec.score_name)), 1)
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same noise on every device
    dev = model.device
    out = np.empty_like(z)
    L = spec.max_len
    with model.inference():
        for a in range(0, T, L):  # long recordings: window by window
            b = min(T, a + L)
            if b - a < 2:
                out[a:b] = z[a:b]
                continue
            res = model.inpaint(ex.to(dev), unit.to(dev), torch.from_numpy(z[None, a:b]).to(dev),
                                torch.from_numpy(known[None, a:b]).to(dev), gen, options)
            out[a:b] = res[0].float().cpu().numpy()
    body = spec.normalizer.decode_body(out)
    positions = tf.invert(body).astype(np.float32)
    observed = np.where(known[..., None], tf.invert(s.positions), np.nan).astype(np.float32)
    return {"positions": positions, "known": known, "observed": observed, "sequence": replace(s, positions=positions)}
