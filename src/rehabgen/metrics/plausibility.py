"""Physical plausibility of motion (n, T, J, 3) in metres: bones and kinematics against real data."""

from __future__ import annotations

import numpy as np
from scipy.fft import dct
from scipy.stats import wasserstein_distance

from rehabgen.samples import pad_sequences


def _motion(x, name="motion") -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be (n, T, J, 3), got shape {x.shape}")
    return x


def _lengths(x: np.ndarray, lengths) -> np.ndarray:
    """True lengths (n,) of padded sequences x (n, T, ...); None = every frame is real."""
    if lengths is None:
        return np.full(x.shape[0], x.shape[1], np.int64)
    n = np.asarray(lengths, np.int64)
    if n.shape != (x.shape[0],) or (n < 1).any() or (n > x.shape[1]).any():
        raise ValueError(f"lengths must be (n,) = ({x.shape[0]},) with 1 <= length <= {x.shape[1]}, got {n.tolist()}")
    return n


def _frame_mask(x: np.ndarray, lengths) -> np.ndarray:
    """(n, T) True on real frames, False on padding (a held last frame is not motion)."""
    return np.arange(x.shape[1])[None, :] < _lengths(x, lengths)[:, None]


def _bone_lengths(x: np.ndarray, bones) -> np.ndarray:
    par = np.array([b[0] for b in bones])
    chi = np.array([b[1] for b in bones])
    return np.linalg.norm(x[..., chi, :] - x[..., par, :], axis=-1)  # (n, T, B)


def reference_bone_lengths(real, bones, valid=None, lengths=None) -> np.ndarray:
    """Per-bone median length over real frames where both joints are valid: (n_bones,).
    Padded frames (beyond `lengths`) are left out so that long holds don't weigh one pose."""
    x = _motion(real, "real")
    L = _bone_lengths(x, bones)
    if valid is not None:
        v = np.asarray(valid, bool)
        ok = np.stack([v[..., p] & v[..., c] for p, c in bones], -1)
    else:
        ok = np.isfinite(L)
    ok = ok & _frame_mask(x, lengths)[..., None]
    return np.array([np.median(L[..., k][ok[..., k]]) if ok[..., k].any() else np.nan for k in range(L.shape[-1])])


def _gen_bone_lengths(gen, bones, reference_lengths, lengths) -> tuple[np.ndarray, np.ndarray]:
    """Bone lengths of the real (unpadded) frames (F, B) and the reference (B,)."""
    x = _motion(gen, "gen")
    L = _bone_lengths(x, bones)[_frame_mask(x, lengths)]
    ref = np.asarray(reference_lengths, np.float64)
    if ref.shape != (L.shape[-1],):
        raise ValueError(f"reference has {ref.shape} lengths for {L.shape[-1]} bones")
    return L, ref


def bone_length_deviation(gen, bones, reference_lengths, lengths=None) -> float:
    """Mean over samples, frames and bones of |L - L_ref| / L_ref (padded frames left out)."""
    L, ref = _gen_bone_lengths(gen, bones, reference_lengths, lengths)
    return float(np.nanmean(np.abs(L - ref) / ref))


def bone_length_error(gen, bones, reference_lengths, lengths=None) -> float:
    """Mean over bones of |median_gen(L) - L_ref| / L_ref: are the bodies the right size and
    proportions (the per-frame wobble is `bone_length_deviation`)."""
    L, ref = _gen_bone_lengths(gen, bones, reference_lengths, lengths)
    med = np.nanmedian(L, axis=0)
    return float(np.nanmean(np.abs(med - ref) / ref))


def limb_constraint_violations(gen, bones, reference_lengths, tol: float = 0.1, lengths=None) -> float:
    """Share of (sample, frame, bone) whose length is off by more than `tol` (relative)."""
    L, ref = _gen_bone_lengths(gen, bones, reference_lengths, lengths)
    return float((np.abs(L - ref) / ref > tol).mean())


KINEMATICS = ((1, "velocity"), (2, "acceleration"), (3, "jerk"))


def joint_kinematics(x, order: int, fps: float, lengths=None) -> np.ndarray:
    """Magnitudes (m/s, m/s^2, m/s^3 for order 1, 2, 3) of the order-th finite difference of every
    joint, over real frames only: a sequence of true length L gives L - order values per joint,
    none from its padding (holding the last frame would add zero speeds and, at the jump from
    motion to stillness, spurious acceleration and jerk). 1-D, finite values only."""
    x = _motion(x)
    n = _lengths(x, lengths)
    d = x
    for _ in range(order):
        d = np.diff(d, axis=1) * fps  # (n, T - order, J, 3)
    keep = np.arange(d.shape[1])[None, :] < (n - order)[:, None]  # differences within the true frames
    m = np.linalg.norm(d[keep], axis=-1).ravel()
    return m[np.isfinite(m)]


def _capped(m: np.ndarray, rng, cap: int) -> np.ndarray:
    return rng.choice(m, cap, replace=False) if m.size > cap else m


def kinematic_wasserstein(real, gen, fps: float = 30.0, cap: int = 200_000, real_lengths=None,
                          gen_lengths=None) -> dict[str, float]:
    """1-D Wasserstein distances between real and generated distributions of per-joint speed
    (m/s), acceleration (m/s^2) and jerk (m/s^3), from finite differences along time within each
    sequence's true length (`*_lengths`; None = no padding), so that the number of padded frames,
    which depends on the longest sequence in a set, doesn't move the distributions.

    W-1 is in the quantity's units and weighs the tails (jerk's especially) fully, so on sets of
    a few subjects it moves with which people are in a set: compare a generated set with a real
    set of the same size and subjects, never with a bootstrap resample (duplicated sequences
    make a set lumpier; on built-in data that doubled the jerk distance, see `rehabgen.evaluate`)."""
    r, g = _motion(real, "real"), _motion(gen, "gen")
    if min(_lengths(r, real_lengths).min(), _lengths(g, gen_lengths).min()) < 4:
        raise ValueError("sequences need at least 4 frames for jerk")
    rng = np.random.default_rng(0)
    out = {}
    for order, name in KINEMATICS:
        out[name] = float(wasserstein_distance(_capped(joint_kinematics(r, order, fps, real_lengths), rng, cap),
                                               _capped(joint_kinematics(g, order, fps, gen_lengths), rng, cap)))
    return out


def range_of_motion(x, lengths=None) -> np.ndarray:
    """Per (sequence, joint) extent of the trajectory over real frames: the diagonal of its
    bounding box in metres, (n, J). Padding can't change it (a held frame is inside the box)."""
    x = _motion(x)
    n = _lengths(x, lengths)
    return np.stack([np.linalg.norm(np.ptp(s[:k], axis=0), axis=-1) for s, k in zip(x, n)])


def repetition_rate(x, fps: float, lengths=None, n_freq: int = 2048) -> np.ndarray:
    """Per sequence, the dominant frequency (Hz) of its most-moving joint along that joint's main
    axis of motion: how many repetitions per second the exercise is done at, (n,).

    Why: mean speed mixes amplitude and tempo. On real KIMORE patients the generated arm raises
    (Es1) reached the real range of motion but 0.71x the real speed, because they held 1-2
    repetitions per 16 s window where the patients did 3 (0.06-0.12 vs 0.19 Hz). The frequency
    is the best least-squares sinusoid fit (a Lomb-Scargle periodogram on a log grid from one
    cycle per sequence to Nyquist): with 1-3 cycles per window an FFT peak is both coarse and
    biased, a fit is neither. A drift slower than one cycle per sequence is not a repetition."""
    x = _motion(x)
    n = _lengths(x, lengths)
    out = np.full(len(x), np.nan)
    for i, (s, k) in enumerate(zip(x, n)):
        if k < 4:
            continue
        d = s[:k] - s[:k].mean(0)  # (k, J, 3)
        j = np.argmax((d ** 2).sum((0, 2)))
        _, _, vt = np.linalg.svd(d[:, j], full_matrices=False)
        y = d[:, j] @ vt[0]  # (k,) along the main axis
        f = np.geomspace(fps / k, fps / 2, n_freq)  # (F,)
        ph = 2 * np.pi * f[:, None] * (np.arange(k) / fps)[None]  # (F, k)
        c, sn = np.cos(ph), np.sin(ph)
        c -= c.mean(1, keepdims=True)
        sn -= sn.mean(1, keepdims=True)
        # explained variance of y by a cos + b sin (+ constant), solved per frequency
        cc, ss, cs = (c * c).sum(1), (sn * sn).sum(1), (c * sn).sum(1)
        cy, sy = c @ y, sn @ y
        det = np.maximum(cc * ss - cs ** 2, 1e-12)
        power = (ss * cy ** 2 - 2 * cs * cy * sy + cc * sy ** 2) / det
        out[i] = f[np.argmax(power)]
    return out


BANDS = (("drift", 0.0, 0.1), ("repetition", 0.1, 0.5), ("fast", 0.5, np.inf))  # Hz


def band_power(x, fps: float, lengths=None, bands=BANDS) -> np.ndarray:
    """Per sequence, how much its joints move in each frequency band (m^2): the variance of every
    joint coordinate's trajectory over its real frames, split by frequency (orthonormal DCT-II,
    coefficient k at k fps / 2L Hz), summed over the 3 axes and averaged over joints, (n, bands).

    Why: generated motion can have the right range and mean speed at the wrong tempo. The
    bands (below 0.1 Hz: posture drift, one cycle per 10 s or slower; 0.1-0.5 Hz: exercise
    repetitions, KIMORE patients do one every 2-8 s; above 0.5 Hz: quick movements and
    tracking noise) say where the movement is. The diffusion model's samples of KIMORE
    patients (3,000 steps, seed 0, guidance 2) held 0.64x the test patients' power in the
    repetition band and 3.1x in the drift band (Es1 0.48x and 11x): slow wandering where
    patients repeat."""
    x = _motion(x)
    n = _lengths(x, lengths)
    out = np.full((len(x), len(bands)), np.nan)
    for i, (s, k) in enumerate(zip(x, n)):
        if k < 2:
            continue
        c = dct(s[:k] - s[:k].mean(0), axis=0, norm="ortho")  # (k, J, 3); sum of c^2 = sum of squared deviations
        f = np.arange(k) * fps / (2 * k)
        power = (c ** 2).sum(-1).mean(-1) / k  # (k,) per coefficient, per frame
        out[i] = [power[(f >= lo) & (f < hi)].sum() for _, lo, hi in bands]
    return out


def kinematic_summary(x, fps: float, lengths=None) -> dict[str, dict[str, float]]:
    """Which way a motion set differs from another, not only how much: mean, median (p50) and
    95th percentile of joint speed, acceleration, jerk (over every joint and real frame), of
    the range of motion (over every sequence and joint), of the repetition rate (over
    sequences, `repetition_rate`) and of the motion's power in each frequency band (`band_power`)."""
    rate = repetition_rate(x, fps, lengths)
    power = band_power(x, fps, lengths)
    vals = {"speed": joint_kinematics(x, 1, fps, lengths), "acceleration": joint_kinematics(x, 2, fps, lengths),
            "jerk": joint_kinematics(x, 3, fps, lengths), "range_of_motion": range_of_motion(x, lengths).ravel(),
            "repetition_rate": rate[np.isfinite(rate)] if np.isfinite(rate).any() else np.array([np.nan]),
            **{f"{name}_power": power[:, b] for b, (name, _, _) in enumerate(BANDS)}}
    return {k: {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
            for k, v in vals.items()}


def split_kinematic_reference(positions: list[np.ndarray], subjects: list[str], n_test_subjects: int, fps: float,
                              n_splits: int = 20, seed: int = 0) -> dict[str, dict[str, float]]:
    """The kinematic distances real data has with itself: `kinematic_wasserstein` between the
    sequences of `n_test_subjects` random subjects and those of all the others, over `n_splits`
    random subject splits; {velocity|acceleration|jerk: {mean, std, min, max, n_splits}}.

    One split's test-vs-train distance is a poor reference: on KIMORE patients it moved 6x
    between three 4-subject splits (acceleration 0.045-0.284 m/s^2), as a few patients carry most
    of the tracking noise, and whichever split holds them sets the number. The mean over many
    splits of the same sizes is what a set of that many unseen subjects typically scores."""
    subj = np.asarray(subjects)
    people = np.unique(subj)
    if not 1 <= n_test_subjects < len(people):
        raise ValueError(f"need 1..{len(people) - 1} test subjects of {len(people)}, got {n_test_subjects}")
    rng = np.random.default_rng(seed)
    lengths = np.array([len(p) for p in positions])
    runs = []
    for _ in range(n_splits):
        test = np.isin(subj, rng.choice(people, n_test_subjects, replace=False))
        sets = [[p for p, t in zip(positions, test) if t == side] for side in (False, True)]
        runs.append(kinematic_wasserstein(pad_sequences(sets[0]), pad_sequences(sets[1]), fps=fps,
                                          real_lengths=lengths[~test], gen_lengths=lengths[test]))
    return {k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs])),
                "min": float(np.min([r[k] for r in runs])), "max": float(np.max([r[k] for r in runs])),
                "n_splits": n_splits} for k in runs[0]}


GROUP_QUANTITIES = ("speed", "range_of_motion")


def split_ratio_bands(positions: list[np.ndarray], subjects: list[str], exercises: list[str], n_test_subjects: int,
                      fps: float, n_splits: int = 200, seed: int = 0, tolerance: float = 0.2) -> dict:
    """How far two groups of real patients land from each other, per exercise: over `n_splits`
    random subject splits, the ratio (the other subjects' mean) / (the `n_test_subjects` test
    subjects' mean) of the mean joint speed and of the mean range of motion (pooled as in
    `kinematic_summary`), summarised as its 5th/50th/95th percentiles and the share of splits
    within 1 ± tolerance; `all_within`: the share of splits where every exercise is.

    Why: per-exercise targets ("within 20 % of real") are judged against a handful of held-out
    patients. On the 21 KIMORE patients with 4 held out, a second group of real patients misses
    ±20 % of the test group's range of motion in 10-55 % of splits depending on the exercise; a
    generated ratio inside this band is as close as real patients get."""
    subj, exs = np.asarray(subjects), np.asarray(exercises)
    people = np.unique(subj)
    if not 1 <= n_test_subjects < len(people):
        raise ValueError(f"need 1..{len(people) - 1} test subjects of {len(people)}, got {n_test_subjects}")
    # per sequence: (sum, count) of each quantity, so a group's mean is the pooled mean
    parts = {"speed": [joint_kinematics(p[None], 1, fps) for p in positions],
             "range_of_motion": [range_of_motion(p[None]).ravel() for p in positions]}
    sums = {q: np.array([v.sum() for v in vs]) for q, vs in parts.items()}
    counts = {q: np.array([v.size for v in vs]) for q, vs in parts.items()}
    names = list(dict.fromkeys(exercises))  # in first-seen order
    rng = np.random.default_rng(seed)
    ratios = {q: {e: [] for e in names} for q in GROUP_QUANTITIES}
    for _ in range(n_splits):
        test = np.isin(subj, rng.choice(people, n_test_subjects, replace=False))
        for e in names:
            a, b = (exs == e) & test, (exs == e) & ~test
            for q in GROUP_QUANTITIES:
                na, nb, sa = counts[q][a].sum(), counts[q][b].sum(), sums[q][a].sum()
                ratios[q][e].append(sums[q][b].sum() / nb / (sa / na) if na and nb and sa > 0 else np.nan)
    out = {"n_splits": n_splits, "n_test_subjects": n_test_subjects, "tolerance": tolerance}
    for q in GROUP_QUANTITIES:
        r = np.array([ratios[q][e] for e in names])  # (E, n_splits)
        inside = np.abs(r - 1) <= tolerance
        per = {}
        for e, row, ins in zip(names, r, inside):
            ok = np.isfinite(row)
            if ok.any():
                p5, p50, p95 = np.percentile(row[ok], [5, 50, 95])
                per[e] = {"p5": float(p5), "p50": float(p50), "p95": float(p95), "within": float(ins[ok].mean())}
        known = np.isfinite(r)
        out[q] = {"per_exercise": per, "all_within": float((inside | ~known).all(0).mean())}
    return out
