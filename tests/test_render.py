"""Rendering: GIFs of real-layout and generated data, read back and checked."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rehabgen.data.kimore import load_kimore
from rehabgen.render import render_gif
from rehabgen.samples import SamplesError, load_samples, save_samples
from rehabgen.skeleton import KINECT_V2

from conftest import arm_raise


def _frames(path):
    im = Image.open(path)
    out = []
    for k in range(im.n_frames):
        im.seek(k)
        out.append(np.asarray(im.convert("L"), dtype=np.float32))
    return out


def test_render_real_layout_data_side_by_side(kimore_tiny, tmp_path):
    ds = load_kimore(kimore_tiny, exercises=("Es1", "Es2"))
    seqs = [s.positions for s in ds.sequences[:3]]
    out = render_gif(seqs, KINECT_V2, tmp_path / "real.gif", titles=["a", "b", "c"],
                     valid=[s.valid for s in ds.sequences[:3]], max_frames=10)
    frames = _frames(out)
    assert len(frames) == 10
    h, w = frames[0].shape
    assert w > 2.5 * h  # three panels side by side
    assert all(f.std() > 5 for f in frames)  # not blank: a figure is drawn
    assert max(np.abs(frames[0] - f).mean() for f in frames) > 0.5  # and it moves


def test_render_generated_samples_file(tmp_path):
    pos = np.stack([arm_raise(30, seed=i) for i in range(2)]).astype(np.float32)
    f = save_samples(tmp_path / "s.npz", pos, ["Es1", "Es1"], [30.0, 40.0], KINECT_V2, {"seed": 0}, 15.0)
    smp = load_samples(f)
    assert smp["skeleton"] == KINECT_V2 and smp["exercise"].tolist() == ["Es1", "Es1"]
    out = render_gif(list(smp["positions"]), smp["skeleton"], tmp_path / "gen.gif", max_frames=30)
    assert len(_frames(out)) == 30


def test_render_errors(tmp_path):
    with pytest.raises(ValueError, match="nothing to render"):
        render_gif([], KINECT_V2, tmp_path / "x.gif")
    with pytest.raises(ValueError, match=r"expected \(T, 25, 3\)"):
        render_gif([np.zeros((5, 3, 3))], KINECT_V2, tmp_path / "x.gif")
    with pytest.raises(ValueError, match="unsupported animation format '.avi'"):
        render_gif([arm_raise(4)], KINECT_V2, tmp_path / "x.avi")
    assert not list(tmp_path.iterdir())  # no partial files left behind
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(SamplesError, match="bad.npz: not a readable .npz"):
        load_samples(tmp_path / "bad.npz")
