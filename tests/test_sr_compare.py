"""The SR comparison models (SR3-style, ESRGAN-style) and the Frechet distances of the bench."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ccdf import cli, fid, io
from ccdf.models import load_model
from ccdf.models.esrgan import Discriminator, ragan_losses, train_esrgan
from ccdf.models.formats import save_restorer
from ccdf.models.restorer import new_restorer
from ccdf.models.sr3 import Conditioned, condition, train_sr3
from ccdf.models.train import TrainConfig
from ccdf.operators import make_operator
from ccdf.reconstruction import reconstruct
from ccdf.samplers import solve

SR4 = {"task": "sr", "factor": 4}


def _images(n=12, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear",
                                           align_corners=False).clamp(0, 1)


def _cfg(**kw):
    base = dict(data="t", image_size=16, block_out_channels=(8, 16), batch_size=4,
                checkpoint_every=2, lr=1e-3, ema_decay=0.9)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- Frechet
def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    fa = torch.randn(400, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g,
                                                                              dtype=torch.float64)
    assert fid.frechet_distance(fa, fa) == pytest.approx(0.0, abs=1e-8)
    m = torch.arange(6, dtype=torch.float64)
    # same covariance: only the mean term remains
    assert fid.frechet_distance(fa, fa + m) == pytest.approx(float(m.pow(2).sum()), rel=1e-8)
    # commuting covariances: sum (sqrt(a) - sqrt(b))^2 over the spectrum
    fb = fa * 3.0
    s = torch.linalg.eigvalsh(torch.cov(fa.T))
    expected = float(((s.sqrt() - (9 * s).sqrt()) ** 2).sum() + 4 * fa.mean(0).pow(2).sum())
    assert fid.frechet_distance(fa, fb) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        fid.frechet_distance(fa[:1], fa)


def test_inception_must_be_torchscript(tmp_path):
    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            assert x.dtype == torch.uint8 and x.shape[1:] == (3, 299, 299)
            return x.float().mean(dim=(2, 3))

    path = tmp_path / "inception.pt"
    torch.jit.script(Tiny()).save(str(path))
    ext = fid.InceptionFeatures(path)
    f = fid.features(ext, torch.rand(3, 1, 8, 8))
    assert f.shape == (3, 3) and f.dtype == torch.float64
    bad = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a TorchScript"):
        fid.InceptionFeatures(bad)
    with pytest.raises(FileNotFoundError):
        fid.InceptionFeatures(tmp_path / "missing.pt")


def test_classifier_trains_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 32, 32, generator=g)
    lab = (x.mean(dim=(1, 2, 3)) > x.mean()).long()  # a learnable label
    cfg = TrainConfig(data="t", image_size=32, batch_size=16, steps=4, checkpoint_every=4,
                      lr=1e-3, ema_decay=0.5)
    out = fid.train_classifier(cfg, x, lab, tmp_path / "c", (x, lab), progress=False)
    net = fid.load_classifier(out)
    meta = json.loads((out / "config.json").read_text())
    assert meta["test_accuracy"] == pytest.approx(fid.accuracy(net, x, lab))
    assert net.features(x[:5]).shape == (5, 128)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"format": "ccdf-model"}')
    with pytest.raises(ValueError, match="not a ccdf feature classifier"):
        fid.load_classifier(tmp_path / "m")


# ----------------------------------------------------------------------------- SR3
def test_sr3_trains_resumes_samples_and_is_refused_by_ccdf(tmp_path):
    x = _images()
    train_sr3(_cfg(steps=4), SR4, x, tmp_path / "full", progress=False)
    train_sr3(_cfg(steps=2), SR4, x, tmp_path / "split", progress=False)
    train_sr3(_cfg(steps=4), SR4, x, tmp_path / "split", progress=False)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    model = load_model(tmp_path / "full")
    assert model.meta["condition"] == SR4 and model.unet.config.in_channels == 2
    op = make_operator("sr", (1, 16, 16), factor=4)
    y = op.A(x[:3])
    cond = condition(model, y, (1, 16, 16))
    assert cond.shape == (3, 1, 16, 16) and cond.min() >= -1 and cond.max() <= 1
    res = solve(Conditioned(model, cond), torch.zeros(6, 1, 16, 16), steps=5, t0=1.0,
                generator=torch.Generator().manual_seed(0))  # two samples per condition
    assert res.x.shape == (6, 1, 16, 16) and res.nfe == 5
    with pytest.raises(ValueError, match="conditional"):
        reconstruct(model, op, y, x[:3], t0=0.2, steps=5)
    io.write_image(tmp_path / "in" / "a.png", x[0])
    rc = cli.main(["solve", "--task", "sr", "--input", str(tmp_path / "in"), "--out",
                   str(tmp_path / "o"), "--model", str(tmp_path / "full"), "--no-progress"])
    assert rc == 2 and not (tmp_path / "o" / "a.png").exists()


# ----------------------------------------------------------------------------- ESRGAN
def test_ragan_losses():
    real, fake = torch.tensor([3.0, 2.0]), torch.tensor([-1.0, -2.0])
    ld, ladv = ragan_losses(real, fake)
    assert ld < ladv  # a discriminator that separates them has the lower loss
    ld2, ladv2 = ragan_losses(fake, real)  # swapping roles swaps the losses
    assert ld2 == pytest.approx(float(ladv)) and ladv2 == pytest.approx(float(ld))
    assert Discriminator(1)(torch.rand(3, 1, 16, 16)).shape == (3,)


def test_esrgan_fine_tunes_from_restorer_and_resumes_with_discriminator(tmp_path):
    x = _images()
    cfg = _cfg(steps=4, block_out_channels=(8, 16))
    save_restorer(new_restorer(cfg, SR4), tmp_path / "l1")
    train_esrgan(_cfg(steps=4), tmp_path / "l1", x, tmp_path / "full", x[:4], progress=False)
    train_esrgan(_cfg(steps=2), tmp_path / "l1", x, tmp_path / "split", x[:4], progress=False)
    ck = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert set(ck["aux"]) == {"disc", "opt_d"}
    train_esrgan(_cfg(steps=4), tmp_path / "l1", x, tmp_path / "split", x[:4], progress=False)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # discriminator state resumed too
    cfg_out = json.loads((tmp_path / "full" / "config.json").read_text())
    assert cfg_out["format"] == "ccdf-restorer" and cfg_out["extra"]["kind"] == "esrgan"
    assert "psnr_net" in cfg_out["heldout"]
