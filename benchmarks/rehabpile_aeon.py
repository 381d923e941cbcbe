"""Rehab-Pile folds, real vs real + generated, scored by an aeon regressor: does adding a
generator's samples to the training folds help a community regressor predict the clinical score
of patients it never saw?

    python benchmarks/rehabpile_aeon.py --data ../shared/data/kimore-patients --out /tmp/rp_bench \
        --train-steps 500 --per-real 1 --seed 0 --threads 1

1. Export the data in Rehab-Pile's layout (`rehabgen data export --format rehab-pile`): 5
   subject-wise folds, the same for every exercise.
2. Generators. Honest by default: one run per fold (`--train-steps N`), trained on that fold's
   training subjects only (its data: OUT/runs/fold<k>_data, a copy of those subjects' recordings),
   so no generator has seen the patients it is scored on. `--run RUN` uses given runs instead
   (one for all folds, or one per fold); a fold whose test subjects a run was trained on is
   marked "seen" in the table, and its real+generated number is optimistic.
3. Export again with `--add-generated` (`--per-real` samples per real training sequence,
   conditioned on its exercise and score), then for each exercise and fold fit the same aeon
   regressor on real and on real + generated training arrays, read from the .npy files and
   prepared as deep-rehab-pile's loader does (per-coordinate min-max from the training arrays,
   y / max_score_value), and score TS RMSE on the fold's real test patients.

Finished runs in OUT/runs are reused (rerun with another --per-real: only generation and regression
run again). Writes OUT/table.md and OUT/results.json (and copies named by --per-real); prints the table.
Needs aeon (`pip install 'aeon>=1.2,<1.7'`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np


def minmax(x_train: np.ndarray, x: np.ndarray, n_joints: int) -> np.ndarray:
    """deep-rehab-pile's skeleton scaling: per coordinate (x, y, z), min and max over the
    training array, applied to both sides."""
    def view(a):
        return a.reshape(len(a), n_joints, 3, a.shape[-1])

    tr, v = view(x_train), view(x)
    lo = tr.min(axis=(0, 1, 3), keepdims=True)
    hi = tr.max(axis=(0, 1, 3), keepdims=True)
    return ((v - lo) / np.maximum(hi - lo, 1e-9)).reshape(x.shape).astype(np.float32)


def fit_predict(x_tr, y_tr, x_te, n_joints, top, kernels, seeds) -> np.ndarray:
    """Mean TS prediction of MiniRocket regressors (one per seed) on the fold."""
    from aeon.regression.convolution_based import MiniRocketRegressor

    a, b = minmax(x_tr, x_tr, n_joints), minmax(x_tr, x_te, n_joints)
    preds = [MiniRocketRegressor(n_kernels=kernels, random_state=s, n_jobs=1).fit(a, y_tr / top).predict(b) * top
             for s in seeds]
    return np.mean(preds, axis=0)


def train_fold_runs(ds, folds_subjects: list[list[str]], out: Path, steps: int, seed: int) -> list[Path]:
    """One run per fold on that fold's training subjects (their recordings copied to a generic
    folder beside the run, so the run is an ordinary `rehabgen train` run folder)."""
    from rehabgen.config import RunConfig
    from rehabgen.data.generic import write_generic
    from rehabgen.runs import train_run

    runs = []
    for k, test in enumerate(folds_subjects):
        run, data = out / f"fold{k}", out / f"fold{k}_data"
        if not (run / "model" / "model.json").is_file():
            train_subjects = sorted(set(ds.subjects) - set(test))
            if not (data / "labels.csv").is_file():
                write_generic(data, ds.by_subjects(train_subjects))
            print(f"training fold {k}'s generator on {len(train_subjects)} subjects ({steps} steps)", flush=True)
            resume = (run / "checkpoint").is_dir()
            train_run(RunConfig(data=str(data), seed=seed, steps=steps, test_fraction=0.0), run, resume=resume,
                      steps=steps)
        runs.append(run)
    return runs


def ms(v) -> str:
    v = np.asarray(v, np.float64)
    return f"{v.mean():.2f} ± {v.std():.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/kimore-patients")
    ap.add_argument("--out", required=True)
    ap.add_argument("--run", action="append", default=[], help="trained run(s): one, or one per fold")
    ap.add_argument("--train-steps", type=int, default=500, help="steps of each per-fold run (without --run)")
    ap.add_argument("--per-real", type=int, default=1)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--length", type=int, default=None, help="export length [default: each exercise's mean]")
    ap.add_argument("--kernels", type=int, default=10000, help="MiniRocket kernels")
    ap.add_argument("--reg-seeds", type=int, default=3, help="MiniRocket seeds averaged per fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from rehabgen.data import load_dataset
    from rehabgen.data.rehabpile import RECORD, export_rehab_pile
    from rehabgen.runs import load_model, versions
    from rehabgen.threads import use_threads

    print(use_threads(args.threads), flush=True)
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.data)
    opts = dict(folds=args.folds, length=args.length, seed=args.seed)
    real_dir = out / "export_real"
    top = export_rehab_pile(ds, real_dir, **opts)
    folds_subjects = top["fold_subjects"]

    t_train = time.time()
    if args.run:
        runs = [Path(r) for r in args.run]
        if len(runs) not in (1, args.folds):
            raise SystemExit(f"--run: {len(runs)} runs for {args.folds} folds; give one, or one per fold")
        runs = runs * args.folds if len(runs) == 1 else runs
        design = "given run(s)"
    else:
        runs = train_fold_runs(ds, folds_subjects, out / "runs", args.train_steps, args.seed)
        design = f"one run per fold, {args.train_steps} steps, trained on the fold's training subjects only"
    t_train = time.time() - t_train
    loaded = {r: load_model(r) for r in dict.fromkeys(runs)}
    seen = []
    for r in runs:
        sp = r / "split.json"
        seen.append(set(json.loads(sp.read_text())["train"]) if sp.is_file() else None)
    gen_dir = out / f"export_gen_x{args.per_real}"
    t_gen = time.time()
    export_rehab_pile(ds, gen_dir, **opts, models=[loaded[r] for r in runs], model_labels=[str(r) for r in runs],
                      model_subjects=seen, per_real=args.per_real, log=print)
    t_gen = time.time() - t_gen
    leak = [sorted(set(folds_subjects[k]) & s) if s is not None else None for k, s in enumerate(seen)]

    t_reg = time.time()
    results = []
    for d in top["datasets"]:
        name = d["name"]
        info = json.loads((real_dir / "regression" / name / "info.json").read_text())
        J, top_score = info["n_joints"], float(info["max_score_value"])
        rec = json.loads((gen_dir / "regression" / name / RECORD).read_text())
        per_fold = []
        for k in range(args.folds):
            f = gen_dir / "regression" / name / f"fold{k}"
            x_tr, y_tr = np.load(f / f"x_train_fold{k}.npy"), np.load(f / f"y_train_fold{k}.npy")
            x_te, y_te = np.load(f / f"x_test_fold{k}.npy"), np.load(f / f"y_test_fold{k}.npy")
            n_real = len(rec["folds"][k]["train"])
            real = fit_predict(x_tr[:n_real], y_tr[:n_real], x_te, J, top_score, args.kernels, range(args.reg_seeds))
            both = fit_predict(x_tr, y_tr, x_te, J, top_score, args.kernels, range(args.reg_seeds))

            def rmse(p):
                return float(np.sqrt(np.mean((p - y_te) ** 2)))

            per_fold.append({"fold": k, "n_test": len(y_te), "n_train_real": n_real, "n_generated": len(y_tr) - n_real,
                             "rmse_mean_predictor": rmse(np.full_like(y_te, y_tr[:n_real].mean())),
                             "rmse_real": rmse(real), "rmse_real_gen": rmse(both),
                             "generator_saw_test_subjects": leak[k]})
            print(f"{name} fold {k}: real {per_fold[-1]['rmse_real']:.2f}  real+gen {per_fold[-1]['rmse_real_gen']:.2f}"
                  f"  (mean predictor {per_fold[-1]['rmse_mean_predictor']:.2f}, n_test {len(y_te)})", flush=True)
        results.append({"dataset": name, "exercise": d["exercise"], "folds": per_fold})
    t_reg = time.time() - t_reg

    honest = all(not x for x in leak if x is not None) and all(x is not None for x in leak)
    lines = [f"TS RMSE (0-50 scale; x2 for Rehab-Pile's 0-100) of aeon MiniRocketRegressor ({args.kernels} kernels, "
             f"mean of {args.reg_seeds} seeds) on {args.folds} subject-wise folds, mean ± std over folds. "
             f"Generated: {args.per_real} per real training sequence; generators: {design}"
             + ("" if honest else "; SOME GENERATORS SAW TEST SUBJECTS (see 'seen')") + ".", "",
             "| dataset | exercise | n test | mean predictor | real | real + generated | difference | folds better |",
             "|---|---|---|---|---|---|---|---|"]
    all_real, all_gen = [], []
    for r in results:
        f = r["folds"]
        a, b = [x["rmse_real"] for x in f], [x["rmse_real_gen"] for x in f]
        all_real += a
        all_gen += b
        lines.append(f"| {r['dataset']} | {r['exercise']} | {sum(x['n_test'] for x in f)} | "
                     f"{ms([x['rmse_mean_predictor'] for x in f])} | {ms(a)} | {ms(b)} | "
                     f"{np.mean(b) - np.mean(a):+.2f} | {sum(y < x for x, y in zip(a, b))}/{len(f)} |")
    lines.append(f"| all | | {sum(x['n_test'] for r in results for x in r['folds'])} | | {ms(all_real)} | "
                 f"{ms(all_gen)} | {np.mean(all_gen) - np.mean(all_real):+.2f} | "
                 f"{sum(y < x for x, y in zip(all_real, all_gen))}/{len(all_real)} |")
    if not honest:
        lines += ["", "seen: " + "; ".join(f"fold {k}: {', '.join(v) if v else 'none'}" for k, v in enumerate(leak))]
    table = "\n".join(lines)
    print(table)
    for f in ("table.md", f"table_x{args.per_real}.md"):  # the latest, and one per --per-real
        (out / f).write_text(table + "\n")
    meta = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)",
            "threads": args.threads, "args": vars(args), "data": str(Path(args.data).resolve()),
            "runs": [str(r) for r in runs], "design": design, "honest": honest, "leak": leak,
            "seconds": {"train": round(t_train), "generate_export": round(t_gen), "regress": round(t_reg),
                        "total": round(time.time() - t0)}, "versions": versions()}
    try:
        import aeon

        meta["versions"]["aeon"] = aeon.__version__
    except ImportError:
        pass
    for f in ("results.json", f"results_x{args.per_real}.json"):
        (out / f).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    print(json.dumps(meta["seconds"]))


if __name__ == "__main__":
    main()
