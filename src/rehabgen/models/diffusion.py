"""Conditional motion diffusion (MDM-style): a transformer predicts v (or the clean motion x0).

The noise schedule and the samplers are Hugging Face diffusers schedulers, kept apart from
the network: training uses DDPM's forward process; sampling can use DDPM, DDIM or
DPM-Solver++ with any number of steps, with classifier-free guidance on exercise and score,
applied per frequency band of the motion over time (`band_scales`).
"""

from __future__ import annotations

import inspect
import math
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from torch import nn

from rehabgen.models.base import GenerativeModel
from rehabgen.models.layers import (
    ConditionEmbedding, MotionTransformer, TimestepEmbedding, bone_length_loss, masked_mse, padding_mask,
    acceleration_loss, velocity_loss,
)
from rehabgen.models.options import Capabilities, SamplerOptions
from rehabgen.models.spec import ModelError

SAMPLERS = ("dpm", "ddim", "ddpm", "distilled")


class StudentJumps:
    """The sampler of a distilled model (`rehabgen distill`): deterministic DDIM jumps over the
    few timesteps the student was trained on, each landing where the teacher's many-step guided
    trajectory was, and the clean motion after the last one. The same interface as a diffusers
    scheduler (`timesteps`, `step(x0, t, x).prev_sample`), so the sampling loop is shared."""

    def __init__(self, alphas_cumprod: torch.Tensor, grid: list[int]):
        self.timesteps = torch.tensor(grid, dtype=torch.long)
        self.acp = alphas_cumprod.double()
        self.next = dict(zip(grid, [*grid[1:], -1]))  # -1: the end (alpha 1, sigma 0)

    def step(self, x0: torch.Tensor, t, x: torch.Tensor, generator=None) -> SimpleNamespace:
        t = int(t)
        n = self.next[t]
        if n < 0:
            return SimpleNamespace(prev_sample=x0)
        a, s = float(self.acp[t].sqrt()), float((1 - self.acp[t]).sqrt())
        a2, s2 = float(self.acp[n].sqrt()), float((1 - self.acp[n]).sqrt())
        return SimpleNamespace(prev_sample=a2 * x0 + s2 * (x - a * x0) / s)


class Denoiser(nn.Module):
    """(x_t (B, T, D), t (B,), conditions) -> predicted x0 (B, T, D)."""

    def __init__(self, dim: int, n_exercises: int, d_model: int, n_layers: int, n_heads: int, ff: int,
                 dropout: float, max_len: int, text_dim: int = 0):
        super().__init__()
        self.time = TimestepEmbedding(d_model)
        self.cond = ConditionEmbedding(n_exercises, d_model)
        self.net = MotionTransformer(dim, dim, d_model, n_layers, n_heads, ff, dropout, max_len)
        if text_dim:  # pooled sentence embedding -> a second prefix token
            self.text = nn.Sequential(nn.Linear(text_dim, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
            self.null_text = nn.Parameter(torch.zeros(d_model))

    def forward(self, x_t, t, exercise, score, pad=None, drop_exercise=None, drop_score=None, text=None,
                drop_text=None):
        token = self.time(t) + self.cond(exercise, score, drop_exercise, drop_score)  # (B, d)
        prefix = [token[:, None]]
        if hasattr(self, "text"):
            B = x_t.shape[0]
            tt = self.null_text[None].expand(B, -1)
            if text is not None:
                keep = torch.ones(B, dtype=torch.bool, device=x_t.device) if drop_text is None else ~drop_text
                tt = torch.where(keep[:, None], self.text(text), tt)
            prefix.append((tt + self.time(t))[:, None])
        return self.net(x_t, torch.cat(prefix, 1), pad)


def shifted_betas(beta_schedule: str, n: int, shift: float) -> list[float]:
    """The betas of `beta_schedule` with every step's SNR divided by shift^2 (shift > 1: noisier).

    Why: a motion window is one strongly correlated signal (80 frames x 54 coordinates, the top
    principal component of KIMORE patients' windows holds a quarter of the variance), so noise
    that drowns each coordinate still leaves the whole-body movement readable. Under the plain
    cosine schedule a linear (Wiener) estimate recovers 58 % of the variance at t = 950 of 1,000
    and the top component 87 %: which repetition, at which tempo, is decided in the last 5 % of
    the noise levels, which get 5 % of the training and one or two of 20 solver steps. Shifting
    (as "simple diffusion" and SD3 do for high resolutions) moves that decision to noise levels
    the network is trained on and the solver spends steps in. Measured (KIMORE patients, seed 0,
    3,000 steps, shift 4 vs 1): power below 0.1 Hz 2.0x vs 3.1x real, WPD 2.42 vs 4.17 (real
    2.29), but FID 4.5 vs 2.5 and acceleration Wasserstein 1.9x vs 1.1x the stable reference (the
    low-noise steps that remove jitter get less training), so it is not the default."""
    base = DDPMScheduler(num_train_timesteps=n, beta_schedule=beta_schedule).alphas_cumprod.double()
    snr = base / (1 - base) / shift ** 2
    acp = snr / (1 + snr)
    prev = torch.cat([torch.ones(1, dtype=acp.dtype), acp[:-1]])
    return (1 - acp / prev).clamp(max=0.999).tolist()


DRIFT_HZ, REPETITION_HZ = 0.1, 0.5  # band edges, as `metrics.plausibility.BANDS`: drift | repetitions | fast


@lru_cache(maxsize=32)
def _dct_matrix(T: int) -> torch.Tensor:
    """Orthonormal DCT-II over T frames, (T coefficients, T frames): coefficient k is k fps / 2T Hz."""
    k = torch.arange(T, dtype=torch.float64)[:, None]
    n = torch.arange(T, dtype=torch.float64)[None]
    C = torch.cos(math.pi * (n + 0.5) * k / T) * math.sqrt(2.0 / T)
    C[0] /= math.sqrt(2.0)
    return C.float()


def _drift_band(T: int, fps: float) -> torch.Tensor:
    """(T,) bool: the DCT coefficients of a T-frame window slower than 0.1 Hz, the window's mean
    (coefficient 0: the posture) left out."""
    f = torch.arange(T, dtype=torch.float32) * fps / (2 * T)
    return (f > 0) & (f < DRIFT_HZ)


def band_scales(T: int, fps: float, g: float, drift: float | None, repetition: float | None) -> torch.Tensor | None:
    """Guidance scale per DCT coefficient of a T-frame window (T,), or None where every band has
    scale g. The window's mean (coefficient 0: the posture) keeps g; motion slower than 0.1 Hz
    (drift) gets `drift`, 0.1-0.5 Hz (repetitions) `repetition`, faster motion g; None = g."""
    if (drift is None or drift == g) and (repetition is None or repetition == g):
        return None
    s = torch.full((T,), float(g))
    if drift is not None:
        s[_drift_band(T, fps)] = float(drift)
    if repetition is not None:
        f = torch.arange(T, dtype=torch.float32) * fps / (2 * T)
        s[(f >= DRIFT_HZ) & (f < REPETITION_HZ)] = float(repetition)
    s[0] = float(g)
    return s


def scale_bands(delta: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """delta (n, T, D) with each DCT coefficient over time multiplied by scales (T,), or by
    scales (n, T): one row per sequence."""
    C = _dct_matrix(delta.shape[1]).to(delta.device)
    s = scales.to(delta.device, torch.float32)
    coef = torch.einsum("kt,ntd->nkd", C, delta.float()) * (s[None, :, None] if s.dim() == 1 else s[:, :, None])
    return torch.einsum("kt,nkd->ntd", C, coef).to(delta.dtype)


def drift_noise(x: torch.Tensor, fps: float, tau: torch.Tensor) -> torch.Tensor:
    """Starting noise x (n, T, D) with its DCT coefficients over time below 0.1 Hz (not the
    window's mean) times tau (n,): a temperature for the slow band only. The deterministic
    solvers turn that part of the noise into the samples' drift (see `fit_drift_temperatures`)."""
    slow = _drift_band(x.shape[1], fps).to(x.device)
    if not slow.any() or bool((tau == 1).all()):
        return x
    ones = torch.ones((), device=x.device)
    return scale_bands(x, torch.where(slow[None, :], tau.to(x.device, torch.float32)[:, None], ones))


# Below this log-log slope of drift power against temperature, lowering the temperature is not
# what removes the drift. If the drift were the starting noise's alone, the power would fall with
# the square of the temperature (slope 2). On the 21 KIMORE patients (5 runs x 5 exercises) every
# slope was 0.9-1.9. On built-in data, Es5's was 0.23-0.30: the floor 0.5 took only 15-20 % off
# its excess drift, yet it changed the samples. Keeping 1 there brought the text model's coverage
# back from 0.418 to 0.446 (0.454 at temperature 1; 3 seeds), and left the KIMORE fits unchanged.
MIN_DRIFT_SLOPE = 0.5


def fit_drift_temperatures(model: "DiffusionModel", arrays, seed: int = 0, n: int = 64,
                           grid: tuple[float, ...] = (1.0, 0.7, 0.5)) -> dict[str, float]:
    """Per exercise, the slow-band noise temperature at which the samples drift as much as the
    training windows do: the geometric mean over sequences of the power below 0.1 Hz
    (`metrics.plausibility.band_power`), typical sequences rather than the few that wander most.
    The log power is close to linear in log temperature, so `n` samples at each of `grid`'s
    temperatures give a line whose crossing is the answer, kept within the grid: the temperature
    only takes away drift the model adds (at most half the amplitude), it never adds wandering
    (on built-in data an unbounded fit reached 0.3 and 1.5 and cost score MAE and jerk).

    Why: the denoiser spreads the drift that some patients have over every sample. On the 21
    KIMORE patients (5 runs, 3,000 steps, the model's sampler), a typical sample drifted 1.1-1.6x
    a typical training window on four exercises and 2.4-4x on Es4 (pelvis rotation), where the
    wandering also hid the repetitions. The fitted temperatures (Es4 0.50-0.62, Es2 0.89-1.0)
    brought the range of motion within 2 % of the training patients' on Es1, Es3, Es4 and Es5
    (Es4 1.14x -> 1.00x), the repetition rate from 0.75x to 0.85x the test patients' (Es4 0.37x ->
    0.64x) and FID from 1.29 to 1.17 (better on all 5 runs)."""
    from rehabgen.metrics.plausibility import band_power

    def typical(z: torch.Tensor | np.ndarray, lengths) -> float:
        pos = model.spec.normalizer.decode(np.asarray(z, np.float32))
        p = band_power(pos, model.spec.fps, lengths)[:, 0]
        p = p[np.isfinite(p) & (p > 0)]
        return float(np.exp(np.log(p).mean())) if p.size else float("nan")

    gen = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng(seed)
    out = {}
    for e, name in enumerate(model.spec.exercises):
        sel = np.flatnonzero(arrays.exercise == e)
        target = typical(arrays.z[sel], arrays.lengths[sel]) if sel.size >= 2 else float("nan")
        if not np.isfinite(target):
            continue  # too few windows to say: this exercise keeps temperature 1
        L = int(model.spec.default_length.get(name, model.spec.max_len))
        ex = torch.full((n,), e, dtype=torch.long, device=model.device)
        sc = torch.from_numpy(rng.choice(arrays.score[sel], n).astype(np.float32)).to(model.device)
        logs = []
        with model.inference():  # once per exercise: it swaps in the averaged weights
            for t in grid:
                gen.manual_seed(int(seed))  # the same noise at every temperature: a smooth curve
                z = model.generate(ex, sc, L, gen, SamplerOptions(drift_temperature=t))
                logs.append(math.log(typical(z.float().cpu().numpy(), [L] * n) / target))
        slope, icpt = np.polyfit(np.log(grid), logs, 1)
        # a flat line (power falling slower than the temperature itself): the noise does not set the drift
        tau = math.exp(-icpt / slope) if slope >= MIN_DRIFT_SLOPE else 1.0
        out[name] = round(float(np.clip(tau, min(grid), max(grid))), 3)
    return out


def make_scheduler(kind: str, train_config: dict, steps: int, grid: list[int] | None = None, alphas_cumprod=None):
    """A diffusers scheduler of `kind` sharing the training noise schedule, set to `steps`.

    Built from the training config's explicitly set keys that the class takes; keys left at the
    training class's default take the sampler class's own default (what `from_config` does, minus
    its warning about the others, and without touching diffusers' global log level)."""
    if kind == "distilled":
        if not grid:
            raise ModelError("the 'distilled' sampler needs a distilled model (`rehabgen distill RUN --out RUN_FAST`)")
        if steps != len(grid):
            raise ModelError(f"this distilled model samples in exactly {len(grid)} steps (its training grid {grid}), "
                             f"got --steps {steps}")
        return StudentJumps(alphas_cumprod, list(grid))
    classes = {"ddpm": (DDPMScheduler, {}), "ddim": (DDIMScheduler, {"set_alpha_to_one": True}),
               "dpm": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                     "final_sigmas_type": "zero"})}
    if kind not in classes:
        raise ModelError(f"unknown sampler {kind!r}; choose from {SAMPLERS}")
    cls, extra = classes[kind]
    n_train = train_config["num_train_timesteps"]
    if not 1 <= steps <= n_train:
        raise ModelError(f"--steps must be between 1 and {n_train}, got {steps}")
    takes = inspect.signature(cls.__init__).parameters
    defaulted = set(train_config.get("_use_default_values", ()))
    s = cls(**{k: v for k, v in train_config.items() if k in takes and k not in defaulted}, **extra)
    s.set_timesteps(steps)
    return s


class DiffusionModel(GenerativeModel):
    family = "diffusion"
    capabilities = Capabilities(inpaint=True, text=True, timeline=True, sampler=True,
                                options=("sampler", "steps", "guidance", "score_guidance", "drift_guidance",
                                         "repetition_guidance", "drift_temperature"))
    choices = {"sampler": SAMPLERS, "prediction": ("sample", "v"), "kinematic_space": ("x0", "output"),
               "kinematic_weight": ("uniform", "signal")}
    defaults = {
        # no dropout: on 84 real training recordings it smoothed the denoiser into damped motion
        # (1,000 CPU steps: mean joint speed 0.25x real with 0.1, 0.38x without) and cost 40 % of
        # the CPU step time
        "d_model": 128, "n_layers": 4, "n_heads": 4, "ff": 256, "dropout": 0.0,
        "train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
        # noisier schedule: every step's signal-to-noise ratio divided by shift^2 (1: the plain
        # schedule), see `shifted_betas`
        "schedule_shift": 1.0,
        "p_uncond": 0.1,  # drop both conditions: the unconditional branch of guidance
        "p_drop_score": 0.1,  # drop only the score: label-only generation stays good
        "w_vel": 1.0, "w_bone": 0.5,
        # input perturbation (Ning et al. 2023, DDPM-IP): x_t is built with noise + gamma * xi
        # while the v target keeps the plain noise, so the network learns to trust its input a
        # little less (against exposure bias); 0: off. KIMORE patients, seed 0, 3,000 steps,
        # guidance 1.75, gamma 0.2 vs 0: power below 0.1 Hz 2.0x vs 2.7x the test patients' (Es1
        # 2.9x vs 9.5x), WPD 3.69 vs 4.18 (real 2.29), but FID 2.62 vs 2.33, score MAE 14.0 vs 12.8,
        # Es1 repetition power 0.25x vs 0.45x and Es4 range of motion 1.43x vs 1.35x: not the default
        "input_perturbation": 0.0,
        # what the network predicts: "v" (v = a eps - s x0, Salimans & Ho 2022) or "sample" (the
        # clean motion x0, as MDM); the sampler always works from the x0 estimate derived from it.
        # Measured on real KIMORE patients (1,000 CPU steps, held-out patients): x0-prediction gave
        # damped, uniform motion (range of motion 0.51x real, WPD 0.42 vs 2.49); v-prediction,
        # whose loss weights the low-noise steps that learn the motion's detail by 1 + SNR, gave
        # range 1.04x, WPD 2.72, FID 2.9 vs 11.9, with some high-frequency jitter left
        "prediction": "v",
        # x0 loss weight min(1 + SNR_t, snr_cap): up to snr_cap times more weight on the low-noise
        # steps that learn the motion's detail (v-prediction is snr_cap = inf); None: uniform
        "snr_cap": None,
        "w_acc": 1.0,  # acceleration loss against v-prediction's jitter
        # where the velocity/acceleration losses compare: "x0" (the clean-motion estimate) or
        # "output" (the network's own output, v for v-prediction). v's error reaches x0 scaled by
        # sigma_t, so "output" weighs the low-noise steps by 1/sigma^2: those whose leftover noise,
        # millimetres in position, is the jitter (a finite difference at 5 fps turns 5 mm of white
        # noise into ~0.3 m/s^2). Real patients, 2,000 CPU steps, seed 0, held-out patients:
        # acceleration 1.96x -> 1.40x real, jerk 2.47x -> 1.65x, speed 1.19x -> 1.01x
        # (w_acc 3: 0.96x / 1.08x but speed 0.79x, range 0.89x: damped again)
        "kinematic_space": "output",
        # per-sample weight of those losses: "uniform", or "signal" (alpha_bar_t, the signal's share
        # of x_t: near 1 at the low-noise steps whose leftover noise is the jitter, near 0 at the
        # high-noise steps, where matching the true motion's acceleration from a blurred estimate
        # only pulls it toward the mean). "signal" with w_acc 3 helped on real patients (seed 0:
        # acceleration 1.18x, jerk 1.29x, speed 1.01x real) but not on built-in data (1,500 steps:
        # acceleration 4.1x vs 2.1x real, coverage 0.23 vs 0.45), so it is not the default
        "kinematic_weight": "uniform",
        "loss_on_filled": False,  # gap-filled values are inputs, never targets, by default
        # guidance 1.75: at the 3,000-step default it beat 2 on real patients (3 seeds: FID 1.46 vs
        # 1.49, range of motion Es1 1.16x vs 1.21x, WPD +25 % vs +23 %) and on built-in data (seed 0:
        # FID 0.32 vs 0.39, coverage 0.48 vs 0.35, score MAE 7.4 vs 7.9); 1.5 left WPD at +31 %
        "sampler": "dpm", "steps": 20, "guidance": 1.75,
        # distilled models only (`rehabgen distill`): the timesteps of the student's few jumps
        "student_timesteps": [],
        "score_guidance": None,  # a separate scale for the score's own effect (None: = guidance)
        # guidance per frequency band of the motion (`band_scales`; None: = guidance). Guidance
        # extrapolates the exercise's mean trajectory over the window, and the slow part of that
        # (< 0.1 Hz) became drift: at one scale, 1.75, the samples of KIMORE patients had 2.0x the
        # test patients' power below 0.1 Hz (3 runs, 3,000 steps; 1.5x their training patients').
        # The plain conditional (1) there: 1.3x, FID 1.28 vs 1.46, WPD nearer real; built-in data:
        # FID 0.28 vs 0.32, coverage 0.51 vs 0.48. Repetitions (0.1-0.5 Hz): 2.5 lifted the real
        # patients' repetition power from 0.6x to 0.9x (speed W 1.1x vs 1.6x the stable reference)
        # but overshot on built-in data (coverage 0.43), so it is an option, not the default.
        # Models saved before these keys keep one scale (`absent_before`)
        "drift_guidance": 1.0, "repetition_guidance": None,
        # temperature of the starting noise below 0.1 Hz (`drift_noise`): "fit" fits one per
        # exercise at the end of training against the training windows' drift
        # (`fit_drift_temperatures`, stored in drift_temperatures), or a number for every exercise.
        # KIMORE patients, 5 runs: FID 1.17 vs 1.29 at 1, Es4 range of motion 1.14x vs 1.29x the
        # test patients'; models saved before it sample at 1 (`absent_before`)
        "drift_temperature": "fit", "drift_temperatures": {},
        "lr": 1e-3, "ema": 0.99,  # short CPU budgets: a high rate, and sampling from averaged weights
        "text_encoder": "",  # "minilm": also condition on a free-text description
        "p_drop_text": 0.15, "p_text_only": 0.5,  # text-only training so a prompt alone drives sampling
    }

    absent_before = {"drift_guidance": None, "repetition_guidance": None, "drift_temperature": 1.0}
    # the downstream study's generated data: scores drawn over each exercise's range, the score's
    # effect and the repetitions guided harder than samples judged for realism. KIMORE patients,
    # 5 runs x 3 study seeds, 3 assessor seeds: held-out TS RMSE 14.31 vs 15.61 real only (-8.3 %,
    # better on all 5 exercises); matched scores at the model's own settings: -0.3 % (3 runs, one
    # study seed). Built-in data (seed 0, 3 assessor seeds): 9.91 vs 10.16 matched, real only 10.59
    study_defaults = {"scores": "balanced", "score_guidance": 4.0, "repetition_guidance": 2.5}

    def study_settings(self) -> tuple[str, dict]:
        scores, options = super().study_settings()
        if self.hparams["sampler"] == "distilled":  # a student's guidance is baked in: no scales to set
            options = {k: v for k, v in options.items() if "guidance" not in k}
        return scores, options

    def build(self):
        h = self.hparams
        dt = h["drift_temperature"]
        if dt != "fit" and not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and 0 < dt <= 10):
            raise ModelError(f"drift_temperature must be 'fit' or a number in (0, 10], got {dt!r}")
        if not float(h["schedule_shift"]) > 0:
            raise ModelError(f"schedule_shift must be > 0, got {h['schedule_shift']}")
        betas = None if float(h["schedule_shift"]) == 1.0 else shifted_betas(
            h["beta_schedule"], h["train_timesteps"], float(h["schedule_shift"]))
        self.train_scheduler = DDPMScheduler(num_train_timesteps=h["train_timesteps"], beta_schedule=h["beta_schedule"],
                                             prediction_type="sample", clip_sample=False, trained_betas=betas)
        return {"denoiser": Denoiser(self.spec.dim, len(self.spec.exercises), h["d_model"], h["n_layers"],
                                     h["n_heads"], h["ff"], h["dropout"], self.spec.max_len, self.spec.text_dim)}

    def loss(self, nets, batch):
        h = self.hparams
        x0, lengths = batch["z"], batch["lengths"]
        target_mask = batch["mask"] if h["loss_on_filled"] else batch["observed"]
        B, T, _ = x0.shape
        pad = padding_mask(lengths, T)
        t = torch.randint(0, h["train_timesteps"], (B,), device=x0.device)
        noise = torch.randn_like(x0)
        gamma = float(h["input_perturbation"])
        # the network sees a little more noise than its target v accounts for (DDPM-IP)
        x_t = self.train_scheduler.add_noise(x0, noise + gamma * torch.randn_like(x0) if gamma else noise, t)
        drop_all = torch.rand(B, device=x0.device) < h["p_uncond"]
        text = drop_text = None
        score = batch["score"]
        drop_ex = drop_all
        drop_sc = drop_all | (torch.rand(B, device=x0.device) < h["p_drop_score"])
        if "text" in batch:  # one of the K descriptions of each sequence
            k = torch.randint(0, batch["text"].shape[1], (B,), device=x0.device)
            rows = torch.arange(B, device=x0.device)
            text = batch["text"][rows, k]
            drop_text = drop_all | (torch.rand(B, device=x0.device) < h["p_drop_text"])
            text_only = (torch.rand(B, device=x0.device) < h["p_text_only"]) & ~drop_text
            drop_ex = drop_all | text_only
            # text only: the score is known just where the description states a quality (NaN
            # otherwise), as when sampling from a prompt, where the quality reader sets it
            score = torch.where(text_only, batch["text_score"][rows, k], score)
        out = nets["denoiser"](x_t, t, batch["exercise"], score, pad, drop_ex, drop_sc, text, drop_text)
        a, s = self._alpha_sigma(t, x0)
        pred = self._to_x0(out, x_t, a, s)
        v = a * noise - s * x0  # the v target (used when the network predicts v)
        if h["prediction"] == "v":
            rec = masked_mse(out, v, target_mask)
        else:
            w = None if h["snr_cap"] is None else (1 + (a / s) ** 2).clamp(max=float(h["snr_cap"]))  # (B, 1, 1)
            rec = masked_mse(pred, x0, target_mask, w)
        kin_pred, kin_true = (pred, x0) if h["kinematic_space"] == "x0" or h["prediction"] == "sample" else (out, v)
        kw = None if h["kinematic_weight"] == "uniform" else a ** 2  # (B, 1, 1)
        vel = velocity_loss(kin_pred, kin_true, target_mask, kw)
        bone = bone_length_loss(self.body(pred), self.body(x0), target_mask, self.spec.bone_pairs)
        loss = rec + h["w_vel"] * vel + h["w_bone"] * bone
        if h["w_acc"]:
            loss = loss + h["w_acc"] * acceleration_loss(kin_pred, kin_true, target_mask, kw)
        return loss, {"rec": rec.detach(), "vel": vel.detach(), "bone": bone.detach()}

    def _alpha_sigma(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t) as (B, 1, 1): x_t = a x0 + s eps."""
        acp = self.train_scheduler.alphas_cumprod.to(like.device)[t].to(like.dtype)
        return acp.sqrt()[:, None, None], (1 - acp).sqrt()[:, None, None]

    def _to_x0(self, out: torch.Tensor, x_t: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The network's output -> the clean-motion estimate (x0 = a x_t - s v for v-prediction)."""
        return out if self.hparams["prediction"] == "sample" else a * x_t - s * out

    @staticmethod
    def _guided(net, x, tt, exercise, score, text, g: float, gs: float | None = None,
                bands: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output (x0 or v: guidance is linear, so the same in either) with
        classifier-free guidance: u + g (c - u), in one batch. With a
        separate score scale gs (and a known score): u + g (c' - u) + gs (c - c'), where c'
        drops only the score, so the score's own effect is scaled by gs. `bands` (T,): a scale
        per frequency of the guided difference over time instead of g (`band_scales`)."""
        if gs is None or gs == g or not torch.isfinite(score).any():
            if g == 1.0 and bands is None:
                return net(x, tt, exercise, score, text=text)
            k, gs = 2, g
        else:
            k = 3
        n = x.shape[0]
        false = torch.zeros(n, dtype=torch.bool, device=x.device)
        true = torch.ones(n, dtype=torch.bool, device=x.device)
        drop_all = torch.cat([false, true, false][:k])
        drop_sc = torch.cat([false, true, true][:k])
        out = net(torch.cat([x] * k), torch.cat([tt] * k), torch.cat([exercise] * k), torch.cat([score] * k), None,
                  drop_all, drop_sc, None if text is None else torch.cat([text] * k), drop_all)
        c, u = out[:n], out[n:2 * n]
        c_ns = c if k == 2 else out[2 * n:]
        guided = g * (c_ns - u) if bands is None else scale_bands(c_ns - u, bands)
        return u + guided if k == 2 else u + guided + gs * (c - c_ns)

    def after_training(self, arrays, seed: int = 0) -> None:
        if self.hparams["drift_temperature"] == "fit" and self.hparams["sampler"] != "distilled":
            self.hparams["drift_temperatures"] = fit_drift_temperatures(self, arrays, seed)

    def sampler_settings(self, options: SamplerOptions | None = None) -> dict:
        out = super().sampler_settings(options)
        if out.get("drift_temperature") == "fit":  # say what was fitted
            out["drift_temperature"] = dict(self.hparams["drift_temperatures"]) or 1.0
        return out

    def drift_temperatures(self, exercise: torch.Tensor, options: SamplerOptions) -> torch.Tensor:
        """(n,) slow-band noise temperature per sample: the option, else the model's number, else
        its fitted value for the sample's exercise (1 where none was fitted; a prompt without an
        exercise label gets the fitted values' geometric mean)."""
        h = self.hparams
        given = h["drift_temperature"] if options.drift_temperature is None else options.drift_temperature
        if given != "fit":
            return torch.full(exercise.shape, float(given))
        fitted = h["drift_temperatures"]
        per = [float(fitted.get(e, 1.0)) for e in self.spec.exercises]
        per.append(math.exp(sum(math.log(v) for v in per) / len(per)))  # the null label
        return torch.tensor(per)[exercise.cpu()]

    def generate(self, exercise, score, length, generator, options, text=None):
        return self._denoise(exercise, score, length, generator, options, text=text)

    def inpaint(self, exercise, score, known, known_mask, generator, options):
        return self._denoise(exercise, score, known.shape[1], generator, options, known=known, known_mask=known_mask)

    def generate_timeline(self, exercise, score, text, segments, length, generator, options, overlap):
        """A timeline: consecutive frame ranges [(0, b1), (b1, b2), ...] covering `length`, with
        conditions per range: exercise/score (k, n), text (k, n, D_text). Each range is denoised
        apart under its own conditions (each at most max_len; the total may be longer), then
        every seam is in-betweened: `overlap` frames around it are generated again,
        unconditionally, by inpainting between the known frames on both sides. (Averaging
        overlapping windows at every step, as in DoubleTake's handshake, let one description
        bleed into the other on small models.)"""
        x = self._denoise(exercise, score, length, generator, options, text=text, segments=segments)
        return self._join_seams(x, [a for a, _ in segments[1:]], generator, options, overlap)

    def scheduler(self, options: SamplerOptions):
        """The sampler the options ask for, over the training noise schedule."""
        h = self.hparams
        sampler = options.sampler or h["sampler"]
        grid = [int(t) for t in h["student_timesteps"]]
        steps = int(options.steps or (len(grid) if sampler == "distilled" and grid else h["steps"]))
        return make_scheduler(sampler, dict(self.train_scheduler.config), steps, grid,
                              self.train_scheduler.alphas_cumprod)

    @torch.no_grad()
    def _denoise(self, exercise, score, length, generator, options: SamplerOptions, text=None,
                 known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
                 segments: list[tuple[int, int]] | None = None, trace: list | None = None) -> torch.Tensor:
        """The sampling loop. known (n, T, D) / known_mask (n, T, J): values to keep (inpainting).
        Each denoising step's x0 estimate is overwritten with the known values before the
        scheduler step, so the missing parts are generated consistently with what was observed.
        segments: conditions per frame range (see `generate_timeline`). trace: a list that gets
        x before every solver step and the result (distillation records the teacher's path)."""
        h = self.hparams
        net = self.nets["denoiser"]
        g = float(h["guidance"] if options.guidance is None else options.guidance)
        gs = h["score_guidance"] if options.score_guidance is None else options.score_guidance
        gs = None if gs is None else float(gs)
        drift, rep = (h[k] if getattr(options, k) is None else getattr(options, k)
                      for k in ("drift_guidance", "repetition_guidance"))
        spans = [(0, length)] if segments is None else segments
        bands = [band_scales(b - a, self.spec.fps, g, drift, rep) for a, b in spans]  # guidance per frequency
        sched = self.scheduler(options)
        n, D, dev = exercise.shape[-1], self.spec.dim, exercise.device
        x = torch.randn((n, length, D), generator=generator).to(dev)  # CPU generator: the same noise on every device
        if segments is None:
            x = drift_noise(x, self.spec.fps, self.drift_temperatures(exercise, options))
        else:
            x = torch.cat([drift_noise(x[:, a:b], self.spec.fps, self.drift_temperatures(exercise[i], options))
                           for i, (a, b) in enumerate(segments)], 1)
        if known is not None:
            km = known_mask[..., None].expand(n, length, known_mask.shape[-1], 3).reshape(n, length, D)
        for t in sched.timesteps:
            if trace is not None:
                trace.append(x)
            tt = torch.full((n,), int(t), dtype=torch.long, device=dev)
            if segments is None:
                out = self._guided(net, x, tt, exercise, score, text, g, gs, bands[0])
            else:
                out = torch.cat([self._guided(net, x[:, a:b], tt, exercise[i], score[i],
                                                 None if text is None else text[i], g, gs, bands[i])
                                 for i, (a, b) in enumerate(segments)], 1)
            # the solver runs in fp32 whatever the network's precision; guidance is linear: the same in x0 or v
            x0 = self._to_x0(out.float(), x, *self._alpha_sigma(tt, x))
            if known is not None:
                x0 = torch.where(km, known, x0)
            x = sched.step(x0, t, x, generator=generator).prev_sample
        if known is not None:
            x = torch.where(km, known, x)
        if trace is not None:
            trace.append(x)
        return x

    def _join_seams(self, x, seams, generator, options: SamplerOptions, overlap: int) -> torch.Tensor:
        """Regenerate `overlap` frames around each seam, unconditionally, between known frames."""
        n, length, D = x.shape
        m = max(2, int(overlap))
        null_ex = torch.full((n,), len(self.spec.exercises), dtype=torch.long, device=x.device)
        null_sc = torch.full((n,), float("nan"), device=x.device)
        for b in seams:
            f0, f1 = max(0, b - m // 2), min(length, b + m - m // 2)  # frames made anew
            lo, hi = max(0, f0 - m), min(length, f1 + m)  # with context on both sides
            keep = torch.ones(n, hi - lo, self.spec.skeleton.n_joints, dtype=torch.bool, device=x.device)
            keep[:, f0 - lo:f1 - lo] = False
            x = x.clone()
            x[:, lo:hi] = self._denoise(null_ex, null_sc, hi - lo, generator,
                                        SamplerOptions(options.sampler, options.steps, guidance=1.0,
                                                       drift_guidance=1.0, repetition_guidance=1.0),
                                        known=x[:, lo:hi].contiguous(), known_mask=keep)
        return x
