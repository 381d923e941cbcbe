"""Reading what a description states about *how* the exercise is performed.

A pooled sentence embedding is dominated by *what* the exercise is ("raise both arms...");
a quality clause ("done poorly") barely moves it, so a denoiser conditioned on the embedding
alone learns the exercise from words but hardly the quality. The reader makes the quality
explicit: a softmax regression over frozen embeddings of single clauses, trained on the
corpus's training phrases (bands high/mid/low, and "none" for clauses that describe the
movement or its speed). A text's reading pools its clauses, weighted by how sure each clause
is to state a quality at all. Text-conditioned models then route the stated band into their
score condition, the control that the score-conditioned training already makes reliable.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import torch

from rehabgen.text.corpus import DESCRIPTIONS, QUALITY, SPEED
from rehabgen.text.encoder import get_encoder

NONE = "none"
_SPLIT = re.compile(r"[,;.:!?]|\s+(?:and then|but|while|then)\s+")


def clauses(text: str) -> list[str]:
    """'raise the arms, slowly; done poorly' -> ['raise the arms', 'slowly', 'done poorly']."""
    parts = [p.strip() for p in _SPLIT.split(str(text).lower())]
    return [p for p in parts if p]


class AttributeReader:
    """Per-clause softmax regression over frozen sentence embeddings; labels[-1] is "none"."""

    def __init__(self, labels: list[str], weight: np.ndarray, bias: np.ndarray, encoder: str):
        if labels[-1] != NONE:
            raise ValueError(f"the last label must be {NONE!r}, got {labels}")
        self.labels, self.encoder = list(labels), encoder
        self.weight = np.asarray(weight, np.float32)  # (L, D)
        self.bias = np.asarray(bias, np.float32)  # (L,)

    @classmethod
    def fit(cls, items: list[tuple[str, str]], labels: list[str], encoder: str = "minilm",
            l2: float = 1e-4) -> "AttributeReader":
        """items: (clause, label). Balanced classes, L2 penalty, LBFGS from zero: a convex problem
        with one optimum, so the reader is the same on every machine and run."""
        x = torch.from_numpy(get_encoder(encoder).encode([c for c, _ in items])).double()
        y = torch.tensor([labels.index(lab) for _, lab in items])
        counts = torch.bincount(y, minlength=len(labels)).double()
        if (counts == 0).any():
            raise ValueError(f"no training clause for label(s) {[l for l, c in zip(labels, counts) if c == 0]}")
        class_w = counts.sum() / (len(labels) * counts)
        w = torch.zeros(len(labels), x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(labels), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w.T + b, y, weight=class_w) + l2 * (w ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(labels, w.detach().numpy(), b.detach().numpy(), encoder)

    def clause_probs(self, texts: list[str]) -> np.ndarray:
        """(n, L) label probabilities of single clauses."""
        logits = get_encoder(self.encoder).encode(texts) @ self.weight.T + self.bias
        logits = logits - logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    def read(self, texts: list[str], threshold: float = 0.5) -> tuple[list[str | None], np.ndarray]:
        """Per text: the stated label (None if no clause states one with probability >= threshold)
        and the pooled probabilities (n, L-1) over the stated labels (NaN where nothing is stated)."""
        labels, pooled, _ = self.split(texts, threshold)
        return labels, pooled

    def split(self, texts: list[str], threshold: float = 0.5) -> tuple[list[str | None], np.ndarray, list[str]]:
        """`read`, plus each text without the clauses that state the label (the text itself if
        every clause does), so a model can take the label and the rest of the words apart."""
        parts = [clauses(t) or [str(t).strip().lower()] for t in texts]
        flat = sorted({c for ps in parts for c in ps})
        probs = dict(zip(flat, self.clause_probs(flat)))
        out, rest, pooled = [], [], np.full((len(texts), len(self.labels) - 1), np.nan)
        for i, (t, ps) in enumerate(zip(texts, parts)):
            P = np.stack([probs[c] for c in ps])  # (clauses, L)
            stated = 1.0 - P[:, -1]  # how sure each clause is to state anything
            if stated.max() < threshold:
                out.append(None)
                rest.append(str(t))
                continue
            q = (stated[:, None] * P[:, :-1]).sum(0)
            pooled[i] = q / q.sum()
            out.append(self.labels[int(q.argmax())])
            rest.append(", ".join(c for c, s in zip(ps, stated) if s < threshold) or str(t))
        return out, pooled, rest

    def to_dict(self) -> dict:
        return {"labels": self.labels, "encoder": self.encoder, "weight": np.round(self.weight, 6).tolist(),
                "bias": np.round(self.bias, 6).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "AttributeReader":
        return cls(d["labels"], np.asarray(d["weight"]), np.asarray(d["bias"]), d["encoder"])


def quality_items(split: str = "train") -> list[tuple[str, str]]:
    """(clause, band) pairs for the quality reader: every clause of every quality phrase (and
    the whole phrase) gives its band; every clause of the descriptions and speed phrases gives
    "none", so a clause about the movement itself is not read as a quality."""
    items = {(c, NONE) for d in DESCRIPTIONS.values() for t in d[split] for c in clauses(t)}
    items |= {(c, NONE) for s in SPEED.values() for t in s[split] for c in clauses(t)}
    for band, q in QUALITY.items():
        items |= {(c, band) for t in q[split] for c in [*clauses(t), t.lower()]}
    return sorted(items)


@lru_cache(maxsize=4)
def quality_reader(encoder: str = "minilm") -> AttributeReader:
    """The reader of quality bands, trained on the corpus's training phrases only."""
    return AttributeReader.fit(quality_items("train"), [*QUALITY, NONE], encoder)
