"""KIMORE on disk: reader (tolerant of the quirks of real copies) and writer (for built-in data).

Layout as distributed::

    CG/Expert/E_ID<n>/  CG/NotExpert/NE_ID<n>/  GPP/{BackPain,Parkinson,Stroke}/{B,P,S}_ID<n>/
        Es1/ .. Es5/
            Raw/JointPosition*.csv     per frame: J x (x, y, z, tracking state), often a trailing comma
            Raw/JointOrientation*.csv  per frame: J x quaternion (w, x, y, z)
            Raw/TimeStamp*.csv         per frame
            Label/ClinicalAssessment_<ID>.xlsx  columns like "clinical TS Ex#1"

A file that can't be used is quarantined with a reason instead of failing the whole load. A few
JointPosition files hold 2-3 bodies side by side per row (the subject plus a bystander or a ghost):
the subject's body is read and the choice listed in `Dataset.metadata["bodies"]`.
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
# a writer of a KIMORE-layout folder (`rehabgen data synth`) creates this file first and removes it
# last: a folder that still has it was not finished, and every reader says so
INCOMPLETE_MARKER = "WRITING_INCOMPLETE"
MAX_BODIES = 6  # a Kinect v2 tracks at most six people
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


def _ends_mid_row(path: Path) -> bool:
    """True when the file's last byte is not a line end: the copy stopped in the middle of a row."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) not in (b"\n", b"\r")
    except OSError:
        return False


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


def _layouts(width: int, n_joints: int) -> list[tuple[int, int]]:
    """(values per joint, bodies) that a row of `width` values can hold: x, y, z, state (or x, y, z)
    per joint, 1 to MAX_BODIES bodies side by side."""
    out = []
    for per_joint in (4, 3):
        k, rest = divmod(width, n_joints * per_joint)
        if rest == 0 and 1 <= k <= MAX_BODIES:
            out.append((per_joint, k))
    return out


def _valid_mask(positions: np.ndarray, state: np.ndarray | None) -> np.ndarray:
    """(..., J) True where a joint was observed: finite, not the all-zero "lost" value, tracked or inferred."""
    valid = np.isfinite(positions).all(axis=-1) & (np.abs(np.nan_to_num(positions)).sum(axis=-1) > 1e-9)
    if state is not None:
        valid &= state > STATE_NOT_TRACKED
    return valid


def read_joint_bodies(path: Path, n_joints: int) -> tuple[np.ndarray, np.ndarray | None, dict[int, int]]:
    """Every body of a JointPosition file: positions (B, T, J, 3), state (B, T, J) or None when the
    file has 3 values per joint, and {row width: row count} of the rows set aside.

    The row width that fits a layout and covers at least half the rows decides the layout; rows of
    any other width are kept as NaN frames so time stays aligned with timestamps (the caller masks
    them). 300 values fit both 3 bodies x 4 and 4 bodies x 3: the 4-value layout is taken only if
    every 4th value is a tracking state (0, 1 or 2).
    """
    rows = _parse_rows(path)
    if not rows:
        raise DataError(f"{path}: file is empty")
    counts: dict[int, int] = {}
    for r in rows:
        counts[len(r)] = counts.get(len(r), 0) + 1
    by_count = sorted(counts, key=lambda w: (-counts[w], w))  # most rows first, deterministic on ties
    # on a tie the old single-body reading wins: 4 values per joint, then fewer bodies
    usable = sorted((w for w in counts if _layouts(w, n_joints)),
                    key=lambda w: (-counts[w], _layouts(w, n_joints)[0][0] != 4, w))
    if not usable or counts[usable[0]] < 0.5 * len(rows):
        if not _layouts(by_count[0], n_joints):
            n4, n3 = n_joints * 4, n_joints * 3
            raise DataError(
                f"{path}: rows have {by_count[0]} values, expected {n4} ({n_joints} joints x 4) "
                f"or {n3} ({n_joints} joints x 3), or a multiple of these for 2-{MAX_BODIES} bodies"
            )
        widths = ", ".join(f"{w} values in {counts[w]} rows" for w in by_count[:4])
        raise DataError(f"{path}: rows have mixed widths ({widths}); no width covers half of the {len(rows)} rows")
    width = usable[0]
    T = len(rows)
    if len(rows[-1]) < width and _ends_mid_row(path):
        raise DataError(f"{path}: truncated: the file stops in the middle of row {T} ({len(rows[-1])} of {width} "
                        "values); an incomplete copy? copy it again")
    values = np.full((T, width), np.nan)
    for t, r in enumerate(rows):
        if len(r) == width:
            values[t] = _to_float(r)
    layouts = _layouts(width, n_joints)
    per_joint, n_bodies = layouts[0]
    if len(layouts) > 1:
        states = values[:, 3::4]
        states = states[np.isfinite(states)]
        if not np.isin(states, (0, 1, 2)).all():
            per_joint, n_bodies = layouts[1]
    v = values.reshape(T, n_bodies, n_joints, per_joint).transpose(1, 0, 2, 3)
    state = None
    if per_joint == 4:
        s = v[..., 3]
        state = np.where(np.isfinite(s), s, 0).astype(np.int8)
    set_aside = {w: n for w, n in counts.items() if w != width}
    return v[..., :3].astype(np.float32), state, set_aside


def choose_subject_body(positions: np.ndarray, state: np.ndarray | None, root: int = 0) -> tuple[int, dict]:
    """Which of the bodies (B, T, J, 3) of one recording is the subject, and why.

    Rule, in this order, one choice per recording:
    1. presence: the share of frames in which a body has any observed joint. A ghost (a body the
       Kinect makes up for a few frames) is mostly absent: only bodies present in at least half as
       many frames as the most present one stay candidates.
    2. movement: the subject exercises, a bystander mostly stands and a frozen ghost doesn't move.
       Per body, the 10-90 % range of each joint's position relative to the root (SpineBase),
       averaged over joints: posture change, not walking or jitter. Largest wins.
    3. if other candidates move within 20 % as much (two people moving alike), the one whose root
       stays nearest the sensor's optical axis (median |x|) wins: KIMORE subjects stand centred
       in front of the sensor.
    Percentiles and medians keep a few wild frames from deciding. The choice is per recording, not
    per frame: a Kinect keeps a body in its slot while tracked, and following a person across
    slots would need matching that could itself go wrong; frames where the chosen body is missing
    stay masked. `frames_other_body_only` counts frames where only another body is present, the
    sign of a slot swap worth a look.
    """
    B = positions.shape[0]
    valid = _valid_mask(positions, state)  # (B, T, J)
    present = valid.any(axis=2)  # (B, T)
    presence = present.mean(axis=1)
    motion = np.zeros(B)
    axis_x = np.full(B, np.inf)
    for b in range(B):
        ok = valid[b] & valid[b][:, root:root + 1]  # joint and root observed
        if not ok[:, root].any():
            continue
        rel = np.where(ok[..., None], positions[b] - positions[b][:, root:root + 1], np.nan)
        spans = []
        for j in range(positions.shape[2]):
            r = rel[ok[:, j], j]
            if j != root and len(r) >= 2:
                lo, hi = np.percentile(r, [10, 90], axis=0)
                spans.append(float(np.linalg.norm(hi - lo)))
        motion[b] = float(np.mean(spans)) if spans else 0.0
        axis_x[b] = float(np.median(np.abs(positions[b][ok[:, root], root, 0])))
    info = {
        "bodies": B,
        "presence": [round(float(p), 3) for p in presence],
        "motion_m": [round(float(m), 4) for m in motion],
        "median_abs_x_m": [round(float(x), 3) if np.isfinite(x) else None for x in axis_x],
    }
    if not presence.any():
        return 0, {**info, "body_taken": 0, "frames_other_body_only": 0, "why": "no body present in any frame"}
    cands = [b for b in range(B) if presence[b] >= 0.5 * presence.max()]
    best = max(cands, key=lambda b: (motion[b], -b))
    close = [b for b in cands if motion[b] >= 0.8 * motion[best]]
    if len(cands) == 1:
        taken = best
        why = (f"the only body present in many frames ({presence[best]:.0%} of frames; "
               f"others {', '.join(f'{p:.0%}' for i, p in enumerate(presence) if i != best)})")
    elif len(close) == 1:
        taken = best
        runner = max((b for b in cands if b != best), key=lambda b: motion[b])
        why = (f"present in {presence[best]:.0%} of frames and moves most "
               f"(posture range {motion[best]:.3f} m vs {motion[runner]:.3f} m for body {runner})")
    else:
        taken = min(close, key=lambda b: (axis_x[b], b))
        why = (f"bodies {', '.join(map(str, close))} move alike (posture ranges within 20 %); "
               f"nearest the optical axis (median |x| {axis_x[taken]:.2f} m)")
    others = np.delete(present, taken, axis=0).any(axis=0)
    info.update(body_taken=int(taken), frames_other_body_only=int((others & ~present[taken]).sum()),
                why=f"body {taken}: {why}")
    return int(taken), info


def read_joint_positions(path: Path, n_joints: int, info: dict | None = None,
                         root: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions (T, J, 3) and tracking state (T, J) or None when the file has 3 values per joint.

    Frames whose values are NaN / all zero, or whose row has another width, are kept as frames
    with NaN positions so time stays aligned with timestamps; the caller masks them. Rows with
    several bodies: the subject's body is taken (`choose_subject_body`). `info`, if given, gets
    which body was taken and why, and the widths of rows set aside, whenever there is either.
    """
    pos, state, set_aside = read_joint_bodies(path, n_joints)
    taken, notes = 0, {}
    if pos.shape[0] > 1:
        taken, notes = choose_subject_body(pos, state, root)
    if set_aside and (pos.shape[0] > 1 or any(_layouts(w, n_joints) for w in set_aside)):
        notes.setdefault("bodies", 1)
        notes.setdefault("body_taken", 0)
        notes["rows_other_width"] = {str(w): n for w, n in sorted(set_aside.items())}
    if info is not None:
        info.update(notes)
    return pos[taken], None if state is None else state[taken]


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
                   quarantined: list[Quarantined], cache: dict, min_frames: int,
                   body_notes: list[dict]) -> Sequence | None:
    raw = es_dir / "Raw"
    pos_file = _first(raw, "JointPosition*.csv")
    if pos_file is None:
        quarantined.append(Quarantined(str(raw), "no JointPosition*.csv file"))
        return None
    info: dict = {}
    try:
        positions, state = read_joint_positions(pos_file, skeleton.n_joints, info, skeleton.root)
    except DataError as e:
        quarantined.append(Quarantined(str(pos_file), str(e).split(": ", 1)[-1]))
        return None
    valid = _valid_mask(positions, state)
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
            n_ts = len(_parse_rows(ts_file))
            why = (f"{n_ts} timestamps for {positions.shape[0]} JointPosition frames: one of the two files is "
                   "incomplete; timestamps not used" if n_ts != positions.shape[0] else
                   "timestamps unreadable (not numbers, or a frame step in no known unit); not used")
            quarantined.append(Quarantined(str(ts_file), why))
        else:
            ts = ts[sl] - ts[sl][0]
    ex_num = int(es_dir.name[2:])
    scores = _scores_for(es_dir.parent, es_dir, ex_num, quarantined, cache)
    if info:
        body_notes.append({"subject": subject, "exercise": es_dir.name, "source": str(pos_file), **info})
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
    body_notes: list[dict] = []
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
            seq = _load_sequence(es_dir, sdir.name, group, skeleton, quarantined, cache, min_frames, body_notes)
            if seq is not None:
                sequences.append(seq)
    fps = _estimate_fps(sequences)
    incomplete = None
    if (root / INCOMPLETE_MARKER).exists():
        incomplete = (f"unfinished folder: {INCOMPLETE_MARKER} is still there, so the command writing it "
                      "(`rehabgen data synth`) was stopped; subjects may be missing; write it again with --force")
    return Dataset(
        skeleton=skeleton,
        sequences=sequences,
        quarantined=quarantined,
        exercises=tuple(exercises),
        fps=fps,
        # "bodies": which body was read from files with several per row and why; rows of another layout set aside
        metadata={"source": str(root), "format": "kimore", "missing_exercises": missing, "bodies": body_notes,
                  "preprocessing": [], **({"incomplete": incomplete} if incomplete else {})},
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
