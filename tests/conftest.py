"""Shared fixtures: tiny hand-made motion and KIMORE-layout folders built by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # pytest-xdist workers share the cores: torch threads split between them (set before torch is
    # imported), or two 2-thread workers on 2 cores slow each other several-fold
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

from rehabgen.skeleton import KINECT_V2  # noqa: E402

# a standing pose in Kinect camera coordinates (x to the sensor's left = subject's right), metres
_POSE = {
    "SpineBase": (0.0, 0.0, 2.5), "SpineMid": (0.0, 0.30, 2.5), "SpineShoulder": (0.0, 0.55, 2.5),
    "Neck": (0.0, 0.62, 2.5), "Head": (0.0, 0.78, 2.5),
    "ShoulderLeft": (-0.18, 0.52, 2.5), "ElbowLeft": (-0.22, 0.25, 2.5), "WristLeft": (-0.24, 0.02, 2.5),
    "HandLeft": (-0.25, -0.06, 2.5), "HandTipLeft": (-0.25, -0.14, 2.5), "ThumbLeft": (-0.21, -0.08, 2.48),
    "ShoulderRight": (0.18, 0.52, 2.5), "ElbowRight": (0.22, 0.25, 2.5), "WristRight": (0.24, 0.02, 2.5),
    "HandRight": (0.25, -0.06, 2.5), "HandTipRight": (0.25, -0.14, 2.5), "ThumbRight": (0.21, -0.08, 2.48),
    "HipLeft": (-0.09, -0.03, 2.5), "KneeLeft": (-0.10, -0.45, 2.5), "AnkleLeft": (-0.10, -0.85, 2.52),
    "FootLeft": (-0.10, -0.90, 2.42),
    "HipRight": (0.09, -0.03, 2.5), "KneeRight": (0.10, -0.45, 2.5), "AnkleRight": (0.10, -0.85, 2.52),
    "FootRight": (0.10, -0.90, 2.42),
}


def standing_pose() -> np.ndarray:
    return np.array([_POSE[j] for j in KINECT_V2.joints], dtype=np.float64)


def arm_raise(T: int = 60, amplitude: float = 1.0, seed: int = 0) -> np.ndarray:
    """(T, 25, 3): both arms swing forward and up about the shoulders, rigidly (bone lengths fixed)."""
    rng = np.random.default_rng(seed)
    base = standing_pose()
    out = np.repeat(base[None], T, axis=0)
    ang = amplitude * (np.pi / 2) * (1 - np.cos(np.linspace(0, 4 * np.pi, T))) / 2
    sk = KINECT_V2
    for side in ("Left", "Right"):
        sh = sk.index(f"Shoulder{side}")
        arm = [sk.index(f"{n}{side}") for n in ("Elbow", "Wrist", "Hand", "HandTip", "Thumb")]
        for t in range(T):
            c, s = np.cos(ang[t]), np.sin(ang[t])
            # rotation about x: y-z plane, arm swings towards the camera (-z) and up
            R = np.array([[1, 0, 0], [0, c, s], [0, -s, c]])
            out[t, arm] = (base[arm] - base[sh]) @ R.T + base[sh]
    out += rng.normal(0, 0.001, size=(1, 1, 3))  # a per-sequence offset, same every frame
    return out


def write_positions_csv(path: Path, positions: np.ndarray, state: np.ndarray | None = None,
                        per_joint: int = 4, trailing_comma: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    T, J, _ = positions.shape
    lines = []
    for t in range(T):
        vals = []
        for j in range(J):
            x, y, z = positions[t, j]
            vals += [f"{x:.6f}", f"{y:.6f}", f"{z:.6f}"]
            if per_joint == 4:
                vals.append(str(2 if state is None else int(state[t, j])))
        lines.append(",".join(vals) + ("," if trailing_comma else ""))
    path.write_text("\n".join(lines) + "\n")


def write_subject(root: Path, group: str, subject: str, exercises=("Es1", "Es2"), T: int = 40,
                  scores: dict | None = None, seed: int = 0) -> Path:
    from rehabgen.data.kimore import GROUPS, write_clinical_assessment

    cohort, _ = GROUPS[group]
    sdir = root / cohort / group / subject
    for k, ex in enumerate(exercises):
        write_positions_csv(sdir / ex / "Raw" / f"JointPosition_{subject}.csv", arm_raise(T, seed=seed + k))
    sc = scores or {int(ex[2:]): {"TS": 40.0, "PO": 12.0, "CF": 28.0} for ex in exercises}
    write_clinical_assessment(sdir, subject, sc, exercises=exercises)
    return sdir


@pytest.fixture
def kimore_tiny(tmp_path) -> Path:
    """Two clean subjects, two exercises each."""
    root = tmp_path / "kimore"
    write_subject(root, "Expert", "E_ID1", seed=1)
    write_subject(root, "Stroke", "S_ID1", seed=2, scores={1: {"TS": 20.0, "PO": 6.0, "CF": 14.0},
                                                          2: {"TS": 25.0, "PO": 8.0, "CF": 17.0}})
    return root


def side_raise(T: int = 60, amplitude: float = 1.0, seed: int = 0) -> np.ndarray:
    """(T, 25, 3): arms raised sideways (abduction in the frontal plane), rigidly."""
    base = standing_pose()
    out = np.repeat(base[None], T, axis=0)
    ang = amplitude * (np.pi / 2) * (1 - np.cos(np.linspace(0, 4 * np.pi, T))) / 2
    sk = KINECT_V2
    for side, sgn in (("Left", -1.0), ("Right", 1.0)):
        sh = sk.index(f"Shoulder{side}")
        arm = [sk.index(f"{n}{side}") for n in ("Elbow", "Wrist", "Hand", "HandTip", "Thumb")]
        for t in range(T):
            a = sgn * ang[t]
            c, s = np.cos(a), np.sin(a)
            R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])  # about z: x-y plane
            out[t, arm] = (base[arm] - base[sh]) @ R.T + base[sh]
    out += np.random.default_rng(seed).normal(0, 0.001, size=(1, 1, 3))
    return out


def toy_dataset(n: int = 48, T: int = 60, garbage_joint: int | None = None):
    """Two exercises (forward vs sideways arm raise); TS grows with the movement's amplitude."""
    from rehabgen.data import Dataset, Sequence

    rng = np.random.default_rng(0)
    seqs = []
    for i in range(n):
        amp = 0.3 + 0.7 * rng.random()
        ex = "Es1" if i % 2 == 0 else "Es2"
        p = (arm_raise if ex == "Es1" else side_raise)(T, amplitude=amp, seed=i)
        valid = np.ones(p.shape[:2], bool)
        if garbage_joint is not None:
            bad = rng.random(T) < 0.4
            p[bad, garbage_joint] = [5.0, 5.0, 5.0]  # far-away garbage, marked invalid
            valid[bad, garbage_joint] = False
        ts = round(10 + 40 * amp, 1)
        seqs.append(Sequence(f"S_ID{i % 12}", "Stroke", ex, p.astype(np.float32), valid,
                             {"TS": ts, "PO": round(ts * 0.3, 1), "CF": round(ts * 0.7, 1)}, source=f"mem{i}"))
    return Dataset(KINECT_V2, seqs, exercises=("Es1", "Es2"), fps=30.0)
