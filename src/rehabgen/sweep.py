"""`rehabgen sweep PLAN.toml`: a grid of train + evaluate jobs, on this machine or on Slurm, and
one comparison table.

Why it is built this way:

- A job is two command lines of the `rehabgen` CLI, `train` then `evaluate`, run as
  subprocesses. A job does exactly what a user would type (same checks, same files), and the
  local executor and Slurm run the same command lines.
- A job's state lives in its folder, so a rerun can pick up where a killed sweep stopped. A job
  is finished when `job.json` says so, which is written after `evaluate` exits 0 and not merely
  when metrics.json exists, because evaluate writes metrics.json before its report. A rerun
  skips finished jobs, continues a killed training with `train --resume`, and redoes an
  unfinished evaluation.
- No home-made scheduler. The local executor keeps N subprocess slots busy with a thread
  pool; the threads only wait on their subprocesses. On Slurm the jobs go to submitit (one job
  array), which re-queues a job that times out or is preempted: training resumes from its
  checkpoint.
- A lock guards each job. Its file descriptor is passed on to the job's subprocesses, so a job
  whose sweep was killed with SIGKILL, while its training lives on, is not started a second time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Callable

from rehabgen.config import GEN_SCORES, ConfigError, RunConfig, check_hparams, check_int, check_number
from rehabgen.io import atomic_write_bytes


class PlanError(ConfigError):
    """The plan file is wrong; the message names the file, the table and the key."""


# ------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------
TABLES = ("sweep", "grid", "train", "set", "evaluate", "slurm")
SWEEP_KEYS = ("out", "executor", "parallel")
GRID_KEYS = ("data", "family", "seed", "fold")
EXECUTORS = ("local", "slurm")
# [train] key -> (train option, kind, lower bound); kinds: int, number (> lower), fraction ([0, 1)), flag
TRAIN_KEYS = {
    "steps": ("--steps", "int", 1), "minutes": ("--minutes", "number", 0.0), "max_len": ("--max-len", "int", 8),
    "fps": ("--fps", "number", 0.0), "test_fraction": ("--test-fraction", "fraction", 0.0),
    "folds": ("--folds", "int", 2), "ckpt_every": ("--ckpt-every", "int", 1),
    "batch_size": ("--batch-size", "int", 1), "lr": ("--lr", "number", 0.0), "text": ("--text", "flag", None),
}
# [evaluate] key -> (evaluate option, kind, lower bound); choice: one of the listed words
EVALUATE_KEYS = {
    "n": ("--n", "int", 1), "repeats": ("--repeats", "int", 1), "folds": ("--folds", "int", 2),
    "downstream": ("--downstream", "flag", None), "downstream_scores": ("--downstream-scores", "choice", GEN_SCORES),
    "downstream_seeds": ("--downstream-seeds", "int", 1), "downstream_repeats": ("--downstream-repeats", "int", 1),
    "downstream_score_guidance": ("--downstream-score-guidance", "number", 0.0),
    "downstream_repetition_guidance": ("--downstream-repetition-guidance", "number", 0.0),
    "steps": ("--steps", "int", 1), "seed": ("--seed", "int", 0), "test_data": ("--test-data", "path", None),
}
# [evaluate] keys that set a sampler option (`SamplerOptions` field): given only to the families that have it
EVALUATE_SAMPLER_KEYS = {"steps": "steps", "downstream_score_guidance": "score_guidance",
                         "downstream_repetition_guidance": "repetition_guidance"}
SWEEP_OUTPUTS = ("jobs", "slurm", "sweep.json", "table.md")  # what --force deletes, nothing else


@dataclass
class Plan:
    """A plan file, checked and resolved: absolute paths, every grid axis a list, one entry per job."""

    path: Path
    out: Path
    executor: str
    parallel: int
    grid: dict  # data (absolute paths), family, seed, fold (None: the run's --test-fraction split)
    train: dict
    sets: dict  # {"*": {key: [values]}, family: {key: [values]}}: every value a list, a list of one = fixed
    evaluate: dict
    slurm: dict
    jobs: list[dict] = field(default_factory=list)

    def defining(self) -> dict:
        """What every job's result depends on besides its own grid values: a rerun with another
        value would mix results made two ways in one table."""
        fixed = {(k if fam == "*" else f"{fam}.{k}"): v[0]
                 for fam, s in self.sets.items() for k, v in s.items() if len(v) == 1}
        return {"train": self.train, "evaluate": self.evaluate, "set": fixed}

    def to_dict(self) -> dict:
        return {"plan": str(self.path), "out": str(self.out), "executor": self.executor, "parallel": self.parallel,
                "grid": self.grid, "train": self.train, "set": self.sets, "evaluate": self.evaluate,
                "slurm": self.slurm, "jobs": self.jobs}


def _bad(plan: Path, msg: str) -> PlanError:
    return PlanError(f"{plan}: {msg}")


def _known(plan: Path, table: str, d: dict, known) -> None:
    for k in d:
        if k not in known:
            raise _bad(plan, f"unknown key {k!r} in [{table}] (known: {', '.join(known)})")


def _as_list(plan: Path, where: str, v) -> list:
    out = v if isinstance(v, list) else [v]
    if not out:
        raise _bad(plan, f"{where} is an empty list: give at least one value")
    if len({json.dumps(x, sort_keys=True) for x in out}) != len(out):
        raise _bad(plan, f"{where} lists a value twice: {v!r}")
    return out


def _check_value(plan: Path, table: str, key: str, v, spec) -> None:
    """A [train]/[evaluate] value of the right kind and range; the message names table and key."""
    _, kind, lo = spec
    name = f"{plan}: [{table}] {key}"
    try:
        if kind == "int":
            check_int(v, name, lo)
        elif kind == "number":
            check_number(v, name, lo, lo_open=True)
        elif kind == "fraction":
            check_number(v, name, 0.0, 1.0, hi_open=True)
        elif kind == "flag" and not isinstance(v, bool):
            raise ConfigError(f"{name} must be true or false, got {v!r}")
        elif kind == "choice" and v not in lo:
            raise ConfigError(f"{name} must be one of {', '.join(lo)}, got {v!r}")
        elif kind == "path" and not isinstance(v, str):
            raise ConfigError(f"{name} must be a path (text), got {v!r}")
    except ConfigError as e:
        raise PlanError(str(e)) from None


def load_plan(path: str | Path, executor: str | None = None, parallel: int | None = None) -> Plan:
    """Read and check a plan; `executor`/`parallel` override the file's. Every error is one
    PlanError naming the file, raised before any job starts (families, hyper-parameters, data
    folders and folds are checked too)."""
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"{path}: no such plan file" if not path.exists() else f"{path}: not a file")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise _bad(path, f"not valid TOML: {e}") from None
    for k in raw:
        if k not in TABLES:
            raise _bad(path, f"unknown table [{k}] (known: {', '.join(TABLES)})")
    for t in TABLES:
        if t in raw and not isinstance(raw[t], dict):
            raise _bad(path, f"[{t}] must be a table, got {raw[t]!r}")
    base = path.resolve().parent
    sw, grid = raw.get("sweep", {}), raw.get("grid", {})
    _known(path, "sweep", sw, SWEEP_KEYS)
    _known(path, "grid", grid, GRID_KEYS)
    if "out" not in sw or not isinstance(sw["out"], str) or not sw["out"].strip():
        raise _bad(path, "[sweep] out must name the sweep's folder (relative to the plan file), e.g. out = \"sweeps/demo\"")
    ex = executor or sw.get("executor", "local")
    if ex not in EXECUTORS:
        raise _bad(path, f"[sweep] executor must be one of {', '.join(EXECUTORS)}, got {ex!r}")
    par = parallel if parallel is not None else sw.get("parallel", 1)
    try:
        check_int(par, f"{path}: [sweep] parallel", 1)
    except ConfigError as e:
        raise PlanError(str(e)) from None

    train, evaluate = raw.get("train", {}), raw.get("evaluate", {})
    _known(path, "train", train, TRAIN_KEYS)
    _known(path, "evaluate", evaluate, EVALUATE_KEYS)
    for table, d, keys in (("train", train, TRAIN_KEYS), ("evaluate", evaluate, EVALUATE_KEYS)):
        for k, v in d.items():
            if isinstance(v, list):
                raise _bad(path, f"[{table}] {k} is a list; [{table}] values are fixed (grid axes go in [grid] "
                                 "or [set])")
            _check_value(path, table, k, v, keys[k])
    if "test_data" in evaluate:
        td = (base / evaluate["test_data"]).resolve()
        if not td.is_dir():
            raise _bad(path, f"[evaluate] test_data: no such folder {td}")
        evaluate = {**evaluate, "test_data": str(td)}

    if "data" not in grid:
        raise _bad(path, "[grid] data is missing: list the data folder(s), e.g. data = [\"data/synth\"]")
    data = [str((base / d).resolve()) if isinstance(d, str) else d for d in _as_list(path, "[grid] data", grid["data"])]
    families = _as_list(path, "[grid] family", grid.get("family", "diffusion"))
    seeds = _as_list(path, "[grid] seed", grid.get("seed", 0))
    folds = _as_list(path, "[grid] fold", grid["fold"]) if "fold" in grid else [None]
    n_folds = train.get("folds", RunConfig().folds)
    if "fold" in grid and "test_fraction" in train:
        raise _bad(path, "[grid] fold and [train] test_fraction both choose the held-out subjects: give one of them")
    for s in seeds:
        try:
            check_int(s, f"{path}: [grid] seed", 0)
        except ConfigError as e:
            raise PlanError(str(e)) from None
    for f in folds:
        if f is not None and (isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < n_folds):
            raise _bad(path, f"[grid] fold must be integers in [0, {n_folds - 1}] ([train] folds = {n_folds}), got {f!r}")
    sets = _resolve_sets(path, raw.get("set", {}), families)
    _check_families(path, families, sets, train)
    for d in data:
        _check_data(path, d, n_folds if folds != [None] else None)
    plan = Plan(path=path, out=(base / sw["out"]).resolve(), executor=ex, parallel=par,
                grid={"data": data, "family": families, "seed": seeds, "fold": folds}, train=dict(train),
                sets=sets, evaluate=dict(evaluate), slurm=dict(raw.get("slurm", {})))
    plan.jobs = expand(plan)
    if ex == "slurm":
        slurm_parameters(plan)  # unknown [slurm] keys are a plan error too, before any job
    return plan


def _resolve_sets(plan: Path, raw: dict, families: list) -> dict:
    """[set] key = value (fixed) or [values] (a grid axis), for every family; [set.FAMILY] the
    same for one family. A hyper-parameter whose value is itself a list is written as a list of
    lists."""
    out: dict[str, dict] = {"*": {}}
    for k, v in raw.items():
        if isinstance(v, dict):
            if k not in families:
                raise _bad(plan, f"[set.{k}]: {k!r} is not a family of this sweep ([grid] family: "
                                 f"{', '.join(families)})")
            for kk, vv in v.items():
                if isinstance(vv, dict):
                    raise _bad(plan, f"[set.{k}] {kk}: a table is not a hyper-parameter value")
                out.setdefault(k, {})[kk] = _as_list(plan, f"[set.{k}] {kk}", vv)
        else:
            out["*"][k] = _as_list(plan, f"[set] {k}", v)
    return out


def family_sets(plan_sets: dict, family: str) -> dict:
    """The [set] values that apply to one family: the common ones, overridden by [set.FAMILY]."""
    return {**plan_sets.get("*", {}), **plan_sets.get(family, {})}


def _check_families(plan: Path, families: list, sets: dict, train: dict) -> None:
    """Every family exists and takes every [set] key and value, as `rehabgen train --set` would check."""
    from rehabgen.models import ModelError, get_family
    from rehabgen.models.base import COMMON_HPARAMS

    for fam in families:
        if not isinstance(fam, str):
            raise _bad(plan, f"[grid] family must be family names, got {fam!r}")
        try:
            cls = get_family(fam)
        except ModelError as e:
            raise _bad(plan, f"[grid] family: {e}") from None
        if train.get("text") and not cls.capabilities.text:
            raise _bad(plan, f"[train] text: the {fam} family can't be conditioned on text")
        known = {**COMMON_HPARAMS, **cls.defaults}
        for k, values in family_sets(sets, fam).items():
            common = k in sets.get("*", {}) and k not in sets.get(fam, {})
            for v in values:
                try:
                    check_hparams(known, {k: v}, fam, cls.choices, option="[set]" if common else f"[set.{fam}]")
                except ConfigError as e:
                    others = [f for f in families if f != fam and k in get_family(f).defaults]
                    hint = (f"; a hyper-parameter of {', '.join(others)} only goes under [set.{others[0]}]"
                            if common and others and "unknown" in str(e) else "")
                    raise PlanError(f"{plan}: {e}{hint}") from None


def _check_data(plan: Path, data, folds: int | None) -> None:
    from rehabgen.data import DataError, load_dataset
    from rehabgen.skeleton import SkeletonError

    if not isinstance(data, str):
        raise _bad(plan, f"[grid] data must be folder paths, got {data!r}")
    if not Path(data).is_dir():
        raise _bad(plan, f"[grid] data: no such folder {data}")
    try:
        ds = load_dataset(data)
    except (DataError, SkeletonError) as e:
        raise _bad(plan, f"[grid] data: {e}") from None
    if len(ds) == 0:
        raise _bad(plan, f"[grid] data: {data} holds no usable sequence (see `rehabgen data inspect {data}`)")
    if folds is not None and len(ds.subjects) < folds:
        raise _bad(plan, f"[grid] fold: {data} has {len(ds.subjects)} subjects, too few for [train] folds = {folds}")


# ------------------------------------------------------------------------------------------
# jobs
# ------------------------------------------------------------------------------------------
def _label(v) -> str:
    """A grid value as part of a folder name."""
    s = v if isinstance(v, str) else json.dumps(v)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", s).strip("_") or "_"


def _data_labels(data: list[str]) -> dict[str, str]:
    """Folder names of the data folders, longer where two end alike."""
    parts = {d: Path(d).parts for d in data}
    for n in range(1, max(len(p) for p in parts.values()) + 1):
        labels = {d: "+".join(p[-n:]) for d, p in parts.items()}
        if len(set(labels.values())) == len(labels):
            return {d: _label(v) for d, v in labels.items()}
    return {d: _label(d) for d in data}


def _sampler_options(family: str) -> tuple[str, ...]:
    from rehabgen.models import get_family

    return get_family(family).capabilities.options


def expand(plan: Plan) -> list[dict]:
    """One job per grid point: data x family x seed x fold x every [set] axis of that family.
    A job's folder name is made of its grid values (fixed values are left out), so the same
    plan always gives the same names and a rerun finds its jobs."""
    g = plan.grid
    labels = _data_labels(g["data"])
    steps = plan.train.get("steps", RunConfig().steps)
    jobs, seen = [], {}
    for data, fam, seed, fold in product(g["data"], g["family"], g["seed"], g["fold"]):
        sets = family_sets(plan.sets, fam)
        axes = sorted(k for k, v in sets.items() if len(v) > 1)
        fixed = {k: v[0] for k, v in sets.items() if len(v) == 1}
        for combo in product(*(sets[k] for k in axes)):
            hp = {**fixed, **dict(zip(axes, combo))}
            values = {"data": labels[data], "family": fam, "seed": seed, **({"fold": fold} if fold is not None else {}),
                      **dict(zip(axes, combo))}
            name = "_".join([labels[data], fam, f"seed{seed}", *([f"fold{fold}"] if fold is not None else []),
                             *(f"{k}-{_label(v)}" for k, v in zip(axes, combo))])
            if name in seen:
                raise _bad(plan.path, f"two grid points give the same job name {name!r} ({seen[name]} and {values}); "
                                      "make the values differ by more than punctuation")
            seen[name] = values
            train = ["--data", data, "--model", fam, "--seed", str(seed)]
            if fold is not None:
                train += ["--fold", str(fold), "--folds", str(plan.train.get("folds", RunConfig().folds))]
            for k, v in plan.train.items():
                opt = TRAIN_KEYS[k][0]
                if k == "folds":
                    continue  # with --fold above; alone it means nothing
                if TRAIN_KEYS[k][1] == "flag":
                    train += [opt] if v else []
                else:
                    train += [opt, str(v)]
            if "steps" not in plan.train:
                train += ["--steps", str(steps)]
            for k, v in hp.items():  # JSON, so that "dpm" stays text and 1e-4 a number
                train += ["--set", f"{k}={json.dumps(v)}"]
            evaluate = []
            for k, v in plan.evaluate.items():
                opt = EVALUATE_KEYS[k][0]
                if k in EVALUATE_SAMPLER_KEYS and EVALUATE_SAMPLER_KEYS[k] not in _sampler_options(fam):
                    continue  # e.g. [evaluate] steps: the diffusion runs' solver steps; a GAN has none
                if k == "downstream":
                    evaluate.append("--downstream" if v else "--no-downstream")
                else:
                    evaluate += [opt, str(v)]
            split = f"fold{fold}" if fold is not None else f"seed{seed}"  # the run's training subjects
            key = f"{data}|{split}|{plan.train.get('test_fraction')}|{plan.evaluate.get('seed', 0)}"
            jobs.append({"name": name, "values": values, "dir": str(plan.out / "jobs" / name), "data": data,
                         "evaluator_key": key,
                         "steps": steps, "minutes": plan.train.get("minutes"), "train_args": train,
                         "evaluate_args": evaluate})
    return jobs


def job_state(job: dict) -> dict:
    """Where a job stands: finished (job.json says so), or what a run would do next."""
    d = Path(job["dir"])
    rec = _read_json(d / "job.json")
    if rec and rec.get("status") == "finished" and (d / "report" / "metrics.json").is_file():
        return {"state": "finished", "record": rec}
    run = d / "run"
    if _trained(run, job["steps"]):
        return {"state": "evaluate"}
    if (run / "config.json").is_file():
        step = _checkpoint_step(run)
        return {"state": "resume", "step": step}
    return {"state": "new"}


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _trained(run: Path, steps: int) -> bool:
    """Training reached the plan's steps (its summary says so and the final model is there)."""
    s = _read_json(run / "train_summary.json")
    return bool(s) and int(s.get("steps", 0)) >= steps and (run / "model").is_dir()


def _checkpoint_step(run: Path) -> int | None:
    """The step of the run's checkpoint (checkpoint/trainer.json, as `rehabgen.runs` reads it;
    read here without importing torch)."""
    s = _read_json(run / "checkpoint" / "trainer.json")
    return int(s["step"]) if s and "step" in s else None


def commands(job: dict, threads: int | None = None) -> list[tuple[str, list[str]]]:
    """The `rehabgen` command lines this job still needs, decided when the job starts: train
    (new, or --resume of a killed run) unless trained, then evaluate (--force: an unfinished
    report is redone)."""
    st = job_state(job)["state"]
    if st == "finished":
        return []
    d = Path(job["dir"])
    run, report = str(d / "run"), str(d / "report")
    th = ["--threads", str(threads)] if threads else []
    out = []
    if st == "resume":
        extra = ["--minutes", str(job["minutes"])] if job.get("minutes") else []
        out.append(("train", ["train", "--out", run, "--resume", "--steps", str(job["steps"]), *extra, *th]))
    elif st == "new":
        out.append(("train", ["train", "--out", run, *job["train_args"], *th]))
    out.append(("evaluate", ["evaluate", run, "--data", job["data"], "--out", report, "--force",
                             *job["evaluate_args"], *th]))
    return out


def shown(argv: list[str]) -> str:
    return "rehabgen " + shlex.join(argv)


class Children:
    """The subprocesses a job runner started, so a signal can stop them (each in its own
    process group: a Ctrl-C in the terminal reaches the sweep, which stops them once, cleanly)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.stop = threading.Event()

    def add(self, p: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(p)
        if self.stop.is_set():  # stopped while it was starting
            _signal_group(p, signal.SIGTERM)

    def remove(self, p: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(p)

    def signal_all(self, sig: int) -> int:
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            _signal_group(p, sig)
        return len(procs)

    def wait_all(self, seconds: float) -> bool:
        t_end = time.time() + seconds
        while time.time() < t_end:
            with self._lock:
                if all(p.poll() is not None for p in self._procs):
                    return True
            time.sleep(0.2)
        return False


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _lock(path: Path):
    """An exclusive lock on `path` (an open file) or None when another process holds it; on a
    file system without locks (some cluster file systems) the job runs unlocked."""
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    except OSError:
        return f
    f.seek(0)
    f.truncate()
    f.write(f"{socket.gethostname()} {os.getpid()}\n")
    f.flush()
    return f


def run_job(job: dict, threads: int | None = None, children: Children | None = None,
            say: Callable[[str], None] | None = None, gate=None) -> dict:
    """Run what a job still needs (see `commands`), each command a subprocess of the `rehabgen`
    CLI, its output appended to the job's log.txt. The same function runs under the local
    executor and in a Slurm job; `gate(job)`, if given, is a context around its evaluation
    (see `EvaluatorGate`). Returns {"name", "status": finished | skipped | failed |
    interrupted | busy, ...}; never raises for a failed command (submitit's debug executor would
    start a debugger)."""
    d = Path(job["dir"])
    res = {"name": job["name"], "values": job["values"]}
    if children is not None and children.stop.is_set():
        return {**res, "status": "not started"}
    d.mkdir(parents=True, exist_ok=True)
    todo = commands(job, threads)
    if not todo:
        return {**res, "status": "skipped"}
    lock = _lock(d / "job.lock")
    if lock is None:
        holder = (d / "job.lock").read_text().strip()
        return {**res, "status": "busy", "message": f"another process runs it ({holder}): a sweep killed with its jobs "
                                                     "still running? It is left alone"}
    children = children or Children()
    try:
        todo = commands(job, threads)  # again, under the lock: another runner may have finished it meanwhile
        if not todo:
            return {**res, "status": "skipped"}
        state = job_state(job)
        if say:
            say(f"start {job['name']}: " + " + ".join(_describe(w, state) for w, _ in todo))
        rec = {**res, "status": "running", "host": socket.gethostname(), "started": time.time(), "commands": []}
        t0 = time.time()
        for what, argv in todo:
            with gate(job) if gate is not None and what == "evaluate" else contextlib.nullcontext():
                if children.stop.is_set():
                    return _finish(d, rec, "interrupted", f"stopped before {what}")
                rc, seconds = _run_command(argv, d / "log.txt", lock, children)
            rec["commands"].append({"command": shown(argv), "exit_code": rc, "seconds": round(seconds, 1)})
            if rc != 0:
                if children.stop.is_set() or rc in (130, 143, -signal.SIGTERM, -signal.SIGINT):
                    return _finish(d, rec, "interrupted", f"{what} stopped (exit {rc})")
                return _finish(d, rec, "failed", f"{what} exited {rc}: {_last_error(d / 'log.txt')}")
        return _finish(d, rec, "finished", f"in {time.time() - t0:.0f} s")
    finally:
        lock.close()


class EvaluatorGate:
    """`rehabgen evaluate` fits evaluator networks on the run's training subjects and caches
    them (one fit per data folder and split). Parallel jobs on the same split would all fit the
    same networks at once; instead the first evaluation of a split runs alone and the others
    wait for it, then load the cached networks."""

    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._warm: set[str] = set()

    @contextlib.contextmanager
    def __call__(self, job: dict):
        key = job["evaluator_key"]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._warm:  # the first: evaluates while holding the lock
                try:
                    yield
                finally:
                    self._warm.add(key)
                return
        yield


def _describe(what: str, state: dict) -> str:
    if what == "train" and state["state"] == "resume":
        return "train (resuming " + (f"from step {state['step']})" if state.get("step") is not None else "from step 0)")
    return what


def _finish(d: Path, rec: dict, status: str, message: str) -> dict:
    rec = {**rec, "status": status, "message": message, "ended": time.time()}
    atomic_write_bytes(d / "job.json", (json.dumps(rec, indent=2) + "\n").encode())
    return rec


def _run_command(argv: list[str], log: Path, lock, children: Children) -> tuple[int, float]:
    """One `rehabgen` command as a subprocess in its own session, waited on by polling (a
    blocking wait would hold a lock that a signal handler may need). The job lock's descriptor
    is inherited, so the lock stays held while the command lives."""
    t0 = time.time()
    with open(log, "ab") as f:
        f.write(f"\n$ {shown(argv)}\n".encode())
        f.flush()
        p = subprocess.Popen([sys.executable, "-m", "rehabgen", *argv], stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=(lock.fileno(),))
        children.add(p)
        try:
            while p.poll() is None:
                time.sleep(0.25)
        finally:
            children.remove(p)
    return p.returncode, time.time() - t0


def _last_error(log: Path) -> str:
    """The command's own `error: ...` line, else its last line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
    except OSError:
        return f"see {log}"
    errs = [ln for ln in lines if ln.startswith("error:")]
    last = (errs or lines or ["(no output)"])[-1]
    return f"{last[:300]} (log: {log})"


# ------------------------------------------------------------------------------------------
# executors
# ------------------------------------------------------------------------------------------
def threads_per_job(parallel: int) -> tuple[int, int]:
    """(threads for each job, available cores): the cores shared among the parallel jobs, so
    they don't oversubscribe the machine (see rehabgen.threads)."""
    from rehabgen.threads import available_cores

    cores = available_cores()
    return max(1, cores // parallel), cores


def run_local(plan: Plan, jobs: list[dict], say: Callable[[str], None]) -> tuple[list[dict], str | None]:
    """N subprocess slots (a thread pool whose threads wait on `rehabgen` subprocesses).
    SIGINT/SIGTERM: no new job starts, running trainings get one SIGTERM (they checkpoint and
    exit), the sweep waits for them; a second signal kills them at once. Returns the results
    and the signal's name, if one came."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    threads, _ = threads_per_job(plan.parallel)
    children, gate = Children(), EvaluatorGate()
    got: list[str] = []

    def on_signal(signum, frame):
        got.append(signal.Signals(signum).name)
        children.stop.set()
        if len(got) == 1:
            n = children.signal_all(signal.SIGTERM)
            say(f"{got[0]}: stopping: {n} running command(s) asked to stop (trainings checkpoint first); "
                "again to kill them at once")
        else:
            children.signal_all(signal.SIGKILL)

    results, n, lock = [], len(jobs), threading.Lock()

    def one(job: dict) -> None:  # reports its end itself, before its slot takes the next job
        r = run_job(job, threads, children, say, gate)
        with lock:
            results.append(r)
            _report(r, sum(x["status"] != "not started" for x in results), n, say)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ThreadPoolExecutor(max_workers=plan.parallel, thread_name_prefix="sweep-job") as pool:
            pending = {pool.submit(one, j) for j in jobs}
            while pending:  # a timed wait: the signal handler runs in this thread
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()  # a bug in the runner itself surfaces here
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return results, (got[0] if got else None)


def _report(r: dict, k: int, n: int, say) -> None:
    st = r["status"]
    if st == "not started":
        return
    msg = {"skipped": "finished earlier", "finished": r.get("message", "")}.get(st, r.get("message", ""))
    say(f"{'skip' if st == 'skipped' else st} [{k}/{n}] {r['name']}" + (f": {msg}" if msg else ""))


SLURM_GENERIC = ("name", "timeout_min", "mem_gb", "nodes", "cpus_per_task", "gpus_per_node", "tasks_per_node",
                 "stderr_to_stdout")


def slurm_parameters(plan: Plan) -> tuple[str, dict]:
    """(cluster, submitit parameters) from [slurm]. Its keys are submitit's shared ones
    (timeout_min, mem_gb, cpus_per_task, ...) and Slurm's own (partition, account, qos, ...);
    `cluster = "local"` or `"debug"` runs the same path through submitit on this machine (for
    tests). Unknown keys are a plan error."""
    try:
        import submitit
        from submitit.slurm.slurm import SlurmExecutor
    except ImportError:
        raise _bad(plan.path, "executor 'slurm' needs submitit: pip install 'rehabgen[slurm]'") from None
    del submitit
    opts = dict(plan.slurm)
    cluster = opts.pop("cluster", "slurm")
    if cluster not in ("slurm", "local", "debug"):
        raise _bad(plan.path, f"[slurm] cluster must be slurm, local or debug, got {cluster!r}")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise _bad(plan.path, "executor 'slurm': no Slurm on this machine (sbatch not found); run the sweep on the "
                              "cluster's login node, or use executor = \"local\"")
    slurm_own = sorted(SlurmExecutor._valid_parameters())
    known = ["cluster", *SLURM_GENERIC, *(k for k in slurm_own if k not in SLURM_GENERIC)]
    _known(plan.path, "slurm", opts, known)
    params = {"name": "rehabgen-sweep"}
    for k, v in opts.items():
        params[k if k in SLURM_GENERIC else f"slurm_{k}"] = v
    if cluster == "slurm":
        params.setdefault("slurm_array_parallelism", plan.parallel)
    return cluster, params


class SweepJob:
    """The callable submitit runs in a Slurm job: `run_job` on one job. It has a `checkpoint`
    method, so submitit re-queues it when the job times out or is preempted: the running
    training is asked to stop (it checkpoints) and the re-queued job resumes it."""

    def __init__(self):
        self._children = Children()

    def __call__(self, job: dict, threads: int | None = None) -> dict:
        return run_job(job, threads, self._children, say=lambda m: print(m, flush=True))  # into the job's log

    def checkpoint(self, job: dict, threads: int | None = None):
        from submitit.helpers import DelayedSubmission

        self._children.stop.set()
        self._children.signal_all(signal.SIGTERM)
        self._children.wait_all(60)
        return DelayedSubmission(SweepJob(), job, threads)

    def __getstate__(self):  # subprocess handles and locks don't travel
        return {}

    def __setstate__(self, state):
        self._children = Children()


def run_submitit(plan: Plan, jobs: list[dict], say: Callable[[str], None]) -> tuple[list[dict], str | None]:
    """Submit the unfinished jobs through submitit (one Slurm job array) and wait for them,
    saying as each one ends. SIGINT/SIGTERM cancel the jobs (Slurm sends their trainings
    SIGTERM: they checkpoint); a rerun resumes them."""
    import submitit

    cluster, params = slurm_parameters(plan)
    threads = plan.slurm.get("cpus_per_task")  # else the job's CPU affinity (rehabgen.threads)
    results, n = [], len(jobs)
    todo = []
    for j in jobs:
        if job_state(j)["state"] == "finished":
            results.append({"name": j["name"], "values": j["values"], "status": "skipped"})
            _report(results[-1], len(results), n, say)
        else:
            todo.append(j)
    if not todo:
        return results, None
    try:
        ex = submitit.AutoExecutor(folder=plan.out / "slurm" / "%j", cluster=cluster)
        ex.update_parameters(**params)
    except (AssertionError, NameError, ValueError, TypeError, RuntimeError) as e:
        raise _bad(plan.path, f"[slurm]: {str(e).splitlines()[0]}") from None
    with ex.batch():
        subs = [(j, ex.submit(SweepJob(), j, threads)) for j in todo]
    ids = sorted({str(s.job_id).split("_")[0] for _, s in subs})
    say(f"submitted {len(subs)} job(s) to {cluster} ({', '.join(ids)}); logs in {plan.out / 'slurm'}")
    got: list[str] = []

    def on_signal(signum, frame):
        got.append(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        waiting = list(subs)
        while waiting and not got:
            for j, s in list(waiting):
                if got:
                    break
                if s.done():
                    waiting.remove((j, s))
                    try:
                        r = s.result()
                    except Exception as e:  # the job itself died (node failure, out of memory, ...)
                        r = {"name": j["name"], "values": j["values"], "status": "failed",
                             "message": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"}
                    results.append(r)
                    _report(r, len(results), n, say)
            if waiting and not got:
                time.sleep(2.0 if cluster == "slurm" else 0.3)
        if got:
            for _, s in waiting:
                s.cancel(check=False)
            say(f"{got[0]}: cancelled {len(waiting)} job(s); run the same command again to resume them")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return results, (got[0] if got else None)


# ------------------------------------------------------------------------------------------
# the sweep
# ------------------------------------------------------------------------------------------
def prepare_out(plan: Plan, force: bool) -> None:
    """The sweep folder: new, or an earlier run of the same plan (resumed), or replaced with
    --force. A folder holding something else, or a sweep whose fixed settings differ, is refused:
    finished jobs made with other settings would be mixed into the table."""
    out = plan.out
    if out.exists() and not out.is_dir():
        raise _bad(plan.path, f"[sweep] out: {out} is a file; give a folder")
    if force and out.is_dir():
        for name in SWEEP_OUTPUTS:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        return
    earlier = _read_json(out / "sweep.json")
    if earlier is None:
        if out.is_dir() and any(p.name != "sweep.lock" for p in out.iterdir()):
            raise PlanError(f"{out}: already holds files that are not a sweep (use --force to write into it, or "
                            "another [sweep] out)")
        return
    was, now = earlier.get("defining", {}), json.loads(json.dumps(plan.defining()))
    for table in ("train", "evaluate", "set"):
        a, b = was.get(table, {}), now.get(table, {})
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                raise _bad(plan.path, f"[{table}] {k} is {_show(b.get(k))} but the sweep in {out} ran with "
                                      f"{_show(a.get(k))}: its finished jobs would be mixed with new ones; use "
                                      "--force to start it over, or another [sweep] out")


def _show(v) -> str:
    return "unset" if v is None else json.dumps(v)


def _sweep_lock(plan: Plan):
    plan.out.mkdir(parents=True, exist_ok=True)
    f = _lock(plan.out / "sweep.lock")
    if f is None:
        holder = (plan.out / "sweep.lock").read_text().strip()
        raise PlanError(f"{plan.out}: another sweep is running in this folder ({holder}); wait for it or stop it")
    return f


def run_sweep(plan: Plan, say: Callable[[str], None] = print, force: bool = False) -> dict:
    """Run the plan's unfinished jobs, then write table.md. Returns {"results", "signal",
    "table", "counts"}."""
    if plan.out.exists() and not plan.out.is_dir():
        raise _bad(plan.path, f"[sweep] out: {plan.out} is a file; give a folder")
    lock = _sweep_lock(plan)  # first: --force must not delete a running sweep's files
    try:
        prepare_out(plan, force)
        import rehabgen

        rec = {**plan.to_dict(), "defining": plan.defining(), "rehabgen": rehabgen.__version__}
        if plan.executor == "local":
            threads, cores = threads_per_job(plan.parallel)
            rec["threads_per_job"] = threads
            over = f" (more jobs than the {cores} available core(s): they share cores)" if plan.parallel > cores else ""
            say(f"sweep: {len(plan.jobs)} job(s), local executor, {plan.parallel} at a time, {threads} thread(s) "
                f"each{over}; folder {plan.out}")
        else:
            say(f"sweep: {len(plan.jobs)} job(s), executor slurm; folder {plan.out}")
        atomic_write_bytes(plan.out / "sweep.json", (json.dumps(rec, indent=2, default=str) + "\n").encode())
        runner = run_local if plan.executor == "local" else run_submitit
        results, sig = runner(plan, plan.jobs, say)
        table = write_table(plan)
        counts = {s: sum(r["status"] == s for r in results) for s in ("finished", "skipped", "failed", "busy",
                                                                     "interrupted")}
        return {"results": results, "signal": sig, "table": table, "counts": counts}
    finally:
        lock.close()


def write_table(plan: Plan) -> Path:
    """SWEEP_OUT/table.md: every job with its grid values and state, then the finished jobs'
    metrics side by side (the table of `rehabgen compare`)."""
    from rehabgen.data import DataError
    from rehabgen.evaluate import load_metrics
    from rehabgen.report import compare_table

    axes = ["data", "family", "seed", *(["fold"] if plan.grid["fold"] != [None] else [])]
    for j in plan.jobs:
        axes += [k for k in j["values"] if k not in axes]
    rows = [f"| job | {' | '.join(axes)} | state | trained steps |", "|" + "---|" * (len(axes) + 3)]
    results, names = [], []
    for j in plan.jobs:
        st = job_state(j)
        rec = _read_json(Path(j["dir"]) / "job.json") or {}
        state = st["state"] if st["state"] == "finished" else rec.get("status", "not started")
        summary = _read_json(Path(j["dir"]) / "run" / "train_summary.json") or {}
        cells = [str(j["values"].get(a, "")) for a in axes]
        rows.append(f"| {j['name']} | {' | '.join(cells)} | {state} | {summary.get('steps', '')} |")
        if st["state"] == "finished":
            try:
                results.append(load_metrics(Path(j["dir"]) / "report"))
                names.append(j["name"])
            except DataError:
                pass
    text = [f"# Sweep {plan.path.name}", "", f"{len(results)} of {len(plan.jobs)} job(s) finished; folder "
            f"`{plan.out}`; job folders in `jobs/`.", "", *rows, ""]
    if results:
        text += ["## Metrics (generated data; as `rehabgen compare`)", "", compare_table(results, names), ""]
    out = plan.out / "table.md"
    atomic_write_bytes(out, "\n".join(text).encode())
    return out
