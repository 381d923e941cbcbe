"""The contract every registered model family must honour (runs on each family present), and
a family defined here, outside the package, that gets the contract test and completion from
one class and a capability flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from torch import nn

from rehabgen.models import (
    Capabilities, GenerativeModel, ModelError, SamplerOptions, families, get_family, register_family,
)
from rehabgen.models.inpainting import complete_sequence
from rehabgen.preprocess import PreprocessConfig
from rehabgen.train import train

from conftest import toy_dataset

PCFG = PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None)
TINY = {"diffusion": dict(d_model=32, n_layers=1, ff=64, n_heads=2)}


class MeanPoseModel(GenerativeModel):
    """A deliberately simple family: a learned pose per exercise plus noise, which inpaints by
    keeping the known values. Defined in a test to show that a new family is one class."""

    family = "meanpose"
    defaults = {"noise": 0.1}
    capabilities = Capabilities(inpaint=True, options=("temperature",))

    def build(self):
        return {"pose": nn.Embedding(len(self.spec.exercises) + 1, self.spec.dim)}

    def loss(self, nets, batch):
        pred = nets["pose"](batch["exercise"])[:, None].expand_as(batch["z"])
        m = batch["observed"].repeat_interleave(3, -1).float()
        loss = ((pred - batch["z"]) ** 2 * m).sum() / m.sum().clamp_min(1)
        return loss, {}

    def generate(self, exercise, score, length, generator, options, text=None):
        t = 1.0 if options.temperature is None else options.temperature
        pose = self.nets["pose"](exercise)[:, None].expand(-1, length, -1)
        return pose + t * self.hparams["noise"] * torch.randn(pose.shape, generator=generator)

    def inpaint(self, exercise, score, known, known_mask, generator, options):
        x = self.generate(exercise, score, known.shape[1], generator, options)
        km = known_mask.repeat_interleave(3, -1)
        return torch.where(km, known, x)


register_family("meanpose", MeanPoseModel)


@pytest.fixture(scope="module")
def data():
    return toy_dataset(n=16)


def test_a_family_from_outside_the_package(data, tmp_path):
    """One class + a capability flag: the contract test below runs on it (it is in `families()`)
    and completion works on it, without any change to the package."""
    assert "meanpose" in families() and get_family("meanpose") is MeanPoseModel
    model, arrays = MeanPoseModel.from_dataset(data, PCFG, max_len=32, batch_size=8, lr=0.05)
    train(model, arrays, steps=60, seed=0, progress=False)
    seq = data.sequences[0]
    res = complete_sequence(model, seq, data.fps, seed=0, drop_frames=(5, 10))
    known, pos = res["known"], res["positions"]
    assert not known[5:10].any() and known[:5].all()
    np.testing.assert_allclose(pos[known], res["observed"][known], atol=1e-4)
    assert np.isfinite(pos).all()
    # the filled frames are the learned pose: near the real body (metres), not at the origin
    assert np.abs(pos[5:10] - pos[4]).mean() < 0.3
    again = complete_sequence(model, seq, data.fps, seed=0, drop_frames=(5, 10))
    np.testing.assert_array_equal(again["positions"], pos)
    with pytest.raises(ModelError, match=r"meanpose family has no sampler option\(s\) \['steps'\]"):
        model.sample("Es1", 30.0, options=SamplerOptions(steps=3))
    with pytest.raises(ModelError, match="trained without text"):
        model.sample_text("arms up")


def test_sampling_uses_the_averaged_weights_in_eval_mode(data):
    """model.inference(): EMA weights in, eval mode, and everything restored afterwards."""
    model, arrays = MeanPoseModel.from_dataset(data, PCFG, max_len=32, batch_size=8, lr=0.05, ema=0.9)
    train(model, arrays, steps=30, seed=0, progress=False)
    raw = {k: v.clone() for k, v in model.nets["pose"].state_dict().items()}
    assert not torch.equal(raw["weight"], model.ema["pose"]["weight"])  # the average lags the weights
    averaged = MeanPoseModel(model.spec, **{k: v for k, v in model.hparams.items() if k != "ema"})
    averaged.nets["pose"].load_state_dict(model.ema["pose"])
    x = model.sample("Es1", 30.0, n=2, length=8, seed=4)
    np.testing.assert_array_equal(x, averaged.sample("Es1", 30.0, n=2, length=8, seed=4))
    model.nets["pose"].train()
    model.sample("Es1", 30.0, n=1, length=8)
    assert model.nets["pose"].training and torch.equal(model.nets["pose"].weight, raw["weight"])


@pytest.mark.parametrize("family", families())
def test_family_contract(family, data, tmp_path):
    torch.manual_seed(0)
    cls = get_family(family)
    assert cls.family == family and issubclass(cls, GenerativeModel)
    model, arrays = cls.from_dataset(data, PCFG, max_len=32, batch_size=8, **TINY.get(family, {}))
    summary = train(model, arrays, steps=6, seed=0, out_dir=tmp_path / "run", ckpt_every=3, progress=False)
    assert summary["steps"] == 6 and np.isfinite(summary["final_loss_ema"])
    # sample: (n, T, J, 3) metres, default length per exercise, reproducible
    x = model.sample("Es2", 30.0, n=3, seed=0)
    assert x.shape == (3, model.spec.default_length["Es2"], data.skeleton.n_joints, 3)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, model.sample("Es2", 30.0, n=3, seed=0))
    assert model.sample(["Es1", "Es2"], [10.0, 40.0], n=2, length=12, seed=1).shape == (2, 12, 25, 3)
    assert model.sample("Es1", None, n=1, length=12).shape == (1, 12, 25, 3)  # score left free
    # save / load: safetensors + JSON only, identical samples, family resolved from metadata
    path = model.save(tmp_path / "m")
    meta = json.loads((path / "model.json").read_text())
    assert meta["family"] == family and meta["spec"]["skeleton"]["joints"][0] == "SpineBase"
    assert {"mean", "std", "ref_scale", "ref_offset"} <= set(meta["spec"]["normalizer"])
    for name in ("model.safetensors", "model.json"):
        assert (path / name).is_file()
    again = GenerativeModel.load(path)
    assert type(again) is cls
    np.testing.assert_array_equal(again.sample("Es2", 30.0, n=3, seed=0), x)
    # the training run wrote a loadable final model and checkpoint of the same format
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert GenerativeModel.load(tmp_path / "run" / "checkpoint" / "model").family == family
    with pytest.raises(ModelError, match="unknown exercise"):
        model.sample("Es7", 30.0)


def test_unknown_family_and_hparams(data):
    with pytest.raises(ModelError, match="unknown model family 'flow'"):
        get_family("flow")
    with pytest.raises(ModelError, match=r"unknown hyper-parameter\(s\) \['d_modle'\]"):
        get_family("diffusion").from_dataset(data, PCFG, max_len=32, d_modle=3)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        GenerativeModel.load(tmp_path)
