from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rehabgen.data import DataError, Dataset, Sequence
from rehabgen.preprocess import (
    WARP_FACTORS, PreprocessConfig, SeqTransform, _rot_y, augment_dataset, bucket_length, crop_windows, detect_invalid, fill_gaps,
    normalise_sequence,
    preprocess_dataset, resample, smooth, to_arrays,
)
from rehabgen.skeleton import KINECT_V2

from conftest import arm_raise, toy_dataset


def _seq(p, valid=None, **kw):
    v = np.isfinite(p).all(-1) if valid is None else valid
    return Sequence("s1", "Expert", "Es1", p.astype(np.float32), v, {"TS": 40.0}, source="mem", **kw)


def test_normalise_then_invert_recovers_metres():
    rng = np.random.default_rng(0)
    p = arm_raise(50) @ _rot_y(0.7).T + np.array([0.3, -0.2, 0.4])  # turned subject, off-centre
    p += rng.normal(0, 0.003, p.shape)
    seq = _seq(p)
    norm, tf = normalise_sequence(seq, KINECT_V2)
    back = tf.invert(norm.positions.astype(np.float64))
    assert np.abs(back - seq.positions).max() < 1e-5
    # centred, unit size, facing +x
    assert np.abs(norm.positions[0, 0]).max() < 1e-6
    lh, rh = KINECT_V2.index("HipLeft"), KINECT_V2.index("HipRight")
    across = norm.positions[0, rh] - norm.positions[0, lh]
    assert abs(across[2]) < 0.05 * abs(across[0]) and across[0] > 0
    assert tf.scale == pytest.approx(KINECT_V2.bone_lengths(seq.positions).mean(0).sum(), rel=0.02)


def test_facing_normalisation_removes_a_turn():
    p = arm_raise(30)
    a, _ = normalise_sequence(_seq(p), KINECT_V2)
    b, _ = normalise_sequence(_seq(p @ _rot_y(-1.1).T), KINECT_V2)
    assert np.abs(a.positions - b.positions).max() < 1e-4


def test_transform_is_exact_in_float64():
    tf = SeqTransform((1.0, 2.0, 3.0), 0.3, 1.7)
    x = np.random.default_rng(1).normal(size=(5, 25, 3))
    np.testing.assert_allclose(tf.invert(tf.apply(x)), x, atol=1e-12)


def test_gap_filling_never_marks_filled_joints_as_valid():
    p = arm_raise(60)
    valid = np.ones(p.shape[:2], bool)
    valid[10:14, 6] = False  # short gap: filled
    valid[20:50, 7] = False  # long gap: stays missing
    q = p.copy()
    q[~valid] = np.nan
    out = fill_gaps(_seq(q, valid), max_gap=5)
    assert out.filled[10:14, 6].all() and not out.filled[20:50, 7].any()
    assert not out.valid[10:14, 6].any()  # validity keeps what was really observed
    assert not (out.valid & out.filled).any()
    # linear interpolation between the neighbours
    expect = p[9, 6] + (p[14, 6] - p[9, 6]) * (np.arange(1, 5) / 5)[:, None]
    np.testing.assert_allclose(out.positions[10:14, 6], expect, atol=1e-6)
    assert np.isnan(out.positions[20:50, 7]).all()


def test_detect_invalid_flags_state_zeros_and_spikes():
    p = arm_raise(60)
    state = np.full(p.shape[:2], 2, np.int8)
    state[5, 3] = 1
    state[6, 3] = 0
    p[30, 10] += [0.0, 0.5, 0.0]  # a 50 cm spike on one frame
    p[40, 12] = 0.0
    seq = _seq(p, state=state)
    v = detect_invalid(seq, fps=30.0)
    assert not v[5, 3] and not v[6, 3] and not v[30, 10] and not v[40, 12]
    assert v.sum() == v.size - 4
    assert detect_invalid(seq, fps=30.0, inferred_valid=True)[5, 3]
    # fast real movement is not a jump
    assert detect_invalid(_seq(arm_raise(60)), fps=30.0).all()


def test_smoothing_reduces_jitter_and_keeps_gaps():
    rng = np.random.default_rng(0)
    p = arm_raise(90)
    noisy = p + rng.normal(0, 0.01, p.shape)
    noisy[40:45, 2] = np.nan
    out = smooth(_seq(noisy), "savgol", 9)
    ok = np.isfinite(noisy).all(-1)
    err_before = np.abs(noisy - p)[ok].mean()
    err_after = np.abs(out.positions - p)[ok].mean()
    assert err_after < 0.7 * err_before
    assert np.isnan(out.positions[40:45, 2]).all()
    out_b = smooth(_seq(noisy), "butter", fps=30.0)
    assert np.abs(out_b.positions - p)[ok].mean() < err_before
    with pytest.raises(ValueError, match="unknown smoothing method"):
        smooth(_seq(noisy), "magic")


def test_resample_and_buckets():
    p = arm_raise(61)
    valid = np.ones(p.shape[:2], bool)
    valid[30, 4] = False
    r = resample(_seq(p, valid), 31)
    assert r.positions.shape == (31, 25, 3)
    np.testing.assert_allclose(r.positions[::5], p[::10][: len(r.positions[::5])], atol=1e-6)
    assert not r.valid[15, 4]
    assert bucket_length(70, (64, 128, 256)) == 128 and bucket_length(999, (64, 128)) == 128


def test_pipeline_records_steps_and_arrays_pad():
    seqs = [_seq(arm_raise(60, seed=i)) for i in range(3)]
    seqs[1] = _seq(arm_raise(45))
    ds = Dataset(KINECT_V2, seqs, fps=30.0)
    out, tfs = preprocess_dataset(ds, PreprocessConfig(fps=15.0))
    assert [s.n_frames for s in out.sequences] == [30, 22, 30]
    assert out.fps == 15.0 and out.metadata["preprocessing"][-1]["fps"] == 15.0
    arr = to_arrays(out, length=32)
    assert arr["x"].shape == (3, 32, 25, 3) and arr["lengths"].tolist() == [30, 22, 30]
    assert not arr["mask"][1, 22:].any() and arr["mask"][1, :22].all()
    # inverse of the geometric steps: back to metres of the resampled sequence
    back = tfs[0].invert(out.sequences[0].positions)
    raw = resample(_seq(arm_raise(60, seed=0)), 30).positions
    assert np.abs(back - raw).max() < 0.01  # only smoothing differs
    plain, tfs = preprocess_dataset(ds, PreprocessConfig(fps=15.0, smooth=None, detect_invalid=False))
    assert np.abs(tfs[0].invert(plain.sequences[0].positions) - raw).max() < 1e-5


def test_augmentation_mirrors_and_warps_with_labels_kept():
    ds = toy_dataset(n=4, T=60)
    pre, _ = preprocess_dataset(ds, PreprocessConfig(fps=None, smooth=None, detect_invalid=False))
    out = augment_dataset(pre, "mirror,warp")
    n = len(pre.sequences)
    assert len(out.sequences) == n * 2 * (1 + len(WARP_FACTORS))
    a, m = pre.sequences[0], out.sequences[n]
    lw, rw = KINECT_V2.index("WristLeft"), KINECT_V2.index("WristRight")
    np.testing.assert_allclose(m.positions[:, rw], a.positions[:, lw] * [-1, 1, 1], atol=1e-6)
    assert (m.exercise, m.subject, m.score("TS")) == (a.exercise, a.subject, a.score("TS"))
    twice = augment_dataset(replace(pre, sequences=[m]), "mirror").sequences[1]
    np.testing.assert_allclose(twice.positions, a.positions, atol=1e-6)
    slow = out.sequences[2 * n]  # tempo x0.8: longer
    assert slow.n_frames == round(a.n_frames / WARP_FACTORS[0]) and slow.exercise == a.exercise
    with pytest.raises(DataError, match=r"unknown augmentation\(s\) \['flip'\]"):
        augment_dataset(pre, "flip")



def test_crop_windows_cover_the_rest_of_a_long_recording():
    p = np.arange(125, dtype=np.float32)[:, None, None] * np.ones((1, 25, 3), np.float32)  # frame index as value
    seq = _seq(p, state=np.full((125, 25), 2, np.int8))
    wins = crop_windows(seq, 80, 20)
    assert [w.positions[0, 0, 0] for w in wins] == [20, 40, 45]  # the last one ends with the recording
    assert all(w.n_frames == 80 and w.state.shape == (80, 25) and w.valid.shape == (80, 25) for w in wins)
    assert wins[-1].positions[-1, 0, 0] == 124 and wins[0].source == "mem (frames 20-100)"
    assert crop_windows(seq, 125, 20) == [] and crop_windows(_seq(p[:50]), 80, 20) == []
    ds = Dataset(KINECT_V2, [seq, _seq(p[:60])])
    out = augment_dataset(ds, "crop,mirror", window=80)
    # originals first, then the 3 windows of the long one, then the mirror images of all five
    assert len(out.sequences) == 10 and out.sequences[2].positions[0, 0, 0] == 20
    assert out.sequences[7].source == "mem (frames 20-100) (mirrored)"
    with pytest.raises(DataError, match="'crop' augmentation needs the training window length"):
        augment_dataset(ds, "crop")
