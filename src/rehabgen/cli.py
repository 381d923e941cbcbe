"""`rehabgen` command line. Each command is a thin layer over a library function."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Generative models of skeleton-based rehabilitation motion.")
data_app = typer.Typer(no_args_is_help=True, help="Built-in data, inspection of data folders.")
app.add_typer(data_app, name="data")
console = Console(stderr=True, soft_wrap=True)  # messages must stay greppable: no hard wraps


def fail(msg: str, code: int = 2):
    console.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(code)


def _load(path: Path):
    from rehabgen.data import DataError, load_dataset
    from rehabgen.skeleton import SkeletonError

    try:
        return load_dataset(path)
    except (DataError, SkeletonError) as e:
        fail(str(e))


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
@data_app.command("synth")
def data_synth(
    out_dir: Path = typer.Argument(..., help="Folder to write (KIMORE layout); must be empty or new."),
    subjects: int = typer.Option(20, "--subjects", min=1, help="Number of subjects."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes identical files."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Kinect-like noise and dropouts."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder."),
):
    """Write a procedurally generated rehabilitation dataset in KIMORE layout."""
    from rehabgen.data.synth import SynthConfig, write_synthetic_kimore

    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        fail(f"{out_dir}: folder is not empty (use --force to write into it anyway)")
    info = write_synthetic_kimore(out_dir, SynthConfig(n_subjects=subjects, seed=seed, noise=noise), progress=True)
    console.print(f"wrote {info['n_sequences']} sequences of {info['n_subjects']} subjects to {out_dir}")


@data_app.command("inspect")
def data_inspect(
    data_dir: Path = typer.Argument(..., help="KIMORE-layout folder or generic-import folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
):
    """Counts per group/exercise, frames, score ranges, invalid joints, quarantined files."""
    ds = _load(data_dir)
    s = ds.summary()
    s["fps"] = ds.fps
    if as_json:
        sys.stdout.write(json.dumps(s, indent=2) + "\n")
        return
    out = Console()
    out.print(f"[bold]{data_dir}[/]: {s['n_subjects']} subjects, {s['n_sequences']} sequences, "
              f"skeleton {s['skeleton']} ({s['n_joints']} joints), ~{ds.fps:g} fps, "
              f"{s['pct_invalid_joints']}% invalid joints")
    t = Table(title="per exercise")
    for c in ("exercise", "sequences", "subjects", "frames", "% invalid"):
        t.add_column(c)
    for ex, e in s["per_exercise"].items():
        t.add_row(ex, str(e["n_sequences"]), str(e["n_subjects"]), str(e["n_frames"]), f"{e['pct_invalid_joints']:.2f}")
    out.print(t)
    t = Table(title="scores")
    for c in ("score", "min", "max", "mean", "missing"):
        t.add_column(c)
    for name, v in s["scores"].items():
        t.add_row(name, str(v["min"]), str(v["max"]), str(v["mean"]), str(v["n_missing"]))
    out.print(t)
    out.print("groups: " + ", ".join(f"{g}={n}" for g, n in s["per_group"].items()))
    if s["quarantined"]:
        t = Table(title=f"quarantined files ({len(s['quarantined'])})")
        t.add_column("path")
        t.add_column("reason")
        for q in s["quarantined"]:
            t.add_row(q["path"], q["reason"])
        out.print(t)
    else:
        out.print("no quarantined files")


# ------------------------------------------------------------------------------------------
# render
# ------------------------------------------------------------------------------------------
@app.command("render")
def render_cmd(
    source: Path = typer.Argument(..., help="A data folder or a samples .npz from `rehabgen sample`."),
    out: Path = typer.Option(None, "--out", "-o", help="Output .gif or .mp4 (default: beside the source)."),
    n: int = typer.Option(4, "--n", min=1, help="How many sequences, side by side."),
    exercise: Optional[str] = typer.Option(None, "--exercise", help="Only this exercise (e.g. Es1)."),
    subject: Optional[str] = typer.Option(None, "--subject", help="Only this subject (data folders)."),
    view: str = typer.Option("front", "--view", help="front, side or top."),
    max_frames: int = typer.Option(120, "--max-frames", min=2, help="Subsample long sequences to this many frames."),
    seed: int = typer.Option(0, "--seed", help="Seed for picking which sequences to show."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
):
    """Animate skeleton sequences as stick figures."""
    import numpy as np

    from rehabgen.render import VIEWS, render_gif

    if view not in VIEWS:
        fail(f"--view must be one of {VIEWS}, got {view!r}")
    rng = np.random.default_rng(seed)
    if source.suffix == ".npz":
        from rehabgen.samples import SamplesError, load_samples

        try:
            smp = load_samples(source)
        except SamplesError as e:
            fail(str(e))
        idx = np.arange(len(smp["positions"]))
        if exercise:
            idx = idx[smp["exercise"][idx] == exercise]
        if idx.size == 0:
            fail(f"{source}: no samples of exercise {exercise!r}")
        idx = idx[:n]
        seqs = [smp["positions"][i] for i in idx]
        titles = [f"{smp['exercise'][i]}" + (f" score {float(smp['score'][i]):.0f}" if np.isfinite(smp["score"][i]) else "")
                  for i in idx]
        valid, skeleton, fps = None, smp["skeleton"], float(smp.get("fps", 15.0))
    else:
        ds = _load(source)
        idx = [i for i, s in enumerate(ds.sequences)
               if (exercise is None or s.exercise == exercise) and (subject is None or s.subject == subject)]
        if not idx:
            fail(f"{source}: no sequence matches exercise={exercise} subject={subject}")
        if len(idx) > n:
            idx = sorted(rng.choice(idx, size=n, replace=False).tolist())
        seqs = [ds[i].positions for i in idx]
        valid = [ds[i].valid for i in idx]
        titles = [f"{ds[i].subject} {ds[i].exercise} TS {ds[i].score('TS'):.0f}" for i in idx]
        skeleton, fps = ds.skeleton, ds.fps
    out = out or Path(f"{source.resolve().stem}.gif")  # in the working directory, never inside the data
    if out.exists() and not force:
        fail(f"{out}: already exists (use --force to overwrite, or --out)")
    try:
        path = render_gif(seqs, skeleton, out, titles=titles, valid=valid, fps=fps, view=view, max_frames=max_frames)
    except (ValueError, RuntimeError) as e:
        fail(str(e))
    console.print(f"wrote {path}")


# ------------------------------------------------------------------------------------------
# models: train, sample, complete
# ------------------------------------------------------------------------------------------
def _parse_sets(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            fail(f"--set expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _default(name: str):
    """A RunConfig field's one default, for help texts."""
    from rehabgen.config import RunConfig

    return getattr(RunConfig(), name) if name != "fps" else RunConfig().preprocess.fps


@app.command("train")
def train_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (config, checkpoints, logs, final model)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data folder (KIMORE layout or generic import)."),
    model: Optional[str] = typer.Option(None, "--model", help=f"Model family: diffusion, vae or gan \\[default: {_default('model')}]."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help=f"Optimizer steps \\[default: {_default('steps')}, or the run's on --resume]."),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Seed of weights, batches and split \\[default: {_default('seed')}]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint, with its own config."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Stop after this many minutes (checkpointed)."),
    max_len: Optional[int] = typer.Option(None, "--max-len", min=8, help=f"Longest sequence in frames (longer are cropped) \\[default: {_default('max_len')}]."),
    fps: Optional[float] = typer.Option(None, "--fps", help=f"Frame rate the model works at \\[default: {_default('fps')}]."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help=f"Share of subjects held out for evaluation \\[default: {_default('test_fraction')}]."),
    ckpt_every: Optional[int] = typer.Option(None, "--ckpt-every", min=1, help=f"Checkpoint period in steps \\[default: {_default('ckpt_every')}]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Per-process batch size."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    sets: list[str] = typer.Option([], "--set", help="Model hyper-parameter key=value (repeatable)."),
    text: bool = typer.Option(False, "--text", help="Also condition on text descriptions (needs rehabgen\\[text])."),
):
    """Train a generative model. Works under `torchrun --nproc_per_node=2` (data parallel)."""
    import os
    from dataclasses import replace

    from rehabgen.data import DataError
    from rehabgen.models import ModelError, get_family
    from rehabgen.config import RunConfig
    from rehabgen.runs import train_run
    from rehabgen.text.encoder import TextEncoderError

    hp = _parse_sets(sets)
    if text:
        hp["text_encoder"] = "minilm"
    if batch_size:
        hp["batch_size"] = batch_size
    if lr:
        hp["lr"] = lr
    given = {k: v for k, v in {"data": None if data is None else str(data), "model": model, "seed": seed,
                                "max_len": max_len, "test_fraction": test_fraction, "ckpt_every": ckpt_every,
                                "hparams": hp or None}.items() if v is not None}
    if fps is not None:
        given["preprocess"] = replace(RunConfig().preprocess, fps=fps)
    changes = {k: v for k, v in {"steps": steps, "max_minutes": minutes}.items() if v is not None}
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    try:
        if resume:
            if given:
                fail(f"--resume continues the run with its own config.json; {', '.join(sorted(given))} can't change "
                     "(only --steps and --minutes)")
            res = train_run(RunConfig(), out, resume=True, is_main=rank == 0, **changes)
        else:
            if data is None:
                fail("--data is required (unless --resume)")
            cfg = RunConfig(**given)
            if text and not get_family(cfg.model).capabilities.text:
                fail(f"--text: the {cfg.model} family can't be conditioned on text")
            res = train_run(cfg, out, is_main=rank == 0, **changes)
    except (DataError, ModelError, TextEncoderError) as e:
        fail(str(e))
    model = res["config"]["model"]
    if rank == 0:
        s = res["summary"]
        console.print(f"trained {model} for {s['steps']} steps in {s['seconds']:.0f} s "
                      f"({s['steps_per_s']:.1f} steps/s, {s['world_size']} process(es)); "
                      f"loss {s['first_loss']:.4f} -> {s['final_loss_ema']:.4f}; model in {out / 'model'}")
    if world > 1:  # clean multi-process exit (avoids rare aborts at interpreter shutdown)
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _samples_out_config(run_dir, model, **kw) -> dict:
    from rehabgen.runs import versions

    return {"run": str(run_dir), "family": model.family, "model_step": model.step, **kw, "versions": versions()}


@app.command("sample")
def sample_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder from `rehabgen train` (or a model folder)."),
    out: Path = typer.Option(..., "--out", help="Output .npz (positions, exercise, score, skeleton, config)."),
    exercise: str = typer.Option(..., "--exercise", help="Exercise name, comma-separated list, or 'all'."),
    score: Optional[float] = typer.Option(None, "--score", help="Clinical score to ask for (e.g. TS 0-50)."),
    n: int = typer.Option(16, "--n", min=1, help="Samples per exercise."),
    length: Optional[int] = typer.Option(None, "--length", help="Frames (at the model's fps); default: typical."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion solver steps."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Classifier-free guidance scale."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Diffusion sampler: dpm, ddim or ddpm."),
    seed: int = typer.Option(0, "--seed"),
):
    """Generate sequences for an exercise and score."""
    import numpy as np

    from rehabgen.models import ModelError, SamplerOptions
    from rehabgen.runs import load_model, write_json
    from rehabgen.samples import pad_sequences, save_samples

    options = SamplerOptions(sampler=sampler, steps=steps, guidance=guidance)
    try:
        model = load_model(run_dir)
        names = list(model.spec.exercises) if exercise == "all" else [e.strip() for e in exercise.split(",")]
        pos, exs = [], []
        for k, e in enumerate(names):
            L = length or model.spec.default_length.get(e, model.spec.max_len)
            pos += list(model.sample(e, score, length=L, n=n, seed=seed + k, options=options))
            exs += [e] * n
    except ModelError as e:
        fail(str(e))
    cfg = _samples_out_config(run_dir, model, exercise=names, score=score, n=n, length=length, seed=seed,
                              **options.given())
    save_samples(out, pad_sequences(pos), exs, np.full(len(exs), np.nan if score is None else score),
                 model.spec.skeleton, cfg, model.spec.fps)
    write_json(out.with_suffix(".json"), cfg)
    console.print(f"wrote {len(exs)} samples to {out}")


@app.command("generate")
def generate_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder of a model trained with `--text`."),
    text: str = typer.Option(..., "--text", help="Free-text description of the exercise and how it is performed."),
    out: Path = typer.Option(..., "--out", help="Output .npz."),
    then: list[str] = typer.Option([], "--then", help="A further movement after the previous one (repeatable): "
                                                      "one sequence composed of several descriptions."),
    n: int = typer.Option(4, "--n", min=1),
    length: Optional[int] = typer.Option(None, "--length", help="Frames (at the model's fps), all segments together."),
    score: Optional[float] = typer.Option(None, "--score", help="Clinical score; default: the quality the text states."),
    steps: Optional[int] = typer.Option(None, "--steps"),
    guidance: Optional[float] = typer.Option(None, "--guidance"),
    seed: int = typer.Option(0, "--seed"),
):
    """Generate sequences from a free-text description, or from several in a row (--then).

    How well the exercise is performed ("done poorly", "with full range of motion") is read
    from the text and becomes the score condition; --score overrides it."""
    import numpy as np

    from rehabgen.models import ModelError, SamplerOptions
    from rehabgen.models.timeline import sample_timeline
    from rehabgen.runs import load_model, write_json
    from rehabgen.samples import save_samples
    from rehabgen.text.encoder import TextEncoderError

    parts = [text, *then]
    options = SamplerOptions(steps=steps, guidance=guidance)
    try:
        model = load_model(run_dir)
        if then:
            pos = sample_timeline(model, parts, n=n, length=length, seed=seed, score=score, options=options)
        else:
            pos = model.sample_text(text, n=n, length=length, seed=seed, score=score, options=options)
        bands, unit, _ = model.read_text(parts)
    except (ModelError, TextEncoderError, ValueError) as e:
        fail(str(e))
    nrm = model.spec.normalizer
    read = [{"text": p, "quality": b, "score": None if b is None else round(float(nrm.score_lo + u * (nrm.score_hi - nrm.score_lo)), 2)}
            for p, b, u in zip(parts, bands, unit)]
    used = score if score is not None else read[0]["score"] if len(parts) == 1 else None
    cfg = _samples_out_config(run_dir, model, text=text, then=then, n=n, length=length, seed=seed, score=score,
                              **options.given())
    cfg["read_from_text"] = read if then else read[0]
    save_samples(out, pos, ["text"] * n, np.full(n, np.nan if used is None else used), model.spec.skeleton, cfg,
                 model.spec.fps)
    write_json(out.with_suffix(".json"), cfg)
    said = "; ".join("no quality stated" if r["quality"] is None else
                     f"quality read: {r['quality']} ({model.spec.score_name} ≈ {r['score']:g})" for r in read)
    console.print(f"wrote {n} samples of {pos.shape[1]} frames for {' → '.join(map(repr, parts))} to {out} ({said}"
                  f"{'' if score is None else f'; --score {score:g} used'})")


@app.command("complete")
def complete_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder of a diffusion model."),
    data: Path = typer.Option(..., "--data", help="Data folder holding the incomplete sequence."),
    out: Path = typer.Option(..., "--out", help="Output .npz with the completed sequence."),
    subject: Optional[str] = typer.Option(None, "--subject"),
    exercise: Optional[str] = typer.Option(None, "--exercise"),
    index: int = typer.Option(0, "--index", help="Which matching sequence (default the first)."),
    drop: Optional[str] = typer.Option(None, "--drop", help="Also hide frames START:END (model frames), for a demo."),
    steps: int = typer.Option(50, "--steps"),
    seed: int = typer.Option(0, "--seed"),
):
    """Fill the missing joints/frames of a real sequence with the diffusion model (inpainting)."""

    from rehabgen.models import ModelError, SamplerOptions
    from rehabgen.models.inpainting import complete_sequence
    from rehabgen.runs import load_model, write_json
    from rehabgen.samples import save_samples

    ds = _load(data)
    hits = [s for s in ds.sequences if (subject is None or s.subject == subject) and (exercise is None or s.exercise == exercise)]
    if len(hits) <= index:
        fail(f"{data}: no sequence #{index} with subject={subject} exercise={exercise} ({len(hits)} match)")
    seq = hits[index]
    drop_rng = None
    if drop:
        try:
            a, b = (int(v) for v in drop.split(":"))
        except ValueError:
            fail(f"--drop expects START:END, got {drop!r}")
        drop_rng = (a, b)
    try:
        model = load_model(run_dir)
        res = complete_sequence(model, seq, ds.fps, seed=seed, drop_frames=drop_rng, options=SamplerOptions(steps=steps))
    except ModelError as e:
        fail(str(e))
    cfg = _samples_out_config(run_dir, model, subject=seq.subject, exercise=seq.exercise, source=seq.source,
                              steps=steps, seed=seed, drop=drop, n_filled=int((~res["known"]).sum()))
    save_samples(out, res["positions"][None], [seq.exercise], [seq.score(model.spec.score_name)], model.spec.skeleton,
                 cfg | {"known_mask": res["known"].tolist()}, model.spec.fps)
    write_json(out.with_suffix(".json"), cfg)
    console.print(f"completed {cfg['n_filled']} missing joint positions of {seq.subject} {seq.exercise}; wrote {out}")


# ------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------
@app.command("evaluate")
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder from `rehabgen train`."),
    data: Path = typer.Option(..., "--data", help="The data folder the run was trained on."),
    out: Path = typer.Option(..., "--out", help="Report folder (metrics.json, report.md, plots, GIF)."),
    test_data: Optional[Path] = typer.Option(None, "--test-data", help="Evaluate against this real test set "
                                             "(e.g. a published fold) instead of the run's held-out subjects."),
    n: Optional[int] = typer.Option(None, "--n", help="Generated samples per repeat [default: one per held-out sequence]."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Repeats for mean ± std."),
    folds: int = typer.Option(3, "--folds", min=2, help="Subject-wise folds of the downstream study."),
    downstream: bool = typer.Option(True, "--downstream/--no-downstream", help="Run the downstream-utility study."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion solver steps for sampling."),
    seed: int = typer.Option(0, "--seed"),
):
    """Fidelity, diversity, plausibility and downstream utility, each next to its real reference."""
    from rehabgen.data import DataError
    from rehabgen.evaluate import evaluate_run
    from rehabgen.models import ModelError
    from rehabgen.report import metrics_table

    try:
        res = evaluate_run(run_dir, data, out, n=n, seed=seed, repeats=repeats, downstream=downstream, folds=folds,
                           steps=steps, test_data=test_data)
    except (DataError, ModelError) as e:
        fail(str(e))
    print(metrics_table(res["metrics"]))
    console.print(f"report: {res['report']}  ({res['seconds']:.0f} s)")


@app.command("compare")
def compare_cmd(
    reports: list[Path] = typer.Argument(..., help="Report folders from `rehabgen evaluate`."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the table to this Markdown file."),
):
    """Put several evaluated models side by side in one table."""
    from rehabgen.data import DataError
    from rehabgen.evaluate import load_metrics
    from rehabgen.report import compare_table

    try:
        results = [load_metrics(r) for r in reports]
    except DataError as e:
        fail(str(e))
    names = [f"{r['family']} ({Path(p).name})" for r, p in zip(results, reports)]
    table = compare_table(results, names)
    print(table)
    if out:
        from rehabgen.io import atomic_write_bytes

        atomic_write_bytes(out, (table + "\n").encode())
        console.print(f"wrote {out}")


# ------------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------------
@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for data, run, samples and pictures."),
    subjects: int = typer.Option(20, "--subjects", min=2, help="Subjects of built-in data."),
    minutes: float = typer.Option(4.0, "--minutes", help="CPU minutes of diffusion training."),
    steps: int = typer.Option(6000, "--steps", help="Upper bound on training steps."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Run the evaluation suite at the end."),
    seed: int = typer.Option(0, "--seed"),
):
    """Built-in data -> train diffusion -> sample each exercise at low/high score -> render -> evaluate."""

    from rehabgen.config import RunConfig
    from rehabgen.data.synth import SynthConfig, write_synthetic_kimore
    from rehabgen.render import render_gif
    from rehabgen.runs import train_run, write_json
    from rehabgen.samples import pad_sequences, save_samples

    out.mkdir(parents=True, exist_ok=True)
    data_dir, run_dir = out / "data", out / "run"
    if not (data_dir / "SYNTH_INFO.json").is_file():
        console.rule("1. built-in data")
        write_synthetic_kimore(data_dir, SynthConfig(n_subjects=subjects, seed=seed), progress=True)
    console.rule("2. train the diffusion model")
    resume = (run_dir / "checkpoint").is_dir()
    res = train_run(RunConfig(data=str(data_dir), model="diffusion", seed=seed), run_dir, resume=resume, steps=steps,
                    max_minutes=minutes)
    model = res["model"]
    console.rule("3. sample every exercise at a low and a high score")
    lo, hi = model.spec.normalizer.score_lo, model.spec.normalizer.score_hi
    low, high = lo + 0.3 * (hi - lo), lo + 0.95 * (hi - lo)
    seqs, titles, exs, scores = [], [], [], []
    for k, e in enumerate(model.spec.exercises):
        for sc in (low, high):
            p = model.sample(e, sc, n=1, seed=seed + k)
            seqs.append(p[0])
            titles.append(f"{e} score {sc:.0f}")
            exs.append(e)
            scores.append(sc)
    cfg = {"command": "demo", "seed": seed, "scores": [low, high], "exercises": list(model.spec.exercises)}
    save_samples(out / "samples.npz", pad_sequences(seqs), exs, scores, model.spec.skeleton, cfg, model.spec.fps)
    write_json(out / "demo_config.json", cfg | {"subjects": subjects, "minutes": minutes, "steps": steps})
    gif = render_gif(seqs, model.spec.skeleton, out / "samples.gif", titles=titles, fps=model.spec.fps, cols=2)
    console.print(f"samples: {out / 'samples.npz'}\nanimation: {gif}")
    if evaluate:
        console.rule("4. evaluate against held-out real subjects")
        from rehabgen.evaluate import evaluate_run
        from rehabgen.report import metrics_table

        rep = evaluate_run(run_dir, data_dir, out / "report", seed=seed)
        print(metrics_table(rep["metrics"]))
        console.print(f"report: {rep['report']}")
    console.rule("done")
    console.print(f"everything is in {out}/: data/, run/ (model, log.csv, config.json), samples.gif")


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
