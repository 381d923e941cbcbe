"""Text-motion retrieval evaluator (TMR-like) and the text-to-motion metrics.

A motion encoder (temporal-conv FCN on the evaluator inputs) and a text projection (MLP on the
frozen sentence embedding) are trained contrastively (symmetric InfoNCE) on real training
sequences paired with corpus descriptions. Metrics, as in the HumanML3D protocol:
- R-precision top-k: in groups of 32 (text, motion) pairs, the share of texts whose own motion
  is among the k nearest of the 32 motions;
- MM-distance: mean distance between a text's embedding and its motion's embedding;
- text-FID: FID between motion embeddings of real and generated sequences.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rehabgen.data.dataset import DataError, Dataset
from rehabgen.metrics.distribution import fid
from rehabgen.metrics.evaluator import FCN, augment, eval_inputs


def sequence_texts(ds: Dataset, score_lo: float, score_hi: float, k: int, split: str, seed: int,
                   p_quality: float = 0.7, p_speed: float = 0.4) -> list[list[str]]:
    """k descriptions per sequence from the corpus (`split` 'train' or held-out 'test')."""
    from rehabgen.text.corpus import describe

    frames = np.array([s.n_frames for s in ds.sequences], np.float64)
    typical = {e: np.median([f for f, s in zip(frames, ds.sequences) if s.exercise == e]) for e in ds.exercises
               if any(s.exercise == e for s in ds.sequences)}
    rng = np.random.default_rng(seed)
    out = []
    for f, s in zip(frames, ds.sequences):
        u = (s.score("TS") - score_lo) / (score_hi - score_lo)
        out.append([describe(s.exercise, u, f / typical[s.exercise], rng, split, p_quality, p_speed) for _ in range(k)])
    return out


class Retrieval(nn.Module):
    def __init__(self, channels: int, text_dim: int, emb: int = 128):
        super().__init__()
        self.motion = FCN(channels, emb)
        self.text = nn.Sequential(nn.Linear(text_dim, 256), nn.ReLU(), nn.Linear(256, emb))
        self.log_temp = nn.Parameter(torch.tensor(np.log(0.1), dtype=torch.float32))

    def embed_motion(self, x):
        return nn.functional.normalize(self.motion(x), dim=-1)

    def embed_text(self, t):
        return nn.functional.normalize(self.text(t), dim=-1)


class TextMotionEvaluator:
    """Fit on real training data; embeds motions (evaluator inputs) and texts (sentence embeddings)."""

    def __init__(self, net: Retrieval, mean, std, encoder: str, config: dict):
        self.net, self.mean, self.std, self.encoder, self.config = net, mean, std, encoder, config

    @classmethod
    def fit(cls, train_ds: Dataset, encoder: str = "minilm", steps: int = 600, seed: int = 0, k: int = 8,
            score_range: tuple[float, float] = (0.0, 50.0)) -> "TextMotionEvaluator":
        from rehabgen.text.encoder import get_encoder

        enc = get_encoder(encoder)
        x, _, _ = eval_inputs(train_ds)
        mean = x.reshape(-1, x.shape[-1]).mean(0)
        std = x.reshape(-1, x.shape[-1]).std(0) + 1e-3
        texts = sequence_texts(train_ds, *score_range, k=k, split="train", seed=seed)
        T = enc.encode([t for ts in texts for t in ts]).reshape(len(texts), k, -1)
        with torch.random.fork_rng(devices=[]):  # the initial weights follow `seed`; the caller's RNG is untouched
            torch.manual_seed(seed)
            net = Retrieval(x.shape[-1], enc.dim)
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        X, TT = torch.from_numpy((x - mean) / std).float(), torch.from_numpy(T)
        if len(X) < 4:
            raise DataError(f"too few sequences ({len(X)}) to train the text-motion evaluator")
        net.train()
        for _ in range(steps):
            idx = torch.randperm(len(X), generator=g)[:32]
            kk = torch.randint(0, k, (len(idx),), generator=g)
            m = net.embed_motion(augment(X[idx], g))
            t = net.embed_text(TT[idx, kk])
            logits = m @ t.T / net.log_temp.exp()
            lab = torch.arange(len(idx))
            loss = 0.5 * (nn.functional.cross_entropy(logits, lab) + nn.functional.cross_entropy(logits.T, lab))
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        return cls(net, mean, std, encoder, {"steps": steps, "seed": seed, "k": k, "score_range": list(score_range)})

    def embed_motion(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net.embed_motion(torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))).numpy()

    def embed_text(self, texts: list[str]) -> np.ndarray:
        from rehabgen.text.encoder import get_encoder

        with torch.no_grad():
            return self.net.embed_text(torch.from_numpy(get_encoder(self.encoder).encode(texts))).numpy()

    def save(self, path: str | Path) -> Path:
        from rehabgen.io import save_weights_dir

        meta = {"mean": self.mean.tolist(), "std": self.std.tolist(), "encoder": self.encoder, "config": self.config}
        return save_weights_dir(path, "retrieval", self.net.state_dict(), meta)

    @classmethod
    def load(cls, path: str | Path) -> "TextMotionEvaluator":
        from safetensors.torch import load_file

        from rehabgen.text.encoder import get_encoder

        path = Path(path)
        meta = json.loads((path / "retrieval.json").read_text())
        net = Retrieval(len(meta["mean"]), get_encoder(meta["encoder"]).dim)
        net.load_state_dict(load_file(path / "retrieval.safetensors"))
        net.eval()
        return cls(net, np.array(meta["mean"], np.float32), np.array(meta["std"], np.float32), meta["encoder"],
                   meta["config"])

    @classmethod
    def cached(cls, train_ds: Dataset, cache_dir: str | Path, **fit_kwargs) -> "TextMotionEvaluator":
        from rehabgen.metrics.evaluator import data_key, load_or_fit

        d = Path(cache_dir) / data_key(train_ds, {"retrieval": {k: str(v) for k, v in fit_kwargs.items()}})
        return load_or_fit(d, "retrieval.json", cls.load, lambda: cls.fit(train_ds, **fit_kwargs))[0]


def r_precision(text_emb: np.ndarray, motion_emb: np.ndarray, group: int = 32, top: int = 3,
                rng: np.random.Generator | None = None) -> dict[str, float]:
    """Pairs (text_i, motion_i): in random groups of `group`, the share of texts whose motion is
    within the `k` nearest motions (Euclidean), k = 1..top; and MM-distance over all pairs."""
    t, m = np.asarray(text_emb), np.asarray(motion_emb)
    if t.shape != m.shape or len(t) < 2:
        raise ValueError(f"need matching (n, d) text and motion embeddings, n >= 2; got {t.shape} and {m.shape}")
    rng = rng or np.random.default_rng(0)
    order = rng.permutation(len(t))
    hits = np.zeros(top)
    n = 0
    for s in range(0, len(t), group):
        idx = order[s:s + group]
        if len(idx) < 2:
            continue
        d = np.linalg.norm(t[idx][:, None] - m[idx][None], axis=-1)  # (g, g)
        rank = (d < d[np.arange(len(idx)), np.arange(len(idx))][:, None]).sum(1)  # 0 = nearest
        for k in range(top):
            hits[k] += (rank <= k).sum()
        n += len(idx)
    out = {f"r_precision_top{k + 1}": float(hits[k] / n) for k in range(top)}
    out["mm_distance"] = float(np.linalg.norm(t - m, axis=-1).mean())
    return out


def text_fid(real_motion_emb: np.ndarray, gen_motion_emb: np.ndarray) -> float:
    return fid(real_motion_emb, gen_motion_emb)
