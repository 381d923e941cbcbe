"""Real data in the loop: every family at one equal training budget, several seeds, evaluated
against real held-out patients; one table of mean ± std over seeds, each metric beside its real
reference.

    python benchmarks/real_kimore.py --data ../shared/data/kimore-patients --out /tmp/realbench \
        --families diffusion,vae,gan --seeds 0,1,2 --steps 8000

Runs one training at a time (two torch jobs on 2 cores slow each other ~10x) with the threads
given by --threads. Finished runs and reports are reused, so an interrupted benchmark resumes; a
report whose downstream study used other scores than asked (made before a family's default
changed) stops it with an error naming the report, rather than mixing two protocols in one table.
`--test-data DIR` evaluates on a given test folder (published folds) instead of each run's own
held-out subjects. `--guidance G` samples the diffusion runs at another classifier-free guidance
(training does not depend on it, so the same runs serve every G; reports go to `report_gG`), and
`--drift-guidance D` / `--repetition-guidance R` at other scales for the slow and the repetition
band (`report_dgD`, `report_rgR`; `--drift-guidance 1.75 --repetition-guidance 1.75 --guidance
1.75` is the one-scale guidance of models trained before band guidance existed), and
`--drift-temperature T` with one starting-noise scale below 0.1 Hz for every exercise instead of
the model's (`report_dtT`; `--drift-temperature 1` is how models trained before it sampled);
The downstream study's generated data is made as `rehabgen evaluate` makes it by default (the
family's settings: for diffusion balanced scores, score guidance 4, repetition guidance 2.5; for the
VAE balanced scores; for the GAN matched ones);
`--downstream-scores matched|balanced` (reports go to `report_matched` / `report_balanced`),
`--downstream-score-guidance S` and `--downstream-repetition-guidance R` (`report..._sgS`,
`report..._drgR`) override it; `--no-downstream` skips the downstream study. Prints Markdown;
writes `results.json` and `table.md` into --out.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

from rehabgen.config import GEN_SCORES, RunConfig
from rehabgen.evaluate import evaluate_run
from rehabgen.report import KIN_UNITS  # the kinematic quantities, in the report's order
from rehabgen.metrics.registry import arrow, label
from rehabgen.models import SamplerOptions, get_family
from rehabgen.runs import train_run


# diffusion sampler options a benchmark can set -> their report-folder / table suffix
SAMPLER_TAGS = {"guidance": "g", "drift_guidance": "dg", "repetition_guidance": "rg", "drift_temperature": "dt"}


def sampler_tag(options: dict) -> str:
    """`_g1.75_rg2.5`-style suffix of the sampler options that were set."""
    return "".join(f"_{SAMPLER_TAGS[k]}{v:g}" for k, v in options.items() if v is not None)


def scores_tag(downstream_scores: str | None) -> str:
    """`_matched` / `_balanced` where the study's scores were set, "" for the family's default."""
    return "" if downstream_scores is None else f"_{downstream_scores}"


def study_tag(assessor_seeds: int, score_guidance: float | None, repetition_guidance: float | None,
              repeats: int, per_real: int = 1) -> str:
    """`_a3_sg4_r3_p3`-style suffix of the downstream-study settings that differ from the defaults."""
    return (("" if assessor_seeds == 1 else f"_a{assessor_seeds}")
            + ("" if score_guidance is None else f"_sg{score_guidance:g}")
            + ("" if repetition_guidance is None else f"_drg{repetition_guidance:g}")
            + ("" if repeats == 1 else f"_r{repeats}")
            + ("" if per_real == 1 else f"_p{per_real}"))


def run_one(data: str, family: str, seed: int, steps: int, out: Path, test_data: str | None, repeats: int,
            folds: int, downstream_scores: str | None = None, sampler_options: dict | None = None,
            downstream: bool = True, downstream_seeds: int = 1, downstream_score_guidance: float | None = None,
            downstream_repetition_guidance: float | None = None, downstream_repeats: int = 1,
            downstream_per_real: int = 1) -> dict:
    run = out / f"{family}_s{seed}"
    if not (run / "model" / "model.json").is_file():
        resume = (run / "checkpoint").is_dir()
        train_run(RunConfig(data=data, model=family, seed=seed, steps=steps), run, resume=resume, steps=steps)
    train_s = json.loads((run / "train_summary.json").read_text())["seconds"]  # of the (last) training session
    given = {k: v for k, v in (sampler_options or {}).items() if v is not None}
    given = given if family == "diffusion" else {}  # the other families have no guidance
    sg = downstream_score_guidance if family == "diffusion" and downstream else None
    drg = downstream_repetition_guidance if family == "diffusion" and downstream else None
    rep = run / (("report_test" if test_data else "report") + scores_tag(downstream_scores)
                 + sampler_tag(given) + ("" if downstream else "_nodownstream")
                 + (study_tag(downstream_seeds, sg, drg, downstream_repeats, downstream_per_real)
                    if downstream else ""))
    if (rep / "metrics.json").is_file():
        res = json.loads((rep / "metrics.json").read_text())
        made = (res.get("downstream") or {}).get("gen_scores")
        want = downstream_scores or get_family(family).study_scores()
        if downstream and made not in (None, want):  # a report from before the family's default changed
            raise SystemExit(f"error: {rep} holds a downstream study on {made!r} scores, made before the {family} "
                             f"family's default became {want!r}: move that report away to measure it again")
    else:
        sampler = SamplerOptions(**given) if given else None
        res = evaluate_run(run, data, rep, seed=seed, repeats=repeats, folds=folds, test_data=test_data,
                           downstream_scores=downstream_scores, sampler=sampler, downstream=downstream,
                           downstream_seeds=downstream_seeds, downstream_score_guidance=sg,
                           downstream_repetition_guidance=drg, downstream_repeats=downstream_repeats,
                           downstream_per_real=downstream_per_real)
    res["train_seconds"] = train_s
    return res


def _ms(vals) -> str:
    v = np.asarray([x for x in vals if x is not None and np.isfinite(x)], np.float64)
    if not v.size:
        return "n/a"
    return f"{v.mean():.3f} ± {v.std():.3f}" if v.size > 1 else f"{v.mean():.3f}"


def downstream_value(res: dict, condition: str, exercise: str | None = None, key: str = "rmse") -> float | None:
    """The mean of one downstream result (`key`: rmse, bias, within_r) of a condition on the
    held-out test subjects (else the folds), overall or for one exercise; None where absent."""
    c = (res.get("downstream") or {}).get("conditions", {}).get(condition, {})
    side = c.get("held_out_test") or c.get("fold_test") or {}
    d = side.get("per_exercise", {}).get(exercise, {}) if exercise else side
    r = d.get(key)
    return None if r is None else r["mean"]


def table(results: dict[str, list[dict]]) -> str:
    fams = list(results)
    first = next(r for rs in results.values() for r in rs)
    head = "| metric | real reference | " + " | ".join(f"{f} ({len(results[f])} seeds)" for f in fams) + " |"
    lines = [head, "|" + "---|" * (len(fams) + 2)]
    for k in first["metrics"]:
        ref = [r["metrics"][k]["real_reference"]["mean"] for rs in results.values() for r in rs if k in r["metrics"]]
        cells = [_ms([r["metrics"][k]["generated"]["mean"] for r in results[f] if k in r["metrics"]]) for f in fams]
        lines.append(f"| {label(k)} {arrow(k)} | {_ms(ref)} | " + " | ".join(cells) + " |")
        q = k.removesuffix("_w")  # the kinematic distances "<quantity>_w" have a stable reference
        if all(q in (r.get("kinematic_reference") or {}) for rs in results.values() for r in rs):
            stable = [r["kinematic_reference"][q]["mean"] for rs in results.values() for r in rs]
            ratios = [_ms([r["metrics"][k]["generated"]["mean"] / r["kinematic_reference"][q]["mean"]
                           for r in results[f]]) for f in fams]
            n = first["kinematic_reference"][q]["n_splits"]
            lines.append(f"| ↳ generated / stable real reference (mean over {n} subject splits; target ≤ 2) "
                         f"| {_ms(stable)} | " + " | ".join(ratios) + " |")
    exercises = sorted((first.get("downstream") or {}).get("conditions", {}).get("real", {})
                       .get("held_out_test", {}).get("per_exercise", {}))
    def study_row(name: str, cond: str, exercise: str | None = None, key: str = "rmse") -> str | None:
        vals = {f: [downstream_value(r, cond, exercise, key) for r in results[f]] for f in fams}
        if not any(v is not None for vs in vals.values() for v in vs):
            return None  # a study from before this result
        if cond in ("exercise-mean", "real", "real+augmented"):  # the same for every family: reference columns
            return f"| {name} | {_ms([v for vs in vals.values() for v in vs])} | " + " | ".join("–" for _ in fams) + " |"
        return f"| {name} | – | " + " | ".join(_ms(vals[f]) for f in fams) + " |"

    rows = [study_row(f"downstream TS RMSE, {cond}" + (f", {e}" if e else "") + " ↓", cond, e)
            for cond in ("exercise-mean", "real", "real+augmented", "real+generated", "real+windows", "tstr")
            for e in [None, *exercises]]
    rows += [study_row(f"downstream {what}, {cond} {way}", cond, key=key)
             for key, what, way in (("bias", "bias part of the RMSE", "↓"), ("within_r", "within-exercise r", "↑"))
             for cond in ("real", "real+augmented", "real+generated", "real+windows", "tstr")]
    lines += [row for row in rows if row]
    if exercises:
        lines.append("| downstream: real+generated against real only (mean over runs) | – | "
                     + " | ".join(generated_gain(results[f], exercises) for f in fams) + " |")
        if any(downstream_value(r, "real+windows") is not None for rs in results.values() for r in rs):
            lines.append("| downstream control: real+windows (the generator's training windows) against real only | – | "
                         + " | ".join(generated_gain(results[f], exercises, "real+windows") for f in fams) + " |")
    return "\n".join(lines)


def generated_gain(rs: list[dict], exercises: list[str], cond: str = "real+generated") -> str:
    """`−8.3 %, better on 5 of 5 exercises`: the runs' mean RMSE of `cond` against their mean
    real-only RMSE, overall and per exercise (for real+generated, the issue's downstream target)."""
    def mean(cond, e=None):
        v = [downstream_value(r, cond, e) for r in rs]
        return np.mean(v) if v and None not in v else None

    real, gen = mean("real"), mean(cond)
    if real is None or gen is None:
        return "n/a"
    better = sum(mean(cond, e) < mean("real", e) for e in exercises)
    return f"{100 * (gen / real - 1):+.1f} %, better on {better} of {len(exercises)} exercises"


def kinematics_lines(results: dict[str, list[dict]]) -> str:
    """Which way the motion is off: generated / real ratio of the mean and 95th percentile of
    speed, acceleration, jerk, range of motion and repetition rate, overall and per exercise, mean over seeds."""
    first = next(r for rs in results.values() for r in rs)
    scopes = list(first.get("kinematics", {}))
    lines = ["| family | quantity | " + " | ".join(f"{s} mean / p95" for s in scopes) + " |",
             "|---|---|" + "---|" * len(scopes)]

    def ratios(rs: list[dict], scope: str, q: str, key: str) -> list[list[float]]:
        """[mean, p95] lists of `key` ("ratio" or "train_ratio") over the runs that have it."""
        return [[r["kinematics"][scope][q][st][key] for r in rs
                 if key in r.get("kinematics", {}).get(scope, {}).get(q, {}).get(st, {})] for st in ("mean", "p95")]

    for f, rs in results.items():
        for q in KIN_UNITS:
            cells = [" / ".join(f"{np.mean(v):.2f}" if v else "n/a" for v in ratios(rs, sc, q, "ratio"))
                     for sc in scopes]
            lines.append(f"| {f} | {q} (generated / real) | " + " | ".join(cells) + " |")
    # the same ratios between two groups of real patients (training / test of each run's split):
    # how close real patients come to the test patients, per split, mean over the first family's seeds
    rs = next(iter(results.values()))
    for q in KIN_UNITS:
        cells = [" / ".join(f"{np.mean(v):.2f} ({np.min(v):.2f}-{np.max(v):.2f})" if v else "n/a"
                            for v in ratios(rs, sc, q, "train_ratio")) for sc in scopes]
        lines.append(f"| real training patients | {q} (training / test) | " + " | ".join(cells) + " |")
    # the band two groups of real patients span over many splits (`split_ratio_bands`), first run's
    bands = next((r["real_group_bands"] for r in rs if r.get("real_group_bands")), None)
    if bands:
        for q in ("speed", "range_of_motion"):
            per = bands[q]["per_exercise"]
            cells = [f"{per[sc]['p5']:.2f}–{per[sc]['p95']:.2f}" if sc in per else
                     (f"all within ±{bands['tolerance']:.0%}: {bands[q]['all_within']:.0%}" if sc == "overall" else "–")
                     for sc in scopes]
            lines.append(f"| real patient groups, p5–p95 over {bands['n_splits']} splits | {q} (other / test) | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/kimore-patients")
    ap.add_argument("--out", required=True)
    ap.add_argument("--families", default="diffusion,vae,gan")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the first family (the one compared closely)")
    ap.add_argument("--other-seeds", default=None, help="seeds of the other families [default: --seeds]")
    ap.add_argument("--seeds-of", action="append", default=[], metavar="FAMILY=SEEDS",
                    help="seeds of one family, overriding the above (e.g. vae=0); repeatable")
    ap.add_argument("--steps", type=int, default=RunConfig().steps, help="equal training budget (optimizer steps)")
    ap.add_argument("--test-data", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--downstream-scores", default=None, choices=GEN_SCORES,
                    help="scores of the downstream study's generated data [default: the family's; see "
                         "`rehabgen evaluate --help`]")
    ap.add_argument("--guidance", type=float, default=None,
                    help="sample the diffusion runs at this classifier-free guidance [default: the model's]")
    ap.add_argument("--drift-guidance", type=float, default=None,
                    help="guidance below 0.1 Hz for the diffusion runs [default: the model's]")
    ap.add_argument("--repetition-guidance", type=float, default=None,
                    help="guidance at 0.1-0.5 Hz for the diffusion runs [default: the model's]")
    ap.add_argument("--drift-temperature", type=float, default=None,
                    help="starting-noise scale below 0.1 Hz for the diffusion runs, every exercise [default: the model's]")
    ap.add_argument("--no-downstream", action="store_true", help="skip the downstream study (faster)")
    ap.add_argument("--downstream-seeds", type=int, default=1,
                    help="assessor initialisations per fold and condition (reports go to report..._aN)")
    ap.add_argument("--downstream-score-guidance", type=float, default=None,
                    help="score guidance of the diffusion runs' downstream generated data (reports go to report..._sgS)")
    ap.add_argument("--downstream-repetition-guidance", type=float, default=None,
                    help="repetition guidance of the diffusion runs' downstream generated data (report..._drgR)")
    ap.add_argument("--downstream-repeats", type=int, default=1,
                    help="study seeds per run: the study with seeds seed, seed+1, ..., pooled (report..._rN)")
    ap.add_argument("--downstream-per-real", type=int, default=1,
                    help="generated and augmented sequences per real one in the study, half the mix real (report..._pN)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    options = {k: getattr(a, k) for k in SAMPLER_TAGS}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    for i, fam in enumerate(a.families.split(",")):
        seeds = a.seeds if i == 0 or a.other_seeds is None else a.other_seeds
        seeds = dict(x.split("=", 1) for x in a.seeds_of).get(fam, seeds)
        for seed in (int(s) for s in seeds.split(",")):
            results.setdefault(fam, []).append(run_one(a.data, fam, seed, a.steps, out, a.test_data, a.repeats,
                                                       a.folds, a.downstream_scores, options,
                                                       not a.no_downstream, a.downstream_seeds,
                                                       a.downstream_score_guidance,
                                                       a.downstream_repetition_guidance, a.downstream_repeats,
                                                       a.downstream_per_real))
    head = (f"Measured {date.today()}, {platform.processor() or platform.machine()}, {a.threads} threads, "
            f"data {a.data}, {a.steps} steps per run, seeds {a.seeds} (others {a.other_seeds or a.seeds}"
            f"{'; ' + ', '.join(a.seeds_of) if a.seeds_of else ''}), "
            f"{'test set ' + a.test_data if a.test_data else 'each run held out its own subjects'}; "
            f"downstream generated data: {a.downstream_scores or 'the family default'} scores, "
            f"{a.downstream_seeds} assessor seed(s), {a.downstream_repeats} study seed(s) per run, "
            f"{a.downstream_per_real} generated per real sequence"
            f"{'' if a.downstream_score_guidance is None else f', score guidance {a.downstream_score_guidance:g}'}"
            f"{'' if a.downstream_repetition_guidance is None else f', repetition guidance {a.downstream_repetition_guidance:g}'}; "
            + "".join(f"diffusion {k.replace('_', ' ')} {v:g}; " for k, v in options.items() if v is not None)
            + "training seconds per run (machine shared or not: see the README): " + ", ".join(f"{f} {np.mean([r['train_seconds'] for r in rs]):.0f}"
                                                   for f, rs in results.items()))
    md = "\n\n".join([head, table(results), kinematics_lines(results)])
    print(md)
    tag = (scores_tag(a.downstream_scores) + sampler_tag(options)
           + study_tag(a.downstream_seeds, a.downstream_score_guidance, a.downstream_repetition_guidance,
                       a.downstream_repeats, a.downstream_per_real))
    (out / f"table{tag}.md").write_text(md + "\n")
    (out / f"results{tag}.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
