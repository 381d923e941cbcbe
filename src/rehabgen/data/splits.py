"""Subject-wise splits: a subject's sequences are never on both sides of a split."""

from __future__ import annotations

import numpy as np

from rehabgen.data.dataset import DataError, Dataset


def _subjects_by_group(ds: Dataset) -> dict[str, list[str]]:
    groups: dict[str, set[str]] = {}
    for s in ds.sequences:
        groups.setdefault(s.group, set()).add(s.subject)
    return {g: sorted(v) for g, v in sorted(groups.items())}


def subject_split(ds: Dataset, val: float = 0.15, test: float = 0.15, seed: int = 0) -> dict[str, list[int]]:
    """Sequence indices for train/val/test, stratified by group, split by subject."""
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise ValueError(f"val ({val}) and test ({test}) must be fractions that sum below 1")
    rng = np.random.default_rng(seed)
    side: dict[str, str] = {}
    for _, subs in _subjects_by_group(ds).items():
        subs = list(rng.permutation(subs))
        n = len(subs)
        n_test = int(round(test * n))
        n_val = int(round(val * n))
        if n >= 3:
            n_test = max(n_test, 1) if test > 0 else 0
            n_val = max(n_val, 1) if val > 0 else 0
        for k, s in enumerate(subs):
            side[s] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    out = {"train": [], "val": [], "test": []}
    for i, s in enumerate(ds.sequences):
        out[side[s.subject]].append(i)
    return out


def subject_kfold(ds: Dataset, k: int = 5, seed: int = 0,
                  always_train_groups: tuple[str, ...] = ()) -> list[tuple[list[int], list[int]]]:
    """k folds of (train indices, test indices); subjects of `always_train_groups` (e.g. the
    healthy controls in the KIMORE protocol) stay in training in every fold."""
    subs = sorted({s.subject for s in ds.sequences if s.group not in always_train_groups})
    if len(subs) < k:
        raise DataError(f"{k}-fold split needs at least {k} subjects outside {list(always_train_groups)}, got {len(subs)}")
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(subs))
    fold_of = {s: i % k for i, s in enumerate(order)}
    folds = []
    for f in range(k):
        test_idx = [i for i, s in enumerate(ds.sequences) if fold_of.get(s.subject) == f]
        train_idx = [i for i, s in enumerate(ds.sequences) if fold_of.get(s.subject) != f]
        folds.append((train_idx, test_idx))
    return folds
