"""The contract every registered model family must honour (runs on each family present)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rehabgen.models import GenerativeModel, ModelError, families, get_family
from rehabgen.preprocess import PreprocessConfig
from rehabgen.train import train

from conftest import toy_dataset

PCFG = PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None)
TINY = {"diffusion": dict(d_model=32, n_layers=1, ff=64, n_heads=2)}


@pytest.fixture(scope="module")
def data():
    return toy_dataset(n=16)


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
