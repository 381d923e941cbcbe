"""`rehabgen sweep`: plan checks (one-line errors naming the file), the grid and its job names,
what a rerun does with each job's folder, a sweep killed mid-way and rerun (finished jobs are
not redone, the killed training resumes, the table lists every job), and the Slurm path through
submitit's local executor."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rehabgen.cli import app
from rehabgen.sweep import Children, PlanError, SweepJob, commands, job_state, load_plan

from conftest import toy_dataset

runner = CliRunner()
TINY_TRAIN = """
[train]
steps = {steps}
ckpt_every = 10
max_len = 24
fps = 15
batch_size = 4
folds = 3
[set]
d_model = 16
n_layers = 1
ff = 32
n_heads = 2
{sets}
[evaluate]
repeats = 1
downstream = false
n = 6
steps = 2
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from rehabgen.data.generic import write_generic

    d = tmp_path_factory.mktemp("sweepdata") / "toy"
    write_generic(d, toy_dataset(n=16, T=30))  # 12 subjects, 2 exercises
    return d


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One evaluator cache for the module: every job of fold 0 shares its evaluator."""
    return tmp_path_factory.mktemp("cache")


def write_plan(folder: Path, data: Path, grid: str, steps: int = 20, extra: str = "", sweep: str = "",
               sets: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "plan.toml"
    p.write_text(f'[sweep]\nout = "out"\n{sweep}\n[grid]\ndata = ["{data}"]\n{grid}\n'
                 + TINY_TRAIN.format(steps=steps, sets=sets) + extra)
    return p


def one_error_line(r, *needles):
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert all(n in lines[0] for n in needles), (needles, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------
def test_unknown_key_is_one_line_naming_file_table_and_known_keys(data, tmp_path):
    plan = write_plan(tmp_path, data, 'family = ["diffusion"]\nfoo = 1')
    r = runner.invoke(app, ["sweep", str(plan)])
    line = one_error_line(r)
    assert line == f"error: {plan}: unknown key 'foo' in [grid] (known: data, family, seed, fold)"
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


@pytest.mark.parametrize("grid, extra, sweep, needles", [
    ('family = ["difusion"]', "", "", ["[grid] family", "unknown model family 'difusion'", "diffusion"]),
    ('seed = [0, 1]\nfold = [3]', "", "", ["[grid] fold", "[0, 2]", "folds = 3"]),
    ('family = ["diffusion", "gan"]', "[set.diffusion]\nfoo = 2\n", "", ["[set.diffusion] foo", "unknown hyper-parameter",
                                                                         "known:"]),
    ('family = ["diffusion", "vae"]', "[set.gan]\nlatent = 8\n", "", ["[set.gan]", "not a family of this sweep"]),
    ('family = ["diffusion"]', "[slurm]\ncluster = \"debug\"\npartitionn = \"gpu\"\n", 'executor = "slurm"',
     ["unknown key 'partitionn' in [slurm]", "partition", "timeout_min"]),
    ('family = ["diffusion"]', "", 'executor = "pbs"', ["[sweep] executor must be one of local, slurm", "'pbs'"]),
    ('family = ["diffusion"]', "", "parallel = 0", ["[sweep] parallel must be an integer >= 1"]),
    ('fold = [0]', "[other]\nx = 1\n", "", ["unknown table [other] (known: sweep, grid"]),
])
def test_bad_plans_stop_before_any_job_with_one_line(data, tmp_path, grid, extra, sweep, needles):
    plan = write_plan(tmp_path, data, grid, extra=extra, sweep=sweep)
    one_error_line(runner.invoke(app, ["sweep", str(plan)]), str(plan), *needles)
    assert not (tmp_path / "out").exists()


def test_a_hyper_parameter_of_one_family_goes_under_its_table(data, tmp_path):
    plan = write_plan(tmp_path, data, 'family = ["diffusion", "gan"]', sets='sampler = "ddim"')
    one_error_line(runner.invoke(app, ["sweep", str(plan)]), "[set] sampler: unknown hyper-parameter of the gan family",
                   "a hyper-parameter of diffusion only goes under [set.diffusion]")
    plan = write_plan(tmp_path, data, 'family = ["diffusion", "gan"]', extra='[set.diffusion]\nsampler = "ddim"\n')
    assert [j["name"] for j in load_plan(plan).jobs] == ["toy_diffusion_seed0", "toy_gan_seed0"]


def test_more_plan_errors(data, tmp_path):
    def err(text: str) -> str:
        p = tmp_path / "p.toml"
        p.write_text(text)
        with pytest.raises(PlanError) as e:
            load_plan(p)
        assert str(e.value).startswith(f"{p}: ")
        return str(e.value)

    assert "no such folder" in err('[sweep]\nout = "o"\n[grid]\ndata = ["missing"]\n')
    assert "not valid TOML" in err('[sweep]\nout = "o"\n[grid\n')
    assert "[train] steps is a list" in err(f'[sweep]\nout = "o"\n[grid]\ndata = ["{data}"]\n[train]\nsteps = [1, 2]\n')
    assert "[train] steps must be an integer >= 1" in err(f'[sweep]\nout = "o"\n[grid]\ndata = ["{data}"]\n[train]\nsteps = 0\n')
    assert "[set] d_model must be an integer" in err(f'[sweep]\nout = "o"\n[grid]\ndata = ["{data}"]\n[set]\nd_model = "x"\n')
    assert "[sweep] out must name" in err(f'[grid]\ndata = ["{data}"]\n')
    assert "lists a value twice" in err(f'[sweep]\nout = "o"\n[grid]\ndata = ["{data}"]\nseed = [1, 1]\n')
    assert "give one of them" in err(f'[sweep]\nout = "o"\n[grid]\ndata = ["{data}"]\nfold = [0]\n[train]\n'
                                     'test_fraction = 0.3\n')
    assert "too few" in err(f'[sweep]\nout = "o"\n[grid]\ndata = ["{data}"]\nfold = [0]\n[train]\nfolds = 13\n')
    if not __import__("shutil").which("sbatch"):
        assert "sbatch not found" in err(f'[sweep]\nout = "o"\nexecutor = "slurm"\n[grid]\ndata = ["{data}"]\n')
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "nope.toml")


def test_grid_jobs_names_and_command_lines(data, tmp_path):
    plan = load_plan(write_plan(tmp_path, data, 'family = ["diffusion", "vae"]\nseed = [0, 1]\nfold = [1]',
                                extra='[set.diffusion]\nsampler = ["dpm", "ddim"]\n'), parallel=3)
    assert plan.parallel == 3 and plan.out == (tmp_path / "out").resolve()
    names = [j["name"] for j in plan.jobs]
    assert len(names) == 6 == len(set(names))  # diffusion: 2 seeds x 2 samplers; vae: 2 seeds
    assert "toy_diffusion_seed1_fold1_sampler-ddim" in names and "toy_vae_seed0_fold1" in names
    j = next(j for j in plan.jobs if j["name"] == "toy_diffusion_seed1_fold1_sampler-ddim")
    assert j["values"] == {"data": "toy", "family": "diffusion", "seed": 1, "fold": 1, "sampler": "ddim"}
    (_, train), (_, ev) = commands(j, threads=2)
    assert train[:3] == ["train", "--out", str(Path(j["dir"]) / "run")]
    s = " ".join(train)
    for part in ("--model diffusion", "--seed 1", "--fold 1 --folds 3", "--steps 20", "--set d_model=16",
                 '--set sampler="ddim"', "--threads 2"):
        assert part in s, (part, s)
    assert ev[:2] == ["evaluate", str(Path(j["dir"]) / "run")] and "--no-downstream" in ev and "--force" in ev
    vae = next(x for x in plan.jobs if x["values"]["family"] == "vae")
    assert "sampler" not in " ".join(vae["train_args"])
    # [evaluate] steps = 2: the diffusion runs' solver steps; the VAE has none and is not given them
    assert "--steps 2" in " ".join(ev) and "--steps" not in vae["evaluate_args"]


def test_dry_run_lists_jobs_and_commands_and_writes_nothing(data, tmp_path):
    plan = write_plan(tmp_path, data, 'family = ["vae"]\nseed = [0, 1]')
    r = runner.invoke(app, ["sweep", str(plan), "--dry-run", "--executor", "local"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "toy_vae_seed0: new" and lines[3] == "toy_vae_seed1: new"
    assert lines[1].startswith("  rehabgen train --out ") and "--seed 1" in lines[4] and "--fold" not in r.output
    assert lines[-1] == "2 job(s); nothing run (--dry-run)" and not (tmp_path / "out").exists()


def test_rerun_decides_per_job_from_its_folder(data, tmp_path):
    """new -> train; a killed run (config + checkpoint) -> train --resume; trained -> evaluate
    only; finished (job.json + metrics.json) -> nothing."""
    plan = load_plan(write_plan(tmp_path, data, "fold = [0]"))
    j = plan.jobs[0]
    run = Path(j["dir"]) / "run"
    assert job_state(j)["state"] == "new" and [w for w, _ in commands(j)] == ["train", "evaluate"]
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoint" / "trainer.json").write_text(json.dumps({"step": 10}))
    assert job_state(j) == {"state": "resume", "step": 10}
    (_, argv), _ = commands(j)
    assert argv == ["train", "--out", str(run), "--resume", "--steps", "20"]
    (run / "model").mkdir()
    (run / "train_summary.json").write_text(json.dumps({"steps": 20}))
    assert [w for w, _ in commands(j)] == ["evaluate"]
    (Path(j["dir"]) / "report").mkdir()
    (Path(j["dir"]) / "report" / "metrics.json").write_text("{}")
    assert job_state(j)["state"] == "evaluate"  # metrics.json alone: evaluate may have died writing its report
    (Path(j["dir"]) / "job.json").write_text(json.dumps({"status": "finished"}))
    assert job_state(j)["state"] == "finished" and commands(j) == []


def test_changed_fixed_settings_are_refused_on_rerun(data, tmp_path):
    from rehabgen.sweep import prepare_out

    plan = load_plan(write_plan(tmp_path, data, "fold = [0]"))
    plan.out.mkdir()
    (plan.out / "sweep.json").write_text(json.dumps({"defining": plan.defining()}))
    prepare_out(plan, force=False)  # the same plan: fine
    plan2 = load_plan(write_plan(tmp_path, data, "fold = [0]\nseed = [0, 5]", steps=30))  # more seeds: fine; steps: no
    with pytest.raises(PlanError, match=r"\[train\] steps is 30 but the sweep in .* ran with 20.*--force"):
        prepare_out(plan2, force=False)
    prepare_out(plan2, force=True)
    assert not (plan.out / "sweep.json").exists()


def test_slurm_job_callable_pickles_and_checkpoints_its_training():
    """What submitit does on a timeout/preemption: call `checkpoint`, which stops the running
    command (SIGTERM: a training checkpoints) and returns the same job to re-queue."""
    sj = SweepJob()
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    sj._children.add(p)
    again = pickle.loads(pickle.dumps(sj))
    assert isinstance(again._children, Children) and not again._children._procs
    job = {"name": "x"}
    t0 = time.time()
    delayed = sj.checkpoint(job, 2)
    assert p.poll() == -signal.SIGTERM and time.time() - t0 < 10
    assert isinstance(delayed.function, SweepJob) and delayed.args == (job, 2)


# ------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------
def sweep_proc(plan: Path, cache: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "REHABGEN_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "rehabgen", "sweep", str(plan), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)


def training_now(job: dict) -> bool:
    """Training, with a checkpoint and at least half of its 100 steps still to go (so a SIGTERM
    now lands in the training loop)."""
    run = Path(job["dir"]) / "run"
    try:
        step = json.loads((run / "checkpoint" / "trainer.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return False
    return step <= 50 and not (run / "train_summary.json").is_file()


def test_killed_sweep_reruns_without_redoing_finished_jobs(data, cache, tmp_path):
    """2 families x 2 seeds, 2 at a time: SIGTERM to the sweep's process group once a job has
    finished and another is training; the rerun skips the finished ones (their files untouched),
    resumes the killed training from its checkpoint and ends with all four in the table."""
    plan = write_plan(tmp_path, data, 'family = ["diffusion", "vae"]\nseed = [0, 1]\nfold = [0]', steps=100,
                      sweep="parallel = 2")
    jobs = load_plan(plan).jobs
    dirs = {j["name"]: Path(j["dir"]) for j in jobs}
    p = sweep_proc(plan, cache)
    t_end = time.time() + 400
    while time.time() < t_end and p.poll() is None:
        if any((d / "job.json").is_file() for d in dirs.values()) and any(training_now(j) for j in jobs):
            break
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()[0]
    os.killpg(p.pid, signal.SIGTERM)
    out1 = p.communicate(timeout=120)[0]
    assert p.returncode == 143 and "interrupted (SIGTERM)" in out1, out1
    done = [j["name"] for j in jobs if job_state(j)["state"] == "finished"]
    killed = [j["name"] for j in jobs if (json.loads((dirs[j["name"]] / "run" / "train_summary.json").read_text())
                                          if (dirs[j["name"]] / "run" / "train_summary.json").is_file()
                                          else {}).get("stopped_early")]
    assert 1 <= len(done) < 4 and killed and not set(done) & set(killed), (done, killed, out1)
    for name in done:
        assert re.search(rf"finished \[\d/4\] {name}: in \d+ s", out1), out1
    before = {n: ((dirs[n] / "report" / "metrics.json").stat(), (dirs[n] / "log.txt").read_text()) for n in done}

    p = sweep_proc(plan, cache)
    out2 = p.communicate(timeout=400)[0]
    assert p.returncode == 0, out2
    for name, (st, log) in before.items():
        assert re.search(rf"skip \[\d/4\] {name}: finished earlier", out2), out2
        now = (dirs[name] / "report" / "metrics.json").stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
        assert (dirs[name] / "log.txt").read_text() == log  # nothing of it ran again
    for name in killed:
        assert f"start {name}: train (resuming from step" in out2, out2
        s = json.loads((dirs[name] / "run" / "train_summary.json").read_text())
        assert s["resumed_from"] > 0 and s["steps"] == 100 and not s["stopped_early"]
    assert len(re.findall(r"^start ", out2, re.M)) == 4 - len(done)
    table = (plan.parent / "out" / "table.md").read_text()
    for j in jobs:
        v = j["values"]
        assert f"| {j['name']} | toy | {v['family']} | {v['seed']} | 0 | finished | 100 |" in table, table
    header = next(ln for ln in table.splitlines() if ln.startswith("| metric |"))
    assert all(j["name"] in header for j in jobs) and "| fid" in table
    rec = json.loads((plan.parent / "out" / "sweep.json").read_text())
    assert [j["name"] for j in rec["jobs"]] == [j["name"] for j in jobs] and rec["threads_per_job"] >= 1


def test_slurm_path_runs_the_same_job_through_submitit(data, cache, tmp_path):
    pytest.importorskip("submitit")
    plan = write_plan(tmp_path, data, 'family = ["vae"]\nseed = [3]\nfold = [0]', sweep='executor = "slurm"',
                      extra='[slurm]\ncluster = "local"\ntimeout_min = 10\n')
    p = sweep_proc(plan, cache)
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out
    assert "submitted 1 job(s) to local" in out and "finished [1/1] toy_vae_seed3_fold0" in out
    job = Path(load_plan(plan).jobs[0]["dir"])
    rec = json.loads((job / "job.json").read_text())
    assert rec["status"] == "finished" and [c["command"].split()[1] for c in rec["commands"]] == ["train", "evaluate"]
    assert "--fold 0 --folds 3" in rec["commands"][0]["command"]
    assert list((plan.parent / "out" / "slurm").rglob("*_result.pkl"))  # submitit's own record of the job
    assert "| toy_vae_seed3_fold0 | toy | vae | 3 | 0 | finished | 20 |" in (plan.parent / "out" / "table.md").read_text()
    p = sweep_proc(plan, cache)  # the rerun submits nothing
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 0 and "skip [1/1]" in out and "submitted" not in out, out


def test_first_evaluation_of_a_split_runs_alone():
    """The evaluator networks of a split are fitted once: the first evaluation runs alone, the
    others of that split wait for it; other splits don't wait."""
    import threading

    from rehabgen.sweep import EvaluatorGate

    gate, log = EvaluatorGate(), []
    a, b, c = ({"evaluator_key": k} for k in ("s0", "s0", "s1"))

    def ev(job, name, hold):
        with gate(job):
            log.append(f"{name}+")
            time.sleep(hold)
            log.append(f"{name}-")

    t1 = threading.Thread(target=ev, args=(a, "a", 0.4))
    t1.start()
    time.sleep(0.1)
    t2, t3 = (threading.Thread(target=ev, args=(j, n, 0.05)) for j, n in ((b, "b"), (c, "c")))
    t2.start()
    t3.start()
    for t in (t1, t2, t3):
        t.join()
    assert log.index("a-") < log.index("b+") and log.index("c+") < log.index("a-")
    ev(b, "b2", 0)  # once warm, nobody waits
