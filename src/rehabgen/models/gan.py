"""Conditional Wasserstein GAN with gradient penalty (WGAN-GP) over whole sequences.

Generator: a per-sequence latent code plus the conditions (exercise, score) form one prefix
token; one query per frame (smooth per-frame noise, interpolated from a few knots, so the
noise itself adds no jitter) attends to it through a `MotionTransformer`. Critic: a residual
dilated temporal CNN over positions and velocities, masked-mean pooled over the real frames,
conditioned by projection (Miyato & Koyama 2018): score = w.h + <embed(exercise, score), h>.
A CNN critic is cheap to differentiate twice (the gradient penalty) and sees jerk locally.

Noisy data: before the critic sees a real sequence, its unobserved joints (Kinect dropouts,
gap-filled values) are replaced by the values of the paired generated sequence, and padding
frames are zero in both, so "has dropouts" or "is padded" can never be a feature of real data
and the generator is never pushed to reproduce them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rehabgen.models.base import GenerativeModel
from rehabgen.models.options import Capabilities
from rehabgen.models.layers import ConditionEmbedding, MotionTransformer, padding_mask, sinusoidal


def smooth_noise(B: int, T: int, channels: int, stride: int, generator=None, device=None) -> torch.Tensor:
    """(B, T, channels) Gaussian noise drawn every `stride` frames and linearly interpolated."""
    knots = math.ceil((T - 1) / max(1, stride)) + 1
    k = torch.randn((B, channels, knots), generator=generator)
    if knots == 1:
        out = k.expand(B, channels, T)
    else:
        out = F.interpolate(k, size=(knots - 1) * stride + 1, mode="linear", align_corners=True)[..., :T]
    return out.transpose(1, 2).contiguous().to(device)


class Generator(nn.Module):
    """(latent (B, L), frame noise (B, T, F), conditions, pad) -> frames (B, T, D)."""

    def __init__(self, dim, n_ex, d, layers, heads, ff, max_len, latent, frame_noise):
        super().__init__()
        self.cond = ConditionEmbedding(n_ex, d)
        self.z = nn.Sequential(nn.Linear(latent, d), nn.SiLU(), nn.Linear(d, d))
        self.net = MotionTransformer(max(1, frame_noise), dim, d, layers, heads, ff, 0.0, max_len)
        with torch.no_grad():  # start near the mean pose (0 in standardised space): a valid body
            self.net.out.weight.mul_(0.1)
            self.net.out.bias.zero_()

    def forward(self, z, noise, exercise, score, pad=None):
        token = self.z(z) + self.cond(exercise, score)
        return self.net(noise, token[:, None], pad)


class Critic(nn.Module):
    """(frames (B, T, D), conditions, pad) -> one score per sequence (B,)."""

    def __init__(self, dim, n_ex, d, layers, kernel, max_len):
        super().__init__()
        self.cond = ConditionEmbedding(n_ex, d)
        self.inp = nn.Conv1d(2 * dim, d, kernel, padding=kernel // 2)
        self.register_buffer("pos", sinusoidal(torch.arange(max_len + 8), d), persistent=False)
        self.pos_proj = nn.Linear(d, d)
        self.blocks = nn.ModuleList(
            nn.Conv1d(d, d, kernel, padding=(kernel // 2) * 2 ** (i % 3), dilation=2 ** (i % 3)) for i in range(layers))
        self.out = nn.Linear(d, 1)

    def forward(self, x, exercise, score, pad=None):
        B, T, _ = x.shape
        keep = torch.ones(B, T, device=x.device) if pad is None else (~pad).float()
        x = x * keep[..., None]
        vel = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], 1) * (keep * F.pad(keep, (1, 0))[:, :T])[..., None]
        h = self.inp(torch.cat([x, 3.0 * vel], -1).transpose(1, 2))  # velocities are ~3x smaller
        c = self.cond(exercise, score)
        h = h + (self.pos_proj(self.pos[:T]).T[None] + c[..., None])
        k = keep[:, None]
        h = F.leaky_relu(h, 0.2) * k
        for blk in self.blocks:
            h = (h + F.leaky_relu(blk(h), 0.2)) * k
        pooled = h.sum(-1) / k.sum(-1).clamp_min(1.0)  # (B, d)
        return self.out(pooled)[:, 0] + (c * pooled).sum(-1) / math.sqrt(c.shape[-1])


class GANModel(GenerativeModel):
    family = "gan"
    capabilities = Capabilities(options=("temperature",))
    defaults = {
        "d_model": 128, "n_layers": 3, "n_heads": 4, "ff": 256,  # generator transformer
        "critic_d": 128, "critic_layers": 4, "kernel": 5,  # critic CNN (dilations 1, 2, 4, 1, ...)
        "latent": 64, "frame_noise": 0, "noise_stride": 8,
        "n_critic": 3,  # critic updates per generator update (one critic update per training step)
        "gp": 10.0, "drift": 1e-3,  # gradient penalty weight; small penalty on |D(real)|^2 (ProGAN)
        "w_bone": 5.0, "w_vel": 0.0,  # generator: match the batch's bone lengths / speed statistics
        "lr": 1e-3, "critic_lr": None,  # critic lr: None = same as lr
        "ema": 0.99,
    }
    # the downstream study's generated data keeps the real sequences' scores: on KIMORE patients
    # (3,000 steps, split 0, first study seed, 3 assessor seeds) balanced scores did not help the
    # GAN's data (16.99 against 16.88 matched, real only 18.09) as they do the diffusion model's
    study_defaults = {"scores": "matched"}

    def build(self):
        h, s = self.hparams, self.spec
        return {
            "generator": Generator(s.dim, len(s.exercises), h["d_model"], h["n_layers"], h["n_heads"], h["ff"],
                                   s.max_len, h["latent"], h["frame_noise"]),
            "critic": Critic(s.dim, len(s.exercises), h["critic_d"], h["critic_layers"], h["kernel"], s.max_len),
        }

    def make_optimizers(self):
        h = self.hparams
        lr_c = h["critic_lr"] or h["lr"]
        return {"generator": torch.optim.Adam(self.nets["generator"].parameters(), lr=h["lr"], betas=(0.5, 0.9)),
                "critic": torch.optim.Adam(self.nets["critic"].parameters(), lr=lr_c, betas=(0.5, 0.9))}

    def _noise(self, B, T, device, generator=None, temperature=1.0):
        h = self.hparams
        z = torch.randn((B, h["latent"]), generator=generator).to(device)
        if h["frame_noise"] > 0:
            noise = smooth_noise(B, T, h["frame_noise"], h["noise_stride"], generator, device)
        else:
            noise = torch.zeros(B, T, 1, device=device)
        return z * temperature, noise * temperature

    @staticmethod
    def _updates_done(opt) -> int:
        """Number of optimizer steps taken so far (Adam's own counter: survives save/resume)."""
        for st in opt.state.values():
            if "step" in st:
                return int(float(st["step"]))
        return 0

    def _aux(self, fake, x, obs_j, keep):
        """Generator regularisers against statistics of the real batch (not paired frames):
        relative error of bone lengths (target: per bone, mean over observed frames) and RMS speed per coordinate."""
        B, T, D = x.shape
        bones = self.spec.bone_pairs
        bf, br = self.body(fake), self.body(x)
        par = torch.tensor([b[0] for b in bones], device=x.device)
        chi = torch.tensor([b[1] for b in bones], device=x.device)
        lf = (bf[..., chi, :] - bf[..., par, :]).norm(dim=-1)  # (B, T, nb)
        real_len = (br[..., chi, :] - br[..., par, :]).norm(dim=-1)
        mr = (obs_j[..., chi] & obs_j[..., par]).float()
        target = (real_len * mr).sum((0, 1)) / mr.sum((0, 1)).clamp_min(1.0)
        k = keep[..., None]
        bone = (((lf / target.clamp_min(1e-4) - 1) ** 2) * k).sum() / (k.sum() * len(bones)).clamp_min(1.0)
        # speed statistics: RMS frame-to-frame change per coordinate, observed pairs vs valid pairs
        oj = obs_j[..., None].expand(B, T, obs_j.shape[-1], 3).reshape(B, T, D).float()
        mr_v = oj[:, 1:] * oj[:, :-1]
        mf_v = (keep[:, 1:] * keep[:, :-1])[..., None]
        vr = ((x[:, 1:] - x[:, :-1]) ** 2 * mr_v).sum((0, 1)) / mr_v.sum((0, 1)).clamp_min(1.0)
        vf = ((fake[:, 1:] - fake[:, :-1]) ** 2 * mf_v).sum((0, 1)) / mf_v.sum((0, 1)).clamp_min(1.0)
        vel = ((vf + 1e-6).sqrt() - (vr + 1e-6).sqrt()).pow(2).mean()
        return bone, vel

    def train_step(self, nets, optimizers, batch, accelerator) -> dict:
        """One critic update per call; every `n_critic`-th call (counted from the critic
        optimizer's own step counter, so exact across resume) also one generator update.

        Logs: "loss" = "critic" = D(fake) - D(real) + gp * penalty (+ drift): the critic's loss,
        optimised every call, -Wasserstein estimate + penalty, rising towards 0 as the generator
        catches up; "wasserstein" = D(real) - D(fake); "gen" = -D(fake) (the generator's
        adversarial loss on this batch); "bone"/"vel" on generator updates.
        """
        h = self.hparams
        G, C = nets["generator"], nets["critic"]
        x, ex, sc = batch["z"], batch["exercise"], batch["score"]
        B, T, D = x.shape
        pad = padding_mask(batch["lengths"], T)
        keep = (~pad).float()
        obs_j = batch["observed"] & ~pad[..., None]
        obs = obs_j[..., None].expand(B, T, obs_j.shape[-1], 3).reshape(B, T, D)
        gen_turn = self._updates_done(optimizers["critic"]) % max(1, int(h["n_critic"])) == 0

        # ---- critic ----
        z, noise = self._noise(B, T, x.device)
        with torch.no_grad():
            fake = G(z, noise, ex, sc, pad) * keep[..., None]
        real = torch.where(obs, x, fake)  # dropouts carry no signal; padding is 0 in both
        d_real, d_fake = C(real, ex, sc, pad), C(fake, ex, sc, pad)
        eps = torch.rand(B, 1, 1, device=x.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad = torch.autograd.grad(C(mix, ex, sc, pad).sum(), mix, create_graph=True)[0]
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        w = d_real.mean() - d_fake.mean()
        loss_c = -w + h["gp"] * gp + h["drift"] * (d_real ** 2).mean()
        optimizers["critic"].zero_grad(set_to_none=True)
        accelerator.backward(loss_c)
        if h["grad_clip"]:
            accelerator.clip_grad_norm_(C.parameters(), 10.0 * h["grad_clip"])  # a safety net only
        optimizers["critic"].step()
        optimizers["critic"].zero_grad(set_to_none=True)
        logs = {"loss": loss_c.detach(), "critic": loss_c.detach(), "wasserstein": w.detach(),
                "gp": gp.detach(), "gen": -d_fake.mean().detach()}  # tensors: read back at log steps only

        # ---- generator ----
        if gen_turn:
            z, noise = self._noise(B, T, x.device)
            fake = G(z, noise, ex, sc, pad) * keep[..., None]
            loss_g = -C(fake, ex, sc, pad).mean()
            total = loss_g
            bone, vel = self._aux(fake, x, obs_j, keep)
            if h["w_bone"]:
                total = total + h["w_bone"] * bone
            if h["w_vel"]:
                total = total + h["w_vel"] * vel
            optimizers["generator"].zero_grad(set_to_none=True)
            accelerator.backward(total)
            if h["grad_clip"]:
                accelerator.clip_grad_norm_(G.parameters(), h["grad_clip"])
            optimizers["generator"].step()
            optimizers["generator"].zero_grad(set_to_none=True)
            optimizers["critic"].zero_grad(set_to_none=True)  # the generator loss also reached the critic
            logs.update({"gen": loss_g.detach(), "bone": bone.detach(), "vel": vel.detach()})
        return logs

    def generate(self, exercise, score, length, generator, options, text=None):
        """One pass: z ~ N(0, temperature^2) from `generator` (temperature 0: the same sequence for every seed)."""
        temperature = 1.0 if options.temperature is None else float(options.temperature)
        G = self.nets["generator"]
        device = next(G.parameters()).device
        z, noise = self._noise(len(exercise), length, device, generator, temperature)
        return G(z, noise, exercise.to(device), score.to(device))
