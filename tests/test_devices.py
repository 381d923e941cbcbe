"""Devices and precision: one-line errors without a GPU, models that move, same seed -> same output.

Tests marked `cuda` run only where a CUDA device is present (`pytest -m cuda` on a GPU machine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rehabgen.cli import app
from rehabgen.devices import DeviceError, check_precision, resolve_device
from rehabgen.metrics.evaluator import train_fcn
from rehabgen.models import SamplerOptions, get_family
from rehabgen.models.inpainting import complete_sequence
from rehabgen.preprocess import PreprocessConfig
from rehabgen.train import train

from conftest import toy_dataset

HAS_CUDA = torch.cuda.is_available()
cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device here")
TINY = dict(d_model=32, n_layers=1, ff=64, n_heads=4, batch_size=16, lr=1e-3)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    ds = toy_dataset(n=24, T=40)
    model, arrays = get_family("diffusion").from_dataset(ds, PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None),
                                                         max_len=24, **TINY)
    train(model, arrays, steps=30, seed=0, progress=False)
    return ds, model


def test_resolve_device_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(DeviceError, match="--device cuda: no CUDA device here .*use --device cpu or auto"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="--device cuda:1: no CUDA device"):
        resolve_device("cuda:1")
    with pytest.raises(DeviceError, match="expected cuda or cuda:N"):
        resolve_device("cuda:x")
    with pytest.raises(DeviceError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(DeviceError, match="expected one of fp32, bf16, fp16"):
        check_precision("fp8", torch.device("cpu"))


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on machines without a GPU")
@pytest.mark.parametrize("cmd", [["sample", "RUN", "--out", "x.npz", "--exercise", "Es1"],
                                 ["evaluate", "RUN", "--data", "D", "--out", "R"],
                                 ["distill", "RUN", "--out", "F"]])
def test_cli_cuda_without_gpu_is_one_line(tmp_path, monkeypatch, cmd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RUN" / "model").mkdir(parents=True)
    (tmp_path / "RUN" / "model" / "model.json").write_text("{}")
    res = CliRunner().invoke(app, [*cmd, "--device", "cuda"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert any(ln.startswith("error: --device cuda: no CUDA device here") for ln in lines), res.output
    assert "Traceback" not in res.output


def test_precision_fp16_on_cpu_is_refused_before_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["sample", "RUN", "--out", "x.npz", "--exercise", "Es1", "--device", "cpu",
                                   "--precision", "fp16"])
    assert res.exit_code == 2 and "error: --precision fp16 needs a CUDA device" in res.output


def test_model_device_and_bf16_sampling(tiny):
    _, model = tiny
    assert model.device == torch.device("cpu")
    a = model.sample("Es1", 30.0, n=4, seed=1, options=SamplerOptions(steps=8))
    b = model.sample("Es1", 30.0, n=4, seed=1, options=SamplerOptions(steps=8))
    np.testing.assert_array_equal(a, b)  # same seed, same device: identical
    model.to("cpu", "bf16")
    try:
        c = model.sample("Es1", 30.0, n=4, seed=1, options=SamplerOptions(steps=8))
    finally:
        model.to("cpu", "fp32")
    assert c.dtype == np.float32 and np.isfinite(c).all()
    spread = np.abs(a - model.sample("Es1", 30.0, n=4, seed=2, options=SamplerOptions(steps=8))).mean()
    assert 0 < np.abs(a - c).mean() < 0.25 * spread  # bf16 rounding, far below seed-to-seed differences


def test_complete_same_seed_identical(tiny):
    ds, model = tiny
    seq = ds.sequences[0]
    r1 = complete_sequence(model, seq, ds.fps, seed=3, drop_frames=(4, 9), options=SamplerOptions(steps=8))
    r2 = complete_sequence(model, seq, ds.fps, seed=3, drop_frames=(4, 9), options=SamplerOptions(steps=8))
    np.testing.assert_array_equal(r1["positions"], r2["positions"])


def test_train_fcn_returns_a_cpu_network_with_the_same_result_on_cpu():
    x = np.random.default_rng(0).normal(size=(20, 16, 6)).astype(np.float32)
    y = np.arange(20) % 2
    a = train_fcn(x, 5, 0, labels=y, n_classes=2)
    b = train_fcn(x, 5, 0, labels=y, n_classes=2, device="cpu")
    assert next(a.parameters()).device.type == "cpu"
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


# ---- on a GPU ------------------------------------------------------------------------------------
@pytest.mark.cuda
@cuda
def test_cuda_samples_match_cpu_samples(tiny):
    _, model = tiny
    cpu = model.sample("Es1", 30.0, n=8, seed=4, options=SamplerOptions(steps=8))
    model.to("cuda")
    try:
        assert model.device.type == "cuda"
        gpu = model.sample("Es1", 30.0, n=8, seed=4, options=SamplerOptions(steps=8))
        again = model.sample("Es1", 30.0, n=8, seed=4, options=SamplerOptions(steps=8))
        half = model.to("cuda", "fp16").sample("Es1", 30.0, n=8, seed=4, options=SamplerOptions(steps=8))
    finally:
        model.to("cpu", "fp32")
    # the same noise on both devices: only arithmetic differs
    assert np.abs(gpu - cpu).max() < 1e-3
    np.testing.assert_allclose(gpu, again, atol=1e-5)
    assert np.isfinite(half).all() and np.abs(half - cpu).mean() < 0.02


@pytest.mark.cuda
@cuda
def test_cuda_completion_and_training(tiny, tmp_path):
    ds, model = tiny
    model.to("cuda")
    try:
        r = complete_sequence(model, ds.sequences[1], ds.fps, seed=0, drop_frames=(2, 6), options=SamplerOptions(steps=6))
        assert np.isfinite(r["positions"]).all()
    finally:
        model.to("cpu")
    x = np.random.default_rng(0).normal(size=(20, 16, 6)).astype(np.float32)
    net = train_fcn(x, 5, 0, labels=np.arange(20) % 2, n_classes=2, device="cuda")
    assert next(net.parameters()).device.type == "cpu"
