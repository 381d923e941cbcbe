"""`rehabgen evaluate`: every metric of a trained model next to its real-data reference.

Protocol (one sample set S compared with the real training set, as in the IRIMAS framework):

- The evaluator networks (exercise classifier, score regressor) are trained on the run's
  training subjects only; their penultimate features are the space of the distribution metrics.
- Generated: for every real test sequence, one sample conditioned on its exercise and score,
  so generated and reference sets have the same size and label distribution. Repeated with
  `repeats` seeds.
- Reference: the real test sequences themselves — the value a perfect generator would reach —
  the whole set in every repeat (its std is the metrics' own randomness only). Not a bootstrap:
  resampling with replacement duplicates sequences, which biases set metrics (lower diversity
  and coverage, larger distances): on built-in data the jerk Wasserstein of bootstrapped test
  sets was 0.37 ± 0.15 m/s³ (0.13-0.66) where new subjects from the same distribution scored
  0.18 ± 0.04, as did the whole test set. Both are measured against the real training set.
- Test sequences: the run's held-out subjects, or a separate test folder (`test_data`).
- Sequences keep their own lengths: evaluator inputs are resampled from each sequence's own
  frames and kinematic/bone metrics skip the frames that only pad a set to one array.
- Downstream utility: `metrics.downstream.assessment_study` (subject-wise CV over the training
  subjects; the honest numbers are on the test subjects, which the generator never saw), with
  the generator's own training windows as the control for its generated data (`training_windows`).
- Metrics are the entries of `rehabgen.metrics.registry`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rehabgen import tracking
from rehabgen.config import GEN_SCORES
from rehabgen.data import DataError, load_dataset
from rehabgen.data.dataset import Dataset
from rehabgen.metrics import registry
from rehabgen.metrics.downstream import assessment_study
from rehabgen.metrics.evaluator import Evaluator, eval_inputs, eval_inputs_from_positions
from rehabgen.metrics.plausibility import (
    kinematic_summary, reference_bone_lengths, split_kinematic_reference, split_ratio_bands,
)
from rehabgen.metrics.registry import RealReference, SampleSetContext, TextContext
from rehabgen.models.options import SamplerOptions
from rehabgen.models.timeline import sample_timeline, timeline_overlap
from rehabgen.preprocess import preprocess_dataset
from rehabgen.report import EvaluationResult, write_report
from rehabgen.runs import load_model, load_split, read_summary, split_dataset, versions, write_json
from rehabgen.samples import pad_sequences
from rehabgen.text.corpus import DESCRIPTIONS, QUALITY, quality_band, quality_prompts
from rehabgen.text.retrieval import TextMotionEvaluator, r_precision, sequence_texts


def cache_dir() -> Path:
    return Path(os.environ.get("REHABGEN_CACHE", Path.home() / ".cache" / "rehabgen"))


def _model_view(model, ds: Dataset) -> list[tuple[np.ndarray, object]]:
    """Each sequence through the model's preprocessing, but with every gap filled (a reference
    must not contain holes; joints never seen sit at the root): (positions (T, J, 3) in the
    model's normalised frame, float64; the transform back to metres)."""
    pre, tfs = preprocess_dataset(ds, replace(model.spec.preprocess, max_gap=10 ** 6))
    out = []
    for s, tf in zip(pre.sequences, tfs):
        p = s.positions.astype(np.float64)
        out.append((np.where(np.isfinite(p).all(-1)[..., None], p, 0.0), tf))
    return out


def model_space_real(model, ds: Dataset) -> list[np.ndarray]:
    """Real sequences the way the model saw them (its preprocessing, its frame rate, at most
    max_len frames), back in metres: a list of (T_i, J, 3), for kinematic comparisons."""
    return [tf.invert(p[: model.spec.max_len]).astype(np.float32) for p, tf in _model_view(model, ds)]


def training_windows(model, ds: Dataset, length: int):
    """`windows(seed, copies)` for the downstream study's real+windows control: each sequence of
    `ds` the way the model saw it in training (`_model_view`), cut to a random `length`-frame
    window, back in metres; `copies` rounds of one window per sequence, round j at j * len(ds) + i."""
    view = _model_view(model, ds)

    def windows(seed: int, copies: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(copies):
            for p, tf in view:
                a = int(rng.integers(0, max(len(p) - length, 0) + 1))
                out.append(tf.invert(p[a:a + length]).astype(np.float32))
        return out

    return windows


def sampler_options(model, steps: int | None = None, sampler: SamplerOptions | None = None) -> SamplerOptions | None:
    """The options evaluation samples with: `sampler` (any field) with `steps` on top; None for
    families without an iterative sampler. An option the family lacks (GAN/VAE: any sampler
    option, `steps` too) is an error, as in `sample`, not dropped."""
    base = sampler or SamplerOptions()
    options = model.check_options(replace(base, steps=steps) if steps else base)
    return options if model.capabilities.sampler else None


def generate_for(model, exercises: list[str], scores: np.ndarray, seed: int, options: SamplerOptions | None = None,
                 length: int | None = None) -> list[np.ndarray]:
    """One sample (T_e, J, 3) per (exercise, score), at `length` frames or each exercise's typical length."""
    out: list[np.ndarray | None] = [None] * len(exercises)
    for k, e in enumerate(sorted(set(exercises))):
        idx = [i for i, x in enumerate(exercises) if x == e]
        sc = np.asarray(scores, np.float32)[idx]
        x = model.sample(e, sc, n=len(idx), length=length, seed=seed * 1000 + k, options=options)
        for j, i in enumerate(idx):
            out[i] = x[j]
    return out


def _features(ev: Evaluator, x: np.ndarray) -> dict[str, np.ndarray]:
    """The spaces of the distribution metrics: both evaluator networks' features (n, d)."""
    return {"classifier": ev.features(x, "classifier"), "regressor": ev.features(x, "regressor")}


def real_reference(ev: Evaluator, train_ds: Dataset, train_pos: list[np.ndarray], fps: float) -> RealReference:
    """The real training set every sample set is measured against (computed once)."""
    x, ex, _ = eval_inputs(train_ds)
    lengths = np.array([len(p) for p in train_pos])
    pos = pad_sequences(train_pos)
    bones = reference_bone_lengths(pos, train_ds.skeleton.bones, lengths=lengths)
    return RealReference(_features(ev, x), ex, pos, lengths, bones, train_ds.skeleton, fps)


def sample_set_context(ev: Evaluator, real: RealReference, seqs: list[np.ndarray], exercise_idx: np.ndarray,
                       scores: np.ndarray, rng: np.random.Generator) -> SampleSetContext:
    """What every sample-set metric needs, computed once: evaluator inputs from each sequence's
    own frames, features, predictions, and the positions padded with their true lengths."""
    lengths = np.array([len(s) for s in seqs])
    pos = pad_sequences(seqs)
    x = eval_inputs_from_positions(pos, real.skeleton, exercise_idx, scores, lengths=lengths)[0]
    return SampleSetContext(pos, lengths, np.asarray(exercise_idx), np.asarray(scores, np.float32), x,
                            _features(ev, x), ev.predict_exercise(x), ev.predict_score(x), real, rng, ev)


def sample_set_metrics(ctx: SampleSetContext) -> dict[str, float]:
    """Every registered sample-set metric of one set against the real training set."""
    return registry.compute("sample_set", ctx)


def mean_std(runs: list[dict]) -> dict:
    """{metric: {mean, std, runs}}; NaN runs (undefined on a set) are left out of mean and std."""
    out = {}
    for k in runs[0]:
        vals = np.array([r[k] for r in runs], np.float64)
        ok = vals[np.isfinite(vals)]
        out[k] = {"mean": float(ok.mean()) if ok.size else float("nan"),
                  "std": float(ok.std()) if ok.size else float("nan"), "runs": vals.tolist()}
    return out


def _kinematics_by_exercise(seqs: list[np.ndarray], exercises: list[str], names, fps: float) -> dict:
    """`kinematic_summary` overall and per exercise of a list of (T_i, J, 3)."""
    def one(sel):
        sub = [seqs[i] for i in sel]
        return kinematic_summary(pad_sequences(sub), fps, lengths=[len(p) for p in sub])

    out = {"overall": one(range(len(seqs)))}
    for e in names:
        sel = [i for i, x in enumerate(exercises) if x == e]
        if sel and min(len(seqs[i]) for i in sel) >= 4:
            out[e] = one(sel)
    return out


def kinematics_table(gen_runs: list[dict], real: dict, real_train: dict | None = None) -> dict:
    """{scope: {quantity: {stat: {generated (mean over repeats), generated_std, real, ratio}}}}:
    generated / real says which way (0.42 = 58 % too slow). With `real_train` (the same summary of
    the real training sequences) each stat also gets `train_ratio`, training / test: how far a
    second group of real patients lands from the test patients. With 4 test patients it ranged
    0.74-1.29 for Es1's mean speed over 3 KIMORE splits, so a generated ratio inside that band is
    as close as real patients get."""
    out = {}
    for scope, qs in real.items():
        runs = [g[scope] for g in gen_runs if scope in g]
        if not runs:
            continue
        out[scope] = {}
        for q, stats in qs.items():
            out[scope][q] = {}
            for st, r in stats.items():
                g = np.array([run[q][st] for run in runs])
                out[scope][q][st] = {"generated": float(g.mean()), "generated_std": float(g.std()), "real": r,
                                     "ratio": float(g.mean() / r) if r > 0 else float("nan")}
                t = ((real_train or {}).get(scope) or {}).get(q, {}).get(st)
                if t is not None:
                    out[scope][q][st]["train_ratio"] = float(t / r) if r > 0 else float("nan")
    return out


def _training_record(run_dir: Path) -> dict | None:
    """How the run's training ended (train_summary.json): a run stopped short of its plan is
    undertrained, and its report must say so."""
    t = read_summary(run_dir)
    return None if t is None else {k: t.get(k) for k in ("steps", "planned_steps", "stopped_early", "stop_reason",
                                                           "seconds")}


def real_against_real(train_ds: Dataset, train_pos: list[np.ndarray], test_ds: Dataset, test_pos: list[np.ndarray],
                      fps: float, seed: int) -> tuple[dict | None, dict | None]:
    """Real data against itself over random subject splits of every subject of the evaluation
    (training and test), with as many test subjects as this evaluation has: the kinematic
    distances (`split_kinematic_reference`, 100 splits) and the per-exercise ratio bands
    (`split_ratio_bands`, 200 splits); (None, None) when there are too few subjects."""
    seqs = train_ds.sequences + test_ds.sequences
    pos, subjects = list(train_pos) + list(test_pos), [s.subject for s in seqs]
    n_test = len(set(s.subject for s in test_ds.sequences))
    if not 1 <= n_test < len(set(subjects)):
        return None, None
    return (split_kinematic_reference(pos, subjects, n_test, fps, n_splits=100, seed=seed),
            split_ratio_bands(pos, subjects, [s.exercise for s in seqs], n_test, fps, n_splits=200, seed=seed))


def _check_matches(ds: Dataset, model, folder) -> Dataset:
    """The dataset with the model's exercise vocabulary, or a DataError naming the folder and
    what differs (joints, exercises)."""
    want, got = list(model.spec.skeleton.joints), list(ds.skeleton.joints)
    if got != want:
        missing, extra = [j for j in want if j not in got], [j for j in got if j not in want]
        detail = f"missing {missing}, extra {extra}" if missing or extra else "same joints in another order"
        raise DataError(f"{folder}: skeleton joints differ from the model's ({detail})")
    unknown = sorted({s.exercise for s in ds.sequences} - set(model.spec.exercises))
    if unknown:
        raise DataError(f"{folder}: exercise(s) {unknown} unknown to the model, which knows {list(model.spec.exercises)}")
    return replace(ds, exercises=tuple(model.spec.exercises))


def evaluate_run(run_dir: str | Path, data: str | Path, out: str | Path, n: int | None = None, seed: int = 0,
                 repeats: int = 3, downstream: bool = True, folds: int = 3, steps: int | None = None,
                 evaluator_steps: int | None = None, progress: bool = True,
                 test_data: str | Path | None = None, downstream_steps: int | None = None,
                 downstream_scores: str | None = None, sampler: SamplerOptions | None = None,
                 device: str = "cpu", precision: str = "fp32", log_with: str | None = None,
                 downstream_seeds: int = 1, downstream_score_guidance: float | None = None,
                 downstream_repetition_guidance: float | None = None, downstream_repeats: int = 1,
                 downstream_per_real: int = 1) -> dict:
    """Evaluate a run; writes metrics.json, report.md, plots and a GIF into `out`; returns metrics.json's content.

    `data` is the folder the run was trained on (its training subjects come from the run's
    split.json). `test_data`, if given, is another folder (e.g. real patients) that replaces the
    run's held-out subjects everywhere: as the real reference, as the conditions of the
    generated sets, and as the test subjects of the downstream study. `log_with` (a tracker of
    `rehabgen.tracking`) also logs the scalar metrics into the run's tracking/ at the model's step.
    The downstream study's generated training data is made as the model family says
    (`study_settings`: for diffusion balanced scores, score guidance 4, repetition guidance 2.5);
    `downstream_scores`, `downstream_score_guidance` and `downstream_repetition_guidance` override
    it, and the rest of the evaluation keeps `sampler`'s settings. `downstream_repeats` runs the
    study with seeds `seed` ... `seed + downstream_repeats - 1` and pools them (`assessment_study`);
    `downstream_per_real` generated (and augmented) sequences per real one, half of the mix real.
    Data made to teach an assessor the score wants the score's effect stronger than samples judged
    for realism do: on the 21 KIMORE patients (3 runs x 3 study seeds) score guidance 4 lowered the
    assessor's error by 7.7 % against 4.2 % at the model's 1.75, but sampling everything at 4 raised
    FID from 1.46 to 5.25."""
    if log_with:
        tracking.check(log_with)  # before the work, not after it
    if downstream_scores is not None and downstream_scores not in GEN_SCORES:
        raise ValueError(f"downstream_scores must be 'matched' or 'balanced', got {downstream_scores!r}")
    if downstream_per_real < 1:  # before the work, not after it
        raise ValueError(f"downstream_per_real must be >= 1, got {downstream_per_real}")
    t0 = time.time()
    run_dir, out = Path(run_dir), Path(out)
    model = load_model(run_dir, device, precision)
    device = model.device  # resolved ('auto' -> cuda or cpu): the evaluator networks train there too
    ds = load_dataset(data)
    if tuple(ds.exercises) != tuple(model.spec.exercises):
        raise DataError(f"{data}: exercises {list(ds.exercises)} differ from the model's {list(model.spec.exercises)}")
    ds = _check_matches(ds, model, data)
    train_ds, test_ds = load_split(run_dir, ds)
    if test_data is not None:
        test_ds = _check_matches(load_dataset(test_data), model, test_data)
        if len(test_ds) == 0:
            raise DataError(f"{test_data}: no sequences to test on")
    elif len(test_ds) == 0:
        train_ds, test_ds, _ = split_dataset(ds, 0.2, seed)
        if len(test_ds) == 0:
            raise DataError(f"{data}: the run holds out no subject and {len(ds.subjects)} subject(s) are too few to "
                            "hold some out now; evaluate against a test set with --test-data")
    shared = sorted(set(train_ds.subjects) & set(test_ds.subjects))
    score_name, spec = model.spec.score_name, model.spec
    exercises = list(spec.exercises)
    options = sampler_options(model, steps, sampler)
    study_scores, study_opts = model.study_settings()
    study_scores = downstream_scores or study_scores
    given = {"score_guidance": downstream_score_guidance, "repetition_guidance": downstream_repetition_guidance}
    study_opts.update({k: v for k, v in given.items() if v is not None})
    ds_options = options
    if downstream and study_opts:
        ds_options = model.check_options(replace(options or SamplerOptions(), **study_opts))
    fit_kw = {"steps": evaluator_steps} if evaluator_steps else {}
    ev = Evaluator.cached(train_ds, cache_dir() / "evaluators", key_extra={"score": score_name, "seed": seed}, device=device,
                          score_name=score_name, seed=seed, progress=progress, **fit_kw)
    ev_report = ev.evaluate(test_ds)

    train_pos = model_space_real(model, train_ds)
    real = real_reference(ev, train_ds, train_pos, spec.fps)
    test_pos = model_space_real(model, test_ds)
    test_ex = [s.exercise for s in test_ds.sequences]
    test_sc = np.array([s.score(score_name) for s in test_ds.sequences], np.float32)
    m = n or len(test_ex)
    reps = np.arange(m) % len(test_ex)
    cond_ex, cond_sc = [test_ex[i] for i in reps], test_sc[reps]
    cond_idx = np.array([exercises.index(e) for e in cond_ex])
    test_idx = np.array([exercises.index(e) for e in test_ex])
    rng = np.random.default_rng(seed)
    # the reference set is the same in every repeat: its inputs and features are computed once
    # (its repeats differ only by the draws from `rng` that some metrics make)
    ref_ctx = sample_set_context(ev, real, test_pos, test_idx, test_sc, rng)
    gen_runs, ref_runs, gen_kin, samples, gen_feats = [], [], [], None, None
    it = range(repeats)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="evaluate", unit="repeat")
    for r in it:
        G = generate_for(model, cond_ex, cond_sc, seed + r, options)
        ctx = sample_set_context(ev, real, G, cond_idx, cond_sc, rng)
        if samples is None:
            samples, gen_feats = G, ctx.features["classifier"]
        gen_runs.append(sample_set_metrics(ctx))
        gen_kin.append(_kinematics_by_exercise(G, cond_ex, exercises, spec.fps))
        ref_runs.append(sample_set_metrics(ref_ctx))
    gen, ref = mean_std(gen_runs), mean_std(ref_runs)
    metrics = {k: {"generated": gen[k], "real_reference": ref[k]} for k in gen}
    kinematics = kinematics_table(gen_kin, _kinematics_by_exercise(test_pos, test_ex, exercises, spec.fps),
                                  _kinematics_by_exercise(train_pos, [s.exercise for s in train_ds.sequences],
                                                          exercises, spec.fps))
    kin_reference, group_bands = real_against_real(train_ds, train_pos, test_ds, test_pos, spec.fps, seed)
    text_checks = None
    if spec.text_encoder:
        text_metrics, text_checks = evaluate_text(model, ev, train_ds, test_ds, seed, repeats, options)
        metrics.update(text_metrics)

    study = None
    if downstream:
        L = int(np.median(list(spec.default_length.values())))

        def gen_fn(exs, scores, s):
            return pad_sequences(generate_for(model, exs, scores, s, ds_options, length=L))

        study = assessment_study(train_ds, test_ds, gen_fn, k=folds, seed=seed, score_name=score_name, device=device,
                                 progress=progress, gen_scores=study_scores, assessor_seeds=downstream_seeds,
                                 repeats=downstream_repeats, n_gen_per_real=downstream_per_real,
                                 windows=training_windows(model, train_ds, L),
                                 **({"steps": downstream_steps} if downstream_steps else {}))
        study["sampler"] = None if ds_options is None else ds_options.given()

    summary = {
        "run": str(run_dir), "data": str(data), "test_data": None if test_data is None else str(test_data),
        "family": model.family, "model_step": model.step, "training": _training_record(run_dir),
        "n_generated_per_repeat": m, "repeats": repeats, "seed": seed,
        "n_train_sequences": len(train_ds), "n_test_sequences": len(test_ds),
        "test_subjects": test_ds.subjects, "test_subjects_also_in_training": shared,
        "evaluator": ev_report, "metrics": metrics, "kinematics": kinematics,
        "kinematic_reference": kin_reference, "real_group_bands": group_bands, "text": text_checks,
        "downstream": study, "protocol": __doc__.strip(),
        "sampler": None if options is None else model.sampler_settings(options),  # what the samples were made with
        "seconds": round(time.time() - t0, 1), "versions": versions(),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", summary)
    write_json(out / "config.json", {"command": "evaluate", "run": str(run_dir), "data": str(data),
                                     "test_data": summary["test_data"], "n": n, "seed": seed, "repeats": repeats,
                                     "downstream": downstream, "folds": folds, "steps": steps,
                                     "sampler": None if options is None else options.given(),
                                     "device": str(device), "precision": model.precision,
                                     "downstream_scores": study_scores if downstream else downstream_scores,
                                     "downstream_seeds": downstream_seeds, "downstream_repeats": downstream_repeats,
                                     "downstream_per_real": downstream_per_real,
                                     "downstream_score_guidance": downstream_score_guidance,
                                     "downstream_repetition_guidance": downstream_repetition_guidance,
                                     "downstream_sampler": (None if not downstream or ds_options is None
                                                            else ds_options.given()),
                                     "log_with": log_with})
    result = EvaluationResult(
        summary=summary, skeleton=spec.skeleton, fps=spec.fps, exercises=tuple(exercises),
        samples=samples, sample_exercise=cond_ex, sample_score=cond_sc, real_test=test_pos, real_test_exercise=test_ex,
        features={"real train": (real.features["classifier"], real.exercise),
                  "real test": (ev.features(eval_inputs(test_ds)[0], "classifier"), test_idx),
                  "generated": (gen_feats, cond_idx)})
    summary["report"] = str(write_report(out, result))
    if log_with:
        tracking.log_evaluation(log_with, run_dir, summary)
    return summary


def evaluate_text(model, ev, train_ds: Dataset, test_ds: Dataset, seed: int, repeats: int,
                  options: SamplerOptions | None = None, n_per_prompt: int = 4) -> tuple[dict, dict]:
    """Text-to-motion metrics for a text-conditioned model, each next to its real reference.

    Prompts are held-out paraphrases (never trained on) built for each real test sequence from
    its exercise, score and duration. Generated: motions sampled from those prompts alone (no
    label). Reference: the real test motions with the same prompts. Plus two checks: exercise
    accuracy of prompt-only samples, and whether "performed well" / "performed poorly" prompts
    move the predicted score in the stated direction, per exercise."""
    lo, hi = model.spec.normalizer.score_lo, model.spec.normalizer.score_hi
    tme = TextMotionEvaluator.cached(train_ds, cache_dir() / "retrieval", encoder=model.spec.text_encoder, seed=seed,
                                     score_range=(lo, hi))
    texts = [ts[0] for ts in sequence_texts(test_ds, lo, hi, 1, "test", seed)]
    labels = np.array([test_ds.exercise_index(s.exercise) for s in test_ds.sequences])
    x_real = eval_inputs(test_ds)[0]
    x_train = eval_inputs(train_ds)[0]
    e_text, e_real, e_train = tme.embed_text(texts), tme.embed_motion(x_real), tme.embed_motion(x_train)
    rng = np.random.default_rng(seed)
    gen_runs, ref_runs = [], []
    for r in range(repeats):
        g = model.sample_text(texts, n=len(texts), seed=seed + 100 + r, options=options)
        xg = eval_inputs_from_positions(g, model.spec.skeleton, labels, np.full(len(g), np.nan))[0]
        e_gen = tme.embed_motion(xg)
        gen_runs.append(registry.compute("text", TextContext(r_precision(e_text, e_gen, rng=rng), e_gen, e_train,
                                                             labels, ev.predict_exercise(xg))))
        ref_runs.append(registry.compute("text", TextContext(r_precision(e_text, e_real, rng=rng), e_real, e_train,
                                                             labels, ev.predict_exercise(x_real))))
    gen, ref = mean_std(gen_runs), mean_std(ref_runs)
    metrics = {k: {"generated": gen[k], "real_reference": ref[k]} for k in gen}
    checks = {"prompts": texts[:10], "quality_reader": quality_reader_accuracy(model),
              **quality_control(model, ev, test_ds, x_real, seed, n_per_prompt, options),
              "composition": composition_check(model, ev, test_ds, seed, options)}
    return metrics, checks


def quality_control(model, ev, test_ds: Dataset, x_real: np.ndarray, seed: int, n_per_prompt: int,
                    options: SamplerOptions | None) -> dict:
    """Do quality phrases move the motion the stated way? Per exercise and band, samples from
    every held-out description x held-out quality phrase (never trained on), scored by the
    real-trained TS regressor. Reference: the same regressor on real held-out sequences of
    that exercise whose TS lies in that band."""
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
                                  seed=seed + 31 * k + j, options=options)
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


def composition_check(model, ev, test_ds: Dataset, seed: int, options: SamplerOptions | None,
                      n_per_pair: int = 2) -> dict:
    """New exercises composed from known movements: two held-out descriptions of different
    exercises in a row (every ordered pair), generated as one timeline. Each half, without the
    in-betweened seam, goes to the real-trained classifier: is it the exercise its description
    names? Reference: the classifier on real held-out recordings cut to a half's duration.
    Empty for families without timelines."""
    if not model.capabilities.timeline:
        return {}
    names = list(model.spec.exercises)
    hits, both, pairs = [], [], {}
    h = timeline_overlap(model.spec)
    for i, (a, b) in enumerate((a, b) for a in names for b in names if a != b):
        ta, tb = DESCRIPTIONS[a]["test"][i % 3], DESCRIPTIONS[b]["test"][(i + 1) % 3]
        g = sample_timeline(model, [ta, tb], n=n_per_pair, seed=seed + 500 + i, options=options)
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
