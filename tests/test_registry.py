"""The metric registry: a new metric is one entry, which evaluation computes and the report renders."""

from __future__ import annotations

import numpy as np
import pytest

from rehabgen.evaluate import mean_std, real_reference, sample_set_context, sample_set_metrics
from rehabgen.metrics import registry
from rehabgen.metrics.evaluator import Evaluator
from rehabgen.metrics.registry import Metric
from rehabgen.report import compare_table, metrics_table, plot_metrics

from conftest import toy_dataset


@pytest.fixture(scope="module")
def setup():
    ds = toy_dataset(n=36)
    test_subj = {"S_ID0", "S_ID1", "S_ID2"}
    tr = ds.by_subjects([s for s in ds.subjects if s not in test_subj])
    te = ds.by_subjects(test_subj)
    ev = Evaluator.fit(tr, steps=20, seed=0)
    real = real_reference(ev, tr, [s.positions for s in tr.sequences], fps=tr.fps)
    # a sample set of unequal lengths: every other sequence cut short
    seqs = [s.positions[: 40 if i % 2 else 60] for i, s in enumerate(te.sequences)]
    ex = np.array([te.exercise_index(s.exercise) for s in te.sequences])
    sc = np.array([s.score("TS") for s in te.sequences], np.float32)
    return ev, real, seqs, ex, sc


@pytest.fixture
def toy_metric():
    m = registry.register(Metric("toy_length", lambda c: float(c.lengths.mean()), "close",
                                 "toy: mean true length", unit="frames"))
    yield m
    registry.unregister("toy_length")


def test_a_new_metric_is_one_registry_entry(setup, toy_metric, tmp_path):
    ev, real, seqs, ex, sc = setup
    runs = [sample_set_metrics(sample_set_context(ev, real, seqs, ex, sc, np.random.default_rng(r))) for r in range(2)]
    want = np.mean([len(s) for s in seqs])  # 5 sequences of 60 frames, 4 of 40
    assert runs[0]["toy_length"] == pytest.approx(want) == pytest.approx(460 / 9)
    assert list(runs[0]) == [m.name for m in registry.REGISTRY.values() if m.group == "sample_set"]  # in order
    assert {"fid", "coverage", "jerk_w", "bone_length_error"} <= set(runs[0])
    stats = mean_std(runs)
    metrics = {k: {"generated": stats[k], "real_reference": stats[k]} for k in stats}
    table = metrics_table(metrics)
    row = next(line for line in table.splitlines() if "`toy_length`" in line)
    assert row.startswith("| toy: mean true length (frames) (`toy_length`) | 51.111 ± 0.000 |")
    assert row.endswith("| ≈ real |")
    assert "| fid ↓ |" in compare_table([{"metrics": metrics}], ["m"])
    assert "| toy_length ≈ real | 51.111 ± 0.000 |" in compare_table([{"metrics": metrics}], ["m"])
    assert plot_metrics(metrics, tmp_path / "m.png").stat().st_size > 0


def test_registry_without_the_toy_metric_and_its_rules(setup):
    ev, real, seqs, ex, sc = setup
    out = sample_set_metrics(sample_set_context(ev, real, seqs, ex, sc, np.random.default_rng(0)))
    assert "toy_length" not in out and set(out) == {m.name for m in registry.metrics_of("sample_set")}
    assert {m.name for m in registry.metrics_of("text")} == {
        "r_precision_top1", "r_precision_top2", "r_precision_top3", "mm_distance", "text_fid", "text_accuracy"}
    assert registry.arrow("fid") == "↓" and registry.arrow("coverage") == "↑" and registry.arrow("wpd") == "≈ real"
    assert registry.arrow("no_such_metric") == "" and registry.label("no_such_metric") == "no_such_metric"
    assert registry.label("jerk_w").endswith("(m/s³)")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Metric("fid", lambda c: 0.0, "lower", "again"))
    with pytest.raises(ValueError, match="direction must be"):
        Metric("x", lambda c: 0.0, "up", "bad direction")


def test_sample_set_inputs_come_from_each_sequences_own_frames(setup):
    """Sequences of different lengths share one padded array, but the evaluator sees each one
    resampled from its own frames (as real recordings are) and kinematics skip the padding."""
    from rehabgen.metrics.evaluator import eval_inputs_from_positions
    from rehabgen.metrics.plausibility import kinematic_wasserstein

    ev, real, seqs, ex, sc = setup
    c = sample_set_context(ev, real, seqs, ex, sc, np.random.default_rng(0))
    assert c.positions.shape[1] == 60 and c.lengths.tolist() == [len(s) for s in seqs]
    alone = np.concatenate([eval_inputs_from_positions(s[None], real.skeleton, ex[:1], sc[:1])[0] for s in seqs])
    np.testing.assert_allclose(c.inputs, alone, atol=1e-6)
    padded = eval_inputs_from_positions(c.positions, real.skeleton, ex, sc)[0]  # ignoring the lengths
    assert np.abs(padded[1::2] - alone[1::2]).max() > 0.05 and np.allclose(padded[::2], alone[::2], atol=1e-6)
    unpadded = [kinematic_wasserstein(real.positions, s[None], fps=real.fps, real_lengths=real.lengths) for s in seqs]
    assert c.kinematics["velocity"] < max(u["velocity"] for u in unpadded) * 2  # a sane scale
    assert c.kinematics == kinematic_wasserstein(real.positions, c.positions, fps=real.fps,
                                                 real_lengths=real.lengths, gen_lengths=c.lengths)
