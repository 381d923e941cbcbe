"""`rehabgen evaluate`: every metric of a trained model next to its real-data reference.

Protocol (one sample set S compared with the real training data, as in the IRIMAS framework):

- The evaluator networks (exercise classifier, score regressor) are trained on the run's
  training subjects only; their penultimate features are the space of the distribution metrics.
- Generated: for every real held-out (test) sequence, one sample conditioned on its exercise
  and score, so generated and reference sets have the same size and label distribution.
  Repeated with `repeats` seeds.
- Reference: the real held-out sequences themselves (bootstrap-resampled per repeat) — the
  value a perfect generator would reach. Both are measured against the real training set.
- Downstream utility: `metrics.downstream.assessment_study` (subject-wise CV; the honest
  numbers are on subjects the generator never saw).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from rehabgen.data import DataError, load_dataset
from rehabgen.data.dataset import Dataset
from rehabgen.runs import load_model, load_split, versions, write_json, split_dataset

# which way is better, for the report's arrows
HIGHER_IS_BETTER = {"accuracy", "precision", "recall", "density", "coverage", "apd", "acpd", "wpd",
                    "r_precision_top1", "r_precision_top2", "r_precision_top3", "text_accuracy"}
LOWER_IS_BETTER = {"fid", "fid_regressor", "score_mae", "bone_length_error", "bone_length_deviation", "limb_violations",
                   "velocity_w", "acceleration_w", "jerk_w", "mm_distance", "text_fid"}
# diversity-type metrics are best when close to the real value, not maximal
CLOSE_TO_REAL = {"apd", "acpd", "wpd", "mms"}


def cache_dir() -> Path:
    return Path(os.environ.get("REHABGEN_CACHE", Path.home() / ".cache" / "rehabgen"))


def _model_space_real(model, ds: Dataset) -> np.ndarray:
    """Real sequences the way the model saw them (its preprocessing), back in metres, (n, T, J, 3)
    padded by holding the last frame; for kinematic comparisons at the model's frame rate."""
    from rehabgen.preprocess import PreprocessConfig, preprocess_dataset

    # the model's preprocessing, but every gap filled: the reference must not contain holes
    pcfg = PreprocessConfig(**{**model.spec.preprocess, "max_gap": 10 ** 6,
                               "buckets": tuple(model.spec.preprocess.get("buckets", ()))})
    pre, tfs = preprocess_dataset(ds, pcfg)
    seqs = []
    for s, tf in zip(pre.sequences, tfs):
        p = s.positions[: model.spec.max_len].astype(np.float64)
        ok = np.isfinite(p).all(-1)
        p = np.where(ok[..., None], p, 0.0)
        seqs.append(tf.invert(p).astype(np.float32))
    return seqs


def _pad(seqs: list[np.ndarray]) -> np.ndarray:
    T = max(s.shape[0] for s in seqs)
    return np.stack([np.concatenate([s, np.repeat(s[-1:], T - s.shape[0], 0)]) for s in seqs])


def generate_for(model, exercises: list[str], scores: np.ndarray, seed: int, steps: int | None = None,
                 length: int | None = None) -> list[np.ndarray]:
    """One sample per (exercise, score), at `length` frames or each exercise's typical length."""
    out: list[np.ndarray | None] = [None] * len(exercises)
    kw = {"steps": steps} if steps and model.family == "diffusion" else {}
    for k, e in enumerate(sorted(set(exercises))):
        idx = [i for i, x in enumerate(exercises) if x == e]
        sc = np.asarray(scores, np.float32)[idx]
        x = model.sample(e, sc, n=len(idx), length=length, seed=seed * 1000 + k, **kw)
        for j, i in enumerate(idx):
            out[i] = x[j]
    return out


def sample_set_metrics(ev, skeleton, exercises_vocab, S_pos: list[np.ndarray], S_ex: list[str], S_score: np.ndarray,
                       R_feats: dict, R_pos: list[np.ndarray], ref_bones: np.ndarray, fps: float, rng) -> dict:
    """Every metric of one sample set S against the real training set R."""
    from rehabgen.metrics import (
        accuracy, average_pair_distance, bone_length_deviation, bone_length_error, fid,
        kinematic_wasserstein, limb_constraint_violations, mean_max_similarity, precision_recall_density_coverage,
        score_mae, warping_path_diversity,
    )
    from rehabgen.metrics.evaluator import eval_inputs_from_positions

    ex_idx = np.array([exercises_vocab.index(e) for e in S_ex])
    x = eval_inputs_from_positions(_pad(S_pos), skeleton, ex_idx, S_score)[0]
    f_cls = ev.features(x, "classifier")
    f_reg = ev.features(x, "regressor")
    pred_ex = ev.predict_exercise(x)
    pred_sc = ev.predict_score(x)
    known = np.isfinite(S_score)
    prdc = precision_recall_density_coverage(R_feats["classifier"], f_cls, k=5)
    S_arr = _pad(S_pos)
    out = {
        "fid": fid(R_feats["classifier"], f_cls),
        "fid_regressor": fid(R_feats["regressor"], f_reg),
        "accuracy": accuracy(pred_ex, ex_idx),
        "score_mae": score_mae(pred_sc[known], S_score[known]) if known.any() else float("nan"),
        **prdc,
        "mms": mean_max_similarity(R_feats["classifier"], f_cls),
        "apd": average_pair_distance(f_cls, rng=rng),
        "acpd": _acpd(f_cls, ex_idx, rng),
        "wpd": warping_path_diversity(x, n_pairs=min(100, len(x) * 2), n_runs=2, rng=rng),
        "bone_length_error": bone_length_error(S_arr, skeleton.bones, ref_bones),
        "bone_length_deviation": bone_length_deviation(S_arr, skeleton.bones, ref_bones),
        "limb_violations": limb_constraint_violations(S_arr, skeleton.bones, ref_bones, tol=0.1),
    }
    kin = kinematic_wasserstein(_pad(R_pos), S_arr, fps=fps)
    out.update({"velocity_w": kin["velocity"], "acceleration_w": kin["acceleration"], "jerk_w": kin["jerk"]})
    return {k: float(v) for k, v in out.items()}


def _acpd(f, labels, rng) -> float:
    """Per-exercise diversity; undefined (NaN) when no exercise has two samples in the set."""
    from rehabgen.metrics import average_per_class_pair_distance

    try:
        return average_per_class_pair_distance(f, labels, rng=rng)
    except ValueError:
        return float("nan")


def _mean_std(runs: list[dict]) -> dict:
    """{metric: {mean, std, runs}}; NaN runs (undefined on a set) are left out of mean and std."""
    out = {}
    for k in runs[0]:
        vals = np.array([r[k] for r in runs], np.float64)
        ok = vals[np.isfinite(vals)]
        out[k] = {"mean": float(ok.mean()) if ok.size else float("nan"),
                  "std": float(ok.std()) if ok.size else float("nan"), "runs": vals.tolist()}
    return out


def evaluate_run(run_dir: str | Path, data: str | Path, out: str | Path, n: int | None = None, seed: int = 0,
                 repeats: int = 3, downstream: bool = True, folds: int = 3, steps: int | None = None,
                 evaluator_steps: int | None = None, progress: bool = True) -> dict:
    """Evaluate a run; writes metrics.json, report.md, plots and a GIF into `out`."""
    from rehabgen.metrics.evaluator import Evaluator, eval_inputs
    from rehabgen.metrics.plausibility import reference_bone_lengths

    t0 = time.time()
    run_dir, out = Path(run_dir), Path(out)
    model = load_model(run_dir)
    ds = load_dataset(data)
    if tuple(ds.exercises) != tuple(model.spec.exercises):
        raise DataError(f"{data}: exercises {list(ds.exercises)} differ from the model's {list(model.spec.exercises)}")
    train_ds, test_ds = load_split(run_dir, ds)
    if len(test_ds) == 0:
        train_ds, test_ds, _ = split_dataset(ds, 0.2, seed)
    score_name = model.spec.score_name
    fit_kw = {"steps": evaluator_steps} if evaluator_steps else {}
    ev = Evaluator.cached(train_ds, cache_dir() / "evaluators", key_extra={"score": score_name, "seed": seed},
                          score_name=score_name, seed=seed, progress=progress, **fit_kw)
    ev_report = ev.evaluate(test_ds)

    x_train = eval_inputs(train_ds)[0]
    R_feats = {"classifier": ev.features(x_train, "classifier"), "regressor": ev.features(x_train, "regressor")}
    R_pos = _model_space_real(model, train_ds)
    T_pos = _model_space_real(model, test_ds)
    ref_bones = reference_bone_lengths(_pad(R_pos), model.spec.skeleton.bones)
    cond_ex = [s.exercise for s in test_ds.sequences]
    cond_sc = np.array([s.score(score_name) for s in test_ds.sequences], np.float32)
    m = n or len(cond_ex)
    reps = np.arange(m) % len(cond_ex)
    cond_ex, cond_sc = [cond_ex[i] for i in reps], cond_sc[reps]
    # a score must be in range for conditioning; unknown scores leave the score free
    rng = np.random.default_rng(seed)
    gen_runs, ref_runs, samples = [], [], None
    it = range(repeats)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="evaluate", unit="repeat")
    for r in it:
        G = generate_for(model, cond_ex, cond_sc, seed + r, steps)
        if samples is None:
            samples = G
        gen_runs.append(sample_set_metrics(ev, model.spec.skeleton, list(model.spec.exercises), G, cond_ex, cond_sc,
                                           R_feats, R_pos, ref_bones, model.spec.fps, rng))
        boot = rng.integers(0, len(T_pos), len(T_pos)) if r > 0 else np.arange(len(T_pos))
        ref_runs.append(sample_set_metrics(ev, model.spec.skeleton, list(model.spec.exercises),
                                           [T_pos[i] for i in boot], [test_ds[i].exercise for i in boot],
                                           np.array([test_ds[i].score(score_name) for i in boot], np.float32),
                                           R_feats, R_pos, ref_bones, model.spec.fps, rng))
    gen, ref = _mean_std(gen_runs), _mean_std(ref_runs)
    metrics = {k: {"generated": gen[k], "real_reference": ref[k]} for k in gen}
    text_checks = None
    if model.spec.text_encoder:
        text_metrics, text_checks = evaluate_text(model, ev, train_ds, test_ds, seed, repeats, steps)
        metrics.update(text_metrics)

    study = None
    if downstream:
        from rehabgen.metrics.downstream import assessment_study

        L = int(np.median(list(model.spec.default_length.values())))

        def gen_fn(exs, scores, s):
            return _pad(generate_for(model, exs, scores, s, steps, length=L))

        study = assessment_study(train_ds, test_ds, gen_fn, k=folds, seed=seed, progress=progress)

    result = {
        "run": str(run_dir), "data": str(data), "family": model.family, "model_step": model.step,
        "n_generated_per_repeat": m, "repeats": repeats, "seed": seed,
        "n_train_sequences": len(train_ds), "n_test_sequences": len(test_ds),
        "evaluator": ev_report, "metrics": metrics, "text": text_checks, "downstream": study,
        "protocol": __doc__.strip(), "seconds": round(time.time() - t0, 1), "versions": versions(),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", result)
    write_json(out / "config.json", {"command": "evaluate", "run": str(run_dir), "data": str(data), "n": n, "seed": seed,
                                     "repeats": repeats, "downstream": downstream, "folds": folds, "steps": steps})
    from rehabgen.report import write_report

    report = write_report(out, result, model, samples, cond_ex, cond_sc, R_feats, ev, train_ds, test_ds, R_pos)
    result["report"] = str(report)
    return result


def evaluate_text(model, ev, train_ds: Dataset, test_ds: Dataset, seed: int, repeats: int,
                  steps: int | None = None, n_per_prompt: int = 4) -> tuple[dict, dict]:
    """Text-to-motion metrics for a text-conditioned model, each next to its real reference.

    Prompts are held-out paraphrases (never trained on) built for each real test sequence from
    its exercise, score and duration. Generated: motions sampled from those prompts alone (no
    label). Reference: the real test motions with the same prompts. Plus two checks: exercise
    accuracy of prompt-only samples, and whether "performed well" / "performed poorly" prompts
    move the predicted score in the stated direction, per exercise."""
    from rehabgen.metrics.evaluator import eval_inputs, eval_inputs_from_positions
    from rehabgen.text.retrieval import TextMotionEvaluator, r_precision, sequence_texts, text_fid

    lo, hi = model.spec.normalizer.score_lo, model.spec.normalizer.score_hi
    tme = TextMotionEvaluator.cached(train_ds, cache_dir() / "retrieval", encoder=model.spec.text_encoder, seed=seed,
                                     score_range=(lo, hi))
    texts = [ts[0] for ts in sequence_texts(test_ds, lo, hi, 1, "test", seed)]
    labels = np.array([test_ds.exercise_index(s.exercise) for s in test_ds.sequences])
    x_real = eval_inputs(test_ds)[0]
    x_train = eval_inputs(train_ds)[0]
    e_text, e_real, e_train = tme.embed_text(texts), tme.embed_motion(x_real), tme.embed_motion(x_train)
    kw = {"steps": steps} if steps else {}
    rng = np.random.default_rng(seed)
    gen_runs, ref_runs = [], []
    for r in range(repeats):
        g = model.sample_text(texts, n=len(texts), seed=seed + 100 + r, **kw)
        xg = eval_inputs_from_positions(g, model.spec.skeleton, labels, np.full(len(g), np.nan))[0]
        e_gen = tme.embed_motion(xg)
        gen_runs.append({**r_precision(e_text, e_gen, rng=rng), "text_fid": text_fid(e_train, e_gen),
                         "text_accuracy": float((ev.predict_exercise(xg) == labels).mean())})
        boot = rng.integers(0, len(texts), len(texts)) if r > 0 else np.arange(len(texts))
        ref_runs.append({**r_precision(e_text[boot], e_real[boot], rng=rng), "text_fid": text_fid(e_train, e_real[boot]),
                         "text_accuracy": float((ev.predict_exercise(x_real[boot]) == labels[boot]).mean())})
    gen, ref = _mean_std(gen_runs), _mean_std(ref_runs)
    metrics = {k: {"generated": gen[k], "real_reference": ref[k]} for k in gen}
    checks = {"prompts": texts[:10], "quality_reader": quality_reader_accuracy(model),
              **quality_control(model, ev, test_ds, x_real, seed, n_per_prompt, kw),
              "composition": composition_check(model, ev, test_ds, seed, kw)}
    return metrics, checks


def quality_control(model, ev, test_ds: Dataset, x_real: np.ndarray, seed: int, n_per_prompt: int,
                    kw: dict) -> dict:
    """Do quality phrases move the motion the stated way? Per exercise and band, samples from
    every held-out description x held-out quality phrase (never trained on), scored by the
    real-trained TS regressor. Reference: the same regressor on real held-out sequences of
    that exercise whose TS lies in that band."""
    from rehabgen.metrics.evaluator import eval_inputs_from_positions
    from rehabgen.text.corpus import QUALITY, quality_band, quality_prompts

    real_pred = ev.predict_score(x_real)
    real_band = np.array([quality_band(u) for u in model.spec.normalizer.score_to_unit(
        [s.score(model.spec.score_name) for s in test_ds.sequences])])
    real_ex = np.array([s.exercise for s in test_ds.sequences])
    out = {}
    for k, e in enumerate(model.spec.exercises):
        row = {}
        for j, band in enumerate(QUALITY):
            prompts = quality_prompts(e, band)
            g = model.sample_text([p for p in prompts for _ in range(n_per_prompt)], n=len(prompts) * n_per_prompt,
                                  seed=seed + 31 * k + j, **kw)
            xg = eval_inputs_from_positions(g, model.spec.skeleton, np.full(len(g), k), np.full(len(g), np.nan))[0]
            pred = ev.predict_score(xg)
            real = real_pred[(real_ex == e) & (real_band == band)]
            row[band] = {"prompt": prompts[0], "n": len(g), "predicted_score": float(pred.mean()),
                         "predicted_score_std": float(pred.std()),
                         "real_reference": float(real.mean()) if real.size else None, "n_real": int(real.size)}
        hi, lo = row["high"], row["low"]
        row["high_minus_low"] = hi["predicted_score"] - lo["predicted_score"]
        row["high_minus_low_se"] = float(np.sqrt(hi["predicted_score_std"] ** 2 / hi["n"] + lo["predicted_score_std"] ** 2 / lo["n"]))
        row["real_high_minus_low"] = (hi["real_reference"] - lo["real_reference"]
                                      if hi["n_real"] and lo["n_real"] else None)
        row["moves_as_stated"] = bool(row["high_minus_low"] > 0)
        out[e] = row
    share = float(np.mean([v["moves_as_stated"] for v in out.values()]))
    gap = float(np.mean([v["high_minus_low"] for v in out.values()]))
    gap_se = float(np.sqrt(np.sum([v["high_minus_low_se"] ** 2 for v in out.values()])) / len(out))
    ok = [v["real_high_minus_low"] for v in out.values() if v["real_high_minus_low"] is not None]
    real_gap = float(np.mean(ok)) if ok else None
    return {"quality_control": out, "share_of_exercises_where_quality_moves_as_stated": share,
            "mean_high_minus_low": gap, "mean_high_minus_low_se": gap_se, "real_reference_high_minus_low": real_gap,
            "real_reference_mean_predicted_score": float(real_pred.mean())}


def composition_check(model, ev, test_ds: Dataset, seed: int, kw: dict, n_per_pair: int = 2) -> dict:
    """New exercises composed from known movements: two held-out descriptions of different
    exercises in a row (every ordered pair), generated as one timeline. Each half, without the
    in-betweened seam, goes to the real-trained classifier: is it the exercise its description
    names? Reference: the classifier on real held-out recordings cut to a half's duration."""
    from dataclasses import replace

    from rehabgen.metrics.evaluator import eval_inputs, eval_inputs_from_positions
    from rehabgen.text.corpus import DESCRIPTIONS

    names = list(model.spec.exercises)
    hits, both, pairs = [], [], {}
    h = model.timeline_overlap()
    for i, (a, b) in enumerate((a, b) for a in names for b in names if a != b):
        ta, tb = DESCRIPTIONS[a]["test"][i % 3], DESCRIPTIONS[b]["test"][(i + 1) % 3]
        g = model.sample_timeline([ta, tb], n=n_per_pair, seed=seed + 500 + i, **kw)
        L = g.shape[1]
        halves = np.concatenate([g[:, : L // 2 - h // 2], g[:, L // 2 + h - h // 2:][:, : L // 2 - h // 2]])
        want = np.array([names.index(a)] * n_per_pair + [names.index(b)] * n_per_pair)
        ok = ev.predict_exercise(eval_inputs_from_positions(halves, model.spec.skeleton, want,
                                                            np.full(len(want), np.nan))[0]) == want
        hits += ok.tolist()
        both += (ok[:n_per_pair] & ok[n_per_pair:]).tolist()
        pairs[f"{a}->{b}"] = {"texts": [ta, tb], "halves_recognised": float(ok.mean())}
    seconds = (L // 2 - h // 2) / model.spec.fps
    n_real = max(2, int(round(seconds * test_ds.fps)))
    cut = [replace(s, positions=s.positions[:n_real], valid=s.valid[:n_real],
                   timestamps=None if s.timestamps is None else s.timestamps[:n_real],
                   filled=None if s.filled is None else s.filled[:n_real],
                   state=None if s.state is None else s.state[:n_real]) for s in test_ds.sequences]
    x_cut, ex_cut, _ = eval_inputs(replace(test_ds, sequences=cut))
    return {"halves_recognised": float(np.mean(hits)), "both_halves_recognised": float(np.mean(both)),
            "real_reference": float((ev.predict_exercise(x_cut) == ex_cut).mean()), "half_seconds": float(seconds),
            "n_pairs": len(pairs), "pairs": pairs}


def quality_reader_accuracy(model) -> dict:
    """How often the model's quality reader reads the stated band (or "none") from held-out
    sentences: every held-out description, alone or with every held-out quality phrase."""
    from rehabgen.text.corpus import QUALITY, quality_prompts

    if not model.spec.text_reader:
        return {}
    acc = {}
    for band in [*QUALITY, None]:
        prompts = [p for e in model.spec.exercises for p in quality_prompts(e, band)]
        read = model.read_text(prompts)[0]
        acc[band or "none"] = float(np.mean([r == band for r in read]))
    return acc


def load_metrics(report_dir: str | Path) -> dict:
    f = Path(report_dir) / "metrics.json"
    if not f.is_file():
        raise DataError(f"{report_dir}: no metrics.json (run `rehabgen evaluate` first)")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{f}: not valid JSON ({e.msg})") from None
