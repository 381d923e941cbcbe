"""Evaluator networks, downstream study and `rehabgen evaluate` end to end (small budgets)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from rehabgen.data import Dataset
from rehabgen.metrics.downstream import assessment_study, classic_augment
from rehabgen.metrics.evaluator import Evaluator, data_key, eval_inputs, eval_inputs_from_positions

from conftest import toy_dataset


@pytest.fixture(scope="module")
def split():
    ds = toy_dataset(n=60)
    test_subj = {"S_ID0", "S_ID1", "S_ID2"}
    tr = ds.by_subjects([s for s in ds.subjects if s not in test_subj])
    te = ds.by_subjects(test_subj)
    return tr, te


@pytest.fixture(scope="module")
def evaluator(split):
    return Evaluator.fit(split[0], steps=150, seed=0)


def test_evaluator_learns_on_held_out_subjects(split, evaluator):
    tr, te = split
    r = evaluator.evaluate(te)
    assert r["accuracy"] > 0.9 and r["n"] == len(te)
    ts = np.array([s.score("TS") for s in te.sequences])
    baseline = np.abs(ts - np.mean([s.score("TS") for s in tr.sequences])).mean()
    assert r["score_mae"] < 0.7 * baseline


def test_features_are_deterministic_and_persist(split, evaluator, tmp_path):
    x, _, _ = eval_inputs(split[1])
    f = evaluator.features(x, "classifier")
    assert f.shape == (len(split[1]), 128)
    np.testing.assert_array_equal(f, evaluator.features(x, "classifier"))
    evaluator.save(tmp_path / "ev")
    again = Evaluator.load(tmp_path / "ev")
    np.testing.assert_allclose(again.features(x, "regressor"), evaluator.features(x, "regressor"), atol=1e-6)
    with pytest.raises(ValueError, match="which must be"):
        evaluator.features(x, "nope")


def test_cache_reuses_and_keys_on_data(split, tmp_path):
    tr, _ = split
    a = Evaluator.cached(tr, tmp_path, key_extra={"x": 1}, steps=20, seed=0)
    b = Evaluator.cached(tr, tmp_path, key_extra={"x": 1}, steps=20, seed=0)
    assert not a.from_cache and b.from_cache
    changed = replace(tr, sequences=tr.sequences[1:])
    assert data_key(changed, {}) != data_key(tr, {})
    assert data_key(tr, {"seed": 1}) != data_key(tr, {"seed": 0})


def test_generated_positions_share_the_real_pipeline(split, evaluator):
    te = split[1]
    x_real, ex, sc = eval_inputs(te)
    T = min(s.n_frames for s in te.sequences)
    pos = np.stack([s.positions[:T] for s in te.sequences])
    x_gen, _, _ = eval_inputs_from_positions(pos, te.skeleton, ex, sc)
    assert x_gen.shape == x_real.shape
    assert (evaluator.predict_exercise(x_gen) == evaluator.predict_exercise(x_real)).mean() > 0.9


def test_downstream_study_no_leak_oracle_beats_noise(split):
    tr, te = split
    rng = np.random.default_rng(0)
    by_ex = {e: [s for s in tr.sequences if s.exercise == e] for e in tr.exercises}

    def oracle(exs, scores, seed):  # real training sequences with the closest score
        out = []
        for e, s in zip(exs, scores):
            c = min(by_ex[e], key=lambda q: abs(q.score("TS") - s))
            out.append(c.positions)
        return np.stack(out)

    def noise(exs, scores, seed):
        return rng.normal(0, 0.5, size=(len(exs), 60, 25, 3)).astype(np.float32)

    a = assessment_study(tr, te, oracle, k=2, seed=0, steps=60)
    b = assessment_study(tr, te, noise, k=2, seed=0, steps=60)
    for f in a["folds"]:
        assert not set(f["train_subjects"]) & set(f["test_subjects"])
    assert set(a["conditions"]) == {"real", "real+generated", "real+augmented", "tstr"}
    ho = a["conditions"]["tstr"]["held_out_test"]
    assert {"rmse", "mae", "rmse_unit", "accuracy", "per_exercise"} <= set(ho)
    assert b["conditions"]["tstr"]["held_out_test"]["rmse"]["mean"] > ho["rmse"]["mean"]
    assert b["conditions"]["tstr"]["held_out_test"]["accuracy"]["mean"] <= ho["accuracy"]["mean"]
    only_real = assessment_study(tr, te, None, k=2, seed=0, steps=10)
    assert set(only_real["conditions"]) == {"real", "real+augmented"}


def test_classic_augment_keeps_shape_and_changes_values():
    x = np.random.default_rng(0).normal(size=(3, 64, 75)).astype(np.float32)
    y = classic_augment(x, np.random.default_rng(1))
    assert y.shape == x.shape and np.abs(y - x).mean() > 0.01
