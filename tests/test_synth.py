"""Built-in data generator: exact bones, determinism, loadability, realistic signals, no artefacts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from rehabgen.data.kimore import EXERCISES, load_kimore
from rehabgen.data.synth import SynthConfig, exercise_motion, generate_subject, kinect_noise, sample_subject, write_synthetic_kimore
from rehabgen.skeleton import KINECT_V2 as SK


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    write_synthetic_kimore(d, SynthConfig(n_subjects=5, seed=0))
    return d


def test_bone_lengths_are_exact_in_clean_motion():
    g = generate_subject(3, seed=0, noise=False)
    for e, rec in g["recordings"].items():
        bl = SK.bone_lengths(rec["clean"])  # (T, bones)
        assert np.abs(bl - bl[0]).max() < 1e-6, e


def test_same_seed_same_bytes_other_seed_other_bytes(synth_dir, tmp_path):
    write_synthetic_kimore(tmp_path / "a", SynthConfig(n_subjects=5, seed=0))
    write_synthetic_kimore(tmp_path / "b", SynthConfig(n_subjects=5, seed=1))
    assert _tree_hash(tmp_path / "a") == _tree_hash(synth_dir)
    assert _tree_hash(tmp_path / "b") != _tree_hash(synth_dir)


def test_subject_k_does_not_depend_on_the_number_of_subjects():
    a = generate_subject(2, seed=7)
    b = generate_subject(2, seed=7)
    assert a["subject"].id == b["subject"].id
    np.testing.assert_array_equal(a["recordings"]["Es1"]["positions"], b["recordings"]["Es1"]["positions"])


def test_folder_loads_as_kimore_with_valid_scores(synth_dir):
    ds = load_kimore(synth_dir)
    assert not ds.quarantined
    assert len(ds.subjects) == 5 and 20 <= len(ds) <= 25
    assert abs(ds.fps - 30.0) < 0.5
    info = json.loads((synth_dir / "SYNTH_INFO.json").read_text())
    assert info["n_sequences"] == len(ds)
    for s in ds.sequences:
        assert 0 <= s.scores["PO"] <= 15 and 0 <= s.scores["CF"] <= 35
        assert s.scores["TS"] == pytest.approx(s.scores["PO"] + s.scores["CF"], abs=0.11)
        assert s.state is not None and s.timestamps is not None
        assert 8 * 30 <= s.n_frames <= 40 * 30
    # layout as distributed: orientation and timestamp files beside the positions
    es = next(synth_dir.glob("*/*/*/Es1"))
    assert list((es / "Raw").glob("JointOrientation*.csv")) and list((es / "Label").glob("ClinicalAssessment_*.xlsx"))


def test_quality_drives_the_score():
    q, ts = [], []
    for k in range(12):
        g = generate_subject(k, seed=1, noise=False)
        for rec in g["recordings"].values():
            q.append(rec["quality"])
            ts.append(rec["scores"]["TS"])
    assert spearmanr(q, ts)[0] > 0.6


def _range(p, joint, axis):
    return float(np.ptp(p[:, SK.index(joint), axis]))


def test_exercises_move_the_expected_joints():
    rng = np.random.default_rng(0)
    subj = sample_subject(1, rng)  # an expert
    m = {e: exercise_motion(e, subj, 0.95, np.random.default_rng(1))[0] for e in EXERCISES}
    # Es1: hands go overhead
    assert _range(m["Es1"], "WristLeft", 1) > 1.0 and _range(m["Es5"], "WristLeft", 1) < 0.8
    # Es5: the pelvis goes down
    assert _range(m["Es5"], "SpineBase", 1) > 0.25 and _range(m["Es1"], "SpineBase", 1) < 0.05
    # Es2: the shoulders tilt sideways
    def tilt(p):
        d = p[:, SK.index("ShoulderRight")] - p[:, SK.index("ShoulderLeft")]
        return float(np.ptp(np.arctan2(d[:, 1], d[:, 0])))
    assert tilt(m["Es2"]) > 0.4 and tilt(m["Es3"]) < tilt(m["Es2"]) / 2
    # Es3: the shoulder line turns about the vertical
    def yaw(p):
        d = p[:, SK.index("ShoulderRight")] - p[:, SK.index("ShoulderLeft")]
        return float(np.ptp(np.arctan2(d[:, 2], d[:, 0])))
    assert yaw(m["Es3"]) > 0.5 and yaw(m["Es1"]) < 0.2
    # Es4: the pelvis circles in the horizontal plane while the feet stay
    assert _range(m["Es4"], "SpineBase", 0) > 0.06 and _range(m["Es4"], "SpineBase", 2) > 0.06
    assert _range(m["Es4"], "AnkleLeft", 0) < 0.01


def test_lower_quality_reduces_range():
    subj = sample_subject(0, np.random.default_rng(0))
    hi = exercise_motion("Es1", subj, 1.0, np.random.default_rng(3))[0]
    lo = exercise_motion("Es1", subj, 0.2, np.random.default_rng(3))[0]
    assert _range(hi, "WristRight", 1) > _range(lo, "WristRight", 1) + 0.2


def test_noise_is_kinect_like_and_exercise_blind():
    rates, jitter = {e: [] for e in EXERCISES}, {e: [] for e in EXERCISES}
    for k in range(16):
        g = generate_subject(k, seed=2)
        for e, rec in g["recordings"].items():
            st = rec["state"]
            rates[e].append((st < 2).mean())
            ok = st == 2
            d = np.linalg.norm(rec["positions"] - rec["clean"], axis=-1)[ok]
            jitter[e].append(np.median(d))
    allr = np.concatenate([rates[e] for e in EXERCISES])
    assert 0.001 < allr.mean() < 0.10
    means = [np.mean(rates[e]) for e in EXERCISES]
    assert max(means) - min(means) < 0.02  # the same noise process whatever the exercise
    jm = [np.mean(jitter[e]) for e in EXERCISES]
    assert 0.002 < min(jm) and max(jm) - min(jm) < 0.002


def test_noise_contains_each_quirk():
    P = np.repeat(np.random.default_rng(0).normal(size=(1, 25, 3)), 3000, axis=0)
    found = {"inferred": 0, "lost": 0, "frame_lost": 0}
    for seed in range(20):
        X, st = kinect_noise(P, np.random.default_rng(seed))
        found["inferred"] += int((st == 1).any())
        found["lost"] += int(((st == 0) & (np.abs(X).sum(-1) == 0)).any())
        found["frame_lost"] += int((st == 0).all(axis=1).any())
    assert all(v > 0 for v in found.values()), found
