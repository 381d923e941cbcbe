"""Speed and memory of the model families on this machine (not a test: prints a table).

    python benchmarks/bench_models.py [--quick]

Reports training steps/s per family, diffusion sampling sequences/s versus solver steps
(DPM-Solver++ 10/20/50 vs DDPM 1000) with the speed-up ratio, and peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import toy_dataset  # noqa: E402

from rehabgen.models import families, get_family  # noqa: E402
from rehabgen.preprocess import PreprocessConfig  # noqa: E402
from rehabgen.train import train  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    ap.add_argument("--length", type=int, default=100, help="frames per sequence")
    args = ap.parse_args()
    torch.manual_seed(0)
    ds = toy_dataset(n=64, T=2 * args.length)
    pcfg = PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None)
    steps = 10 if args.quick else 40
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, sequence length {args.length} frames\n")
    print(f"{'family':<10} {'params':>9} {'train steps/s':>14} {'batch':>6}")
    models = {}
    for fam in families():
        m, arr = get_family(fam).from_dataset(ds, pcfg, max_len=args.length)
        train(m, arr, steps=3, seed=0, progress=False)  # warm-up
        s = train(m, arr, steps=steps, seed=0, progress=False)
        models[fam] = m
        print(f"{fam:<10} {m.n_parameters():>9,} {s['steps_per_s']:>14.2f} {m.hparams['batch_size']:>6}")
    m = models["diffusion"]
    n = 8
    print(f"\ndiffusion sampling, {n} sequences x {args.length} frames, guidance on")
    print(f"{'sampler':<8} {'steps':>6} {'seconds':>8} {'seq/s':>8} {'speed-up vs DDPM-1000':>22}")
    plan = [("dpm", 10), ("dpm", 20), ("dpm", 50), ("ddim", 50), ("ddpm", 1000)]
    if args.quick:
        plan = [("dpm", 10), ("dpm", 20), ("ddpm", 200)]
    times = {}
    for sampler, k in plan:
        t = time.perf_counter()
        m.sample("Es1", 40.0, n=n, length=args.length, seed=0, sampler=sampler, steps=k)
        times[(sampler, k)] = time.perf_counter() - t
    ref_key = max(times, key=lambda kk: kk[1])
    ref = times[ref_key] * (1000 / ref_key[1])  # DDPM-1000 time (extrapolated in --quick mode)
    for (sampler, k), t in times.items():
        print(f"{sampler:<8} {k:>6} {t:>8.2f} {n / t:>8.2f} {ref / t:>21.1f}x")
    for fam in ("vae", "gan"):
        if fam in models:
            t = time.perf_counter()
            models[fam].sample("Es1", 40.0, n=n, length=args.length, seed=0)
            dt = time.perf_counter() - t
            print(f"{fam:<8} {'1':>6} {dt:>8.3f} {n / dt:>8.1f} {ref / dt:>21.1f}x")
    print(f"\npeak resident memory: {peak_mb():.0f} MB")
    print(f"ratio DDPM-1000 / DPM-20: {ref / times[('dpm', 20)]:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
