"""Evaluation metrics: fidelity, diversity, plausibility (functions), evaluator networks and the
downstream-utility study (`rehabgen.metrics.evaluator`, `rehabgen.metrics.downstream`)."""

from rehabgen.metrics.distribution import (
    accuracy, average_pair_distance, average_per_class_pair_distance, fid, mean_max_similarity,
    mean_max_similarity_real, precision_recall_density_coverage, score_mae,
)
from rehabgen.metrics.plausibility import (
    bone_length_deviation, bone_length_error, kinematic_wasserstein, limb_constraint_violations, reference_bone_lengths,
)
from rehabgen.metrics.temporal import dtw_path, warping_path_diversity

__all__ = [
    "accuracy", "average_pair_distance", "average_per_class_pair_distance", "bone_length_deviation", "bone_length_error", "dtw_path",
    "fid", "kinematic_wasserstein", "limb_constraint_violations", "mean_max_similarity", "mean_max_similarity_real",
    "precision_recall_density_coverage", "reference_bone_lengths", "score_mae", "warping_path_diversity",
]
