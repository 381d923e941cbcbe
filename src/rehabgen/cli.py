"""`rehabgen` command line. Each command is a thin layer over a library function.

The boundary rules live here: every input is checked before any work starts (one line
`error: ...`, exit 2), no command overwrites an existing output without --force, and every
command that runs a model sets its threads (`rehabgen.threads`) and says how many it uses.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from rehabgen.threads import sleep_when_idle

try:  # recent typer carries its own copy of click; its exceptions are those, not click's
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer, on click itself
    from click import exceptions as click_exc

# typer's own copy of click has no Abort (typer.Abort is it); naming a missing one in an `except`
# turned every unexpected error into an AttributeError that hid the real one
_ABORTS = tuple({getattr(click_exc, "Abort", typer.Abort), typer.Abort})

sleep_when_idle()  # before any command imports torch

console = Console(stderr=True, soft_wrap=True, highlight=False)  # messages must stay greppable: no hard wraps


def say(msg: str) -> None:
    """A message as it is: no rich markup, so paths and `rehabgen[text]` keep their brackets."""
    console.print(Text(msg))


def warn(msg: str) -> None:
    console.print(Text.assemble(("warning:", "bold yellow"), " ", msg))


def error(msg: str) -> None:
    console.print(Text.assemble(("error:", "bold red"), " ", msg))


def fail(msg: str, code: int = 2):
    error(msg)
    raise typer.Exit(code)


class _OneLineErrors(TyperGroup):
    """Usage errors (a bad option value, an unknown option) and Ctrl-C outside training end with
    one `error:` line like every other error, instead of a usage block or silence."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click_exc.ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # `rehabgen` alone: the help, as a usage hint
                e.show()
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            error(e.format_message() + hint)
            sys.exit(e.exit_code)
        except _ABORTS:
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            fail("interrupted (every file is written whole or not at all: nothing is left half-written)", 130)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"max_content_width": 120},  # wide terminals: fewer wrapped help lines
                  help="Generative models of skeleton-based rehabilitation motion.")
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Built-in data, inspection of data folders.")
app.add_typer(data_app, name="data")


def _version(value: bool):
    if value:
        import rehabgen

        print(f"rehabgen {rehabgen.__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                       help="Print the version and exit.")):
    """Generative models of skeleton-based rehabilitation motion."""


def _load(path: Path):
    from rehabgen.data import DataError, load_dataset
    from rehabgen.skeleton import SkeletonError

    try:
        return load_dataset(path)
    except (DataError, SkeletonError) as e:
        fail(str(e))


# ------------------------------------------------------------------------------------------
# checks at the boundary
# ------------------------------------------------------------------------------------------
def _number(v: float | None, option: str, lo: float, hi: float | None = None, lo_open: bool = False) -> None:
    """None, or a finite number in range; else one error naming the option and the range."""
    from rehabgen.config import ConfigError, check_number

    if v is not None:
        try:
            check_number(v, option, lo, hi, lo_open=lo_open)
        except ConfigError as e:
            fail(str(e))


def _check_out_file(out: Path, force: bool, suffixes: tuple[str, ...] = (".npz",), sidecar: bool = True) -> None:
    """--out must name a file of the right kind in a folder that can exist; an existing file
    (or its .json record) is replaced only with --force."""
    if out.is_dir():
        fail(f"--out {out} is a folder; give a file name such as {out / ('samples' + suffixes[0])}")
    if out.suffix.lower() not in suffixes:
        fail(f"--out {out}: expected a {' or '.join(suffixes)} file")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                fail(f"--out {out}: {parent} is a file, not a folder")
            break
    for f in (out, out.with_suffix(".json")) if sidecar else (out,):
        if f.exists() and not force:
            fail(f"{f}: already exists (use --force to overwrite it, or another --out)")


def _check_out_dir(out: Path, force: bool, what: str) -> None:
    """A folder a command fills: new or empty, or replaced only with --force."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        fail(f"{out}: already holds {what} (use --force to overwrite it, or another --out)")


def _threads(threads: int | None, main: bool = True) -> None:
    from rehabgen.threads import use_threads

    line = use_threads(threads)
    if main:
        say(line)


THREADS_HELP = "CPU threads for torch [default: OMP_NUM_THREADS, else the cores available to this process]."
DEVICE_HELP = "Device: auto (CUDA when available, else the CPU), cpu, cuda or cuda:N."
PRECISION_HELP = "Network arithmetic when sampling: fp32, bf16, or fp16 (CUDA only); the solver stays fp32."


def _device(device: str, precision: str = "fp32") -> str:
    """Check --device/--precision before any work: a GPU that is not there is one error line."""
    from rehabgen.devices import DeviceError, check_precision, describe, resolve_device

    try:
        dev = resolve_device(device)
        check_precision(precision, dev)
    except DeviceError as e:
        fail(str(e))
    if dev.type != "cpu":
        say(f"device: {describe(dev)}" + (f", {precision}" if precision != "fp32" else ""))
    return str(dev)


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
    from rehabgen.data.kimore import INCOMPLETE_MARKER
    from rehabgen.data.synth import SynthConfig, write_synthetic_kimore

    if out_dir.exists() and not out_dir.is_dir():
        fail(f"{out_dir}: is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        what = "an unfinished `data synth`" if (out_dir / INCOMPLETE_MARKER).exists() else "files"
        fail(f"{out_dir}: folder is not empty: it holds {what} (use --force to write into it anyway)")
    try:
        info = write_synthetic_kimore(out_dir, SynthConfig(n_subjects=subjects, seed=seed, noise=noise), progress=True)
    except KeyboardInterrupt:
        fail(f"interrupted: {out_dir} is incomplete and marked so ({INCOMPLETE_MARKER}); write it again with --force",
             130)
    say(f"wrote {info['n_sequences']} sequences of {info['n_subjects']} subjects to {out_dir}")


@data_app.command("inspect")
def data_inspect(
    data_dir: Path = typer.Argument(..., help="KIMORE-layout folder or generic-import folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
):
    """Counts per group/exercise, frames, score ranges, invalid joints, quarantined files."""
    ds = _load(data_dir)
    s = ds.summary()
    s["fps"] = ds.fps
    s["warnings"] = ds.warnings()
    if ds.metadata.get("incomplete"):
        warn(f"{data_dir}: {ds.metadata['incomplete']}")
    if as_json:
        sys.stdout.write(json.dumps(s, indent=2) + "\n")
        return
    out = Console(soft_wrap=True, highlight=False)
    out.print(Text(f"{data_dir}: {s['n_subjects']} subjects, {s['n_sequences']} sequences, skeleton {s['skeleton']} "
                   f"({s['n_joints']} joints), ~{ds.fps:g} fps, {s['frames']['total']} frames in all, "
                   f"{s['pct_invalid_joints']}% invalid joints"))
    t = Table(title="per exercise")
    for c in ("exercise", "sequences", "subjects", "frames (total)", "frames (mean)", "% invalid"):
        t.add_column(c)
    for ex, e in s["per_exercise"].items():
        t.add_row(ex, str(e["n_sequences"]), str(e["n_subjects"]), str(e["n_frames"]),
                  f"{e['n_frames'] / max(e['n_sequences'], 1):.0f}", f"{e['pct_invalid_joints']:.2f}")
    out.print(t)
    t = Table(title="scores")
    for c in ("score", "min", "max", "mean", "missing"):
        t.add_column(c)
    for name, v in s["scores"].items():
        t.add_row(name, str(v["min"]), str(v["max"]), str(v["mean"]), str(v["n_missing"]))
    out.print(t)
    out.print(Text("groups: " + ", ".join(f"{g}={n}" for g, n in s["per_group"].items())))
    if s["quarantined"]:  # whole paths, one per line: a table would cut them
        out.print(Text(f"quarantined files ({len(s['quarantined'])}), not used:"))
        for q in s["quarantined"]:
            out.print(Text(f"  {q['path']}: {q['reason']}"))
    else:
        out.print("no quarantined files")


@data_app.command("export")
def data_export(
    data_dir: Path = typer.Argument(..., help="Data folder: KIMORE layout, generic import or Rehab-Pile."),
    fmt: str = typer.Option(..., "--format", help="Output layout; so far: rehab-pile (aeon, deep-rehab-pile)."),
    out: Path = typer.Option(..., "--out", help="Folder to write (new or empty; --force replaces it)."),
    name: str = typer.Option("KIMORE_reg", "--name", help="Dataset name prefix: one folder regression/<NAME>_<EX> "
                             "per exercise (Es1..Es5 -> LA, LT, TR, PR, Sq, as in Rehab-Pile)."),
    folds: int = typer.Option(5, "--folds", min=2, help="Subject-wise folds, the same for every exercise."),
    joints: Optional[int] = typer.Option(None, "--joints", min=1, help="Joints kept: 18 maps Kinect v2's 25 to the 18 "
                                         "KIMORE has in Rehab-Pile [default: 18 for Kinect v2 data, else all]."),
    length: Optional[int] = typer.Option(None, "--length", min=2, help="Frames per sequence, resampled linearly "
                                         "[default: the exercise's mean length]."),
    exercise: list[str] = typer.Option([], "--exercise", help="Only this exercise (repeatable) [default: all]."),
    add_generated: list[Path] = typer.Option([], "--add-generated", help="Run folder (`rehabgen train`) whose samples "
                                             "join the training folds only: one run for all folds, or one per fold "
                                             "in fold order (repeat the option)."),
    per_real: int = typer.Option(1, "--per-real", min=1, help="Generated sequences per real training sequence, "
                                 "conditioned on its exercise and score."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the folds and of the generated samples."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
):
    """Write a dataset in another toolkit's layout: Rehab-Pile's regression folds (x (N, joints*3, T)
    joint-major, y the score as it is, info.json), optionally with generated training sequences."""
    import platform

    import numpy as np

    import rehabgen
    from rehabgen.data import DataError
    from rehabgen.data.rehabpile import FORMATS, RECORD, check_one_skeleton, export_rehab_pile
    from rehabgen.skeleton import SkeletonError

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: unknown format; choose from {', '.join(FORMATS)}")
    src, dst = data_dir.resolve(), out.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        fail(f"--out {out} and the data folder {data_dir} contain one another; write the export elsewhere")
    _check_out_dir(out, force, "files")
    if add_generated and len(add_generated) not in (1, folds):
        fail(f"--add-generated: {len(add_generated)} runs for {folds} folds; give one run, or one per fold")
    ds = _load(data_dir)
    try:
        check_one_skeleton(ds)  # before the warnings: a mixed folder is the error, not a quarantined file
    except DataError as e:
        fail(str(e))
    for w in ds.warnings():
        warn(w)
    names = [n for n in dict.fromkeys(k for s in ds.sequences for k, v in s.scores.items() if np.isfinite(v))]
    score = "TS" if "TS" in names or not names else names[0]
    errors: tuple = (DataError, SkeletonError)
    record = {"command": "data export", "source": str(src), "runs": [str(r.resolve()) for r in add_generated],
              "versions": {"rehabgen": rehabgen.__version__, "python": platform.python_version(),
                           "numpy": np.__version__}}
    models = labels = subjects = None
    if add_generated:
        from rehabgen.models import ModelError
        from rehabgen.runs import load_model, versions

        errors += (ModelError,)
        _threads(threads)
        loaded = {}
        for r in dict.fromkeys(add_generated):
            try:
                loaded[r] = load_model(r)
            except ModelError as e:
                fail(str(e))
        runs = list(add_generated) * folds if len(add_generated) == 1 else list(add_generated)
        models, labels = [loaded[r] for r in runs], [str(r) for r in runs]
        subjects = []
        for r in runs:  # whom each generator saw: its run's training subjects
            sp = r / "split.json"
            subjects.append(set(json.loads(sp.read_text()).get("train", [])) if sp.is_file() else None)
        record["versions"] = versions()
    try:
        top = export_rehab_pile(ds, out, name=name, folds=folds, joints=joints, length=length, seed=seed,
                                exercises=exercise or None, score=score, models=models, model_labels=labels,
                                model_subjects=subjects, per_real=per_real, record=record, progress=True, log=warn)
    except errors as e:
        fail(str(e))
    for d in top["datasets"]:
        gen = f" + {min(d['generated'])}-{max(d['generated'])} generated" if max(d["generated"]) else ""
        say(f"wrote {out / 'regression' / d['name']}: {d['exercise']}, x ({d['n_sequences']}, {d['x_shape'][1]}, "
            f"{d['length_TS']}), {folds} folds: train {min(d['train'])}-{max(d['train'])} real{gen}, "
            f"test {min(d['test'])}-{max(d['test'])}")
    say(f"y = {score} as it is; options, folds' subjects and generated rows in {out / RECORD}")


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
    out = out or Path(f"{source.resolve().stem}.gif")  # in the working directory, never inside the data
    _check_out_file(out, force, (".gif", ".mp4"), sidecar=False)
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
    try:
        path = render_gif(seqs, skeleton, out, titles=titles, valid=valid, fps=fps, view=view, max_frames=max_frames)
    except (ValueError, RuntimeError) as e:
        fail(str(e))
    say(f"wrote {path}")


# ------------------------------------------------------------------------------------------
# export-bvh
# ------------------------------------------------------------------------------------------
@app.command("export-bvh")
def export_bvh_cmd(
    source: Path = typer.Argument(..., help="A samples .npz (from `rehabgen sample`, `generate`, `complete`) or a data folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the .bvh files and export.json; new or empty (--force replaces it)."),
    exercise: Optional[str] = typer.Option(None, "--exercise", help="Only this exercise (e.g. Es1)."),
    subject: Optional[str] = typer.Option(None, "--subject", help="Only this subject (data folders)."),
    force: bool = typer.Option(False, "--force", help="Replace an output folder that is not empty."),
):
    """Write one BVH file per sequence (Blender: File > Import > Motion Capture (.bvh)).

    Centimetres, Y up, subject facing +Z; rotations solved from the joint positions on a skeleton
    with the sequence's median bone lengths. Lost joints are filled by interpolation in time.
    """
    from rehabgen.bvh import BvhError, ExportItem, export_bvh

    if not source.exists():
        fail(f"{source}: no such file or directory")
    if source.is_file() and source.suffix.lower() != ".npz":
        fail(f"{source}: expected a samples .npz (from `rehabgen sample`) or a data folder")
    _check_out_dir(out, force, "files")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                fail(f"--out {out}: {parent} is a file, not a folder")
            break
    src, dst = source.resolve(), out.resolve()
    if src == dst or dst in src.parents:
        fail(f"--out {out} holds the source {source}; writing there would replace it: give another folder")

    def _num(v):
        v = float(v)
        return v if math.isfinite(v) else None

    if source.is_file():
        from rehabgen.samples import SamplesError, load_samples

        try:
            smp = load_samples(source)
        except SamplesError as e:
            fail(str(e))
        if subject:
            fail("--subject applies to data folders; a samples file has no subjects")
        idx = [i for i in range(len(smp["positions"])) if exercise is None or smp["exercise"][i] == exercise]
        if not idx:
            fail(f"{source}: no samples of exercise {exercise!r} (it has {sorted(set(smp['exercise'].tolist()))})")
        items = [ExportItem(f"{source.stem}_{i:03d}_{smp['exercise'][i]}", smp["positions"][i], None,
                            f"{source} (sample {i})",
                            {"sample": i, "exercise": str(smp["exercise"][i]), "score": _num(smp["score"][i])})
                 for i in idx]
        skeleton, fps = smp["skeleton"], float(smp["fps"])
    else:
        ds = _load(source)
        for w in ds.warnings():
            warn(w)
        seqs = [s for s in ds.sequences
                if (exercise is None or s.exercise == exercise) and (subject is None or s.subject == subject)]
        if not seqs:
            fail(f"{source}: no sequence matches exercise={exercise} subject={subject}")
        items = [ExportItem(f"{s.subject}_{s.exercise}", s.positions, s.valid, s.source or f"{source} ({s.subject} {s.exercise})",
                            {"subject": s.subject, "group": s.group, "exercise": s.exercise,
                             "scores": {k: _num(v) for k, v in s.scores.items()}})
                 for s in seqs]
        skeleton, fps = ds.skeleton, float(ds.fps)
    try:
        rec = export_bvh(items, skeleton, fps, out, source=str(source), progress=True)
    except BvhError as e:
        fail(str(e))
    except OSError as e:
        fail(f"--out {out}: can't write ({e.strerror or e})")
    rt, bl = rec["round_trip_cm"], rec["bone_length_change_cm"]
    say(f"wrote {len(rec['files'])} BVH file(s) to {out} ({rec['joints']} joints, {fps:g} fps, centimetres, Y up, "
        f"facing +Z) and {out / 'export.json'}")
    if rec["filled_joint_frames"]:
        say(f"lost joints filled by interpolation in time: {rec['filled_joint_frames']} joint-frames "
            f"({100 * rec['filled_fraction']:.2f}%)")
    say(f"round trip (forward kinematics of the written rotations vs the input): mean {rt['mean']:.2f} cm, "
        f"max {rt['max']:.2f} cm; the input's bone lengths stray from their medians by {bl['mean']:.2f} cm "
        f"on average (max {bl['max']:.2f} cm), which a BVH's fixed bones can't follow")


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
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _default(name: str):
    """A RunConfig field's one default, for help texts."""
    from rehabgen.config import RunConfig

    return getattr(RunConfig(), name) if name != "fps" else RunConfig().preprocess.fps


RUN_FILES = ("checkpoint", "model", "log.csv", "config.json", "split.json", "train_summary.json")


@app.command("train")
def train_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (config, checkpoints, logs, final model)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data folder (KIMORE layout or generic import)."),
    model: Optional[str] = typer.Option(None, "--model", help=f"Model family: diffusion, vae or gan [default: {_default('model')}]."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help=f"Optimizer steps [default: {_default('steps')}, or the run's on --resume]."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help=f"Seed of weights, batches and split [default: {_default('seed')}]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint, with its own config."),
    force: bool = typer.Option(False, "--force", help="Start a new run in --out, deleting the run there."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Also stop after this many minutes, checkpointed (a run that ends short of --steps says so)."),
    max_len: Optional[int] = typer.Option(None, "--max-len", min=8, help=f"Longest sequence in frames (longer are cropped) [default: {_default('max_len')}]."),
    fps: Optional[float] = typer.Option(None, "--fps", help=f"Frame rate the model works at [default: {_default('fps')}]."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help=f"Share of subjects held out for evaluation, in [0, 1) [default: {_default('test_fraction')}]."),
    fold: Optional[int] = typer.Option(None, "--fold", min=0, help="Hold out this fold of a subject-wise --folds partition (the same subjects whatever --seed) instead of --test-fraction."),
    folds: Optional[int] = typer.Option(None, "--folds", min=2, help=f"Number of subject-wise folds for --fold [default: {_default('folds')}]."),
    ckpt_every: Optional[int] = typer.Option(None, "--ckpt-every", min=1, help=f"Checkpoint period in steps [default: {_default('ckpt_every')}]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Per-process batch size [default: the family's]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate, > 0 [default: the family's]."),
    sets: list[str] = typer.Option([], "--set", help="Model hyper-parameter key=value (repeatable); an unknown key lists the known ones."),
    text: bool = typer.Option(False, "--text", help="Also condition on text descriptions (needs rehabgen[text])."),
    log_with: Optional[str] = typer.Option(None, "--log-with", help="Experiment tracker for losses, lr and steps/s: csv "
                                           "(log.csv only, needs nothing), tensorboard (needs rehabgen[tensorboard]) or "
                                           "wandb (offline unless WANDB_MODE is set); files in RUN/tracking/ "
                                           "[default: csv, or the run's on --resume]."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP + " On a GPU the default batch size is 128."),
):
    """Train a generative model. Works under `torchrun --nproc_per_node=2` (data parallel).

    Ctrl-C (or SIGTERM) stops after the current step with a checkpoint; `--resume` continues
    exactly where it stopped."""
    import os
    from dataclasses import replace

    from rehabgen.config import ConfigError, RunConfig, check_hparams
    from rehabgen.data import DataError
    from rehabgen.runs import train_run

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    _number(lr, "--lr", 0.0, lo_open=True)
    _number(minutes, "--minutes", 0.0, lo_open=True)
    if resume and force:
        fail("--resume continues the run in --out and --force replaces it: give one of them")
    hp = _parse_sets(sets)
    if text:
        hp["text_encoder"] = "minilm"
    if batch_size is not None:
        hp["batch_size"] = batch_size
    if lr is not None:
        hp["lr"] = lr
    if resume and data is not None:
        recorded = _run_record(out, "data")
        if recorded is not None and Path(recorded) != data.resolve():
            fail(f"--data {data} is not the folder this run was trained on ({recorded}); a resumed run keeps its "
                 "data: drop --data, or start a new run with another --out")
        data = None  # the same folder: nothing changes
    given = {k: v for k, v in {"data": None if data is None else str(data), "model": model, "seed": seed,
                                "max_len": max_len, "test_fraction": test_fraction, "ckpt_every": ckpt_every,
                                "fold": fold, "folds": folds, "hparams": hp or None}.items() if v is not None}
    if fps is not None:
        given["preprocess"] = replace(RunConfig().preprocess, fps=fps)
    changes = {k: v for k, v in {"steps": steps, "max_minutes": minutes, "log_with": log_with}.items() if v is not None}
    if resume and given:
        fail(f"--resume continues the run with its own config.json; {', '.join(sorted(given))} can't change "
             "(only --steps, --minutes and --log-with)")
    if not resume:
        if data is None:
            fail("--data is required (unless --resume)")
        cfg = RunConfig(**given)
        fam = _family(cfg.model)
        try:
            from rehabgen.models.base import COMMON_HPARAMS

            check_hparams({**COMMON_HPARAMS, **fam.defaults}, hp, cfg.model, fam.choices)
            replace(cfg, **changes).check()
        except ConfigError as e:
            fail(str(e))
        if text and not fam.capabilities.text:
            fail(f"--text: the {cfg.model} family can't be conditioned on text")
        if rank == 0:  # the one process that writes decides (the others would race its deletion)
            _check_run_dir(out, force)
    _threads(threads, rank == 0)
    dev = _device(device) if world == 1 else device  # data-parallel: each process takes its own GPU
    try:
        res = _train(train_run, RunConfig() if resume else cfg, out, resume, rank, changes, dev)
    except (DataError, ConfigError) as e:
        fail(str(e))
    code = _report_training(res, out, speak=rank == 0)
    if rank == 0 and not code and "finished_at" not in res and res["config"].get("log_with", "csv") != "csv":
        from rehabgen.tracking import hint

        say(hint(res["config"]["log_with"], out))
    if world > 1:  # clean multi-process exit (avoids rare aborts at interpreter shutdown)
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        raise typer.Exit(code)


def _family(name: str):
    from rehabgen.models import ModelError, get_family

    try:
        return get_family(name)
    except ModelError as e:
        fail(f"--model: {e}")


def _run_record(run_dir: Path, key: str) -> str | None:
    """A value recorded in a run's config.json (`data`: the resolved data folder, `model`: the
    family), None when there is none."""
    try:
        return json.loads((run_dir / "config.json").read_text()).get(key)
    except (OSError, json.JSONDecodeError):
        return None


def _check_run_dir(out: Path, force: bool) -> None:
    """A new run goes into a folder without a run; --force deletes the run files there first."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder")
    if not (out / "checkpoint").exists() and not (out / "model").exists():
        return
    if not force:
        fail(f"{out}: already holds a run; use --resume to continue it, --force to replace it, or another --out")
    for name in RUN_FILES:
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    say(f"--force: deleted the run in {out}")


def _train(train_run, cfg, out: Path, resume: bool, rank: int, changes: dict, device: str = "auto") -> dict:
    """train_run with the CLI's messages; Ctrl-C before the first step ends with one line."""
    from rehabgen.models import ModelError
    from rehabgen.text.encoder import TextEncoderError

    try:
        return train_run(cfg, out, resume=resume, is_main=rank == 0, log=warn, device=device, **changes)
    except (ModelError, TextEncoderError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted before the first training step: nothing to save; run the same command again "
             f"(or `rehabgen train --out {out} --resume`)", 130)


def _report_training(res: dict, out: Path, speak: bool = True) -> int:
    """Say what happened in one line, and return the exit code: a run stopped short says so
    loudly; an interrupted one says where its checkpoint is and how to resume it, and gives
    130 (SIGINT) or 143 (SIGTERM)."""
    resume_cmd = f"rehabgen train --out {out} --resume"
    if "finished_at" in res:
        if speak:
            say(f"{out}: already finished at step {res['finished_at']} (planned {res['config'].get('steps')}); "
                f"nothing to do, nothing changed. To train longer: {resume_cmd} --steps N (N > {res['finished_at']})")
        return 0
    s, model = res["summary"], res["config"]["model"]
    reason = s["stop_reason"] or ""
    if reason.startswith("interrupted") or reason.startswith("stopped with"):
        if speak:
            error(f"{reason} at step {s['steps']} of {s['planned_steps']}: checkpoint in {out / 'checkpoint'}, log "
                  f"in {out / 'log.csv'}; continue with: {resume_cmd}")
        return 143 if "SIGTERM" in reason else 130
    if not speak:
        return 0

    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    span = f" (steps {s['resumed_from']}-{s['steps']})" if s["resumed_from"] else ""
    say(f"trained {model} for {s['steps'] - s['resumed_from']} steps{span} in {s['seconds']:.0f} s "
        f"({s['steps_per_s']:.1f} steps/s, {s['world_size']} process(es), {s['threads']} thread(s)); "
        f"loss {f(s['first_loss'])} -> {f(s['final_loss_ema'])}; model in {out / 'model'}")
    if s["stopped_early"]:
        warn(_short_of_plan(s) + f"; continue with: {resume_cmd}")
    return 0


def _short_of_plan(s: dict) -> str:
    done, plan = s["steps"], s["planned_steps"]
    far = " FAR" if done < 0.5 * plan else ""
    return (f"training ended{far} SHORT of its plan: step {done} of {plan} ({done / plan:.0%}), {s['stop_reason']}; "
            "the model is undertrained")


def _samples_out_config(run_dir, model, **kw) -> dict:
    """The record beside a samples file; the sampler settings resolved (the model's defaults
    filled in), so the file says how it was made."""
    from rehabgen.runs import versions

    resolved = model.sampler_settings() if model.capabilities.sampler else {}
    return {"run": str(run_dir), "family": model.family, "model_step": model.step, **resolved,
            **{k: v for k, v in kw.items() if v is not None or k not in resolved}, "versions": versions()}


GUIDANCE = (0.0, 10.0)  # classifier-free guidance: 0 = unconditional, 1 = plain conditional; above 10 nothing useful
SCORE_GUIDANCE_HELP = (f"A separate guidance scale for the score's own effect, {GUIDANCE[0]:g}-{GUIDANCE[1]:g} "
                       "[default: the model's, i.e. --guidance].")


DRIFT_GUIDANCE_HELP = ("Guidance scale for motion slower than 0.1 Hz (slow drift of the posture over the window), "
                       f"{GUIDANCE[0]:g}-{GUIDANCE[1]:g} [default: the model's; 1 for models trained since it existed].")
REPETITION_GUIDANCE_HELP = ("Guidance scale for motion at 0.1-0.5 Hz (the exercise's repetitions), "
                            f"{GUIDANCE[0]:g}-{GUIDANCE[1]:g} [default: the model's, i.e. --guidance; 2.5 suits KIMORE patients].")

DRIFT_TEMPERATURE_HELP = ("Scale of the starting noise slower than 0.1 Hz, for every exercise: below 1 the samples "
                          "wander less over the window, 1 leaves the noise as drawn, up to 10 [default: the model's; "
                          "models trained since it existed fit one per exercise to the training data's drift].")


def _sampler_checks(score: float | None, guidance: float | None, score_guidance: float | None = None,
                    drift_guidance: float | None = None, repetition_guidance: float | None = None,
                    drift_temperature: float | None = None) -> None:
    if score is not None and not math.isfinite(score):
        fail(f"--score must be a finite number within the model's score range, got {score}")
    _number(guidance, "--guidance", *GUIDANCE)
    _number(score_guidance, "--score-guidance", *GUIDANCE)
    _number(drift_guidance, "--drift-guidance", *GUIDANCE)
    _number(repetition_guidance, "--repetition-guidance", *GUIDANCE)
    _number(drift_temperature, "--drift-temperature", 0.0, 10.0, lo_open=True)


@app.command("sample")
def sample_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder from `rehabgen train` (or a model folder)."),
    out: Path = typer.Option(..., "--out", help="Output .npz (positions, exercise, score, skeleton, config) and its .json record."),
    exercise: str = typer.Option(..., "--exercise", help="Exercise name, comma-separated list, or 'all'."),
    score: Optional[float] = typer.Option(None, "--score", help="Clinical score to ask for (e.g. TS 0-50) [default: none, free]."),
    n: int = typer.Option(16, "--n", min=1, help="Samples per exercise."),
    length: Optional[int] = typer.Option(None, "--length", min=2, help="Frames (at the model's fps) [default: typical]."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion solver steps [default: the model's]."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help=f"Classifier-free guidance scale, {GUIDANCE[0]:g}-{GUIDANCE[1]:g} [default: the model's]."),
    score_guidance: Optional[float] = typer.Option(None, "--score-guidance", help=SCORE_GUIDANCE_HELP),
    drift_guidance: Optional[float] = typer.Option(None, "--drift-guidance", help=DRIFT_GUIDANCE_HELP),
    repetition_guidance: Optional[float] = typer.Option(None, "--repetition-guidance", help=REPETITION_GUIDANCE_HELP),
    drift_temperature: Optional[float] = typer.Option(None, "--drift-temperature", help=DRIFT_TEMPERATURE_HELP),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Diffusion sampler: dpm, ddim, ddpm, or distilled (a `rehabgen distill` run) [default: the model's]."),
    seed: int = typer.Option(0, "--seed", min=0),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP),
):
    """Generate sequences for an exercise and score."""
    import numpy as np

    from rehabgen.models import ModelError, SamplerOptions
    from rehabgen.runs import load_model, write_json
    from rehabgen.samples import pad_sequences, save_samples

    _sampler_checks(score, guidance, score_guidance, drift_guidance, repetition_guidance, drift_temperature)
    _check_out_file(out, force)
    _threads(threads)
    dev = _device(device, precision)
    options = SamplerOptions(sampler=sampler, steps=steps, guidance=guidance, score_guidance=score_guidance,
                             drift_guidance=drift_guidance, repetition_guidance=repetition_guidance,
                             drift_temperature=drift_temperature)
    try:
        model = load_model(run_dir, dev, precision)
        names = list(model.spec.exercises) if exercise == "all" else [e.strip() for e in exercise.split(",")]
        pos, exs = [], []
        for k, e in enumerate(names):
            L = length or model.spec.default_length.get(e, model.spec.max_len)
            pos += list(model.sample(e, score, length=L, n=n, seed=seed + k, options=options))
            exs += [e] * n
    except ModelError as e:
        fail(str(e))
    cfg = _samples_out_config(run_dir, model, exercise=names, score=score, n=n, length=length, seed=seed,
                              device=dev, precision=precision, **options.given())
    save_samples(out, pad_sequences(pos), exs, np.full(len(exs), np.nan if score is None else score),
                 model.spec.skeleton, cfg, model.spec.fps)
    write_json(out.with_suffix(".json"), cfg)
    say(f"wrote {len(exs)} samples to {out}")


RECOGNISED = 0.5  # cosine similarity to the nearest training description: held-out paraphrases >= 0.72, off-topic < 0.5


def _unrecognised(model, parts: list[str], rest: list[str]) -> list[str]:
    """A warning for each text that resembles no training description of the model's exercises
    (measured on the words other than the quality), with the exercise it came closest to."""
    from rehabgen.text.corpus import DESCRIPTIONS
    from rehabgen.text.encoder import get_encoder

    refs = [(e, t) for e in model.spec.exercises for t in DESCRIPTIONS.get(e, {}).get("train", [])]
    if not refs:
        return []
    enc = get_encoder(model.spec.text_encoder)
    sim = enc.encode(rest) @ enc.encode([t for _, t in refs]).T
    out = []
    for text, row in zip(parts, sim):
        i = int(row.argmax())
        if row[i] < RECOGNISED:
            e = refs[i][0]
            out.append(f"{text!r} resembles no exercise this model was trained on: closest is {e} "
                       f"({DESCRIPTIONS[e]['train'][0]!r}) at similarity {row[i]:.2f} < {RECOGNISED}; "
                       "the motion may be arbitrary")
    return out


@app.command("generate")
def generate_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder of a model trained with `--text`."),
    text: str = typer.Option(..., "--text", help="Free-text description of the exercise and how it is performed."),
    out: Path = typer.Option(..., "--out", help="Output .npz and its .json record."),
    then: list[str] = typer.Option([], "--then", help="A further movement after the previous one (repeatable): "
                                                      "one sequence composed of several descriptions."),
    n: int = typer.Option(4, "--n", min=1),
    length: Optional[int] = typer.Option(None, "--length", min=2, help="Frames (at the model's fps), all segments together."),
    score: Optional[float] = typer.Option(None, "--score", help="Clinical score [default: the quality the text states]."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion solver steps [default: the model's]."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help=f"Classifier-free guidance scale, {GUIDANCE[0]:g}-{GUIDANCE[1]:g} [default: the model's]."),
    seed: int = typer.Option(0, "--seed", min=0),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP),
):
    """Generate sequences from a free-text description, or from several in a row (--then).

    How well the exercise is performed ("done poorly", "with full range of motion") is read
    from the text and becomes the score condition; --score overrides it. A text that resembles
    none of the model's exercises gets a warning naming the closest one."""
    import numpy as np

    from rehabgen.models import ModelError, SamplerOptions
    from rehabgen.models.timeline import sample_timeline
    from rehabgen.runs import load_model, write_json
    from rehabgen.samples import save_samples
    from rehabgen.text.encoder import TextEncoderError

    parts = [text, *then]
    if any(not p.strip() for p in parts):
        fail("--text/--then: empty description; describe the movement in a few words")
    _sampler_checks(score, guidance)
    _check_out_file(out, force)
    _threads(threads)
    dev = _device(device, precision)
    options = SamplerOptions(steps=steps, guidance=guidance)
    try:
        model = load_model(run_dir, dev, precision)
        if then:
            pos = sample_timeline(model, parts, n=n, length=length, seed=seed, score=score, options=options)
        else:
            pos = model.sample_text(text, n=n, length=length, seed=seed, score=score, options=options)
        bands, unit, rest = model.read_text(parts)
        doubts = _unrecognised(model, parts, rest)
    except (ModelError, TextEncoderError, ValueError) as e:
        fail(str(e))
    nrm = model.spec.normalizer
    read = [{"text": p, "quality": b, "score": None if b is None else round(float(nrm.score_lo + u * (nrm.score_hi - nrm.score_lo)), 2)}
            for p, b, u in zip(parts, bands, unit)]
    used = score if score is not None else read[0]["score"] if len(parts) == 1 else None
    cfg = _samples_out_config(run_dir, model, text=text, then=then, n=n, length=length, seed=seed, score=score,
                              device=dev, precision=precision, **options.given())
    cfg["read_from_text"] = read if then else read[0]
    cfg["warnings"] = doubts
    save_samples(out, pos, ["text"] * n, np.full(n, np.nan if used is None else used), model.spec.skeleton, cfg,
                 model.spec.fps)
    write_json(out.with_suffix(".json"), cfg)
    for d in doubts:
        warn(d)
    said = "; ".join("no quality stated" if r["quality"] is None else
                     f"quality read: {r['quality']} ({model.spec.score_name} ≈ {r['score']:g})" for r in read)
    say(f"wrote {n} samples of {pos.shape[1]} frames for {' → '.join(map(repr, parts))} to {out} ({said}"
        f"{'' if score is None else f'; --score {score:g} used'})")


@app.command("complete")
def complete_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder of a diffusion model."),
    data: Path = typer.Option(..., "--data", help="Data folder holding the incomplete sequence."),
    out: Path = typer.Option(..., "--out", help="Output .npz with the completed sequence, and its .json record."),
    subject: Optional[str] = typer.Option(None, "--subject"),
    exercise: Optional[str] = typer.Option(None, "--exercise"),
    index: int = typer.Option(0, "--index", min=0, help="Which matching sequence (default the first)."),
    drop: Optional[str] = typer.Option(None, "--drop", help="Also hide frames START:END (model frames), for a demo."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion solver steps [default: 50; a distilled model's own]."),
    seed: int = typer.Option(0, "--seed", min=0),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP),
):
    """Fill the missing joints/frames of a real sequence with the diffusion model (inpainting)."""

    from rehabgen.models import ModelError, SamplerOptions
    from rehabgen.models.inpainting import complete_sequence
    from rehabgen.runs import load_model, write_json
    from rehabgen.samples import save_samples

    drop_rng = None
    if drop:
        try:
            a, b = (int(v) for v in drop.split(":"))
        except ValueError:
            fail(f"--drop expects START:END, got {drop!r}")
        if not 0 <= a < b:
            fail(f"--drop START:END needs 0 <= START < END, got {drop!r}")
        drop_rng = (a, b)
    _check_out_file(out, force)
    ds = _load(data)
    hits = [s for s in ds.sequences if (subject is None or s.subject == subject) and (exercise is None or s.exercise == exercise)]
    if len(hits) <= index:
        fail(f"{data}: no sequence #{index} with subject={subject} exercise={exercise} ({len(hits)} match)")
    seq = hits[index]
    _threads(threads)
    dev = _device(device, precision)
    try:
        model = load_model(run_dir, dev, precision)
        if steps is None and not model.hparams.get("student_timesteps"):
            steps = 50  # inpainting: more steps than sampling, where the known values are re-imposed
        res = complete_sequence(model, seq, ds.fps, seed=seed, drop_frames=drop_rng, options=SamplerOptions(steps=steps))
    except ModelError as e:
        fail(str(e))
    cfg = _samples_out_config(run_dir, model, subject=seq.subject, exercise=seq.exercise, source=seq.source,
                              steps=steps, seed=seed, drop=drop, n_filled=int((~res["known"]).sum()), device=dev,
                              precision=precision)
    save_samples(out, res["positions"][None], [seq.exercise], [seq.score(model.spec.score_name)], model.spec.skeleton,
                 cfg | {"known_mask": res["known"].tolist()}, model.spec.fps)
    write_json(out.with_suffix(".json"), cfg)
    say(f"completed {cfg['n_filled']} missing joint positions of {seq.subject} {seq.exercise}; wrote {out}")


@app.command("distill")
def distill_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder of a trained diffusion model (the teacher)."),
    out: Path = typer.Option(..., "--out", help="Run folder for the few-step student (sample/evaluate it like any run)."),
    data: Optional[Path] = typer.Option(None, "--data", help="The teacher's data folder [default: the one its config.json names]."),
    student_steps: int = typer.Option(4, "--student-steps", min=1, help="Network evaluations per sample of the student."),
    teacher_steps: int = typer.Option(20, "--teacher-steps", min=2, help="DPM-Solver++ steps of the teacher's trajectories."),
    grid: str = typer.Option("late", "--grid", help="Student times among the teacher's: 'late' (dense at low noise: the last jump starts from little noise) or 'even'."),
    trajectories: int = typer.Option(2048, "--trajectories", min=8, help="Teacher trajectories to learn from."),
    steps: int = typer.Option(1500, "--steps", min=1, help="Distillation optimizer steps."),
    batch: int = typer.Option(64, "--batch", min=1, help="Trajectories per step."),
    lr: float = typer.Option(2e-4, "--lr", help="Learning rate."),
    seed: int = typer.Option(0, "--seed", min=0),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
):
    """Distil a diffusion run into a student that samples in a few network evaluations.

    The student learns the teacher's guided DPM-Solver++ trajectories (guidance baked in), so it
    needs no guidance branch: 4 evaluations instead of 40 per sample by default."""
    from rehabgen.data import DataError
    from rehabgen.models import ModelError
    from rehabgen.runs import distill_run

    _number(lr, "--lr", 0.0, 1.0, lo_open=True)
    if student_steps > teacher_steps:
        fail(f"--student-steps {student_steps} must not exceed --teacher-steps {teacher_steps}")
    from rehabgen.models.distill import GRIDS

    if grid not in GRIDS:
        fail(f"--grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    if out.resolve() == run_dir.resolve():
        fail("--out must be another folder than the teacher's run")
    _check_out_dir(out, force, "files (a run?)")
    if not (run_dir / "model" / "model.json").is_file():
        fail(f"{run_dir}: no finished model here (expected {run_dir}/model/model.json from `rehabgen train`)")
    _threads(threads)
    dev = _device(device)
    try:
        res = distill_run(run_dir, out, data=data, student_steps=student_steps, teacher_steps=teacher_steps,
                          trajectories=trajectories, steps=steps, batch=batch, lr=lr, seed=seed, device=dev,
                          grid=grid)
    except (DataError, ModelError) as e:
        fail(str(e))
    s = res["summary"]
    say(f"wrote {out}: samples in {s['student_steps']} network evaluations (teacher: {s['network_evaluations']['teacher']}); "
        f"{s['trajectories']} trajectories in {s['seconds_trajectories']:.0f} s, {steps} steps in "
        f"{s['seconds_training']:.0f} s; try `rehabgen evaluate {out} --data ... --out ...`")


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
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Generated samples per repeat [default: one per held-out sequence]."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Repeats for mean ± std."),
    folds: int = typer.Option(3, "--folds", min=2, help="Subject-wise folds of the downstream study."),
    downstream: bool = typer.Option(True, "--downstream/--no-downstream", help="Run the downstream-utility study."),
    downstream_scores: Optional[str] = typer.Option(
        None, "--downstream-scores",
        help="Scores the study's generated data is conditioned on: 'matched' (each real sequence's) or 'balanced' "
             "(uniform over each exercise's range) [default: the family's: balanced for diffusion and the VAE, "
             "matched for the GAN]."),
    downstream_seeds: int = typer.Option(1, "--downstream-seeds", min=1,
                                         help="Assessor initialisations per fold and condition in the downstream "
                                              "study (each scored; more seeds, less noise)."),
    downstream_repeats: int = typer.Option(1, "--downstream-repeats", min=1,
                                           help="The whole downstream study this many times, with study seeds --seed, "
                                                "--seed + 1, ... (other folds, generated data and initialisations), "
                                                "pooled: one study seed moves the result more than assessor seeds do."),
    downstream_per_real: int = typer.Option(1, "--downstream-per-real", min=1,
                                            help="Generated (and augmented) sequences per real training sequence in "
                                                 "the study; the real ones count as many times, so the mix stays "
                                                 "half real and a larger value only widens the generated pool."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion solver steps for sampling [default: the model's]."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Diffusion sampler: dpm, ddim, ddpm, or distilled (a `rehabgen distill` run) [default: the model's]."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Classifier-free guidance scale [default: the model's]."),
    score_guidance: Optional[float] = typer.Option(None, "--score-guidance", help=SCORE_GUIDANCE_HELP),
    drift_guidance: Optional[float] = typer.Option(None, "--drift-guidance", help=DRIFT_GUIDANCE_HELP),
    repetition_guidance: Optional[float] = typer.Option(None, "--repetition-guidance", help=REPETITION_GUIDANCE_HELP),
    drift_temperature: Optional[float] = typer.Option(None, "--drift-temperature", help=DRIFT_TEMPERATURE_HELP),
    downstream_score_guidance: Optional[float] = typer.Option(
        None, "--downstream-score-guidance",
        help="Score guidance for the downstream study's generated training data only (a stronger score effect "
             "teaches the assessor more; the rest of the evaluation keeps --score-guidance) [default: the family's: "
             "4 for diffusion]."),
    downstream_repetition_guidance: Optional[float] = typer.Option(
        None, "--downstream-repetition-guidance",
        help="Repetition guidance (0.1-0.5 Hz) for the downstream study's generated training data only "
             "[default: the family's: 2.5 for diffusion]."),
    seed: int = typer.Option(0, "--seed", min=0),
    force: bool = typer.Option(False, "--force", help="Overwrite the report in an existing --out."),
    log_with: Optional[str] = typer.Option(None, "--log-with", help="Also log the scalar metrics to this tracker of "
                                           "the run (tensorboard or wandb; csv: metrics.json only), at the run's "
                                           "last step, in RUN/tracking/."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP),
):
    """Fidelity, diversity, plausibility and downstream utility, each next to its real reference."""
    from rehabgen.config import GEN_SCORES
    from rehabgen.data import DataError
    from rehabgen.evaluate import evaluate_run
    from rehabgen.models import ModelError, SamplerOptions, get_family
    from rehabgen.report import metrics_table

    _sampler_checks(None, guidance, score_guidance, drift_guidance, repetition_guidance, drift_temperature)
    _number(downstream_score_guidance, "--downstream-score-guidance", *GUIDANCE)
    _number(downstream_repetition_guidance, "--downstream-repetition-guidance", *GUIDANCE)
    if downstream_scores is not None and downstream_scores not in GEN_SCORES:
        fail(f"--downstream-scores must be 'matched' or 'balanced', got {downstream_scores!r}")
    if log_with is not None:
        from rehabgen.config import ConfigError
        from rehabgen.tracking import check as check_tracker

        try:
            check_tracker(log_with)
        except ConfigError as e:
            fail(str(e))
    given = SamplerOptions(sampler=sampler, steps=steps, guidance=guidance, score_guidance=score_guidance,
                           drift_guidance=drift_guidance, repetition_guidance=repetition_guidance,
                           drift_temperature=drift_temperature)
    family = _run_record(run_dir, "model")
    study = SamplerOptions(score_guidance=downstream_score_guidance, repetition_guidance=downstream_repetition_guidance)
    if family is not None:  # before any work: a GAN has no guidance to set (`evaluate_run` checks again)
        try:
            get_family(family).check_options(given)
            get_family(family).check_options(study)
        except ModelError as e:
            fail(str(e))
    _check_out_dir(out, force, "files (a report?)")
    recorded = _run_record(run_dir, "data")
    if recorded is not None and Path(recorded) != data.resolve():
        warn(f"--data {data} is not the folder this run was trained on ({recorded}): the run's train/test split "
             "is applied by subject name, so 'held-out' subjects may not be held out")
    _threads(threads)
    dev = _device(device, precision)
    try:
        res = evaluate_run(run_dir, data, out, n=n, seed=seed, repeats=repeats, downstream=downstream, folds=folds,
                           steps=steps, test_data=test_data, downstream_scores=downstream_scores,
                           sampler=given,
                           device=dev, precision=precision, log_with=log_with, downstream_seeds=downstream_seeds,
                           downstream_score_guidance=downstream_score_guidance,
                           downstream_repetition_guidance=downstream_repetition_guidance,
                           downstream_repeats=downstream_repeats, downstream_per_real=downstream_per_real)
    except (DataError, ModelError) as e:
        fail(str(e))
    print(metrics_table(res["metrics"]))
    say(f"report: {res['report']}  ({res['seconds']:.0f} s)")
    if log_with and log_with != "csv":
        from rehabgen.tracking import hint

        say(f"metrics logged at step {res['model_step']}; " + hint(log_with, run_dir))


@app.command("compare")
def compare_cmd(
    reports: list[Path] = typer.Argument(..., help="Report folders from `rehabgen evaluate`."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the table to this Markdown file."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
):
    """Put several evaluated models side by side in one table."""
    from rehabgen.data import DataError
    from rehabgen.evaluate import load_metrics
    from rehabgen.report import compare_table

    if out:
        _check_out_file(out, force, (".md",), sidecar=False)
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
        say(f"wrote {out}")


@app.command("sweep")
def sweep_cmd(
    plan_file: Path = typer.Argument(..., metavar="PLAN.toml", help="Sweep plan (TOML): [sweep] [grid] [train] [set] "
                                                                    "[evaluate] [slurm]; see the README."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local or slurm [default: the plan's, else local]."),
    parallel: Optional[int] = typer.Option(None, "--parallel", min=1, help="Jobs at a time [default: the plan's, else 1]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the jobs, their state and command lines; run nothing."),
    force: bool = typer.Option(False, "--force", help="Delete an earlier sweep in the plan's out folder and start over."),
):
    """Train and evaluate a grid of runs (data x family x seed x fold x [set] values), then one table.

    A rerun of the same plan skips finished jobs and resumes killed ones. Ctrl-C or SIGTERM
    stops the running trainings cleanly (they checkpoint)."""
    from rehabgen.config import ConfigError
    from rehabgen.sweep import commands, job_state, load_plan, run_sweep, shown

    try:
        plan = load_plan(plan_file, executor, parallel)
    except ConfigError as e:
        fail(str(e))
    if dry_run:
        for j in plan.jobs:
            st = job_state(j)
            say(f"{j['name']}: {st['state']}" + (f" (checkpoint at step {st['step']})" if st.get("step") else ""))
            for _, argv in commands(j):
                say(f"  {shown(argv)}")
        say(f"{len(plan.jobs)} job(s); nothing run (--dry-run)")
        return
    try:
        res = run_sweep(plan, say=say, force=force)
    except ConfigError as e:
        fail(str(e))
    c = res["counts"]
    say(f"table: {res['table']}  ({c['finished']} finished now, {c['skipped']} earlier, {c['failed']} failed"
        + (f", {c['busy']} busy elsewhere" if c["busy"] else "") + ")")
    if res["signal"]:
        fail(f"interrupted ({res['signal']}): run `rehabgen sweep {plan_file}` again to continue; finished jobs are "
             "skipped, killed trainings resume from their checkpoint", 130 if res["signal"] == "SIGINT" else 143)
    if c["failed"] or c["busy"] or c["interrupted"]:
        fail(f"{c['failed'] + c['busy'] + c['interrupted']} job(s) did not finish (see the lines above and each job's "
             "log.txt); fix the cause and run the same command again", 1)


# ------------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------------
DEMO_OUTPUTS = ("data", "run", "report", "samples.npz", "samples.gif", "demo_config.json")
BARELY_MOVES = 0.5  # samples' range of motion below this share of the real data's: undertrained


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for data, run, samples and pictures."),
    subjects: int = typer.Option(20, "--subjects", min=2, help="Subjects of built-in data."),
    # 2,000, not 1,000 (measured 2026-11-27, seed 0): at 1,000 the samples jittered (acceleration
    # 4.3x real, jerk W 18.8 vs 0.18) and barely varied in timing (WPD 0.59 vs 6.07); at 2,000:
    # 1.02x, 0.78, 5.80, for 2.5 more minutes
    steps: int = typer.Option(2000, "--steps", min=1, help="Training steps of the diffusion model: a fixed number, "
                                                           "so a busy machine takes longer but trains as much "
                                                           "(about 5 minutes on an idle 2-core CPU)."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Run the evaluation suite at the end."),
    seed: int = typer.Option(0, "--seed", min=0),
    force: bool = typer.Option(False, "--force", help="Delete an earlier demo in --out and start over."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
):
    """Built-in data -> train diffusion -> sample each exercise at low/high score -> render -> evaluate."""
    from rehabgen.config import RunConfig
    from rehabgen.data.synth import SynthConfig, write_synthetic_kimore
    from rehabgen.render import render_gif
    from rehabgen.runs import train_run, write_json
    from rehabgen.samples import pad_sequences, save_samples

    _check_out_dir(out, force, "files (an earlier demo?)")
    if force and out.is_dir():
        for name in DEMO_OUTPUTS:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    data_dir, run_dir = out / "data", out / "run"
    _threads(threads)
    dev = _device(device)
    console.rule("1. built-in data")
    write_synthetic_kimore(data_dir, SynthConfig(n_subjects=subjects, seed=seed), progress=True)
    console.rule(f"2. train the diffusion model ({steps} steps)")
    # the demo's fixed batch: the same training on every device
    res = _train(train_run, RunConfig(data=str(data_dir), model="diffusion", seed=seed, steps=steps,
                                      hparams={"batch_size": 32}), run_dir, False, 0, {}, dev)
    code = _report_training(res, run_dir)
    if code:  # interrupted: the message says how to resume the run; the demo itself starts over with --force
        raise typer.Exit(code)
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
    rom = _range_of_motion_ratio(model, run_dir, data_dir, seqs)
    cfg = {"command": "demo", "seed": seed, "scores": [low, high], "exercises": list(model.spec.exercises)}
    save_samples(out / "samples.npz", pad_sequences(seqs), exs, scores, model.spec.skeleton, cfg, model.spec.fps)
    write_json(out / "demo_config.json", cfg | {"subjects": subjects, "steps": steps,
                                                "range_of_motion_vs_real": round(rom, 3)})
    gif = render_gif(seqs, model.spec.skeleton, out / "samples.gif", titles=titles, fps=model.spec.fps, cols=2)
    say(f"samples: {out / 'samples.npz'}\nanimation: {gif}\nrange of motion of the samples: {rom:.2f}x the real "
        "training data's")
    if rom < BARELY_MOVES:
        warn(f"the samples barely move ({rom:.2f}x the real range of motion): the model is undertrained; train "
             f"longer with `rehabgen train --out {run_dir} --resume --steps {2 * steps}`")
    if evaluate:
        console.rule("4. evaluate against held-out real subjects")
        from rehabgen.evaluate import evaluate_run
        from rehabgen.report import metrics_table

        rep = evaluate_run(run_dir, data_dir, out / "report", seed=seed, device=dev)
        print(metrics_table(rep["metrics"]))
        say(f"report: {rep['report']}")
    console.rule("done")
    say(f"everything is in {out}/: data/, run/ (model, log.csv, config.json), samples.gif")


def _range_of_motion_ratio(model, run_dir: Path, data_dir: Path, seqs: list) -> float:
    """Mean range of motion (per sequence and joint) of generated sequences over the real
    training sequences' as the model sees them: near 1 when samples move like the data."""
    from rehabgen.data import load_dataset
    from rehabgen.evaluate import model_space_real
    from rehabgen.metrics.plausibility import range_of_motion
    from rehabgen.runs import load_split
    from rehabgen.samples import pad_sequences

    real = model_space_real(model, load_split(run_dir, load_dataset(data_dir))[0])

    def mean_rom(xs):
        return float(range_of_motion(pad_sequences(xs), [len(x) for x in xs]).mean())

    return mean_rom(seqs) / max(mean_rom(real), 1e-9)


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
