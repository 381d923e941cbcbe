"""Training loop: checkpoints, exact resume, kill + --resume, 2-process data parallel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from rehabgen.models import GenerativeModel, ModelError, SamplerOptions, get_family
from rehabgen.preprocess import PreprocessConfig
from rehabgen.train import CKPT, train

from conftest import toy_dataset

SMALL = dict(d_model=32, n_layers=1, ff=64, n_heads=2, batch_size=8)
PCFG = PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None)


def _fresh():
    torch.manual_seed(0)  # same initial weights
    return get_family("diffusion").from_dataset(toy_dataset(n=16), PCFG, max_len=32, **SMALL)


def _weights(model):
    return {f"{k}.{n}": t.clone() for k, net in model.nets.items() for n, t in net.state_dict().items()}


def test_resume_is_exact(tmp_path):
    a, arrays = _fresh()
    train(a, arrays, steps=40, seed=1, progress=False)
    b, _ = _fresh()
    train(b, arrays, steps=40, seed=1, out_dir=tmp_path, ckpt_every=15, progress=False, stop_at=20)
    assert json.loads((tmp_path / CKPT / "trainer.json").read_text())["step"] == 20
    c = GenerativeModel.load(tmp_path / CKPT / "model")
    s = train(c, arrays, steps=40, seed=1, out_dir=tmp_path, resume=True, ckpt_every=20, progress=False)
    assert s["steps"] == 40
    wa, wc = _weights(a), _weights(c)
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    rows = (tmp_path / "log.csv").read_text().splitlines()
    steps = [int(r.split(",")[0]) for r in rows[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 40  # no duplicated rows after the resume


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    m, arrays = _fresh()
    with pytest.raises(ModelError, match="nothing to resume"):
        train(m, arrays, steps=5, out_dir=tmp_path, resume=True, progress=False)


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "rehabgen.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


@pytest.fixture(scope="module")
def generic_data(tmp_path_factory):
    from rehabgen.data.generic import write_generic

    d = tmp_path_factory.mktemp("toy")
    write_generic(d, toy_dataset(n=24))
    return d


def test_kill_then_resume_continues_from_the_checkpoint(generic_data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(generic_data), "--out", str(run), "--steps", "3000", "--ckpt-every", "10",
            "--max-len", "32", "--fps", "15", "--set", "d_model=32", "--set", "n_layers=1", "--set", "ff=64",
            "--batch-size", "8", "--seed", "3"]
    p = subprocess.Popen([sys.executable, "-m", "rehabgen.cli", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    tj = run / CKPT / "trainer.json"
    t0 = time.time()
    while time.time() - t0 < 120:
        if tj.exists() and json.loads(tj.read_text())["step"] >= 30:
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = json.loads(tj.read_text())["step"]
    assert 30 <= killed_at < 3000
    r = _cli("train", "--out", str(run), "--resume", "--steps", str(killed_at + 20))
    assert r.returncode == 0, r.stderr
    assert json.loads(tj.read_text())["step"] == killed_at + 20
    assert json.loads((run / "train_summary.json").read_text())["steps"] == killed_at + 20
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["hparams"]["d_model"] == 32
    # a second `train` into the same folder without --resume refuses to overwrite it
    r = _cli(*args)
    assert r.returncode == 2 and "already holds a run" in r.stderr


def test_two_process_data_parallel_training(generic_data, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "rehabgen.cli", "train", "--data", str(generic_data), "--out", str(run), "--steps", "20",
           "--ckpt-every", "10", "--max-len", "32", "--fps", "15", "--set", "d_model=32", "--set", "n_layers=1",
           "--set", "ff=64", "--batch-size", "4"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((run / "train_summary.json").read_text())
    assert s["world_size"] == 2 and s["steps"] == 20
    # the checkpoint has the same format as a single-process one and loads
    m = GenerativeModel.load(run / "model")
    single, _ = _fresh()
    assert set(_weights(m)) == set(_weights(single))
    x = m.sample("Es1", 30.0, n=2, seed=0, options=SamplerOptions(steps=5))
    assert x.shape[0] == 2 and np.isfinite(x).all()


def test_time_budget_stops_and_checkpoints(tmp_path):
    m, arrays = _fresh()
    s = train(m, arrays, steps=100_000, seed=0, out_dir=tmp_path, max_minutes=0.03, progress=False)
    # how many steps fit in 1.8 s depends on the machine's load (3 on a loaded CI worker): the
    # time limit, not a step count, is what must have stopped it
    assert s["stop_reason"] == "time limit (--minutes 0.03)" and s["stopped_early"]
    assert 0 < s["steps"] < 100_000
    assert json.loads((tmp_path / CKPT / "trainer.json").read_text())["step"] == s["steps"]
    assert GenerativeModel.load(tmp_path / "model").step == s["steps"]
