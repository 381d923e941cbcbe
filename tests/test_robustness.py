"""Robust on a shared machine and under bad input (issue 13): thread policy, interrupts and
exact resume, one-line errors for bad input, warnings where the result may not be what was
asked, one overwrite rule, help text that keeps its brackets."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rehabgen.cli import app
from rehabgen.models import get_family  # (before rehabgen.train: the package imports it)
from rehabgen.train import CKPT

from conftest import toy_dataset, write_subject

runner = CliRunner()
TINY = ["--max-len", "24", "--fps", "15", "--set", "d_model=16", "--set", "n_layers=1", "--set", "ff=32",
        "--set", "n_heads=2", "--batch-size", "4"]


def cli(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def one_error_line(r, *needles, code=2):
    """Exit `code`, exactly one line of output besides progress bars, `error: ...`, naming
    every needle, no traceback."""
    lines = [ln for ln in r.output.splitlines() if ln.strip() and not re.search(r"\d+%\|", ln)]
    assert r.exit_code == code, r.output
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert all(n in lines[0] for n in needles), (needles, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from rehabgen.data.generic import write_generic

    d = tmp_path_factory.mktemp("toy") / "toy"
    write_generic(d, toy_dataset(n=16, T=30))
    return d


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    r = cli("train", "--data", data, "--out", out, "--steps", 6, "--ckpt-every", 4, *TINY)
    assert r.exit_code == 0, r.output
    return out


# ------------------------------------------------------------------------------------------
# help, version, python -m
# ------------------------------------------------------------------------------------------
def test_help_keeps_brackets_and_defaults():
    def help_of(command):
        return " ".join(cli(command, "--help").output.split())  # lines wrap where the terminal ends

    h = help_of("train")
    assert "[default: 3000, or the run's on --resume]" in h and "rehabgen[text]" in h
    assert "--threads" in h and "--force" in h
    assert "[default: one per held-out sequence]" in help_of("evaluate")
    assert "[default: 2000; x>=1]" in help_of("demo")
    assert cli("--version").output.strip() == "rehabgen 0.1.0"


def test_error_messages_keep_their_brackets(data, tmp_path):
    odd = tmp_path / "[odd] name"
    one_error_line(cli("data", "inspect", odd), f"{odd}: no such file or directory")
    if importlib.util.find_spec("imageio_ffmpeg") is None:  # the MP4 hint names the extra
        one_error_line(cli("render", data, "--n", 1, "--out", tmp_path / "x.mp4"), "pip install 'rehabgen[video]'")


def test_python_dash_m_rehabgen():
    r = subprocess.run([sys.executable, "-m", "rehabgen", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "rehabgen 0.1.0", r.stderr


# ------------------------------------------------------------------------------------------
# bad input: one line, exit 2, nothing written
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needles", [
    (["--lr", "-1"], ["--lr", "> 0"]),
    (["--lr", "nan"], ["--lr", "> 0"]),
    (["--set", "d_model=abc"], ["--set d_model", "integer >= 1"]),
    (["--set", "d_modle=64"], ["d_modle", "known:", "d_model", "n_layers"]),
    (["--set", "p_uncond=1.5"], ["--set p_uncond", "[0, 1]"]),
    (["--set", "sampler=euler"], ["--set sampler", "dpm, ddim, ddpm"]),
    (["--test-fraction", "1.5"], ["--test-fraction", "[0, 1)"]),
    (["--minutes", "-1"], ["--minutes", "> 0"]),
    (["--fps", "0"], ["--fps", "> 0"]),
    (["--steps", "0"], ["--steps", "greater than or equal to 1"]),
    (["--stepz", "3"], ["No such option: --stepz"]),
])
def test_bad_train_input_is_one_line_and_writes_nothing(data, tmp_path, args, needles):
    out = tmp_path / "run"
    one_error_line(cli("train", "--data", data, "--out", out, *args), *needles)
    assert not out.exists()


def test_hyper_parameters_that_cannot_build_a_model_are_one_line(data, tmp_path):
    r = cli("train", "--data", data, "--out", tmp_path / "r", "--set", "d_model=30", "--set", "n_heads=4")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1].startswith("error: the diffusion model can't be built with d_model=30")


@pytest.mark.parametrize("args, needles", [
    (["--steps", "0"], ["--steps"]),
    (["--score", "nan"], ["--score", "finite"]),
    (["--guidance", "-1"], ["--guidance", "[0, 10]"]),
    (["--score-guidance", "11"], ["--score-guidance", "[0, 10]"]),
    (["--drift-guidance", "-0.5"], ["--drift-guidance", "[0, 10]"]),
    (["--repetition-guidance", "inf"], ["--repetition-guidance", "[0, 10]"]),
    (["--drift-temperature", "0"], ["--drift-temperature", "(0, 10]"]),
    (["--length", "1"], ["--length"]),
])
def test_bad_sample_input_is_one_line(run_dir, tmp_path, args, needles):
    out = tmp_path / "s.npz"
    one_error_line(cli("sample", run_dir, "--exercise", "Es1", "--out", out, *args), *needles)
    assert not out.exists()


def test_sample_output_paths_are_checked(run_dir, tmp_path):
    folder = tmp_path / "existing"
    folder.mkdir()
    one_error_line(cli("sample", run_dir, "--exercise", "Es1", "--out", folder), "is a folder", "samples.npz")
    one_error_line(cli("sample", run_dir, "--exercise", "Es1", "--out", tmp_path / "s.json"), "expected a .npz")
    (tmp_path / "f").write_text("")
    one_error_line(cli("sample", run_dir, "--exercise", "Es1", "--out", tmp_path / "f" / "s.npz"), "not a folder")
    one_error_line(cli("complete", run_dir, "--data", tmp_path, "--drop", "9:3", "--out", tmp_path / "c.npz"),
                   "--drop", "START < END")


def test_sample_records_the_steps_it_ran(run_dir, tmp_path):
    r = cli("sample", run_dir, "--exercise", "Es1", "--n", 1, "--steps", 2, "--out", tmp_path / "s.npz")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "s.json").read_text())
    assert rec["steps"] == 2 and rec["score_guidance"] is None  # the model's: none of its own (= guidance)
    assert (rec["drift_guidance"], rec["repetition_guidance"]) == (1.0, None)  # a new model's band defaults
    for name, extra in (("a", []), ("g", ["--score-guidance", 4]), ("b", ["--repetition-guidance", 3])):
        # 24 frames at 15 fps: DCT coefficient 1 is 0.31 Hz, in the repetition band
        r = cli("sample", run_dir, "--exercise", "Es1", "--n", 1, "--steps", 2, "--score", 30, "--length", 24, *extra,
                "--out", tmp_path / f"{name}.npz")
        assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "g.json").read_text())["score_guidance"] == 4
    from rehabgen.samples import load_samples

    a, g, b = (load_samples(tmp_path / f"{k}.npz")["positions"] for k in "agb")
    assert a.shape == g.shape and not np.allclose(a, g)  # the same seed: score guidance changed the samples
    assert json.loads((tmp_path / "b.json").read_text())["repetition_guidance"] == 3
    assert not np.allclose(a, b)  # and so did the repetition band's scale


def test_bad_evaluate_guidance_is_one_line(run_dir, data, tmp_path):
    one_error_line(cli("evaluate", run_dir, "--data", data, "--out", tmp_path / "r", "--downstream-score-guidance",
                       "-2"), "--downstream-score-guidance", "[0, 10]")
    one_error_line(cli("evaluate", run_dir, "--data", data, "--out", tmp_path / "r",
                       "--downstream-repetition-guidance", "11"), "--downstream-repetition-guidance", "[0, 10]")
    one_error_line(cli("evaluate", run_dir, "--data", data, "--out", tmp_path / "r", "--downstream-scores", "best"),
                   "--downstream-scores must be 'matched' or 'balanced', got 'best'")
    assert not (tmp_path / "r").exists()


def test_evaluate_refuses_sampler_options_the_family_lacks(data, tmp_path):
    """A GAN has no guidance or solver steps: `evaluate` says so, as `sample` does, instead of
    silently evaluating at the model's own settings; nothing is written."""
    run = tmp_path / "gan"
    r = cli("train", "--data", data, "--out", run, "--model", "gan", "--steps", 2, "--max-len", 24, "--fps", 15,
            "--set", "d_model=16", "--set", "n_layers=1", "--set", "ff=32", "--set", "n_heads=2")
    assert r.exit_code == 0, r.output
    for opt, value in (("--guidance", 2), ("--steps", 5), ("--repetition-guidance", 2.5), ("--sampler", "ddim")):
        name = opt.lstrip("-").replace("-", "_")
        one_error_line(cli("evaluate", run, "--data", data, "--out", tmp_path / "r", "--no-downstream", opt, value),
                       f"the gan family has no sampler option(s) ['{name}']")
    for opt, name in (("--downstream-score-guidance", "score_guidance"),
                      ("--downstream-repetition-guidance", "repetition_guidance")):
        one_error_line(cli("evaluate", run, "--data", data, "--out", tmp_path / "r", opt, 2),
                       f"the gan family has no sampler option(s) ['{name}']")
    assert not (tmp_path / "r").exists()


def test_ctrl_c_outside_training_is_one_line(monkeypatch, tmp_path):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("rehabgen.data.load_dataset", interrupted)
    one_error_line(cli("data", "inspect", tmp_path), "interrupted", code=130)


# ------------------------------------------------------------------------------------------
# one overwrite rule: refuse without --force
# ------------------------------------------------------------------------------------------
def test_every_writing_command_refuses_to_overwrite_without_force(run_dir, data, tmp_path):
    s = tmp_path / "s.npz"
    assert cli("sample", run_dir, "--exercise", "Es1", "--n", 1, "--steps", 1, "--out", s).exit_code == 0
    before = s.read_bytes()
    one_error_line(cli("sample", run_dir, "--exercise", "Es1", "--n", 2, "--steps", 1, "--out", s),
                   "already exists", "--force")
    assert s.read_bytes() == before
    r = cli("sample", run_dir, "--exercise", "Es1", "--n", 2, "--steps", 1, "--out", s, "--force")
    assert r.exit_code == 0 and s.read_bytes() != before
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "metrics.json").write_text("{}")
    one_error_line(cli("evaluate", run_dir, "--data", data, "--out", rep), "already holds", "--force")
    (tmp_path / "t.md").write_text("mine")
    one_error_line(cli("compare", rep, "--out", tmp_path / "t.md"), "already exists", "--force")
    one_error_line(cli("demo", "--out", rep), "already holds", "--force")
    one_error_line(cli("train", "--data", data, "--out", run_dir, *TINY), "already holds a run", "--resume", "--force")
    assert (rep / "metrics.json").read_text() == "{}" and (tmp_path / "t.md").read_text() == "mine"


def test_train_force_replaces_the_run(run_dir, data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    r = cli("train", "--data", data, "--out", run, "--steps", 3, "--force", *TINY)
    assert r.exit_code == 0, r.output
    assert json.loads((run / "train_summary.json").read_text())["steps"] == 3
    one_error_line(cli("train", "--out", run, "--resume", "--force"), "--resume", "--force")


# ------------------------------------------------------------------------------------------
# interrupts and resume
# ------------------------------------------------------------------------------------------
def test_resume_of_a_finished_run_changes_nothing(run_dir):
    before = snapshot(run_dir)
    for extra in ([], ["--minutes", "0.1"], ["--steps", "6"], ["--steps", "3"]):
        r = cli("train", "--out", run_dir, "--resume", *extra)
        assert r.exit_code == 0, r.output
        assert "already finished at step 6" in r.output and "Traceback" not in r.output
    assert snapshot(run_dir) == before


def test_resume_extends_with_steps_and_keeps_the_first_loss(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    first = json.loads((run / "train_summary.json").read_text())["first_loss"]
    r = cli("train", "--out", run, "--resume", "--steps", 9)
    assert r.exit_code == 0, r.output
    s = json.loads((run / "train_summary.json").read_text())
    assert (s["steps"], s["resumed_from"], s["first_loss"], s["stopped_early"]) == (9, 6, first, False)


def test_resume_with_another_data_folder_is_refused(run_dir, data, tmp_path):
    one_error_line(cli("train", "--out", run_dir, "--resume", "--data", tmp_path), "is not the folder", str(data))
    r = cli("train", "--out", run_dir, "--resume", "--data", data)  # the same folder is fine
    assert r.exit_code == 0 and "already finished" in r.output


def test_resume_before_the_first_checkpoint_starts_from_step_0(run_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(run_dir / "config.json", run / "config.json")  # what a run stopped during setup leaves
    r = cli("train", "--out", run, "--resume")
    assert r.exit_code == 0, r.output
    assert "no checkpoint yet" in r.output
    assert json.loads((run / "train_summary.json").read_text())["steps"] == 6


def test_time_limit_far_short_of_the_plan_is_loud(data, tmp_path):
    run = tmp_path / "run"
    r = cli("train", "--data", data, "--out", run, "--steps", 100_000, "--minutes", 0.002, *TINY)
    assert r.exit_code == 0, r.output
    s = json.loads((run / "train_summary.json").read_text())
    assert s["stopped_early"] and s["planned_steps"] == 100_000 and s["steps"] < 100_000
    assert s["stop_reason"] == "time limit (--minutes 0.002)"
    assert "warning: training ended FAR SHORT of its plan" in r.output and "--resume" in r.output


def test_sigterm_stops_after_the_step_with_a_checkpoint(tmp_path):
    from rehabgen.preprocess import PreprocessConfig
    from rehabgen.train import train

    torch.manual_seed(0)
    model, arrays = get_family("diffusion").from_dataset(
        toy_dataset(n=8, T=30), PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None), max_len=24,
        d_model=16, n_layers=1, ff=32, n_heads=2, batch_size=4)
    step = model.train_step

    def train_step(*a, **k):
        if model.step == 4:  # during step 5
            os.kill(os.getpid(), signal.SIGTERM)
        return step(*a, **k)

    model.train_step = train_step
    before = signal.getsignal(signal.SIGTERM)
    s = train(model, arrays, steps=50, out_dir=tmp_path, ckpt_every=100, progress=False)
    assert (s["steps"], s["stop_reason"], s["stopped_early"]) == (5, "interrupted (SIGTERM)", True)
    assert json.loads((tmp_path / CKPT / "trainer.json").read_text())["step"] == 5
    assert (tmp_path / "log.csv").is_file() and signal.getsignal(signal.SIGTERM) is before


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path / "model" / "model.safetensors")


def test_sigint_at_any_step_then_resume_gives_identical_weights(data, tmp_path):
    """A real Ctrl-C (SIGINT) during training, before the first periodic checkpoint: the run
    saves a checkpoint and its log at that step, says how to resume, exits 130; `--resume`
    ends with weights bit-identical to an uninterrupted run of the same seed."""
    steps = 300
    base = [sys.executable, "-m", "rehabgen", "train", "--data", str(data), "--steps", str(steps), "--seed", "2",
            "--ckpt-every", "1000", "--threads", "1", *TINY]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = subprocess.Popen([*base, "--out", str(tmp_path / "ref")], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    run = tmp_path / "int"
    p = subprocess.Popen([*base, "--out", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = bytearray()

    def read():  # drain stderr as it comes, so the child never blocks on a full pipe
        while chunk := p.stderr.read1(4096):
            err.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    t0 = time.time()
    while b"train diffusion" not in err and p.poll() is None and time.time() - t0 < 120:
        time.sleep(0.02)  # the progress bar appears when the training loop starts
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    reader.join()
    text = err.decode().replace("\r", "\n")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("train diffusion")]
    assert p.returncode == 130, text
    assert "Traceback" not in text and lines[-1].startswith("error: interrupted (SIGINT) at step "), text
    assert f"continue with: rehabgen train --out {run} --resume" in lines[-1]
    at = json.loads((run / CKPT / "trainer.json").read_text())["step"]
    assert 1 <= at < steps and f"at step {at} of {steps}" in lines[-1]
    assert (run / "log.csv").is_file() and json.loads((run / "train_summary.json").read_text())["stopped_early"]
    r = subprocess.run([sys.executable, "-m", "rehabgen", "train", "--out", str(run), "--resume", "--threads", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()
    ref.stderr.close()
    p.stderr.close()
    a, b = _weights(tmp_path / "ref"), _weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logged = [int(line.split(",")[0]) for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert logged == sorted(set(logged)) and logged[-1] == steps


# ------------------------------------------------------------------------------------------
# warnings: quarantined files, unfinished folders, other data folder, truncated files
# ------------------------------------------------------------------------------------------
def test_train_says_how_many_files_are_quarantined(kimore_tiny, tmp_path):
    (kimore_tiny / "CG" / "Expert" / "E_ID1" / "Es2" / "Raw" / "JointPosition_E_ID1.csv").write_text("")
    r = cli("train", "--data", kimore_tiny, "--out", tmp_path / "run", "--steps", 2, "--test-fraction", 0, *TINY)
    assert r.exit_code == 0, r.output
    assert f"warning: {kimore_tiny}: 1 file(s) quarantined" in r.output
    assert f"rehabgen data inspect {kimore_tiny}" in r.output


def test_an_interrupted_synth_is_marked_and_reported(tmp_path, monkeypatch):
    import rehabgen.data.synth as synth

    out = tmp_path / "k"
    real = synth.generate_subject

    def stop_at_second(k, *a, **kw):
        if k == 1:
            raise KeyboardInterrupt
        return real(k, *a, **kw)

    monkeypatch.setattr(synth, "generate_subject", stop_at_second)
    one_error_line(cli("data", "synth", out, "--subjects", 2), "interrupted", "incomplete", "--force", code=130)
    monkeypatch.setattr(synth, "generate_subject", real)
    r = cli("data", "inspect", out, "--json")
    assert "warning:" in r.output and "unfinished folder" in r.output
    one_error_line(cli("data", "synth", out, "--subjects", 2), "unfinished `data synth`", "--force")
    assert cli("data", "synth", out, "--subjects", 2, "--force").exit_code == 0
    r = cli("data", "inspect", out, "--json")
    assert r.exit_code == 0 and "warning:" not in r.output and json.loads(r.stdout)["warnings"] == []


def test_evaluate_warns_when_the_data_folder_is_not_the_runs(run_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    r = cli("evaluate", run_dir, "--data", other, "--out", tmp_path / "rep")
    assert f"warning: --data {other} is not the folder this run was trained on" in r.output
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith("error: ")  # then the folder is empty


def test_a_joint_position_file_cut_mid_row_is_quarantined_by_name(kimore_tiny):
    from rehabgen.data import load_dataset
    from rehabgen.data.kimore import format_timestamps

    raw = kimore_tiny / "CG" / "Expert" / "E_ID1" / "Es1" / "Raw"
    (raw / "TimeStamp_E_ID1.csv").write_text(format_timestamps(40, 30.0))
    jp = raw / "JointPosition_E_ID1.csv"
    full = jp.read_bytes()
    jp.write_bytes(full[: len(full) // 2])  # 20 of 40 whole rows: can't tell which file lost rows
    q = {x.path: x.reason for x in load_dataset(kimore_tiny).quarantined}
    assert q == {str(raw / "TimeStamp_E_ID1.csv"): "40 timestamps for 20 JointPosition frames: one of the two files "
                                                   "is incomplete; timestamps not used"}
    jp.write_bytes(full[: len(full) // 2 + 7])  # stops inside row 21
    q = {x.path: x.reason for x in load_dataset(kimore_tiny).quarantined}
    assert list(q) == [str(jp)] and q[str(jp)].startswith("truncated: the file stops in the middle of row 21")


def test_inspect_prints_whole_paths_and_says_frames_are_totals(tmp_path):
    root = tmp_path / ("a_rather_long_folder_name_" * 3) / "kimore"
    s = write_subject(root, "Expert", "E_ID1")
    bad = s / "Es2" / "Raw" / "JointPosition_E_ID1.csv"
    bad.write_text("")
    r = cli("data", "inspect", root, env={"COLUMNS": "60"})
    assert r.exit_code == 0 and f"  {bad}: file is empty" in r.output.splitlines()
    assert "frames in all" in r.output.splitlines()[0]


# ------------------------------------------------------------------------------------------
# threads
# ------------------------------------------------------------------------------------------
def test_thread_policy(monkeypatch):
    from rehabgen.threads import available_cores, choose_threads, use_threads

    cores = available_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert choose_threads() == (cores, f"{cores} available core(s)")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert choose_threads()[0] == max(1, cores // 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads() == (3, "OMP_NUM_THREADS=3")
    assert choose_threads(2) == (2, "--threads")
    was = torch.get_num_threads()
    try:
        line = use_threads(1)
        assert torch.get_num_threads() == 1 and line.startswith("threads: 1 (--threads")
    finally:
        torch.set_num_threads(was)


def test_commands_say_how_many_threads_they_use(run_dir, tmp_path):
    was = torch.get_num_threads()
    try:
        r = cli("sample", run_dir, "--exercise", "Es1", "--n", 1, "--steps", 1, "--threads", 1,
                "--out", tmp_path / "s.npz")
    finally:
        torch.set_num_threads(was)
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("threads: 1 (--threads")


def test_demo_trains_a_fixed_number_of_steps(tmp_path):
    out = tmp_path / "demo"
    r = cli("demo", "--out", out, "--subjects", 3, "--steps", 3, "--no-evaluate")
    assert r.exit_code == 0, r.output
    s = json.loads((out / "run" / "train_summary.json").read_text())
    assert (s["steps"], s["planned_steps"], s["stopped_early"]) == (3, 3, False)
    cfg = json.loads((out / "demo_config.json").read_text())
    assert cfg["steps"] == 3 and np.isfinite(cfg["range_of_motion_vs_real"]) and "minutes" not in cfg
    assert "range of motion of the samples" in r.output
