"""VAE and GAN families: they learn, respect masks, and resume with every optimizer's state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rehabgen.models import GenerativeModel, get_family
from rehabgen.preprocess import PreprocessConfig
from rehabgen.train import CKPT, train

from conftest import toy_dataset

PCFG = PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None)
SMALL = dict(d_model=64, n_layers=2, ff=128, n_heads=4, batch_size=16)


def _nearest_real_distance(x, real):
    d = ((x[:, None] - real[None]) ** 2).reshape(len(x), len(real), -1).mean(-1)
    return float(np.sqrt(d.min(1)).mean())


def _real(ds, T):
    return np.stack([s.positions[::2][:T] for s in ds.sequences])


@pytest.mark.parametrize("family,steps", [("vae", 250), ("gan", 300)])
def test_family_learns(family, steps):
    torch.manual_seed(0)
    ds = toy_dataset(n=32)
    model, arrays = get_family(family).from_dataset(ds, PCFG, max_len=32, **SMALL, lr=1e-3)
    untrained = get_family(family)(model.spec, **SMALL)
    s = train(model, arrays, steps=steps, seed=0, progress=False)
    assert np.isfinite(s["final_loss_ema"])
    T = 30
    real = _real(ds, T)
    x = model.sample(["Es1", "Es2"] * 4, 40.0, n=8, length=T, seed=0)
    x0 = untrained.sample(["Es1", "Es2"] * 4, 40.0, n=8, length=T, seed=0)
    d, d0 = _nearest_real_distance(x, real), _nearest_real_distance(x0, real)
    assert d < 0.6 * d0, (d, d0)
    if family == "vae":
        assert s["final_loss_ema"] < 0.5 * s["first_loss"]


def test_vae_does_not_reproduce_masked_garbage():
    torch.manual_seed(0)
    ds = toy_dataset(n=32, garbage_joint=7)
    model, arrays = get_family("vae").from_dataset(ds, PCFG, max_len=32, **SMALL, lr=1e-3)
    train(model, arrays, steps=200, seed=0, progress=False)
    x = model.sample("Es1", 40.0, n=8, seed=0)
    assert np.abs(x).max() < 4.0
    assert np.median(np.linalg.norm(x[:, :, 7] - x[:, :, 6], axis=-1)) < 0.2


def test_gan_resume_restores_both_optimizers(tmp_path):
    torch.manual_seed(0)
    ds = toy_dataset(n=16)
    model, arrays = get_family("gan").from_dataset(ds, PCFG, max_len=32, d_model=32, n_layers=1, ff=64, n_heads=2,
                                                   batch_size=8)
    train(model, arrays, steps=12, seed=0, out_dir=tmp_path, ckpt_every=6, progress=False, stop_at=6)
    meta = json.loads((tmp_path / CKPT / "trainer.json").read_text())
    assert meta["step"] == 6 and set(meta["optimizers"]) == {"generator", "critic"}
    again = GenerativeModel.load(tmp_path / CKPT / "model")
    s = train(again, arrays, steps=12, seed=0, out_dir=tmp_path, resume=True, ckpt_every=6, progress=False)
    assert s["steps"] == 12
    from safetensors.torch import load_file

    t = load_file(tmp_path / CKPT / "trainer.safetensors")
    critic_steps = {float(v) for k, v in t.items() if k.startswith("optim.critic.") and k.endswith(".step")}
    gen_steps = {float(v) for k, v in t.items() if k.startswith("optim.generator.") and k.endswith(".step")}
    assert critic_steps == {12.0}  # one critic update per training step, across the resume
    assert gen_steps == {4.0}  # one generator update every n_critic=3 steps
