"""Evaluation report: Markdown tables, plots and an animation, and the multi-model comparison."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rehabgen.render import render_gif, save_figure

DESCRIPTIONS = {
    "fid": "FID on classifier features",
    "fid_regressor": "FID on score-regressor features",
    "accuracy": "exercise accuracy (real-trained classifier)",
    "score_mae": "score fidelity: MAE requested vs predicted",
    "precision": "precision (k-NN manifold)",
    "recall": "recall (k-NN manifold)",
    "density": "density",
    "coverage": "coverage",
    "mms": "mean max similarity (dist. to nearest real)",
    "apd": "average pair distance (diversity)",
    "acpd": "per-exercise pair distance (multimodality)",
    "wpd": "warping path diversity (DTW)",
    "bone_length_error": "bone-length error of medians (relative)",
    "bone_length_deviation": "bone-length wobble per frame (relative)",
    "limb_violations": "bones off by >10%",
    "velocity_w": "speed distribution, Wasserstein (m/s)",
    "acceleration_w": "acceleration distribution, Wasserstein (m/s²)",
    "jerk_w": "jerk distribution, Wasserstein (m/s³)",
    "r_precision_top1": "text→motion R-precision top-1 (groups of 32)",
    "r_precision_top2": "R-precision top-2",
    "r_precision_top3": "R-precision top-3",
    "mm_distance": "multimodal distance text↔motion",
    "text_fid": "FID on retrieval-model motion features",
    "text_accuracy": "exercise accuracy of samples from held-out prompts",
}


def _fmt(d: dict) -> str:
    m, s = d.get("mean"), d.get("std")
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "n/a"
    return f"{m:.3f} ± {s:.3f}" if s is not None else f"{m:.3f}"


def _direction(k: str) -> str:
    from rehabgen.evaluate import CLOSE_TO_REAL, HIGHER_IS_BETTER, LOWER_IS_BETTER

    if k in CLOSE_TO_REAL:
        return "≈ real"
    if k in HIGHER_IS_BETTER:
        return "↑"
    if k in LOWER_IS_BETTER:
        return "↓"
    return ""


def _leaf_rows(d, path=()):
    """Flatten nested dicts down to leaves that hold mean/std."""
    if isinstance(d, dict):
        if "mean" in d and not isinstance(d["mean"], dict):
            yield path, d
            return
        for k, v in d.items():
            yield from _leaf_rows(v, path + (str(k),))


def metrics_table(metrics: dict) -> str:
    lines = ["| metric | generated | real reference | better |", "|---|---|---|---|"]
    for k, v in metrics.items():
        lines.append(f"| {DESCRIPTIONS.get(k, k)} (`{k}`) | {_fmt(v['generated'])} | {_fmt(v['real_reference'])} | {_direction(k)} |")
    return "\n".join(lines)


def plot_metrics(metrics: dict, out: Path) -> Path:
    import matplotlib.pyplot as plt

    keys = list(metrics)
    cols = 6
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.0 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        g, r = metrics[k]["generated"], metrics[k]["real_reference"]
        ax.bar([0, 1], [g["mean"], r["mean"]], yerr=[g["std"], r["std"]], color=["tab:orange", "tab:gray"], capsize=3)
        ax.set_xticks([0, 1], ["gen", "real"], fontsize=7)
        ax.set_title(k, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle("generated vs real reference (mean ± std over repeats)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_features(feats: dict[str, tuple[np.ndarray, np.ndarray]], exercises: tuple[str, ...], out: Path) -> Path:
    """PCA of evaluator features; colour = exercise, marker = source."""
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

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


def write_report(out: Path, result: dict, model, samples, cond_ex, cond_sc, R_feats, ev, train_ds, test_ds,
                 R_pos) -> Path:
    from rehabgen.evaluate import _model_space_real, _pad
    from rehabgen.metrics.evaluator import eval_inputs, eval_inputs_from_positions

    out = Path(out)
    ex = tuple(model.spec.exercises)
    plot_metrics(result["metrics"], out / "metrics.png")
    gen_idx = np.array([ex.index(e) for e in cond_ex])
    xg = eval_inputs_from_positions(_pad(samples), model.spec.skeleton, gen_idx, cond_sc)[0]
    x_test, ex_test, _ = eval_inputs(test_ds)
    _, ex_train, _ = eval_inputs(train_ds)
    plot_features({"real train": (R_feats["classifier"], ex_train),
                   "real test": (ev.features(x_test, "classifier"), ex_test),
                   "generated": (ev.features(xg, "classifier"), gen_idx)}, ex, out / "features_pca.png")
    plot_trajectories(_model_space_real(model, test_ds), [s.exercise for s in test_ds.sequences], samples, cond_ex,
                      ex, model.spec.skeleton, out / "trajectories.png")
    pick = []
    for e in ex:
        pick += [i for i, x in enumerate(cond_ex) if x == e][:2]
    render_gif([samples[i] for i in pick], model.spec.skeleton, out / "samples.gif",
               titles=[f"{cond_ex[i]} score {cond_sc[i]:.0f}" for i in pick], fps=model.spec.fps, cols=5, max_frames=80)

    ev_r = result["evaluator"]
    md = [f"# Evaluation of `{result['run']}` ({result['family']}, step {result['model_step']})", "",
          f"Data: `{result['data']}` — {result['n_train_sequences']} training / {result['n_test_sequences']} held-out "
          f"sequences; {result['n_generated_per_repeat']} generated per repeat, {result['repeats']} repeats, seed "
          f"{result['seed']}.", "",
          "## Evaluator networks (trained on real training subjects, tested on held-out subjects)", "",
          "| exercise accuracy | score MAE | score RMSE | n |", "|---|---|---|---|",
          f"| {ev_r.get('accuracy', float('nan')):.3f} | {ev_r.get('score_mae', float('nan')):.2f} | "
          f"{ev_r.get('score_rmse', float('nan')):.2f} | {ev_r.get('n', '')} |", "",
          "## Fidelity, diversity, plausibility", "",
          "Every metric of the generated set next to the same metric of real held-out data (the reference a "
          "perfect generator would reach), both against the real training set; mean ± std over repeats.", "",
          metrics_table(result["metrics"]), "", "![metrics](metrics.png)", "",
          "![feature space](features_pca.png)", "", "![trajectories](trajectories.png)", "",
          "![samples](samples.gif)", ""]
    if result.get("text"):
        t = result["text"]
        md += ["## Text to motion: do quality phrases move the score?", "",
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
    if result.get("downstream"):
        md += ["## Downstream utility: rehabilitation assessment", "",
               result["downstream"].get("protocol", ""), "", "| condition / measure | mean ± std |", "|---|---|"]
        for path, d in _leaf_rows({k: v for k, v in result["downstream"].items() if k not in ("protocol", "folds")}):
            md.append(f"| {' / '.join(path)} | {_fmt(d)} |")
        md.append("")
    md += ["## Protocol", "", "```", result["protocol"], "```", ""]
    from rehabgen.io import atomic_write_bytes

    atomic_write_bytes(out / "report.md", "\n".join(md).encode())
    return out / "report.md"


def compare_table(results: list[dict], names: list[str]) -> str:
    keys = list(results[0]["metrics"])
    head = "| metric | real reference | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for k in keys:
        ref = results[0]["metrics"][k]["real_reference"]
        cells = [_fmt(r["metrics"][k]["generated"]) if k in r["metrics"] else "n/a" for r in results]
        lines.append(f"| {k} {_direction(k)} | {_fmt(ref)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
