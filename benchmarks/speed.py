"""Sampling and training speed per model and sampler, with the quality beside it (not a test).

    python benchmarks/speed.py --run diffusion=RUN --run distilled=RUN_FAST [--run gan=RUN ...]
        [--device cpu|cuda] [--threads 2] [--n 1,256] [--ddpm-n 16] [--precisions fp32,bf16] [--train-steps 40]
        [--quality DATA --repeats 3] [--out DIR]

For every run it times sampling at each n (sequences/s; n=1 is the latency) for each sampler
that applies: a diffusion run with DDPM-1000 (the reference of the speed-up column, measured in
the same invocation at `--ddpm-n` sequences), DPM-Solver++ 20/8/4, and the run's own default
(a distilled run's few-step student; a GAN/VAE's single pass). Every configuration runs in its
own process, so its peak resident memory (CPU) or peak allocated memory (CUDA) is its own.
Each configuration runs at every `--precisions` (the network's
arithmetic; DDPM-1000 in fp32 only). `--train-steps` also times that many training steps of a fresh model of each run's family and
config on its data (steps/s after a warm-up). `--quality DATA` evaluates each configuration
(`rehabgen.evaluate.evaluate_run`, no downstream study) and prints FID, coverage, score MAE and
the kinematic distances next to the real reference. Writes results.json and table.md in --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import torch
from rehabgen.threads import use_threads
use_threads(int(sys.argv[6]))
from rehabgen.models import SamplerOptions
from rehabgen.runs import load_model
run, sampler, steps, n, device = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]) or None, int(sys.argv[4]), sys.argv[5]
m = load_model(run, device, sys.argv[7])
opts = SamplerOptions(sampler=sampler, steps=steps) if m.capabilities.sampler else None
ex = m.spec.exercises[0]
L = int(sorted(m.spec.default_length.values())[len(m.spec.default_length) // 2])
sync = torch.cuda.synchronize if m.device.type == "cuda" else (lambda: None)
m.sample(ex, None, length=L, n=min(n, 4), seed=0, batch_size=256, options=opts)  # warm-up
if m.device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
times = []
for r in range(3 if n <= 64 else 2):
    sync(); t = time.perf_counter()
    m.sample(ex, None, length=L, n=n, seed=r, batch_size=256, options=opts)
    sync(); times.append(time.perf_counter() - t)
peak = (torch.cuda.max_memory_allocated() / 2**20 if m.device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({"seconds": min(times), "peak_mb": peak, "length": L, "device": str(m.device)}))
"""

TRAIN_CHILD = r"""
import json, sys, torch
from rehabgen.threads import use_threads
use_threads(int(sys.argv[4]))
from rehabgen.config import RunConfig
from rehabgen.data import load_dataset
from rehabgen.models import get_family
from rehabgen.runs import load_split
from rehabgen.train import train
from rehabgen.devices import resolve_device
run, steps, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = json.load(open(f"{run}/config.json"))
rc = RunConfig.from_dict(cfg)
tr, _ = load_split(run, load_dataset(cfg["data"]))
hp = {k: v for k, v in cfg["hparams"].items() if k != "student_timesteps"}
model, arrays = get_family(cfg["model"]).from_dataset(tr, rc.preprocess, max_len=rc.max_len, **hp)
from accelerate import Accelerator
acc = Accelerator(cpu=resolve_device(device).type == "cpu")
train(model, arrays, steps=5, seed=0, progress=False, accelerator=acc)  # warm-up
s = train(model, arrays, steps=steps, seed=0, progress=False, accelerator=acc)
print(json.dumps({"steps_per_s": s["steps_per_s"], "batch": model.hparams["batch_size"],
                  "samples_per_s": s["steps_per_s"] * model.hparams["batch_size"], "params": model.n_parameters()}))
"""


def child(code: str, args: list[str]) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"benchmark child failed ({' '.join(args)}):\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def configs(run: Path) -> list[tuple[str, str, int]]:
    """(name, sampler, steps) to time for a run: '' and 0 mean the model's own default."""
    meta = json.loads((run / "model" / "model.json").read_text())
    h = meta["hparams"]
    if meta["family"] != "diffusion":
        return [("one pass", "", 0)]
    if h.get("student_timesteps"):
        return [(f"distilled {len(h['student_timesteps'])}", "distilled", len(h["student_timesteps"]))]
    return [("DDPM 1000", "ddpm", 1000), ("DPM++ 20", "dpm", 20), ("DPM++ 8", "dpm", 8), ("DPM++ 4", "dpm", 4)]


def quality(run: Path, data: str, sampler: str, steps: int, repeats: int, device: str) -> dict:
    from rehabgen.evaluate import evaluate_run
    from rehabgen.models import SamplerOptions

    out = Path(f"/tmp/rehabgen-speed-quality/{run.name}-{sampler or 'default'}{steps or ''}")
    res = evaluate_run(run, data, out, repeats=repeats, downstream=False, progress=False, device=device,
                       sampler=SamplerOptions(sampler=sampler or None, steps=steps or None))
    m = res["metrics"]
    keep = ("fid", "coverage", "score_mae", "velocity_w", "acceleration_w", "jerk_w")
    return {k: {"mean": m[k]["generated"]["mean"], "std": m[k]["generated"]["std"],
                "real": m[k]["real_reference"]["mean"]} for k in keep if k in m}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (repeatable)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", default="1,256", help="comma-separated numbers of sequences")
    ap.add_argument("--ddpm-n", type=int, default=16, help="sequences for DDPM-1000 (it is slow)")
    ap.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, fp16 (CUDA)")
    ap.add_argument("--train-steps", type=int, default=0, help="also time this many training steps per run")
    ap.add_argument("--quality", default=None, help="data folder: also evaluate each configuration")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("speed-results"))
    args = ap.parse_args()
    ns = [int(v) for v in args.n.split(",")]
    runs = [(r.split("=", 1)[0], Path(r.split("=", 1)[1])) for r in args.run]
    import torch

    machine = {"date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
               "cores": os.cpu_count(), "threads": args.threads, "device": args.device, "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else None}
    print(json.dumps(machine))
    rows, ddpm = [], {}
    for name, run in runs:
        for label, sampler, steps in configs(run):
            for prec in (["fp32"] if sampler == "ddpm" else args.precisions.split(",")):
                for n in ([args.ddpm_n] if sampler == "ddpm" else ns):
                    r = child(CHILD, [str(run), sampler, str(steps), str(n), args.device, str(args.threads), prec])
                    lab = label if prec == "fp32" else f"{label} {prec}"
                    row = {"run": name, "sampler": lab, "precision": prec, "n": n, "seq_per_s": n / r["seconds"], **r}
                    if sampler == "ddpm":
                        ddpm[name] = row["seq_per_s"]
                    rows.append(row)
                    print(f"{name:<12} {lab:<16} n={n:<5} {row['seq_per_s']:>9.1f} seq/s  {r['seconds']:.3f} s  "
                          f"peak {r['peak_mb']:.0f} MB", flush=True)
    first = next(iter(ddpm.values()), None)  # runs without their own DDPM row (students, GANs): the first's
    for row in rows:
        ref = ddpm.get(row["run"], first)
        row["speedup_vs_ddpm1000"] = row["seq_per_s"] / ref if ref else None
    train_rows = []
    if args.train_steps:
        for name, run in runs:
            cfg = json.loads((run / "config.json").read_text())
            if cfg.get("command") != "train":
                continue
            t = child(TRAIN_CHILD, [str(run), str(args.train_steps), args.device, str(args.threads)])
            train_rows.append({"run": name, **t})
            print(f"train {name:<12} {t['steps_per_s']:.2f} steps/s, {t['samples_per_s']:.0f} samples/s "
                  f"(batch {t['batch']}, {t['params']:,} parameters)", flush=True)
    qual = {}
    if args.quality:
        for name, run in runs:
            for label, sampler, steps in configs(run):
                if sampler != "ddpm":
                    qual[f"{name} {label}"] = quality(run, args.quality, sampler, steps, args.repeats, args.device)
                    print(f"quality {name} {label}: {json.dumps(qual[f'{name} {label}'])}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": machine, "sampling": rows, "training": train_rows,
                                                       "quality": qual}, indent=1))
    lines = [f"{machine['date']}, {machine['cores']} cores, {args.threads} threads, device {args.device}"
             f"{' (' + machine['gpu'] + ')' if machine['gpu'] else ''}, torch {machine['torch']}", "",
             "| run | sampler | n | seq/s | s | peak MB | vs DDPM-1000 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        sp = f"{r['speedup_vs_ddpm1000']:.0f}x" if r["speedup_vs_ddpm1000"] else "-"
        lines.append(f"| {r['run']} | {r['sampler']} | {r['n']} | {r['seq_per_s']:.1f} | {r['seconds']:.3f} | "
                     f"{r['peak_mb']:.0f} | {sp} |")
    if qual:
        keys = list(next(iter(qual.values())))
        lines += ["", "| configuration | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for k, q in qual.items():
            lines.append(f"| {k} | " + " | ".join(f"{q[m]['mean']:.3f} ± {q[m]['std']:.3f}" for m in keys) + " |")
        first = next(iter(qual.values()))
        lines.append("| real reference | " + " | ".join(f"{first[m]['real']:.3f}" for m in keys) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
