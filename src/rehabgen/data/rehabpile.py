"""Rehab-Pile interoperability: export a dataset as Rehab-Pile's regression folds, read such folds back.

Rehab-Pile (MSD-IRIMAS; Ismail-Fawaz, Devanne et al. 2025) distributes every problem as

    regression/<NAME>/info.json                     {"length_TS", "n_joints", "dim", "max_score_value",
                                                     "kinematic_tree", ...}
    regression/<NAME>/fold<k>/x_train_fold<k>.npy   (N, n_joints * dim, length_TS)
                              y_train_fold<k>.npy   (N,)
                              x_test_fold<k>.npy, y_test_fold<k>.npy

The community's loaders (deep-rehab-pile's `load_regression_data`, aeon's `load_rehab_pile_dataset`)
read X as aeon's numpy3D (n_cases, n_channels, n_timepoints) and reshape it to
(N, n_joints, dim, T): channel j * dim + d is coordinate d of joint j (joint-major). They min-max
scale X per coordinate and divide y by max_score_value themselves, so the files hold raw
coordinates (metres) and raw scores. KIMORE's problems (KIMORE_reg_LA, _LT, _TR, _PR, _Sq for
exercises Es1..Es5) keep 18 of Kinect v2's 25 joints (no head, feet, hand tips, thumbs), in
Kinect order, and use 5 subject-wise folds.

What we add beside the arrays, never inside them: `rehabgen_export.json` in each dataset folder
(the resolved options, every row's subject, which training rows are generated and from which
real sequence) and one in the output folder. Without it, a folder from Rehab-Pile itself still
imports; its subjects are then unknown (one per distinct sequence).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from rehabgen.data.dataset import DataError, Dataset, Sequence, score_range
from rehabgen.skeleton import KINECT_V2, Skeleton

FORMATS = ("rehab-pile",)
TASK = "regression"
INFO = "info.json"
RECORD = "rehabgen_export.json"
# Rehab-Pile's names of KIMORE's exercises (lifting of the arms, lateral tilt, trunk rotation,
# pelvis rotations, squatting)
KIMORE_ACRONYMS = {"Es1": "LA", "Es2": "LT", "Es3": "TR", "Es4": "PR", "Es5": "Sq"}
# the 18 joints KIMORE keeps in Rehab-Pile and in MSD-IRIMAS's KIMORE arrays, in Kinect v2 order
# (indices 0, 1, 2, 4-14, 16-18, 20 of the 25)
KIMORE_18 = ("SpineBase", "SpineMid", "Neck", "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
             "ShoulderRight", "ElbowRight", "WristRight", "HandRight", "HipLeft", "KneeLeft", "AnkleLeft",
             "HipRight", "KneeRight", "AnkleRight", "SpineShoulder")
# KIMORE's healthy controls stay in training in every fold, as in MSD-IRIMAS's own KIMORE
# regression folds (only patients are scored on held-out folds)
CONTROL_GROUPS = ("Expert", "NotExpert")


def _key(name: str) -> str:
    """Joint names compared without case and separators: "shoulder_left" is "ShoulderLeft"."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def subset_skeleton(sk: Skeleton, idx, name: str) -> Skeleton:
    """The skeleton of joints `idx` of `sk`: a joint's parent is its nearest kept ancestor."""
    keep = {int(j): i for i, j in enumerate(idx)}
    parents = []
    for j in idx:
        p = sk.parents[j]
        while p != -1 and p not in keep:
            p = sk.parents[p]
        parents.append(-1 if p == -1 else keep[p])
    mirror = tuple((keep[a], keep[b]) for a, b in sk.mirror if a in keep and b in keep)
    facing = tuple(keep[j] for j in sk.facing) if sk.facing and all(j in keep for j in sk.facing) else None
    return Skeleton(name, tuple(sk.joints[j] for j in idx), tuple(parents), mirror, facing)


KIMORE_18_SKELETON = subset_skeleton(KINECT_V2, [KINECT_V2.index(j) for j in KIMORE_18], "kinect_v2_18")


def joint_selection(sk: Skeleton, n_joints: int | None = None) -> tuple[np.ndarray | None, Skeleton]:
    """(indices to keep or None for all, exported skeleton). None: 18 where the skeleton holds
    KIMORE's 18 joints among more (Kinect v2's 25), else all of them."""
    keys = {_key(j): i for i, j in enumerate(sk.joints)}
    kimore = [keys.get(_key(j)) for j in KIMORE_18]
    can_map = None not in kimore and sk.n_joints > 18
    if n_joints is None:
        n_joints = 18 if can_map else sk.n_joints
    if n_joints == sk.n_joints:
        return None, sk
    if n_joints == 18 and can_map:
        name = "kinect_v2_18" if sk.name == "kinect_v2" else f"{sk.name}_18"
        return np.array(kimore), subset_skeleton(sk, kimore, name)
    alt = " or, as KIMORE in Rehab-Pile, its 18 Kinect joints (--joints 18)" if can_map else ""
    raise DataError(f"--joints {n_joints}: the skeleton {sk.name!r} has {sk.n_joints} joints; export keeps all "
                    f"{sk.n_joints}{alt}")


def kinematic_tree(sk: Skeleton) -> list[list[int]]:
    """Rehab-Pile's `kinematic_tree` (read by its ST-GCN): chains of joint indices, each
    consecutive pair a bone, from the root along first children; a branch starts at its parent."""
    children: dict[int, list[int]] = {j: [] for j in range(sk.n_joints)}
    for j, p in enumerate(sk.parents):
        if p != -1:
            children[p].append(j)
    chains, todo = [], [[sk.root]]
    while todo:
        chain = todo.pop(0)
        j = chain[-1]
        while children[j]:
            first, *rest = children[j]
            todo += [[j, c] for c in rest]
            chain.append(first)
            j = first
        chains.append(chain)
    return chains


def skeleton_from_tree(tree, n_joints: int, name: str) -> Skeleton:
    """A skeleton for a Rehab-Pile dataset we did not write: bones from its kinematic_tree when it
    spans every joint from one root, else every joint hangs from joint 0 (bone lengths meaningless)."""
    parents = [None] * n_joints
    try:
        for chain in tree or []:
            for a, b in zip(chain[:-1], chain[1:]):
                if parents[int(b)] is None:
                    parents[int(b)] = int(a)
        roots = [j for j in range(n_joints) if parents[j] is None]
        if len(roots) == 1:
            return Skeleton(name, tuple(f"joint{j}" for j in range(n_joints)),
                            tuple(-1 if p is None else p for p in parents))
    except (TypeError, ValueError, IndexError):
        pass
    return Skeleton(name, tuple(f"joint{j}" for j in range(n_joints)), tuple([-1] + [0] * (n_joints - 1)))


def to_channels(positions: np.ndarray) -> np.ndarray:
    """(N, T, J, 3) -> (N, J*3, T), channel j*3 + d = coordinate d of joint j."""
    N, T, J, D = positions.shape
    return np.ascontiguousarray(positions.reshape(N, T, J * D).transpose(0, 2, 1))


def from_channels(x: np.ndarray, n_joints: int, dim: int = 3) -> np.ndarray:
    """(N, J*dim, T) -> (N, T, J, dim), the inverse of `to_channels`."""
    N, C, T = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 1).reshape(N, T, n_joints, dim))


def exercise_acronym(exercise: str) -> str:
    return KIMORE_ACRONYMS.get(exercise, exercise)


def dataset_name(prefix: str, exercise: str) -> str:
    return f"{prefix}_{exercise_acronym(exercise)}"


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------
_SHAPE = re.compile(r"^shape \((\d+), (\d+)(?:, (\d+))?\), expected \(T, (\d+), 3\)")


def check_one_skeleton(ds: Dataset) -> None:
    """A folder whose files hold different joint counts is several datasets: refuse it, naming
    the first file that doesn't fit (the reader set it aside as quarantined)."""
    for q in ds.quarantined:
        m = _SHAPE.match(q.reason)
        if m:
            T, a, b, want = m.groups()
            n = int(a) if b else (int(a) // 3 if int(a) % 3 == 0 else None)
            has = f"{n} joints" if n else f"{a} values per frame"
            raise DataError(f"{q.path}: {has} where the folder's skeleton {ds.skeleton.name!r} has {want}: the folder "
                            "mixes skeletons, and a Rehab-Pile dataset holds one joint set (export each skeleton's "
                            "sequences from a folder of their own)")


def _complete(seq: Sequence) -> np.ndarray | str:
    """Positions with every gap filled by interpolation (edges hold the nearest value), or the
    reason the sequence can't be exported: Rehab-Pile's arrays have no missing values."""
    from rehabgen.preprocess import fill_gaps

    known = seq.valid & np.isfinite(seq.positions).all(-1)
    if not known.any(0).all():
        return f"{int((~known.any(0)).sum())} joint(s) never observed"
    if known.all():
        return seq.positions.astype(np.float64)
    return fill_gaps(replace(seq, valid=known, filled=None), max_gap=seq.n_frames).positions.astype(np.float64)


def _resample(p: np.ndarray, length: int) -> np.ndarray:
    """(T, J, 3) -> (length, J, 3), linear in time; unchanged when already that long."""
    if p.shape[0] == length:
        return p
    from rehabgen.preprocess import resample

    s = Sequence("", "", "", p, np.ones(p.shape[:2], bool))
    return resample(s, length).positions.astype(np.float64)


def _same_skeleton(a: Skeleton, b: Skeleton) -> bool:
    return a.n_joints == b.n_joints and ([_key(j) for j in a.joints] == [_key(j) for j in b.joints]
                                         or a.parents == b.parents)


def _npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a, allow_pickle=False)
    return b.getvalue()


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class _Generated:
    """Generated sequences for real training rows, placed where their real sequence is.

    A sample is conditioned on its real sequence's exercise and score, generated at the model's
    frame rate over the real sequence's duration (at most the model's window), then put in the
    real sequence's frame (its first root position, facing and body size: the regressors see raw
    camera coordinates) and resampled to the export length, as every real sequence is."""

    def __init__(self, model, ds: Dataset, idx: np.ndarray | None, out_sk: Skeleton, label: str):
        spec = model.spec
        if _same_skeleton(spec.skeleton, ds.skeleton):
            self.space = "source"
        elif _same_skeleton(spec.skeleton, out_sk):
            self.space = "export"
        else:
            raise DataError(f"{label}: the model's skeleton {spec.skeleton.name!r} ({spec.skeleton.n_joints} joints) is "
                            f"neither the data's {ds.skeleton.name!r} ({ds.skeleton.n_joints}) nor the export's "
                            f"{out_sk.name!r} ({out_sk.n_joints})")
        self.model, self.ds, self.idx, self.label = model, ds, idx, label
        self.cache: dict[tuple[str, int, int], np.ndarray] = {}

    def check_exercise(self, exercise: str) -> None:
        if exercise not in self.model.spec.exercises:
            raise DataError(f"{self.label}: the model knows exercises {list(self.model.spec.exercises)}, not {exercise!r}")

    def make(self, exercise: str, rows: list[int], seqs: list[Sequence], full: list[np.ndarray], length: int,
             per_real: int, seed: int, score: str) -> dict[int, np.ndarray]:
        """{row: (per_real, length, J_out, 3)} for the rows not generated yet (cached per row)."""
        from rehabgen.preprocess import normalise_sequence

        spec, nm = self.model.spec, self.model.spec.normalizer
        todo = [r for r in rows if (exercise, r, per_real) not in self.cache]
        by_len: dict[int, list[int]] = {}
        for r in todo:
            n = int(round(seqs[r].n_frames * spec.fps / self.ds.fps))
            by_len.setdefault(min(max(n, 2), spec.max_len), []).append(r)
        sk = spec.skeleton
        pc = spec.preprocess
        for L, rs in sorted(by_len.items()):
            sc = np.repeat([seqs[r].score(score) for r in rs], per_real)
            g = self.model.sample(exercise, score=sc, length=L, n=len(sc),
                                  seed=_seed(seed, sum(map(ord, exercise)), L, per_real))
            body = (g.astype(np.float64) - nm.ref_offset) / nm.ref_scale
            for i, r in enumerate(rs):
                real = full[r] if self.space == "source" or self.idx is None else full[r][:, self.idx]
                s = Sequence("", "", exercise, real, np.ones(real.shape[:2], bool), source=seqs[r].source)
                _, tf = normalise_sequence(s, sk, pc.center, pc.facing, pc.scale)
                outs = []
                for c in range(per_real):
                    p = tf.invert(body[i * per_real + c])
                    if self.space == "source" and self.idx is not None:
                        p = p[:, self.idx]
                    outs.append(_resample(p, length))
                self.cache[(exercise, r, per_real)] = np.stack(outs).astype(np.float32)
        return {r: self.cache[(exercise, r, per_real)] for r in rows}


def export_rehab_pile(ds: Dataset, out: str | Path, name: str = "KIMORE_reg", folds: int = 5,
                      joints: int | None = None, length: int | None = None, seed: int = 0,
                      exercises: list[str] | None = None, score: str = "TS", models: list | None = None,
                      model_labels: list[str] | None = None, model_subjects: list[set | None] | None = None,
                      per_real: int = 1, record: dict | None = None, progress: bool = False,
                      log=None) -> dict:
    """Write `ds` to `out` in Rehab-Pile's layout, one dataset `<name>_<exercise>` per exercise
    (Es1..Es5 become LA, LT, TR, PR, Sq), with the same subject-wise folds for every exercise.

    Every sequence keeps `joints` (see `joint_selection`), has its gaps filled and is resampled
    to `length` frames (default: the exercise's mean length); y is the score `score` as it is.
    `models`: one generative model per fold (the same object may repeat), whose samples, `per_real`
    per real training sequence and conditioned on its exercise and score, are appended to that
    fold's training arrays only. `model_subjects[k]`: the subjects model k was trained on, to
    report any of fold k's test subjects it has seen. Everything is written into a temporary
    folder that replaces `out` at the end. Returns the top-level record."""
    from rehabgen.data.splits import subject_kfold
    from rehabgen.io import replace_dir

    say = log or (lambda msg: None)
    out = Path(out)
    check_one_skeleton(ds)
    idx, out_sk = joint_selection(ds.skeleton, joints)
    if folds < 2:
        raise DataError(f"--folds {folds}: need at least 2 folds")
    if length is not None and length < 2:
        raise DataError(f"--length {length}: need at least 2 frames")
    if per_real < 1:
        raise DataError(f"--per-real {per_real}: need at least 1")
    exercises = list(exercises or ds.exercises)
    unknown = [e for e in exercises if e not in ds.exercises]
    if unknown:
        raise DataError(f"--exercise {unknown[0]}: not in the data (it has {list(ds.exercises)})")
    if models is not None and len(models) != folds:
        raise DataError(f"{len(models)} generator runs for {folds} folds: give one run, or one per fold")
    lo, hi = score_range(score, [s.score(score) for s in ds.sequences])

    kept, skipped = [], []
    for s in ds.sequences:
        if s.exercise not in exercises:
            continue
        if not math.isfinite(s.score(score)):
            skipped.append({"source": s.source, "reason": f"no {score} score"})
            continue
        full = _complete(s)
        if isinstance(full, str):
            skipped.append({"source": s.source, "reason": full})
            continue
        kept.append((s, full))
    if not kept:
        raise DataError(f"{ds.metadata.get('source', 'the data')}: no sequence with a {score} score to export")
    for sk in skipped[:3]:
        say(f"{sk['source']}: left out ({sk['reason']})")
    if len(skipped) > 3:
        say(f"... and {len(skipped) - 3} more sequence(s) left out (listed in {RECORD})")
    whole = Dataset(ds.skeleton, [s for s, _ in kept], exercises=ds.exercises, fps=ds.fps)
    groups = {s.group for s in whole.sequences}
    controls = tuple(g for g in CONTROL_GROUPS if g in groups) if groups - set(CONTROL_GROUPS) else ()
    try:
        split = subject_kfold(whole, folds, seed=seed, always_train_groups=controls)
    except DataError as e:
        raise DataError(f"--folds {folds}: {e}") from None
    fold_of = {}
    for k, (_, test) in enumerate(split):
        for i in test:
            fold_of[whole.sequences[i].subject] = k
    gens: dict[int, _Generated] = {}
    leaks = [set() for _ in range(folds)]  # fold k's test subjects its generator was trained on
    if models is not None:
        for k in range(folds):
            if model_subjects is not None and model_subjects[k] is not None:
                leaks[k] = {s for s, f in fold_of.items() if f == k} & set(model_subjects[k])
        bad = [k for k in range(folds) if leaks[k]]
        if bad:
            n_test = sum(1 for f in fold_of.values() if f in bad)
            say(f"the generator of fold(s) {', '.join(map(str, bad))} was trained on {sum(len(leaks[k]) for k in bad)} "
                f"of their {n_test} test subjects: real+generated results on those folds are optimistic (train "
                f"one run per fold on its training subjects for an honest comparison; {RECORD} lists them)")
        labels = model_labels or [f"generator {k}" for k in range(folds)]
        for k, m in enumerate(models):
            if id(m) not in gens:
                gens[id(m)] = _Generated(m, ds, idx, out_sk, labels[k])
            for e in exercises:
                gens[id(m)].check_exercise(e)
            if m.spec.score_name != score:
                raise DataError(f"{labels[k]}: the model is conditioned on {m.spec.score_name}, the export's y is {score}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    summary = []
    try:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(exercises) * folds, desc="export", unit="fold", leave=False)
        for e in exercises:
            rows = [(s, f) for s, f in kept if s.exercise == e]
            if not rows:
                raise DataError(f"exercise {e}: no sequence with a {score} score to export")
            seqs = [s for s, _ in rows]
            full = [f for _, f in rows]
            T = int(length or round(float(np.mean([s.n_frames for s in seqs]))))
            pos = np.stack([_resample(f if idx is None else f[:, idx], T) for f in full]).astype(np.float32)
            x_real = to_channels(pos)
            y_real = np.array([s.score(score) for s in seqs], np.float64)
            dname = dataset_name(name, e)
            ddir = tmp / TASK / dname
            ddir.mkdir(parents=True)
            fold_records = []
            for k in range(folds):
                test = [i for i, s in enumerate(seqs) if fold_of.get(s.subject) == k]
                train = [i for i, s in enumerate(seqs) if fold_of.get(s.subject) != k]
                if not test:
                    raise DataError(f"{dname}: fold {k} has no test sequence of exercise {e} (its test subjects have "
                                    f"none); use fewer --folds than {folds}")
                gen_rows, x_gen, y_gen, saw = [], [], [], []
                if models is not None:
                    g = gens[id(models[k])]
                    made = g.make(e, train, seqs, full, T, per_real, seed, score)
                    for i in train:
                        for c in range(per_real):
                            gen_rows.append([i, c])
                            x_gen.append(made[i][c])
                            y_gen.append(y_real[i])
                    saw = sorted({seqs[i].subject for i in test} & leaks[k])
                x_tr = x_real[train]
                y_tr = y_real[train]
                if x_gen:
                    x_tr = np.concatenate([x_tr, to_channels(np.stack(x_gen))])
                    y_tr = np.concatenate([y_tr, np.array(y_gen, np.float64)])
                fdir = ddir / f"fold{k}"
                fdir.mkdir()
                (fdir / f"x_train_fold{k}.npy").write_bytes(_npy(x_tr))
                (fdir / f"y_train_fold{k}.npy").write_bytes(_npy(y_tr))
                (fdir / f"x_test_fold{k}.npy").write_bytes(_npy(x_real[test]))
                (fdir / f"y_test_fold{k}.npy").write_bytes(_npy(y_real[test]))
                fold_records.append({
                    "train": train, "test": test, "generated": gen_rows,
                    "test_subjects": sorted({seqs[i].subject for i in test}),
                    "generator": (model_labels[k] if model_labels else f"generator {k}") if models else None,
                    "generator_saw_test_subjects": saw,
                })
                if bar is not None:
                    bar.update(1)
            info = {"length_TS": T, "n_joints": out_sk.n_joints, "dim": 3, "max_score_value": hi,
                    "min_score_value": lo, "score": score, "n_folds": folds, "n_samples": len(seqs),
                    "kinematic_tree": kinematic_tree(out_sk)}
            (ddir / INFO).write_text("{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in info.items())
                                     + "\n}\n")
            mean_frames = float(np.mean([s.n_frames for s in seqs]))
            rec = {
                "format": "rehab-pile", "name": dname, "exercise": e, "skeleton": out_sk.to_dict(),
                "joint_map": {"from": ds.skeleton.name, "from_n_joints": ds.skeleton.n_joints,
                              "indices": None if idx is None else idx.tolist()},
                "fps": ds.fps * T / mean_frames,
                "score": {"name": score, "range": [lo, hi],
                          "y": f"the {score} score as it is (y / max_score_value is in [0, 1] when lo = 0)"},
                "length_TS": T, "channels": "joint-major: channel j*3 + d is coordinate d (x, y, z) of joint j",
                "x": "metres, the data's coordinates; gaps filled by interpolation; resampled linearly to length_TS",
                "sequences": [{"subject": s.subject, "group": s.group, "source": s.source, score: s.score(score),
                               "n_frames": s.n_frames} for s in seqs],
                "folds": fold_records, "per_real": per_real if models is not None else 0, **(record or {}),
            }
            (ddir / RECORD).write_text(json.dumps(rec, indent=1, default=str) + "\n")
            summary.append({"name": dname, "exercise": e, "n_sequences": len(seqs), "length_TS": T,
                            "x_shape": [len(seqs), out_sk.n_joints * 3, T],
                            "train": [len(f["train"]) for f in fold_records],
                            "generated": [len(f["generated"]) for f in fold_records],
                            "test": [len(f["test"]) for f in fold_records]})
        if bar is not None:
            bar.close()
        top = {"format": "rehab-pile", "task": TASK, "folds": folds, "seed": seed, "joints": out_sk.n_joints,
               "length": length, "name": name, "exercises": exercises, "score": score,
               "control_groups_always_train": list(controls), "per_real": per_real if models is not None else 0,
               "fold_subjects": [sorted(s for s, f in fold_of.items() if f == k) for k in range(folds)],
               "datasets": summary, "skipped": skipped, **(record or {})}
        (tmp / RECORD).write_text(json.dumps(top, indent=2, default=str) + "\n")
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return top


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------
def _dataset_dirs(p: Path) -> tuple[list[Path], int | None]:
    """Rehab-Pile dataset folders at `p` and the fold `p` names, if it is a fold folder."""
    if not p.is_dir():
        return [], None
    m = re.fullmatch(r"fold(\d+)", p.name)
    if m and (p.parent / INFO).is_file():
        return [p.parent], int(m.group(1))
    if (p / INFO).is_file() and any(p.glob("fold*")):
        return [p], None
    for root in (p, p / TASK):
        if root.is_dir():
            dirs = sorted(d for d in root.iterdir() if d.is_dir() and (d / INFO).is_file() and any(d.glob("fold*")))
            if dirs:
                return dirs, None
    return [], None


def is_rehab_pile(path: str | Path) -> bool:
    """A Rehab-Pile dataset folder, one of its fold folders, or a folder of such datasets."""
    return bool(_dataset_dirs(Path(path))[0])


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: can't be read ({e.strerror})") from None
    text = re.sub(r",\s*([\]}])", r"\1", text)  # some of Rehab-Pile's info.json files end lists with a comma
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a JSON object")
    return d


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{path}: a pickled object array; rehabgen does not unpickle data files (that can run "
                            "code); if you trust it, save it as a plain numeric array: np.save(f, np.array(np.load(f, "
                            "allow_pickle=True).tolist(), dtype=float))") from None
        raise DataError(f"{path}: not a .npy array ({e})") from None


class _Folder:
    """One Rehab-Pile dataset folder: info.json, our record if any, and its folds' arrays."""

    def __init__(self, d: Path):
        self.dir = d
        self.info = _read_json(d / INFO)
        for key in ("length_TS", "n_joints"):
            if key not in self.info:
                raise DataError(f"{d / INFO}: no {key!r} (Rehab-Pile's info.json has length_TS, n_joints, dim)")
        self.J = int(self.info["n_joints"])
        self.dim = int(self.info.get("dim", self.info.get("n_dim", 3)))
        if self.dim != 3:
            raise DataError(f"{d / INFO}: dim {self.dim}; rehabgen reads 3-D joint positions only")
        self.T = int(self.info["length_TS"])
        self.record = _read_json(d / RECORD) if (d / RECORD).is_file() else None
        self.folds = sorted(int(m.group(1)) for f in d.iterdir() if f.is_dir() and (m := re.fullmatch(r"fold(\d+)", f.name)))
        if not self.folds:
            raise DataError(f"{d}: no fold<k> folder")
        name = d.name
        rec = self.record or {}
        self.exercise = rec.get("exercise") or next(
            (e for e, a in KIMORE_ACRONYMS.items() if name.startswith("KIMORE") and name.endswith(f"_{a}")), name)
        if rec.get("skeleton"):
            self.skeleton = Skeleton.from_dict(rec["skeleton"], source=str(d / RECORD))
        elif self.J == 18 and name.startswith("KIMORE"):
            self.skeleton = KIMORE_18_SKELETON
        elif self.J == 25:
            self.skeleton = KINECT_V2
        else:
            self.skeleton = skeleton_from_tree(self.info.get("kinematic_tree"), self.J, f"rehab_pile_{self.J}")
        if self.skeleton.n_joints != self.J:
            raise DataError(f"{d / RECORD}: skeleton of {self.skeleton.n_joints} joints, info.json says {self.J}")
        # y -> score: our exports hold the score as it is; Rehab-Pile's KIMORE_reg holds TS on 0-100
        # (TS x 2, max_score_value 100), so TS = y * 50 / max_score_value either way
        self.score = (rec.get("score") or {}).get("name") or ("TS" if name.startswith("KIMORE") else "y")
        top = float(self.info.get("max_score_value", 100.0))
        self.y_factor = 50.0 / top if self.score == "TS" and top > 0 else 1.0
        self.fps = float(rec.get("fps") or 30.0)

    def arrays(self, k: int, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
        xf = self.dir / f"fold{k}" / f"x_{split}_fold{k}.npy"
        yf = self.dir / f"fold{k}" / f"y_{split}_fold{k}.npy"
        x, y = _load_npy(xf), _load_npy(yf)
        if x.ndim != 3 or x.shape[1] != self.J * self.dim or x.shape[2] != self.T:
            raise DataError(f"{xf}: shape {x.shape}, expected (N, {self.J * self.dim}, {self.T}) from info.json "
                            f"(n_joints {self.J} x dim {self.dim}, length_TS {self.T})")
        if not np.issubdtype(x.dtype, np.number):
            raise DataError(f"{xf}: array is not numeric (dtype {x.dtype})")
        y = np.asarray(y).reshape(-1)
        if y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.number):
            raise DataError(f"{yf}: {y.shape[0]} numeric value(s) expected one per row of {xf.name} ({x.shape[0]})")
        return x, y.astype(np.float64), xf

    def sequence(self, pos: np.ndarray, y: float, subject: str, group: str, source: str) -> Sequence:
        valid = np.isfinite(pos).all(-1)
        return Sequence(subject, group, self.exercise, pos.astype(np.float32), valid,
                        {self.score: float(y) * self.y_factor}, None, source)

    def fold_sequences(self, k: int) -> tuple[list[Sequence], list[str], list[int]]:
        """Every row of fold k (training rows, generated ones included, then test rows)."""
        rec_seqs = (self.record or {}).get("sequences")
        frec = None
        if self.record and k < len(self.record.get("folds", [])):
            frec = self.record["folds"][k]
        out, sides, generated = [], [], []
        for split in ("train", "test"):
            x, y, xf = self.arrays(k, split)
            pos = from_channels(x, self.J, self.dim)
            rows = frec[split] if frec else None
            gen = frec.get("generated", []) if frec and split == "train" else []
            for r in range(x.shape[0]):
                src = f"{xf}[{r}]"
                if rows is not None and r < len(rows):
                    s = rec_seqs[rows[r]]
                    subject, group = s["subject"], s.get("group", "")
                elif rows is not None and r - len(rows) < len(gen):
                    s = rec_seqs[gen[r - len(rows)][0]]
                    subject, group = s["subject"], s.get("group", "")
                    src = f"{src} generated from {s.get('source', '')}"
                    generated.append(len(out))
                else:
                    subject, group = f"{self.dir.name}:fold{k}:{split}{r}", ""
                out.append(self.sequence(pos[r], y[r], subject, group, src))
                sides.append(split)
        return out, sides, generated

    def all_sequences(self) -> list[Sequence]:
        """Each real sequence once: from our record when there is one, else every distinct row
        of every fold (test rows first), one subject per sequence."""
        if self.record and self.record.get("sequences") is not None and self.record.get("folds"):
            rec_seqs = self.record["sequences"]
            where: dict[int, tuple[int, str, int]] = {}
            for k, f in enumerate(self.record["folds"]):
                for side in ("test", "train"):
                    for r, i in enumerate(f[side]):
                        where.setdefault(i, (k, side, r))
            cache: dict[tuple[int, str], tuple] = {}
            out = []
            for i, s in enumerate(rec_seqs):
                if i not in where:
                    raise DataError(f"{self.dir / RECORD}: sequence {i} is in no fold")
                k, side, r = where[i]
                if (k, side) not in cache:
                    x, y, xf = self.arrays(k, side)
                    cache[(k, side)] = (from_channels(x, self.J, self.dim), y, xf)
                pos, y, xf = cache[(k, side)]
                out.append(self.sequence(pos[r], y[r], s["subject"], s.get("group", ""), f"{xf}[{r}]"))
            return out
        seen, out = set(), []
        for k in self.folds:
            for side in ("test", "train"):
                x, y, xf = self.arrays(k, side)
                pos = from_channels(x, self.J, self.dim)
                for r in range(x.shape[0]):
                    h = hashlib.sha1(np.ascontiguousarray(x[r]).tobytes() + np.float64(y[r]).tobytes()).hexdigest()
                    if h in seen:
                        continue
                    seen.add(h)
                    out.append(self.sequence(pos[r], y[r], f"{self.dir.name}:{len(out)}", "", f"{xf}[{r}]"))
        return out


def load_rehab_pile(path: str | Path, fold: int | None = None, progress: bool = False) -> Dataset:
    """A Rehab-Pile folder as a Dataset. `path`: a dataset folder (every sequence once), one of its
    fold<k> folders (that fold's rows: training, generated ones included, then test; which is
    which in `metadata["rehab_pile"]`), or a folder of datasets (e.g. OUT or OUT/regression: one
    exercise each). `fold` picks a fold of every dataset found."""
    p = Path(path)
    dirs, path_fold = _dataset_dirs(p)
    if not dirs:
        raise DataError(f"{p}: not a Rehab-Pile folder (expected {INFO} and fold<k>/x_train_fold<k>.npy, ...)")
    fold = path_fold if fold is None else fold
    folders = [_Folder(d) for d in dirs]
    first = folders[0]
    for f in folders[1:]:
        if not _same_skeleton(f.skeleton, first.skeleton):
            raise DataError(f"{f.dir / INFO}: {f.J} joints where {first.dir.name} has {first.J}: a Dataset holds one "
                            "skeleton (import these datasets one at a time)")
    seqs: list[Sequence] = []
    meta: dict = {"datasets": [f.dir.name for f in folders], "fold": fold, "split": [], "generated": [],
                  "has_record": [f.record is not None for f in folders]}
    for f in folders:
        if fold is None:
            seqs += f.all_sequences()
        else:
            if fold not in f.folds:
                raise DataError(f"{f.dir}: no fold{fold} (it has {', '.join(f'fold{k}' for k in f.folds)})")
            s, sides, gen = f.fold_sequences(fold)
            meta["generated"] += [len(seqs) + g for g in gen]
            meta["split"] += sides
            seqs += s
    exercises = tuple(sorted({s.exercise for s in seqs}))
    fps = float(np.median([f.fps for f in folders]))
    return Dataset(first.skeleton, seqs, [], exercises, fps,
                   {"source": str(p), "format": "rehab-pile", "preprocessing": [], "rehab_pile": meta})
