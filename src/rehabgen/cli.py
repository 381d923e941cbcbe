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
console = Console(stderr=True)


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
        titles = [f"{smp['exercise'][i]} score {float(smp['score'][i]):.0f}" for i in idx]
        valid, skeleton, fps = None, smp["skeleton"], float(smp.get("fps", 15.0))
        default_out = source.with_suffix(".gif")
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
        default_out = source / "render.gif" if source.is_dir() else source.with_suffix(".gif")
    out = out or default_out
    try:
        path = render_gif(seqs, skeleton, out, titles=titles, valid=valid, fps=fps, view=view, max_frames=max_frames)
    except (ValueError, RuntimeError) as e:
        fail(str(e))
    console.print(f"wrote {path}")


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
