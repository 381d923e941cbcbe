"""WGAN-GP family: it learns, never shows dropouts to the critic as "real", samples
reproducibly, round-trips through save/load and resumes exactly with both optimizers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rehabgen.data import Dataset, Sequence
from rehabgen.models import GenerativeModel, ModelError, SamplerOptions, get_family
from rehabgen.models.gan import GANModel, smooth_noise
from rehabgen.preprocess import PreprocessConfig
from rehabgen.skeleton import KINECT_V2
from rehabgen.train import CKPT, train

from conftest import arm_raise, side_raise

PCFG = PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None)
SMALL = dict(d_model=64, n_layers=2, ff=128, n_heads=4, critic_d=64, critic_layers=3, batch_size=16)
TINY = dict(d_model=32, n_layers=1, ff=64, n_heads=2, critic_d=32, critic_layers=2, batch_size=8)
T = 40


def _dataset(n: int = 24) -> Dataset:
    """Forward (Es1) vs sideways (Es2) arm raises, TS grows with amplitude; some sequences are
    shorter (padding) and some have Kinect-like dropouts of the left hand (garbage, not valid)."""
    rng = np.random.default_rng(0)
    seqs = []
    for i in range(n):
        amp = 0.3 + 0.7 * rng.random()
        ex = "Es1" if i % 2 == 0 else "Es2"
        Tn = 96 if i % 3 else 84
        p = (arm_raise if ex == "Es1" else side_raise)(Tn, amplitude=amp, seed=i).astype(np.float32)
        valid = np.ones(p.shape[:2], bool)
        if i % 4 == 1:
            bad = rng.random(Tn) < 0.3
            p[bad, KINECT_V2.index("HandLeft")] = 5.0
            valid[bad, KINECT_V2.index("HandLeft")] = False
        seqs.append(Sequence(f"s{i % 8}", "Expert", ex, p, valid, {"TS": round(10 + 40 * amp, 1)}, source=f"m{i}"))
    return Dataset(KINECT_V2, seqs)


def _nearest_real(x: np.ndarray, model: GenerativeModel, arrays) -> float:
    """Mean over samples of the RMS distance (metres, observed values only) to the nearest
    training sequence at least as long as the samples."""
    L = x.shape[1]
    ok = arrays.lengths >= L
    real = model.spec.normalizer.decode(arrays.z[ok, :L])
    w = arrays.observed[ok, :L][..., None].astype(np.float64)
    d2 = (((x[:, None] - real[None]) ** 2) * w[None]).sum((2, 3, 4)) / (3 * w.sum((1, 2, 3)))[None]
    return float(np.sqrt(d2.min(1)).mean())


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model, arrays = GANModel.from_dataset(_dataset(), PCFG, max_len=48, **SMALL)
    torch.manual_seed(1)
    untrained = GANModel(model.spec, **SMALL)
    summary = train(model, arrays, steps=200, seed=0, progress=False)
    return model, arrays, untrained, summary


def test_registry_and_contract():
    assert get_family("gan") is GANModel and GANModel.family == "gan"
    x = smooth_noise(2, 17, 3, 4, torch.Generator().manual_seed(0))
    assert x.shape == (2, 17, 3) and torch.isfinite(x).all()


def test_gan_learns_beyond_noise(trained):
    model, arrays, untrained, summary = trained
    assert summary["steps"] == 200 and np.isfinite(summary["final_loss_ema"])
    ex = ["Es1", "Es2"] * 6
    x = model.sample(ex, None, n=12, length=T, seed=0)
    x0 = untrained.sample(ex, None, n=12, length=T, seed=0)
    noise = model.spec.normalizer.decode(np.random.default_rng(0).normal(size=(12, T, model.spec.dim)))
    d, d0, dn = (_nearest_real(a, model, arrays) for a in (x, x0, noise))
    assert d < 0.5 * d0 and d < 0.3 * dn, (d, d0, dn)
    # the body holds together: the left hand (dropouts in the data) stays by the wrist
    hand = np.linalg.norm(x[:, :, KINECT_V2.index("HandLeft")] - x[:, :, KINECT_V2.index("WristLeft")], axis=-1)
    assert np.median(hand) < 0.25 and hand.max() < 1.0


def test_samples_shape_and_seeds(trained):
    model = trained[0]
    a = model.sample("Es1", 30.0, n=3, length=T, seed=5)
    assert a.shape == (3, T, 25, 3) and np.isfinite(a).all()
    assert np.array_equal(a, model.sample("Es1", 30.0, n=3, length=T, seed=5))
    assert not np.allclose(a, model.sample("Es1", 30.0, n=3, length=T, seed=6))
    assert model.sample("Es2", None, n=2, seed=0).shape[1] == model.spec.default_length["Es2"]
    # temperature scales the latent: 0 = the same sequence for every seed
    z0 = model.sample("Es1", 30.0, n=1, length=T, seed=1, options=SamplerOptions(temperature=0.0))
    assert np.array_equal(z0, model.sample("Es1", 30.0, n=1, length=T, seed=2, options=SamplerOptions(temperature=0.0)))


def test_generate_options(trained):
    model = trained[0]
    model.sample("Es1", 30.0, n=1, length=T, seed=0, options=SamplerOptions())
    for kw in ({"steps": 10}, {"guidance": 2.0}, {"sampler": "ddim"}):
        with pytest.raises(ModelError, match=r"the gan family has no sampler option\(s\)"):
            model.sample("Es1", 30.0, n=1, length=T, seed=0, options=SamplerOptions(**kw))


def test_save_load_round_trip(trained, tmp_path):
    model = trained[0]
    model.save(tmp_path / "m")
    again = GenerativeModel.load(tmp_path / "m")
    assert isinstance(again, GANModel) and again.hparams == model.hparams
    a = model.sample(["Es1", "Es2"], 25.0, n=2, length=T, seed=3)
    assert np.array_equal(a, again.sample(["Es1", "Es2"], 25.0, n=2, length=T, seed=3))


def test_critic_never_sees_dropouts_or_padding():
    """Unobserved entries hold garbage (100) in the batch: the critic's inputs must not."""
    from accelerate import Accelerator

    torch.manual_seed(0)
    model, arrays = GANModel.from_dataset(_dataset(8), PCFG, max_len=48, **TINY)
    from rehabgen.train import _batch, _tensors

    batch = _batch(_tensors(arrays), len(arrays.z), 8, 0, 0, 0, 1)
    B, Tb, D = batch["z"].shape
    obs = batch["observed"][..., None].expand(B, Tb, D // 3, 3).reshape(B, Tb, D)
    assert not obs.all() and (batch["lengths"] < Tb).any()  # the data has dropouts and padding
    batch["z"] = torch.where(obs, batch["z"], torch.full_like(batch["z"], 100.0))
    seen = []
    model.nets["critic"].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().clone()))
    logs = model.train_step(model.nets, model.make_optimizers(), batch, Accelerator(cpu=True))
    assert {"loss", "critic", "gp", "gen", "bone"} <= set(logs) and all(np.isfinite(v) for v in logs.values())
    assert len(seen) == 4  # real, fake, interpolates (critic step); fake (generator step)
    pad = torch.arange(Tb)[None] >= batch["lengths"][:, None]
    for x in seen:
        assert x.abs().max() < 20.0
        assert (x[pad] == 0).all()


def _adam_steps(opt_state: dict) -> set[float]:
    return {float(st["step"]) for st in opt_state.values()}


def test_checkpoint_resume_is_exact_with_both_optimizers(tmp_path):
    def fresh():
        torch.manual_seed(0)
        return GANModel.from_dataset(_dataset(12), PCFG, max_len=48, **TINY)

    a, arrays = fresh()
    train(a, arrays, steps=20, seed=0, progress=False)
    b, _ = fresh()
    train(b, arrays, steps=20, seed=0, out_dir=tmp_path, ckpt_every=5, progress=False, stop_at=10)
    meta = json.loads((tmp_path / CKPT / "trainer.json").read_text())
    assert meta["step"] == 10 and set(meta["optimizers"]) == {"generator", "critic"}
    c, _ = fresh()  # a fresh object (step 0): the update schedule comes from the optimizer state
    s = train(c, arrays, steps=20, seed=0, out_dir=tmp_path, resume=True, ckpt_every=5, progress=False)
    assert s["steps"] == 20
    for k in a.nets:
        sa, sc = a.nets[k].state_dict(), c.nets[k].state_dict()
        assert all(torch.equal(sa[n], sc[n]) for n in sa), k
    from safetensors.torch import load_file

    from rehabgen.train import _unflatten_optimizer

    t = load_file(tmp_path / CKPT / "trainer.safetensors")
    plain = json.loads((tmp_path / CKPT / "trainer.json").read_text())["optimizers"]
    critic = _unflatten_optimizer("critic", t, plain["critic"])["state"]
    gen = _unflatten_optimizer("generator", t, plain["generator"])["state"]
    assert len(critic) == len(list(c.nets["critic"].parameters()))
    assert _adam_steps(critic) == {20.0}  # one critic update per training step, across the resume
    assert _adam_steps(gen) == {7.0}  # one generator update every n_critic=3 steps: 0, 3, ..., 18
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert {"loss", "critic", "gp", "gen"} <= set(rows[0].split(","))
