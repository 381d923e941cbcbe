"""Built-in data: a procedural generator of KIMORE-like rehabilitation recordings.

Each subject has a body (segment lengths from height), a speed, a movement amplitude and a
quality factor q in [0, 1] (1 = healthy expert). Motion is built by forward kinematics of the
upper body from joint-angle time series and by two-bone inverse kinematics of the legs with
the feet planted, so bone lengths are exact before noise. Low quality degrades the movement
the way patients do: reduced range, trunk compensation, left/right asymmetry, slower and
hesitant repetitions, tremor. Scores (PO 0-15, CF 0-35, TS = PO + CF) are noisy monotone
functions of the degradations actually applied. Kinect-like noise (jitter, inferred or lost
joints, short whole-body losses, brief limb swaps, NaN rows) is the same process for every
exercise, so it can't give away the exercise.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rehabgen.data.kimore import (
    EXERCISES, GROUPS, INCOMPLETE_MARKER, STATE_INFERRED, STATE_NOT_TRACKED, STATE_TRACKED, atomic_write_bytes,
    subject_folder, write_clinical_assessment, write_kimore_sequence,
)
from rehabgen.skeleton import KINECT_V2

SK = KINECT_V2
joint = SK.index  # joint name -> index in the Kinect v2 skeleton
DEG = np.pi / 180.0

# group pattern: subject k gets GROUP_CYCLE[k % len]; roughly KIMORE's proportions
GROUP_CYCLE = ("NotExpert", "Expert", "Parkinson", "NotExpert", "BackPain", "Stroke", "NotExpert", "Parkinson",
               "Expert", "NotExpert", "BackPain", "Stroke", "NotExpert")
QUALITY = {  # (low, high) of the subject's quality factor
    "Expert": (0.85, 1.0), "NotExpert": (0.7, 0.95), "BackPain": (0.35, 0.85),
    "Parkinson": (0.2, 0.8), "Stroke": (0.2, 0.75),
}


@dataclass
class SynthConfig:
    n_subjects: int = 20
    seed: int = 0
    fps: float = 30.0
    noise: bool = True  # Kinect-like noise, dropouts and swaps
    p_missing_exercise: float = 0.02  # a subject occasionally lacks an exercise folder


@dataclass
class Body:
    height: float
    lengths: dict[str, float] = field(default_factory=dict)  # bone name -> metres


@dataclass
class Subject:
    id: str
    group: str
    quality: float
    body: Body
    speed: float  # repetition period multiplier (>1 slower)
    amplitude: float  # personal range multiplier
    asym_side: int  # +1 right side affected, -1 left
    position: tuple[float, float, float]  # SpineBase placement in camera coordinates
    yaw: float
    camera_height: float


# ---------------------------------------------------------------------------------------------
# small rotation helpers, vectorised over time: angle (T,) -> (T, 3, 3)
# ---------------------------------------------------------------------------------------------
def _rot(axis: int, a) -> np.ndarray:
    a = np.atleast_1d(np.asarray(a, np.float64))
    c, s = np.cos(a), np.sin(a)
    R = np.zeros((a.size, 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[:, axis, axis] = 1.0
    R[:, i, i], R[:, i, j], R[:, j, i], R[:, j, j] = c, -s, s, c
    return R


def rx(a):
    return _rot(0, a)


def ry(a):
    return _rot(1, a)


def rz(a):
    return _rot(2, a)


def _mm(*Rs):
    out = Rs[0]
    for R in Rs[1:]:
        out = np.einsum("tij,tjk->tik", out, R)
    return out


def _apply(R, v):  # (T,3,3) @ (3,) -> (T,3)
    return np.einsum("tij,j->ti", R, np.asarray(v, np.float64))


def trunk(flex=0.0, tilt_right=0.0, twist=0.0, T=1):
    """Trunk rotation: flex > 0 bends forward (towards the camera, -z), tilt_right > 0 leans to
    the subject's right (+x), twist > 0 turns the chest to the subject's left."""
    f = np.broadcast_to(flex, (T,))
    b = np.broadcast_to(tilt_right, (T,))
    w = np.broadcast_to(twist, (T,))
    return _mm(ry(w), rz(-b), rx(-f))


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------------------------
# subjects
# ---------------------------------------------------------------------------------------------
def sample_body(rng: np.random.Generator, height: float | None = None) -> Body:
    """Segment lengths as fractions of height (anthropometric tables), with individual variation."""
    h = float(height if height is not None else rng.uniform(1.50, 1.95))
    frac = {"lumbar": 0.150, "thoracic": 0.135, "neck": 0.045, "head": 0.075, "clavicle": 0.100,
            "upper_arm": 0.172, "forearm": 0.150, "hand": 0.040, "hand_tip": 0.050, "thumb": 0.030,
            "pelvis": 0.058, "thigh": 0.245, "shank": 0.240, "foot": 0.075}
    return Body(h, {k: h * v * float(1.0 + rng.normal(0, 0.03)) for k, v in frac.items()})


def sample_subject(k: int, rng: np.random.Generator) -> Subject:
    group = GROUP_CYCLE[k % len(GROUP_CYCLE)]
    n_before = sum(1 for i in range(k) if GROUP_CYCLE[i % len(GROUP_CYCLE)] == group)
    lo, hi = QUALITY[group]
    body = sample_body(rng)
    q = float(rng.uniform(lo, hi))
    return Subject(
        id=f"{GROUPS[group][1]}_ID{n_before + 1}", group=group, quality=q, body=body,
        speed=float(rng.uniform(0.85, 1.2) * (1.0 + 0.5 * (1.0 - q))),
        amplitude=float(rng.uniform(0.92, 1.05)), asym_side=int(rng.choice([-1, 1])),
        position=(float(rng.uniform(-0.15, 0.15)), 0.0, float(rng.uniform(2.0, 2.8))),
        yaw=float(rng.uniform(-8, 8) * DEG), camera_height=float(rng.uniform(0.75, 1.0)),
    )


# ---------------------------------------------------------------------------------------------
# timing: repetitions with smooth profiles, pauses and hesitations
# ---------------------------------------------------------------------------------------------
def _min_jerk(x):
    x = np.clip(x, 0.0, 1.0)
    return x ** 3 * (10 - 15 * x + 6 * x ** 2)


def timeline(fps: float, reps: int, period: float, q: float, rng: np.random.Generator,
             hold: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """level (T,) in [0, 1] (0 rest, 1 peak of the movement) and rep index (T,) (-1 at rest).

    Each repetition: rise, hold at the top, return. Low quality adds irregular durations,
    longer pauses and mid-movement hesitations (a plateau on the way up)."""
    lv, idx = [np.zeros(int(fps * rng.uniform(0.8, 1.5)))], [np.full(0, -1)]
    idx[0] = np.full(lv[0].size, -1)
    for r in range(reps):
        d = period * float(np.clip(1.0 + rng.normal(0, 0.05 + 0.15 * (1 - q)), 0.6, 1.6))
        n = max(int(d * fps), 8)
        u = np.linspace(0, 1, n)
        rise, top = (1 - hold) / 2, (1 + hold) / 2
        prof = np.where(u < rise, _min_jerk(u / rise), np.where(u < top, 1.0, _min_jerk((1 - u) / (1 - top))))
        if rng.random() < 0.6 * (1 - q):  # hesitation: stop for a moment on the way up
            k = int(n * rise * rng.uniform(0.3, 0.8))
            pause = np.full(int(fps * rng.uniform(0.3, 0.9) * (1 - q) + 2), prof[k])
            prof = np.concatenate([prof[:k], pause, prof[k:]])
        gap = np.zeros(int(fps * rng.uniform(0.1, 0.3 + 0.8 * (1 - q))))
        lv += [prof, gap]
        idx += [np.full(prof.size, r), np.full(gap.size, -1)]
    end = np.zeros(int(fps * rng.uniform(0.5, 1.0)))
    lv.append(end)
    idx.append(np.full(end.size, -1))
    return np.concatenate(lv), np.concatenate(idx)


def _smooth_noise(T: int, fps: float, scale: float, cutoff_hz: float, rng) -> np.ndarray:
    """Low-frequency noise (T,) of roughly `scale` standard deviation (sway, drift)."""
    from scipy.ndimage import gaussian_filter1d

    x = gaussian_filter1d(rng.normal(0, 1, T + 60), sigma=fps / (2 * np.pi * cutoff_hz))[30:30 + T]
    return scale * x / max(x.std(), 1e-9)


# ---------------------------------------------------------------------------------------------
# kinematics
# ---------------------------------------------------------------------------------------------
@dataclass
class Pose:
    """Angle time series (T,) that drive the skeleton; defaults = relaxed standing."""

    T: int
    root_offset: np.ndarray = None  # (T, 3) body-frame translation of SpineBase
    pelvis: np.ndarray = None  # (T, 3, 3)
    lumbar: np.ndarray = None
    thoracic: np.ndarray = None
    neck: np.ndarray = None
    shoulder: dict = None  # side -> (T, 3, 3) upper-arm rotation in the thorax frame
    elbow: dict = None  # side -> (T,) flexion
    wrist: dict = None  # side -> (T,) flexion

    def __post_init__(self):
        T = self.T
        eye = np.repeat(np.eye(3)[None], T, 0)
        self.root_offset = np.zeros((T, 3)) if self.root_offset is None else self.root_offset
        self.pelvis = eye.copy() if self.pelvis is None else self.pelvis
        self.lumbar = eye.copy() if self.lumbar is None else self.lumbar
        self.thoracic = eye.copy() if self.thoracic is None else self.thoracic
        self.neck = eye.copy() if self.neck is None else self.neck
        self.shoulder = self.shoulder or {s: arm(np.full(T, 6 * DEG), np.full(T, 8 * DEG), s) for s in ("L", "R")}
        self.elbow = self.elbow or {s: np.full(T, 10 * DEG) for s in ("L", "R")}
        self.wrist = self.wrist or {s: np.zeros(T) for s in ("L", "R")}


def arm(flexion, abduction, side: str, horizontal=None) -> np.ndarray:
    """Upper-arm rotation: flexion raises the arm forward (90 deg: pointing at the camera, 180:
    overhead), abduction raises it sideways, horizontal > 0 swings a forward arm inwards."""
    sgn = -1.0 if side == "L" else 1.0
    T = np.size(flexion)
    h = np.zeros(T) if horizontal is None else np.broadcast_to(horizontal, (T,))
    # rx(theta) turns the hanging arm (0,-1,0) forward to (0,0,-1) at 90 deg and up at 180
    return _mm(ry(-sgn * h), rz(sgn * np.asarray(abduction)), rx(np.asarray(flexion)))


def forward_kinematics(pose: Pose, subj: Subject, fps: float, rng) -> np.ndarray:
    """(T, 25, 3) camera-coordinate positions; legs by IK with the feet planted."""
    T, L = pose.T, subj.body.lengths
    P = np.zeros((T, SK.n_joints, 3))
    world = ry(np.full(T, subj.yaw))
    leg = L["thigh"] + L["shank"]
    floor_y = -subj.camera_height
    hip_drop = _unit([1.0, -0.35, 0.0])
    rest_root_y = floor_y + 0.08 + 0.985 * leg - hip_drop[1] * L["pelvis"]
    base = np.array([subj.position[0], rest_root_y, subj.position[2]])
    root = base + _apply(world, [0, 0, 0]) + np.einsum("tij,tj->ti", world, pose.root_offset)
    P[:, joint("SpineBase")] = root
    G_root = _mm(world, pose.pelvis)
    G_lum = _mm(G_root, pose.lumbar)
    P[:, joint("SpineMid")] = root + _apply(G_lum, [0, L["lumbar"], 0])
    G_tho = _mm(G_lum, pose.thoracic)
    P[:, joint("SpineShoulder")] = P[:, joint("SpineMid")] + _apply(G_tho, [0, L["thoracic"], 0])
    G_neck = _mm(G_tho, pose.neck)
    P[:, joint("Neck")] = P[:, joint("SpineShoulder")] + _apply(G_neck, [0, L["neck"], 0])
    P[:, joint("Head")] = P[:, joint("Neck")] + _apply(G_neck, [0, L["head"], 0])
    for side, name, sgn in (("L", "Left", -1.0), ("R", "Right", 1.0)):
        sh = P[:, joint("SpineShoulder")] + _apply(G_tho, L["clavicle"] * _unit([sgn, -0.18, 0.02]))
        P[:, joint(f"Shoulder{name}")] = sh
        G_ua = _mm(G_tho, pose.shoulder[side])
        P[:, joint(f"Elbow{name}")] = sh + _apply(G_ua, [0, -L["upper_arm"], 0])
        G_fa = _mm(G_ua, rx(pose.elbow[side]))
        P[:, joint(f"Wrist{name}")] = P[:, joint(f"Elbow{name}")] + _apply(G_fa, [0, -L["forearm"], 0])
        G_h = _mm(G_fa, rx(pose.wrist[side]))
        P[:, joint(f"Hand{name}")] = P[:, joint(f"Wrist{name}")] + _apply(G_h, [0, -L["hand"], 0])
        P[:, joint(f"HandTip{name}")] = P[:, joint(f"Hand{name}")] + _apply(G_h, [0, -L["hand_tip"], 0])
        P[:, joint(f"Thumb{name}")] = P[:, joint(f"Hand{name}")] + _apply(G_h, L["thumb"] * _unit([-0.35 * sgn, -0.5, -0.8]))
        # legs: hip from the pelvis, ankle planted where it stood at rest, knee by two-bone IK
        hip = root + _apply(G_root, L["pelvis"] * hip_drop * np.array([sgn, 1, 1]))
        P[:, joint(f"Hip{name}")] = hip
        hip0 = base + _apply(world[:1], L["pelvis"] * hip_drop * np.array([sgn, 1, 1]))[0]
        ankle = hip0 + np.array([0.02 * sgn, -0.985 * leg, 0.0])
        fwd = _apply(world, [0, 0, -1])
        knee, ankle_t = _two_bone_ik(hip, np.broadcast_to(ankle, (T, 3)), L["thigh"], L["shank"], fwd)
        P[:, joint(f"Knee{name}")] = knee
        P[:, joint(f"Ankle{name}")] = ankle_t
        P[:, joint(f"Foot{name}")] = ankle_t + _apply(world, L["foot"] * _unit([0.1 * sgn, -0.45, -1.0]))
    return P


def _two_bone_ik(hip, ankle, l1, l2, fwd):
    """Knee (T,3) and reached ankle (T,3) for a target ankle, bending towards `fwd`."""
    v = ankle - hip
    d = np.linalg.norm(v, axis=-1, keepdims=True)
    u = v / d
    d = np.clip(d, abs(l1 - l2) + 1e-3, l1 + l2 - 1e-4)
    a = (l1 ** 2 - l2 ** 2 + d ** 2) / (2 * d)
    h = np.sqrt(np.maximum(l1 ** 2 - a ** 2, 0.0))
    bend = fwd - (fwd * u).sum(-1, keepdims=True) * u
    bend /= np.linalg.norm(bend, axis=-1, keepdims=True)
    knee = hip + a * u + h * bend
    return knee, hip + d * u


# ---------------------------------------------------------------------------------------------
# the five exercises
# ---------------------------------------------------------------------------------------------
@dataclass
class Degradation:
    """How the movement was degraded; drives the clinical scores."""

    range: float  # achieved fraction of the full movement
    compensation: float  # 0..1
    asymmetry: float  # 0..1
    hesitation: float  # 0..1
    tremor: float  # 0..1


def _degradation(subj: Subject, q: float, rng) -> Degradation:
    g = subj.group
    comp = (1 - q) * rng.uniform(0.6, 1.0) * (1.4 if g == "BackPain" else 1.0)
    asym = (1 - q) * rng.uniform(0.2, 0.5) * (2.2 if g == "Stroke" else 1.0)
    hes = (1 - q) * rng.uniform(0.4, 1.0) * (1.5 if g == "Parkinson" else 1.0)
    trem = (1 - q) * (rng.uniform(0.6, 1.0) if g == "Parkinson" else rng.uniform(0.0, 0.2))
    achieved_range = float(np.clip(subj.amplitude * (0.5 + 0.5 * q) + rng.normal(0, 0.03), 0.3, 1.05))
    return Degradation(achieved_range, float(min(comp, 1)), float(min(asym, 1)), float(min(hes, 1)), float(min(trem, 1)))


def exercise_motion(exercise: str, subj: Subject, q: float, rng: np.random.Generator, fps: float = 30.0):
    """Clean motion (T, 25, 3) of one exercise and the degradation applied."""
    if exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; built-in exercises are {list(EXERCISES)}")
    dg = _degradation(subj, q, rng)
    reps = int(rng.integers(3, 5))
    period = {"Es1": 3.2, "Es2": 3.6, "Es3": 3.4, "Es4": 3.0, "Es5": 3.4}[exercise] * subj.speed
    level, rep = timeline(fps, reps, period, 1 - dg.hesitation, rng)
    T = level.size
    t = np.arange(T) / fps
    side = "R" if subj.asym_side > 0 else "L"  # affected side
    other = "L" if side == "R" else "R"
    lag = int(fps * 0.25 * dg.asymmetry)
    lv = {other: level, side: np.concatenate([np.zeros(lag), level[: T - lag]]) * (1 - 0.35 * dg.asymmetry)}
    direction = np.where(rep >= 0, np.where(rep % 2 == 0, 1.0, -1.0), 0.0)  # alternating sides
    a = dg.range
    comp = dg.compensation
    breath = 0.8 * DEG * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6.3))
    sway = np.stack([_smooth_noise(T, fps, 0.006, 0.3, rng), np.zeros(T), _smooth_noise(T, fps, 0.006, 0.3, rng)], -1)
    pose = Pose(T, root_offset=sway)
    tremor = dg.tremor * 4 * DEG * np.sin(2 * np.pi * rng.uniform(4.0, 6.0) * t)
    if exercise == "Es1":  # lifting of the arms (forward, up overhead, down)
        flex = {s: (8 + 160 * a * lv[s]) * DEG for s in "LR"}
        pose.shoulder = {s: arm(flex[s], np.full(T, 6 * DEG), s) for s in "LR"}
        pose.elbow = {s: np.full(T, (8 + 20 * comp) * DEG) + tremor for s in "LR"}
        pose.lumbar = trunk(flex=-(14 * comp * level) * DEG + breath, tilt_right=subj.asym_side * 6 * comp * level * DEG, T=T)
    elif exercise == "Es2":  # lateral tilt of the trunk with the arms raised overhead
        up = np.clip(np.cumsum(np.ones(T)) / (fps * 1.0), 0, 1) * np.clip((T - np.arange(T)) / (fps * 1.0), 0, 1)
        up = _min_jerk(up)
        arms_flex = (8 + (150 - 30 * comp) * up) * DEG
        pose.shoulder = {s: arm(arms_flex, np.full(T, 8 * DEG), s) for s in "LR"}
        pose.elbow = {s: np.full(T, (6 + 15 * comp) * DEG) + tremor for s in "LR"}
        tilt = 28 * a * level * direction * np.where(direction == subj.asym_side, 1 - 0.4 * dg.asymmetry, 1.0)
        pose.lumbar = trunk(flex=(12 * comp * level) * DEG + breath, tilt_right=0.6 * tilt * DEG, T=T)
        pose.thoracic = trunk(tilt_right=0.4 * tilt * DEG, T=T)
        pose.root_offset = sway + np.stack([-0.03 * level * direction * (0.5 + comp), np.zeros(T), np.zeros(T)], -1)
    elif exercise == "Es3":  # trunk rotation with the arms held forward
        hold = _min_jerk(np.clip(np.arange(T) / fps, 0, 1)) * _min_jerk(np.clip((T - np.arange(T)) / fps, 0, 1))
        pose.shoulder = {s: arm((8 + 80 * hold) * DEG, np.full(T, 4 * DEG), s, horizontal=25 * DEG * hold) for s in "LR"}
        pose.elbow = {s: (10 + 25 * hold) * DEG + tremor for s in "LR"}
        twist = 40 * a * level * direction * DEG
        pose.pelvis = ry(0.15 * twist + 0.45 * comp * twist)
        pose.lumbar = trunk(flex=breath + 6 * comp * level * DEG, twist=0.45 * twist,
                            tilt_right=-8 * comp * level * direction * DEG, T=T)
        pose.thoracic = trunk(twist=0.4 * twist, T=T)
    elif exercise == "Es4":  # pelvis circles on the transverse plane, hands on the hips
        pose.shoulder = {s: arm(np.full(T, -15 * DEG), np.full(T, 28 * DEG), s) for s in "LR"}
        pose.elbow = {s: np.full(T, 95 * DEG) + tremor for s in "LR"}
        phase = np.zeros(T)
        for r in range(rep.max() + 1):
            sel = np.flatnonzero(rep == r)
            phase[sel] = np.linspace(0, 2 * np.pi, sel.size) * (1 if r % 2 == 0 else -1)
        radius = 0.065 * a * np.sqrt(np.clip(level * 3, 0, 1))
        x, z = radius * np.sin(phase), radius * (1 - np.cos(phase)) - radius * 0.5
        pose.root_offset = sway + np.stack([x, np.zeros(T), z], -1)
        pose.pelvis = trunk(flex=-z * 2.5, tilt_right=-x * 2.5, T=T)
        keep = 1.0 - 0.5 * comp  # healthy subjects keep the shoulders still
        pose.lumbar = trunk(flex=z * 2.5 * keep + breath, tilt_right=x * 2.5 * keep, T=T)
    elif exercise == "Es5":  # squatting
        leg = subj.body.lengths["thigh"] + subj.body.lengths["shank"]
        depth = 0.38 * leg * a * level
        pose.root_offset = sway + np.stack([0.05 * dg.asymmetry * level * subj.asym_side, -depth, 0.45 * depth], -1)
        pose.lumbar = trunk(flex=(32 * level * a * (1 + 0.6 * comp)) * DEG + breath, T=T)
        pose.neck = trunk(flex=-(15 * level * a) * DEG, T=T)
        pose.shoulder = {s: arm((8 + 75 * lv[s] * a) * DEG, np.full(T, 6 * DEG), s) for s in "LR"}
        pose.elbow = {s: np.full(T, 12 * DEG) + tremor for s in "LR"}
    if exercise in ("Es1", "Es2", "Es3"):
        pose.neck = _mm(pose.neck, trunk(flex=-0.4 * np.arcsin(np.clip(pose.lumbar[:, 2, 1], -1, 1)), T=T))
    pose.wrist = {s: tremor * 1.5 + 5 * DEG for s in "LR"}
    return forward_kinematics(pose, subj, fps, rng), dg


def scores_from(dg: Degradation, rng) -> dict[str, float]:
    """PO reflects how much of the movement was achieved; CF how well it was controlled."""
    po = 15 * np.clip((dg.range - 0.45) / 0.55 * (1 - 0.3 * dg.asymmetry) + rng.normal(0, 0.04), 0, 1)
    cf = 35 * np.clip(1 - 0.45 * dg.compensation - 0.35 * dg.asymmetry - 0.3 * dg.hesitation - 0.3 * dg.tremor
                      + rng.normal(0, 0.04), 0, 1)
    po, cf = round(float(po), 1), round(float(cf), 1)
    return {"TS": round(po + cf, 1), "PO": po, "CF": cf}


# ---------------------------------------------------------------------------------------------
# Kinect-like noise
# ---------------------------------------------------------------------------------------------
_DISTAL = [joint(n) for n in ("HandLeft", "HandRight", "HandTipLeft", "HandTipRight", "ThumbLeft", "ThumbRight",
                          "WristLeft", "WristRight", "FootLeft", "FootRight", "AnkleLeft", "AnkleRight")]


def kinect_noise(P: np.ndarray, rng: np.random.Generator, fps: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy positions and tracking states (T, J) from clean positions."""
    T, nj, _ = P.shape
    X = P.copy()
    state = np.full((T, nj), STATE_TRACKED, np.int8)
    sigma = np.full(nj, 0.003)
    sigma[_DISTAL] = 0.007
    X += rng.normal(0, 1, X.shape) * sigma[None, :, None]
    # inferred episodes on distal joints: Kinect guesses, off by a few centimetres
    for _ in range(rng.poisson(4.0 * T / (20 * fps))):
        j = int(rng.choice(_DISTAL))
        a = int(rng.integers(0, T))
        b = min(T, a + int(rng.integers(3, 25)))
        state[a:b, j] = STATE_INFERRED
        X[a:b, j] += rng.normal(0, 0.04, 3) + rng.normal(0, 0.01, (b - a, 3))
    # lost joints: not tracked, written as zeros
    for _ in range(rng.poisson(3.0 * T / (20 * fps))):
        j = int(rng.choice(_DISTAL))
        a = int(rng.integers(0, T))
        b = min(T, a + int(rng.integers(2, 15)))
        state[a:b, j] = STATE_NOT_TRACKED
        X[a:b, j] = 0.0
    # brief left/right arm swap (Kinect confuses the sides)
    if rng.random() < 0.12:
        a = int(rng.integers(0, max(1, T - 10)))
        b = min(T, a + int(rng.integers(3, 9)))
        arms_l = [joint(n + "Left") for n in ("Elbow", "Wrist", "Hand", "HandTip", "Thumb")]
        arms_r = [joint(n + "Right") for n in ("Elbow", "Wrist", "Hand", "HandTip", "Thumb")]
        X[a:b, arms_l + arms_r] = X[a:b, arms_r + arms_l]
        state[a:b, arms_l + arms_r] = STATE_INFERRED
    # whole body lost for a few frames
    if rng.random() < 0.15:
        a = int(rng.integers(0, T))
        b = min(T, a + int(rng.integers(2, 7)))
        X[a:b] = 0.0
        state[a:b] = STATE_NOT_TRACKED
    # rows of NaN
    if rng.random() < 0.05:
        a = int(rng.integers(1, T - 1))
        X[a:a + int(rng.integers(1, 3))] = np.nan
    return X, state


# ---------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------
def generate_subject(k: int, seed: int, fps: float = 30.0, noise: bool = True, p_missing: float = 0.02) -> dict:
    """Everything about subject k; independent of how many subjects are generated."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
    subj = sample_subject(k, rng)
    recs = {}
    for e in EXERCISES:
        r = np.random.default_rng(np.random.SeedSequence([seed, k, int(e[2:])]))
        if r.random() < p_missing and e != "Es1":
            continue
        q = float(np.clip(subj.quality + r.normal(0, 0.05), 0.0, 1.0))
        clean, dg = exercise_motion(e, subj, q, r, fps)
        noisy, state = kinect_noise(clean, r, fps) if noise else (clean, None)
        recs[e] = {"clean": clean, "positions": noisy, "state": state, "scores": scores_from(dg, r),
                   "degradation": asdict(dg), "quality": q}
    return {"subject": subj, "recordings": recs}


def write_synthetic_kimore(out_dir: str | Path, config: SynthConfig | None = None, progress: bool = False) -> dict:
    """Write a KIMORE-layout folder; the same config writes byte-identical files.

    INCOMPLETE_MARKER exists while it writes and SYNTH_INFO.json only once it is done, so a
    stopped run leaves a folder that every reader reports as unfinished."""
    cfg = config or SynthConfig()
    out = Path(out_dir)
    (out / "SYNTH_INFO.json").unlink(missing_ok=True)
    atomic_write_bytes(out / INCOMPLETE_MARKER, (json.dumps({"writer": "rehabgen data synth", "config": asdict(cfg)})
                                                  + "\n").encode())
    it = range(cfg.n_subjects)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="synthesising subjects", unit="subject")
    info, n_seq = [], 0
    for k in it:
        g = generate_subject(k, cfg.seed, cfg.fps, cfg.noise, cfg.p_missing_exercise)
        s, recs = g["subject"], g["recordings"]
        sdir = subject_folder(out, s.group, s.id)
        for e, rec in recs.items():
            write_kimore_sequence(sdir / e, rec["positions"], rec["state"], SK, cfg.fps, f"_{s.id}_{e}")
            n_seq += 1
        write_clinical_assessment(sdir, s.id, {int(e[2:]): r["scores"] for e, r in recs.items()},
                                  exercises=tuple(recs))
        info.append({"id": s.id, "group": s.group, "quality": round(s.quality, 4), "height": round(s.body.height, 4),
                     "speed": round(s.speed, 4), "exercises": {e: {"quality": round(r["quality"], 4), **r["scores"],
                                                                  "frames": int(r["positions"].shape[0])}
                                                              for e, r in recs.items()}})
    summary = {"n_subjects": cfg.n_subjects, "n_sequences": n_seq, "seed": cfg.seed, "config": asdict(cfg),
               "generator": "rehabgen.data.synth", "subjects": info}
    atomic_write_bytes(out / "SYNTH_INFO.json", (json.dumps(summary, indent=1) + "\n").encode())
    (out / INCOMPLETE_MARKER).unlink()
    return summary
