"""KIMORE reader: quirks of real copies give records for usable files and a quarantine list."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rehabgen.data import DataError, load_dataset
from rehabgen.data.kimore import load_kimore, read_clinical_scores, read_timestamps
from rehabgen.skeleton import KINECT_V2

from conftest import arm_raise, write_positions_csv, write_subject


@pytest.fixture
def quirky(tmp_path):
    root = tmp_path / "kimore"
    # clean subject
    write_subject(root, "Expert", "E_ID1", seed=1)
    # Raw/ without JointPosition file; an empty JointPosition file
    s = write_subject(root, "NotExpert", "NE_ID1", seed=2)
    (s / "Es1" / "Raw" / "JointPosition_NE_ID1.csv").unlink()
    (s / "Es2" / "Raw" / "JointPosition_NE_ID1.csv").write_text("")
    # all-zero recording; a recording with NaN and zero rows in the middle
    s = write_subject(root, "BackPain", "B_ID1", seed=3)
    write_positions_csv(s / "Es1" / "Raw" / "JointPosition_B_ID1.csv", np.zeros((30, 25, 3)))
    p = arm_raise(40, seed=4)
    p[10:13] = np.nan
    p[20:22] = 0.0
    write_positions_csv(s / "Es2" / "Raw" / "JointPosition_B_ID1.csv", p)
    # 3 values per joint without trailing comma; rows of the wrong width
    s = write_subject(root, "Parkinson", "P_ID1", seed=5)
    write_positions_csv(s / "Es1" / "Raw" / "JointPosition_P_ID1.csv", arm_raise(40, seed=6), per_joint=3,
                        trailing_comma=False)
    (s / "Es2" / "Raw" / "JointPosition_P_ID1.csv").write_text("1,2,3,4,5,6,7\n" * 20)
    # missing exercise folder; missing score cells
    write_subject(root, "Stroke", "S_ID1", exercises=("Es1",), seed=7,
                  scores={1: {"TS": 30.0, "PO": 9.0, "CF": math.nan}})
    # a corrupt workbook: scores NaN, sequence kept, workbook quarantined
    s = write_subject(root, "Stroke", "S_ID2", exercises=("Es1",), seed=8)
    (s / "Es1" / "Label" / "ClinicalAssessment_S_ID2.xlsx").write_bytes(b"not a zip file")
    # not-tracked joints
    st = np.full((40, 25), 2)
    st[5:8, KINECT_V2.index("HandLeft")] = 0
    st[5:8, KINECT_V2.index("WristLeft")] = 1
    s = write_subject(root, "Stroke", "S_ID3", exercises=("Es1",), seed=9)
    write_positions_csv(s / "Es1" / "Raw" / "JointPosition_S_ID3.csv", arm_raise(40, seed=9), state=st)
    return root


def _rec(ds, subject, ex):
    hits = [s for s in ds.sequences if s.subject == subject and s.exercise == ex]
    return hits[0] if hits else None


def test_quirky_folder_loads_usable_files_and_quarantines_the_rest(quirky):
    ds = load_kimore(quirky, exercises=("Es1", "Es2"))
    reasons = {q.path.split("kimore/")[-1]: q.reason for q in ds.quarantined}
    assert reasons["CG/NotExpert/NE_ID1/Es1/Raw"] == "no JointPosition*.csv file"
    assert reasons["CG/NotExpert/NE_ID1/Es2/Raw/JointPosition_NE_ID1.csv"] == "file is empty"
    assert "no usable frame" in reasons["GPP/BackPain/B_ID1/Es1/Raw/JointPosition_B_ID1.csv"]
    assert "rows have 7 values, expected 100" in reasons["GPP/Parkinson/P_ID1/Es2/Raw/JointPosition_P_ID1.csv"]
    assert "not a readable xlsx" in reasons["GPP/Stroke/S_ID2/Es1/Label/ClinicalAssessment_S_ID2.xlsx"]
    assert len(ds.quarantined) == 5
    # usable records
    keys = sorted((s.subject, s.exercise) for s in ds.sequences)
    assert keys == [("B_ID1", "Es2"), ("E_ID1", "Es1"), ("E_ID1", "Es2"), ("P_ID1", "Es1"),
                    ("S_ID1", "Es1"), ("S_ID2", "Es1"), ("S_ID3", "Es1")]
    assert {"subject": "S_ID1", "exercise": "Es2"} in ds.metadata["missing_exercises"]


def test_records_keep_positions_masks_groups_and_scores(quirky):
    ds = load_kimore(quirky, exercises=("Es1", "Es2"))
    e = _rec(ds, "E_ID1", "Es1")
    assert e.group == "Expert" and e.positions.shape == (40, 25, 3) and e.valid.all()
    assert e.scores == {"TS": 40.0, "PO": 12.0, "CF": 28.0}
    b = _rec(ds, "B_ID1", "Es2")
    assert not b.valid[10:13].any() and not b.valid[20:22].any() and b.valid[:10].all()
    p = _rec(ds, "P_ID1", "Es1")
    assert p.state is None and p.valid.all()
    np.testing.assert_allclose(p.positions, arm_raise(40, seed=6), atol=2e-6)
    s1 = _rec(ds, "S_ID1", "Es1")
    assert s1.scores["TS"] == 30.0 and s1.scores["PO"] == 9.0 and s1.scores["CF"] == 21.0  # TS = PO + CF
    s2 = _rec(ds, "S_ID2", "Es1")
    assert all(math.isnan(v) for v in s2.scores.values())
    s3 = _rec(ds, "S_ID3", "Es1")
    hl, wl = KINECT_V2.index("HandLeft"), KINECT_V2.index("WristLeft")
    assert not s3.valid[5:8, hl].any()  # not tracked
    assert s3.valid[5:8, wl].all() and (s3.state[5:8, wl] == 1).all()  # inferred: kept, state recorded


def test_summary_counts(quirky):
    s = load_kimore(quirky, exercises=("Es1", "Es2")).summary()
    assert s["n_subjects"] == 6 and s["n_sequences"] == 7
    assert s["per_exercise"]["Es1"]["n_sequences"] == 5 and s["per_exercise"]["Es2"]["n_sequences"] == 2
    assert s["scores"]["TS"]["n_missing"] == 1
    assert s["per_group"] == {"BackPain": 1, "Expert": 2, "Parkinson": 1, "Stroke": 3}
    assert 0 < s["pct_invalid_joints"] < 10


def test_not_a_kimore_folder_gives_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no KIMORE subjects found"):
        load_kimore(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        load_kimore(tmp_path / "nope")
    with pytest.raises(DataError, match="no such file or directory"):
        load_dataset(tmp_path / "nope")


def test_score_header_found_anywhere(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["KIMORE clinical assessment"])
    ws.append(["Subject ID", "age", "clinical PO Ex#3", "Clinical TS Ex# 3", "clinical CF Ex#3"])
    ws.append(["P_ID9", 70, 11, 30, 19])
    f = tmp_path / "c.xlsx"
    wb.save(f)
    assert read_clinical_scores(f) == {3: {"PO": 11.0, "TS": 30.0, "CF": 19.0}}
    wb = openpyxl.Workbook()
    wb.active.append(["nothing", "here"])
    wb.save(f)
    with pytest.raises(DataError, match="no 'clinical TS/PO/CF Ex#k' header"):
        read_clinical_scores(f)


@pytest.mark.parametrize("step,expected", [(333_333, 1e-7), (33, 1e-3), (0.0333, 1.0)])
def test_timestamp_units(tmp_path, step, expected):
    f = tmp_path / "TimeStamp.csv"
    f.write_text("".join(f"{1000 + i * step},\n" for i in range(10)))
    ts = read_timestamps(f, 10)
    assert ts[0] == 0.0
    np.testing.assert_allclose(np.diff(ts), step * expected, rtol=1e-6)
    assert read_timestamps(f, 11) is None  # frame count mismatch
