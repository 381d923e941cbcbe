"""Evaluation report: Markdown tables, plots and an animation, and the multi-model comparison.

Everything here is a function of an evaluation result (`EvaluationResult`, made by
`rehabgen.evaluate`) or of metrics.json's content; metric names, directions and descriptions
come from `rehabgen.metrics.registry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from rehabgen.io import atomic_write_bytes
from rehabgen.metrics import registry
from rehabgen.render import render_gif, save_figure
from rehabgen.skeleton import Skeleton


@dataclass
class EvaluationResult:
    """What the report draws. `summary` is metrics.json's content; the rest are arrays for the
    plots and the animation, computed once by the evaluation."""

    summary: dict
    skeleton: Skeleton
    fps: float  # of the samples and `real_test` (the model's frame rate)
    exercises: tuple[str, ...]
    samples: list[np.ndarray]  # generated (T_i, J, 3) metres, first repeat
    sample_exercise: list[str]
    sample_score: np.ndarray  # (n,) requested score
    real_test: list[np.ndarray]  # real test sequences in the model's space (T_i, J, 3) metres
    real_test_exercise: list[str]
    features: dict[str, tuple[np.ndarray, np.ndarray]]  # source -> (classifier features (n, d), exercise index (n,))


def _fmt(d: dict) -> str:
    m, s = d.get("mean"), d.get("std")
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "n/a"
    return f"{m:.3f} ± {s:.3f}" if s is not None else f"{m:.3f}"


def metrics_table(metrics: dict) -> str:
    """metrics.json's `metrics` -> one row per metric: description, generated, real, which way is better."""
    lines = ["| metric | generated | real reference | better |", "|---|---|---|---|"]
    for k, v in metrics.items():
        lines.append(f"| {registry.label(k)} (`{k}`) | {_fmt(v['generated'])} | {_fmt(v['real_reference'])} | "
                     f"{registry.arrow(k)} |")
    return "\n".join(lines)


def references_note(metrics: dict) -> str:
    """Which real reference each metric in the table has (from the registry)."""
    groups: dict[str, list[str]] = {}
    for k in metrics:
        if k in registry.REGISTRY:
            groups.setdefault(registry.REGISTRY[k].reference, []).append(f"`{k}`")
    return " ".join(f"Real reference of {', '.join(v)}: {ref}." for ref, v in groups.items())


def plot_metrics(metrics: dict, out: Path) -> Path:
    keys = list(metrics)
    cols = 6
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.0 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        g, r = metrics[k]["generated"], metrics[k]["real_reference"]
        ax.bar([0, 1], [g["mean"], r["mean"]], yerr=[g["std"], r["std"]], color=["tab:orange", "tab:gray"], capsize=3)
        ax.set_xticks([0, 1], ["gen", "real"], fontsize=7)
        ax.set_title(f"{k} {registry.arrow(k)}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle("generated vs real reference (mean ± std over repeats)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_features(feats: dict[str, tuple[np.ndarray, np.ndarray]], exercises: tuple[str, ...], out: Path) -> Path:
    """PCA of evaluator features; colour = exercise, marker = source."""
    allf = np.concatenate([f for f, _ in feats.values()])
    mu = allf.mean(0)
    _, _, vt = np.linalg.svd(allf - mu, full_matrices=False)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    markers = {"real train": "o", "real test": "s", "generated": "x"}
    cmap = plt.get_cmap("tab10")
    for src, (f, ex) in feats.items():
        p = (f - mu) @ vt[:2].T
        for e in range(len(exercises)):
            sel = ex == e
            ax.scatter(p[sel, 0], p[sel, 1], s=14 if src != "generated" else 22, marker=markers.get(src, "."),
                       color=cmap(e), alpha=0.35 if src == "real train" else 0.9,
                       label=f"{src} {exercises[e]}" if src != "real train" or e == 0 else None)
    ax.set_title("evaluator feature space (PCA)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, out)


def plot_trajectories(real: list[np.ndarray], real_ex: list[str], gen: list[np.ndarray], gen_ex: list[str],
                      exercises: tuple[str, ...], skeleton, out: Path) -> Path:
    """Per exercise: the most moving joint's vertical trajectory, real (grey) vs generated."""
    fig, axes = plt.subplots(1, len(exercises), figsize=(3 * len(exercises), 2.6), squeeze=False)
    for ax, e in zip(axes[0], exercises):
        R = [p for p, x in zip(real, real_ex) if x == e]
        G = [p for p, x in zip(gen, gen_ex) if x == e]
        if not R:
            ax.axis("off")
            continue
        var = np.mean([(p - p.mean(0)).std(0).sum(-1) for p in R], axis=0)  # (J,)
        var[skeleton.root] = 0
        j = int(np.argmax(var))
        c = int(np.argmax([np.mean([p[:, j, k].std() for p in R]) for k in range(3)]))
        for p in R[:12]:
            ax.plot(np.linspace(0, 1, len(p)), p[:, j, c] - p[0, skeleton.root, c], color="0.6", lw=0.8)
        for p in G[:6]:
            ax.plot(np.linspace(0, 1, len(p)), p[:, j, c] - p[0, skeleton.root, c], color="tab:orange", lw=1.2)
        ax.set_title(f"{e}: {skeleton.joints[j]} {'xyz'[c]}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle("trajectories: real (grey) vs generated (orange), time normalised", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


KIN_UNITS = {"speed": "m/s", "acceleration": "m/s²", "jerk": "m/s³", "range_of_motion": "m", "repetition_rate": "Hz",
             "drift_power": "m²", "repetition_power": "m²", "fast_power": "m²"}


def _kin(v: float) -> str:
    """A kinematic value: 3 decimals, or 3 significant digits below 0.01 (band powers are m²:
    a few mm of motion is 1e-5)."""
    return f"{v:.2e}" if 0 < abs(v) < 0.01 else f"{v:.3f}"


def kinematics_section(kin: dict) -> list[str]:
    """Markdown: generated vs real joint kinematics overall (mean, p50, p95) and per exercise
    (means), with the generated / real ratio that says which way they differ."""
    if not kin or "overall" not in kin:
        return []
    md = ["## Kinematics: which way generated motion differs", "",
          "Joint speed, acceleration and jerk over every joint and real frame (padding left out), and range of "
          "motion (bounding-box diagonal of each joint's trajectory) over every sequence and joint; generated: "
          "mean over repeats; real: the real test sequences at the model's frame rate. Ratio < 1: generated "
          "motion is slower / smaller than real. Repetition rate: the dominant frequency of each sequence's most-moving "
          "joint (repetitions per second), which tells a slower tempo from a smaller movement. Drift / repetition / "
          "fast power: how much the joints move below 0.1 Hz (slow wandering of the posture), at 0.1-0.5 Hz (the "
          "exercise's repetitions) and above 0.5 Hz (quick moves, tracking noise): each trajectory's variance split "
          "by frequency, averaged over joints.", "",
          "| quantity | statistic | generated | real | generated / real |", "|---|---|---|---|---|"]
    for q, stats in kin["overall"].items():
        for st, v in stats.items():
            md.append(f"| {q.replace('_', ' ')} ({KIN_UNITS.get(q, '')}) | {st} | {_kin(v['generated'])} | "
                      f"{_kin(v['real'])} | {v['ratio']:.2f} |")
    per = {e: v for e, v in kin.items() if e != "overall"}
    if per:
        qs = list(kin["overall"])
        md += ["", "Per exercise, means: generated / real (ratio; training patients / test patients, the same ratio "
               "between two groups of real patients, where known).", "",
               "| exercise | " + " | ".join(q.replace("_", " ") for q in qs) + " |", "|---" * (len(qs) + 1) + "|"]

        def cell(m):
            real = f"; real {m['train_ratio']:.2f}" if "train_ratio" in m else ""
            return f"{_kin(m['generated'])} / {_kin(m['real'])} ({m['ratio']:.2f}{real})"

        for e, v in per.items():
            md.append(f"| {e} | " + " | ".join(cell(v[q]["mean"]) for q in qs) + " |")
    return md + [""]


def kinematic_reference_section(ref: dict | None, metrics: dict) -> list[str]:
    """Markdown: each kinematic distance against the real reference over many subject splits
    (stable), beside this evaluation's one-split reference (which depends on who is in it)."""
    if not ref:
        return []
    n = next(iter(ref.values()))["n_splits"]
    md = ["### Kinematic distances against a stable real reference", "",
          f"Real data against itself over {n} random subject splits of every subject here, with as many test "
          "subjects as this evaluation: what a set of that many unseen people typically scores. One split's "
          "reference moves with which people it holds (a few carry most of the tracking noise).", "",
          "| distance | generated | real, this split | real, over splits: mean ± std (min–max) | generated / mean |",
          "|---|---|---|---|---|"]
    for q, v in ref.items():  # the registry names each distance "<quantity>_w"
        name = f"{q}_w"
        if name not in metrics:
            continue
        g, r1 = metrics[name]["generated"]["mean"], metrics[name]["real_reference"]["mean"]
        unit = registry.REGISTRY[name].unit if name in registry.REGISTRY else ""
        md.append(f"| {q} ({unit}) | {g:.3f} | {r1:.3f} | "
                  f"{v['mean']:.3f} ± {v['std']:.3f} ({v['min']:.3f}–{v['max']:.3f}) | {g / v['mean']:.2f} |")
    return md + [""]


def group_bands_section(bands: dict | None, kin: dict) -> list[str]:
    """Markdown: each exercise's generated / real ratio of mean speed and range of motion beside
    the band real patient groups span against the same number of test patients (`split_ratio_bands`)."""
    if not bands:
        return []
    qs = [q for q in ("speed", "range_of_motion") if q in bands]
    tol = bands["tolerance"]
    md = ["### Per-exercise ratios against real patient groups", "",
          f"Over {bands['n_splits']} random subject splits with {bands['n_test_subjects']} test subject(s), the "
          "ratio (the other subjects' mean) / (the test subjects' mean): 5th-95th percentile, and the share of "
          f"splits within ±{tol:.0%}. A generated ratio inside the band is as close as real patients get.", "",
          "| exercise | " + " | ".join(f"{q.replace('_', ' ')}: generated / real | real groups p5–p95 (within "
                                      f"±{tol:.0%})" for q in qs) + " |", "|---" * (2 * len(qs) + 1) + "|"]
    exercises = list(dict.fromkeys(e for q in qs for e in bands[q]["per_exercise"]))
    for e in exercises:
        cells = []
        for q in qs:
            g = ((kin.get(e) or {}).get(q) or {}).get("mean", {}).get("ratio")
            b = bands[q]["per_exercise"].get(e)
            cells.append("–" if g is None else f"{g:.2f}")
            cells.append("–" if b is None else f"{b['p5']:.2f}–{b['p95']:.2f} ({b['within']:.0%})")
        md.append(f"| {e} | " + " | ".join(cells) + " |")
    md += ["", "Real groups within ±{:.0%} on every exercise at once: ".format(tol)
           + ", ".join(f"{q.replace('_', ' ')} {bands[q]['all_within']:.0%} of splits" for q in qs) + ".", ""]
    return md


def downstream_side(study: dict) -> str:
    """The test side the downstream table shows: the run's test subjects (never seen by the
    generator) when the study had any, else the folds' held-out training subjects."""
    return "held_out_test" if any("held_out_test" in v for v in study["conditions"].values()) else "fold_test"


def _columns(study: dict, side: str) -> list[str]:
    """Exercises with a per-exercise result on this side, in the study's exercise order."""
    seen = {e for v in study["conditions"].values() for e in v.get(side, {}).get("per_exercise", {})}
    return [e for e in study.get("exercises", sorted(seen)) if e in seen]


def downstream_table(study: dict, side: str) -> str:
    """Conditions as rows; RMSE overall and per exercise, RMSE's bias part, the within-exercise
    correlation and exercise accuracy as columns (mean ± std over folds); the best value of each
    column in bold."""
    conds = {c: v[side] for c, v in study["conditions"].items() if side in v}
    cols = [("overall RMSE", ("rmse",), "lower")] + [(e, ("per_exercise", e, "rmse"), "lower")
                                                      for e in _columns(study, side)]
    cols += [("bias", ("bias",), "lower"), ("within-exercise r", ("within_r",), "higher"),
             ("exercise accuracy", ("accuracy",), "higher")]

    def get(d, path):
        for k in path:
            d = d.get(k) if isinstance(d, dict) else None
        return d

    best = {}
    for name, path, way in cols:
        vals = [get(v, path)["mean"] for v in conds.values() if get(v, path) and np.isfinite(get(v, path)["mean"])]
        best[name] = (min(vals) if way == "lower" else max(vals)) if vals else None
    lines = ["| condition | " + " | ".join(n for n, _, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for c, v in conds.items():
        cells = []
        for name, path, _ in cols:
            d = get(v, path)
            if not d or not np.isfinite(d["mean"]):
                cells.append("–")
                continue
            txt = (f"{d['mean']:.3f} ± {d['std']:.3f}" if name in ("exercise accuracy", "within-exercise r")
                   else f"{d['mean']:.2f} ± {d['std']:.2f}")
            cells.append(f"**{txt}**" if d["mean"] == best[name] else txt)
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_downstream(study: dict, side: str, out: Path) -> Path:
    """Grouped bars: RMSE overall and per exercise (x), one bar per condition, ± std over folds."""
    conds = [c for c, v in study["conditions"].items() if side in v]
    groups = ["overall"] + _columns(study, side)
    fig, ax = plt.subplots(figsize=(1.4 * len(groups) + 2, 3.2))
    w = 0.8 / max(len(conds), 1)
    for i, c in enumerate(conds):
        r = study["conditions"][c][side]
        ds = [r["rmse"]] + [r["per_exercise"].get(e, {}).get("rmse", {"mean": np.nan, "std": 0.0}) for e in groups[1:]]
        ax.bar(np.arange(len(groups)) + (i - (len(conds) - 1) / 2) * w, [d["mean"] for d in ds], w,
               yerr=[d["std"] for d in ds], capsize=2, label=c)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
    ax.set_ylabel(f"RMSE ({study.get('score', 'score')} points)", fontsize=8)
    where = "test subjects" if side == "held_out_test" else "fold held-out training subjects"
    ax.set_title(f"downstream assessment RMSE on {where} (lower is better; mean ± std over folds)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out)


def _pooled(study: dict) -> str:
    """What the mean ± std pools besides folds: assessor initialisations, study seeds."""
    parts = [f"{n} {what}" for n, what in ((study.get("assessor_seeds", 1), "assessor initialisations"),
                                            (study.get("repeats", 1), "study seeds (other folds and generated data)"))
             if n > 1]
    return f" × {' × '.join(parts)}" if parts else ""


def downstream_section(study: dict, out: Path) -> list[str]:
    side = downstream_side(study)
    plot_downstream(study, side, out / "downstream.png")
    score = study.get("score", "score")
    md = ["## Downstream utility: rehabilitation assessment", "",
          f"An assessment network ({score} regression + exercise) trained under each condition in {study['k']} "
          f"subject-wise folds of the training subjects; RMSE in {score} points, mean ± std over folds"
          + _pooled(study) + ", best per column in bold. Protocol in metrics.json (`downstream.protocol`, "
          "fold subjects in `downstream.folds`). "
          "exercise-mean is the no-skill baseline (each exercise's mean training score): a condition that does not "
          "beat it has learned nothing from the motion that carries over to new subjects. "
          f"RMSE² = bias² + within-exercise error²: *bias* ({score} points) is how far each exercise's mean "
          "prediction sits from its mean truth; *within-exercise r* is the correlation of predictions and truths "
          "once each exercise's means are removed, i.e. whether the assessor ranks new subjects within an "
          "exercise (0: it does not; the baseline has no ranking).", ""]
    if study.get("gen_scores") == "balanced":
        md += [f"Generated data: conditioned on {score} values drawn uniformly over each exercise's training range "
               "(balanced scores: the model family's default or `--downstream-scores balanced`), labelled with "
               "them.", ""]
    if "real+windows" in study["conditions"]:
        md += ["real+windows is the control for real+generated: each real training sequence cut as the generator "
               "saw it in training (its preprocessing and frame rate, a random window as long as the generated "
               "sequences), labelled with its true score. real+generated beats it only if the generated data add "
               "something beyond the generator's own training material.", ""]
    per = study.get("n_gen_per_real", 1)
    if per > 1:
        md += [f"{per} generated (and {per} augmented) sequences per real one, each real sequence counted {per} "
               "times: half of what every mixed assessor trains on is real (`--downstream-per-real`).", ""]
    so = study.get("sampler") or {}
    named = (("score_guidance", "score guidance"), ("repetition_guidance", "repetition guidance"))
    scales = [f"{name} {so[k]:g}" for k, name in named if so.get(k) is not None]
    if scales:
        md += [f"Generated data sampled at {', '.join(scales)} (the model family's settings for training data, or "
               "`--downstream-score-guidance` / `--downstream-repetition-guidance`; the rest of this report samples "
               "with the evaluation's own settings).", ""]
    if side == "held_out_test":
        md += ["Tested on the test subjects, which neither the generator nor the assessor saw:", "",
               downstream_table(study, "held_out_test"), "",
               "Tested on each fold's held-out training subjects (the generator saw them, so this favours "
               "real+generated and tstr):", "", downstream_table(study, "fold_test"), ""]
    else:
        md += ["There were no test subjects: tested on each fold's held-out training subjects, which the generator "
               "saw (optimistic for real+generated and tstr).", "", downstream_table(study, "fold_test"), ""]
    return md + ["![downstream](downstream.png)", ""]


def text_section(t: dict) -> list[str]:
    md = ["## Text to motion: do quality phrases move the score?", "",
          "Samples from every held-out description × held-out quality phrase, scored by the real-trained TS "
          "regressor; real = the same regressor on held-out real sequences of that exercise in that band.", "",
          "| exercise | high: generated (real) | mid: generated (real) | low: generated (real) | high − low ± se (real) |",
          "|---|---|---|---|---|"]

    def cell(d):
        real = "–" if d["real_reference"] is None else f"{d['real_reference']:.1f}"
        return f"{d['predicted_score']:.1f} ± {d['predicted_score_std']:.1f} ({real})"

    for e, v in t["quality_control"].items():
        rg = v.get("real_high_minus_low")
        md.append(f"| {e} | {cell(v['high'])} | {cell(v['mid'])} | {cell(v['low'])} | "
                  f"{v['high_minus_low']:+.1f} ± {v['high_minus_low_se']:.1f} ({'–' if rg is None else f'{rg:+.1f}'}) |")
    real_gap = t.get("real_reference_high_minus_low")
    md += ["", f"Exercises where the score moves as stated: {t['share_of_exercises_where_quality_moves_as_stated']:.0%}; "
           f"mean high − low {t['mean_high_minus_low']:+.1f} ± {t['mean_high_minus_low_se']:.1f} TS (real "
           f"{'–' if real_gap is None else f'{real_gap:+.1f}'}). Example prompt: "
           f"“{next(iter(t['quality_control'].values()))['low']['prompt']}”.", ""]
    if t.get("composition"):
        c = t["composition"]
        md += ["## Text to motion: composed movements", "",
               f"Two held-out descriptions of different exercises in a row ({c['n_pairs']} ordered pairs, one "
               f"sequence each, halves of {c['half_seconds']:.1f} s): the real-trained classifier recognises "
               f"{c['halves_recognised']:.0%} of the halves as the exercise described, both halves of "
               f"{c['both_halves_recognised']:.0%} of the sequences (real recordings cut to the same duration: "
               f"{c['real_reference']:.0%}).", ""]
    if t.get("quality_reader"):
        md += ["Quality reader on held-out sentences (share read as stated): "
               + ", ".join(f"{k} {v:.0%}" for k, v in t["quality_reader"].items()) + ".", ""]
    return md


def write_report(out: str | Path, result: EvaluationResult) -> Path:
    """report.md and its pictures (metrics.png, features_pca.png, trajectories.png, samples.gif,
    downstream.png) in `out`; returns the path of report.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    r, ex = result.summary, result.exercises
    plot_metrics(r["metrics"], out / "metrics.png")
    plot_features(result.features, ex, out / "features_pca.png")
    plot_trajectories(result.real_test, result.real_test_exercise, result.samples, result.sample_exercise, ex,
                      result.skeleton, out / "trajectories.png")
    pick = []
    for e in ex:
        pick += [i for i, x in enumerate(result.sample_exercise) if x == e][:2]
    render_gif([result.samples[i] for i in pick], result.skeleton, out / "samples.gif",
               titles=[f"{result.sample_exercise[i]} score {result.sample_score[i]:.0f}" for i in pick],
               fps=result.fps, cols=5, max_frames=80)

    ev_r = r["evaluator"]
    test = (f"test folder `{r['test_data']}`" if r.get("test_data") else "held-out subjects of the run")
    md = [f"# Evaluation of `{r['run']}` ({r['family']}, step {r['model_step']})", "",
          f"Data: `{r['data']}` — {r['n_train_sequences']} training sequences; {r['n_test_sequences']} test "
          f"sequences ({test}); {r['n_generated_per_repeat']} generated per repeat, {r['repeats']} repeats, seed "
          f"{r['seed']}.", ""]
    if r.get("sampler"):
        md += ["Sampled with " + ", ".join(f"{k.replace('_', ' ')} {'= guidance' if v is None else v}"
                                           for k, v in r["sampler"].items()) + ".", ""]
    t = r.get("training") or {}
    if t.get("stopped_early"):
        md += [f"**Warning: training ended short of its plan: step {t['steps']} of {t['planned_steps']} "
               f"({100 * t['steps'] / t['planned_steps']:.0f} %), {t.get('stop_reason') or 'stopped'}; the model is "
               "undertrained** (continue with `rehabgen train --out RUN --resume`).", ""]
    if r.get("test_subjects_also_in_training"):
        md += [f"**Warning**: test subject id(s) {r['test_subjects_also_in_training']} are also training subjects; "
               "if they are the same people, the test numbers are optimistic.", ""]
    md += ["## Evaluator networks (trained on real training subjects, tested on the test subjects)", "",
           "| exercise accuracy | score MAE | score RMSE | n |", "|---|---|---|---|",
           f"| {ev_r.get('accuracy', float('nan')):.3f} | {ev_r.get('score_mae', float('nan')):.2f} | "
           f"{ev_r.get('score_rmse', float('nan')):.2f} | {ev_r.get('n', '')} |", "",
           "## Fidelity, diversity, plausibility", "",
           "Every metric of the generated set next to the same metric of real test data (the reference a "
           "perfect generator would reach), both against the real training set; mean ± std over repeats. "
           "↑ higher is better, ↓ lower is better, ≈ real: best when equal to the real reference.", "",
           metrics_table(r["metrics"]), "", references_note(r["metrics"]), "", "![metrics](metrics.png)", "",
           "![feature space](features_pca.png)", "", "![trajectories](trajectories.png)", "",
           "![samples](samples.gif)", ""]
    md += kinematics_section(r.get("kinematics") or {})
    md += kinematic_reference_section(r.get("kinematic_reference"), r["metrics"])
    md += group_bands_section(r.get("real_group_bands"), r.get("kinematics") or {})
    if r.get("text"):
        md += text_section(r["text"])
    if r.get("downstream"):
        md += downstream_section(r["downstream"], out)
    md += ["## Protocol", "", "```", r["protocol"], "```", ""]
    atomic_write_bytes(out / "report.md", "\n".join(md).encode())
    return out / "report.md"


def compare_table(results: list[dict], names: list[str]) -> str:
    keys = list(results[0]["metrics"])
    head = "| metric | real reference | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for k in keys:
        ref = results[0]["metrics"][k]["real_reference"]
        cells = [_fmt(r["metrics"][k]["generated"]) if k in r["metrics"] else "n/a" for r in results]
        lines.append(f"| {k} {registry.arrow(k)} | {_fmt(ref)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
