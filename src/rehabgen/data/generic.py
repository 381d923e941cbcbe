"""Generic import: any rehabilitation dataset as a folder of arrays plus a labels table.

    DIR/
      labels.csv      columns: sequence, subject, exercise, [group], score columns (TS, PO, CF,
                      or any other numeric column; a column named "score" is read as TS)
      skeleton.json   {"name", "joints": [...], "parents": [...], "mirror": [[l, r], ...],
                       "facing": [l_hip, r_hip, l_shoulder, r_shoulder], "fps": 30}
      <sequence>.npy  (T, J, 3) or (T, J*3) array in metres; NaN marks a missing joint
      <sequence>.csv  T rows of J*3 comma-separated values (a header row is skipped)

`sequence` is a path relative to DIR, with or without the .npy/.csv suffix.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from rehabgen.data.dataset import DataError, Dataset, Quarantined, Sequence
from rehabgen.skeleton import Skeleton

_FIXED = {"sequence", "subject", "exercise", "group"}


def _read_array(path: Path, n_joints: int) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{path}: not a plain numeric .npy array ({e})") from None
    else:
        rows = []
        for line in path.read_text(errors="replace").splitlines():
            fields = [f for f in line.strip().rstrip(",").split(",")]
            if not line.strip():
                continue
            try:
                rows.append([float(f) if f.strip() else math.nan for f in fields])
            except ValueError:
                if rows:
                    raise DataError(f"{path}: non-numeric value in row {len(rows) + 1}") from None
                continue  # header
        if not rows:
            raise DataError(f"{path}: file is empty")
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            raise DataError(f"{path}: rows have different numbers of values {sorted(widths)}")
        a = np.array(rows)
    if not np.issubdtype(a.dtype, np.number):
        raise DataError(f"{path}: array is not numeric (dtype {a.dtype})")
    a = a.astype(np.float32)
    if a.ndim == 2 and a.shape[1] == n_joints * 3:
        a = a.reshape(a.shape[0], n_joints, 3)
    if a.ndim != 3 or a.shape[1:] != (n_joints, 3):
        raise DataError(f"{path}: shape {a.shape}, expected (T, {n_joints}, 3) or (T, {n_joints * 3})")
    if a.shape[0] < 2:
        raise DataError(f"{path}: only {a.shape[0]} frame")
    return a


def load_generic(root: str | Path, skeleton: Skeleton | None = None, fps: float | None = None,
                 progress: bool = False) -> Dataset:
    root = Path(root)
    labels = root / "labels.csv"
    if not labels.is_file():
        raise DataError(f"{root}: no labels.csv (columns: sequence, subject, exercise, scores)")
    sk_file = root / "skeleton.json"
    sk_fps = None
    if skeleton is None:
        if not sk_file.is_file():
            raise DataError(f"{root}: no skeleton.json and no skeleton given")
        skeleton = Skeleton.from_json(sk_file)
        try:
            sk_fps = json.loads(sk_file.read_text()).get("fps")
        except (json.JSONDecodeError, AttributeError):
            sk_fps = None
    fps = float(fps or sk_fps or 30.0)
    with labels.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("sequence", "subject", "exercise") if c not in cols]
        if missing:
            raise DataError(f"{labels}: missing column(s) {missing}; found {cols}")
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    score_cols = [c for c in cols if c not in _FIXED]
    sequences, quarantined = [], []
    for i, r in enumerate(rows, start=2):
        name = r["sequence"]
        cands = [root / name] + [root / f"{name}{ext}" for ext in (".npy", ".csv")]
        path = next((c for c in cands if c.is_file()), None)
        if path is None:
            quarantined.append(Quarantined(str(root / name), f"labels.csv line {i}: sequence file not found"))
            continue
        try:
            pos = _read_array(path, skeleton.n_joints)
        except DataError as e:
            quarantined.append(Quarantined(str(path), str(e).split(": ", 1)[-1]))
            continue
        valid = np.isfinite(pos).all(-1)
        if not valid.any():
            quarantined.append(Quarantined(str(path), "no finite joint position"))
            continue
        scores = {}
        for c in score_cols:
            key = "TS" if c.lower() == "score" else c
            try:
                scores[key] = float(r.get(c) or "nan")
            except ValueError:
                scores[key] = math.nan
        sequences.append(Sequence(r["subject"], r.get("group") or "", r["exercise"], pos, valid,
                                  scores, None, str(path)))
    if not sequences and not quarantined:
        raise DataError(f"{labels}: no rows")
    exercises = tuple(sorted({s.exercise for s in sequences}))
    return Dataset(skeleton, sequences, quarantined, exercises, fps,
                   {"source": str(root), "format": "generic", "preprocessing": []})


def write_generic(root: str | Path, ds: Dataset) -> None:
    """Export a dataset in the generic layout (used in tests and to convert KIMORE)."""
    from rehabgen.io import atomic_write_bytes
    import io

    root = Path(root)
    names = sorted({k for s in ds.sequences for k in s.scores})
    sk = ds.skeleton.to_dict() | {"fps": ds.fps}
    atomic_write_bytes(root / "skeleton.json", json.dumps(sk, indent=2).encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sequence", "subject", "exercise", "group", *names])
    for i, s in enumerate(ds.sequences):
        seq = f"seq{i:05d}"
        p = np.where(s.valid[..., None], s.positions, np.nan).astype(np.float32)
        b = io.BytesIO()
        np.save(b, p)
        atomic_write_bytes(root / f"{seq}.npy", b.getvalue())
        w.writerow([seq, s.subject, s.exercise, s.group, *[s.scores.get(n, math.nan) for n in names]])
    atomic_write_bytes(root / "labels.csv", buf.getvalue().encode())
