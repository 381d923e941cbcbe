"""Downstream utility: does generated data help a rehabilitation-assessment model?

Protocol. Subject-wise k folds over the generative model's training subjects. In every fold a
fresh assessment network (FCN with two heads: clinical score and exercise) is trained on the
fold's training subjects under each condition:
  real             real sequences only;
  real+generated   plus one generated sequence per real one, conditioned on its exercise and score;
  real+windows     (when the caller gives the generator's training windows) plus one window per
                   real one: the same recording cut as the generator saw it in training, labelled
                   with its true score. The control for real+generated: what the generated data
                   add beyond the generator's own training material (on the 21 KIMORE patients,
                   5 runs x 3 study seeds: −6.5 % against real only, real+generated −8.5 %);
  real+augmented   plus one classic augmentation per real one (jitter, time-warp, scaling);
                   (`n_gen_per_real` n: n of either per real one, each real one counted n times,
                   so half the mix stays real; on KIMORE 3 gave no gain over 1: see the README)
  tstr             generated sequences only (train on synthetic, test on real);
  exercise-mean    no network: each exercise's mean training score (real sequences of the fold).
The last is the no-skill baseline: an assessor that does not beat it has learned nothing from
the motion that carries over to new subjects (on the 21 real KIMORE patients, 3 folds of ~57
training recordings, the real-only FCN is 20 % worse than it: it overfits).
Each fold model is tested on the fold's held-out subjects and on the held-out test subjects of
the run. Only the latter is fully honest: the generator saw every training subject, so its
samples may carry information about a fold's held-out subjects. Mean ± std over folds (and over
`assessor_seeds` initialisations of each fold's networks: on the 21 KIMORE patients another
study seed, i.e. other folds and initialisations, moved real + generated against real only from
−10 % to −3 % on the same 3 generator runs).
Besides RMSE, each test reports its two parts: `bias` (how far each exercise's mean prediction
is from its mean truth) and `within_r` (the correlation of predictions and truths within each
exercise, i.e. whether the assessor ranks new patients at all; the baseline has none). On the
21 KIMORE patients (5 runs × 3 study seeds, held-out patients) the real-only FCN does not rank
them (r 0.05); with generated data r 0.17 and the bias 7.0 TS against 7.6.
"""

from __future__ import annotations

import numpy as np
import torch

from rehabgen.config import GEN_SCORES
from rehabgen.data.dataset import DataError, Dataset, score_range
from rehabgen.data.splits import subject_kfold
from rehabgen.metrics.evaluator import EVAL_LENGTH, eval_inputs, eval_inputs_from_positions, train_fcn
from rehabgen.samples import pad_sequences

CONDITIONS = ("real", "real+generated", "real+augmented", "tstr", "exercise-mean")
WINDOWS = "real+windows"  # the control, after real+generated when the caller gives `windows`
BASELINE = "exercise-mean"


def classic_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Jitter + random monotone time-warp + small scaling of each sequence x (n, T, C)."""
    n, T, C = x.shape
    out = np.empty_like(x)
    t = np.arange(T)
    for i in range(n):
        speed = np.exp(np.convolve(rng.normal(0, 0.35, T), np.ones(9) / 9, mode="same"))
        warp = np.concatenate([[0.0], np.cumsum(speed[:-1])])
        warp = warp / warp[-1] * (T - 1)
        xi = np.stack([np.interp(warp, t, x[i, :, c]) for c in range(C)], -1)
        out[i] = xi * rng.uniform(0.95, 1.05) + rng.normal(0, 0.01, xi.shape)
    return out


def _train_assessor(x, ex, u, n_ex, steps, seed, device=None):
    """FCN with a score head and an exercise head; u (n,) in [0,1] or NaN (ignored)."""
    return train_fcn(x, steps, seed, labels=ex, n_classes=n_ex, scores=u, score_weight=4.0, device=device)


def _half_real(x, ex, u, x2, ex2, u2, n: int):
    """Real sequences (each n times) then n extra ones per real one: whatever n, half of what
    the assessor draws is real, and a larger n only widens the pool the other half comes from."""
    return (np.concatenate([np.repeat(x, n, 0), x2]), np.concatenate([np.repeat(ex, n), ex2]),
            np.concatenate([np.repeat(u, n), u2]))


def _predict(net, x):
    with torch.no_grad():
        out = net(torch.from_numpy(x).float()).numpy()
    return np.clip(out[:, 0], 0, 1), out[:, 1:].argmax(-1)


def _within_exercise(pred_u, true_u, true_ex) -> tuple[float, float]:
    """(bias, r) in the unit scale. RMSE² = bias² + within-exercise error², where bias² is the
    sequence-weighted mean of (mean prediction − mean truth)² per exercise and r is the Pearson
    correlation of predictions and truths after removing each exercise's means: whether the
    assessor ranks new patients within an exercise (r > 0) or only moves its level. NaN r when
    the predictions or truths do not vary within exercises (the no-skill baseline's)."""
    p, t = np.array(pred_u, np.float64), np.array(true_u, np.float64)
    bias2 = 0.0
    for e in np.unique(true_ex):
        s = true_ex == e
        bias2 += (p[s].mean() - t[s].mean()) ** 2 * s.sum()
        p[s] -= p[s].mean()
        t[s] -= t[s].mean()
    sp, st = np.sqrt((p ** 2).mean()), np.sqrt((t ** 2).mean())
    r = float((p * t).mean() / (sp * st)) if sp > 1e-9 and st > 1e-9 else float("nan")
    return float(np.sqrt(bias2 / len(p))), r


def _scores(pred_u, true_u, pred_ex, true_ex, lo, hi, exercises) -> dict:
    ok = np.isfinite(true_u)
    rmse = mae = bias = r = float("nan")  # no scored sequence: nothing to measure
    if ok.any():
        err = (pred_u - true_u)[ok]
        rmse, mae = float(np.sqrt((err ** 2).mean())), float(np.abs(err).mean())
        bias, r = _within_exercise(pred_u[ok], true_u[ok], true_ex[ok])
    res = {"rmse": rmse * (hi - lo), "mae": mae * (hi - lo), "rmse_unit": rmse,
           "bias": bias * (hi - lo), "within_r": r,
           "accuracy": float((pred_ex == true_ex).mean()), "per_exercise": {}}
    for e, name in enumerate(exercises):
        sel = ok & (true_ex == e)
        if sel.any():
            d = pred_u[sel] - true_u[sel]
            res["per_exercise"][name] = {"rmse": float(np.sqrt((d ** 2).mean()) * (hi - lo)),
                                         "mae": float(np.abs(d).mean() * (hi - lo))}
    return res


def _no_skill(prior, true_u, true_ex, lo, hi, exercises) -> dict:
    """Scores of predicting each exercise's mean training score (the exercise is given: no accuracy);
    an exercise with no scored training sequence gets the middle of the scale."""
    res = _scores(np.nan_to_num(prior[true_ex], nan=0.5), true_u, true_ex, true_ex, lo, hi, exercises)
    res["accuracy"] = float("nan")
    return res


def _aggregate(runs: list[dict]) -> dict:
    """List of nested dicts of floats -> same nesting with {mean, std, runs} leaves."""
    first = runs[0]
    out = {}
    for k, v in first.items():
        if isinstance(v, dict):
            keys = [r[k] for r in runs if k in r]
            common = [kk for kk in v if all(kk in d for d in keys)]  # in the first run's order
            out[k] = _aggregate([{kk: d[kk] for kk in common} for d in keys]) if common else {}
        else:
            vals = [r[k] for r in runs if k in r]
            some = np.isfinite(vals).any()  # all-NaN (the baseline's accuracy) stays NaN, quietly
            out[k] = {"mean": float(np.nanmean(vals)) if some else float("nan"),
                      "std": float(np.nanstd(vals)) if some else float("nan"), "runs": vals}
    return out


def assessment_study(train_ds: Dataset, test_ds: Dataset, generate=None, k: int = 3, seed: int = 0,
                     n_gen_per_real: int = 1, steps: int = 300, score_name: str = "TS", progress: bool = False,
                     gen_scores: str = "matched", device=None, assessor_seeds: int = 1, repeats: int = 1,
                     windows=None) -> dict:
    """Run the protocol above. `generate(exercises: list[str], scores: ndarray, seed) -> (n, T, J, 3)`
    metres; None skips the conditions that need it. `windows(seed, copies) -> list of (T_i, J, 3)`
    metres: `copies` windows of every training sequence, copy j of sequence i at j * n + i (the
    real+windows control; None skips it). `gen_scores`: "matched" conditions each
    generated sequence on its real sequence's score; "balanced" on a score drawn uniformly over
    that exercise's training range (more samples where real scores are rare), labelled with it.
    `assessor_seeds`: networks trained per fold and condition from different initialisations, each
    scored on its own (the first seed is the single-seed study's). `repeats`: the whole study with
    seeds `seed` ... `seed + repeats - 1` (other folds, score draws, generated data and
    initialisations), every fold of every repeat one entry of the mean ± std: on the 21 KIMORE
    patients one study seed against another moved the generated data's effect more than the
    effect itself, so a published number averages several."""
    if gen_scores not in GEN_SCORES:
        raise ValueError(f"gen_scores must be 'matched' or 'balanced', got {gen_scores!r}")
    if assessor_seeds < 1:
        raise ValueError(f"assessor_seeds must be >= 1, got {assessor_seeds}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if n_gen_per_real < 1:
        raise ValueError(f"n_gen_per_real must be >= 1, got {n_gen_per_real}")
    results, fold_info = None, []
    for r in range(repeats):
        res, info, (lo, hi), ex_names = _one_study(
            train_ds, test_ds, generate, k, seed + r, n_gen_per_real, steps, score_name,
            progress and ("downstream study" + (f" {r + 1}/{repeats}" if repeats > 1 else "")), gen_scores,
            device, assessor_seeds, windows)
        results = res if results is None else {c: {side: results[c][side] + runs for side, runs in v.items()}
                                               for c, v in res.items()}
        fold_info += [{**f, "study_seed": seed + r} for f in info] if repeats > 1 else info
    summary = {c: {side: _aggregate(runs) for side, runs in v.items() if runs} for c, v in results.items()}
    return {"protocol": __doc__.strip(), "k": k, "score": score_name, "gen_scores": gen_scores,
            "assessor_seeds": assessor_seeds, "repeats": repeats, "n_gen_per_real": n_gen_per_real,
            "score_range": [lo, hi], "exercises": list(ex_names), "input_length": EVAL_LENGTH, "folds": fold_info,
            "conditions": summary}


def _one_study(train_ds, test_ds, generate, k, seed, n_gen_per_real, steps, score_name, progress, gen_scores,
               device, assessor_seeds, windows=None):
    """One study seed: (per condition and side the list of per-fold scores, the folds' subject
    lists, the score range, the exercise names). `progress`: the progress bar's label, or False."""
    folds = subject_kfold(train_ds, k=k, seed=seed)
    ex_names = tuple(train_ds.exercises)
    x, ex, sc = eval_inputs(train_ds, score_name)
    lo, hi = score_range(score_name, sc)
    u = (sc - lo) / (hi - lo)
    xt, ext, sct = eval_inputs(test_ds, score_name) if len(test_ds) else (None, None, None)
    ut = (sct - lo) / (hi - lo) if xt is not None else None
    mean = x.reshape(-1, x.shape[-1]).mean(0)
    std = x.reshape(-1, x.shape[-1]).std(0) + 1e-3

    def z(a):
        return ((a - mean) / std).astype(np.float32)

    conditions = ["real", "real+augmented", BASELINE]
    xg = None
    if generate is not None:
        conditions = list(CONDITIONS)
        reps = np.repeat(np.arange(len(train_ds)), n_gen_per_real)
        names = [train_ds[i].exercise for i in reps]
        gen_sc = sc[reps].copy()
        if gen_scores == "balanced":
            draw = np.random.default_rng(seed + 1)
            for e in np.unique(ex):
                known = (ex == e) & np.isfinite(sc)
                sel = (ex[reps] == e) & np.isfinite(gen_sc)
                if known.any():
                    gen_sc[sel] = draw.uniform(sc[known].min(), sc[known].max(), sel.sum())
        pos = generate(names, gen_sc, seed)
        xg = eval_inputs_from_positions(pos, train_ds.skeleton, ex[reps], gen_sc)[0]
        ug = (gen_sc - lo) / (hi - lo)  # the generated sequences' own labels
        gen_of = reps
    xw = None
    if windows is not None:  # its own generator: the other conditions' data stay as without it
        conditions.insert(conditions.index("real+generated") + 1 if generate is not None else 1, WINDOWS)
        cut = windows(seed + 2, n_gen_per_real)
        if len(cut) != n_gen_per_real * len(train_ds):
            raise ValueError(f"windows(seed, {n_gen_per_real}) gave {len(cut)} sequences, expected "
                             f"{n_gen_per_real} x {len(train_ds)} (one per training sequence per copy)")
        lengths = np.array([len(w) for w in cut])
        xw = eval_inputs_from_positions(pad_sequences(cut), train_ds.skeleton, np.tile(ex, n_gen_per_real),
                                        np.tile(sc, n_gen_per_real), lengths=lengths)[0]
    rng = np.random.default_rng(seed)
    # xa[j * len(x) + i] is augmentation j of x[i]
    xa = np.concatenate([classic_augment(x, rng) for _ in range(n_gen_per_real)])
    results = {c: {"fold_test": [], "held_out_test": []} for c in conditions}
    fold_info = []
    it = enumerate(folds)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(list(it), desc=progress, unit="fold")
    for f, (tr, te) in it:
        tr_subj = {train_ds[i].subject for i in tr}
        te_subj = {train_ds[i].subject for i in te}
        if tr_subj & te_subj:
            raise DataError(f"fold {f}: subjects on both sides: {sorted(tr_subj & te_subj)}")
        fold_info.append({"train_subjects": sorted(tr_subj), "test_subjects": sorted(te_subj)})
        tr, te = np.array(tr), np.array(te)
        for c in conditions:
            if c == BASELINE:
                prior = np.full(len(ex_names), np.nan)
                for e in range(len(ex_names)):
                    known = u[tr][(ex[tr] == e) & np.isfinite(u[tr])]
                    if known.size:
                        prior[e] = known.mean()
                results[c]["fold_test"].append(_no_skill(prior, u[te], ex[te], lo, hi, ex_names))
                if xt is not None:
                    results[c]["held_out_test"].append(_no_skill(prior, ut, ext, lo, hi, ex_names))
                continue
            if c == "real":
                X, E, U = x[tr], ex[tr], u[tr]
            elif c in ("real+augmented", WINDOWS):
                a_sel = np.concatenate([tr + j * len(train_ds) for j in range(n_gen_per_real)])
                X, E, U = _half_real(x[tr], ex[tr], u[tr], (xa if c == "real+augmented" else xw)[a_sel],
                                     np.tile(ex[tr], n_gen_per_real), np.tile(u[tr], n_gen_per_real), n_gen_per_real)
            else:
                g_sel = np.flatnonzero(np.isin(gen_of, tr))
                if c == "tstr":
                    X, E, U = xg[g_sel], ex[gen_of[g_sel]], ug[g_sel]
                else:
                    X, E, U = _half_real(x[tr], ex[tr], u[tr], xg[g_sel], ex[gen_of[g_sel]], ug[g_sel], n_gen_per_real)
            for r in range(assessor_seeds):
                net = _train_assessor(z(X), E, U, len(ex_names), steps, seed + 17 * f + 1009 * r, device)
                pu, pe = _predict(net, z(x[te]))
                results[c]["fold_test"].append(_scores(pu, u[te], pe, ex[te], lo, hi, ex_names))
                if xt is not None:
                    pu, pe = _predict(net, z(xt))
                    results[c]["held_out_test"].append(_scores(pu, ut, pe, ext, lo, hi, ex_names))
    return results, fold_info, (lo, hi), ex_names
