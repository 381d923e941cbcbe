"""Skeletons as data.

A skeleton is a list of joint names, the parent of each joint (-1 for the root), and left/right
mirror pairs. Everything downstream reads joint counts, bones and mirror pairs from a `Skeleton`
so that a dataset with another joint set (a JSON file) works without code changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class SkeletonError(ValueError):
    """A skeleton description is inconsistent (bad parent index, unknown mirror joint...)."""


@dataclass(frozen=True)
class Skeleton:
    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]  # parents[j] = index of j's parent, -1 for the root
    mirror: tuple[tuple[int, int], ...] = field(default=())  # (left, right) index pairs
    # joints that span the body's facing direction, used by facing normalisation:
    # (left_hip, right_hip, left_shoulder, right_shoulder); None when unknown
    facing: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        n = len(self.joints)
        if n == 0:
            raise SkeletonError(f"skeleton {self.name!r} has no joints")
        if len(set(self.joints)) != n:
            raise SkeletonError(f"skeleton {self.name!r} has duplicate joint names")
        if len(self.parents) != n:
            raise SkeletonError(
                f"skeleton {self.name!r}: {n} joints but {len(self.parents)} parents"
            )
        roots = [j for j, p in enumerate(self.parents) if p == -1]
        if len(roots) != 1:
            raise SkeletonError(f"skeleton {self.name!r} needs exactly one root (parent -1), got {len(roots)}")
        for j, p in enumerate(self.parents):
            if p != -1 and not 0 <= p < n:
                raise SkeletonError(f"skeleton {self.name!r}: joint {self.joints[j]!r} has parent {p} out of range")
        # every joint must reach the root (no cycles)
        for j in range(n):
            seen, k = set(), j
            while k != -1:
                if k in seen:
                    raise SkeletonError(f"skeleton {self.name!r}: cycle through joint {self.joints[j]!r}")
                seen.add(k)
                k = self.parents[k]
        for a, b in self.mirror:
            if not (0 <= a < n and 0 <= b < n):
                raise SkeletonError(f"skeleton {self.name!r}: mirror pair ({a}, {b}) out of range")
        if self.facing is not None and not all(0 <= j < n for j in self.facing):
            raise SkeletonError(f"skeleton {self.name!r}: facing joints {self.facing} out of range")

    # ---- derived views -------------------------------------------------------------------
    @property
    def n_joints(self) -> int:
        return len(self.joints)

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(parent, child) pairs, one per non-root joint."""
        return [(p, j) for j, p in enumerate(self.parents) if p != -1]

    def index(self, name: str) -> int:
        try:
            return self.joints.index(name)
        except ValueError:
            raise KeyError(f"joint {name!r} not in skeleton {self.name!r}") from None

    def mirror_permutation(self) -> np.ndarray:
        """Joint permutation that swaps left and right (identity for centre joints)."""
        perm = np.arange(self.n_joints)
        for a, b in self.mirror:
            perm[a], perm[b] = b, a
        return perm

    def bone_lengths(self, positions: np.ndarray) -> np.ndarray:
        """Bone lengths of positions (..., J, 3) -> (..., n_bones)."""
        p = np.asarray(positions)
        par = np.array([b[0] for b in self.bones])
        chi = np.array([b[1] for b in self.bones])
        return np.linalg.norm(p[..., chi, :] - p[..., par, :], axis=-1)

    # ---- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "joints": list(self.joints),
            "parents": list(self.parents),
            "mirror": [list(m) for m in self.mirror],
            "facing": list(self.facing) if self.facing is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> "Skeleton":
        """Accepts parents as indices or joint names, mirror pairs as indices or names."""
        try:
            joints = tuple(str(j) for j in d["joints"])
            raw_parents = d.get("parents")
            if raw_parents is None:
                raise KeyError("parents")
            name_to_idx = {j: i for i, j in enumerate(joints)}

            def idx(v):
                if v is None or v == -1:
                    return -1
                if isinstance(v, str):
                    if v not in name_to_idx:
                        raise SkeletonError(f"{source}: unknown joint name {v!r}")
                    return name_to_idx[v]
                return int(v)

            parents = tuple(idx(p) for p in raw_parents)
            mirror = tuple((idx(a), idx(b)) for a, b in d.get("mirror", []) or [])
            facing = d.get("facing")
            facing = tuple(idx(v) for v in facing) if facing else None
            return cls(str(d.get("name", "custom")), joints, parents, mirror, facing)
        except KeyError as e:
            raise SkeletonError(f"{source}: skeleton description lacks the key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, SkeletonError):
                raise
            raise SkeletonError(f"{source}: malformed skeleton description ({e})") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "Skeleton":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise SkeletonError(f"{path}: skeleton file not found") from None
        except json.JSONDecodeError as e:
            raise SkeletonError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(d, dict):
            raise SkeletonError(f"{path}: expected a JSON object with 'joints' and 'parents'")
        return cls.from_dict(d, source=str(path))


_KINECT_JOINTS = (
    "SpineBase", "SpineMid", "Neck", "Head",
    "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
    "ShoulderRight", "ElbowRight", "WristRight", "HandRight",
    "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft",
    "HipRight", "KneeRight", "AnkleRight", "FootRight",
    "SpineShoulder", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight",
)
_KINECT_PARENTS = {
    "SpineBase": None, "SpineMid": "SpineBase", "SpineShoulder": "SpineMid",
    "Neck": "SpineShoulder", "Head": "Neck",
    "ShoulderLeft": "SpineShoulder", "ElbowLeft": "ShoulderLeft", "WristLeft": "ElbowLeft",
    "HandLeft": "WristLeft", "HandTipLeft": "HandLeft", "ThumbLeft": "HandLeft",
    "ShoulderRight": "SpineShoulder", "ElbowRight": "ShoulderRight", "WristRight": "ElbowRight",
    "HandRight": "WristRight", "HandTipRight": "HandRight", "ThumbRight": "HandRight",
    "HipLeft": "SpineBase", "KneeLeft": "HipLeft", "AnkleLeft": "KneeLeft", "FootLeft": "AnkleLeft",
    "HipRight": "SpineBase", "KneeRight": "HipRight", "AnkleRight": "KneeRight", "FootRight": "AnkleRight",
}


def _kinect_v2() -> Skeleton:
    j = _KINECT_JOINTS
    parents = tuple(-1 if _KINECT_PARENTS[n] is None else j.index(_KINECT_PARENTS[n]) for n in j)
    pairs = []
    for n in j:
        if "Left" in n:
            pairs.append((j.index(n), j.index(n.replace("Left", "Right"))))
    facing = (j.index("HipLeft"), j.index("HipRight"), j.index("ShoulderLeft"), j.index("ShoulderRight"))
    return Skeleton("kinect_v2", j, parents, tuple(pairs), facing)


KINECT_V2 = _kinect_v2()

SKELETONS = {"kinect_v2": KINECT_V2}
