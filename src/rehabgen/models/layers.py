"""Small building blocks shared by the model families."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) float/int -> (B, dim) sin/cos features at geometric frequencies (as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    a = x.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.d = d
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, d)
        return self.mlp(sinusoidal(t, self.d))


class ConditionEmbedding(nn.Module):
    """Exercise label + continuous score -> one vector (B, d).

    Each condition has a learned "null" value, used where the score is unknown (NaN in the
    data) and for classifier-free guidance (dropped conditions in training, the unconditional
    branch at sampling). The score goes through a few low-frequency Fourier features (periods
    down to a quarter of the score range): higher frequencies let a small network memorise
    each training score, and the motion then jumped between scores a point apart (TS 42.7 vs
    43 moved the predicted TS by 13 points), so a score between training values meant nothing.
    """

    def __init__(self, n_exercises: int, d: int, n_freq: int = 3):
        super().__init__()
        self.n_exercises = n_exercises
        self.exercise = nn.Embedding(n_exercises + 1, d)  # last row = null
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freq)) * math.pi, persistent=False)
        self.score = nn.Sequential(nn.Linear(2 * n_freq + 1, d), nn.SiLU(), nn.Linear(d, d))
        self.null_score = nn.Parameter(torch.zeros(d))

    def forward(self, exercise: torch.Tensor, score: torch.Tensor, drop_exercise: torch.Tensor | None = None,
                drop_score: torch.Tensor | None = None) -> torch.Tensor:
        # exercise (B,) long; score (B,) in [0, 1] or NaN; drop_* (B,) bool
        ex = exercise.clone()
        if drop_exercise is not None:
            ex[drop_exercise] = self.n_exercises
        known = torch.isfinite(score)
        if drop_score is not None:
            known = known & ~drop_score
        s = torch.where(known, score, torch.zeros_like(score)).float()
        a = s[:, None] * self.freqs[None]
        feats = torch.cat([s[:, None], torch.sin(a), torch.cos(a)], dim=-1)
        se = torch.where(known[:, None], self.score(feats), self.null_score[None].expand(len(s), -1))
        return self.exercise(ex) + se


class MotionTransformer(nn.Module):
    """Frames -> frames transformer with extra prefix tokens (conditions) and padding masks.

    x (B, T, D_in), prefix (B, P, d) -> (B, T, D_out). `pad` (B, T) is True on padding frames.
    """

    def __init__(self, d_in: int, d_out: int, d_model: int = 128, n_layers: int = 4, n_heads: int = 4,
                 ff: int = 256, dropout: float = 0.1, max_len: int = 512):
        super().__init__()
        self.inp = nn.Linear(d_in, d_model)
        self.register_buffer("pos", sinusoidal(torch.arange(max_len + 8), d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, ff, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_out)

    def encode(self, x: torch.Tensor, prefix: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, P+T, d) of prefix tokens and frames."""
        B, T, _ = x.shape
        P = prefix.shape[1]
        h = torch.cat([prefix, self.inp(x)], dim=1)  # (B, P+T, d)
        h = h + self.pos[: P + T][None]
        mask = None
        if pad is not None:
            mask = torch.cat([torch.zeros(B, P, dtype=torch.bool, device=x.device), pad], dim=1)
        return self.norm(self.encoder(h, src_key_padding_mask=mask))

    def forward(self, x: torch.Tensor, prefix: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.encode(x, prefix, pad)[:, prefix.shape[1]:])


def padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True on padding frames."""
    return torch.arange(T, device=lengths.device)[None] >= lengths[:, None]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over entries where mask (B, T, J) is True; pred/target (B, T, J*3);
    optional per-sequence weights (B, 1, 1) (the mean stays over the masked entries)."""
    B, T, D = pred.shape
    m = mask[..., None].expand(B, T, mask.shape[-1], D // mask.shape[-1]).reshape(B, T, D).float()
    err = (pred - target) ** 2 * m
    if weight is not None:
        err = err * weight
    return err.sum() / m.sum().clamp_min(1.0)


def velocity_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Masked MSE of frame-to-frame differences (both frames known); optional (B, 1, 1) weights."""
    m = mask[:, 1:] & mask[:, :-1]
    return masked_mse(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1], m, weight)


def acceleration_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Masked MSE of second differences (three consecutive frames known): penalises jitter."""
    m = mask[:, 2:] & mask[:, 1:-1] & mask[:, :-2]
    return masked_mse(pred[:, 2:] - 2 * pred[:, 1:-1] + pred[:, :-2], target[:, 2:] - 2 * target[:, 1:-1] + target[:, :-2],
                      m, weight)


def bone_length_loss(body_pred: torch.Tensor, body_true: torch.Tensor, mask: torch.Tensor,
                     bones: list[tuple[int, int]]) -> torch.Tensor:
    """Squared error of bone lengths (B, T, J, 3 bodies) where both joints are known."""
    par = torch.tensor([b[0] for b in bones], device=body_pred.device)
    chi = torch.tensor([b[1] for b in bones], device=body_pred.device)
    lp = (body_pred[..., chi, :] - body_pred[..., par, :]).norm(dim=-1)
    lt = (body_true[..., chi, :] - body_true[..., par, :]).norm(dim=-1)
    m = (mask[..., chi] & mask[..., par]).float()
    return (((lp - lt) ** 2) * m).sum() / m.sum().clamp_min(1.0)
