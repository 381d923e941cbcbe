"""Rehab-Pile interoperability: `rehabgen data export --format rehab-pile` writes the community's
layout (joint-major channels, info.json, subject-wise folds), the importer reads it back to the
same arrays, generated sequences go to training folds only, an aeon regressor fits on a fold."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import toy_dataset
from rehabgen.cli import app
from rehabgen.data import DataError, load_dataset
from rehabgen.data.generic import write_generic
from rehabgen.data.rehabpile import (KIMORE_18, RECORD, _Generated, export_rehab_pile, from_channels,
                                     kinematic_tree, load_rehab_pile)
from rehabgen.skeleton import KINECT_V2, Skeleton

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def arrays(root, name, k):
    f = root / "regression" / name / f"fold{k}"
    return {s: np.load(f / f"{s}_fold{k}.npy") for s in ("x_train", "y_train", "x_test", "y_test")}


@pytest.fixture(scope="module")
def toy():
    return toy_dataset(n=24, T=60)


@pytest.fixture(scope="module")
def exported(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("rp") / "out"
    export_rehab_pile(toy, out, folds=3, length=60, seed=0)
    return out


def test_layout_channels_info_and_subject_wise_folds(toy, exported):
    d = exported / "regression" / "KIMORE_reg_LA"  # Es1 -> LA, as Rehab-Pile names KIMORE's exercises
    assert sorted(p.name for p in (exported / "regression").iterdir()) == ["KIMORE_reg_LA", "KIMORE_reg_LT"]
    info = json.loads((d / "info.json").read_text())
    assert (info["length_TS"], info["n_joints"], info["dim"], info["max_score_value"]) == (60, 18, 3, 50.0)
    bones = {tuple(sorted(c[i:i + 2])) for c in info["kinematic_tree"] for i in range(len(c) - 1)}
    assert len(bones) == 17  # a tree over the 18 joints
    rec = json.loads((d / RECORD).read_text())
    by_source = {s.source: s for s in toy.sequences}
    kinect = [KINECT_V2.index(j) for j in KIMORE_18]
    subjects = {s["subject"] for s in rec["sequences"]}
    tested = set()
    for k in range(3):
        a, f = arrays(exported, "KIMORE_reg_LA", k), rec["folds"][k]
        assert a["x_train"].shape == (len(f["train"]), 54, 60) and a["x_train"].dtype == np.float32
        for side in ("train", "test"):
            for r, i in enumerate(f[side]):
                orig = by_source[rec["sequences"][i]["source"]]
                # joint-major: channel j*3 + d is coordinate d of the j-th of KIMORE's 18 joints
                want = orig.positions[:, kinect].transpose(1, 2, 0).reshape(54, 60)
                assert np.array_equal(a[f"x_{side}"][r], want)
                assert a[f"y_{side}"][r] == orig.score("TS")
        train_s = {rec["sequences"][i]["subject"] for i in f["train"]}
        test_s = {rec["sequences"][i]["subject"] for i in f["test"]}
        assert not train_s & test_s and train_s | test_s == subjects
        tested |= test_s
    assert tested == subjects  # every subject is tested once


def test_round_trip_import_gives_the_same_arrays(toy, tmp_path):
    out = tmp_path / "a"
    export_rehab_pile(toy, out, folds=3, length=50, seed=1)  # resampled 60 -> 50 frames
    for k in range(3):
        fold = load_dataset(out / "regression" / "KIMORE_reg_LT" / f"fold{k}")
        split = np.array(fold.metadata["rehab_pile"]["split"])
        a = arrays(out, "KIMORE_reg_LT", k)
        for side in ("train", "test"):
            seqs = [s for s, sd in zip(fold.sequences, split) if sd == side]
            assert np.array_equal(np.stack([s.positions for s in seqs]), from_channels(a[f"x_{side}"], 18))
            assert np.array_equal([s.score("TS") for s in seqs], a[f"y_{side}"])
    back = load_dataset(out)  # every exercise, each sequence once, with its subject
    assert len(back) == len(toy) and back.skeleton.n_joints == 18 and back.exercises == ("Es1", "Es2")
    assert sorted((s.subject, s.exercise, s.score("TS")) for s in back.sequences) == \
        sorted((s.subject, s.exercise, s.score("TS")) for s in toy.sequences)
    again = tmp_path / "b"
    export_rehab_pile(back, again, folds=3, length=50, seed=1)
    for p in sorted(out.rglob("*.npy")) + sorted(out.rglob("info.json")):
        assert p.read_bytes() == (again / p.relative_to(out)).read_bytes(), p


def test_a_folder_from_rehab_pile_itself_imports(exported, tmp_path):
    """No record of ours, TS stored x2 on 0-100 (as Rehab-Pile's KIMORE_reg), an info.json with
    a trailing comma: subjects unknown, each distinct sequence once, TS back on 0-50."""
    import shutil

    d = tmp_path / "KIMORE_reg_LA"
    shutil.copytree(exported / "regression" / "KIMORE_reg_LA", d)
    (d / RECORD).unlink()
    info = json.loads((d / "info.json").read_text())
    (d / "info.json").write_text(json.dumps({**info, "max_score_value": 100.0})[:-1] + ",}")
    for f in d.rglob("y_*.npy"):
        np.save(f, np.load(f) * 2)
    ds = load_rehab_pile(d)
    orig = load_rehab_pile(exported / "regression" / "KIMORE_reg_LA")
    assert len(ds) == len(orig) and ds.exercises == ("Es1",) and ds.skeleton.name == "kinect_v2_18"
    assert sorted(s.score("TS") for s in ds.sequences) == sorted(s.score("TS") for s in orig.sequences)
    assert len(ds.subjects) == len(ds)


def test_import_errors_name_the_file(exported, tmp_path):
    import shutil

    d = tmp_path / "KIMORE_reg_LA"
    shutil.copytree(exported / "regression" / "KIMORE_reg_LA", d)
    bad = d / "fold1" / "x_test_fold1.npy"
    np.save(bad, np.empty(2, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=f"{bad}: a pickled object array"):
        load_rehab_pile(d / "fold1")
    np.save(bad, np.zeros((2, 54, 7), np.float32))
    with pytest.raises(DataError, match=r"x_test_fold1.npy: shape \(2, 54, 7\), expected \(N, 54, 60\)"):
        load_dataset(d, fold=1)
    info = json.loads((d / "info.json").read_text())
    del info["length_TS"]
    (d / "info.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="info.json: no 'length_TS'"):
        load_rehab_pile(d)


@pytest.fixture(scope="module")
def generic(toy, tmp_path_factory):
    d = tmp_path_factory.mktemp("g") / "g"
    write_generic(d, toy)
    return d


def test_cli_export_and_bad_input(generic, tmp_path):
    out = tmp_path / "o"
    r = run("data", "export", generic, "--format", "rehab-pile", "--out", out, "--folds", 3, "--length", 40,
            "--exercise", "Es2", "--name", "TOY_reg")
    assert r.exit_code == 0, r.output
    assert "TOY_reg_LT: Es2, x (12, 54, 40), 3 folds" in r.output
    top = json.loads((out / RECORD).read_text())
    assert top["command"] == "data export" and top["seed"] == 0 and top["source"] == str(generic.resolve())
    assert [d["name"] for d in top["datasets"]] == ["TOY_reg_LT"]
    r = run("data", "export", generic, "--format", "rehab-pile", "--out", out)
    assert r.exit_code == 2 and "already holds files" in r.output
    r = run("data", "export", generic, "--format", "csv", "--out", tmp_path / "x")
    assert r.exit_code == 2 and r.output.strip() == "error: --format 'csv': unknown format; choose from rehab-pile"
    r = run("data", "export", generic, "--format", "rehab-pile", "--out", tmp_path / "x", "--joints", 20)
    assert r.exit_code == 2 and "--joints 20: the skeleton 'kinect_v2' has 25 joints" in r.output
    r = run("data", "export", generic, "--format", "rehab-pile", "--out", generic / "inside")
    assert r.exit_code == 2 and "contain one another" in r.output
    assert not (tmp_path / "x").exists()


def test_a_folder_with_mixed_skeletons_is_refused(toy, tmp_path):
    d = tmp_path / "mixed"
    write_generic(d, toy)
    odd = d / "seq00003.npy"
    np.save(odd, np.zeros((60, 18, 3), np.float32))  # 18 joints among 25-joint sequences
    r = run("data", "export", d, "--format", "rehab-pile", "--out", tmp_path / "o", "--folds", 3)
    assert r.exit_code == 2
    line = r.output.strip()
    assert "\n" not in line and line.startswith(f"error: {odd}: 18 joints where the folder's skeleton")
    assert "mixes skeletons" in line and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def tiny_run(generic, tmp_path_factory):
    from rehabgen.config import RunConfig
    from rehabgen.runs import train_run

    out = tmp_path_factory.mktemp("run") / "run"
    train_run(RunConfig(data=str(generic), steps=3, seed=0, max_len=32, test_fraction=0.25,
                        hparams={"d_model": 16, "n_layers": 1, "ff": 32, "n_heads": 2, "batch_size": 4}),
              out, progress=False)
    return out


def test_generated_sequences_join_training_folds_only(generic, tiny_run, tmp_path):
    real, gen = tmp_path / "real", tmp_path / "gen"
    base = ["--format", "rehab-pile", "--folds", 3, "--length", 40, "--seed", 3]
    assert run("data", "export", generic, "--out", real, *base).exit_code == 0
    r = run("data", "export", generic, "--out", gen, *base, "--add-generated", tiny_run, "--per-real", 2,
            "--threads", 1)
    assert r.exit_code == 0, r.output
    # the run held out a quarter of the subjects: the folds it was trained on are flagged
    assert "was trained on" in r.output and "optimistic" in r.output
    train_subjects = set(json.loads((tiny_run / "split.json").read_text())["train"])
    rec = json.loads((gen / "regression" / "KIMORE_reg_LA" / RECORD).read_text())
    assert rec["per_real"] == 2 and rec["runs"] == [str(tiny_run.resolve())]
    for k in range(3):
        a, b, f = arrays(real, "KIMORE_reg_LA", k), arrays(gen, "KIMORE_reg_LA", k), rec["folds"][k]
        n = len(f["train"])
        assert np.array_equal(a["x_test"], b["x_test"]) and np.array_equal(a["y_test"], b["y_test"])
        assert np.array_equal(a["x_train"], b["x_train"][:n]) and len(b["x_train"]) == 3 * n
        assert [g[0] for g in f["generated"]] == [i for i in f["train"] for _ in range(2)]
        assert np.array_equal(b["y_train"][n:], np.repeat(a["y_train"], 2))  # conditioned on the real score
        pos = from_channels(b["x_train"], 18)
        # each generated sequence stands where its real one does (root's first frame, metres)
        gap = np.linalg.norm(pos[n:, 0, 0] - np.repeat(pos[:n, 0, 0], 2, axis=0), axis=-1)
        assert np.all(np.isfinite(pos)) and gap.max() < 0.5
        tested = set(f["test_subjects"])
        assert f["generator_saw_test_subjects"] == sorted(tested & train_subjects)
    fold = load_dataset(gen / "regression" / "KIMORE_reg_LA" / "fold0")
    assert len(fold.metadata["rehab_pile"]["generated"]) == 2 * len(rec["folds"][0]["train"])


def test_a_model_of_another_skeleton_is_refused(toy):
    three = Skeleton("stick", ("a", "b", "c"), (-1, 0, 1))
    fake = SimpleNamespace(spec=SimpleNamespace(skeleton=three))
    with pytest.raises(DataError, match=r"RUN: the model's skeleton 'stick' \(3 joints\) is neither the data's "
                                        r"'kinect_v2' \(25\) nor the export's"):
        _Generated(fake, toy, None, toy.skeleton, "RUN")


def test_kinematic_tree_covers_every_bone():
    tree = kinematic_tree(KINECT_V2)
    edges = {(c[i], c[i + 1]) for c in tree for i in range(len(c) - 1)}
    assert edges == {(p, j) for p, j in KINECT_V2.bones}


@pytest.mark.filterwarnings("ignore::Warning:aeon")  # numba's type-safety notes inside aeon
def test_an_aeon_regressor_fits_an_exported_fold(exported):
    pytest.importorskip("aeon")
    from aeon.regression.distance_based import KNeighborsTimeSeriesRegressor

    a = arrays(exported, "KIMORE_reg_LA", 0)  # read as deep-rehab-pile and aeon's loader read it
    reg = KNeighborsTimeSeriesRegressor(n_neighbors=1, distance="euclidean").fit(a["x_train"], a["y_train"])
    pred = reg.predict(a["x_test"])
    assert pred.shape == a["y_test"].shape and np.isin(pred, a["y_train"]).all()
    # the toy's TS grows with the movement's amplitude: 1-NN on raw trajectories beats the mean
    rmse = np.sqrt(np.mean((pred - a["y_test"]) ** 2))
    assert rmse < np.sqrt(np.mean((a["y_train"].mean() - a["y_test"]) ** 2))
