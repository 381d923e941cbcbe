"""BVH export: joint positions -> a skeleton hierarchy with per-frame joint rotations.

Animation tools (Blender, MotionBuilder, game engines) read motion as rotations on a fixed
skeleton, not as joint positions. This module solves those rotations from positions and writes
Biovision BVH text with numpy alone (no BVH library is needed to write; tests read the files
back with bvhio).

The rules, in one place (the README states them too):

- Space: BVH files are Y-up, right-handed, in **centimetres**. The data's Kinect camera frame
  (y up, the subject facing the sensor along -z) is turned 180 degrees about the vertical,
  (x, y, z) -> (-x, y, -z), so the subject faces +Z, the usual BVH forward (Blender's importer
  then shows them facing its front view).
- Skeleton: one BVH joint per skeleton joint, root = the skeleton's root; OFFSETs are each bone's
  median length in the sequence along its mean direction (the rest pose is the sequence's mean
  posture; a joint's several children keep their mean *shape*, see `_rest_shape`). Joints
  without children get an End Site half their bone's length further along it.
- Channels: the root Xposition Yposition Zposition Yrotation Xrotation Zrotation (heading,
  pitch, bank: no gimbal lock however far the body turns about the vertical); every other
  joint Zrotation Yrotation Xrotation (R = Rz Ry Rx: the middle axis, where an Euler order
  locks at 90 degrees, is the vertical, about which limbs and spine swinging from a vertical
  rest rarely turn, so arms raised forward or sideways stay clear of it). Angles in degrees,
  intrinsic in channel order, as BVH readers (bvhio, Blender) apply them; each channel is
  unwrapped in time (no 360-degree jumps between frames).
- Rotations: BVH rotates a joint's children, so each joint's rotation is solved from where its
  children are. Joints are solved root first, and each aims at the observed child positions
  *from where the BVH already places the joint* (so length differences do not add up along a
  chain). One child: the minimal rotation (swing) in the parent's frame taking the rest bone
  direction onto the direction to the child; the joint's twist is its parent's. Several
  children (the pelvis with spine and hips, the chest with neck and shoulders, a hand with tip
  and thumb): the rotation that puts all children nearest their observed positions (least
  squares, Kabsch/SVD), so twist is defined and every child is exact while they move as one
  rigid piece; when they move relative to each other (the trunk bending over the pelvis) one
  rotation can't place them all, and the error is shared. End joints keep their parent's
  rotation (local identity).

On data with rigid bones the round trip (forward kinematics of the written numbers) reproduces
the input up to that branching rule; on real Kinect data bone lengths change from frame to
frame, which one fixed skeleton can't follow: `round_trip_error` measures the result, and
`bone_length_change` measures that cause in the input.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rehabgen.skeleton import Skeleton

# Euler orders as written (scipy's upper case = intrinsic: "ZYX" is R = Rz @ Ry @ Rx). An order's
# middle angle is limited to +-90 degrees, where it locks; put there an axis the joint rarely turns
# 90 degrees about: the vertical for limbs and spine (they swing about horizontal axes), the
# sideways axis for the root (a body turns any amount about the vertical, seldom pitches 90).
JOINT_ORDER = "ZYX"
ROOT_ORDER = "YXZ"
POS_CHANNELS = ("Xposition", "Yposition", "Zposition")
UNIT_SCALE = 100.0  # metres -> centimetres
AXES = np.array([-1.0, 1.0, -1.0])  # camera frame -> BVH frame: 180 degrees about the vertical
END_SITE_FRACTION = 0.5
DECIMALS = 4  # written decimals: 1e-4 cm and 1e-4 degrees


class BvhError(ValueError):
    """Input that can't become a BVH file; the message names the file and the problem."""


def to_bvh_space(positions_m: np.ndarray) -> np.ndarray:
    """Positions in metres (camera frame) -> centimetres in the BVH frame (subject facing +Z)."""
    return np.asarray(positions_m, np.float64) * AXES * UNIT_SCALE


def bvh_names(joints) -> list[str]:
    """BVH-safe joint names: letters, digits and underscores, not starting with a digit, unique."""
    out: list[str] = []
    for j in joints:
        n = re.sub(r"[^A-Za-z0-9_]", "_", str(j)) or "joint"
        if n[0].isdigit():
            n = "j_" + n
        base, k = n, 2
        while n in out:
            n, k = f"{base}_{k}", k + 1
        out.append(n)
    return out


@dataclass
class BvhMotion:
    """A skeleton hierarchy and its motion, in the BVH frame (cm, degrees)."""

    names: list[str]
    parents: tuple[int, ...]
    offsets: np.ndarray  # (J, 3) cm; the root's is zero (its position channels place it)
    end_sites: dict[int, np.ndarray]  # leaf joint -> End Site offset (3,) cm
    root_position: np.ndarray  # (T, 3) cm
    euler: np.ndarray  # (T, J, 3) degrees, local rotations, in `orders[j]`
    frame_time: float  # seconds

    @property
    def orders(self) -> list[str]:
        return [ROOT_ORDER if p == -1 else JOINT_ORDER for p in self.parents]

    @property
    def n_frames(self) -> int:
        return int(self.root_position.shape[0])

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    def children(self, j: int) -> list[int]:
        return [c for c, p in enumerate(self.parents) if p == j]

    def order(self) -> list[int]:
        """Joints in the file's order: depth first from the root, children by skeleton index."""
        out, stack = [], [self.root]
        while stack:
            j = stack.pop()
            out.append(j)
            stack.extend(reversed(self.children(j)))
        return out

    def rounded(self) -> "BvhMotion":
        """The motion exactly as the file holds it (numbers rounded to the written decimals)."""
        ends = {j: np.round(v, DECIMALS) for j, v in self.end_sites.items()}
        return BvhMotion(self.names, self.parents, np.round(self.offsets, DECIMALS), ends,
                         np.round(self.root_position, DECIMALS), np.round(self.euler, DECIMALS),
                         self.frame_time)


# --------------------------------------------------------------------------------------------
# rotations
# --------------------------------------------------------------------------------------------
def _unit(v: np.ndarray, eps: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, eps), n[..., 0] > eps


def swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minimal rotations (..., 3, 3) taking directions a onto b (any length; identity where b is ~0).

    Opposite directions turn 180 degrees about an axis perpendicular to a.
    """
    b = np.asarray(b, np.float64)
    a, _ = _unit(np.broadcast_to(np.asarray(a, np.float64), b.shape))
    b, ok = _unit(b)
    v = np.cross(a, b)
    c = np.sum(a * b, -1)
    K = np.zeros(b.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    eye = np.broadcast_to(np.eye(3), K.shape)
    anti = c < -1 + 1e-9
    R = eye + K + (K @ K) / np.maximum(1.0 + c, 1e-12)[..., None, None]
    if anti.any():  # 180 degrees about any axis perpendicular to a: R = 2 u u^T - I
        aa = a[anti]
        ref = np.where(np.abs(aa[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        u, _ = _unit(np.cross(aa, ref))
        R[anti] = 2.0 * u[:, :, None] * u[:, None, :] - np.eye(3)
    R[~ok] = np.eye(3)
    return R


def kabsch(rest: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) minimising sum_c |R rest_c - target_t,c|^2.  rest (k, 3); target (T, k, 3)."""
    H = np.einsum("kc,tkd->tcd", rest, target)  # sum_c rest_c target_c^T
    U, _, Vt = np.linalg.svd(H)
    V = np.swapaxes(Vt, -1, -2)
    d = np.sign(np.linalg.det(V @ np.swapaxes(U, -1, -2)))
    d[d == 0] = 1.0
    D = np.zeros_like(H)
    D[:, 0, 0] = D[:, 1, 1] = 1.0
    D[:, 2, 2] = d
    return V @ D @ np.swapaxes(U, -1, -2)


def _euler(R: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices (T, 3, 3) -> Euler degrees (T, 3) in `order`, unwrapped in time."""
    import warnings

    from scipy.spatial.transform import Rotation

    shape = R.shape[:-2]
    with warnings.catch_warnings():  # gimbal lock: the matrix is still reproduced exactly
        warnings.simplefilter("ignore", UserWarning)
        e = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_euler(order, degrees=True)
    e = e.reshape(shape + (3,))
    # adding 360 to one Euler angle gives the same rotation: remove frame-to-frame wraps so that
    # tools interpolating between keys do not spin a joint the long way round
    return np.unwrap(e, period=360.0, axis=0) if e.ndim >= 2 and e.shape[0] > 1 else e


def euler_to_matrix(euler_deg: np.ndarray, order: str) -> np.ndarray:
    """Euler degrees (..., 3) in `order` (intrinsic, first axis outermost) -> matrices (..., 3, 3)."""
    from scipy.spatial.transform import Rotation

    e = np.asarray(euler_deg, np.float64)
    return Rotation.from_euler(order, e.reshape(-1, 3), degrees=True).as_matrix().reshape(e.shape[:-1] + (3, 3))


# --------------------------------------------------------------------------------------------
# solve
# --------------------------------------------------------------------------------------------
def _topological(parents: tuple[int, ...]) -> list[int]:
    root = parents.index(-1)
    out, stack = [], [root]
    while stack:
        j = stack.pop()
        out.append(j)
        stack.extend(c for c, p in enumerate(parents) if p == j)
    return out


def _rest_shape(x: np.ndarray, j: int, kids: list[int], mean_offsets: np.ndarray, known: np.ndarray,
                iterations: int = 4) -> np.ndarray:
    """Rest offsets of a joint's several children that are a shape the body really takes.

    Mean directions alone are not: averaging bones that turn together narrows the angles between
    them, and no rotation would then place all children (a rigid hand's tip and thumb would be
    off by millimetres). So the children's configuration is averaged after aligning each frame's
    to the running mean (generalised Procrustes), then turned onto the mean directions; bone
    lengths stay the medians. On rigid bodies the result is congruent with every frame.
    """
    lengths = np.linalg.norm(mean_offsets, axis=-1)
    if np.linalg.svd(mean_offsets, compute_uv=False)[1] <= 1e-6 * max(lengths.max(), 1e-12):
        return mean_offsets  # children along one line: no shape to keep
    ok = known[:, kids].all(1) & known[:, j]
    ok = ok if ok.any() else np.ones(x.shape[0], bool)
    d, _ = _unit(x[ok][:, kids] - x[ok][:, j, None, :])
    frames = d * lengths[None, :, None]  # (n, k, 3) each frame's configuration at rest lengths
    shape = mean_offsets
    for _ in range(iterations):
        R = kabsch(shape, frames)  # R_t shape ~ frames_t
        shape = np.einsum("tji,tkj->tki", R, frames).mean(0)  # R_t^T frames_t, averaged
    shape = shape @ kabsch(shape, mean_offsets[None])[0].T  # orient it like the mean posture
    d, good = _unit(shape)
    return np.where(good[:, None], d * lengths[:, None], mean_offsets)


def solve(positions_m: np.ndarray, skeleton: Skeleton, fps: float, source: str = "<positions>",
          valid: np.ndarray | None = None, aim: str = "placed") -> BvhMotion:
    """Positions (T, J, 3) in metres (camera frame, all finite) -> a BvhMotion.

    `valid` (T, J), if given, says which joints were really observed: bone lengths and rest
    directions come from frames where both ends were (filled gaps would bias them).
    `aim`: "placed" (the default, see the module's rules) aims each joint at its children from
    where the BVH places it; "observed" aims along the observed bone directions (each bone's
    direction exact, but length differences then add up down a chain: on KIMORE patients the
    round trip is 2.3 cm instead of 1.8 cm on average).
    """
    p = np.asarray(positions_m, np.float64)
    J = skeleton.n_joints
    if p.ndim != 3 or p.shape[1:] != (J, 3):
        raise BvhError(f"{source}: positions must be (frames, {J}, 3) for skeleton {skeleton.name!r}, got {p.shape}")
    if p.shape[0] == 0:
        raise BvhError(f"{source}: no frames")
    if not np.isfinite(p).all():
        t, j = np.argwhere(~np.isfinite(p).all(-1))[0]
        raise BvhError(f"{source}: joint {skeleton.joints[j]!r} has no finite position at frame {t}")
    if not (np.isfinite(fps) and fps > 0):
        raise BvhError(f"{source}: frame rate must be a positive number, got {fps}")
    x = to_bvh_space(p)
    T = x.shape[0]
    parents = tuple(skeleton.parents)
    root = skeleton.root
    known = np.ones((T, J), bool) if valid is None else np.asarray(valid, bool)

    # rest pose: median length along the mean direction of each bone
    offsets = np.zeros((J, 3))
    for par, c in skeleton.bones:
        v = x[:, c] - x[:, par]
        n = np.linalg.norm(v, axis=-1)
        ok = known[:, c] & known[:, par]
        ok = ok if ok.any() else np.ones(T, bool)
        d, nz = _unit(v[ok])
        mean_dir, good = _unit(d[nz].mean(0)) if nz.any() else (np.zeros(3), False)
        if not good:  # a bone of no length, or pointing every way: any direction will do
            mean_dir = np.array([0.0, 1.0, 0.0])
        offsets[c] = mean_dir * float(np.median(n[ok]))

    children = {j: [c for c, q in enumerate(parents) if q == j] for j in range(J)}
    for j, kids in children.items():
        if len(kids) >= 2:
            offsets[kids] = _rest_shape(x, j, kids, offsets[kids], known)
    G = np.zeros((T, J, 3, 3))  # global rotations
    L = np.zeros((T, J, 3, 3))  # local rotations
    placed = np.zeros((T, J, 3))  # where the BVH puts each joint
    placed[:, root] = x[:, root]
    if aim not in ("placed", "observed"):
        raise BvhError(f"aim must be 'placed' or 'observed', got {aim!r}")
    for j in _topological(parents):
        Gp = G[:, parents[j]] if parents[j] != -1 else np.broadcast_to(np.eye(3), (T, 3, 3))
        kids = children[j]
        rest = offsets[kids] if kids else np.zeros((0, 3))
        sv = np.linalg.svd(rest, compute_uv=False) if len(kids) >= 2 else np.zeros(1)
        if not kids:
            Lj = np.broadcast_to(np.eye(3), (T, 3, 3))
            Gj = Gp
        elif len(kids) >= 2 and sv[1] > 1e-6 * max(sv[0], 1e-12):
            target = x[:, kids] - placed[:, j, None, :]
            Gj = kabsch(rest, target)
            Lj = np.swapaxes(Gp, -1, -2) @ Gj
        else:  # one child (or children all along one line): swing in the parent's frame
            target = (x[:, kids] - placed[:, j, None, :]).sum(1)
            Lj = swing(rest.sum(0), np.einsum("tji,tj->ti", Gp, target))  # Gp^T target
            Gj = Gp @ Lj
        G[:, j], L[:, j] = Gj, Lj
        for c in kids:
            placed[:, c] = placed[:, j] + Gj @ offsets[c] if aim == "placed" else x[:, c]

    ends = {}
    for j in range(J):
        if not children[j]:
            ends[j] = END_SITE_FRACTION * offsets[j] if j != root else np.array([0.0, 10.0, 0.0])
    return BvhMotion(bvh_names(skeleton.joints), parents, offsets, ends, x[:, root].copy(),
                     np.stack([_euler(L[:, j], ROOT_ORDER if j == root else JOINT_ORDER) for j in range(J)], 1),
                     1.0 / float(fps))


# --------------------------------------------------------------------------------------------
# forward kinematics and errors
# --------------------------------------------------------------------------------------------
def forward_kinematics(motion: BvhMotion, offsets: np.ndarray | None = None) -> np.ndarray:
    """World positions (T, J, 3) in cm, BVH frame. `offsets` (J, 3) or (T, J, 3) replaces the skeleton's."""
    off = motion.offsets if offsets is None else offsets
    off = np.broadcast_to(off, (motion.n_frames,) + motion.offsets.shape)
    Lr = np.stack([euler_to_matrix(motion.euler[:, j], o) for j, o in enumerate(motion.orders)], 1)
    T, J = motion.n_frames, len(motion.parents)
    G = np.zeros((T, J, 3, 3))
    P = np.zeros((T, J, 3))
    for j in _topological(motion.parents):
        par = motion.parents[j]
        if par == -1:
            G[:, j], P[:, j] = Lr[:, j], motion.root_position
        else:
            G[:, j] = G[:, par] @ Lr[:, j]
            P[:, j] = P[:, par] + np.einsum("tij,tj->ti", G[:, par], off[:, j])
    return P


def _stats(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.linalg.norm(a - b, axis=-1)
    return {"mean_cm": float(d.mean()), "max_cm": float(d.max())}


def round_trip_error(positions_m: np.ndarray, motion: BvhMotion) -> dict:
    """Distance (cm) between the input joints and forward kinematics of the numbers as written."""
    return _stats(forward_kinematics(motion.rounded()), to_bvh_space(positions_m))


# --------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    return " ".join(f"{float(a):.{DECIMALS}f}" for a in v)


def to_text(motion: BvhMotion) -> str:
    """BVH text: HIERARCHY (tabs), MOTION with one line per frame in the hierarchy's joint order."""
    lines = ["HIERARCHY"]
    root = motion.root

    def joint(j: int, depth: int) -> None:
        ind = "\t" * depth
        lines.append(f"{ind}{'ROOT' if j == root else 'JOINT'} {motion.names[j]}")
        lines.append(f"{ind}{{")
        lines.append(f"{ind}\tOFFSET {_fmt(motion.offsets[j])}")
        ch = (POS_CHANNELS if j == root else ()) + tuple(f"{a}rotation" for a in motion.orders[j])
        lines.append(f"{ind}\tCHANNELS {len(ch)} {' '.join(ch)}")
        kids = motion.children(j)
        for c in kids:
            joint(c, depth + 1)
        if not kids:
            lines.extend([f"{ind}\tEnd Site", f"{ind}\t{{", f"{ind}\t\tOFFSET {_fmt(motion.end_sites[j])}", f"{ind}\t}}"])
        lines.append(f"{ind}}}")

    joint(root, 0)
    lines += ["MOTION", f"Frames: {motion.n_frames}", f"Frame Time: {motion.frame_time:.10f}"]
    order = motion.order()
    cols = [motion.root_position] + [motion.euler[:, j] for j in order]
    table = np.round(np.concatenate(cols, axis=1), DECIMALS) + 0.0  # + 0.0: no "-0.0000"
    buf = io.StringIO()
    np.savetxt(buf, table, fmt=f"%.{DECIMALS}f", delimiter=" ")
    return "\n".join(lines) + "\n" + buf.getvalue()


def write_bvh(path, motion: BvhMotion) -> None:
    """Write one BVH file atomically (a temp file, then a rename)."""
    from rehabgen.io import atomic_write_bytes

    atomic_write_bytes(path, to_text(motion).encode("ascii"))


# --------------------------------------------------------------------------------------------
# sequences from the project's sources
# --------------------------------------------------------------------------------------------
def fill_lost(positions: np.ndarray, valid: np.ndarray | None, skeleton: Skeleton,
              source: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Lost joints (not finite, or marked not observed) filled by linear interpolation in time,
    held at the ends (the preprocessing's gap filling, with no length limit): a BVH needs a
    position for every joint in every frame. A joint never observed is an error.

    Returns (positions, observed mask, number of joint-frames filled).
    """
    from rehabgen.data.dataset import Sequence
    from rehabgen.preprocess import fill_gaps

    p = np.asarray(positions, np.float64)
    known = np.isfinite(p).all(-1)
    if valid is not None:
        known &= np.asarray(valid, bool)
    never = np.flatnonzero(~known.any(0))
    if never.size:
        names = ", ".join(repr(skeleton.joints[j]) for j in never[:3]) + (" ..." if never.size > 3 else "")
        raise BvhError(f"{source}: joint(s) {names} never observed in this recording; can't place them in a BVH")
    if known.all():
        return p, known, 0
    seq = fill_gaps(Sequence("", "", "", p.astype(np.float32), known, source=source), max_gap=p.shape[0])
    return seq.positions.astype(np.float64), known, int((~known).sum())


def safe_file_stem(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._")
    return s or "sequence"


def bone_length_change(positions_m: np.ndarray, skeleton: Skeleton) -> dict:
    """How far (cm) bone lengths stray from their medians in the input: what a BVH skeleton, whose
    bones are fixed, can't follow, and so the floor of its round-trip error."""
    bl = skeleton.bone_lengths(np.asarray(positions_m, np.float64)) * UNIT_SCALE
    if bl.size == 0:
        return {"mean_cm": 0.0, "max_cm": 0.0}
    d = np.abs(bl - np.median(bl, 0))
    return {"mean_cm": float(d.mean()), "max_cm": float(d.max())}


@dataclass
class ExportItem:
    """One sequence to write: `positions` (T, J, 3) metres, may hold NaN where joints were lost."""

    name: str  # file stem (made safe and unique on export)
    positions: np.ndarray
    valid: np.ndarray | None = None
    source: str = ""  # names the input in messages
    info: dict = field(default_factory=dict)  # subject, exercise, score...: recorded in export.json


def _unique_stems(names) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for n in names:
        base = safe_file_stem(n)
        stem, k = base, 2
        while stem.lower() in seen:
            stem, k = f"{base}_{k}", k + 1
        seen.add(stem.lower())
        out.append(stem)
    return out


def export_bvh(items: list[ExportItem], skeleton: Skeleton, fps: float, out_dir, source: str = "",
               progress: bool = True) -> dict:
    """One BVH per item into the folder `out_dir`, plus `export.json` (the rules, and per file its
    frames and round-trip error). Everything is written into a temp folder that replaces
    `out_dir` only once every file is written: bad input stops the export with nothing changed.
    (Whether `out_dir` may be replaced is the caller's decision.) Returns the export.json record.
    """
    import json
    import shutil
    import tempfile

    from rehabgen.io import atomic_write_bytes, replace_dir

    if not items:
        raise BvhError(f"{source}: no sequence to export")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    it = zip(_unique_stems(i.name for i in items), items)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(items), desc="export-bvh", unit="file", leave=False)
    files, sum_err, n_err, max_err, sum_bl, n_bl, max_bl, n_filled, n_jf = [], 0.0, 0, 0.0, 0.0, 0, 0.0, 0, 0
    try:
        for stem, item in it:
            p, known, filled = fill_lost(item.positions, item.valid, skeleton, item.source)
            motion = solve(p, skeleton, fps, item.source, valid=known)
            write_bvh(tmp / f"{stem}.bvh", motion)
            err = round_trip_error(p, motion)
            bl = bone_length_change(p, skeleton)
            n = p.shape[0] * p.shape[1]
            sum_err, n_err, max_err = sum_err + err["mean_cm"] * n, n_err + n, max(max_err, err["max_cm"])
            nb = p.shape[0] * len(skeleton.bones)
            sum_bl, n_bl, max_bl = sum_bl + bl["mean_cm"] * nb, n_bl + nb, max(max_bl, bl["max_cm"])
            n_filled, n_jf = n_filled + filled, n_jf + n
            files.append({"file": f"{stem}.bvh", "source": item.source, **item.info, "frames": int(p.shape[0]),
                          "filled_joint_frames": filled,
                          "round_trip_cm": {k[:-3]: round(v, 4) for k, v in err.items()},
                          "bone_length_change_cm": {k[:-3]: round(v, 4) for k, v in bl.items()}})
        record = {
            "command": "export-bvh",
            "source": source,
            "skeleton": skeleton.name,
            "joints": len(skeleton.joints),
            "joint_names": bvh_names(skeleton.joints),
            "fps": float(fps),
            "frame_time_s": 1.0 / float(fps),
            "units": "centimetres",
            "axes": "Y up, right-handed; the data's camera frame turned 180 degrees about Y, "
                    "(x, y, z) -> (-x, y, -z), so the subject faces +Z",
            "channels": {"root": [*POS_CHANNELS, *(f"{a}rotation" for a in ROOT_ORDER)],
                         "other": [f"{a}rotation" for a in JOINT_ORDER]},
            "euler": "degrees, intrinsic in channel order (ZYX: R = Rz Ry Rx; the root's YXZ: R = Ry Rx Rz)",
            "rest_pose": "median bone lengths along the sequence's mean bone directions (several children: "
                         "their mean shape after alignment); End Sites at half the last bone's length",
            "rotations": "one child: minimal swing in the parent's frame; several children: least-squares "
                         "fit of all children (Kabsch); aimed from where the BVH places the joint; "
                         "end joints: identity",
            "lost_joints": "filled by linear interpolation in time, held at the ends",
            "filled_joint_frames": n_filled,
            "filled_fraction": n_filled / max(n_jf, 1),
            "round_trip_cm": {"mean": sum_err / max(n_err, 1), "max": max_err},
            "bone_length_change_cm": {"mean": sum_bl / max(n_bl, 1), "max": max_bl},
            "files": files,
        }
        atomic_write_bytes(tmp / "export.json", json.dumps(record, indent=1, default=str).encode())
        replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return record
