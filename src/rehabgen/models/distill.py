"""Few-step sampling by distillation: a student that samples in K network evaluations what the
teacher samples in S guided solver steps (2 S evaluations with classifier-free guidance).

Why this design. The teacher's sampler (DPM-Solver++, S = 20, its guidance) is a deterministic
map from noise to motion. We record its trajectories: the state x at the S solver times and the
final motion. The student (the teacher's network, copied) samples with K plain DDIM jumps over K
of those times, one network evaluation each and no guidance; it is trained so that each of its
jumps lands where the teacher's trajectory was at the next of its times (the target of
progressive distillation, Salimans & Ho 2022, over S/K teacher steps at once instead of 2), and
the last one on the teacher's final motion (the regression with the teacher's own velocity and
acceleration terms, which keep the few jumps from leaving jitter). The K times are dense at low
noise by default ("late": 999, 549, 250, 50 of DPM-Solver++ 20 for K = 4), so the last jump, the
one whose error is left in the motion, starts from little noise: on built-in data jerk W 0.81
against 1.46 with evenly spread times (teacher 1.09). Guidance is baked in (Meng et al. 2023): the student
learns the guided trajectories of every condition it may be asked for, including free score and
free exercise. Distilling a few minutes on a CPU is enough: the student starts as the teacher,
and the targets are exact (no noise in the regression).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from rehabgen.models.base import GenerativeModel
from rehabgen.models.layers import acceleration_loss, velocity_loss
from rehabgen.models.options import SamplerOptions
from rehabgen.models.spec import ModelError, TrainArrays


@dataclass
class Chunk:
    """Teacher trajectories of one length: states (K+1, B, T, D) at the student's K times and
    the end, and the conditions they were sampled under."""

    states: torch.Tensor
    exercise: torch.Tensor  # (B,) long; len(exercises) = free
    score: torch.Tensor  # (B,) unit score, NaN = free
    text: torch.Tensor | None  # (B, D_text) or None


GRID_POWER = {"even": 1.0, "late": 2.0}  # index = S (1 - (1 - i/K)^power)
GRIDS = tuple(GRID_POWER)


def student_grid(teacher_times: list[int], k: int, spacing: str = "late") -> tuple[list[int], list[int]]:
    """The student's K times, a subset of the teacher's S, and their indices. "even" spreads
    them evenly; "late" puts them densely near the end (index S (1 - (1 - i/K)^2)), so the last
    jump to clean motion starts from little noise."""
    s = len(teacher_times)
    if not 1 <= k <= s:
        raise ModelError(f"--student-steps must be between 1 and the teacher's {s} solver steps, got {k}")
    if spacing not in GRIDS:
        raise ModelError(f"student grid must be one of {', '.join(GRIDS)}, got {spacing!r}")
    p = GRID_POWER[spacing]
    idx = [int(round(s * (1 - (1 - i / k) ** p))) for i in range(k)]
    for i in range(1, k):  # strictly increasing and inside the teacher's steps
        idx[i] = max(idx[i], idx[i - 1] + 1)
    for i in range(k - 1, -1, -1):
        idx[i] = min(idx[i], s - (k - i))
    return [int(teacher_times[i]) for i in idx], idx


def _branches(model: GenerativeModel) -> int:
    """Network evaluations per solver step: 1 unguided, 2 with guidance, 3 with a separate score scale."""
    h = model.hparams
    if h["score_guidance"] is not None and h["score_guidance"] != h["guidance"]:
        return 3
    plain = float(h["guidance"]) == 1.0 and all(h.get(k) in (None, 1.0) for k in ("drift_guidance", "repetition_guidance"))
    return 1 if plain else 2


def _conditions(model: GenerativeModel, arrays: TrainArrays, B: int, rng: np.random.Generator):
    """Conditions of the kind users ask for: exercises evenly, scores from the training range of
    the exercise (half the real scores, half uniform: the score-balanced use), some left free."""
    spec, h = model.spec, model.hparams
    E = len(spec.exercises)
    ex = rng.integers(0, E, B)
    sc = np.empty(B, np.float32)
    text = None
    for i, e in enumerate(ex):
        pool = arrays.score[(arrays.exercise == e) & np.isfinite(arrays.score)]
        if len(pool) == 0:
            sc[i] = np.nan
        elif rng.random() < 0.5:
            sc[i] = rng.choice(pool)
        else:
            sc[i] = rng.uniform(pool.min(), pool.max())
    sc[rng.random(B) < h["p_drop_score"]] = np.nan
    free = rng.random(B) < h["p_uncond"] / 2  # a few fully free samples (the unconditional branch)
    if arrays.text is not None:
        rows = np.array([rng.choice(np.flatnonzero(arrays.exercise == e)) if (arrays.exercise == e).any()
                         else rng.integers(0, len(arrays.exercise)) for e in ex])
        kk = rng.integers(0, arrays.text.shape[1], B)
        text = arrays.text[rows, kk].astype(np.float32)
        text_only = rng.random(B) < h["p_text_only"]
        ex = np.where(text_only, E, ex)
        sc = np.where(text_only, arrays.text_score[rows, kk], sc).astype(np.float32)
        text = torch.from_numpy(text)
    ex = np.where(free, E, ex)
    sc = np.where(free, np.nan, sc).astype(np.float32)
    return torch.from_numpy(ex).long(), torch.from_numpy(sc), text


def teacher_trajectories(teacher: GenerativeModel, arrays: TrainArrays, n: int, batch: int, seed: int,
                         options: SamplerOptions, keep: list[int], progress: bool = True) -> list[Chunk]:
    """`n` guided teacher trajectories in chunks of `batch`, their states at the solver-step
    indices `keep` (the last index, S, is the final motion). One length per chunk: mostly each
    exercise's typical length, a third of them any length the model makes, so the student also
    serves `--length` and the downstream study's common length."""
    spec = teacher.spec
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    lengths = sorted(spec.default_length.values())
    lo = max(4, min(lengths) // 2)
    chunks = []
    dev = teacher.device
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="teacher trajectories", unit="seq", mininterval=1.0)
    made = 0
    with teacher.inference():
        while made < n:
            B = min(batch, n - made)
            made += B
            ex, sc, text = _conditions(teacher, arrays, B, rng)
            T = int(rng.choice(lengths)) if rng.random() < 2 / 3 else int(rng.integers(lo, spec.max_len + 1))
            trace: list[torch.Tensor] = []
            teacher._denoise(ex.to(dev), sc.to(dev), T, gen, options, text=None if text is None else text.to(dev),
                             trace=trace)
            chunks.append(Chunk(torch.stack([trace[i].float().cpu() for i in keep]), ex, sc, text))
            if bar:
                bar.update(B)
    if bar:
        bar.close()
    for c in chunks:  # made under inference mode: plain tensors, so the student can train on them
        c.states = c.states.clone()
    return chunks


def distill(teacher: GenerativeModel, arrays: TrainArrays, student_steps: int = 4, teacher_steps: int = 20,
            n_trajectories: int = 2048, steps: int = 1500, batch: int = 64, lr: float = 2e-4, seed: int = 0,
            progress: bool = True, log: list | None = None, grid: str = "late") -> tuple[GenerativeModel, dict]:
    """A student of `teacher` (a diffusion model) that samples in `student_steps` network
    evaluations. Returns (student, summary); `log` gets a row every 50 steps."""
    if not teacher.capabilities.sampler or not hasattr(teacher, "_denoise"):
        raise ModelError(f"only diffusion models can be distilled, not {teacher.family!r}")
    if teacher.hparams["student_timesteps"]:
        raise ModelError("this model is already distilled; distil its teacher instead")
    t0 = time.time()
    options = SamplerOptions(sampler="dpm", steps=teacher_steps)
    sched = teacher.scheduler(options)
    times = [int(t) for t in sched.timesteps]
    jumps, idx = student_grid(times, student_steps, grid)  # the student's K times
    K = len(jumps)

    torch.manual_seed(seed)
    # states at the student's times and the end: jump j goes from state j to state j + 1
    chunks = teacher_trajectories(teacher, arrays, n_trajectories, batch, seed, options, idx + [len(times)], progress)
    t_pool = time.time() - t0

    hp = {**teacher.hparams, "sampler": "distilled", "steps": K, "guidance": 1.0, "score_guidance": None,
          "drift_guidance": None, "repetition_guidance": None,
          "student_timesteps": jumps, "dropout": 0.0}
    student = type(teacher)(teacher.spec, **hp)
    with teacher.inference():  # the teacher's sampling weights (its averaged ones)
        sd = {k: {n: t.detach().clone() for n, t in net.state_dict().items()} for k, net in teacher.nets.items()}
    sd = {k: {n: t.clone() for n, t in d.items()} for k, d in sd.items()}  # out of inference mode
    dev = teacher.device
    for k, net in student.nets.items():
        net.load_state_dict(sd[k])
        net.to(dev).train()
    student.ema = {}
    student.hparams["ema"] = max(float(teacher.hparams["ema"]), 0.99)
    net = student.nets["denoiser"]
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    warm = min(50, steps // 10 + 1)
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    # each jump's coefficients, once: x_t = a x0 + s eps at its time, a2/s2 at the next (1/0 at the end)
    acp = teacher.train_scheduler.alphas_cumprod.double()
    t_of = torch.tensor(jumps)
    nxt = torch.tensor(jumps[1:], dtype=torch.long)
    A, S = acp[t_of].sqrt(), (1 - acp[t_of]).sqrt()
    A2 = torch.cat([acp[nxt].sqrt(), torch.ones(1, dtype=torch.float64)])
    S2 = torch.cat([(1 - acp[nxt]).sqrt(), torch.zeros(1, dtype=torch.float64)])
    g = torch.Generator().manual_seed(seed + 1)
    it = range(steps)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(it, desc="distil", unit="step", mininterval=1.0)
        it = bar
    first = ema_loss = None
    t1 = time.time()
    h = student.hparams
    for step in it:
        c = chunks[int(torch.randint(0, len(chunks), (1,), generator=g))]
        B = c.exercise.shape[0]
        ones = torch.ones(B, c.states.shape[2], student.spec.skeleton.n_joints, dtype=torch.bool, device=dev)
        j = torch.randint(0, K, (B,), generator=g)  # which of the student's jumps
        rows = torch.arange(B)
        x_t, x_next = c.states[j, rows], c.states[j + 1, rows]  # (B, T, D)
        t, a, s, a2, s2 = t_of[j], A[j], S[j], A2[j], S2[j]
        # the x0 whose DDIM jump t -> next lands on the teacher's state: x' = a2 x0 + s2 (x - a x0) / s
        x0 = (x_next.double() - (s2 / s)[:, None, None] * x_t.double()) / (a2 - s2 * a / s)[:, None, None]
        a_, s_ = a.float()[:, None, None], s.float()[:, None, None]
        x0 = x0.float()
        out = net(x_t.to(dev), t.to(dev), c.exercise.to(dev), c.score.to(dev),
                  text=None if c.text is None else c.text.to(dev))
        if h["prediction"] == "v":
            target = (a_ * x_t - x0) / s_  # v = (a x_t - x0) / s
        else:
            target = x0
        target = target.to(dev)
        # the teacher's own kinematic terms, on the same output: MSE alone let the student's
        # last jump leave frame-to-frame jitter (built-in data, 1,500 steps: acceleration W
        # 0.129 vs the teacher's 0.068, jerk W 1.92 vs 1.09), which differences weigh up
        loss = torch.nn.functional.mse_loss(out, target)
        loss = loss + h["w_vel"] * velocity_loss(out, target, ones) + h["w_acc"] * acceleration_loss(out, target, ones)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sch.step()
        student.step = step + 1
        student.ema_update()
        if (step + 1) % 50 == 0 or step + 1 == steps:
            lv = float(loss.detach())
            ema_loss = lv if ema_loss is None else 0.8 * ema_loss + 0.2 * lv
            first = lv if first is None else first
            if log is not None:
                log.append({"step": step + 1, "loss": round(lv, 6), "loss_ema": round(ema_loss, 6),
                            "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t1, 2)})
            if bar:
                bar.set_postfix(loss=f"{ema_loss:.4f}")
    for n_ in student.nets.values():
        n_.eval()
    summary = {"teacher_sampler": options.given(), "teacher_timesteps": times, "grid": grid, "student_timesteps": jumps,
               "student_steps": K, "network_evaluations": {"teacher": teacher_steps * _branches(teacher), "student": K},
               "trajectories": n_trajectories, "distill_steps": steps, "batch": batch,
               "lr": lr, "seed": seed, "first_loss": first, "final_loss_ema": ema_loss,
               "seconds_trajectories": round(t_pool, 1), "seconds_training": round(time.time() - t1, 1)}
    return student, summary
