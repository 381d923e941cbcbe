"""Diffusion model: learning, guidance, samplers, masked loss, completion, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rehabgen.models import ModelError, get_family
from rehabgen.models import SamplerOptions
from rehabgen.models.inpainting import complete_sequence
from rehabgen.models.diffusion import make_scheduler
from rehabgen.preprocess import PreprocessConfig
from rehabgen.train import train

from conftest import toy_dataset

# x0-prediction without the acceleration loss: these toy checks (conditioning, masking, completion)
# can afford 300 steps, where x0-prediction has converged and the default v-prediction still
# carries jitter; v-prediction and the acceleration loss have their own tests below
SMALL = dict(d_model=64, n_layers=2, ff=128, n_heads=4, dropout=0.0, batch_size=16, lr=1e-3, prediction="sample",
             w_acc=0.0)
PCFG = PreprocessConfig(fps=15.0, detect_invalid=False, smooth=None)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)  # initial weights
    ds = toy_dataset()
    M = get_family("diffusion")
    model, arrays = M.from_dataset(ds, PCFG, max_len=32, **SMALL)
    summary = train(model, arrays, steps=300, seed=0, progress=False)
    return ds, model, arrays, summary


def _wrist_height_range(p):
    from rehabgen.skeleton import KINECT_V2

    w = KINECT_V2.index("WristLeft")
    return p[:, :, w, 1].max(1) - p[:, :, w, 1].min(1)


def _lateral_range(p):
    from rehabgen.skeleton import KINECT_V2

    w = KINECT_V2.index("WristLeft")
    return p[:, :, w, 0].max(1) - p[:, :, w, 0].min(1)


def test_loss_falls_and_samples_beat_noise(trained):
    ds, model, arrays, summary = trained
    assert summary["final_loss_ema"] < 0.5 * summary["first_loss"]
    x = model.sample("Es1", 40.0, n=8, seed=0, options=SamplerOptions(steps=20))
    assert x.shape == (8, model.spec.default_length["Es1"], 25, 3) and np.isfinite(x).all()
    # bone lengths of samples stay near the data's, far better than an untrained model
    ref = np.median(ds.skeleton.bone_lengths(np.stack([s.positions for s in ds.sequences])), axis=(0, 1))
    dev = np.abs(ds.skeleton.bone_lengths(x) / ref - 1).mean()
    untrained = get_family("diffusion")(model.spec, **SMALL)
    dev0 = np.abs(ds.skeleton.bone_lengths(untrained.sample("Es1", 40.0, n=8, seed=0, options=SamplerOptions(steps=20))) / ref - 1).mean()
    assert dev < 0.15 and dev < 0.5 * dev0


def test_conditioning_controls_exercise_and_score(trained):
    _, model, _, _ = trained
    fwd = model.sample("Es1", 45.0, n=8, seed=1)
    side = model.sample("Es2", 45.0, n=8, seed=1)
    # Es2 (sideways) moves the wrist laterally far more than Es1 (forward)
    assert _lateral_range(side).mean() > 2 * _lateral_range(fwd).mean()
    low = model.sample("Es1", 15.0, n=8, seed=2)
    high = model.sample("Es1", 48.0, n=8, seed=2)
    assert _wrist_height_range(high).mean() > _wrist_height_range(low).mean() + 0.1


def test_score_control_is_smooth_between_training_scores(trained):
    """Scores the data never had: the motion must follow them monotonically, and a score a
    fraction of a point away must give nearly the same motion (a high-frequency score
    embedding memorised training scores and jumped between neighbours)."""
    _, model, _, _ = trained
    scores = [23.7, 30.2, 36.9, 43.4, 49.0]  # inside the data's range (TS 22-50)
    r = [_wrist_height_range(model.sample("Es1", s, n=8, seed=3)).mean() for s in scores]
    assert all(b > a - 0.03 for a, b in zip(r, r[1:])) and r[-1] > r[0] + 0.15, r
    for s in (22.0, 37.0, 43.0):
        a = _wrist_height_range(model.sample("Es1", s, n=8, seed=4)).mean()
        b = _wrist_height_range(model.sample("Es1", s + 0.4, n=8, seed=4)).mean()
        assert abs(a - b) < 0.05, (s, a, b)


def test_same_seed_same_samples_and_samplers(trained):
    _, model, _, _ = trained
    a = model.sample("Es2", 30.0, n=3, seed=5, options=SamplerOptions(steps=10))
    b = model.sample("Es2", 30.0, n=3, seed=5, options=SamplerOptions(steps=10))
    c = model.sample("Es2", 30.0, n=3, seed=6, options=SamplerOptions(steps=10))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    for sampler in ("ddim", "ddpm"):
        x = model.sample("Es2", 30.0, n=2, seed=0, options=SamplerOptions(sampler, 25), length=20)
        assert x.shape == (2, 20, 25, 3) and np.isfinite(x).all()


def test_bad_sampling_requests_are_named(trained):
    _, model, _, _ = trained
    with pytest.raises(ModelError, match="unknown exercise 'Es9'"):
        model.sample("Es9", 30.0)
    with pytest.raises(ModelError, match=r"score 70 outside the TS range \[0, 50\]"):
        model.sample("Es1", 70.0)
    with pytest.raises(ModelError, match="length 500 outside"):
        model.sample("Es1", 30.0, length=500)
    with pytest.raises(ModelError, match="unknown sampler 'euler'"):
        model.sample("Es1", 30.0, options=SamplerOptions(sampler="euler"))
    with pytest.raises(ModelError, match="--steps must be between 1 and 1000"):
        make_scheduler("dpm", dict(model.train_scheduler.config), 0)


def test_save_load_roundtrip(trained, tmp_path):
    _, model, _, _ = trained
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]
    again = get_family("diffusion").load(tmp_path / "m")
    np.testing.assert_array_equal(model.sample("Es1", 20.0, n=2, seed=3), again.sample("Es1", 20.0, n=2, seed=3))
    (tmp_path / "m" / "model.json").write_text("{broken")
    with pytest.raises(ModelError, match="model.json: not valid JSON"):
        get_family("diffusion").load(tmp_path / "m")


def test_loss_ignores_invalid_joints():
    """Whatever sits at joints the data layer marked invalid can't change the loss."""
    ds = toy_dataset(n=8, garbage_joint=7)
    model, arrays = get_family("diffusion").from_dataset(ds, PCFG, max_len=32, **SMALL)
    from rehabgen.train import _tensors

    batch = _tensors(arrays)
    other = dict(batch)
    z = batch["z"].clone()
    m = ~batch["observed"][..., None].expand(*batch["observed"].shape, 3).reshape(z.shape)
    assert m.any()
    z[m] = 123.0
    other["z"] = z
    # feed the network the same noisy input whatever x0 is, so only the targets differ
    model.train_scheduler.add_noise = lambda x0, noise, t: noise
    torch.manual_seed(0)
    l1, _ = model.loss(model.nets, batch)
    torch.manual_seed(0)
    l2, _ = model.loss(model.nets, other)
    assert float(l1.detach()) == float(l2.detach())
    # control: with every joint declared observed, the garbage does count
    model.hparams["loss_on_filled"] = True
    torch.manual_seed(0)
    l3, _ = model.loss(model.nets, dict(other, mask=torch.ones_like(batch["mask"])))
    assert l3 > 10 * l1


def test_model_trained_on_masked_garbage_does_not_reproduce_it():
    ds = toy_dataset(garbage_joint=7)  # HandLeft at +5 m in 40% of frames, marked invalid
    model, arrays = get_family("diffusion").from_dataset(ds, PCFG, max_len=32, **SMALL)
    train(model, arrays, steps=200, seed=0, progress=False)
    x = model.sample("Es1", 40.0, n=8, seed=0)
    hand, wrist = 7, 6
    d = np.linalg.norm(x[:, :, hand] - x[:, :, wrist], axis=-1)
    assert np.abs(x).max() < 4.0  # nothing near the +5 m garbage
    assert np.median(d) < 0.2  # the hand stays at the wrist (true bone: ~0.08 m)


def test_completion_keeps_observed_and_fills_missing(trained):
    ds, model, _, _ = trained
    seq = ds.sequences[0]
    res = complete_sequence(model, seq, ds.fps, seed=0, drop_frames=(8, 14), options=SamplerOptions(steps=20))
    known, pos, obs = res["known"], res["positions"], res["observed"]
    assert not known[8:14].any() and known[:8].all()
    np.testing.assert_allclose(pos[known], obs[known], atol=1e-4)
    assert np.isfinite(pos).all()
    # the filled frames continue the motion: closer to the truth than a frozen last frame
    from rehabgen.preprocess import resample

    truth = resample(seq, res["positions"].shape[0]).positions
    err = np.abs(pos[8:14] - truth[8:14]).mean()
    assert err < 0.1
    # the same seed gives the same completion: eval mode and the averaged weights, every time
    again = complete_sequence(model, seq, ds.fps, seed=0, drop_frames=(8, 14), options=SamplerOptions(steps=20))
    np.testing.assert_array_equal(again["positions"], pos)
    assert all(net.training is False for net in model.nets.values())
    # a family that doesn't declare inpainting is refused, whatever its name
    with pytest.raises(ModelError, match="completion needs a family that can inpaint"):
        complete_sequence(get_family("vae")(model.spec), seq, ds.fps)


def test_score_guidance_scales_only_the_scores_own_effect():
    """A stub denoiser whose output is 1 (unconditional), 3 (conditions but no score) or 4 (all):
    guidance g=2 gives u + 2 (c - u) = 7; a score scale of 5 gives u + 2 (c' - u) + 5 (c - c') = 10."""
    from rehabgen.models.diffusion import DiffusionModel

    def stub(x, t, ex, sc, pad=None, drop_ex=None, drop_sc=None, text=None, drop_text=None):
        out = torch.ones_like(x)
        if drop_ex is not None:
            out = out + 2 * (~drop_ex)[:, None, None] + (~drop_sc)[:, None, None]
        else:
            out = out + 3
        return out

    x, t = torch.zeros(2, 4, 3), torch.zeros(2, dtype=torch.long)
    ex, sc = torch.zeros(2, dtype=torch.long), torch.tensor([0.5, 0.7])
    g = DiffusionModel._guided
    assert torch.all(g(stub, x, t, ex, sc, None, 2.0) == 7)
    assert torch.all(g(stub, x, t, ex, sc, None, 2.0, 2.0) == 7)
    assert torch.all(g(stub, x, t, ex, sc, None, 2.0, 5.0) == 10)
    assert torch.all(g(stub, x, t, ex, torch.full((2,), float("nan")), None, 2.0, 5.0) == 7)  # no score: no term


def test_band_guidance_scales_each_frequency_band_of_the_guided_difference():
    """Known answer: c - u is a constant plus one DCT cosine in each band (drift < 0.1 Hz,
    repetitions 0.1-0.5 Hz, fast above). Guidance per band gives u + g*const + g_drift*drift +
    g_rep*rep + g*fast; one scale for all bands is exactly the classic u + g (c - u); the score's
    own term (a separate score scale) is not band-scaled."""
    from rehabgen.metrics.plausibility import BANDS
    from rehabgen.models.diffusion import DRIFT_HZ, REPETITION_HZ, DiffusionModel, _dct_matrix, band_scales

    assert (DRIFT_HZ, REPETITION_HZ) == (BANDS[0][2], BANDS[1][2])  # the bands the metrics report
    T, fps = 80, 5.0  # coefficient k is k * 5 / 160 Hz: 1-3 drift, 4-15 repetitions, 16+ fast
    C = _dct_matrix(T)
    torch.testing.assert_close(C @ C.T, torch.eye(T), atol=1e-5, rtol=0)  # orthonormal
    const, drift, rep, fast = torch.ones(T), C[2] * 3, C[8] * 2, C[30]
    u = torch.linspace(-1, 1, T)

    def stub(x, t, ex, sc, pad=None, drop_ex=None, drop_sc=None, text=None, drop_text=None):
        cond = (~drop_ex).float()[:, None, None]  # 1 for the conditional branch, 0 unconditional
        score = (~drop_sc).float()[:, None, None]
        out = u[None, :, None] + cond * (const + drift + rep + fast)[None, :, None] + score * 0.5
        return out.expand(x.shape[0], T, 2)

    x, t = torch.zeros(2, T, 2), torch.zeros(2, dtype=torch.long)
    ex, sc = torch.zeros(2, dtype=torch.long), torch.tensor([0.5, 0.7])
    g = DiffusionModel._guided
    s = band_scales(T, fps, 1.75, 1.0, 2.5)
    assert s[0] == 1.75 and torch.all(s[1:4] == 1.0) and torch.all(s[4:16] == 2.5) and torch.all(s[16:] == 1.75)
    want = u + 1.75 * (const + 0.5) + 1.0 * drift + 2.5 * rep + 1.75 * fast  # the score shifts the mean only
    torch.testing.assert_close(g(stub, x, t, ex, sc, None, 1.75, None, s)[0, :, 0], want, atol=1e-5, rtol=0)
    # a separate score scale: the score's own term (+0.5, constant) at 4, the rest per band
    want_sg = u + 1.75 * const + 1.0 * drift + 2.5 * rep + 1.75 * fast + 4 * 0.5
    torch.testing.assert_close(g(stub, x, t, ex, sc, None, 1.75, 4.0, s)[0, :, 0], want_sg, atol=1e-5, rtol=0)
    # one scale everywhere: no band scales at all, the classic combination
    assert band_scales(T, fps, 1.75, None, 1.75) is None and band_scales(T, fps, 2.0, 2.0, None) is None
    classic = u + 1.75 * (const + drift + rep + fast + 0.5)
    torch.testing.assert_close(g(stub, x, t, ex, sc, None, 1.75)[0, :, 0], classic, atol=1e-5, rtol=0)
    uniform = torch.full((T,), 1.75)
    torch.testing.assert_close(g(stub, x, t, ex, sc, None, 1.75, None, uniform)[0, :, 0], classic, atol=1e-5, rtol=0)


def test_models_saved_before_band_guidance_keep_one_scale(tmp_path):
    """A checkpoint without the band keys samples as before (one scale); a new model has the
    measured defaults, and each band option changes the samples."""
    import json

    from rehabgen.models import GenerativeModel

    ds = toy_dataset(n=8)
    M = get_family("diffusion")
    model, _ = M.from_dataset(ds, PCFG, max_len=16, **SMALL)
    assert (model.hparams["drift_guidance"], model.hparams["repetition_guidance"]) == (1.0, None)
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    del meta["hparams"]["drift_guidance"], meta["hparams"]["repetition_guidance"]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    old = GenerativeModel.load(tmp_path / "m")
    assert (old.hparams["drift_guidance"], old.hparams["repetition_guidance"]) == (None, None)
    opts = SamplerOptions(steps=3)
    g = model.hparams["guidance"]
    one = model.sample("Es1", 30.0, length=16, n=2, seed=0, options=SamplerOptions(steps=3, drift_guidance=g))
    np.testing.assert_array_equal(old.sample("Es1", 30.0, length=16, n=2, seed=0, options=opts), one)
    # 16 frames at 15 fps: coefficient 1 (0.47 Hz) is the repetition band
    rep = model.sample("Es1", 30.0, length=16, n=2, seed=0, options=SamplerOptions(steps=3, repetition_guidance=4.0))
    assert np.abs(rep - one).max() > 1e-4
    with pytest.raises(ModelError, match="no sampler option"):
        get_family("gan")(model.spec).check_options(SamplerOptions(repetition_guidance=2.0))


def test_v_prediction_round_trip_and_training():
    """x0 = a x_t - s v with v = a eps - s x0: the conversion the sampler uses is exact; a
    v-prediction model (with snr-capped weights and the acceleration loss) trains and samples."""
    ds = toy_dataset(n=16)
    M = get_family("diffusion")
    model, arrays = M.from_dataset(ds, PCFG, max_len=32, **{**SMALL, "prediction": "v", "w_acc": 1.0})
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 8, 75, generator=g), torch.randn(3, 8, 75, generator=g)
    t = torch.tensor([5, 500, 990])
    a, s = model._alpha_sigma(t, x0)
    x_t = model.train_scheduler.add_noise(x0, eps, t)
    torch.testing.assert_close(model._to_x0(a * eps - s * x0, x_t, a, s), x0, atol=1e-4, rtol=1e-4)
    summary = train(model, arrays, steps=30, seed=0, progress=False)
    assert np.isfinite(summary["final_loss_ema"]) and summary["final_loss_ema"] < summary["first_loss"]
    x = model.sample("Es1", 30.0, n=2, seed=0, options=SamplerOptions(steps=5))
    assert x.shape == (2, model.spec.default_length["Es1"], 25, 3) and np.isfinite(x).all()
    with pytest.raises(ModelError, match="prediction must be one of 'sample', 'v', got 'eps'"):
        M.from_dataset(ds, PCFG, max_len=32, **{**SMALL, "prediction": "eps"})


def test_snr_capped_weights_and_acceleration_loss_known_answers():
    from rehabgen.models.layers import acceleration_loss, masked_mse

    pred, target = torch.zeros(2, 5, 3), torch.ones(2, 5, 3)
    mask = torch.ones(2, 5, 1, dtype=torch.bool)
    w = torch.tensor([1.0, 3.0])[:, None, None]
    assert float(masked_mse(pred, target, mask, w)) == pytest.approx(2.0)  # mean of weights x squared error 1
    ramp = torch.arange(5.0)[None, :, None].expand(2, 5, 3)  # constant velocity: no acceleration
    assert float(acceleration_loss(ramp, torch.zeros_like(ramp), mask)) == 0.0
    kink = torch.zeros(2, 5, 3)
    kink[:, 2] = 1.0  # second difference -2 at frame 2, +1 at frames 1 and 3
    assert float(acceleration_loss(kink, torch.zeros_like(kink), mask)) == pytest.approx((1 + 4 + 1) / 3)


def test_kinematic_losses_in_the_networks_own_space():
    """kinematic_space="output" compares velocity/acceleration of the network's v with the true
    v (x0's error divided by sigma_t): the same draw gives the same reconstruction term and a
    different total; an unknown space is named."""
    from rehabgen.train import _tensors

    ds = toy_dataset(n=8)
    M = get_family("diffusion")
    losses = {}
    for space in ("x0", "output"):
        torch.manual_seed(0)
        model, arrays = M.from_dataset(ds, PCFG, max_len=32, **{**SMALL, "prediction": "v", "w_acc": 1.0,
                                                                "kinematic_space": space})
        batch = {k: v[:4] for k, v in _tensors(arrays).items()}
        torch.manual_seed(1)
        losses[space] = model.loss(model.nets, batch)
    (lx, ix), (lo, io) = losses["x0"], losses["output"]
    assert ix["rec"] == pytest.approx(io["rec"]) and ix["vel"] != pytest.approx(io["vel"])
    assert float(lx) != pytest.approx(float(lo))
    with pytest.raises(ModelError, match="kinematic_space must be one of 'x0', 'output', got 'v'"):
        M.from_dataset(ds, PCFG, max_len=32, **{**SMALL, "kinematic_space": "v"})


def test_kinematic_weight_signal_weighs_low_noise_steps():
    """The kinematic losses take per-sample weights: weight 0 removes a sample's term, and the
    "signal" weighting is accepted while an unknown one is named."""
    from rehabgen.models.layers import acceleration_loss, velocity_loss

    kink = torch.zeros(2, 5, 3)
    kink[0, 2] = 1.0
    mask = torch.ones(2, 5, 1, dtype=torch.bool)
    zero = torch.zeros_like(kink)
    w = torch.tensor([0.0, 1.0])[:, None, None]
    assert float(acceleration_loss(kink, zero, mask, w)) == 0.0 and float(velocity_loss(kink, zero, mask, w)) == 0.0
    assert float(acceleration_loss(kink, zero, mask)) > 0
    ds = toy_dataset(n=8)
    M = get_family("diffusion")
    M.from_dataset(ds, PCFG, max_len=32, **{**SMALL, "prediction": "v", "kinematic_weight": "signal"})
    with pytest.raises(ModelError, match="kinematic_weight must be one of 'uniform', 'signal', got 'snr'"):
        M.from_dataset(ds, PCFG, max_len=32, **{**SMALL, "kinematic_weight": "snr"})


def test_distilled_student_follows_the_teacher_in_few_steps(trained, tmp_path):
    """The student samples in 1 network evaluation what the teacher samples in 10 guided DPM
    steps (20 evaluations): much closer to the teacher's output, same seed, than the teacher's
    own 1-step sampler (the mean motion); it keeps the score control and survives save/load."""
    from rehabgen.models.distill import distill, student_grid

    _, model, arrays, _ = trained
    assert student_grid([999, 899, 799, 699], 2, "even") == ([999, 799], [0, 2])
    twenty = list(range(999, 0, -50))
    assert student_grid(twenty, 4)[1] == [0, 9, 15, 19]  # the default: dense where the noise is low
    assert student_grid(twenty, 20, "late")[1] == list(range(20))
    with pytest.raises(ModelError, match="student grid must be one of even, late, got 'odd'"):
        student_grid(twenty, 4, "odd")
    student, summary = distill(model, arrays, student_steps=1, teacher_steps=10, n_trajectories=64, steps=200,
                               batch=32, lr=5e-4, seed=0, progress=False)
    assert summary["network_evaluations"] == {"teacher": 20, "student": 1} and summary["grid"] == "late"
    assert student.hparams["sampler"] == "distilled" and student.hparams["guidance"] == 1.0
    teacher = model.sample("Es1", 40.0, n=16, seed=7, options=SamplerOptions("dpm", 10))
    fast = student.sample("Es1", 40.0, n=16, seed=7)
    naive = model.sample("Es1", 40.0, n=16, seed=7, options=SamplerOptions("dpm", 1))
    err, err_naive = np.abs(fast - teacher).mean(), np.abs(naive - teacher).mean()
    assert err < 0.7 * err_naive, (err, err_naive)  # measured 0.0064 vs 0.0126 m (the student starts at 1.0x)
    low = student.sample("Es1", 15.0, n=8, seed=2)
    high = student.sample("Es1", 48.0, n=8, seed=2)
    assert _wrist_height_range(high).mean() > _wrist_height_range(low).mean() + 0.1
    with pytest.raises(ModelError, match=r"samples in exactly 1 steps .* got --steps 3"):
        student.sample("Es1", 40.0, options=SamplerOptions(steps=3))
    with pytest.raises(ModelError, match="needs a distilled model"):
        model.sample("Es1", 40.0, options=SamplerOptions(sampler="distilled"))
    student.save(tmp_path / "student")
    again = type(student).load(tmp_path / "student")
    assert again.hparams["student_timesteps"] == summary["student_timesteps"]
    np.testing.assert_array_equal(again.sample("Es1", 40.0, n=4, seed=7), student.sample("Es1", 40.0, n=4, seed=7))


def test_schedule_shift_divides_every_snr_and_samplers_share_it():
    """shift s: SNR_t / s^2 at every training step, the same schedule in the model, its samplers
    and its saved copy; shift 1 is the plain schedule; a shift <= 0 is refused by name."""
    from rehabgen.models.diffusion import shifted_betas
    from diffusers import DDPMScheduler

    base = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    snr0 = base / (1 - base)
    ds = toy_dataset(n=8)
    M = get_family("diffusion")
    model, arrays = M.from_dataset(ds, PCFG, max_len=32, **{**SMALL, "schedule_shift": 4.0})
    acp = model.train_scheduler.alphas_cumprod.double()
    ratio = (acp / (1 - acp)) / snr0
    torch.testing.assert_close(ratio[:999], torch.full((999,), 1 / 16, dtype=torch.float64), rtol=1e-3, atol=0)
    assert float(acp[950] / (1 - acp[950])) == pytest.approx(0.00585 / 16, rel=1e-2)  # cosine's 0.00585 at t=950
    dpm = model.scheduler(SamplerOptions(steps=10))
    torch.testing.assert_close(dpm.alphas_cumprod.double(), acp.float().double(), rtol=1e-5, atol=1e-9)
    plain, _ = M.from_dataset(ds, PCFG, max_len=32, **SMALL)
    torch.testing.assert_close(plain.train_scheduler.alphas_cumprod, base.float())
    assert len(shifted_betas("squaredcos_cap_v2", 1000, 2.0)) == 1000
    with pytest.raises(ModelError, match="schedule_shift must be > 0, got 0"):
        M.from_dataset(ds, PCFG, max_len=32, **{**SMALL, "schedule_shift": 0.0})



def test_input_perturbation_adds_noise_the_target_does_not_know():
    """gamma > 0: the network's input carries noise + gamma * xi (fresh noise of std gamma) while
    the v target keeps the plain noise: a network that outputs the plain-noise v has zero loss."""
    from rehabgen.train import _tensors

    ds = toy_dataset(n=8)
    M = get_family("diffusion")
    seen, parts = [], []
    for gamma in (0.0, 0.5):
        torch.manual_seed(0)
        model, arrays = M.from_dataset(ds, PCFG, max_len=32, **{**SMALL, "prediction": "v",
                                                                  "input_perturbation": gamma})
        net = model.nets["denoiser"]
        hooks = [net.register_forward_pre_hook(lambda m, args: seen.append((args[0].detach(), args[1].detach())))]
        batch = _tensors(arrays)
        x0 = batch["z"]
        if gamma:  # answer with the v of the plain noise the first run drew (same seed, same t)
            a, s = model._alpha_sigma(seen[0][1], x0)
            v_plain = a * (seen[0][0] - a * x0) / s - s * x0
            hooks.append(net.register_forward_hook(lambda m, args, out: v_plain))
        torch.manual_seed(1)
        parts.append(model.loss(model.nets, batch)[1])
        for h in hooks:
            h.remove()
    (x_plain, t), (x_pert, t2) = seen
    assert torch.equal(t, t2)
    a, s = model._alpha_sigma(t, x0)
    n_plain, n_pert = (x_plain - a * x0) / s, (x_pert - a * x0) / s
    extra = n_pert - n_plain  # = gamma * xi
    assert extra.std().item() == pytest.approx(0.5, rel=0.05)
    assert abs(float((extra * n_plain).mean())) < 0.02  # fresh noise, not a rescaled copy
    assert float(parts[1]["rec"]) < 1e-8 < float(parts[0]["rec"])  # the target ignores the extra noise


def test_drift_noise_scales_only_the_slow_band_of_each_sample():
    from rehabgen.models.diffusion import _dct_matrix, drift_noise

    x = torch.randn(3, 80, 6, generator=torch.Generator().manual_seed(0))
    y = drift_noise(x, 5.0, torch.tensor([1.0, 0.5, 2.0]))
    C = _dct_matrix(80)
    cx, cy = torch.einsum("kt,ntd->nkd", C, x), torch.einsum("kt,ntd->nkd", C, y)
    # 80 frames at 5 fps: coefficient k is at k / 32 Hz, so 1-3 are below 0.1 Hz; 0 is the window's mean
    torch.testing.assert_close(cy[0], cx[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(cy[1, 1:4], 0.5 * cx[1, 1:4], atol=1e-5, rtol=0)
    torch.testing.assert_close(cy[2, 1:4], 2.0 * cx[2, 1:4], atol=1e-5, rtol=0)
    torch.testing.assert_close(cy[1:, [0, *range(4, 80)]], cx[1:, [0, *range(4, 80)]], atol=1e-5, rtol=0)
    assert drift_noise(x, 5.0, torch.ones(3)) is x  # temperature 1: the noise as drawn
    # 16 frames at 15 fps have no coefficient below 0.1 Hz: nothing to scale
    torch.testing.assert_close(drift_noise(x[:, :16], 15.0, torch.full((3,), 0.5)), x[:, :16])


class _DriftStub:
    """What `fit_drift_temperatures` uses of a model: white-noise 'motion' (2 joints) whose slow
    band is drawn at the asked temperature times the exercise's own excess; (excess, a): at
    temperature**a times it (a < 1: drift the temperature only partly sets)."""

    def __init__(self, excess: dict[str, float | tuple[float, float] | None]):
        from types import SimpleNamespace

        self.excess = excess
        names = tuple(excess)
        self.spec = SimpleNamespace(fps=5.0, exercises=names, default_length={e: 80 for e in names}, max_len=80,
                                    normalizer=SimpleNamespace(decode=lambda z: z.reshape(*z.shape[:2], -1, 3)))
        self.device = torch.device("cpu")

    def inference(self):
        import contextlib

        return contextlib.nullcontext()

    def generate(self, ex, sc, length, gen, options):
        from rehabgen.models.diffusion import drift_noise

        k = self.excess[self.spec.exercises[int(ex[0])]]
        k, a = k if isinstance(k, tuple) else (k, 1.0)
        tau = 1.0 if k is None else options.drift_temperature ** a * k  # None: ignores the temperature
        return drift_noise(torch.randn((len(ex), length, 6), generator=gen), 5.0, torch.full((len(ex),), tau))


def test_fitted_drift_temperature_undoes_a_known_excess():
    from types import SimpleNamespace

    from rehabgen.models.diffusion import drift_noise, fit_drift_temperatures

    stub = _DriftStub({"A": 1.6, "B": 1.0, "C": None, "D": 1.0, "E": 4.0, "F": 0.5, "G": (3.0, 0.15)})
    counts = {0: 200, 1: 200, 2: 200, 3: 1, 4: 200, 5: 200, 6: 200}  # D: one training window, too few to fit
    ex = np.concatenate([np.full(c, e) for e, c in counts.items()])
    z = drift_noise(torch.randn((len(ex), 80, 6), generator=torch.Generator().manual_seed(1)), 5.0,
                    torch.ones(len(ex))).numpy()
    arrays = SimpleNamespace(z=z, lengths=np.full(len(ex), 80), exercise=ex, score=np.full(len(ex), np.nan))
    fit = fit_drift_temperatures(stub, arrays, seed=0)
    assert set(fit) == {"A", "B", "C", "E", "F", "G"}
    assert abs(fit["A"] - 1 / 1.6) < 0.05  # 1.6x the training windows' slow amplitude: 1/1.6 of the noise there
    assert fit["B"] > 0.93
    assert fit["C"] == 1.0  # a sampler whose drift does not follow the temperature keeps 1
    assert fit["E"] == 0.5 and fit["F"] == 1.0  # within the measured grid: never below half, never adding drift
    # 3x the drift, but its power falls only as temperature**0.3 (slope below MIN_DRIFT_SLOPE): the
    # noise is not what sets it, so the temperature stays 1 instead of going to the floor
    assert fit["G"] == 1.0


def test_drift_temperature_per_exercise_option_and_checks():
    ds = toy_dataset(n=8)
    M = get_family("diffusion")
    model, _ = M.from_dataset(ds, PreprocessConfig(fps=5.0, detect_invalid=False, smooth=None), max_len=16, **SMALL)
    assert model.hparams["drift_temperature"] == "fit" and model.hparams["drift_temperatures"] == {}
    exs = list(model.spec.exercises)
    idx = torch.tensor([exs.index("Es1"), exs.index("Es2"), len(exs)])  # the last: a prompt without a label
    assert model.drift_temperatures(idx, SamplerOptions()).tolist() == [1.0, 1.0, 1.0]  # nothing fitted yet
    model.hparams["drift_temperatures"] = {"Es1": 0.5}
    t = model.drift_temperatures(idx, SamplerOptions())
    assert t[:2].tolist() == [0.5, 1.0] and t[2].item() == pytest.approx(0.5 ** (1 / len(exs)))
    assert model.drift_temperatures(idx, SamplerOptions(drift_temperature=2.0)).tolist() == [2.0] * 3
    assert model.sampler_settings()["drift_temperature"] == {"Es1": 0.5}
    model.hparams["drift_temperature"] = 0.8
    assert model.drift_temperatures(idx, SamplerOptions()).tolist() == pytest.approx([0.8] * 3)
    with pytest.raises(ModelError, match="drift_temperature must be 'fit' or a number in"):
        M(model.spec, **{**SMALL, "drift_temperature": "hot"})
    with pytest.raises(ModelError, match="drift_temperature must be 'fit' or a number in"):
        M(model.spec, **{**SMALL, "drift_temperature": 0})
