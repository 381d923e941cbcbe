"""Physical plausibility of motion (n, T, J, 3) in metres: bones and kinematics against real data."""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance


def _motion(x, name="motion") -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be (n, T, J, 3), got shape {x.shape}")
    return x


def _bone_lengths(x: np.ndarray, bones) -> np.ndarray:
    par = np.array([b[0] for b in bones])
    chi = np.array([b[1] for b in bones])
    return np.linalg.norm(x[..., chi, :] - x[..., par, :], axis=-1)  # (n, T, B)


def reference_bone_lengths(real, bones, valid=None) -> np.ndarray:
    """Per-bone median length over real frames where both joints are valid: (n_bones,)."""
    x = _motion(real, "real")
    L = _bone_lengths(x, bones)
    if valid is not None:
        v = np.asarray(valid, bool)
        ok = np.stack([v[..., p] & v[..., c] for p, c in bones], -1)
    else:
        ok = np.isfinite(L)
    return np.array([np.median(L[..., k][ok[..., k]]) if ok[..., k].any() else np.nan for k in range(L.shape[-1])])


def bone_length_deviation(gen, bones, reference_lengths) -> float:
    """Mean over samples, frames and bones of |L - L_ref| / L_ref."""
    L = _bone_lengths(_motion(gen, "gen"), bones)
    ref = np.asarray(reference_lengths, np.float64)
    if ref.shape != (L.shape[-1],):
        raise ValueError(f"reference has {ref.shape} lengths for {L.shape[-1]} bones")
    return float(np.nanmean(np.abs(L - ref) / ref))


def bone_length_error(gen, bones, reference_lengths) -> float:
    """Mean over bones of |median_gen(L) - L_ref| / L_ref: are the bodies the right size and
    proportions (the per-frame wobble is `bone_length_deviation`)."""
    L = _bone_lengths(_motion(gen, "gen"), bones)
    ref = np.asarray(reference_lengths, np.float64)
    med = np.nanmedian(L.reshape(-1, L.shape[-1]), axis=0)
    return float(np.nanmean(np.abs(med - ref) / ref))


def limb_constraint_violations(gen, bones, reference_lengths, tol: float = 0.1) -> float:
    """Share of (sample, frame, bone) whose length is off by more than `tol` (relative)."""
    L = _bone_lengths(_motion(gen, "gen"), bones)
    ref = np.asarray(reference_lengths, np.float64)
    return float((np.abs(L - ref) / ref > tol).mean())


def _magnitudes(x: np.ndarray, order: int, fps: float, rng, cap: int) -> np.ndarray:
    d = x
    for _ in range(order):
        d = np.diff(d, axis=1) * fps
    m = np.linalg.norm(d, axis=-1).ravel()
    m = m[np.isfinite(m)]
    if m.size > cap:
        m = rng.choice(m, cap, replace=False)
    return m


def kinematic_wasserstein(real, gen, fps: float = 30.0, cap: int = 200_000) -> dict[str, float]:
    """1-D Wasserstein distances between real and generated distributions of per-joint speed
    (m/s), acceleration (m/s^2) and jerk (m/s^3), from finite differences along time."""
    r, g = _motion(real, "real"), _motion(gen, "gen")
    if r.shape[1] < 4 or g.shape[1] < 4:
        raise ValueError("sequences need at least 4 frames for jerk")
    rng = np.random.default_rng(0)
    out = {}
    for order, name in ((1, "velocity"), (2, "acceleration"), (3, "jerk")):
        out[name] = float(wasserstein_distance(_magnitudes(r, order, fps, rng, cap), _magnitudes(g, order, fps, rng, cap)))
    return out
