"""report.py renders an evaluation result (no model, no data): downstream table and plot,
kinematics table, the whole report from a hand-made result."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from rehabgen.metrics import registry
from rehabgen.metrics.plausibility import kinematic_summary
from rehabgen.report import (
    EvaluationResult, downstream_section, downstream_side, downstream_table, group_bands_section, kinematics_section,
    write_report,
)
from rehabgen.skeleton import KINECT_V2

from conftest import arm_raise


def _leaf(m, s):
    return {"mean": m, "std": s, "runs": [m - s, m + s]}


def _side(overall, per, acc, r=0.1):
    return {"rmse": _leaf(overall, 0.1), "mae": _leaf(0.8 * overall, 0.1), "rmse_unit": _leaf(overall / 40, 0.01),
            "bias": _leaf(overall / 2, 0.1), "within_r": _leaf(r, 0.05), "accuracy": _leaf(acc, 0.01), "per_exercise": {e: {"rmse": _leaf(v, 0.2), "mae": _leaf(0.8 * v, 0.2)}
                                                           for e, v in per.items()}}


def fake_study(held_out: bool = True) -> dict:
    rows = {"real": (10.33, {"Es1": 8.0, "Es2": 12.5}, 0.95, 0.01), "real+generated": (9.33, {"Es1": 8.5, "Es2": 10.1}, 0.97, 0.14),
            "real+augmented": (9.57, {"Es1": 8.2, "Es2": 10.9}, 0.96, 0.1), "tstr": (11.1, {"Es1": 11.0, "Es2": 11.2}, 0.90, -0.05),
            "exercise-mean": (10.4, {"Es1": 9.0, "Es2": 11.8}, float("nan"), float("nan"))}
    conds = {}
    for c, (o, per, acc, r) in rows.items():
        conds[c] = {"fold_test": _side(o + 1, {e: v + 1 for e, v in per.items()}, acc - 0.1, r)}
        if held_out:
            conds[c]["held_out_test"] = _side(o, per, acc, r)
    return {"protocol": "p", "k": 3, "score": "TS", "score_range": [0, 50], "input_length": 64,
            "folds": [{"train_subjects": ["a"], "test_subjects": ["b"]}], "conditions": conds}


def test_downstream_table_marks_the_best_per_column(tmp_path):
    study = fake_study()
    assert downstream_side(study) == "held_out_test"
    lines = downstream_table(study, "held_out_test").splitlines()
    assert lines[0] == "| condition | overall RMSE | Es1 | Es2 | bias | within-exercise r | exercise accuracy |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    rows = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert list(rows) == ["real", "real+generated", "real+augmented", "tstr", "exercise-mean"]
    assert rows["exercise-mean"] == "| exercise-mean | 10.40 ± 0.10 | 9.00 ± 0.20 | 11.80 ± 0.20 | 5.20 ± 0.10 | – | – |"
    assert rows["real+generated"] == ("| real+generated | **9.33 ± 0.10** | 8.50 ± 0.20 | **10.10 ± 0.20** | **4.67 ± 0.10** "
                                      "| **0.140 ± 0.050** | **0.970 ± 0.010** |")
    assert rows["real"] == "| real | 10.33 ± 0.10 | **8.00 ± 0.20** | 12.50 ± 0.20 | 5.17 ± 0.10 | 0.010 ± 0.050 | 0.950 ± 0.010 |"
    assert "**" not in rows["tstr"] and "**" not in rows["real+augmented"]
    md = "\n".join(downstream_section(study, tmp_path))
    assert (tmp_path / "downstream.png").stat().st_size > 0 and "![downstream](downstream.png)" in md
    assert "neither the generator nor the assessor saw" in md
    assert "| real+generated | **10.33 ± 0.10** |" in md  # the fold-test table follows, with its own best
    assert "mean ± std over folds, best per column" in md  # one study seed, one assessor per fold
    pooled = "\n".join(downstream_section({**study, "assessor_seeds": 3, "repeats": 2}, tmp_path))
    assert ("mean ± std over folds × 3 assessor initialisations × 2 study seeds (other folds and generated data), "
            "best per column") in pooled
    assert "per real one" not in md and "per real one" not in pooled
    assert "control for real+generated" not in md
    ctl = {**study, "conditions": {**study["conditions"], "real+windows": study["conditions"]["real+augmented"]}}
    assert "real+windows is the control for real+generated: each real training sequence cut as the generator saw it" \
        in "\n".join(downstream_section(ctl, tmp_path))
    wide = "\n".join(downstream_section({**study, "n_gen_per_real": 3}, tmp_path))
    assert ("3 generated (and 3 augmented) sequences per real one, each real sequence counted 3 times: half of "
            "what every mixed assessor trains on is real") in wide


def test_downstream_without_test_subjects_uses_the_folds_and_says_so(tmp_path):
    study = fake_study(held_out=False)
    assert downstream_side(study) == "fold_test"
    md = "\n".join(downstream_section(study, tmp_path))
    assert "There were no test subjects" in md and md.count("| condition |") == 1
    assert ("| real+generated | **10.33 ± 0.10** | 9.50 ± 0.20 | **11.10 ± 0.20** | **5.17 ± 0.10** | **0.140 ± 0.050** "
            "| **0.870 ± 0.010** |") in md
    assert "RMSE² = bias² + within-exercise error²" in md
    assert (tmp_path / "downstream.png").stat().st_size > 0


def _kinematics():
    sway = 0.02 * np.sin(np.linspace(0, 2 * np.pi, 30))[None, :, None]  # the whole body sways a little
    gen = np.stack([arm_raise(30, amplitude=0.4, seed=i) for i in range(3)])
    real = np.stack([arm_raise(30, amplitude=1.0, seed=i) for i in range(3)])
    gen[..., 0] += sway
    real[..., 0] += sway
    g, r = kinematic_summary(gen, 30.0), kinematic_summary(real, 30.0)
    table = {q: {st: {"generated": g[q][st], "generated_std": 0.0, "real": r[q][st], "ratio": g[q][st] / r[q][st] if r[q][st] > 0 else float("nan")}
                 for st in g[q]} for q in g}
    return {"overall": table, "Es1": table}


def test_kinematics_section_says_which_way():
    kin = _kinematics()
    md = "\n".join(kinematics_section(kin))
    sp = kin["overall"]["speed"]["mean"]
    assert 0.3 < sp["ratio"] < 0.5  # smaller swings at the same tempo: slower
    assert f"| speed (m/s) | mean | {sp['generated']:.3f} | {sp['real']:.3f} | {sp['ratio']:.2f} |" in md
    assert "| range of motion (m) | p95 |" in md and "| jerk (m/s³) | p50 |" in md
    assert f"| Es1 | {sp['generated']:.3f} / {sp['real']:.3f} ({sp['ratio']:.2f}) |" in md
    assert kinematics_section({}) == []
    kin["Es1"] = {q: {st: {**v, "train_ratio": 1.25} for st, v in stats.items()} for q, stats in kin["Es1"].items()}
    md = "\n".join(kinematics_section(kin))
    assert f"| Es1 | {sp['generated']:.3f} / {sp['real']:.3f} ({sp['ratio']:.2f}; real 1.25) |" in md


def test_group_bands_section_puts_each_ratio_beside_its_real_band():
    kin = _kinematics()
    band = {"p5": 0.77, "p50": 1.0, "p95": 1.38, "within": 0.71}
    bands = {"n_splits": 200, "n_test_subjects": 4, "tolerance": 0.2,
             "speed": {"per_exercise": {"Es1": band}, "all_within": 0.16},
             "range_of_motion": {"per_exercise": {"Es1": band}, "all_within": 0.14}}
    md = "\n".join(group_bands_section(bands, kin))
    sp, rom = kin["Es1"]["speed"]["mean"]["ratio"], kin["Es1"]["range_of_motion"]["mean"]["ratio"]
    assert f"| Es1 | {sp:.2f} | 0.77–1.38 (71%) | {rom:.2f} | 0.77–1.38 (71%) |" in md
    assert "Over 200 random subject splits with 4 test subject(s)" in md
    assert "speed 16% of splits, range of motion 14% of splits" in md
    assert group_bands_section(None, kin) == []


def test_write_report_from_a_result_alone(tmp_path):
    rng = np.random.default_rng(0)
    names = [m.name for m in registry.metrics_of("sample_set")]
    metrics = {k: {"generated": _leaf(1.0, 0.1), "real_reference": _leaf(0.5, 0.0)} for k in names}
    summary = {"run": "r", "data": "d", "test_data": "patients", "family": "diffusion", "model_step": 40,
               "n_generated_per_repeat": 4, "repeats": 2, "seed": 0, "n_train_sequences": 20, "n_test_sequences": 4,
               "test_subjects_also_in_training": ["P1"], "evaluator": {"accuracy": 1.0, "score_mae": 3.0,
                                                                       "score_rmse": 4.0, "n": 4},
               "metrics": metrics, "kinematics": _kinematics(), "text": None, "downstream": fake_study(),
               "protocol": "the protocol",
               "training": {"steps": 167, "planned_steps": 2000, "stopped_early": True,
                            "stop_reason": "time limit (--minutes 4)", "seconds": 240.0},
               "kinematic_reference": {q: {"mean": 0.25, "std": 0.1, "min": 0.1, "max": 0.5, "n_splits": 100}
                                       for q in ("velocity", "acceleration", "jerk")}}
    samples = [arm_raise(24, seed=i) for i in range(4)]
    ex = ["Es1", "Es2", "Es1", "Es2"]
    res = EvaluationResult(summary, KINECT_V2, 5.0, ("Es1", "Es2"), samples, ex, np.array([20.0, 30, 40, 50]),
                           [arm_raise(30, seed=9 + i) for i in range(4)], ex,
                           {"real train": (rng.normal(size=(20, 8)), np.arange(20) % 2),
                            "real test": (rng.normal(size=(4, 8)), np.arange(4) % 2),
                            "generated": (rng.normal(size=(4, 8)), np.arange(4) % 2)})
    md = write_report(tmp_path, res).read_text()
    for f in ("metrics.png", "features_pca.png", "trajectories.png", "samples.gif", "downstream.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    assert "test folder `patients`" in md and "**Warning**: test subject id(s) ['P1']" in md
    assert f"| {registry.label('jerk_w')} (`jerk_w`) | 1.000 ± 0.100 | 0.500 ± 0.000 | ↓ |" in md
    assert "Real reference of `fid`, `fid_regressor`, `accuracy`, " in md and registry.REFERENCE in md
    assert "## Kinematics: which way" in md and "## Downstream utility" in md and "the protocol" in md
    assert "fold_test / per_exercise" not in md  # the old flat list is gone
    assert ("**Warning: training ended short of its plan: step 167 of 2000 (8 %), time limit (--minutes 4); "
            "the model is undertrained**") in md
    assert "| jerk (m/s³) | 1.000 | 0.500 | 0.250 ± 0.100 (0.100–0.500) | 4.00 |" in md


def test_report_does_not_import_evaluate():
    code = "import sys, rehabgen.report; assert 'rehabgen.evaluate' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_kinematics_section_keeps_small_band_powers_readable():
    kin = _kinematics()
    kin["overall"]["drift_power"] = {"mean": {"generated": 0.0025, "generated_std": 0.0, "real": 0.0004, "ratio": 6.25}}
    md = "\n".join(kinematics_section({"overall": kin["overall"]}))
    assert "| drift power (m²) | mean | 2.50e-03 | 4.00e-04 | 6.25 |" in md
