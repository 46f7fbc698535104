"""diffusers folders: the scheduler's settings honoured (checked against diffusers' own
sampling loop on the same network and noise) or refused, and each model's data range."""

import json

import pytest
import torch

from ccdf.models.denoiser import to_model
from ccdf.models.formats import load_model
from ccdf.reconstruction import reconstruct
from ccdf.samplers import solve

SIZE = 16


def tiny_unet(out_channels=3, **kw):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=SIZE, in_channels=3, out_channels=out_channels,
                       block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), **kw).eval()


def save_pipeline(folder, unet, scheduler):
    unet.save_pretrained(folder / "unet")
    scheduler.save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    return folder


def diffusers_loop(unet, scheduler, n, z, g, eta=None):
    """diffusers' pipeline loop (DDPMPipeline / DDIMPipeline) from the sample z, with the
    scheduler's betas recomputed in float64 (diffusers keeps them in float32)."""
    c = scheduler.config
    scheduler.betas = torch.linspace(c.beta_start, c.beta_end, c.num_train_timesteps,
                                     dtype=torch.float64)
    scheduler.alphas = 1 - scheduler.betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, 0)
    scheduler.set_timesteps(n)
    x, xs = z, []
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(x, t).sample
            kw = {} if eta is None else {"eta": eta}
            x = scheduler.step(out, t, x, generator=g, **kw).prev_sample
            xs.append(x)
    return xs


def run_ccdf(model, n, sampler, seed, eta=0.0):
    xs = []
    solve(model, torch.zeros(2, 3, SIZE, SIZE, dtype=torch.float64), steps=n, t0=1.0,
          sampler=sampler, eta=eta, generator=torch.Generator().manual_seed(seed),
          callback=lambda info: xs.append(info["x"]))
    return xs


DDPM_CASES = [  # spacing, offset, clip_sample, variance_type, prediction_type, N
    ("leading", 0, True, "fixed_small", "epsilon", 30),
    ("leading", 1, False, "fixed_large", "epsilon", 30),
    ("trailing", 0, True, "fixed_small", "v_prediction", 30),
    ("linspace", 0, False, "fixed_small_log", "sample", 17),
    ("trailing", 0, False, "fixed_small", "epsilon", 50),
]


@pytest.mark.parametrize("spacing, offset, clip, variance, prediction, n", DDPM_CASES)
def test_ddpm_scheduler_loop_is_reproduced(tmp_path, spacing, offset, clip, variance,
                                           prediction, n):
    from diffusers import DDPMScheduler

    unet = tiny_unet()
    sched = DDPMScheduler(num_train_timesteps=1000, timestep_spacing=spacing,
                          steps_offset=offset, clip_sample=clip, variance_type=variance,
                          prediction_type=prediction)
    model = load_model(save_pipeline(tmp_path, unet, sched)).double()
    assert model.prediction == {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}[prediction]
    assert model.clip_x0 == ((-1.0, 1.0) if clip else None)
    ours = run_ccdf(model, n, "ddpm", 1)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 3, SIZE, SIZE, generator=g, dtype=torch.float64) * \
        float(model.schedule.grid(n).b[n])
    ref = diffusers_loop(unet.double(), sched, n, z, g)
    # every state of the chain; with fixed_large and a last timestep > 0, diffusers adds beta
    # noise at the last step, where ccdf returns the mean
    upto = n - 1 if variance == "fixed_large" and sched.timesteps[-1] > 0 else n
    assert upto >= n - 1
    for a, b in zip(ours[:upto], ref[:upto]):
        assert float((a - b).abs().max()) < 1e-9 * float(b.abs().max())
    # the grid is diffusers' timesteps
    ks = model.timesteps(model.schedule.grid(n).t[1:]).flip(0)
    assert torch.equal(ks.long(), sched.timesteps)


@pytest.mark.parametrize("eta, clip, prediction", [(0.0, True, "epsilon"), (1.0, False, "v_prediction")])
def test_ddim_scheduler_loop_is_reproduced(tmp_path, eta, clip, prediction):
    """DDIM with 'leading' spacing (its default; N = 30 does not divide 1000)."""
    from diffusers import DDIMScheduler

    unet = tiny_unet()
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=clip, prediction_type=prediction,
                          steps_offset=1)
    model = load_model(save_pipeline(tmp_path, unet, sched)).double()
    n = 30
    ours = run_ccdf(model, n, "ddim", 2, eta)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 3, SIZE, SIZE, generator=g, dtype=torch.float64) * \
        float(model.schedule.grid(n).b[n])
    ref = diffusers_loop(unet.double(), sched, n, z, g, eta=eta)
    for a, b in zip(ours, ref):
        assert float((a - b).abs().max()) < 1e-9 * float(b.abs().max())


def test_ccdf_start_and_defaults(tmp_path):
    """Keys a scheduler config leaves out take diffusers' defaults (leading spacing, clipping)."""
    from diffusers import DDPMScheduler

    unet = tiny_unet()
    folder = save_pipeline(tmp_path, unet, DDPMScheduler())
    cfg = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    for k in ("timestep_spacing", "clip_sample", "steps_offset"):
        cfg.pop(k, None)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg))
    model = load_model(folder)
    assert model.schedule.spacing == "leading" and model.clip_x0 == (-1.0, 1.0)
    assert any("timestep_spacing = leading (diffusers' default" in a for a in model.meta["assumed"])
    g = model.schedule.grid(20)
    assert torch.equal(model.timesteps(g.t[1:]), torch.arange(0, 1000, 50, dtype=torch.float64))


@pytest.mark.parametrize("setting, msg", [
    ({"thresholding": True}, "thresholding"),
    ({"rescale_betas_zero_snr": True}, "rescale_betas_zero_snr"),
    ({"beta_schedule": "sigmoid"}, "beta_schedule 'sigmoid'"),
    ({"timestep_spacing": "karras"}, "timestep_spacing 'karras'"),
    ({"prediction_type": "flow"}, "prediction_type 'flow'"),
    ({"_class_name": "EulerDiscreteScheduler"}, "EulerDiscreteScheduler is not supported"),
])
def test_unsupported_scheduler_settings_are_refused(tmp_path, setting, msg):
    from diffusers import DDPMScheduler

    folder = save_pipeline(tmp_path, tiny_unet(), DDPMScheduler())
    f = folder / "scheduler" / "scheduler_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), **setting}))
    with pytest.raises(ValueError, match=msg):
        load_model(folder)


def test_learned_range_keeps_eps_channels(tmp_path):
    from diffusers import DDPMScheduler

    unet = tiny_unet(out_channels=6)
    model = load_model(save_pipeline(tmp_path, unet, DDPMScheduler(variance_type="learned_range")))
    assert model.channels == 3 and model.variance == "small"
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.tensor([0.5])),
                                   unet(x, torch.tensor([499.0])).sample[:, :3])


def test_class_conditional_unet(tmp_path):
    from diffusers import DDPMScheduler

    unet = tiny_unet(num_class_embeds=5)
    model = load_model(save_pipeline(tmp_path, unet, DDPMScheduler()))
    assert model.num_classes == 5
    x = torch.randn(2, 3, SIZE, SIZE)
    y = torch.tensor([1, 4])
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.tensor([0.5]), class_labels=y),
                                   unet(x, torch.tensor([499.0]), class_labels=y).sample)
        with pytest.raises(ValueError, match="class-conditional"):
            model(x, torch.tensor([0.5]))
        model.class_label = 4
        torch.testing.assert_close(model(x, torch.tensor([0.5]))[1:], model(
            x, torch.tensor([0.5]), class_labels=y)[1:])


def test_score_sde_ve_folder_works_on_unit_range_data(tmp_path):
    from diffusers import ScoreSdeVeScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=SIZE, in_channels=3, out_channels=3,
                       block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                       time_embedding_type="fourier", down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2).eval()
    model = load_model(save_pipeline(tmp_path, unet, ScoreSdeVeScheduler(sigma_max=50.0)))
    assert model.data_range == (0.0, 1.0) and model.prediction == "score"
    x01 = torch.rand(1, 3, SIZE, SIZE)
    assert torch.equal(to_model(model, x01), x01)
    seen = []

    class Spy(torch.nn.Module):  # records what the network is fed
        def __init__(self):
            super().__init__()
            self.m = model

        def __getattr__(self, k):
            return getattr(self._modules["m"], k) if k not in ("m", "_modules") else \
                super().__getattr__(k)

        def forward(self, x, t):
            seen.append(x.clone())
            return self.m(x, t)

    from ccdf.operators import make_operator

    op = make_operator("inpaint", (3, SIZE, SIZE), mask="box")
    r = reconstruct(Spy(), op, op.A(x01), x01, t0=0.05, steps=20,
                    generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    start = x01 + float(model.schedule.grid(20).b[1]) * torch.randn(x01.shape, generator=g)
    torch.testing.assert_close(seen[0], start)  # the [0, 1] image itself, not 2 x - 1
    assert r.x.shape == x01.shape
