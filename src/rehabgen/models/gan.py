"""Conditional Wasserstein GAN with gradient penalty (WGAN-GP) over whole sequences.

Generator: a latent code and the conditions become a prefix token; per-frame noise queries
attend to it. Critic: a transformer over frames with a read-out token and the conditions.
Noisy data: before the critic sees a real sequence, its unobserved joints are replaced by the
generated values of the paired fake sequence, so "has Kinect dropouts" can't be a feature of
real data and the generator is never pushed to reproduce them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from rehabgen.models.base import GenerativeModel, ModelError
from rehabgen.models.layers import ConditionEmbedding, MotionTransformer, bone_length_loss, padding_mask


class Generator(nn.Module):
    def __init__(self, dim, n_ex, d, layers, heads, ff, max_len, latent, frame_noise):
        super().__init__()
        self.cond = ConditionEmbedding(n_ex, d)
        self.z = nn.Linear(latent, d)
        self.frame_noise = frame_noise
        self.net = MotionTransformer(frame_noise, dim, d, layers, heads, ff, 0.0, max_len)

    def forward(self, z, noise, exercise, score, pad=None):
        # z (B, latent), noise (B, T, frame_noise)
        token = self.z(z) + self.cond(exercise, score)
        return self.net(noise, token[:, None], pad)


class Critic(nn.Module):
    def __init__(self, dim, n_ex, d, layers, heads, ff, max_len):
        super().__init__()
        self.cond = ConditionEmbedding(n_ex, d)
        self.read = nn.Parameter(torch.randn(1, d) * 0.02)
        self.net = MotionTransformer(dim, 1, d, layers, heads, ff, 0.0, max_len)
        self.out = nn.Linear(d, 1)

    def forward(self, x, exercise, score, pad=None):
        B = x.shape[0]
        prefix = torch.cat([self.read[None].expand(B, -1, -1), self.cond(exercise, score)[:, None]], 1)
        return self.out(self.net.encode(x, prefix, pad)[:, 0])[:, 0]


class GANModel(GenerativeModel):
    family = "gan"
    defaults = {
        "d_model": 128, "n_layers": 3, "n_heads": 4, "ff": 256, "latent": 64, "frame_noise": 16,
        "n_critic": 3,  # critic updates per generator update (one critic update per training step)
        "gp": 10.0, "w_bone": 0.5, "lr": 2e-4, "ema": 0.99,
    }

    def build(self):
        h, s = self.hparams, self.spec
        return {
            "generator": Generator(s.dim, len(s.exercises), h["d_model"], h["n_layers"], h["n_heads"], h["ff"],
                                   s.max_len, h["latent"], h["frame_noise"]),
            "critic": Critic(s.dim, len(s.exercises), h["d_model"], h["n_layers"], h["n_heads"], h["ff"], s.max_len),
        }

    def make_optimizers(self):
        lr = self.hparams["lr"]
        return {"generator": torch.optim.Adam(self.nets["generator"].parameters(), lr=lr, betas=(0.5, 0.9)),
                "critic": torch.optim.Adam(self.nets["critic"].parameters(), lr=lr, betas=(0.5, 0.9))}

    def _noise(self, B, T, device, generator=None):
        h = self.hparams
        return (torch.randn((B, h["latent"]), generator=generator, device=device),
                torch.randn((B, T, h["frame_noise"]), generator=generator, device=device))

    def train_step(self, nets, optimizers, batch, accelerator) -> dict:
        """One critic update; every `n_critic`-th step also one generator update. The logged
        "loss" is the critic's Wasserstein estimate plus penalty (it falls as the critic learns)."""
        h = self.hparams
        G, C = nets["generator"], nets["critic"]
        x, ex, sc = batch["z"], batch["exercise"], batch["score"]
        B, T, D = x.shape
        pad = padding_mask(batch["lengths"], T)
        obs = batch["observed"][..., None].expand(B, T, batch["observed"].shape[-1], 3).reshape(B, T, D)
        z, noise = self._noise(B, T, x.device)
        with torch.no_grad():
            fake = G(z, noise, ex, sc, pad)
        real = torch.where(obs, x, fake)  # dropouts carry no signal for the critic
        d_real, d_fake = C(real, ex, sc, pad), C(fake, ex, sc, pad)
        eps = torch.rand(B, 1, 1, device=x.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        # the penalty differentiates twice: fused attention kernels have no double backward
        with sdpa_kernel(SDPBackend.MATH):
            grad = torch.autograd.grad(C(mix, ex, sc, pad).sum(), mix, create_graph=True)[0]
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        loss_c = d_fake.mean() - d_real.mean() + h["gp"] * gp
        optimizers["critic"].zero_grad(set_to_none=True)
        accelerator.backward(loss_c)
        optimizers["critic"].step()
        logs = {"loss": float(loss_c.detach()), "wasserstein": float((d_real.mean() - d_fake.mean()).detach()),
                "gp": float(gp.detach())}
        if self.step % h["n_critic"] == 0:
            z, noise = self._noise(B, T, x.device)
            fake = G(z, noise, ex, sc, pad)
            loss_g = -C(fake, ex, sc, pad).mean()
            mask = batch["observed"]
            bone = bone_length_loss(self.body(fake), self.body(x), mask, self.spec.bone_pairs)
            total = loss_g + h["w_bone"] * bone
            optimizers["generator"].zero_grad(set_to_none=True)
            accelerator.backward(total)
            optimizers["generator"].step()
            logs.update({"gen": float(loss_g.detach()), "bone": float(bone.detach())})
        optimizers["critic"].zero_grad(set_to_none=True)
        return logs

    @torch.no_grad()
    def generate(self, exercise, score, length, generator, temperature: float = 1.0, **unused):
        bad = {k: v for k, v in unused.items() if v is not None}
        if bad:
            raise ModelError(f"the gan family samples in one pass; options {sorted(bad)} don't apply")
        z, noise = self._noise(len(exercise), length, "cpu", generator)
        return self.nets["generator"](z * temperature, noise, exercise, score)
