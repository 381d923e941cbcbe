"""The `rehabgen` command end to end on built-in data: synth, inspect, train, sample, render,
complete, evaluate, compare; plus clear errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rehabgen.cli import app
from rehabgen.samples import load_samples

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("k") / "k"
    r = run("data", "synth", d, "--subjects", 10, "--seed", 0)
    assert r.exit_code == 0, r.output
    return d


def test_synth_refuses_to_overwrite(data):
    r = run("data", "synth", data, "--subjects", 2)
    assert r.exit_code == 2 and "folder is not empty" in r.output


def test_inspect_json(data):
    r = run("data", "inspect", data, "--json")
    assert r.exit_code == 0
    s = json.loads(r.stdout)
    assert s["n_subjects"] == 10 and s["n_sequences"] >= 45
    assert set(s["per_exercise"]) == {"Es1", "Es2", "Es3", "Es4", "Es5"}
    assert s["quarantined"] == [] and 0 < s["pct_invalid_joints"] < 10
    assert run("data", "inspect", data).exit_code == 0


def test_inspect_lists_quarantined_files(tmp_path):
    from conftest import write_subject

    root = tmp_path / "q"
    s = write_subject(root, "Expert", "E_ID1")
    (s / "Es2" / "Raw" / "JointPosition_E_ID1.csv").write_text("")
    r = run("data", "inspect", root, "--json")
    q = json.loads(r.stdout)["quarantined"]
    assert q == [{"path": str(s / "Es2" / "Raw" / "JointPosition_E_ID1.csv"), "reason": "file is empty"}]


def test_bad_paths_give_clear_errors(tmp_path):
    r = run("data", "inspect", tmp_path / "missing")
    assert r.exit_code == 2 and "no such file or directory" in r.output
    r = run("sample", tmp_path, "--exercise", "Es1", "--out", tmp_path / "x.npz")
    assert r.exit_code == 2 and "no trained model here" in r.output
    r = run("render", tmp_path / "nope.npz")
    assert r.exit_code == 2 and "file not found" in r.output


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    r = run("train", "--data", data, "--out", out, "--model", "diffusion", "--steps", 40, "--fps", 5,
            "--max-len", 60, "--set", "d_model=32", "--set", "n_layers=1", "--set", "ff=64", "--seed", 0)
    assert r.exit_code == 0, r.output
    return out


def test_train_writes_run_folder(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["model"] == "diffusion" and cfg["seed"] == 0 and cfg["preprocess"]["fps"] == 5
    split = json.loads((run_dir / "split.json").read_text())
    assert split["test"] and not set(split["train"]) & set(split["test"])
    assert (run_dir / "log.csv").read_text().startswith("step,")


def test_sample_render_and_reproducibility(run_dir, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for f in (a, b):
        r = run("sample", run_dir, "--exercise", "Es1,Es5", "--score", 35, "--n", 3, "--steps", 5, "--seed", 1,
                "--out", f)
        assert r.exit_code == 0, r.output
    sa, sb = load_samples(a), load_samples(b)
    np.testing.assert_array_equal(sa["positions"], sb["positions"])
    assert sa["positions"].shape[0] == 6 and sa["exercise"].tolist() == ["Es1"] * 3 + ["Es5"] * 3
    assert sa["config"]["seed"] == 1 and json.loads((tmp_path / "a.json").read_text())["steps"] == 5
    r = run("render", a, "--out", tmp_path / "a.gif", "--max-frames", 5)
    assert r.exit_code == 0 and (tmp_path / "a.gif").stat().st_size > 1000
    before = (tmp_path / "a.gif").read_bytes()
    r = run("render", b, "--out", tmp_path / "a.gif", "--max-frames", 3)
    assert r.exit_code == 2 and "already exists" in r.output and (tmp_path / "a.gif").read_bytes() == before
    r = run("sample", run_dir, "--exercise", "Es9", "--out", tmp_path / "c.npz")
    assert r.exit_code == 2 and "unknown exercise 'Es9'" in r.output


def test_complete(run_dir, data, tmp_path):
    r = run("complete", run_dir, "--data", data, "--exercise", "Es1", "--drop", "5:12", "--steps", 5,
            "--out", tmp_path / "c.npz")
    assert r.exit_code == 0, r.output
    c = load_samples(tmp_path / "c.npz")
    known = np.array(c["config"]["known_mask"])
    assert not known[5:12].any() and np.isfinite(c["positions"]).all()
    r = run("complete", run_dir, "--data", data, "--exercise", "Es1", "--drop", "5:12", "--steps", 5,
            "--out", tmp_path / "c2.npz")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(load_samples(tmp_path / "c2.npz")["positions"], c["positions"])  # same seed


def test_evaluate_and_compare(run_dir, data, tmp_path, monkeypatch):
    monkeypatch.setenv("REHABGEN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rep"
    r = run("evaluate", run_dir, "--data", data, "--out", out, "--repeats", 2, "--folds", 2, "--steps", 5,
            "--downstream-seeds", 2)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["downstream"]["assessor_seeds"] == 2 and m["downstream"]["repeats"] == 1
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["downstream_seeds"] == 2 and cfg["downstream_repeats"] == 1
    assert len(m["downstream"]["conditions"]["real"]["held_out_test"]["rmse"]["runs"]) == 4  # 2 folds x 2 seeds
    for k in ("fid", "accuracy", "score_mae", "precision", "recall", "density", "coverage", "mms", "apd", "acpd",
              "wpd", "bone_length_deviation", "velocity_w", "jerk_w"):
        for side in ("generated", "real_reference"):
            assert len(m["metrics"][k][side]["runs"]) == 2, (k, side)
    assert m["evaluator"]["n"] == m["n_test_sequences"] > 0
    assert list(m["downstream"]["conditions"]) == ["real", "real+generated", "real+windows", "real+augmented", "tstr",
                                                   "exercise-mean"]
    for f in m["downstream"]["folds"]:
        assert not set(f["train_subjects"]) & set(f["test_subjects"])
    report = (out / "report.md").read_text()
    assert "| metric | generated | real reference |" in report and "Downstream utility" in report
    for f in ("metrics.png", "features_pca.png", "trajectories.png", "samples.gif", "config.json"):
        assert (out / f).stat().st_size > 0
    r = run("compare", out, out, "--out", tmp_path / "cmp.md")
    assert r.exit_code == 0 and "| fid" in (tmp_path / "cmp.md").read_text()


def test_evaluate_on_an_independent_test_set(run_dir, data, tmp_path, monkeypatch):
    """--test-data: the real reference and the downstream test are that folder's subjects."""
    monkeypatch.setenv("REHABGEN_CACHE", str(tmp_path / "cache"))
    other = tmp_path / "other"
    assert run("data", "synth", other, "--subjects", 3, "--seed", 7).exit_code == 0
    out = tmp_path / "rep"
    r = run("evaluate", run_dir, "--data", data, "--test-data", other, "--out", out, "--repeats", 1, "--steps", 3,
            "--no-downstream")
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_data"] == str(other) and m["n_test_sequences"] == len(list(other.glob("*/*/*/Es*")))
    r = run("evaluate", run_dir, "--data", data, "--test-data", tmp_path / "missing", "--out", tmp_path / "r2")
    assert r.exit_code == 2 and "missing" in r.output


def test_text_train_generate_evaluate(data, tmp_path, monkeypatch):
    monkeypatch.setenv("REHABGEN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "trun"
    r = run("train", "--data", data, "--out", out, "--text", "--steps", 30, "--max-len", 60, "--set", "d_model=32",
            "--set", "n_layers=1", "--set", "ff=64")
    assert r.exit_code == 0, r.output
    r = run("generate", out, "--text", "raise both arms slowly above the head, done poorly", "--n", 2, "--steps", 5,
            "--out", tmp_path / "g.npz")
    assert r.exit_code == 0, r.output
    assert "quality read: low" in r.output
    g = load_samples(tmp_path / "g.npz")
    assert g["positions"].shape[0] == 2 and g["config"]["text"].startswith("raise both arms")
    assert g["config"]["read_from_text"]["quality"] == "low" and g["config"]["read_from_text"]["score"] < 25
    r = run("generate", out, "--text", "raise both arms", "--score", 44, "--n", 1, "--steps", 2, "--out", tmp_path / "g2.npz")
    assert r.exit_code == 0 and "no quality stated" in r.output and "--score 44 used" in r.output
    assert load_samples(tmp_path / "g2.npz")["score"].tolist() == [44.0]
    r = run("generate", out, "--text", "make me a sandwich", "--n", 1, "--steps", 2, "--out", tmp_path / "g4.npz")
    assert r.exit_code == 0, r.output
    assert "warning: 'make me a sandwich' resembles no exercise this model was trained on: closest is Es" in r.output
    assert "no quality stated" in r.output and json.loads((tmp_path / "g4.json").read_text())["warnings"]
    assert "warning:" not in r.output.replace("warning: 'make me a sandwich'", "") and "warning" not in \
        run("generate", out, "--text", "squat down", "--n", 1, "--steps", 2, "--out", tmp_path / "g5.npz").output
    r = run("generate", out, "--text", "raise both arms, done well", "--then", "squat down, done poorly", "--n", 1,
            "--length", 40, "--steps", 2, "--out", tmp_path / "g3.npz")
    assert r.exit_code == 0, r.output
    g3 = load_samples(tmp_path / "g3.npz")
    assert g3["positions"].shape[:2] == (1, 40) and [p["quality"] for p in g3["config"]["read_from_text"]] == ["high", "low"]
    r = run("evaluate", out, "--data", data, "--out", tmp_path / "rep", "--repeats", 1, "--no-downstream",
            "--steps", 5)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    for k in ("r_precision_top1", "r_precision_top3", "mm_distance", "text_fid", "text_accuracy"):
        assert set(m["metrics"][k]) == {"generated", "real_reference"}
    assert set(m["text"]["quality_control"]) == {"Es1", "Es2", "Es3", "Es4", "Es5"}
    qc = m["text"]["quality_control"]["Es1"]
    assert {"high", "mid", "low", "moves_as_stated", "high_minus_low", "high_minus_low_se"} <= set(qc)
    assert qc["high"]["n"] == 36 and qc["high_minus_low"] == qc["high"]["predicted_score"] - qc["low"]["predicted_score"]
    assert set(m["text"]["quality_reader"]) == {"high", "mid", "low", "none"}
    comp = m["text"]["composition"]
    assert comp["n_pairs"] == 20 and 0 <= comp["halves_recognised"] <= 1 and comp["real_reference"] > 0.5
    assert "quality phrases move the score" in (tmp_path / "rep" / "report.md").read_text()
    r = run("generate", tmp_path / "nowhere", "--text", "x", "--out", tmp_path / "h.npz")
    assert r.exit_code == 2 and "no trained model here" in r.output


def test_distill_writes_a_run_folder_the_other_commands_use(run_dir, data, tmp_path):
    """`rehabgen distill` writes a run folder the other commands use like any run."""
    fast = tmp_path / "fast"
    r = run("distill", run_dir, "--out", fast, "--student-steps", 2, "--teacher-steps", 4, "--trajectories", 16,
            "--steps", 4, "--batch", 8, "--seed", 0, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "samples in 2 network evaluations (teacher: 8)" in r.output
    cfg = json.loads((fast / "config.json").read_text())
    assert cfg["command"] == "distill" and cfg["hparams"]["sampler"] == "distilled"
    assert len(cfg["hparams"]["student_timesteps"]) == 2 and cfg["teacher"] == str(run_dir.resolve())
    assert (fast / "split.json").read_text() == (run_dir / "split.json").read_text()
    summary = json.loads((fast / "distill_summary.json").read_text())
    assert summary["trajectories"] == 16 and summary["network_evaluations"] == {"teacher": 8, "student": 2}
    assert summary["grid"] == cfg["distill"]["grid"] == "late"  # the default: the 2nd jump starts at the last step
    assert summary["student_timesteps"] == [summary["teacher_timesteps"][i] for i in (0, 3)]
    assert (fast / "log.csv").read_text().startswith("step,")
    r = run("sample", fast, "--exercise", "Es2", "--n", 2, "--out", tmp_path / "s.npz")
    assert r.exit_code == 0, r.output
    assert load_samples(tmp_path / "s.npz")["config"]["sampler"] == "distilled"
    r = run("sample", fast, "--exercise", "Es2", "--steps", 5, "--out", tmp_path / "s5.npz")
    assert r.exit_code == 2 and "samples in exactly 2 steps" in r.output
    # evaluate reads the run's split and data like any run's (the full evaluation is tested above)
    from rehabgen.data import load_dataset
    from rehabgen.runs import load_split

    ds = load_dataset(data)
    assert [x.subjects for x in load_split(fast, ds)] == [x.subjects for x in load_split(run_dir, ds)]
    assert cfg["data"] == str(data.resolve())
    r = run("distill", run_dir, "--out", fast, "--student-steps", 2)
    assert r.exit_code == 2 and "already holds" in r.output
    r = run("distill", run_dir, "--out", tmp_path / "f2", "--student-steps", 30, "--teacher-steps", 20)
    assert r.exit_code == 2 and "--student-steps 30 must not exceed --teacher-steps 20" in r.output
    r = run("distill", fast, "--out", tmp_path / "f3")
    assert r.exit_code == 2 and "already distilled" in r.output
    r = run("distill", run_dir, "--out", tmp_path / "f4", "--grid", "odd")
    assert r.exit_code == 2 and "--grid must be one of even, late, got 'odd'" in r.output
    assert not (tmp_path / "f4").exists()


def test_evaluate_passes_downstream_repeats_on(run_dir, data, tmp_path, monkeypatch):
    """--downstream-repeats and --downstream-per-real reach the evaluation (what they do:
    test_evaluation's tests); 0 is refused before any work."""
    import rehabgen.evaluate

    got = {}

    def fake(run, data, out, **kw):
        got.update(kw)
        raise rehabgen.evaluate.DataError("stop here")

    monkeypatch.setattr(rehabgen.evaluate, "evaluate_run", fake)
    r = run("evaluate", run_dir, "--data", data, "--out", tmp_path / "rep", "--downstream-repeats", 3)
    assert r.exit_code == 2 and "error: stop here" in r.output and got["downstream_repeats"] == 3
    r = run("evaluate", run_dir, "--data", data, "--out", tmp_path / "rep2", "--downstream-repeats", 0)
    assert r.exit_code != 0 and "--downstream-repeats" in r.output
    assert got["downstream_per_real"] == 1
    r = run("evaluate", run_dir, "--data", data, "--out", tmp_path / "rep3", "--downstream-per-real", 3)
    assert r.exit_code == 2 and got["downstream_per_real"] == 3
    r = run("evaluate", run_dir, "--data", data, "--out", tmp_path / "rep4", "--downstream-per-real", 0)
    assert r.exit_code != 0 and "--downstream-per-real" in r.output
