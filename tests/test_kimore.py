"""KIMORE reader: quirks of real copies give records for usable files and a quarantine list."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rehabgen.data import DataError, load_dataset
from rehabgen.data.kimore import load_kimore, read_clinical_scores, read_timestamps
from rehabgen.skeleton import KINECT_V2

from conftest import arm_raise, standing_pose, write_positions_csv, write_subject


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


# ------------------------------------------------------------------------------------------
# several bodies per row (4 real KIMORE recordings): the subject's body is read
# ------------------------------------------------------------------------------------------
def _bystander(T, seed=0):
    """Stands still off the optical axis, with Kinect-like jitter."""
    p = np.repeat(standing_pose()[None], T, axis=0) + [1.2, 0.0, 0.6]
    return p + np.random.default_rng(seed).normal(0, 0.004, size=p.shape)


def _ghost(T):
    """A frozen made-up body present in a few frames, zeros elsewhere."""
    p = np.zeros((T, 25, 3))
    p[3:8] = standing_pose() + [-0.8, 0.0, 1.0]
    return p


def _write_bodies(path, bodies, per_joint=4, lead_lines=24):
    """Bodies side by side in each row, blank lead lines and a trailing comma, as in KIMORE."""
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, b in enumerate(bodies):
        f = path.parent / f"_body{i}.csv"
        write_positions_csv(f, b, per_joint=per_joint, trailing_comma=False)
        parts.append(f.read_text().splitlines())
        f.unlink()
    path.write_text("\n" * lead_lines + "\n".join(",".join(r) + "," for r in zip(*parts)) + "\n")


def _one(root, subject="P_ID1"):
    ds = load_kimore(root, exercises=("Es1",))
    assert [q.to_dict() for q in ds.quarantined] == []
    assert len(ds.sequences) == 1 and ds.sequences[0].subject == subject
    return ds, ds.sequences[0]


@pytest.mark.parametrize("order,taken", [
    (("bystander", "subject", "ghost"), 1),
    (("ghost", "bystander", "subject"), 2),
    (("subject", "bystander"), 0),
    (("bystander", "subject"), 1),
    (("ghost", "subject"), 1),
])
def test_rows_with_several_bodies_read_the_subject(tmp_path, order, taken):
    T = 40
    make = {"subject": lambda: arm_raise(T, seed=6), "bystander": lambda: _bystander(T), "ghost": lambda: _ghost(T)}
    root = tmp_path / "kimore"
    s = write_subject(root, "Parkinson", "P_ID1", exercises=("Es1",))
    _write_bodies(s / "Es1" / "Raw" / "JointPosition_P_ID1.csv", [make[n]() for n in order])
    ds, seq = _one(root)
    assert seq.positions.shape == (T, 25, 3) and seq.valid.all() and (seq.state == 2).all()
    np.testing.assert_allclose(seq.positions, arm_raise(T, seed=6), atol=2e-6)
    assert seq.scores == {"TS": 40.0, "PO": 12.0, "CF": 28.0}
    (note,) = ds.metadata["bodies"]
    assert note["bodies"] == len(order) and note["body_taken"] == taken
    assert note["subject"] == "P_ID1" and note["exercise"] == "Es1" and note["source"] == seq.source
    assert note["why"].startswith(f"body {taken}: ")
    # shown by `rehabgen data inspect --json`
    assert json.loads(json.dumps(ds.summary()))["metadata"]["bodies"][0]["body_taken"] == taken


def test_bodies_moving_alike_go_to_the_one_nearest_the_optical_axis(tmp_path):
    root = tmp_path / "kimore"
    s = write_subject(root, "Parkinson", "P_ID1", exercises=("Es1",))
    beside = arm_raise(40, seed=1) + [0.9, 0.0, 0.3]  # someone doing the exercise along, off axis
    _write_bodies(s / "Es1" / "Raw" / "JointPosition_P_ID1.csv", [beside, arm_raise(40, seed=2)])
    ds, seq = _one(root)
    np.testing.assert_allclose(seq.positions, arm_raise(40, seed=2), atol=2e-6)
    note = ds.metadata["bodies"][0]
    assert note["body_taken"] == 1 and "optical axis" in note["why"]


def test_three_values_per_joint_with_several_bodies(tmp_path):
    # 300 values: 4 bodies x 25 x 3, not 3 bodies x 25 x 4 (every 4th value is not a tracking state)
    root = tmp_path / "kimore"
    s = write_subject(root, "Parkinson", "P_ID1", exercises=("Es1",))
    bodies = [_bystander(40), np.zeros((40, 25, 3)), arm_raise(40, seed=6), _ghost(40)]
    _write_bodies(s / "Es1" / "Raw" / "JointPosition_P_ID1.csv", bodies, per_joint=3)
    ds, seq = _one(root)
    assert seq.state is None
    np.testing.assert_allclose(seq.positions, arm_raise(40, seed=6), atol=2e-6)
    assert ds.metadata["bodies"][0]["bodies"] == 4 and ds.metadata["bodies"][0]["body_taken"] == 2


def test_single_body_files_leave_no_body_notes(quirky):
    assert load_kimore(quirky, exercises=("Es1", "Es2")).metadata["bodies"] == []


def test_row_widths_that_fit_no_body_count_or_mix_are_quarantined(tmp_path):
    root = tmp_path / "kimore"
    s = write_subject(root, "Parkinson", "P_ID1", exercises=("Es1", "Es2", "Es3"))
    raw = {ex: s / ex / "Raw" / "JointPosition_P_ID1.csv" for ex in ("Es1", "Es2", "Es3")}
    raw["Es1"].write_text((",".join(["0.5"] * 250) + ",\n") * 30)
    # a second body in 15 rows, a third in 10: no width covers half the rows
    rows = ([arm_raise(15)], [arm_raise(15), _bystander(15)], [arm_raise(10), _bystander(10), _ghost(10)])
    parts = []
    for i, bodies in enumerate(rows):
        f = tmp_path / f"part{i}.csv"
        _write_bodies(f, bodies, lead_lines=0)
        parts.append(f.read_text())
    raw["Es2"].write_text("".join(parts))
    # 30 rows with two bodies, 10 with one in the middle: the one-body rows become lost frames, noted
    f = tmp_path / "two.csv"
    _write_bodies(f, [_bystander(30), arm_raise(30, seed=6)], lead_lines=0)
    two = f.read_text().splitlines(keepends=True)
    write_positions_csv(tmp_path / "one.csv", arm_raise(10))
    raw["Es3"].write_text("".join(two[:15]) + (tmp_path / "one.csv").read_text() + "".join(two[15:]))
    ds = load_kimore(root, exercises=("Es1", "Es2", "Es3"))
    reasons = {q.path: q.reason for q in ds.quarantined}
    assert reasons[str(raw["Es1"])] == ("rows have 250 values, expected 100 (25 joints x 4) or 75 (25 joints x 3), "
                                        "or a multiple of these for 2-6 bodies")
    assert reasons[str(raw["Es2"])] == ("rows have mixed widths (100 values in 15 rows, 200 values in 15 rows, "
                                        "300 values in 10 rows); no width covers half of the 40 rows")
    assert len(ds.quarantined) == 2
    (seq,) = ds.sequences
    assert seq.exercise == "Es3" and seq.n_frames == 40
    assert seq.valid[:15].all() and not seq.valid[15:25].any() and seq.valid[25:].all()
    np.testing.assert_allclose(np.delete(seq.positions, np.s_[15:25], axis=0), arm_raise(30, seed=6), atol=2e-6)
    (note,) = ds.metadata["bodies"]
    assert note["bodies"] == 2 and note["body_taken"] == 1 and note["rows_other_width"] == {"100": 10}


def test_real_raw_sample_reads_through_the_loader():
    root = Path(__file__).resolve().parents[2] / "shared/data/kimore-raw-sample"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    ds = load_dataset(root)
    assert ds.quarantined == [] and ds.metadata["bodies"] == []
    assert sorted(s.exercise for s in ds.sequences) == ["Es1", "Es2", "Es3", "Es4", "Es5"]
    for s in ds.sequences:
        assert s.subject == "P_ID1" and s.group == "Parkinson"
        assert s.positions.shape[1:] == (25, 3) and 505 <= s.n_frames <= 1031
        assert s.timestamps is None  # no TimeStamp file
        assert all(math.isnan(v) for v in s.scores.values())  # no Label/: scores absent, positions kept
        assert s.valid.mean() > 0.9
        y = s.positions[..., 1][s.valid]
        z = s.positions[..., 2][s.valid]
        assert 1.0 < np.median(z) < 4.5 and -2.0 < y.min() and y.max() < 1.5  # metres, in front of the sensor
    assert sorted(s.n_frames for s in ds.sequences)[::4] == [505, 1031]
