"""Evaluator networks, downstream study and `rehabgen evaluate` end to end (small budgets)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from rehabgen.data import Dataset
from rehabgen.data.dataset import score_range
from rehabgen.metrics.downstream import _scores, assessment_study, classic_augment
from rehabgen.metrics.evaluator import Evaluator, data_key, eval_inputs, eval_inputs_from_positions, train_fcn

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
    assert set(a["conditions"]) == {"real", "real+generated", "real+augmented", "tstr", "exercise-mean"}
    # the no-skill baseline, by hand: each exercise's mean training score of the fold, on the test subjects
    x, exs, sc = eval_inputs(tr, "TS")
    xt, ext, sct = eval_inputs(te, "TS")
    lo, hi = score_range("TS", sc)
    want = []
    for f in a["folds"]:
        sel = np.isin([s.subject for s in tr], f["train_subjects"])
        prior = {e: sc[sel & (exs == e)].mean() for e in np.unique(exs)}
        want.append(np.sqrt(np.mean((np.array([prior[e] for e in ext]) - sct) ** 2)))
    base = a["conditions"]["exercise-mean"]["held_out_test"]
    assert base["rmse"]["mean"] == pytest.approx(np.mean(want), rel=1e-5) and hi > lo
    assert np.isnan(base["accuracy"]["mean"]) and np.isnan(base["within_r"]["mean"])  # no ranking
    # its error is all bias where each exercise's test scores are one value, and partly otherwise
    assert 0 < base["bias"]["mean"] <= base["rmse"]["mean"] + 1e-9
    ho = a["conditions"]["tstr"]["held_out_test"]
    assert {"rmse", "mae", "rmse_unit", "accuracy", "per_exercise"} <= set(ho)
    assert b["conditions"]["tstr"]["held_out_test"]["rmse"]["mean"] > ho["rmse"]["mean"]
    assert b["conditions"]["tstr"]["held_out_test"]["accuracy"]["mean"] <= ho["accuracy"]["mean"]
    only_real = assessment_study(tr, te, None, k=2, seed=0, steps=10)
    assert set(only_real["conditions"]) == {"real", "real+augmented", "exercise-mean"}


def test_downstream_balanced_scores_label_generated_data_with_what_was_asked(split):
    """gen_scores="balanced" asks for scores spread over each exercise's training range, and the
    generated sequences are labelled with the scores asked for (an oracle that returns a real
    sequence of the asked score then trains as well as on matched scores)."""
    tr, te = split
    asked = {}

    def record(mode):
        def gen(exs, scores, seed):
            asked[mode] = (list(exs), np.asarray(scores))
            return np.stack([tr.sequences[0].positions[:40]] * len(exs))
        return gen

    for mode in ("matched", "balanced"):
        st = assessment_study(tr, te, record(mode), k=2, seed=0, steps=5, gen_scores=mode)
        assert st["gen_scores"] == mode
    real = np.array([s.score("TS") for s in tr.sequences])
    exs, bal = asked["balanced"]
    np.testing.assert_allclose(asked["matched"][1], real, rtol=1e-6)
    assert not np.allclose(bal, real)
    for e in set(exs):
        sel = np.array([x == e for x in exs])
        rs = real[[s.exercise == e for s in tr.sequences]]
        assert rs.min() - 1e-4 <= bal[sel].min() and bal[sel].max() <= rs.max() + 1e-4
    with pytest.raises(ValueError, match="gen_scores must be 'matched' or 'balanced'"):
        assessment_study(tr, te, record("x"), k=2, seed=0, steps=5, gen_scores="uniform")


def test_downstream_assessor_seeds_score_every_initialisation(split):
    """assessor_seeds=2: two networks per fold and condition, each scored; the first is the
    single-seed study's, the baseline (no network) is scored once per fold; 0 is refused."""
    tr, te = split
    one = assessment_study(tr, te, None, k=2, seed=0, steps=5)
    two = assessment_study(tr, te, None, k=2, seed=0, steps=5, assessor_seeds=2)
    assert two["assessor_seeds"] == 2 and one["assessor_seeds"] == 1
    r1, r2 = (st["conditions"]["real"]["held_out_test"]["rmse"]["runs"] for st in (one, two))
    assert len(r1) == 2 and len(r2) == 4  # folds x seeds, fold by fold
    assert r2[0] == pytest.approx(r1[0]) and r2[2] == pytest.approx(r1[1])
    assert r2[1] != pytest.approx(r2[0])  # another initialisation, another network
    assert two["conditions"]["real"]["held_out_test"]["rmse"]["mean"] == pytest.approx(np.mean(r2))
    assert len(two["conditions"]["exercise-mean"]["held_out_test"]["rmse"]["runs"]) == 2
    with pytest.raises(ValueError, match="assessor_seeds must be >= 1, got 0"):
        assessment_study(tr, te, None, k=2, seed=0, steps=5, assessor_seeds=0)


def test_downstream_per_real_widens_the_pool_and_keeps_half_real(split, monkeypatch):
    """n_gen_per_real=3: three generated (and three augmented) sequences per real one, the real
    ones repeated three times, so half of what every mixed assessor trains on is real and its real
    half is the real-only assessor's data; TSTR trains on all three; below 1 is refused."""
    from rehabgen.metrics import downstream as D

    tr, te = split
    asked, fits = [], []
    real_fit = D._train_assessor

    def gen(exs, scores, seed):
        asked.append(list(exs))
        rng = np.random.default_rng(len(asked))
        return np.stack([tr.sequences[0].positions[:40]] * len(exs)) + rng.normal(0, 0.01, (len(exs), 40, 25, 3))

    def spy(x, ex, u, n_ex, steps, seed, device=None):
        fits.append(x)
        return real_fit(x, ex, u, n_ex, steps, seed, device)

    monkeypatch.setattr(D, "_train_assessor", spy)
    st = assessment_study(tr, te, gen, k=2, seed=0, steps=2, n_gen_per_real=3)
    assert asked[0] == [s.exercise for s in tr.sequences for _ in range(3)]
    # per fold, in order: real, real+generated, real+augmented, tstr
    for f in range(2):
        real, mixed, augmented, tstr = fits[4 * f: 4 * f + 4]
        n = len(real)
        assert len(mixed) == len(augmented) == 6 * n and len(tstr) == 3 * n
        np.testing.assert_array_equal(mixed[:3 * n], np.repeat(real, 3, 0))
        np.testing.assert_array_equal(augmented[:3 * n], np.repeat(real, 3, 0))
        third = augmented[3 * n:].reshape(3, n, *real.shape[1:])  # three different augmentations
        assert not np.allclose(third[0], third[1])
    assert st["n_gen_per_real"] == 3
    with pytest.raises(ValueError, match="n_gen_per_real must be >= 1, got 0"):
        assessment_study(tr, te, gen, k=2, seed=0, steps=2, n_gen_per_real=0)


def test_downstream_windows_control_trains_on_true_windows_and_changes_nothing_else(split, monkeypatch):
    """windows=: a real+windows condition right after real+generated, whose assessor trains on the
    fold's real sequences (first half) and their windows with the true labels (second half); the
    other conditions' data, hence their results, are those of the study without it; a wrong
    number of windows is refused."""
    from rehabgen.metrics import downstream as D

    tr, te = split
    fits, calls = [], []
    real_fit = D._train_assessor

    def spy(x, ex, u, n_ex, steps, seed, device=None):
        fits.append((x, u))
        return real_fit(x, ex, u, n_ex, steps, seed, device)

    def gen(exs, scores, seed):
        return np.stack([tr.sequences[0].positions[:40]] * len(exs))

    def windows(seed, copies):
        calls.append((seed, copies))
        return [s.positions[5:35] for _ in range(copies) for s in tr.sequences]

    without = assessment_study(tr, te, gen, k=2, seed=0, steps=3)
    monkeypatch.setattr(D, "_train_assessor", spy)
    st = assessment_study(tr, te, gen, k=2, seed=0, steps=3, windows=windows)
    assert list(st["conditions"]) == ["real", "real+generated", "real+windows", "real+augmented", "tstr",
                                      "exercise-mean"]
    assert calls == [(2, 1)]  # its own seed: the augmentations' stream is untouched
    x, _, sc = eval_inputs(tr, "TS")
    lo, hi = score_range("TS", sc)
    xw = eval_inputs_from_positions(np.stack([s.positions[5:35] for s in tr.sequences]), tr.skeleton,
                                    np.zeros(len(tr), int), sc)[0]
    for f, fold in enumerate(st["folds"]):
        (real, u_real), _, (mixed, u_mixed) = fits[5 * f: 5 * f + 3]
        n = len(real)
        sel = np.isin([s.subject for s in tr], fold["train_subjects"])
        np.testing.assert_allclose(u_mixed, np.concatenate([u_real, u_real]))  # true labels
        np.testing.assert_allclose(u_real, (sc[sel] - lo) / (hi - lo), rtol=1e-6)
        np.testing.assert_array_equal(mixed[:n], real)
        mean, std = x.reshape(-1, x.shape[-1]).mean(0), x.reshape(-1, x.shape[-1]).std(0) + 1e-3
        np.testing.assert_allclose(mixed[n:], (xw[sel] - mean) / std, rtol=1e-4, atol=1e-4)
    for c in without["conditions"]:
        assert st["conditions"][c]["held_out_test"]["rmse"]["runs"] == \
            pytest.approx(without["conditions"][c]["held_out_test"]["rmse"]["runs"])
    only_real = assessment_study(tr, te, None, k=2, seed=0, steps=2, windows=windows)
    assert list(only_real["conditions"]) == ["real", "real+windows", "real+augmented", "exercise-mean"]
    with pytest.raises(ValueError, match=r"windows\(seed, 1\) gave 1 sequences, expected 1 x \d+ \(one per training sequence"):
        assessment_study(tr, te, None, k=2, seed=0, steps=2, windows=lambda seed, copies: windows(seed, 1)[:1])


def test_training_windows_are_the_models_own_frames_in_metres(tiny_run):
    """`training_windows`: one `length`-frame window per sequence per round, cut from the model's
    preprocessing of the recording (its frame rate, gaps filled), in metres; the same for a seed,
    different between seeds and rounds."""
    from rehabgen.evaluate import training_windows
    from rehabgen.preprocess import preprocess_dataset
    from rehabgen.runs import load_model

    root, ds = tiny_run
    model = load_model(root / "run", "cpu", "fp32")
    pre, tfs = preprocess_dataset(ds, replace(model.spec.preprocess, max_gap=10 ** 6))
    draw = training_windows(model, ds, 12)
    a, b, c = draw(0, 2), draw(0, 2), draw(1, 2)
    assert len(a) == 2 * len(ds) and all(w.shape == (12, 25, 3) for w in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    assert any(not np.array_equal(x, y) for x, y in zip(a[:len(ds)], a[len(ds):]))
    for i in (0, len(ds) - 1, len(ds)):  # round 1 is the same sequences again, at j * n + i
        seq, tf = pre.sequences[i % len(ds)], tfs[i % len(ds)]
        view = tf.invert(seq.positions.astype(np.float64))  # (T, J, 3) metres at the model's rate
        assert seq.n_frames > 12
        starts = [k for k in range(seq.n_frames - 11) if np.allclose(view[k:k + 12], a[i], atol=1e-4)]
        assert starts, f"window {i} is not a stretch of its recording as the model saw it"
        assert np.abs(a[i]).max() < 5  # metres, not standardised units


def test_downstream_error_splits_into_bias_and_within_exercise_ranking():
    """Known answers: an assessor off by a constant per exercise has all its error in `bias` and
    ranks perfectly (r = 1); reversed ranks give r = -1; constant predictions have no r; and
    RMSE² = bias² + within-exercise error² on any predictions."""
    t = np.array([0.2, 0.4, 0.6, 0.5, 0.7])
    ex = np.array([0, 0, 0, 1, 1])
    shifted = _scores(t + np.array([0.1, 0.1, 0.1, -0.2, -0.2]), t, ex, ex, 0, 50, ["A", "B"])
    assert shifted["bias"] == pytest.approx(50 * np.sqrt((3 * 0.01 + 2 * 0.04) / 5))
    assert shifted["bias"] == pytest.approx(shifted["rmse"]) and shifted["within_r"] == pytest.approx(1.0)
    reversed_ = _scores(np.array([0.6, 0.4, 0.2, 0.7, 0.5]), t, ex, ex, 0, 50, ["A", "B"])
    assert reversed_["within_r"] == pytest.approx(-1.0) and reversed_["bias"] == pytest.approx(0.0, abs=1e-12)
    flat = _scores(np.full(5, 0.5), t, ex, ex, 0, 50, ["A", "B"])
    assert np.isnan(flat["within_r"]) and flat["bias"] > 0
    rng = np.random.default_rng(0)
    p, u = rng.uniform(0, 1, 40), rng.uniform(0, 1, 40)
    e = rng.integers(0, 3, 40)
    u[3] = np.nan  # unscored sequences are left out of every part
    s = _scores(p, u, e, e, 0, 50, ["A", "B", "C"])
    ok = np.isfinite(u)
    d = np.concatenate([(p[ok] - u[ok])[e[ok] == k] - (p[ok] - u[ok])[e[ok] == k].mean() for k in range(3)])
    assert s["rmse"] ** 2 == pytest.approx(s["bias"] ** 2 + (50 * np.sqrt((d ** 2).mean())) ** 2)
    pc = np.concatenate([p[ok][e[ok] == k] - p[ok][e[ok] == k].mean() for k in range(3)])
    uc = np.concatenate([u[ok][e[ok] == k] - u[ok][e[ok] == k].mean() for k in range(3)])
    assert s["within_r"] == pytest.approx(np.corrcoef(pc, uc)[0, 1])


def test_classic_augment_keeps_shape_and_changes_values():
    x = np.random.default_rng(0).normal(size=(3, 64, 75)).astype(np.float32)
    y = classic_augment(x, np.random.default_rng(1))
    assert y.shape == x.shape and np.abs(y - x).mean() > 0.01


def test_fits_leave_the_global_torch_rng_alone_and_are_reproducible(split):
    """Evaluator and assessor fits draw from their own seeds: the caller's torch RNG stream is
    the same as if no fit had happened, and a seed gives the same weights every time."""
    import torch

    tr, te = split
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = Evaluator.fit(tr, steps=5, seed=7)
    assessment_study(tr, te, None, k=2, seed=0, steps=3)
    assert torch.equal(torch.rand(3), expected)
    b = Evaluator.fit(tr, steps=5, seed=7)
    for (k, v), w in zip(a.regressor.state_dict().items(), b.regressor.state_dict().values()):
        assert torch.equal(v, w), k
    c = Evaluator.fit(tr, steps=5, seed=8)
    assert not torch.equal(c.classifier.head.weight, a.classifier.head.weight)


def test_one_training_loop_for_classifier_regressor_and_assessor(split):
    """train_fcn's heads: output 0 regresses scores (NaN ignored), the next ones classify."""
    import torch

    tr, te = split
    x, ex, sc = eval_inputs(tr)
    xt, ext, sct = eval_inputs(te)
    mean, std = x.reshape(-1, x.shape[-1]).mean(0), x.reshape(-1, x.shape[-1]).std(0) + 1e-3
    u = ((sc - 10) / 40).astype(np.float32)
    u[:6] = np.nan  # unknown scores are ignored, their sequences still teach the exercise
    both = train_fcn((x - mean) / std, 150, 0, labels=ex, n_classes=2, scores=u, score_weight=4.0)
    assert both.head.out_features == 3
    with torch.no_grad():
        out = both(torch.from_numpy(((xt - mean) / std).astype(np.float32))).numpy()
    assert (out[:, 1:].argmax(-1) == ext).mean() > 0.9
    assert np.corrcoef(out[:, 0], sct)[0, 1] > 0.7
    assert train_fcn(x, 2, 0, labels=ex, n_classes=2).head.out_features == 2
    assert train_fcn(x, 2, 0, scores=u).head.out_features == 1
    with pytest.raises(ValueError, match="labels, scores or both"):
        train_fcn(x, 1, 0)


# ---- evaluate_run against a separate test folder ----------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny diffusion run on 6 synthetic subjects (all training), and a 'patients' folder:
    3 other people in the generic layout, doing 3 of the 5 exercises."""
    from rehabgen.data import load_dataset
    from rehabgen.data.generic import write_generic
    from rehabgen.data.synth import SynthConfig, write_synthetic_kimore
    from rehabgen.models import get_family
    from rehabgen.preprocess import PreprocessConfig
    from rehabgen.runs import write_json

    root = tmp_path_factory.mktemp("ev")
    write_synthetic_kimore(root / "train", SynthConfig(n_subjects=6, seed=0))
    ds = load_dataset(root / "train")
    model, arrays = get_family("diffusion").from_dataset(ds, PreprocessConfig(fps=5), max_len=40, d_model=32,
                                                         n_layers=1, ff=64)
    model.fit(arrays, steps=10, progress=False)
    model.save(root / "run" / "model")
    write_json(root / "run" / "split.json", {"train": ds.subjects, "test": []})
    write_synthetic_kimore(root / "p_kimore", SynthConfig(n_subjects=3, seed=5))
    p = load_dataset(root / "p_kimore")
    ids = {s: f"P{k + 1}" for k, s in enumerate(p.subjects)}
    seqs = [replace(s, subject=ids[s.subject]) for s in p.sequences if s.exercise in ("Es1", "Es2", "Es3")]
    write_generic(root / "patients", Dataset(p.skeleton, seqs, fps=p.fps))
    return root, ds


def test_evaluate_against_a_separate_test_folder(tiny_run, tmp_path, monkeypatch):
    from rehabgen.data import load_dataset
    from rehabgen.evaluate import evaluate_run

    monkeypatch.setenv("REHABGEN_CACHE", str(tmp_path / "cache"))
    root, train = tiny_run
    patients = load_dataset(root / "patients")
    out = tmp_path / "rep"
    m = evaluate_run(root / "run", root / "train", out, repeats=2, folds=2, steps=2, evaluator_steps=30,
                     progress=False, test_data=root / "patients", seed=0, downstream_steps=40)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_data"] == str(root / "patients") == json.loads((out / "config.json").read_text())["test_data"]
    n = len(patients)
    assert saved["n_test_sequences"] == saved["evaluator"]["n"] == saved["n_generated_per_repeat"] == n
    assert saved["n_train_sequences"] == len(train)
    assert saved["test_subjects"] == ["P1", "P2", "P3"] and saved["test_subjects_also_in_training"] == []
    # the real reference is the whole test set in every repeat: deterministic metrics repeat exactly
    fid_ref = saved["metrics"]["fid"]["real_reference"]["runs"]
    assert len(fid_ref) == 2 and fid_ref[0] == fid_ref[1]
    assert saved["metrics"]["fid"]["generated"]["runs"][0] != saved["metrics"]["fid"]["generated"]["runs"][1]
    # the downstream study trains on the run's training subjects and tests on the patients
    study = saved["downstream"]
    for f in study["folds"]:
        assert set(f["train_subjects"]) | set(f["test_subjects"]) <= set(train.subjects)
    held = study["conditions"]["real+generated"]["held_out_test"]
    assert set(held["per_exercise"]) == {"Es1", "Es2", "Es3"}
    kin = saved["kinematics"]
    assert set(kin) == {"overall", "Es1", "Es2", "Es3"}
    sp = kin["overall"]["speed"]["mean"]
    assert sp["real"] > 0 and sp["ratio"] == pytest.approx(sp["generated"] / sp["real"])
    # the training patients' own ratio to the test patients, as a real-vs-real yardstick
    from rehabgen.evaluate import _kinematics_by_exercise, model_space_real
    from rehabgen.runs import load_model
    model = load_model(root / "run")
    tr_pos = model_space_real(model, train)
    tr_speed = _kinematics_by_exercise(tr_pos, [q.exercise for q in train.sequences], ["Es1"], model.spec.fps)
    assert sp["train_ratio"] == pytest.approx(tr_speed["overall"]["speed"]["mean"] / sp["real"], rel=1e-5)
    assert "; real " in (out / "report.md").read_text()
    stable = saved["kinematic_reference"]
    assert set(stable) == {"velocity", "acceleration", "jerk"} and stable["jerk"]["n_splits"] == 100
    assert stable["jerk"]["min"] <= stable["jerk"]["mean"] <= stable["jerk"]["max"]
    md = (out / "report.md").read_text()
    assert f"test folder `{root / 'patients'}`" in md and "**" in md
    assert "| condition | overall RMSE | Es1 | Es2 | Es3 | bias | within-exercise r | exercise accuracy |" in md
    assert "Kinematic distances against a stable real reference" in md
    bands = saved["real_group_bands"]
    assert bands["n_splits"] == 200 and 0 <= bands["range_of_motion"]["all_within"] <= 1
    assert "Per-exercise ratios against real patient groups" in md
    assert (out / "downstream.png").stat().st_size > 0 and m["report"] == str(out / "report.md")


def test_downstream_data_is_made_as_the_family_says_unless_told(tiny_run, tmp_path, monkeypatch):
    """By default the study's generated data follows the family's `study_defaults` (diffusion:
    balanced scores, score guidance 4, repetition guidance 2.5); each `downstream_*` argument
    overrides its part; a GAN keeps matched scores and no scales, a VAE balances them; a distilled
    student has no guidance to set."""
    import rehabgen.evaluate as E
    from rehabgen.metrics import downstream as D
    from rehabgen.models import get_family

    monkeypatch.setenv("REHABGEN_CACHE", str(tmp_path / "cache"))
    root, _ = tiny_run
    seen = []
    real_study = D.assessment_study

    def spy(*a, **kw):
        seen.append(kw["gen_scores"])
        return real_study(*a, **kw)

    monkeypatch.setattr(E, "assessment_study", spy)
    kw = dict(repeats=1, folds=2, steps=2, evaluator_steps=10, progress=False, test_data=root / "patients",
              downstream_steps=5)
    m = E.evaluate_run(root / "run", root / "train", tmp_path / "a", **kw)
    assert seen == ["balanced"] and m["downstream"]["gen_scores"] == "balanced"
    assert m["downstream"]["sampler"] == {"steps": 2, "score_guidance": 4.0, "repetition_guidance": 2.5}
    m = E.evaluate_run(root / "run", root / "train", tmp_path / "b", downstream_scores="matched",
                       downstream_repetition_guidance=1.0, **kw)
    assert seen[-1] == "matched" and m["downstream"]["gen_scores"] == "matched"
    assert m["downstream"]["sampler"] == {"steps": 2, "score_guidance": 4.0, "repetition_guidance": 1.0}
    assert json.loads((tmp_path / "b" / "config.json").read_text())["downstream_scores"] == "matched"
    with pytest.raises(ValueError, match="downstream_scores must be 'matched' or 'balanced', got 'best'"):
        E.evaluate_run(root / "run", root / "train", tmp_path / "c", downstream_scores="best", **kw)
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="downstream_per_real must be >= 1, got 0"):
        E.evaluate_run(root / "run", root / "train", tmp_path / "d", downstream_per_real=0, **kw)
    assert not (tmp_path / "d").exists()
    assert get_family("gan").study_defaults == {"scores": "matched"}  # measured: balanced did not help it
    assert get_family("vae").study_defaults == {"scores": "balanced"}
    student = E.load_model(root / "run", "cpu", "fp32")
    student.hparams["sampler"] = "distilled"
    assert student.study_settings() == ("balanced", {})


def test_test_folder_must_match_the_model(tiny_run, tmp_path):
    from rehabgen.data import DataError, load_dataset
    from rehabgen.data.generic import write_generic
    from rehabgen.evaluate import evaluate_run
    from rehabgen.skeleton import Skeleton

    root, _ = tiny_run
    p = load_dataset(root / "patients")
    sk = p.skeleton.to_dict()
    sk["joints"] = ["Crown" if j == "Head" else j for j in sk["joints"]]
    write_generic(tmp_path / "other_body", replace(p, skeleton=Skeleton.from_dict(sk)))
    with pytest.raises(DataError, match=r"other_body: skeleton joints differ .*missing \['Head'\], extra \['Crown'\]"):
        evaluate_run(root / "run", root / "train", tmp_path / "r1", test_data=tmp_path / "other_body", progress=False)
    seqs = [replace(s, exercise="Es9") if s.exercise == "Es2" else s for s in p.sequences]
    write_generic(tmp_path / "other_ex", Dataset(p.skeleton, seqs, fps=p.fps))
    with pytest.raises(DataError, match=r"other_ex: exercise\(s\) \['Es9'\] unknown to the model"):
        evaluate_run(root / "run", root / "train", tmp_path / "r2", test_data=tmp_path / "other_ex", progress=False)


def test_downstream_score_guidance_applies_to_the_study_data_only(tiny_run, tmp_path, monkeypatch):
    """The study's generated training data is sampled at --downstream-score-guidance; the
    evaluation's own sample sets keep the evaluation's sampler settings."""
    import rehabgen.evaluate as E
    from rehabgen.models import SamplerOptions

    monkeypatch.setenv("REHABGEN_CACHE", str(tmp_path / "cache"))
    root, _ = tiny_run
    seen = []

    def spy(model, exercises, scores, seed, options=None, length=None):
        seen.append(("study" if length is not None else "evaluation", options))
        return real_generate_for(model, exercises, scores, seed, options, length)

    real_generate_for = E.generate_for
    monkeypatch.setattr(E, "generate_for", spy)
    out = tmp_path / "rep"
    m = E.evaluate_run(root / "run", root / "train", out, repeats=1, folds=2, steps=2, evaluator_steps=10,
                       progress=False, test_data=root / "patients", downstream_steps=5,
                       sampler=SamplerOptions(guidance=1.5), downstream_score_guidance=3.0)
    kinds = {k for k, _ in seen}
    assert kinds == {"study", "evaluation"}
    for kind, o in seen:
        assert o.guidance == 1.5 and o.score_guidance == (3.0 if kind == "study" else None), (kind, o)
        assert o.repetition_guidance == (2.5 if kind == "study" else None), (kind, o)  # the family's, study only
    assert m["downstream"]["sampler"] == {"steps": 2, "guidance": 1.5, "score_guidance": 3.0, "repetition_guidance": 2.5}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["downstream_score_guidance"] == 3.0 and cfg["downstream_repetition_guidance"] is None
    assert cfg["downstream_sampler"] == m["downstream"]["sampler"] and cfg["downstream_scores"] == "balanced"
    assert ("Generated data sampled at score guidance 3, repetition guidance 2.5 (the model family's settings"
            in (out / "report.md").read_text())
    # the evaluation's own settings, resolved: given ones, else the model's (None: = guidance)
    sampler = m["sampler"]
    assert (sampler["steps"], sampler["guidance"], sampler["score_guidance"]) == (2, 1.5, None)
    assert sampler["drift_guidance"] == 1.0 and sampler["repetition_guidance"] is None and sampler["sampler"] == "dpm"
    # training fitted a slow-band noise temperature per exercise; the report names them
    meta = json.loads((root / "run" / "model" / "model.json").read_text())
    fitted = meta["hparams"]["drift_temperatures"]
    assert set(fitted) == set(meta["spec"]["exercises"]) and all(0.3 <= v <= 1.5 for v in fitted.values())
    assert sampler["drift_temperature"] == fitted
    assert ("Sampled with sampler dpm, steps 2, guidance 1.5, score guidance = guidance, drift guidance 1.0, "
            f"repetition guidance = guidance, drift temperature {fitted}.") in (out / "report.md").read_text()


def test_downstream_repeats_pool_whole_studies_with_the_next_seeds(split):
    """repeats=2 is the study with seed and with seed + 1 (other folds, other initialisations),
    every fold of both one entry of the mean ± std: its runs are the two single studies' runs."""
    tr, te = split
    s0 = assessment_study(tr, te, None, k=2, seed=4, steps=5)
    s1 = assessment_study(tr, te, None, k=2, seed=5, steps=5)
    both = assessment_study(tr, te, None, k=2, seed=4, steps=5, repeats=2)
    assert both["repeats"] == 2 and s0["repeats"] == 1
    for c in ("real", "real+augmented", "exercise-mean"):
        runs = [st["conditions"][c]["held_out_test"]["rmse"]["runs"] for st in (s0, s1, both)]
        assert runs[2] == pytest.approx(runs[0] + runs[1])
        assert both["conditions"][c]["held_out_test"]["rmse"]["mean"] == pytest.approx(np.mean(runs[0] + runs[1]))
    assert [f["study_seed"] for f in both["folds"]] == [4, 4, 5, 5]
    assert [f["test_subjects"] for f in both["folds"]] == [f["test_subjects"] for f in s0["folds"] + s1["folds"]]
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        assessment_study(tr, te, None, k=2, seed=0, steps=5, repeats=0)
