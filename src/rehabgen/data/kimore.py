"""KIMORE on disk: reader (tolerant of the quirks of real copies) and writer (for built-in data).

Layout as distributed::

    CG/Expert/E_ID<n>/  CG/NotExpert/NE_ID<n>/  GPP/{BackPain,Parkinson,Stroke}/{B,P,S}_ID<n>/
        Es1/ .. Es5/
            Raw/JointPosition*.csv     per frame: J x (x, y, z, tracking state), often a trailing comma
            Raw/JointOrientation*.csv  per frame: J x quaternion (w, x, y, z)
            Raw/TimeStamp*.csv         per frame
            Label/ClinicalAssessment_<ID>.xlsx  columns like "clinical TS Ex#1"

A file that can't be used is quarantined with a reason instead of failing the whole load.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np

from rehabgen.data.dataset import SCORE_NAMES, DataError, Dataset, Quarantined, Sequence
from rehabgen.io import atomic_write_bytes
from rehabgen.skeleton import KINECT_V2, Skeleton

EXERCISES = {
    "Es1": "lifting of the arms",
    "Es2": "lateral tilt of the trunk with the arms in extension",
    "Es3": "trunk rotation",
    "Es4": "pelvis rotations on the transverse plane",
    "Es5": "squatting",
}
GROUPS = {
    "Expert": ("CG", "E"),
    "NotExpert": ("CG", "NE"),
    "BackPain": ("GPP", "B"),
    "Parkinson": ("GPP", "P"),
    "Stroke": ("GPP", "S"),
}
STATE_NOT_TRACKED, STATE_INFERRED, STATE_TRACKED = 0, 1, 2
MIN_FRAMES = 10
_SCORE_HEADER = re.compile(r"clinical\s*(TS|PO|CF)\s*Ex\s*#?\s*(\d+)", re.IGNORECASE)


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------
def _parse_rows(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise DataError(f"{path}: can't be read ({e.strerror})") from None
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        fields = line.split(",")
        while fields and fields[-1].strip() == "":  # trailing comma(s)
            fields.pop()
        rows.append(fields)
    return rows


def _to_float(fields: list[str]) -> np.ndarray:
    out = np.full(len(fields), np.nan)
    for i, f in enumerate(fields):
        f = f.strip()
        if f:
            try:
                out[i] = float(f)
            except ValueError:
                pass
    return out


def read_joint_positions(path: Path, n_joints: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions (T, J, 3) and tracking state (T, J) or None when the file has 3 values per joint.

    Frames whose value count fits neither layout, or whose values are NaN / all zero, are kept as
    frames with NaN positions so time stays aligned with timestamps; the caller masks them.
    """
    rows = _parse_rows(path)
    if not rows:
        raise DataError(f"{path}: file is empty")
    counts = [len(r) for r in rows]
    n4, n3 = n_joints * 4, n_joints * 3
    n_ok4 = sum(c == n4 for c in counts)
    n_ok3 = sum(c == n3 for c in counts)
    if max(n_ok4, n_ok3) < 0.5 * len(rows):
        common = max(set(counts), key=counts.count)
        raise DataError(
            f"{path}: rows have {common} values, expected {n4} ({n_joints} joints x 4) "
            f"or {n3} ({n_joints} joints x 3)"
        )
    per_joint = 4 if n_ok4 >= n_ok3 else 3
    T = len(rows)
    pos = np.full((T, n_joints, 3), np.nan, dtype=np.float64)
    state = np.zeros((T, n_joints), dtype=np.int8) if per_joint == 4 else None
    for t, r in enumerate(rows):
        if len(r) != n_joints * per_joint:
            continue  # malformed frame: stays NaN
        v = _to_float(r).reshape(n_joints, per_joint)
        pos[t] = v[:, :3]
        if state is not None:
            s = v[:, 3]
            state[t] = np.where(np.isfinite(s), s, 0).astype(np.int8)
    return pos.astype(np.float32), state


def read_timestamps(path: Path, n_frames: int) -> np.ndarray | None:
    """Seconds from the first frame; None when the file can't be interpreted."""
    rows = _parse_rows(path)
    if len(rows) != n_frames or n_frames < 2:
        return None
    raw = np.array([_to_float(r[:1])[0] if r else np.nan for r in rows])
    if not np.all(np.isfinite(raw)):
        return None
    dt = np.median(np.diff(raw))
    # Kinect exports use seconds, milliseconds or 100 ns ticks: pick the unit giving a sane frame step
    for scale in (1.0, 1e-3, 1e-7):
        if 0.003 <= dt * scale <= 1.0:
            return ((raw - raw[0]) * scale).astype(np.float64)
    return None


def read_clinical_scores(path: Path) -> dict[int, dict[str, float]]:
    """{exercise number: {"TS": .., "PO": .., "CF": ..}} from a ClinicalAssessment xlsx.

    Finds the header row by pattern so column order and extra columns don't matter.
    """
    try:
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as e:  # openpyxl raises many types for corrupt files
        raise DataError(f"{path}: not a readable xlsx workbook ({type(e).__name__})") from None
    try:
        rows = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    finally:
        wb.close()
    for i, row in enumerate(rows):
        cols = {}
        for c, cell in enumerate(row):
            m = _SCORE_HEADER.search(str(cell)) if cell is not None else None
            if m:
                cols[c] = (m.group(1).upper(), int(m.group(2)))
        if not cols:
            continue
        values = rows[i + 1] if i + 1 < len(rows) else []
        out: dict[int, dict[str, float]] = {}
        for c, (name, ex) in cols.items():
            v = values[c] if c < len(values) else None
            try:
                f = float(v) if v not in (None, "") else math.nan
            except (TypeError, ValueError):
                f = math.nan
            out.setdefault(ex, {})[name] = f
        return out
    raise DataError(f"{path}: no 'clinical TS/PO/CF Ex#k' header found")


def _first(folder: Path, pattern: str) -> Path | None:
    hits = sorted(folder.glob(pattern)) if folder.is_dir() else []
    return hits[0] if hits else None


def _scores_for(subject_dir: Path, es_dir: Path, ex_num: int, quarantined: list[Quarantined],
                cache: dict) -> dict[str, float]:
    """Scores of one exercise; looks in this exercise's Label/ first, then in the siblings'."""
    candidates = [_first(es_dir / "Label", "ClinicalAssessment*.xlsx")]
    candidates += [_first(d / "Label", "ClinicalAssessment*.xlsx") for d in sorted(subject_dir.glob("Es*")) if d != es_dir]
    scores = {n: math.nan for n in SCORE_NAMES}
    for xlsx in candidates:
        if xlsx is None:
            continue
        key = str(xlsx)
        if key not in cache:
            try:
                cache[key] = read_clinical_scores(xlsx)
            except DataError as e:
                cache[key] = None
                quarantined.append(Quarantined(str(xlsx), str(e).split(": ", 1)[-1]))
        table = cache[key]
        if table and ex_num in table:
            for n in SCORE_NAMES:
                v = table[ex_num].get(n, math.nan)
                if math.isnan(scores[n]):
                    scores[n] = v
            if not any(math.isnan(v) for v in scores.values()):
                break
    # TS = PO + CF: recover one missing cell from the other two
    ts, po, cf = scores["TS"], scores["PO"], scores["CF"]
    if math.isnan(ts) and not (math.isnan(po) or math.isnan(cf)):
        scores["TS"] = po + cf
    elif math.isnan(cf) and not (math.isnan(ts) or math.isnan(po)):
        scores["CF"] = ts - po
    elif math.isnan(po) and not (math.isnan(ts) or math.isnan(cf)):
        scores["PO"] = ts - cf
    return scores


def _load_sequence(es_dir: Path, subject: str, group: str, skeleton: Skeleton,
                   quarantined: list[Quarantined], cache: dict, min_frames: int) -> Sequence | None:
    raw = es_dir / "Raw"
    pos_file = _first(raw, "JointPosition*.csv")
    if pos_file is None:
        quarantined.append(Quarantined(str(raw), "no JointPosition*.csv file"))
        return None
    try:
        positions, state = read_joint_positions(pos_file, skeleton.n_joints)
    except DataError as e:
        quarantined.append(Quarantined(str(pos_file), str(e).split(": ", 1)[-1]))
        return None
    finite = np.isfinite(positions).all(axis=-1)
    nonzero = np.abs(np.nan_to_num(positions)).sum(axis=-1) > 1e-9
    valid = finite & nonzero
    if state is not None:
        valid &= state > STATE_NOT_TRACKED
    n_good_frames = int(valid.any(axis=1).sum())
    if n_good_frames < min_frames:
        reason = "no usable frame (all rows NaN or zeros)" if n_good_frames == 0 else \
            f"only {n_good_frames} usable frames (< {min_frames})"
        quarantined.append(Quarantined(str(pos_file), reason))
        return None
    # trim leading/trailing frames with no body at all (Kinect before acquisition)
    rows = np.flatnonzero(valid.any(axis=1))
    sl = slice(rows[0], rows[-1] + 1)
    ts = None
    ts_file = _first(raw, "TimeStamp*.csv")
    if ts_file is not None:
        ts = read_timestamps(ts_file, positions.shape[0])
        if ts is None:
            quarantined.append(Quarantined(str(ts_file), "timestamps unreadable or frame count differs from JointPosition"))
        else:
            ts = ts[sl] - ts[sl][0]
    ex_num = int(es_dir.name[2:])
    scores = _scores_for(es_dir.parent, es_dir, ex_num, quarantined, cache)
    return Sequence(
        subject=subject,
        group=group,
        exercise=es_dir.name,
        positions=positions[sl],
        valid=valid[sl],
        scores=scores,
        timestamps=ts,
        source=str(pos_file),
        state=None if state is None else state[sl],
    )


def load_kimore(root: str | Path, skeleton: Skeleton = KINECT_V2, exercises=tuple(EXERCISES),
                min_frames: int = MIN_FRAMES, progress: bool = False) -> Dataset:
    """Read every subject under `root`; unusable files end up in `Dataset.quarantined`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    subject_dirs = []
    for group, (cohort, _) in GROUPS.items():
        gdir = root / cohort / group
        if gdir.is_dir():
            subject_dirs += [(group, d) for d in sorted(gdir.iterdir()) if d.is_dir()]
    if not subject_dirs:
        raise DataError(
            f"{root}: no KIMORE subjects found (expected folders like CG/Expert/E_ID1 or GPP/Stroke/S_ID1)"
        )
    quarantined: list[Quarantined] = []
    missing = []
    sequences = []
    cache: dict = {}
    it = subject_dirs
    if progress:
        from tqdm import tqdm

        it = tqdm(subject_dirs, desc="reading KIMORE", unit="subject")
    for group, sdir in it:
        for ex in exercises:
            es_dir = sdir / ex
            if not es_dir.is_dir():
                missing.append({"subject": sdir.name, "exercise": ex})
                continue
            seq = _load_sequence(es_dir, sdir.name, group, skeleton, quarantined, cache, min_frames)
            if seq is not None:
                sequences.append(seq)
    fps = _estimate_fps(sequences)
    return Dataset(
        skeleton=skeleton,
        sequences=sequences,
        quarantined=quarantined,
        exercises=tuple(exercises),
        fps=fps,
        metadata={"source": str(root), "format": "kimore", "missing_exercises": missing, "preprocessing": []},
    )


def _estimate_fps(sequences: list[Sequence], default: float = 30.0) -> float:
    steps = [np.median(np.diff(s.timestamps)) for s in sequences if s.timestamps is not None and len(s.timestamps) > 1]
    steps = [d for d in steps if d > 0]
    if not steps:
        return default
    return float(round(1.0 / float(np.median(steps)), 2))


# ------------------------------------------------------------------------------------------
# writing (built-in data, tests); deterministic bytes for a given input
# ------------------------------------------------------------------------------------------
_FIXED_ZIP_TIME = (2019, 1, 1, 0, 0, 0)


def format_joint_positions(positions: np.ndarray, state: np.ndarray | None) -> str:
    """KIMORE CSV text: one row per frame, x,y,z,state per joint, trailing comma."""
    T, J, _ = positions.shape
    if state is None:
        state = np.full((T, J), STATE_TRACKED, dtype=np.int8)
    lines = []
    for t in range(T):
        parts = []
        for j in range(J):
            x, y, z = positions[t, j]
            parts.append(f"{x:.6f},{y:.6f},{z:.6f},{int(state[t, j])}")
        lines.append(",".join(parts) + ",")
    return "\n".join(lines) + "\n"


def _bone_quaternions(positions: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """(T, J, 4) w,x,y,z rotating +y onto each joint's bone direction (identity at the root)."""
    T, J, _ = positions.shape
    q = np.zeros((T, J, 4))
    q[..., 0] = 1.0
    up = np.array([0.0, 1.0, 0.0])
    for p, c in skeleton.bones:
        d = positions[:, c] - positions[:, p]
        d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
        axis = np.cross(up, d)
        w = 1.0 + d @ up
        quat = np.concatenate([w[:, None], axis], axis=-1)
        q[:, c] = quat / np.maximum(np.linalg.norm(quat, axis=-1, keepdims=True), 1e-9)
    return q


def format_joint_orientations(positions: np.ndarray, skeleton: Skeleton) -> str:
    q = _bone_quaternions(np.nan_to_num(positions), skeleton)
    lines = [",".join(f"{v:.6f}" for v in q[t].reshape(-1)) + "," for t in range(q.shape[0])]
    return "\n".join(lines) + "\n"


def format_timestamps(n_frames: int, fps: float, start_ticks: int = 131_000_000_000_000_000) -> str:
    """Kinect-style timestamps in 100 ns ticks."""
    step = 1e7 / fps
    return "\n".join(f"{start_ticks + int(round(t * step))}," for t in range(n_frames)) + "\n"


def clinical_xlsx_bytes(subject: str, scores: dict[int, dict[str, float]]) -> bytes:
    """A ClinicalAssessment workbook (header row + one value row) with fixed zip timestamps."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Foglio1"
    header = ["Subject ID"]
    values: list = [subject]
    for name in SCORE_NAMES:
        for ex in sorted(scores):
            header.append(f"clinical {name} Ex#{ex}")
            v = scores[ex].get(name, math.nan)
            values.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 2))
    ws.append(header)
    ws.append(values)
    fixed = datetime(2019, 1, 1)
    wb.properties.created = fixed
    wb.properties.modified = fixed
    wb.properties.creator = "rehabgen"
    buf = io.BytesIO()
    wb.save(buf)
    # re-pack with fixed member timestamps so the same input gives the same bytes
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"<dcterms:modified[^>]*>[^<]*</dcterms:modified>",
                              b'<dcterms:modified xsi:type="dcterms:W3CDTF">2019-01-01T00:00:00Z</dcterms:modified>', data)
            zi = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(zi, data)
    return out.getvalue()


def subject_folder(root: Path, group: str, subject: str) -> Path:
    cohort, _ = GROUPS[group]
    return Path(root) / cohort / group / subject


def write_kimore_sequence(es_dir: Path, positions: np.ndarray, state: np.ndarray | None,
                          skeleton: Skeleton, fps: float, tag: str) -> None:
    """Raw/JointPosition, JointOrientation and TimeStamp CSVs of one exercise recording."""
    raw = Path(es_dir) / "Raw"
    atomic_write_bytes(raw / f"JointPosition{tag}.csv", format_joint_positions(positions, state).encode())
    atomic_write_bytes(raw / f"JointOrientation{tag}.csv", format_joint_orientations(positions, skeleton).encode())
    atomic_write_bytes(raw / f"TimeStamp{tag}.csv", format_timestamps(positions.shape[0], fps).encode())


def write_clinical_assessment(subject_dir: Path, subject: str, scores: dict[int, dict[str, float]],
                              exercises=tuple(EXERCISES)) -> None:
    """The same ClinicalAssessment file in every exercise's Label/ folder, as in KIMORE."""
    data = clinical_xlsx_bytes(subject, scores)
    for ex in exercises:
        atomic_write_bytes(Path(subject_dir) / ex / "Label" / f"ClinicalAssessment_{subject}.xlsx", data)
