"""Known-answer tests of the metric functions."""

from __future__ import annotations

import numpy as np
import pytest

from rehabgen.metrics import (
    accuracy, average_pair_distance, average_per_class_pair_distance, bone_length_deviation, bone_length_error, dtw_path,
    fid,
    kinematic_wasserstein, limb_constraint_violations, mean_max_similarity, mean_max_similarity_real,
    precision_recall_density_coverage, reference_bone_lengths, score_mae, warping_path_diversity,
)
from rehabgen.skeleton import KINECT_V2

from conftest import arm_raise

RNG = np.random.default_rng(0)
REAL = RNG.normal(size=(400, 8))


def test_fid_known_answers():
    assert fid(REAL, REAL) < 1e-6
    # two large Gaussian samples with identity covariance: FID ~ ||mu1 - mu2||^2
    a = np.random.default_rng(1).normal(size=(20000, 3))
    b = np.random.default_rng(2).normal(size=(20000, 3)) + [1.0, 2.0, 0.0]
    assert fid(a, b) == pytest.approx(5.0, abs=0.1)
    vals = [fid(REAL, REAL + c) for c in (0.0, 0.5, 1.0, 2.0)]
    assert all(x < y for x, y in zip(vals, vals[1:]))
    assert vals[3] == pytest.approx(8 * 4.0, rel=1e-6)  # shift 2 in 8 dims, same covariance


def test_collapsed_generator_scores_low_diversity_coverage_recall():
    good = np.random.default_rng(3).normal(size=(400, 8))
    collapsed = np.repeat(good[:1], 400, axis=0)
    g, c = precision_recall_density_coverage(REAL, good), precision_recall_density_coverage(REAL, collapsed)
    assert c["coverage"] < 0.05 < 0.8 < g["coverage"]
    assert c["recall"] < 0.05 and g["recall"] > 0.8
    assert average_pair_distance(collapsed, rng=0) == 0.0 < average_pair_distance(good, rng=0)


def test_noise_generator_scores_low_precision_and_density():
    noise = np.random.default_rng(4).uniform(-20, 20, size=(400, 8))
    m = precision_recall_density_coverage(REAL, noise)
    good = precision_recall_density_coverage(REAL, np.random.default_rng(5).normal(size=(400, 8)))
    assert m["precision"] < 0.1 < 0.8 < good["precision"]
    assert m["density"] < 0.1 and good["density"] > 0.7
    assert accuracy(np.random.default_rng(0).integers(0, 5, 500), np.zeros(500)) < 0.3


def test_real_against_itself_is_perfect():
    m = precision_recall_density_coverage(REAL, REAL)
    assert m["precision"] == m["recall"] == m["coverage"] == 1.0
    assert mean_max_similarity(REAL, REAL) == 0.0 < mean_max_similarity_real(REAL)


def test_metrics_are_invariant_to_sample_order():
    gen = np.random.default_rng(6).normal(size=(300, 8)) * 1.2
    p = np.random.default_rng(7).permutation(300)
    q = np.random.default_rng(8).permutation(400)
    assert fid(REAL, gen) == pytest.approx(fid(REAL[q], gen[p]), rel=1e-9)
    assert precision_recall_density_coverage(REAL, gen) == precision_recall_density_coverage(REAL[q], gen[p])
    assert mean_max_similarity(REAL, gen) == pytest.approx(mean_max_similarity(REAL[q], gen[p]))
    labels = np.arange(300) % 3
    a = average_per_class_pair_distance(gen, labels, n_pairs=5000, rng=0)
    b = average_per_class_pair_distance(gen[p], labels[p], n_pairs=5000, rng=0)
    assert a == pytest.approx(b, rel=0.03)  # random pairs: equal in expectation


def test_input_validation():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        fid(REAL, REAL[:, :3])
    with pytest.raises(ValueError, match="2-D array"):
        fid(REAL[0], REAL)
    with pytest.raises(ValueError, match="NaN"):
        precision_recall_density_coverage(REAL, np.full((5, 8), np.nan))
    with pytest.raises(ValueError, match="same shape"):
        score_mae([1, 2], [1])
    with pytest.raises(ValueError, match="no class has 2"):
        average_per_class_pair_distance(REAL[:3], [0, 1, 2])


def test_dtw_known_paths():
    a = np.sin(np.linspace(0, 6, 50))[:, None] * np.ones((1, 4))
    cost, path = dtw_path(a, a)
    assert cost == pytest.approx(0.0, abs=1e-9) and (path[:, 0] == path[:, 1]).all() and len(path) == 50
    b = np.concatenate([a[:1].repeat(10, 0), a])  # the same motion after a 10-frame wait
    cost, path = dtw_path(b, a)
    assert cost == pytest.approx(0.0, abs=1e-9)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (59, 49)
    assert (path[10:, 0] - path[10:, 1] == 10).all()
    with pytest.raises(ValueError, match="same channels"):
        dtw_path(a, a[:, :2])


def test_wpd_grows_with_timing_variety():
    t = np.linspace(0, 1, 60)
    same = [np.stack([np.sin(2 * np.pi * t)] * 3, -1) for _ in range(6)]
    varied = [np.stack([np.sin(2 * np.pi * (t ** p))] * 3, -1) for p in (0.5, 0.7, 1.0, 1.4, 2.0, 2.5)]
    assert warping_path_diversity(same, n_pairs=10, n_runs=2, rng=0) == 0.0
    assert warping_path_diversity(varied, n_pairs=10, n_runs=2, rng=0) > 2.0


def test_plausibility_known_answers():
    real = np.stack([arm_raise(30, seed=i) for i in range(4)])
    bones = KINECT_V2.bones
    ref = reference_bone_lengths(real, bones)
    assert bone_length_deviation(real, bones, ref) < 1e-6
    big = real * 1.1  # every bone 10% longer
    assert bone_length_deviation(big, bones, ref) == pytest.approx(0.1, abs=1e-6)
    assert bone_length_error(big, bones, ref) == pytest.approx(0.1, abs=1e-6) and bone_length_error(real, bones, ref) < 1e-9
    assert limb_constraint_violations(big, bones, ref, tol=0.05) == 1.0
    assert limb_constraint_violations(real, bones, ref) == 0.0
    k0 = kinematic_wasserstein(real, real)
    assert all(v == 0.0 for v in k0.values())
    jitter = [kinematic_wasserstein(real, real + np.random.default_rng(1).normal(0, s, real.shape))["jerk"]
              for s in (0.001, 0.005, 0.02)]
    assert jitter[0] < jitter[1] < jitter[2]
    with pytest.raises(ValueError, match=r"\(n, T, J, 3\)"):
        bone_length_deviation(real[0], bones, ref)


def _sinusoid(A=0.1, f=0.5, fps=200.0, seconds=4.0, J=3):
    """(1, T, J, 3): every joint moves A sin(2 pi f t) along x; whole periods."""
    t = np.arange(int(seconds * fps) + 1) / fps
    x = np.zeros((1, len(t), J, 3))
    x[0, :, :, 0] = (A * np.sin(2 * np.pi * f * t))[:, None]
    return x


def test_kinematics_known_answers_and_padding_is_not_motion():
    from rehabgen.metrics.plausibility import joint_kinematics, kinematic_summary, range_of_motion
    from rehabgen.samples import pad_sequences

    A, f, fps = 0.1, 0.5, 200.0
    x = _sinusoid(A, f, fps)
    w = 2 * np.pi * f
    # |v| = A w |cos|: mean A w 2/pi = 4 f A; median A w cos(pi/4); p95 A w cos(0.05 pi/2)
    s = kinematic_summary(x, fps)
    assert s["speed"]["mean"] == pytest.approx(4 * f * A, rel=2e-3)
    assert s["speed"]["p50"] == pytest.approx(A * w * np.cos(np.pi / 4), rel=5e-3)
    assert s["speed"]["p95"] == pytest.approx(A * w * np.cos(0.05 * np.pi / 2), rel=5e-3)
    assert s["acceleration"]["mean"] == pytest.approx(A * w ** 2 * 2 / np.pi, rel=5e-3)
    assert s["jerk"]["mean"] == pytest.approx(A * w ** 3 * 2 / np.pi, rel=1e-2)
    assert s["range_of_motion"]["mean"] == pytest.approx(2 * A, rel=1e-4)
    assert range_of_motion(x).shape == (1, 3)
    assert s["repetition_rate"]["mean"] == pytest.approx(f, rel=0.02)
    # the same motion held still for as long again (padding): with its true length nothing changes
    T = x.shape[1]
    padded = pad_sequences([x[0]], length=2 * T)  # (1, 2T, J, 3)
    held = kinematic_summary(padded, fps, lengths=[T])
    for q in s:
        for st in s[q]:
            assert held[q][st] == pytest.approx(s[q][st], rel=1e-12), (q, st)
    assert joint_kinematics(padded, 1, fps, lengths=[T]).size == (T - 1) * 3
    # counting the padding would halve the mean speed: the bug the lengths fix
    assert kinematic_summary(padded, fps)["speed"]["mean"] == pytest.approx(s["speed"]["mean"] / 2, rel=0.01)
    with pytest.raises(ValueError, match="lengths"):
        joint_kinematics(x, 1, fps, lengths=[T + 1])


def test_kinematic_wasserstein_ignores_padding_with_lengths():
    real = np.stack([arm_raise(30, seed=i) for i in range(4)])
    short = [arm_raise(20, seed=i) for i in range(4)]
    from rehabgen.samples import pad_sequences

    a = kinematic_wasserstein(real, np.stack(short))
    b = kinematic_wasserstein(real, pad_sequences(short, length=30), gen_lengths=[20] * 4)
    assert a == pytest.approx(b, rel=1e-12)
    c = kinematic_wasserstein(real, pad_sequences(short, length=30))  # padding counted as still frames
    assert abs(c["velocity"] - a["velocity"]) > 0.05 * a["velocity"]
    # real side too: padding the reference with its lengths leaves every distance unchanged
    d = kinematic_wasserstein(pad_sequences(list(real), length=45), np.stack(short), real_lengths=[30] * 4)
    assert d == pytest.approx(a, rel=1e-12)


def test_bone_metrics_skip_padded_frames():
    real = np.stack([arm_raise(30, seed=i) for i in range(3)])
    bones = KINECT_V2.bones
    ref = reference_bone_lengths(real, bones)
    junk = np.concatenate([real, real[:, :10] * 1.5], axis=1)  # 10 frames past each true length
    n = [30, 30, 30]
    assert bone_length_deviation(junk, bones, ref, lengths=n) < 1e-6
    assert bone_length_error(junk, bones, ref, lengths=n) < 1e-9
    assert limb_constraint_violations(junk, bones, ref, lengths=n) == 0.0
    assert limb_constraint_violations(junk, bones, ref) == pytest.approx(0.25)  # 10 of 40 frames
    np.testing.assert_allclose(reference_bone_lengths(junk, bones, lengths=n), ref)


def test_split_kinematic_reference_known_answers():
    """The same motion for every subject: zero distance in every split; one noisy subject moves
    single splits a lot but the mean over splits sits between them; bad sizes are refused."""
    from rehabgen.metrics.plausibility import split_kinematic_reference

    t = np.linspace(0, 2 * np.pi, 40)
    base = np.zeros((40, 3, 3), np.float32)
    base[:, 1, 0] = 0.3 * np.sin(t)
    subjects = [f"s{i}" for i in range(6) for _ in range(2)]
    same = split_kinematic_reference([base] * 12, subjects, 2, fps=10.0, n_splits=5)
    assert set(same) == {"velocity", "acceleration", "jerk"}
    assert all(v["mean"] == pytest.approx(0.0, abs=1e-9) and v["n_splits"] == 5 for v in same.values())
    rng = np.random.default_rng(0)
    noisy = [base + (rng.normal(0, 0.02, base.shape).astype(np.float32) if s == "s0" else 0) for s in subjects]
    ref = split_kinematic_reference(noisy, subjects, 2, fps=10.0, n_splits=30, seed=1)
    j = ref["jerk"]
    assert j["min"] < j["mean"] < j["max"] and j["std"] > 0
    assert j["max"] > 1.5 * j["min"]  # which side holds the noisy subject moves a single split a lot
    with pytest.raises(ValueError, match="test subjects"):
        split_kinematic_reference([base] * 12, subjects, 6, fps=10.0)


def test_split_ratio_bands_known_answers():
    """Subjects moving a joint at constant speeds v: with one test subject the ratio is the
    others' mean over the test subject's, one of len(v) known values, for speed and range alike;
    an exercise whose subjects agree within 20 % is always within; bad sizes are refused."""
    from rehabgen.metrics.plausibility import split_ratio_bands

    fps, T = 10.0, 21

    def walker(v):
        p = np.zeros((T, 2, 3), np.float32)
        p[:, 0, 0] = v * np.arange(T) / fps  # joint 0 at speed v, joint 1 still
        return p

    speeds = {"Es1": [1.0, 1.0, 1.0, 2.0], "Es2": [1.0, 1.1, 0.95, 1.05]}
    pos, subj, exs = [], [], []
    for e, vs in speeds.items():
        for i, v in enumerate(vs):
            pos.append(walker(v)), subj.append(f"s{i}"), exs.append(e)
    bands = split_ratio_bands(pos, subj, exs, 1, fps, n_splits=400, seed=0)
    assert bands["n_test_subjects"] == 1 and bands["tolerance"] == 0.2
    for q in ("speed", "range_of_motion"):
        es1, es2 = bands[q]["per_exercise"]["Es1"], bands[q]["per_exercise"]["Es2"]
        # Es1: test s3 -> 1/2; test s0..s2 -> (1+1+2)/3 = 4/3: never within 20 %
        assert es1["p5"] == pytest.approx(0.5, rel=1e-5) and es1["p95"] == pytest.approx(4 / 3, rel=1e-5)
        assert es1["within"] == 0.0
        assert es2["within"] == 1.0 and es2["p5"] > 0.8 and es2["p95"] < 1.2
        assert bands[q]["all_within"] == 0.0
    with pytest.raises(ValueError, match="test subjects"):
        split_ratio_bands(pos, subj, exs, 4, fps)


def test_repetition_rate_tells_tempo_from_amplitude():
    from rehabgen.metrics.plausibility import repetition_rate

    fps, T = 5.0, 80  # KIMORE at the working rate: a 16 s window
    t = np.arange(T) / fps
    x = np.zeros((3, T, 4, 3))
    x[0, :, 1, 1] = 0.3 * np.sin(2 * np.pi * 3 / 16 * t)  # 3 arm raises in 16 s
    x[1, :, 1, 1] = 0.6 * np.sin(2 * np.pi * 3 / 16 * t)  # the same tempo, twice the amplitude
    x[2, :, 1, 1] = 0.3 * np.sin(2 * np.pi * 1.5 / 16 * t)  # half the tempo
    x[:, :, 2, 0] = 0.05 * np.sin(2 * np.pi * 0.4 * t)[None]  # a small fast sway of another joint is not the exercise
    r = repetition_rate(x, fps)
    assert r[0] == pytest.approx(3 / 16, abs=0.01) and r[1] == pytest.approx(r[0], abs=1e-9)
    assert r[2] == pytest.approx(1.5 / 16, abs=0.01)
    # a padded tail does not count; a sequence too short to have a tempo gives NaN
    padded = np.concatenate([x[:1], np.repeat(x[:1, -1:], 40, axis=1)], axis=1)
    assert repetition_rate(padded, fps, lengths=[T])[0] == pytest.approx(r[0], abs=1e-12)
    assert np.isnan(repetition_rate(x[:, :3], fps)).all()


def test_band_power_puts_each_movement_in_its_band():
    from rehabgen.metrics.plausibility import BANDS, band_power, kinematic_summary

    fps, T = 5.0, 80
    x = np.zeros((3, T, 2, 3))

    def bin_(k):  # DCT-II basis k: k fps / 2T Hz, sampled at the frame centres
        return np.cos(np.pi * k * (np.arange(T) + 0.5) / T)

    x[0, :, 0, 1] = 0.3 * bin_(6)  # 3 repetitions in 16 s: 0.1875 Hz
    x[1, :, 0, 0] = 0.3 * bin_(1)  # half a cycle in 16 s: drift
    x[2, :, 1, 2] = 0.02 * bin_(32)  # 1 Hz tremor
    p = band_power(x, fps)
    assert [b[0] for b in BANDS] == ["drift", "repetition", "fast"] and p.shape == (3, 3)
    # a cosine of amplitude A has variance A^2/2; one of two joints moves: half of it per joint
    assert p[0] == pytest.approx([0, 0.3 ** 2 / 4, 0], abs=1e-9)
    assert p[1] == pytest.approx([0.3 ** 2 / 4, 0, 0], abs=1e-9)
    assert p[2] == pytest.approx([0, 0, 0.02 ** 2 / 4], abs=1e-9)
    # the bands add up to the variance; padding is left out with the true length
    assert p.sum(1) == pytest.approx(x.var(1).sum(-1).mean(-1), rel=1e-9)
    padded = np.concatenate([x, np.repeat(x[:, -1:], 20, axis=1)], axis=1)
    np.testing.assert_allclose(band_power(padded, fps, lengths=[T] * 3), p, atol=1e-12)
    s = kinematic_summary(x[:1], fps)
    assert s["repetition_power"]["mean"] == pytest.approx(0.3 ** 2 / 4, rel=1e-9) and s["drift_power"]["mean"] < 1e-12
