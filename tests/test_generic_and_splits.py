from __future__ import annotations

import json

import numpy as np
import pytest

from rehabgen.data import DataError, load_dataset
from rehabgen.data.generic import load_generic, write_generic
from rehabgen.data.kimore import load_kimore
from rehabgen.data.splits import subject_kfold, subject_split
from rehabgen.preprocess import PreprocessConfig, preprocess_dataset, to_arrays
from rehabgen.skeleton import SkeletonError


def _tiny_skeleton():
    return {"name": "arm3", "joints": ["torso", "l_hand", "r_hand", "head"],
            "parents": [None, "torso", "torso", "torso"], "mirror": [["l_hand", "r_hand"]], "fps": 20}


def test_generic_import_with_a_custom_skeleton(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "skeleton.json").write_text(json.dumps(_tiny_skeleton()))
    np.save(tmp_path / "a.npy", rng.normal(size=(30, 4, 3)).astype(np.float32))
    b = rng.normal(size=(25, 12))
    b[3, :3] = np.nan
    (tmp_path / "b.csv").write_text("h" + ",h" * 11 + "\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in b))
    np.save(tmp_path / "bad.npy", np.zeros((10, 5, 3)))
    (tmp_path / "labels.csv").write_text(
        "sequence,subject,exercise,score\na,s1,reach,3.5\nb.csv,s2,reach,\nbad,s3,reach,1\nghost,s4,reach,2\n")
    ds = load_dataset(tmp_path)
    assert ds.skeleton.n_joints == 4 and ds.fps == 20.0 and len(ds) == 2
    assert ds[0].scores["TS"] == 3.5 and np.isnan(ds[1].scores["TS"])
    assert not ds[1].valid[3, 0] and ds[1].valid[3, 1]
    reasons = {q.path.split("/")[-1]: q.reason for q in ds.quarantined}
    assert "expected (T, 4, 3)" in reasons["bad.npy"] and "not found" in reasons["ghost"]
    # nothing downstream assumes 25 joints
    out, _ = preprocess_dataset(ds, PreprocessConfig(fps=None, facing=False))
    assert to_arrays(out)["x"].shape == (2, 30, 4, 3)


def test_generic_errors(tmp_path):
    with pytest.raises(DataError, match="no labels.csv"):
        load_generic(tmp_path)
    (tmp_path / "labels.csv").write_text("sequence,exercise\n")
    (tmp_path / "skeleton.json").write_text(json.dumps(_tiny_skeleton()))
    with pytest.raises(DataError, match=r"missing column\(s\) \['subject'\]"):
        load_generic(tmp_path)
    (tmp_path / "skeleton.json").write_text("[1, 2]")
    with pytest.raises(SkeletonError, match="expected a JSON object"):
        load_generic(tmp_path)


def test_kimore_exports_to_generic_and_back(kimore_tiny, tmp_path):
    ds = load_kimore(kimore_tiny, exercises=("Es1", "Es2"))
    write_generic(tmp_path / "g", ds)
    g = load_dataset(tmp_path / "g")
    assert len(g) == len(ds) and g.skeleton == ds.skeleton
    np.testing.assert_allclose(g[0].positions, ds[0].positions)
    assert g[2].scores["TS"] == ds[2].scores["TS"]


def _many_subjects(kimore_tiny):
    ds = load_kimore(kimore_tiny, exercises=("Es1", "Es2"))
    seqs = []
    for k in range(12):
        for s in ds.sequences:
            from dataclasses import replace

            seqs.append(replace(s, subject=f"{s.subject}_{k}"))
    from rehabgen.data import Dataset

    return Dataset(ds.skeleton, seqs, exercises=ds.exercises)


def test_subject_split_has_no_leak(kimore_tiny):
    ds = _many_subjects(kimore_tiny)
    sp = subject_split(ds, 0.2, 0.2, seed=3)
    sides = {k: {ds[i].subject for i in v} for k, v in sp.items()}
    assert not (sides["train"] & sides["test"]) and not (sides["train"] & sides["val"])
    assert not (sides["val"] & sides["test"])
    assert sum(len(v) for v in sp.values()) == len(ds)
    assert all(len(v) > 0 for v in sp.values())
    assert subject_split(ds, 0.2, 0.2, seed=3) == sp


def test_kfold_has_no_leak_and_keeps_controls_in_training(kimore_tiny):
    ds = _many_subjects(kimore_tiny)
    folds = subject_kfold(ds, k=4, seed=0, always_train_groups=("Expert",))
    seen = set()
    for tr, te in folds:
        a, b = {ds[i].subject for i in tr}, {ds[i].subject for i in te}
        assert not a & b
        assert all(ds[i].group != "Expert" for i in te)
        seen |= b
    assert seen == {s.subject for s in ds.sequences if s.group != "Expert"}
    with pytest.raises(DataError, match="needs at least 50 subjects"):
        subject_kfold(ds, k=50)
