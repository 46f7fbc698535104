"""The model layer: the ccdf / diffusers folder formats, the prediction conversions, the
analytic Gaussian score, and exact resumption of training."""

import json

import pytest
import torch

from ccdf.models.denoiser import GaussianDenoiser, convert
from ccdf.models.formats import family, load_model, save_model, save_restorer
from ccdf.models.restorer import new_restorer
from ccdf.models.train import TrainConfig, train
from ccdf.models.unet import UNetDenoiser, build_unet
from ccdf.operators import make_operator
from ccdf.schedules import VESchedule, VPSchedule


def _tiny_unet(seed=0):
    torch.manual_seed(seed)
    return build_unet(image_size=16, channels=1, block_out_channels=(8, 16), layers_per_block=1)


def _randomise(module, seed=0):
    """Random (non-zero) weights everywhere, so outputs depend on every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return module


def test_ccdf_folder_round_trip(tmp_path):
    model = UNetDenoiser(_randomise(_tiny_unet()), VPSchedule(beta="cosine"), "eps", "t1000",
                         True, meta={"trained_on": "noise"}).eval()
    save_model(model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["format"] == "ccdf-model" and cfg["channels"] == 1 and cfg["image_size"] == 16
    again = load_model(tmp_path / "m")
    assert again.schedule == model.schedule and again.prediction == "eps"
    assert (again.time_input, again.input_scaling) == ("t1000", True)
    assert again.meta["trained_on"] == "noise"
    x = torch.randn(3, 1, 16, 16)
    t = torch.tensor([0.01, 0.5, 1.0], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(again(x, t), model(x, t), rtol=0, atol=0)


def test_diffusers_folder_loads_with_table_schedule(tmp_path, monkeypatch):
    from diffusers import DDPMScheduler

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unet = _randomise(_tiny_unet()).eval()
    unet.save_pretrained(tmp_path / "d")
    k_steps = 200
    sched = DDPMScheduler(num_train_timesteps=k_steps, beta_start=1e-4, beta_end=0.02,
                          beta_schedule="linear")
    sched.save_pretrained(tmp_path / "d" / "scheduler")
    model = load_model(tmp_path / "d")
    assert model.schedule.kind == "vp" and model.schedule.beta == "table"
    assert (model.prediction, model.time_input, model.input_scaling) == ("eps", "discrete", False)
    k = torch.tensor([0, 1, 57, 120, k_steps - 1])
    t = (k + 1).double() / k_steps
    torch.testing.assert_close(model.schedule.alpha_bar(t),
                               sched.alphas_cumprod[k].double(), rtol=1e-6, atol=0)
    x = torch.randn(len(k), 1, 16, 16)
    with torch.no_grad():
        got = model(x, t)
        ref = unet(x, k).sample
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_convert_round_trips():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=g)
    eps = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=g)
    a = torch.rand(4, dtype=torch.float64, generator=g) + 0.1
    b = torch.rand(4, dtype=torch.float64, generator=g) + 0.1
    p = convert(eps, "eps", x, a, b)
    torch.testing.assert_close(p.eps, eps)
    torch.testing.assert_close(p.score, -eps / b.view(-1, 1, 1, 1))
    torch.testing.assert_close(a.view(-1, 1, 1, 1) * p.x0 + b.view(-1, 1, 1, 1) * p.eps, x)
    for kind in ("score", "x0"):
        q = convert(getattr(p, kind), kind, x, a, b)
        for name in ("eps", "score", "x0"):
            torch.testing.assert_close(getattr(q, name), getattr(p, name), rtol=1e-12, atol=1e-12)
    v = a.view(-1, 1, 1, 1) * p.eps - b.view(-1, 1, 1, 1) * p.x0   # v = a eps - b x0
    q = convert(v, "v", x, a, b)
    for name in ("eps", "score", "x0"):
        torch.testing.assert_close(getattr(q, name), getattr(p, name), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        convert(eps, "velocity", x, a, b)


@pytest.mark.parametrize("schedule", [VPSchedule(), VESchedule(sigma_max=20.0)],
                         ids=["vp", "ve"])
def test_gaussian_score_is_grad_log_density(schedule):
    g = torch.Generator().manual_seed(0)
    d = 4
    m = torch.randn(d, dtype=torch.float64, generator=g)
    r = torch.randn(d, d, dtype=torch.float64, generator=g)
    cov = r @ r.T / d
    cov[0] = cov[:, 0] = 0  # singular along one axis
    model = GaussianDenoiser(m, cov, schedule)
    t = torch.tensor([0.05, 0.3, 0.7, 1.0], dtype=torch.float64)
    x = torch.randn(len(t), d, dtype=torch.float64, generator=g).requires_grad_(True)
    a, b = schedule.a(t), schedule.b(t)
    logp = sum(torch.distributions.MultivariateNormal(
        a[i] * m, a[i] ** 2 * cov + b[i] ** 2 * torch.eye(d, dtype=torch.float64)).log_prob(x[i])
        for i in range(len(t)))
    (grad,) = torch.autograd.grad(logp, x)
    torch.testing.assert_close(model(x.detach(), t), grad, rtol=1e-9, atol=1e-9)


def _train_state(out):
    from safetensors.torch import load_file

    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    log = [(r["step"], r["loss"]) for r in map(json.loads,
                                               (out / "train_log.jsonl").read_text().splitlines())]
    return ck, load_file(str(out / "model.safetensors")), log


def test_training_resumes_exactly(tmp_path):
    cfg = dict(image_size=16, channels=1, block_out_channels=(8, 16), batch_size=4,
               checkpoint_every=3, warmup=2, lr=1e-3, seed=3, data="random")
    data = torch.rand(20, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)  # the global RNG must not matter
    train(TrainConfig(steps=6, **cfg), data, tmp_path / "full", progress=False)
    torch.manual_seed(456)
    train(TrainConfig(steps=3, **cfg), data, tmp_path / "split", progress=False)
    torch.manual_seed(789)
    train(TrainConfig(steps=6, **cfg), data, tmp_path / "split", progress=False)

    def crash(step, loss):  # killed after step 5: the checkpoint holds step 3
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(steps=6, **cfg), data, tmp_path / "crash", progress=False,
              callback=crash)
    train(TrainConfig(steps=6, **cfg), data, tmp_path / "crash", progress=False)
    full = _train_state(tmp_path / "full")
    assert full[0]["step"] == 6
    assert [s for s, _ in full[2]] == [1, 2, 3, 4, 5, 6]
    for run in ("split", "crash"):
        other = _train_state(tmp_path / run)
        assert other[0]["step"] == 6
        assert other[2] == full[2], run  # the loss log, steps 4-5 of the crash not repeated
        for part in ("model", "ema"):
            assert other[0][part].keys() == full[0][part].keys()
            for k in full[0][part]:
                assert torch.equal(other[0][part][k], full[0][part][k]), (run, part, k)
        assert other[1].keys() == full[1].keys()  # the exported EMA model
        assert all(torch.equal(other[1][k], full[1][k]) for k in full[1]), run
    # the weights did move (the EMA starts at the initial weights and lags behind them)
    assert any(not torch.equal(v, full[0]["ema"][k]) for k, v in full[0]["model"].items())


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither"):
        load_model(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "weights.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ValueError, match="neither"):
        load_model(tmp_path / "other")
    (tmp_path / "x.npy").write_bytes(b"\0")
    with pytest.raises(ValueError, match="unrecognised"):
        load_model(tmp_path / "x.npy")


def test_family_and_atomic_folders(tmp_path):
    """Each family is told apart; a restoration network is not taken for a prior; model
    folders and checkpoints leave no temporary behind."""
    model = UNetDenoiser(_tiny_unet(), VPSchedule()).eval()
    save_model(model, tmp_path / "m")
    assert family(tmp_path / "m") == "ccdf"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json",
                                                                   "model.safetensors"]
    cfg = TrainConfig(image_size=16, channels=1, block_out_channels=(8, 16))
    save_restorer(new_restorer(cfg, {"task": "sr", "factor": 2}), tmp_path / "r")
    assert family(tmp_path / "r") == "ccdf-restorer"
    with pytest.raises(ValueError, match="not a diffusion prior"):
        load_model(tmp_path / "r")
    torch.save({"w": torch.zeros(2)}, tmp_path / "adm.pt")
    assert family(tmp_path / "adm.pt") == "adm"
    torch.save({"model": {"w": torch.zeros(2)}, "step": 1}, tmp_path / "sde.pth")
    assert family(tmp_path / "sde.pth") == "score_sde"
    train(TrainConfig(steps=2, checkpoint_every=1, batch_size=2, data="random", **{
        k: getattr(cfg, k) for k in ("image_size", "channels", "block_out_channels")}),
        torch.rand(4, 1, 16, 16), tmp_path / "t", progress=False)
    assert not [p.name for p in (tmp_path / "t").iterdir() if p.name.endswith(".tmp")]


def test_learning_rate_warmup_constant_cosine_decay():
    """--lr-decay D: linear warm-up, constant, then a cosine to 0 over the last D steps."""
    import math

    from ccdf.models.train import learning_rate

    cfg = TrainConfig(lr=1e-3, warmup=4, steps=20, lr_decay=8)
    lrs = [learning_rate(cfg, s) for s in range(20)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lrs[4:12] == pytest.approx([1e-3] * 8)
    assert lrs[16] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))  # half way: lr/2
    assert all(a > b for a, b in zip(lrs[12:], lrs[13:], strict=False)) and lrs[19] < 1e-4
    assert learning_rate(TrainConfig(lr=1e-3, warmup=4, steps=20), 19) == 1e-3  # no decay


def test_training_uses_the_decayed_learning_rate(tmp_path, monkeypatch):
    seen = []
    step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    cfg = TrainConfig(image_size=16, channels=1, block_out_channels=(8, 16), batch_size=2,
                      warmup=1, lr=1e-3, steps=4, lr_decay=2, checkpoint_every=10, data="random")
    train(cfg, torch.rand(4, 1, 16, 16), tmp_path / "run", progress=False)
    assert seen == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4])


@pytest.mark.parametrize("task, same, other", [
    ({"task": "inpaint", "mask": "box"}, {"mask": "box"}, {"mask": "random:0.5"}),
    ({"task": "sr", "factor": 4, "kernel": "avg"}, {"factor": 4}, {"factor": 2}),
    ({"task": "deblur", "kernel": "gaussian", "kernel_sigma": 2.0},
     {"kernel_sigma": 2.0}, {"kernel_sigma": 1.0}),
])
def test_restorer_refuses_another_operator(task, same, other):
    """A feed-forward start takes only the measurement it was trained on: another mask,
    factor or kernel of the same task gets one line naming what it was trained on."""
    net = new_restorer(TrainConfig(image_size=16, block_out_channels=(8, 8)), task)
    assert net.fits(make_operator(task["task"], (1, 16, 16), **same)) is True
    why = net.fits(make_operator(task["task"], (1, 16, 16), **other))
    assert isinstance(why, str) and "trained on" in why and task["task"] in why
