"""Distribution metrics on evaluator features (n, d): fidelity and diversity of a sample set.

Definitions follow the IRIMAS unified framework (Ismail-Fawaz et al., CVIU 2025), Naeem et
al. 2020 (density, coverage) and Kynkäänniemi et al. 2019 (precision, recall).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist


def _check2d(*arrays: np.ndarray, names=("real", "gen"), min_n: int = 2) -> list[np.ndarray]:
    out = []
    for a, n in zip(arrays, names):
        a = np.asarray(a, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"{n} features must be a 2-D array (n, d), got shape {a.shape}")
        if a.shape[0] < min_n:
            raise ValueError(f"{n} features need at least {min_n} samples, got {a.shape[0]}")
        if not np.isfinite(a).all():
            raise ValueError(f"{n} features contain NaN or infinite values")
        out.append(a)
    if len(out) == 2 and out[0].shape[1] != out[1].shape[1]:
        raise ValueError(f"feature dimensions differ: {names[0]} {out[0].shape[1]} vs {names[1]} {out[1].shape[1]}")
    return out


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def fid(real: np.ndarray, gen: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the two sets:
    ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 sqrtm(S_r S_g)) (real part; 0 for identical sets)."""
    r, g = _check2d(real, gen)
    mu_r, mu_g = r.mean(0), g.mean(0)
    s_r, s_g = np.cov(r, rowvar=False), np.cov(g, rowvar=False)
    s_r, s_g = np.atleast_2d(s_r), np.atleast_2d(s_g)
    with warnings.catch_warnings():  # singular products (few samples) are handled just below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_r @ s_g)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(s_r.shape[0])
        covmean = linalg.sqrtm((s_r + eps) @ (s_g + eps))
    covmean = np.real(covmean)
    d = float(((mu_r - mu_g) ** 2).sum() + np.trace(s_r) + np.trace(s_g) - 2 * np.trace(covmean))
    return max(d, 0.0)


def _kth_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]


def precision_recall_density_coverage(real: np.ndarray, gen: np.ndarray, k: int = 5) -> dict[str, float]:
    """k-NN manifold metrics. With B(x, r) the ball around x of radius r and NN_k(x) the distance
    to x's k-th nearest neighbour in its own set:
    precision = share of generated inside some real ball B(r_i, NN_k(r_i));
    recall    = share of real inside some generated ball B(g_j, NN_k(g_j));
    density   = 1/(k M) sum_j sum_i 1[g_j in B(r_i, NN_k(r_i))];
    coverage  = share of real points whose ball holds at least one generated point."""
    r, g = _check2d(real, gen)
    k_r = max(1, min(k, r.shape[0] - 1))
    k_g = max(1, min(k, g.shape[0] - 1))
    rad_r = _kth_radius(r, k_r)
    rad_g = _kth_radius(g, k_g)
    d_rg = cdist(r, g)  # (N, M)
    inside_r = d_rg <= rad_r[:, None]  # generated j inside real ball i
    precision = float(inside_r.any(axis=0).mean())
    recall = float((d_rg <= rad_g[None, :]).any(axis=1).mean())
    density = float(inside_r.sum() / (k_r * g.shape[0]))
    coverage = float((d_rg.min(axis=1) <= rad_r).mean())
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def mean_max_similarity(real: np.ndarray, gen: np.ndarray) -> float:
    """MMS = 1/M sum_j min_i ||g_j - r_i||: how far generated samples are from the nearest real
    one (small: close to real data; much smaller than the real reference: copying)."""
    r, g = _check2d(real, gen, min_n=1)
    return float(cdist(g, r).min(axis=1).mean())


def mean_max_similarity_real(real: np.ndarray) -> float:
    """Real reference of MMS: each real sample's distance to its nearest other real sample."""
    (r,) = _check2d(real, names=("real",))
    d = cdist(r, r)
    np.fill_diagonal(d, np.inf)
    return float(d.min(axis=1).mean())


def _flat(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 samples as an array (n, ...), got shape {x.shape}")
    return x.reshape(x.shape[0], -1)


def average_pair_distance(x, n_pairs: int = 200, n_runs: int = 5, rng=None) -> float:
    """APD (diversity): two random sets of S = n_pairs samples drawn with replacement;
    mean ||a_i - b_i|| over the pairs, averaged over n_runs."""
    f = _flat(x)
    g = _rng(rng)
    vals = []
    for _ in range(n_runs):
        a = g.integers(0, len(f), n_pairs)
        b = g.integers(0, len(f), n_pairs)
        vals.append(np.linalg.norm(f[a] - f[b], axis=1).mean())
    return float(np.mean(vals))


def average_per_class_pair_distance(x, labels, n_pairs: int = 200, n_runs: int = 5, rng=None) -> float:
    """ACPD (multimodality): APD within each class with S = min(n_pairs, n_class), averaged over
    classes that have at least 2 samples."""
    f = _flat(x)
    labels = np.asarray(labels)
    if labels.shape[0] != f.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {f.shape[0]} samples")
    g = _rng(rng)
    per = []
    for c in np.unique(labels):
        fc = f[labels == c]
        if len(fc) < 2:
            continue
        per.append(average_pair_distance(fc, min(n_pairs, len(fc)), n_runs, g))
    if not per:
        raise ValueError("no class has 2 or more samples")
    return float(np.mean(per))


def accuracy(pred_labels, target_labels) -> float:
    p, t = np.asarray(pred_labels), np.asarray(target_labels)
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} must be non-empty and of the same shape")
    return float((p == t).mean())


def score_mae(pred, target) -> float:
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} must be non-empty and of the same shape")
    return float(np.abs(p - t).mean())
