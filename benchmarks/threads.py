"""Two trainings side by side: does each keep a fair share of one alone? (not a test: prints a table)

    python benchmarks/threads.py [--steps 300] [--cores 0,1] [--policies default,one,torch] [--demo]

For each thread policy it trains the default diffusion model on built-in data (`rehabgen data
synth --subjects 20 --seed 0`) once alone, then twice at the same time, and reads each run's
training speed (steps/s of the loop, start-up excluded) from its train_summary.json:

- default: `rehabgen train` as shipped (no --threads, no OMP_* variables): the cores available,
  idle threads sleeping (OMP_WAIT_POLICY=PASSIVE);
- one:     `rehabgen train --threads 1`;
- torch:   the library called directly (`rehabgen.runs.train_run`), which leaves torch's own
           defaults (one spinning thread per core): the behaviour before the thread policy.

Ratio = mean steps/s of the pair / steps/s alone, same policy; issue 13 asks >= 0.40 for the
default (it was 0.07). `--cores 0,1` pins every run to those cores (a 2-core machine on a bigger
one). `--demo` then runs `rehabgen demo --no-evaluate` beside a competing training and prints the
samples' range of motion against the real data's (close to 1: they move).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TORCH_DEFAULTS = """
import sys
from rehabgen.config import RunConfig
from rehabgen.runs import train_run
train_run(RunConfig(data=sys.argv[1], steps=int(sys.argv[3])), sys.argv[2], progress=False)
"""


def clean_env() -> dict:
    """The environment of a new user: no thread settings inherited from this shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "GOMP_"))}


def command(policy: str, data: Path, out: Path, steps: int) -> list[str]:
    if policy == "torch":
        return [sys.executable, "-c", TORCH_DEFAULTS, str(data), str(out), str(steps)]
    extra = ["--threads", "1"] if policy == "one" else []
    return [sys.executable, "-m", "rehabgen", "train", "--data", str(data), "--out", str(out), "--steps", str(steps),
            "--ckpt-every", str(10 * steps), *extra]


def launch(cmd: list[str], cores: set[int] | None, log: Path) -> subprocess.Popen:
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    return subprocess.Popen(cmd, env=clean_env(), stdout=log.open("w"), stderr=subprocess.STDOUT, preexec_fn=pin)


def speeds(policy: str, data: Path, work: Path, steps: int, n: int, cores: set[int] | None) -> list[float]:
    """steps/s of each of `n` trainings started together."""
    outs = [work / f"{policy}-{n}-{i}" for i in range(n)]
    procs = [launch(command(policy, data, o, steps), cores, o.with_suffix(".log")) for o in outs]
    for p, o in zip(procs, outs):
        if p.wait() != 0:
            sys.exit(f"{' '.join(p.args[:4])} failed; see {o.with_suffix('.log')}")
    return [json.loads((o / "train_summary.json").read_text())["steps_per_s"] for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps per run")
    ap.add_argument("--cores", default="", help="pin every run to these cores, e.g. 0,1 [default: no pinning]")
    ap.add_argument("--policies", default="default,one,torch")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rehabgen_threads_bench"))
    ap.add_argument("--demo", action="store_true", help="also run the demo beside a competing training")
    args = ap.parse_args()
    cores = {int(c) for c in args.cores.split(",") if c.strip()} or None
    n_cores = len(cores or os.sched_getaffinity(0))
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "data"
    if not (data / "SYNTH_INFO.json").is_file():
        subprocess.run([sys.executable, "-m", "rehabgen", "data", "synth", str(data), "--subjects", "20", "--force"],
                       check=True, env=clean_env())
    print(f"{n_cores} core(s){' (pinned ' + args.cores + ')' if cores else ''}, {args.steps} steps per run, "
          f"default diffusion model, built-in data (20 subjects)\n")
    print(f"{'policy':<8} {'alone steps/s':>14} {'pair steps/s (each)':>22} {'pair/alone':>11}")
    results = {}
    for policy in args.policies.split(","):
        for old in args.work.glob(f"{policy}-*"):
            subprocess.run(["rm", "-rf", str(old)], check=True)
        alone = speeds(policy, data, args.work, args.steps, 1, cores)[0]
        pair = speeds(policy, data, args.work, args.steps, 2, cores)
        ratio = sum(pair) / len(pair) / alone
        results[policy] = (alone, pair, ratio)
        print(f"{policy:<8} {alone:>14.2f} {' / '.join(f'{p:.2f}' for p in pair):>22} {ratio:>11.2f}")
    if "default" in results:
        alone, pair, ratio = results["default"]
        print(f"\ndefault policy, two side by side: each keeps {ratio:.0%} of one alone "
              f"({'meets' if ratio >= 0.4 else 'FAILS'} the >= 40 % of issue 13)")
        if "torch" in results:
            print(f"vs torch's own defaults: pair {sum(pair) / 2:.2f} vs {sum(results['torch'][1]) / 2:.2f} steps/s "
                  f"each ({sum(pair) / max(sum(results['torch'][1]), 1e-9):.1f}x)")
    if args.demo:
        demo = args.work / "demo"
        subprocess.run(["rm", "-rf", str(demo)], check=True)
        rival = launch(command("default", data, args.work / "rival", 100 * args.steps), cores,
                       args.work / "rival.log")
        t = time.time()
        d = subprocess.run([sys.executable, "-m", "rehabgen", "demo", "--out", str(demo), "--no-evaluate"],
                           env=clean_env(), preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
        rival.terminate()
        rival.wait()
        if d.returncode != 0:
            sys.exit("the demo failed")
        cfg = json.loads((demo / "demo_config.json").read_text())
        print(f"\ndemo beside a competing training: {time.time() - t:.0f} s, {cfg['steps']} steps, samples' range of "
              f"motion {cfg['range_of_motion_vs_real']:.2f}x the real data's")


if __name__ == "__main__":
    main()
