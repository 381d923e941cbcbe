"""The metric registry: one entry per metric says how to compute it, which way is better, what it
is measured against and how to describe it. `rehabgen.evaluate` computes every entry of a group
on a context (what is computed once per sample set); `rehabgen.report` renders the entries'
directions and descriptions. A new metric is one `register(Metric(...))` call and its function.

Groups and their contexts:
  "sample_set"  `SampleSetContext`: one set of motions (generated, or the real reference set)
                against the real training set (`RealReference`).
  "text"        `TextContext`: one set of motions sampled from (or paired with) held-out prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import numpy as np

from rehabgen.metrics.distribution import (
    accuracy, average_pair_distance, average_per_class_pair_distance, fid, mean_max_similarity,
    precision_recall_density_coverage, score_mae,
)
from rehabgen.metrics.plausibility import (
    bone_length_deviation, bone_length_error, kinematic_wasserstein, limb_constraint_violations,
)
from rehabgen.metrics.temporal import warping_path_diversity
from rehabgen.skeleton import Skeleton

# direction -> the report's marker
DIRECTIONS = {"higher": "↑", "lower": "↓", "close": "≈ real"}
REFERENCE = "the real test sequences against the real training set"


@dataclass(frozen=True)
class Metric:
    """name: key in metrics.json; fn(context) -> float; direction: "higher", "lower" or "close"
    (best when equal to the real reference: diversity-type metrics); reference: what the real
    reference value is; group: which context `fn` receives."""

    name: str
    fn: Callable[[Any], float]
    direction: str
    description: str
    unit: str = ""
    reference: str = REFERENCE
    group: str = "sample_set"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction must be one of {sorted(DIRECTIONS)}, got {self.direction!r}")

    @property
    def arrow(self) -> str:
        return DIRECTIONS[self.direction]

    def label(self) -> str:
        """Description with its unit, for tables."""
        return f"{self.description} ({self.unit})" if self.unit else self.description


REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.name in REGISTRY:
        raise ValueError(f"metric {metric.name!r} is already registered")
    REGISTRY[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def metrics_of(group: str) -> list[Metric]:
    return [m for m in REGISTRY.values() if m.group == group]


def compute(group: str, ctx) -> dict[str, float]:
    """Every registered metric of `group` on one context, in registration order (metrics that
    draw from `ctx.rng` do so in this order, so a seed gives the same numbers)."""
    return {m.name: float(m.fn(ctx)) for m in metrics_of(group)}


def arrow(name: str) -> str:
    """The direction marker of a metric ("" for one the registry doesn't know, e.g. an old file)."""
    m = REGISTRY.get(name)
    return m.arrow if m else ""


def label(name: str) -> str:
    m = REGISTRY.get(name)
    return m.label() if m else name


# ---- contexts --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RealReference:
    """The real training set, computed once per evaluation."""

    features: dict[str, np.ndarray]  # "classifier" / "regressor" -> (N, d) evaluator features
    exercise: np.ndarray  # (N,) exercise index
    positions: np.ndarray  # (N, T, J, 3) metres in the model's space, padded by holding the last frame
    lengths: np.ndarray  # (N,) true lengths
    bone_lengths: np.ndarray  # (B,) per-bone median length
    skeleton: Skeleton
    fps: float  # frame rate of `positions` and of the sample sets (the model's)


@dataclass
class SampleSetContext:
    """One sample set, computed once and shared by every "sample_set" metric."""

    positions: np.ndarray  # (n, T, J, 3) metres, padded by holding the last frame
    lengths: np.ndarray  # (n,) true lengths: metrics leave padded frames out
    exercise: np.ndarray  # (n,) exercise index (requested for generated, true for real)
    score: np.ndarray  # (n,) requested / true score, NaN where unknown
    inputs: np.ndarray  # (n, 64, J*3) evaluator inputs
    features: dict[str, np.ndarray]  # "classifier" / "regressor" -> (n, d)
    pred_exercise: np.ndarray  # (n,) real-trained classifier
    pred_score: np.ndarray  # (n,) real-trained regressor, score units
    real: RealReference
    rng: np.random.Generator
    evaluator: Any = None  # the Evaluator, for metrics that need more than the above

    @cached_property
    def prdc(self) -> dict[str, float]:
        return precision_recall_density_coverage(self.real.features["classifier"], self.features["classifier"], k=5)

    @cached_property
    def kinematics(self) -> dict[str, float]:
        return kinematic_wasserstein(self.real.positions, self.positions, fps=self.real.fps,
                                     real_lengths=self.real.lengths, gen_lengths=self.lengths)


@dataclass
class TextContext:
    """Motions for held-out prompts (one per prompt), computed once per set."""

    retrieval: dict[str, float]  # `rehabgen.text.retrieval.r_precision` of (prompt, motion) pairs
    motion_emb: np.ndarray  # (n, d) retrieval-model motion embeddings
    train_motion_emb: np.ndarray  # (N, d) the same of the real training set
    exercise: np.ndarray  # (n,) the prompts' exercises
    pred_exercise: np.ndarray  # (n,) real-trained classifier


def _acpd(c: SampleSetContext) -> float:
    """Undefined (NaN) when no exercise has two samples in the set."""
    try:
        return average_per_class_pair_distance(c.features["classifier"], c.exercise, rng=c.rng)
    except ValueError:
        return float("nan")


def _score_mae(c: SampleSetContext) -> float:
    known = np.isfinite(c.score)
    return score_mae(c.pred_score[known], c.score[known]) if known.any() else float("nan")


def _prdc(key: str) -> Callable[[SampleSetContext], float]:
    return lambda c: c.prdc[key]


def _kin(key: str) -> Callable[[SampleSetContext], float]:
    return lambda c: c.kinematics[key]


def _retrieval(key: str) -> Callable[[TextContext], float]:
    return lambda c: c.retrieval[key]


_KIN_NOTE = "distribution, Wasserstein-1 (every joint, true frames only)"
_TEXT_REF = "the real test sequences with the same prompts"

for _m in (
    Metric("fid", lambda c: fid(c.real.features["classifier"], c.features["classifier"]), "lower",
           "FID on classifier features"),
    Metric("fid_regressor", lambda c: fid(c.real.features["regressor"], c.features["regressor"]), "lower",
           "FID on score-regressor features"),
    Metric("accuracy", lambda c: accuracy(c.pred_exercise, c.exercise), "higher",
           "exercise accuracy (real-trained classifier)"),
    Metric("score_mae", _score_mae, "lower", "score fidelity: MAE requested vs predicted", "score points"),
    Metric("precision", _prdc("precision"), "higher", "precision (k-NN manifold)"),
    Metric("recall", _prdc("recall"), "higher", "recall (k-NN manifold)"),
    Metric("density", _prdc("density"), "higher", "density"),
    Metric("coverage", _prdc("coverage"), "higher", "coverage"),
    Metric("mms", lambda c: mean_max_similarity(c.real.features["classifier"], c.features["classifier"]), "close",
           "mean max similarity (dist. to nearest real)"),
    Metric("apd", lambda c: average_pair_distance(c.features["classifier"], rng=c.rng), "close",
           "average pair distance (diversity)"),
    Metric("acpd", _acpd, "close", "per-exercise pair distance (multimodality)"),
    Metric("wpd", lambda c: warping_path_diversity(c.inputs, n_pairs=min(100, len(c.inputs) * 2), n_runs=2, rng=c.rng),
           "close", "warping path diversity (DTW)"),
    Metric("bone_length_error", lambda c: bone_length_error(c.positions, c.real.skeleton.bones, c.real.bone_lengths,
                                                            lengths=c.lengths), "lower",
           "bone-length error of medians (relative)"),
    Metric("bone_length_deviation", lambda c: bone_length_deviation(c.positions, c.real.skeleton.bones,
                                                                    c.real.bone_lengths, lengths=c.lengths),
           "lower", "bone-length wobble per frame (relative)"),
    Metric("limb_violations", lambda c: limb_constraint_violations(c.positions, c.real.skeleton.bones,
                                                                   c.real.bone_lengths, tol=0.1, lengths=c.lengths),
           "lower", "bones off by >10%"),
    Metric("velocity_w", _kin("velocity"), "lower", f"speed {_KIN_NOTE}", "m/s"),
    Metric("acceleration_w", _kin("acceleration"), "lower", f"acceleration {_KIN_NOTE}", "m/s²"),
    Metric("jerk_w", _kin("jerk"), "lower", f"jerk {_KIN_NOTE}", "m/s³"),
    Metric("r_precision_top1", _retrieval("r_precision_top1"), "higher",
           "text→motion R-precision top-1 (groups of 32)", reference=_TEXT_REF, group="text"),
    Metric("r_precision_top2", _retrieval("r_precision_top2"), "higher", "R-precision top-2",
           reference=_TEXT_REF, group="text"),
    Metric("r_precision_top3", _retrieval("r_precision_top3"), "higher", "R-precision top-3",
           reference=_TEXT_REF, group="text"),
    Metric("mm_distance", _retrieval("mm_distance"), "lower", "multimodal distance text↔motion",
           reference=_TEXT_REF, group="text"),
    Metric("text_fid", lambda c: fid(c.train_motion_emb, c.motion_emb), "lower",
           "FID on retrieval-model motion features", reference=_TEXT_REF, group="text"),
    Metric("text_accuracy", lambda c: accuracy(c.pred_exercise, c.exercise), "higher",
           "exercise accuracy of samples from held-out prompts", reference=_TEXT_REF, group="text"),
):
    register(_m)
