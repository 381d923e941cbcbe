"""BVH export: rotations solved from positions, files that a maintained reader (bvhio) loads with
the right joints and frames, the round trip (forward kinematics of the written rotations) against
the input, and one-line errors for bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import arm_raise, side_raise, standing_pose
from rehabgen import bvh
from rehabgen.cli import app
from rehabgen.samples import save_samples
from rehabgen.skeleton import KINECT_V2, Skeleton

runner = CliRunner()
KIMORE_PATIENTS = Path(__file__).resolve().parents[2] / "shared/data/kimore-patients"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_error_line(r, *needles):
    lines = [ln for ln in r.output.splitlines() if ln.strip() and not re.search(r"\d+%\|", ln)]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert all(n in lines[0] for n in needles), (needles, lines[0])


def rot(axis: str, deg) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler(axis, np.asarray(deg, np.float64)[..., None], degrees=True).as_matrix()


def tumbling(T: int = 50, seed: int = 0) -> np.ndarray:
    """A rigid arm raise whose whole body also turns a full circle about the vertical, tilts and
    travels: every joint's rotation (twist included) and the root translation change."""
    p = arm_raise(T, seed=seed)
    root = p[:, KINECT_V2.root].copy()
    R = rot("y", np.linspace(0, 360, T)) @ rot("x", 20 * np.sin(np.linspace(0, 3, T)))  # (T, 3, 3)
    out = np.einsum("tij,tkj->tki", R, p - root[:, None]) + root[:, None]
    return out + np.linspace(0, 1, T)[:, None, None] * np.array([0.5, 0.0, -0.3])


def bvhio_world(path: Path, names: list[str], frames) -> np.ndarray:
    """World joint positions (len(frames), J, 3) in the file's units, as bvhio computes them."""
    bvhio = pytest.importorskip("bvhio")
    root = bvhio.readAsHierarchy(str(path))
    joints = {j.Name: j for j, _, _ in root.layout()}
    out = []
    for f in frames:
        root.loadPose(int(f))
        out.append([np.array(joints[n].PositionWorld) for n in names])
    return np.array(out)


# ------------------------------------------------------------------------------------------
# the solver
# ------------------------------------------------------------------------------------------
def test_rigid_motion_round_trips_exactly_and_bvhio_reads_the_same(tmp_path):
    p = tumbling()
    m = bvh.solve(p, KINECT_V2, 30.0)
    err = bvh.round_trip_error(p, m)
    assert err["max_cm"] < 2e-3, err  # rounding of the written numbers only
    bvh.write_bvh(tmp_path / "a.bvh", m)
    text = (tmp_path / "a.bvh").read_text()
    assert "Frames: 50\n" in text and "Frame Time: 0.0333333333\n" in text
    assert text.count("JOINT ") == 24 and text.count("ROOT ") == 1
    assert text.count("End Site") == sum(1 for j in range(25) if j not in KINECT_V2.parents)
    bvhio = pytest.importorskip("bvhio")
    c = bvhio.readAsBvh(str(tmp_path / "a.bvh"))
    assert len(c.Root.layout()) == 25 and c.FrameCount == 50 and c.FrameTime == pytest.approx(1 / 30)
    frames = [0, 13, 27, 49]
    world = bvhio_world(tmp_path / "a.bvh", m.names, frames)
    np.testing.assert_allclose(world, bvh.to_bvh_space(p[frames]), atol=2e-3)  # cm


def test_known_angles_and_axes():
    """A bone swinging +-30 degrees about the sideways axis: the rest direction is the mean (straight
    up), so the joint's Zrotation is exactly +-30; metres -> cm; subject turned to face +Z."""
    sk = Skeleton("chain", ("r", "a", "b"), (-1, 0, 1))
    up = np.array([0.0, 0.1, 0.0])
    t = np.radians(30.0)
    tip = lambda s: 0.2 * np.array([-np.sin(s), np.cos(s), 0.0])  # noqa: E731  (BVH frame, metres)
    bvh_frame = np.array([[[0, 0, 0], up, up + tip(t)], [[0, 0, 0], up, up + tip(-t)]])
    cam = bvh_frame * np.array([-1.0, 1.0, -1.0]) + np.array([0.0, 0.0, 2.0])  # subject 2 m from the sensor
    m = bvh.solve(cam, sk, 10.0)
    np.testing.assert_allclose(m.offsets, [[0, 0, 0], [0, 10, 0], [0, 20, 0]], atol=1e-9)
    np.testing.assert_allclose(m.root_position, [[0, 0, -200.0]] * 2)
    np.testing.assert_allclose(m.euler[:, 0], 0.0, atol=1e-9)
    np.testing.assert_allclose(m.euler[:, 1], [[30.0, 0, 0], [-30.0, 0, 0]], atol=1e-9)  # Z Y X
    np.testing.assert_allclose(m.end_sites[2], [0, 10, 0], atol=1e-9)
    text = bvh.to_text(m)
    assert "CHANNELS 6 Xposition Yposition Zposition Yrotation Xrotation Zrotation" in text
    assert "CHANNELS 3 Zrotation Yrotation Xrotation" in text and "Frame Time: 0.1000000000" in text
    assert text.splitlines()[-2:] == ["0.0000 0.0000 -200.0000 0.0000 0.0000 0.0000 30.0000 0.0000 0.0000 "
                                      "0.0000 0.0000 0.0000",
                                      "0.0000 0.0000 -200.0000 0.0000 0.0000 0.0000 -30.0000 0.0000 0.0000 "
                                      "0.0000 0.0000 0.0000"]


def test_joints_with_several_children_place_all_of_them():
    """SpineBase (spine, two hips), SpineShoulder (neck, two shoulders) and the hands (tip, thumb)
    have several children; a rigid twist of the whole body is only reproduced if their rotation
    is solved from all children, not from one direction."""
    base = standing_pose()
    T = 20
    R = rot("z", np.linspace(0, 80, T)) @ rot("y", np.linspace(0, -120, T))  # tilt and twist
    p = np.einsum("tij,kj->tki", R, base - base[0]) + base[0]
    m = bvh.solve(p, KINECT_V2, 30.0)
    assert bvh.round_trip_error(p, m)["max_cm"] < 2e-3
    fk = bvh.forward_kinematics(m)
    for name in ("HipLeft", "HipRight", "ShoulderLeft", "ShoulderRight", "HandTipLeft", "ThumbLeft"):
        j = KINECT_V2.index(name)
        np.testing.assert_allclose(fk[:, j], bvh.to_bvh_space(p)[:, j], atol=1e-6)


def test_euler_channels_are_continuous_through_full_turns():
    p = tumbling(T=60)
    m = bvh.solve(p, KINECT_V2, 30.0)
    jumps = np.abs(np.diff(m.euler, axis=0)).max()
    assert jumps < 30.0, jumps  # 360 degrees in 60 frames is 6 per frame; no wraps or flips
    assert np.ptp(m.euler[:, KINECT_V2.root, 0]) > 300  # the heading channel carries the turn


def test_built_in_rigid_motion_round_trip():
    """Built-in data before noise has exact bone lengths: what is left is the branching rule (the
    trunk bending over the pelvis, both below SpineBase's one rotation), small and bounded."""
    from rehabgen.data.synth import generate_subject

    recs = generate_subject(0, seed=0, noise=False)["recordings"]
    for ex in ("Es1", "Es4"):
        p = recs[ex]["clean"]
        assert bvh.bone_length_change(p, KINECT_V2)["max_cm"] < 1e-3
        err = bvh.round_trip_error(p, bvh.solve(p, KINECT_V2, 30.0))
        assert err["mean_cm"] < 0.3 and err["max_cm"] < 3.0, (ex, err)


def test_changing_bone_lengths_are_measured_and_do_not_add_up():
    """Every bone a little longer or shorter in every frame (uniform +-2 cm, as Kinect's bones
    wobble): the fixed skeleton can't follow that. Aiming each joint from where the BVH places
    it keeps each joint's error near its own bone's change; aiming along the observed directions
    lets the changes add up down every chain."""
    p0 = side_raise(60)
    rng = np.random.default_rng(0)
    p = p0.copy()
    for j in bvh._topological(KINECT_V2.parents)[1:]:
        par = KINECT_V2.parents[j]
        v = p0[:, j] - p0[:, par]
        n = np.linalg.norm(v, axis=-1, keepdims=True)
        p[:, j] = p[:, par] + v / n * (n + rng.uniform(-0.02, 0.02, size=n.shape))
    change = bvh.bone_length_change(p, KINECT_V2)
    assert 0.8 < change["mean_cm"] < 1.2 and change["max_cm"] < 4.0, change
    placed = bvh.round_trip_error(p, bvh.solve(p, KINECT_V2, 30.0))
    observed = bvh.round_trip_error(p, bvh.solve(p, KINECT_V2, 30.0, aim="observed"))
    assert placed["mean_cm"] < 2 * change["mean_cm"], (placed, change)  # 1.42 vs 0.98 cm
    assert placed["mean_cm"] < 0.9 * observed["mean_cm"], (placed, observed)  # 1.42 vs 1.82 cm


def test_lost_joints_are_filled_and_a_joint_never_seen_is_an_error():
    p = arm_raise(30)
    valid = np.ones(p.shape[:2], bool)
    h = KINECT_V2.index("HandLeft")
    p[10:14, h] = np.nan
    valid[20, h] = False
    filled, known, n = bvh.fill_lost(p, valid, KINECT_V2, "rec.csv")
    assert n == 5 and known.sum() == p.shape[0] * p.shape[1] - 5 and np.isfinite(filled).all()
    np.testing.assert_allclose(filled[11, h], p[9, h] + (p[14, h] - p[9, h]) * 2 / 5)  # linear in time
    p[:, h] = np.nan
    with pytest.raises(bvh.BvhError, match=r"rec.csv: joint\(s\) 'HandLeft' never observed"):
        bvh.fill_lost(p, None, KINECT_V2, "rec.csv")
    with pytest.raises(bvh.BvhError, match="rec.csv: joint 'HandLeft' has no finite position at frame 0"):
        bvh.solve(p, KINECT_V2, 30.0, source="rec.csv")
    with pytest.raises(bvh.BvhError, match=r"x.npz: positions must be \(frames, 25, 3\)"):
        bvh.solve(p[:, :18], KINECT_V2, 30.0, source="x.npz")


def test_names_are_bvh_safe_and_unique():
    assert bvh.bvh_names(["spine base", "1st", "a-b", "a_b", "", "ok"]) == ["spine_base", "j_1st", "a_b", "a_b_2",
                                                                             "joint", "ok"]


def test_a_failed_export_writes_nothing(tmp_path):
    good = bvh.ExportItem("one", arm_raise(10))
    bad = bvh.ExportItem("two", np.full((10, 25, 3), np.nan), source="bad.npz (sample 1)")
    with pytest.raises(bvh.BvhError, match=r"bad.npz \(sample 1\): joint\(s\) 'SpineBase', 'SpineMid', 'Neck' \.\.\."):
        bvh.export_bvh([good, bad], KINECT_V2, 30.0, tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []  # no output folder, no temp folder left


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------
@pytest.fixture
def samples(tmp_path) -> Path:
    pos = np.stack([arm_raise(30, seed=1), side_raise(30, seed=2), arm_raise(30, amplitude=0.5, seed=3)])
    return save_samples(tmp_path / "s.npz", pos, ["Es1", "Es2", "Es1"], [30.0, np.nan, 40.0], KINECT_V2,
                        {"seed": 0}, 15.0)


def test_export_samples(samples, tmp_path):
    out = tmp_path / "bvh"
    r = cli("export-bvh", samples, "--out", out)
    assert r.exit_code == 0, r.output
    assert f"wrote 3 BVH file(s) to {out} (25 joints, 15 fps, centimetres" in r.output
    assert re.search(r"round trip .*: mean 0\.00 cm, max 0\.00 cm", r.output), r.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["export.json", "s_000_Es1.bvh", "s_001_Es2.bvh", "s_002_Es1.bvh"]
    rec = json.loads((out / "export.json").read_text())
    assert rec["units"] == "centimetres" and rec["joints"] == 25 and rec["fps"] == 15.0
    assert [f["score"] for f in rec["files"]] == [30.0, None, 40.0] and rec["round_trip_cm"]["max"] < 2e-3
    bvhio = pytest.importorskip("bvhio")
    c = bvhio.readAsBvh(str(out / "s_001_Es2.bvh"))
    assert len(c.Root.layout()) == 25 and c.FrameCount == 30 and c.FrameTime == pytest.approx(1 / 15)

    # the overwrite rule, and a filter
    one_error_line(cli("export-bvh", samples, "--out", out), str(out), "already holds files", "--force")
    r = cli("export-bvh", samples, "--out", out, "--exercise", "Es2", "--force")
    assert r.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["export.json", "s_001_Es2.bvh"]


def test_export_data_folder(kimore_tiny, tmp_path):
    out = tmp_path / "bvh"
    r = cli("export-bvh", kimore_tiny, "--out", out, "--subject", "S_ID1")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("*.bvh")) == ["S_ID1_Es1.bvh", "S_ID1_Es2.bvh"]
    rec = json.loads((out / "export.json").read_text())
    assert [(f["subject"], f["exercise"], f["frames"], f["scores"]["TS"]) for f in rec["files"]] == \
        [("S_ID1", "Es1", 40, 20.0), ("S_ID1", "Es2", 40, 25.0)]
    assert rec["round_trip_cm"]["max"] < 2e-3  # rigid arm raises, written with 6 decimals in the CSV


def test_bad_input_gives_one_error_line(samples, tmp_path):
    one_error_line(cli("export-bvh", tmp_path / "missing.npz", "--out", tmp_path / "o"), "missing.npz",
                   "no such file or directory")
    txt = tmp_path / "x.txt"
    txt.write_text("hello")
    one_error_line(cli("export-bvh", txt, "--out", tmp_path / "o"), "x.txt", "expected a samples .npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    one_error_line(cli("export-bvh", tmp_path / "other.npz", "--out", tmp_path / "o"), "other.npz", "missing array")
    one_error_line(cli("export-bvh", samples, "--out", tmp_path / "o", "--exercise", "Es9"), "no samples of exercise 'Es9'")
    one_error_line(cli("export-bvh", samples, "--out", txt), "is a file")
    one_error_line(cli("export-bvh", tmp_path, "--out", tmp_path, "--force"), "holds the source")
    pos = np.stack([arm_raise(10), arm_raise(10)])
    pos[1, :, KINECT_V2.index("KneeLeft")] = np.nan
    broken = save_samples(tmp_path / "broken.npz", pos, ["Es1", "Es1"], [1.0, 2.0], KINECT_V2, {}, 15.0)
    one_error_line(cli("export-bvh", broken, "--out", tmp_path / "o"), "broken.npz (sample 1)", "'KneeLeft' never observed")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not KIMORE_PATIENTS.is_dir(), reason="real patients' data not in shared/data")
def test_real_patients(tmp_path):
    """Real Kinect recordings (one patient's five exercises): bvhio loads 18 joints and every frame;
    the round trip is as good as a fixed skeleton can do on bones whose measured length changes."""
    from rehabgen.data import load_dataset

    ds = load_dataset(KIMORE_PATIENTS)
    subject = ds.subjects[0]
    out = tmp_path / "bvh"
    r = cli("export-bvh", KIMORE_PATIENTS, "--out", out, "--subject", subject)
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "export.json").read_text())
    seqs = [s for s in ds if s.subject == subject]
    assert rec["joints"] == 18 and len(rec["files"]) == len(seqs)
    assert [f["frames"] for f in rec["files"]] == [s.n_frames for s in seqs]
    assert rec["round_trip_cm"]["mean"] < 3.0
    assert rec["round_trip_cm"]["mean"] < 2 * rec["bone_length_change_cm"]["mean"] + 0.5
    bvhio = pytest.importorskip("bvhio")
    first = out / rec["files"][0]["file"]
    c = bvhio.readAsBvh(str(first))
    assert len(c.Root.layout()) == 18 and c.FrameCount == seqs[0].n_frames
    # bvhio's world positions are our forward kinematics of the file
    m = bvh.solve(seqs[0].positions, ds.skeleton, ds.fps)
    frames = np.arange(0, seqs[0].n_frames, 97)
    np.testing.assert_allclose(bvhio_world(first, m.names, frames), bvh.forward_kinematics(m.rounded())[frames],
                               atol=2e-3)
