"""Training loop for every family: accelerate for devices and data parallelism, atomic
checkpoints (safetensors + JSON, optimizer and RNG state included) and exact resume.

Batches are drawn from the in-memory arrays with a generator seeded by (seed, step, rank), so
a resumed run sees the same batches it would have seen without the interruption, and each
data-parallel process sees its own part of the global batch. Ctrl-C or SIGTERM end the loop
after the current step with a checkpoint at that step, so no work is lost and `--resume`
continues bit for bit (on the same machine and thread count).
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from rehabgen import tracking
from rehabgen.io import atomic_write_bytes, replace_dir
from rehabgen.models.checkpoint import read_checkpoint
from rehabgen.models.spec import ModelError, TrainArrays

CKPT = "checkpoint"


def cosine_warmup(step: int, total: int, warmup: int = 100) -> float:
    """Learning-rate factor: linear warm-up, then cosine down to 0.1 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def _batch(arrays: dict[str, torch.Tensor], n: int, bs: int, seed: int, step: int, rank: int, world: int):
    """The step's batch, drawn on the data's device (on a GPU, indices made on the host would be
    a host-to-device copy, a sync, every step): the same batches for a seed on a given device."""
    dev = next(iter(arrays.values())).device
    g = torch.Generator(device=dev).manual_seed(seed * 1_000_003 + step)
    if n >= bs * world:
        idx = torch.randperm(n, generator=g, device=dev)[rank * bs:(rank + 1) * bs]
    else:  # tiny data: sample with replacement, each rank its own draw
        idx = torch.randint(0, n, (world, bs), generator=g, device=dev)[rank]
    return {k: v[idx] for k, v in arrays.items()}


def _tensors(a: TrainArrays) -> dict[str, torch.Tensor]:
    extra = {} if a.text is None else {"text": torch.from_numpy(a.text).float(),
                                        "text_score": torch.from_numpy(a.text_score).float()}
    return {**extra,
        "z": torch.from_numpy(a.z).float(),
        "mask": torch.from_numpy(a.mask),
        "observed": torch.from_numpy(a.observed),
        "lengths": torch.from_numpy(a.lengths).long(),
        "exercise": torch.from_numpy(a.exercise).long(),
        "score": torch.from_numpy(a.score).float(),
    }


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def _flatten_optimizer(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, plain = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{name}.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                plain["state"].setdefault(str(pid), {})[k] = v
    return tensors, plain


def _unflatten_optimizer(name: str, tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {}
    pre = f"optim.{name}."
    for key, v in tensors.items():
        if key.startswith(pre):
            pid, k = key[len(pre):].split(".", 1)
            state.setdefault(int(pid), {})[k] = v
    for pid, st in plain.get("state", {}).items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(run_dir: Path, model, optimizers, lr_scheds, step: int, extra: dict) -> Path:
    """Write RUN_DIR/checkpoint atomically: a model folder plus optimizer/scheduler/RNG state."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{CKPT}."))
    try:
        model.step = step
        model.save(tmp / "model")
        tensors, plain = {}, {"optimizers": {}, "lr_schedulers": {}}
        for k, opt in optimizers.items():
            t, p = _flatten_optimizer(k, opt)
            tensors.update(t)
            plain["optimizers"][k] = p
        for k, s in lr_scheds.items():
            plain["lr_schedulers"][k] = {kk: vv for kk, vv in s.state_dict().items() if kk != "lr_lambdas"}
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, tmp / "trainer.safetensors")
        (tmp / "trainer.json").write_text(json.dumps({"step": step, **plain, **extra}, indent=1, default=str))
        replace_dir(tmp, run_dir / CKPT)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return run_dir / CKPT


def load_checkpoint(run_dir: Path, model, optimizers, lr_scheds) -> int:
    from safetensors.torch import load_file

    ck = Path(run_dir) / CKPT
    meta, weights = read_checkpoint(ck / "model")
    if meta["family"] != model.family:
        raise ModelError(f"{ck}: checkpoint of a {meta['family']!r} model, this run trains {model.family!r}")
    model.load_tensors(weights, source=str(ck))
    try:
        tensors = load_file(ck / "trainer.safetensors")
        plain = json.loads((ck / "trainer.json").read_text())
    except Exception as e:  # noqa: BLE001 - any corruption ends up as one clear message
        raise ModelError(f"{ck}: trainer state unreadable ({type(e).__name__}: {e})") from None
    for k, opt in optimizers.items():
        opt.load_state_dict(_unflatten_optimizer(k, tensors, plain["optimizers"][k]))
    for k, s in lr_scheds.items():
        s.load_state_dict({**s.state_dict(), **plain["lr_schedulers"][k]})
    torch.set_rng_state(tensors["rng.torch"])
    return int(plain["step"])


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
@contextmanager
def _stop_on_signals():
    """While training, SIGINT (Ctrl-C) and SIGTERM ask the loop to stop after the current step,
    so that it can write a checkpoint and the log first; a second Ctrl-C stops at once (every
    file is written atomically, so nothing is left half-written). Yields {"signal": name or None}."""
    state: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield state
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if state["signal"] == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt
        state["signal"] = state["signal"] or name

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(model, arrays: TrainArrays, steps: int, seed: int = 0, out_dir: str | Path | None = None,
          resume: bool = False, ckpt_every: int = 200, log_every: int = 10, progress: bool = True,
          max_minutes: float | None = None, mixed_precision: str = "no", accelerator=None,
          stop_at: int | None = None, log_with: str = "csv", device: str = "auto") -> dict:
    """Train `model` in place for `steps` optimizer steps (or until `max_minutes`, or until step
    `stop_at` of a `steps`-long schedule: the learning-rate schedule always spans `steps`).
    SIGINT/SIGTERM stop it after the current step, checkpointed, as the time limit does.
    `log_with` also sends the logged scalars to a tracker (`rehabgen.tracking`) in out_dir.
    `device` ('auto', 'cpu', 'cuda', 'cuda:N') when no accelerator is given. On a GPU the data
    stays on the device and nothing waits for it between log steps: the losses are read back
    every `log_every` steps only.

    Returns a summary: steps done and planned, why it stopped short (if it did), first/last
    smoothed loss, seconds, steps/s.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if accelerator is not None and log_with != "csv":
        raise ModelError(f"log_with={log_with!r}: give the trackers to your own Accelerator (log_with=...)")
    if accelerator is None:
        from rehabgen.devices import resolve_device

        dev = resolve_device(device)
        if dev.type == "cuda" and dev.index is not None:
            torch.cuda.set_device(dev)  # accelerate's single process uses the current CUDA device
        accelerator = Accelerator(cpu=dev.type == "cpu", mixed_precision=mixed_precision,
                                  **tracking.accelerator_kwargs(log_with, out_dir))
    acc = accelerator
    rank, world = acc.process_index, acc.num_processes
    set_seed(seed + rank)
    out_dir = Path(out_dir) if out_dir else None
    if out_dir and acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)

    data = {k: v.to(acc.device) for k, v in _tensors(arrays).items()}
    n = arrays.z.shape[0]
    bs = int(model.hparams["batch_size"])
    for net in model.nets.values():
        net.to(acc.device)
    optimizers = model.make_optimizers()
    # the schedule's length: `steps`, or what fits in `max_minutes` once the speed is known
    horizon = [steps]
    lr_scheds = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: cosine_warmup(s, horizon[0], min(100, steps // 10 + 1)))
                 for k, o in optimizers.items()}
    start = 0
    if resume:
        if out_dir is None or not (out_dir / CKPT).is_dir():
            raise ModelError(f"{out_dir}: nothing to resume (no {CKPT}/ folder)")
        start = load_checkpoint(out_dir, model, optimizers, lr_scheds)  # restores rank 0's RNG: exact resume
        if world > 1:
            torch.manual_seed(seed * 7919 + start + rank)  # other ranks: their own reproducible noise
    names = list(model.nets)
    prepared = acc.prepare(*[model.nets[k] for k in names], *[optimizers[k] for k in optimizers])
    if not isinstance(prepared, (list, tuple)):
        prepared = [prepared]
    nets = dict(zip(names, prepared[: len(names)]))
    opts = dict(zip(list(optimizers), prepared[len(names):]))
    for net in nets.values():
        net.train()

    log_path = out_dir / "log.csv" if out_dir else None
    rows: list[dict] = []
    if log_path and acc.is_main_process and resume and log_path.exists():
        with log_path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start]
    with _stop_on_signals() as sig:  # from here on, a signal ends the loop after a step, checkpointed
        bar = None
        if progress and acc.is_main_process:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=start, desc=f"train {model.family}", unit="step", dynamic_ncols=True,
                       mininterval=1.0)
        tracking.start(acc, log_with, out_dir, start)  # a resumed run goes on at its step
        rate = tracking.StepRate(start)
        t0 = time.time()
        ema = float(rows[-1]["loss_ema"]) if rows else None  # the smoothed loss goes on across a resume
        first = None
        done, reason = start, None
        for step in range(start, steps):
            batch = _batch(data, n, bs, seed, step, rank, world)
            logs = model.train_step(nets, opts, batch, acc)
            model.step = step + 1
            model.ema_update({k: acc.unwrap_model(v) for k, v in nets.items()})
            for s in lr_scheds.values():
                s.step()
            loss = torch.as_tensor(logs["loss"]).detach().double()  # stays on the device: no sync here
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            if first is None:
                first = loss
            done = step + 1
            reason = _stop_reason(sig["signal"], acc, world, max_minutes, time.time() - t0, stop_at, done)
            if acc.is_main_process:
                if done % log_every == 0 or done == steps or reason:  # the log ends where training ends
                    rows.append({"step": done, "loss_ema": round(float(ema), 6),
                                 **{k: round(float(v), 6) for k, v in logs.items()},
                                 "lr": optimizers[next(iter(optimizers))].param_groups[0]["lr"],
                                 "seconds": round(time.time() - t0, 2)})
                    acc.log(tracking.train_scalars(rows[-1], rate(done)), step=done)
                    if bar:
                        bar.set_postfix(loss=f"{rows[-1]['loss_ema']:.4f}")
                if bar:
                    bar.update(1)
            if max_minutes is not None and done - start == 20:
                speed = 20 / max(time.time() - t0, 1e-6)
                horizon[0] = min(steps, start + int(speed * (60 * max_minutes - (time.time() - t0))) + 20)
                if bar:
                    bar.total = max(horizon[0], done)  # the bar's end is what the time limit allows
                    bar.refresh()
            if out_dir and (done % ckpt_every == 0 or done == steps or reason):
                acc.wait_for_everyone()
                if acc.is_main_process:
                    _unwrap_into(model, nets, acc)
                    save_checkpoint(out_dir, model, optimizers, lr_scheds, done, {"seed": seed, "world_size": world})
                    _write_log(log_path, rows)
            if reason:
                break
    if bar:
        bar.close()
    if log_with != "csv":
        tracking.finish(acc)
    _unwrap_into(model, nets, acc)
    model.step = done
    for net in model.nets.values():
        net.eval()
    if acc.is_main_process and done > start:
        model.after_training(arrays, seed)  # settings fitted to the training data, before the save
    secs = time.time() - t0
    if out_dir and acc.is_main_process and done > start:
        model.save(out_dir / "model")
        _write_log(log_path, rows)
    return {"steps": done, "planned_steps": steps, "stopped_early": done < steps, "stop_reason": reason,
            "resumed_from": start, "first_loss": None if first is None else float(first),
            "final_loss_ema": None if ema is None else float(ema), "seconds": secs,
            "steps_per_s": (done - start) / secs if secs > 0 else 0.0, "world_size": world,
            "threads": torch.get_num_threads()}


def _stop_reason(signame: str | None, acc, world: int, max_minutes: float | None, elapsed: float,
                 stop_at: int | None, done: int) -> str | None:
    """Why the loop stops after this step, or None. The processes of a data-parallel run stop
    together: one that got a signal (or ran out of time) stops them all at the same step."""
    reason = None
    if signame:
        reason = f"interrupted ({signame})"
    elif max_minutes is not None and elapsed > 60 * max_minutes:
        reason = f"time limit (--minutes {max_minutes:g})"
    elif stop_at is not None and done >= stop_at:
        reason = f"stop_at={stop_at}"
    if world > 1:
        anyone = acc.reduce(torch.tensor([float(reason is not None)], device=acc.device), reduction="sum").item() > 0
        reason = reason or ("stopped with another process" if anyone else None)
    return reason


def _unwrap_into(model, nets: dict, acc) -> None:
    model.nets = {k: acc.unwrap_model(v) for k, v in nets.items()}


def _write_log(path: Path | None, rows: list[dict]) -> None:
    if path is None or not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())
