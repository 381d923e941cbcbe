"""Noise-aware preprocessing of skeleton sequences.

Kinect estimates lose joints, mark guesses as "inferred", jump and jitter. Each step here is
optional, records itself in the dataset's metadata, and never turns a missing joint into an
observed one: gap filling sets `Sequence.filled`, `Sequence.valid` keeps what was really seen.
Geometric normalisation (centre, facing, body size) is per sequence and exactly invertible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from scipy import signal

from rehabgen.data.dataset import DataError, Dataset, Sequence
from rehabgen.skeleton import Skeleton

# --------------------------------------------------------------------------------------------
# validity
# --------------------------------------------------------------------------------------------


def detect_invalid(seq: Sequence, fps: float, use_state: bool = True, inferred_valid: bool = False,
                   max_jump: float = 0.15, median_window: int = 7) -> np.ndarray:
    """Validity mask (T, J): finite, non-zero, tracked, and not an implausible jump.

    A jump is a joint further than `max_jump` metres from the running median of its own
    trajectory: single-frame spikes and brief limb swaps stand out there while real fast
    movement (a median follows it within a few frames) does not.
    """
    p = seq.positions.astype(np.float64)
    valid = seq.valid.copy()
    valid &= np.isfinite(p).all(-1)
    valid &= np.abs(np.nan_to_num(p)).sum(-1) > 1e-9
    if use_state and seq.state is not None:
        valid &= seq.state >= (1 if inferred_valid else 2)
    if max_jump and p.shape[0] >= median_window:
        filled, _ = _interpolate(p, valid, max_gap=p.shape[0])
        if np.isfinite(filled).all():
            med = signal.medfilt(filled, kernel_size=(median_window, 1, 1))
            # medfilt pads with zeros: keep the edge frames' own values there
            h = median_window // 2
            med[:h], med[-h:] = filled[:h], filled[-h:]
            dev = np.linalg.norm(filled - med, axis=-1)
            valid &= dev <= max_jump
    return valid


def _interpolate(p: np.ndarray, known: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over gaps of at most max_gap frames; edge gaps hold the nearest value.

    Returns (positions, filled) where filled marks frames that were unknown and are now set.
    """
    T, J, _ = p.shape
    out = np.where(known[..., None], p, np.nan)
    filled = np.zeros((T, J), dtype=bool)
    t = np.arange(T)
    for j in range(J):
        k = known[:, j]
        if k.all() or not k.any():
            continue
        gaps = ~k
        # run lengths of gaps
        edges = np.diff(np.concatenate([[0], gaps.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        kt = t[k]
        for s, e in zip(starts, ends):
            if e - s > max_gap:
                continue
            for c in range(3):
                out[s:e, j, c] = np.interp(t[s:e], kt, p[k, j, c])
            filled[s:e, j] = True
    return out, filled


def fill_gaps(seq: Sequence, max_gap: int = 15) -> Sequence:
    """Fill short invalid stretches by interpolation; longer ones stay NaN and invalid."""
    pos, filled = _interpolate(seq.positions.astype(np.float64), seq.valid, max_gap)
    prev = seq.filled if seq.filled is not None else np.zeros_like(seq.valid)
    return replace(seq, positions=pos.astype(np.float32), filled=prev | filled)


def smooth(seq: Sequence, method: str = "savgol", window: int = 7, cutoff_hz: float = 6.0,
           fps: float = 30.0) -> Sequence:
    """Low-pass the trajectories against Kinect jitter; missing stretches stay missing."""
    p = seq.positions.astype(np.float64)
    known = np.isfinite(p).all(-1)
    tmp, _ = _interpolate(p, known, max_gap=p.shape[0])
    tmp = np.nan_to_num(tmp)
    T = p.shape[0]
    if method == "savgol":
        w = min(window if window % 2 else window + 1, T if T % 2 else T - 1)
        if w >= 5:
            tmp = signal.savgol_filter(tmp, w, 2, axis=0)
    elif method == "butter":
        b, a = signal.butter(2, cutoff_hz / (fps / 2.0))
        if T > 3 * max(len(a), len(b)):
            tmp = signal.filtfilt(b, a, tmp, axis=0)
    else:
        raise ValueError(f"unknown smoothing method {method!r} (use 'savgol' or 'butter')")
    tmp[~known] = np.nan
    return replace(seq, positions=tmp.astype(np.float32))


# --------------------------------------------------------------------------------------------
# geometric normalisation (per sequence, invertible)
# --------------------------------------------------------------------------------------------


@dataclass
class SeqTransform:
    """x_norm = R_y(yaw) @ (x - offset) / scale; inverse is exact."""

    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0
    scale: float = 1.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) - np.asarray(self.offset)) @ _rot_y(self.yaw).T / self.scale

    def invert(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) * self.scale) @ _rot_y(self.yaw) + np.asarray(self.offset)


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def body_size(positions: np.ndarray, valid: np.ndarray, skeleton: Skeleton) -> float:
    """Sum of the median bone lengths over observed frames: a size measure robust to dropouts."""
    total = 0.0
    for p, c in skeleton.bones:
        ok = valid[:, p] & valid[:, c]
        if ok.any():
            total += float(np.median(np.linalg.norm(positions[ok, c] - positions[ok, p], axis=-1)))
    return total


def facing_yaw(positions: np.ndarray, valid: np.ndarray, skeleton: Skeleton) -> float:
    """Yaw that turns the body's left->right axis onto +x (so the subject faces the camera)."""
    if skeleton.facing is None:
        return 0.0
    lh, rh, ls, rs = skeleton.facing
    ok = valid[:, lh] & valid[:, rh] & valid[:, ls] & valid[:, rs]
    if not ok.any():
        return 0.0
    f = ok.nonzero()[0][: max(1, min(30, int(ok.sum())))]  # the first second of good frames
    across = (positions[f, rh] - positions[f, lh]) + (positions[f, rs] - positions[f, ls])
    a = across.mean(0)
    # Kinect camera space: x grows to the sensor's left, i.e. the subject's right when facing it,
    # so a subject facing the camera has left->right along +x; R_y(yaw) @ a must be along +x
    return float(np.arctan2(a[2], a[0]))


def normalise_sequence(seq: Sequence, skeleton: Skeleton, center: bool = True, facing: bool = True,
                       scale: bool = True, reference_size: float | None = None) -> tuple[Sequence, SeqTransform]:
    """Root at the origin (first observed root position), facing the camera, unit body size."""
    p = seq.positions.astype(np.float64)
    known = seq.valid | (seq.filled if seq.filled is not None else False)
    known = known & np.isfinite(p).all(-1)
    r = skeleton.root
    offset = (0.0, 0.0, 0.0)
    if center:
        rows = np.flatnonzero(known[:, r])
        if rows.size == 0:
            raise DataError(f"{seq.source}: root joint {skeleton.joints[r]} is never observed; can't centre")
        offset = tuple(float(v) for v in p[rows[0], r])
    yaw = facing_yaw(p, known, skeleton) if facing else 0.0
    s = 1.0
    if scale:
        size = body_size(p, known, skeleton)
        if size <= 0:
            raise DataError(f"{seq.source}: no bone observed; can't normalise body size")
        s = size / reference_size if reference_size else size
    tf = SeqTransform(offset, yaw, s)
    return replace(seq, positions=tf.apply(p).astype(np.float32)), tf


# --------------------------------------------------------------------------------------------
# length
# --------------------------------------------------------------------------------------------


def resample(seq: Sequence, length: int) -> Sequence:
    """Linear resampling in time to `length` frames; a frame is valid where both sources are."""
    T = seq.n_frames
    if length < 2:
        raise ValueError("length must be at least 2 frames")
    src = np.linspace(0.0, T - 1, length)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, T - 1)
    w = (src - i0)[:, None, None]
    p = seq.positions.astype(np.float64)
    pos = (1 - w) * p[i0] + w * p[i1]
    exact = w[:, 0, 0] < 1e-9
    valid = seq.valid[i0] & (seq.valid[i1] | exact[:, None])
    filled = None
    if seq.filled is not None:
        filled = (seq.filled[i0] | seq.filled[i1]) & ~valid
    ts = None
    if seq.timestamps is not None:
        ts = np.interp(src, np.arange(T), seq.timestamps)
    state = seq.state[np.rint(src).astype(int)] if seq.state is not None else None
    return replace(seq, positions=pos.astype(np.float32), valid=valid, filled=filled, timestamps=ts, state=state)


def bucket_length(n_frames: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds n_frames (the largest bucket if none does)."""
    for b in sorted(buckets):
        if n_frames <= b:
            return b
    return max(buckets)


# --------------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------------


@dataclass
class PreprocessConfig:
    """Every step is optional; the resolved config is stored in the dataset's metadata."""

    detect_invalid: bool = True
    use_state: bool = True
    inferred_valid: bool = False
    max_jump: float = 0.15  # metres from the running median
    max_gap: int = 15  # frames; longer gaps stay missing
    smooth: str | None = "savgol"  # "savgol", "butter" or None
    smooth_window: int = 7
    center: bool = True
    facing: bool = True
    scale: bool = True
    # resample time to this rate (None: keep the recording's rate). 5 fps is the models' working
    # rate: an 80-frame window holds 16 s of exercise, and a CPU trains ~4.7 steps/s at it
    fps: float | None = 5.0
    length: int | None = None  # then resample every sequence to exactly this many frames
    buckets: tuple[int, ...] = ()  # or pad/crop up to a bucket length (recorded in the arrays step)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["buckets"] = list(self.buckets)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        """The inverse of `to_dict` (JSON turns the buckets tuple into a list); unknown keys are an error."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise DataError(f"unknown preprocessing setting(s) {sorted(unknown)}")
        return cls(**{**d, "buckets": tuple(d.get("buckets", ()))})


def preprocess_dataset(ds: Dataset, cfg: PreprocessConfig | None = None) -> tuple[Dataset, list[SeqTransform]]:
    """Apply the configured steps to every sequence; returns the new dataset and each sequence's
    geometric transform (to go back to metres in camera coordinates)."""
    cfg = cfg or PreprocessConfig()
    sk = ds.skeleton
    out, tfs = [], []
    sizes = []
    for s in ds.sequences:
        if cfg.detect_invalid:
            s = replace(s, valid=detect_invalid(s, ds.fps, cfg.use_state, cfg.inferred_valid, cfg.max_jump))
        if cfg.max_gap:
            s = fill_gaps(s, cfg.max_gap)
        if cfg.smooth:
            s = smooth(s, cfg.smooth, cfg.smooth_window, fps=ds.fps)
        if cfg.fps and abs(cfg.fps - ds.fps) > 1e-6:
            s = resample(s, max(2, int(round(s.n_frames * cfg.fps / ds.fps))))
        if cfg.length:
            s = resample(s, cfg.length)
        s, tf = normalise_sequence(s, sk, cfg.center, cfg.facing, cfg.scale)
        sizes.append(tf.scale)
        out.append(s)
        tfs.append(tf)
    fps = cfg.fps or ds.fps
    meta = dict(ds.metadata)
    steps = list(meta.get("preprocessing", []))
    steps.append({"step": "preprocess", **cfg.to_dict()})
    meta["preprocessing"] = steps
    meta["reference_body_size"] = float(np.median(sizes)) if sizes else 1.0
    return Dataset(sk, out, list(ds.quarantined), ds.exercises, fps, meta), tfs


WARP_FACTORS = (0.8, 1.25)  # tempo of the time-warped copies


AUGMENTATIONS = ("crop", "mirror", "warp")


def crop_windows(seq: Sequence, window: int, stride: int) -> list[Sequence]:
    """The windows of `window` frames after the first, every `stride` frames, the last one
    ending with the recording: the parts of a long recording that training on its first
    `window` frames never sees."""
    n = seq.n_frames
    if n <= window:
        return []
    starts = sorted(set(range(stride, n - window, stride)) | {n - window})

    def cut(a, s):
        return None if a is None else a[s:s + window]

    return [replace(seq, positions=seq.positions[s:s + window], valid=seq.valid[s:s + window],
                    filled=cut(seq.filled, s), state=cut(seq.state, s), timestamps=cut(seq.timestamps, s),
                    source=f"{seq.source} (frames {s}-{s + window})") for s in starts]


def augment_dataset(ds: Dataset, kinds: str | tuple[str, ...], window: int | None = None) -> Dataset:
    """Label-preserving training copies of a preprocessed dataset (normalised bodies, facing the
    camera): "crop" adds the later `window`-frame windows of every longer recording, every
    window/4 frames (training sees only a recording's first `window` frames otherwise: 80 of
    125 on KIMORE patients at 5 fps; there, seed 0, 3,000 steps: WPD equal to real and less
    drift, but FID 4.9 vs 2.5, as the test windows start where recordings start); "mirror"
    adds the left-right mirror image of every sequence (KIMORE's exercises are bilateral, so
    label and score stay true); "warp" adds copies
    played at WARP_FACTORS times the tempo (patients perform the same exercise at very different
    speeds; 84 training recordings show few of them). Copies follow the originals, in that order."""
    kinds = tuple(k for k in (kinds.split(",") if isinstance(kinds, str) else kinds) if k)
    unknown = sorted(set(kinds) - set(AUGMENTATIONS))
    if unknown:
        raise DataError(f"unknown augmentation(s) {unknown}; choose from {', '.join(AUGMENTATIONS)}")
    seqs = list(ds.sequences)
    if "crop" in kinds:
        if not window:
            raise DataError("'crop' augmentation needs the training window length")
        seqs += [w for s in ds.sequences for w in crop_windows(s, window, max(1, window // 4))]
    if "mirror" in kinds:
        if not ds.skeleton.mirror:
            raise DataError(f"skeleton {ds.skeleton.name!r} has no mirror pairs: can't mirror")
        perm = ds.skeleton.mirror_permutation()

        def flip(a):
            return None if a is None else a[:, perm]

        seqs += [replace(s, positions=s.positions[:, perm] * np.array([-1.0, 1.0, 1.0], np.float32),
                         valid=s.valid[:, perm], filled=flip(s.filled), state=flip(s.state),
                         source=f"{s.source} (mirrored)") for s in seqs]
    if "warp" in kinds:
        seqs += [replace(resample(s, max(2, int(round(s.n_frames / f)))), source=f"{s.source} (tempo x{f:g})")
                 for f in WARP_FACTORS for s in seqs]
    return replace(ds, sequences=seqs)


def to_arrays(ds: Dataset, length: int | None = None, score: str = "TS") -> dict[str, np.ndarray]:
    """Pad/crop sequences to a common length for batching.

    x: (N, T, J, 3) float32 with 0 where unknown; mask: (N, T, J) bool, True where the value
    is known (observed or gap-filled) and inside the sequence; observed: (N, T, J) bool, the
    really observed subset; lengths (N,), exercise (N,) int, score (N,) float (NaN if absent).
    """
    if not ds.sequences:
        raise DataError("dataset has no sequences")
    T = length or max(s.n_frames for s in ds.sequences)
    N, J = len(ds.sequences), ds.skeleton.n_joints
    x = np.zeros((N, T, J, 3), np.float32)
    mask = np.zeros((N, T, J), bool)
    observed = np.zeros((N, T, J), bool)
    lengths = np.zeros(N, np.int64)
    for i, s in enumerate(ds.sequences):
        n = min(T, s.n_frames)
        p = s.positions[:n]
        known = s.valid[:n] | (s.filled[:n] if s.filled is not None else False)
        known &= np.isfinite(p).all(-1)
        x[i, :n] = np.where(known[..., None], p, 0.0)
        mask[i, :n] = known
        observed[i, :n] = s.valid[:n] & known
        lengths[i] = n
    return {
        "x": x,
        "mask": mask,
        "observed": observed,
        "lengths": lengths,
        "exercise": np.array([ds.exercise_index(s.exercise) for s in ds.sequences], np.int64),
        "score": np.array([s.score(score) for s in ds.sequences], np.float32),
        "subject": np.array([s.subject for s in ds.sequences]),
    }
