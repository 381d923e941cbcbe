"""In-memory dataset of skeleton sequences, independent of the format it was read from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rehabgen.skeleton import Skeleton

SCORE_NAMES = ("TS", "PO", "CF")
SCORE_RANGES = {"TS": (0.0, 50.0), "PO": (0.0, 15.0), "CF": (0.0, 35.0)}


class DataError(ValueError):
    """Input data can't be used; the message names the file and the problem."""


def score_range(score_name: str, scores=()) -> tuple[float, float]:
    """The scale of a score: the clinical range for KIMORE's scores, else the observed range
    (one unit wide where all scores are equal). Normalisation, evaluators and the downstream study all use it."""
    if score_name in SCORE_RANGES:
        return SCORE_RANGES[score_name]
    ok = np.asarray(scores, np.float64)
    ok = ok[np.isfinite(ok)]
    if not ok.size:
        return 0.0, 1.0
    lo, hi = float(ok.min()), float(ok.max())
    return lo, hi if hi > lo else lo + 1.0


@dataclass
class Sequence:
    """One recording: a subject performing one exercise.

    positions may hold NaN (or any value) where `valid` is False: the mask, not the value, says
    what was observed, so that preprocessing can fill gaps without pretending they were seen.
    """

    subject: str
    group: str
    exercise: str
    positions: np.ndarray  # (T, J, 3) float32, metres
    valid: np.ndarray  # (T, J) bool, True where the joint was really observed
    scores: dict[str, float] = field(default_factory=dict)  # NaN where absent
    timestamps: np.ndarray | None = None  # (T,) seconds from start, if known
    source: str = ""
    filled: np.ndarray | None = None  # (T, J) bool, True where preprocessing filled a gap
    state: np.ndarray | None = None  # (T, J) int8 Kinect tracking state (0 not tracked, 1 inferred, 2 tracked)

    def __post_init__(self) -> None:
        if self.positions.ndim != 3 or self.positions.shape[2] != 3:
            raise DataError(f"{self.source}: positions must be (T, J, 3), got {self.positions.shape}")
        if self.valid.shape != self.positions.shape[:2]:
            raise DataError(f"{self.source}: validity mask {self.valid.shape} does not match positions {self.positions.shape}")

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    def score(self, name: str = "TS") -> float:
        return float(self.scores.get(name, math.nan))


@dataclass
class Quarantined:
    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass
class Dataset:
    skeleton: Skeleton
    sequences: list[Sequence]
    quarantined: list[Quarantined] = field(default_factory=list)
    exercises: tuple[str, ...] = ()  # label vocabulary, fixed order
    fps: float = 30.0
    metadata: dict = field(default_factory=dict)  # source, preprocessing steps applied, ...

    def __post_init__(self) -> None:
        if not self.exercises:
            self.exercises = tuple(sorted({s.exercise for s in self.sequences}))

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> Sequence:
        return self.sequences[i]

    @property
    def subjects(self) -> list[str]:
        return sorted({s.subject for s in self.sequences})

    def exercise_index(self, name: str) -> int:
        try:
            return self.exercises.index(name)
        except ValueError:
            raise DataError(f"unknown exercise {name!r}; this dataset has {list(self.exercises)}") from None

    def subset(self, indices) -> "Dataset":
        return Dataset(
            self.skeleton,
            [self.sequences[i] for i in indices],
            list(self.quarantined),
            self.exercises,
            self.fps,
            dict(self.metadata),
        )

    def by_subjects(self, subjects) -> "Dataset":
        keep = set(subjects)
        return self.subset([i for i, s in enumerate(self.sequences) if s.subject in keep])

    def warnings(self) -> list[str]:
        """What a user must hear before using this data: an unfinished folder, files left out."""
        src = self.metadata.get("source", "the data folder")
        out = [f"{src}: {self.metadata['incomplete']}"] if self.metadata.get("incomplete") else []
        if self.quarantined:
            out.append(f"{src}: {len(self.quarantined)} file(s) quarantined and not used; "
                       f"`rehabgen data inspect {src}` lists them with the reasons")
        return out

    def summary(self) -> dict:
        """What `rehabgen data inspect` prints: counts, frames, score ranges, invalid share."""
        per_ex: dict[str, dict] = {}
        per_group: dict[str, int] = {}
        frames = [s.n_frames for s in self.sequences]
        for s in self.sequences:
            e = per_ex.setdefault(s.exercise, {"n_sequences": 0, "n_frames": 0, "_inv": 0, "_tot": 0, "subjects": set()})
            e["n_sequences"] += 1
            e["n_frames"] += s.n_frames
            e["_inv"] += int((~s.valid).sum())
            e["_tot"] += int(s.valid.size)
            e["subjects"].add(s.subject)
            per_group[s.group] = per_group.get(s.group, 0) + 1
        for e in per_ex.values():
            e["pct_invalid_joints"] = round(100.0 * e.pop("_inv") / max(e.pop("_tot"), 1), 3)
            e["n_subjects"] = len(e.pop("subjects"))
        scores = {}
        for name in SCORE_NAMES:
            vals = np.array([s.score(name) for s in self.sequences], dtype=float)
            ok = vals[~np.isnan(vals)]
            scores[name] = {
                "min": float(ok.min()) if ok.size else None,
                "max": float(ok.max()) if ok.size else None,
                "mean": round(float(ok.mean()), 3) if ok.size else None,
                "n_missing": int(np.isnan(vals).sum()),
            }
        n_inv = sum(int((~s.valid).sum()) for s in self.sequences)
        n_tot = sum(int(s.valid.size) for s in self.sequences)
        return {
            "skeleton": self.skeleton.name,
            "n_joints": self.skeleton.n_joints,
            "n_subjects": len(self.subjects),
            "n_sequences": len(self.sequences),
            "per_exercise": dict(sorted(per_ex.items())),
            "per_group": dict(sorted(per_group.items())),
            "frames": {
                "min": int(min(frames)) if frames else 0,
                "max": int(max(frames)) if frames else 0,
                "mean": round(float(np.mean(frames)), 1) if frames else 0.0,
                "total": int(sum(frames)),
            },
            "scores": scores,
            "pct_invalid_joints": round(100.0 * n_inv / max(n_tot, 1), 3),
            "quarantined": [q.to_dict() for q in self.quarantined],
            "metadata": self.metadata,
        }
