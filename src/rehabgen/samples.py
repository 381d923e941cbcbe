"""Generated samples on disk: one .npz with positions, conditions, skeleton and config.

Stored as plain arrays and JSON strings (no pickles) so any numpy can read them back.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from rehabgen.skeleton import Skeleton, SkeletonError


class SamplesError(ValueError):
    pass


def pad_sequences(seqs: list[np.ndarray], length: int | None = None) -> np.ndarray:
    """Sequences (T_i, ...) of different lengths -> one array (n, T, ...), each padded by holding
    its last frame (a still pose, not a jump to zero: kinematic metrics see no motion there)."""
    T = length or max(s.shape[0] for s in seqs)
    return np.stack([np.concatenate([s[:T], np.repeat(s[-1:], T - min(T, s.shape[0]), 0)]) for s in seqs])


def save_samples(path: str | Path, positions: np.ndarray, exercise, score, skeleton: Skeleton,
                 config: dict, fps: float) -> Path:
    """positions (n, T, J, 3) in metres; exercise (n,) str; score (n,) float."""
    from rehabgen.io import atomic_write_bytes

    path = Path(path)
    positions = np.asarray(positions, np.float32)
    n = positions.shape[0]
    if positions.ndim != 4 or positions.shape[2:] != (skeleton.n_joints, 3):
        raise SamplesError(f"positions must be (n, T, {skeleton.n_joints}, 3), got {positions.shape}")
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        positions=positions,
        exercise=np.asarray(exercise, dtype=str).reshape(n),
        score=np.asarray(score, dtype=np.float32).reshape(n),
        skeleton=np.array(json.dumps(skeleton.to_dict())),
        config=np.array(json.dumps(config, default=str)),
        fps=np.array(float(fps)),
    )
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_samples(path: str | Path) -> dict:
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SamplesError(f"{path}: file not found") from None
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise SamplesError(f"{path}: not a readable .npz file ({e})") from None
    with z:
        missing = [k for k in ("positions", "exercise", "score", "skeleton") if k not in z.files]
        if missing:
            raise SamplesError(f"{path}: missing array(s) {missing}; was it written by `rehabgen sample`?")
        try:
            sk = Skeleton.from_dict(json.loads(str(z["skeleton"])), source=str(path))
        except (json.JSONDecodeError, SkeletonError) as e:
            raise SamplesError(f"{path}: bad skeleton description ({e})") from None
        out = {
            "positions": z["positions"].astype(np.float32),
            "exercise": z["exercise"].astype(str),
            "score": z["score"].astype(np.float32),
            "skeleton": sk,
            "config": json.loads(str(z["config"])) if "config" in z.files else {},
            "fps": float(z["fps"]) if "fps" in z.files else 15.0,
        }
    p = out["positions"]
    if p.ndim != 4 or p.shape[2:] != (sk.n_joints, 3):
        raise SamplesError(f"{path}: positions have shape {p.shape}, expected (n, T, {sk.n_joints}, 3)")
    return out
