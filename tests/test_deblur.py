"""Deblurring: kernels, the circular convolution against scipy, the Wiener start against its
dense closed form, user kernels and their errors, and deblurring end to end (CLI, peers).

The operator contract itself (adjointness, A A^+ A = A, the SVD against the dense matrix,
the consistency steps) is checked in tests/test_operators.py, whose list holds the blurs.
"""

import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from ccdf import init, peers
from ccdf.cli import main
from ccdf.operators import (
    Blur,
    gaussian_kernel,
    kernel_from_array,
    make_kernel,
    make_operator,
    motion_kernel,
    uniform_kernel,
)
from ccdf.operators.blur import WIENER_SIGMA_MIN


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ kernels
def test_gaussian_and_uniform_kernels():
    k = gaussian_kernel(2.0)
    assert k.shape == (13, 13) and k.dtype == torch.float64           # 2 ceil(3 sigma) + 1
    assert math.isclose(float(k.sum()), 1.0, rel_tol=1e-12)
    assert torch.equal(k, k.T) and torch.equal(k, k.flip(0)) and int(k.argmax()) == 6 * 13 + 6
    r = torch.arange(13, dtype=torch.float64) - 6                     # separable, std 2
    g1 = torch.exp(-r**2 / 8)
    assert torch.allclose(k, torch.outer(g1, g1) / g1.sum() ** 2, atol=1e-15)
    assert gaussian_kernel(1.0, 4).shape == (4, 4)
    u = uniform_kernel(3)
    assert torch.allclose(u, torch.full((3, 3), 1 / 9, dtype=torch.float64))
    for bad in (lambda: gaussian_kernel(0.0), lambda: gaussian_kernel(1.0, 0),
                lambda: uniform_kernel(2.5)):
        with pytest.raises(ValueError):
            bad()


def test_motion_kernel_is_a_fixed_seed_trajectory():
    a, b, c = motion_kernel(9, 0.5, 0), motion_kernel(9, 0.5, 0), motion_kernel(9, 0.5, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for k in (a, c, motion_kernel(15, 1.0, 3)):
        assert (k >= 0).all() and math.isclose(float(k.sum()), 1.0, rel_tol=1e-12)
        # a path, not a blob: fewer than half the taps carry weight, and more than a few do
        frac = float((k > 1e-3 * k.max()).double().mean())
        assert 0.05 < frac < 0.5
    line = motion_kernel(9, 0.0, 2)  # intensity 0: a straight path through the centre
    yy, xx = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1).double()
    w = line.flatten()
    mu = (w[:, None] * pts).sum(0)
    cov = ((pts - mu).T * w) @ (pts - mu)                  # the weighted second moments
    ev = torch.linalg.eigvalsh(cov)
    assert float(ev[0] / ev[1]) < 0.05 and (mu - 4).abs().max() < 0.5
    with pytest.raises(ValueError, match="intensity"):
        motion_kernel(9, 1.5)


def test_user_kernels(tmp_path):
    k = np.zeros((5, 3))
    k[1:4, 1] = [1.0, 2.0, 1.0]
    np.save(tmp_path / "k.npy", k)
    got = make_kernel(str(tmp_path / "k.npy"))
    assert torch.allclose(got, torch.from_numpy(k / 4))
    from PIL import Image

    Image.fromarray((k / k.max() * 255).astype(np.uint8)).save(tmp_path / "k.png")
    assert torch.allclose(make_kernel(str(tmp_path / "k.png")), got, atol=1e-3)
    for arr, msg in ((np.array([[1.0, -0.5]]), "negative"), (np.array([[np.nan, 1.0]]), "NaN"),
                     (np.zeros((3, 3)), "sums to 0"), (np.ones((2, 2, 2)), "2-D")):
        with pytest.raises(ValueError, match=msg):
            kernel_from_array(arr)
    with pytest.raises(ValueError, match="gaussian, uniform, motion"):
        make_kernel(str(tmp_path / "missing.npy"))
    with pytest.raises(ValueError, match="only 8x8"):
        Blur(np.ones((9, 9)), (1, 8, 8))
    with pytest.raises(ValueError, match="unknown parameter"):
        make_operator("deblur", (1, 8, 8), factor=2)


# ------------------------------------------------------------------ the operator
@pytest.mark.parametrize("ks", [(3, 3), (4, 4), (3, 5), (2, 4)])
def test_blur_is_scipy_wrap_convolution(ks):
    g = np.random.default_rng(0)
    k = g.random(ks)
    x = g.random((2, 3, 8, 12))
    op = Blur(k, (3, 8, 12))
    want = np.stack([[ndimage.convolve(x[b, c], k / k.sum(), mode="wrap") for c in range(3)]
                     for b in range(2)])
    assert np.abs(op.A(torch.from_numpy(x)).numpy() - want).max() < 1e-13
    got32 = op.A(torch.from_numpy(x).float())
    assert got32.dtype == torch.float32 and np.abs(got32.numpy() - want).max() < 1e-5


def test_pinv_drops_singular_values_below_rcond():
    op = make_operator("deblur", (1, 32, 32), kernel_sigma=2.0)
    s = op.svd().s
    mag = op.K.abs()
    assert bool(((mag > 1e-6) == (s > 0)).all()) and int((s == 0).sum()) > 0
    assert op.norm() == pytest.approx(1.0)       # a normalised non-negative kernel: K(0) = 1
    x = torch.randn(1, 1, 32, 32, generator=_gen(0), dtype=torch.float64)
    # A^+ A is the orthogonal projection onto the kept frequencies
    kept = torch.fft.ifft2(torch.fft.fft2(x) * (s > 0)).real
    assert (op.project(x) - kept).abs().max() < 1e-10


# ------------------------------------------------------------------ the Wiener start
def test_wiener_equals_dense_lmmse():
    """x_hat = m + v A^T (v A A^T + sigma^2 I)^{-1} (y - A m), m = mean(y),
    v = max(var(y) - sigma^2, 1e-4), per image: the LMMSE estimate for x ~ N(m, v I)."""
    op = make_operator("deblur", (1, 8, 8), kernel="motion", kernel_size=5, seed=2)
    g = _gen(1)
    x = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64)
    sigma = 0.05
    y = op.A(x) + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    eye = torch.eye(64, dtype=torch.float64).reshape(64, 1, 8, 8)
    a = op.A(eye).reshape(64, 64).T
    got = op.wiener(y, sigma)
    for i in range(3):
        yi = y[i].flatten()
        m, v = yi.mean(), max(float(yi.var(unbiased=False)) - sigma**2, 1e-4)
        want = m + v * a.T @ torch.linalg.solve(v * a @ a.T + sigma**2 * torch.eye(64).double(),
                                                yi - a @ (m * torch.ones(64).double()))
        assert (got[i].flatten() - want).abs().max() < 1e-10
    assert torch.equal(init.classic(op, y, sigma), got.clamp(0, 1))
    # noiseless data take the 8-bit rounding floor, not an unregularised inverse filter
    assert torch.equal(op.wiener(y, 0.0), op.wiener(y, WIENER_SIGMA_MIN))


def test_wiener_improves_on_the_blurred_image():
    from ccdf import datasets, metrics

    x = datasets.sample("fashion-mnist")[:8]
    op = make_operator("deblur", x.shape[1:], kernel_sigma=2.0)
    y = op.A(x) + 0.01 * torch.randn(x.shape, generator=_gen(0))
    blurred = float(metrics.psnr(y.clamp(0, 1), x).mean())
    assert float(metrics.psnr(init.classic(op, y, 0.01), x).mean()) > blurred + 1.5


# ------------------------------------------------------------------ peers and the CLI
def test_peer_defaults_for_deblurring(monkeypatch):
    """run_peer takes the operator's settings (DPS zeta 0.3; DiffPIR its own defaults) unless
    the caller gives others."""
    seen = {}

    def fake(model, operator, y, *, steps, generator, sigma_y, **options):
        seen.update(options)
        return torch.zeros_like(y), steps

    op = make_operator("deblur", (1, 8, 8), kernel_sigma=1.0)
    from ccdf.models.denoiser import GaussianDenoiser
    from ccdf.schedules import VPSchedule

    model = GaussianDenoiser(torch.zeros(64, dtype=torch.float64),
                             torch.eye(64, dtype=torch.float64), VPSchedule(), shape=(1, 8, 8))
    y = op.A(torch.rand(1, 1, 8, 8, dtype=torch.float64))
    for name, want in (("dps", {"zeta": 0.3}), ("diffpir", {})):
        monkeypatch.setitem(peers.PEERS, name, peers.PEERS[name]._replace(run=fake))
        seen.clear()
        peers.run_peer(name, model, op, y, steps=2)
        assert seen == want
        seen.clear()
        peers.run_peer(name, model, op, y, steps=2, zeta=0.2)
        assert seen["zeta"] == 0.2


def test_solve_deblur_end_to_end(tmp_path, capsys):
    """``ccdf solve --task deblur`` on a tiny random prior: outputs, NFE, the settings (the
    kernel and the consistency step are part of them)."""
    from ccdf import io
    from ccdf.models.formats import save_model
    from ccdf.models.unet import UNetDenoiser, build_unet
    from ccdf.schedules import VPSchedule

    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), tmp_path / "model")
    io.write_image(tmp_path / "a.png", torch.rand(1, 16, 16, generator=_gen(1)))
    out = tmp_path / "out"
    args = ["solve", "--task", "deblur", "--kernel", "gaussian", "--kernel-sigma", "1.5",
            "--input", str(tmp_path / "a.png"), "--model", str(tmp_path / "model"), "--t0",
            "0.1", "--steps", "20", "--sigma-y", "0.01", "--threads", "1", "--json",
            "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["nfe"] == 2 and math.isfinite(s["psnr_mean"])
    assert (out / "a.png").exists() and (out / "a_init.png").exists()
    settings = json.loads((out / "settings.json").read_text())["settings"]
    assert settings["task"]["task"] == "deblur" and settings["task"]["kernel_sigma"] == 1.5
    from ccdf.solve.config import SolveConfig
    from ccdf.solve.config import settings as settings_of

    cfg = SolveConfig(task=settings["task"], input=tmp_path, out=out, consistency="projection")
    assert settings_of(cfg, cfg.task)["consistency"] == "projection"
    assert main([*args, "--out", str(tmp_path / "o3"), "--kernel", "uniform", "--init",
                 "net"]) == 2
    assert "no embedded restoration network" in capsys.readouterr().err


def test_cli_bad_kernel_is_one_line(tmp_path, capsys):
    from ccdf import datasets, io

    io.write_image(tmp_path / "a.png", datasets.sample("fashion-mnist")[0])
    code = main(["solve", "--task", "deblur", "--kernel", str(tmp_path / "nope.npy"),
                 "--input", str(tmp_path / "a.png"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "blur kernel" in err
    np.save(tmp_path / "neg.npy", -np.ones((3, 3)))
    code = main(["solve", "--task", "deblur", "--kernel", str(tmp_path / "neg.npy"),
                 "--input", str(tmp_path / "a.png"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "negative" in err


def test_prox_in_the_loop_does_not_depend_on_n():
    """Bound to the loop's grid, the prox weighs y by each step's own noise: on an exact
    Gaussian prior (8x8, blur, noisy y) the mean of 64 full runs is the exact posterior mean
    (to the Monte Carlo error, ~1e-3 here) at N = 100 and at N = 400 alike; weighing by the
    diffusion noise b instead counts the same noisy y at every step and drifts towards the
    noise-amplified inverse as N grows (measured: 0.0026 at N = 20, 0.0056 at 100, 0.020 at
    400, against 0.0010 and 0.0013 bound)."""
    from ccdf.consistency import Prox
    from ccdf.models.denoiser import GaussianDenoiser
    from ccdf.samplers import solve
    from ccdf.schedules import VPSchedule

    idx = torch.arange(8, dtype=torch.float64)
    yy, xx = torch.meshgrid(idx, idx, indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], 1)
    cov = 0.3 * torch.exp(-torch.cdist(pos, pos) ** 2 / 4) + 1e-3 * torch.eye(64).double()
    model = GaussianDenoiser(torch.zeros(64, dtype=torch.float64), cov, VPSchedule(),
                             shape=(1, 8, 8))
    op = make_operator("deblur", (1, 8, 8), kernel_sigma=1.0)
    x = model.sample(1, _gen(0))
    sigma = 0.05
    y = op.A(x) + sigma * torch.randn(x.shape, generator=_gen(1), dtype=torch.float64)
    a = op.A(torch.eye(64, dtype=torch.float64).reshape(64, 1, 8, 8)).reshape(64, 64).T
    post = cov @ a.T @ torch.linalg.solve(a @ cov @ a.T + sigma**2 * torch.eye(64).double(),
                                          y.flatten())

    def run(n, bound=True):
        c = Prox(op, y.expand(64, 1, 8, 8), sigma, sigma_floor=0.0)
        if not bound:
            c.bind = None  # the loop then calls the unbound step (c = b)
        r = solve(model, torch.zeros(64, 1, 8, 8, dtype=torch.float64), steps=n, t0=1.0,
                  consistency=c, generator=_gen(2))
        return float((r.x.mean(0).flatten() - post).pow(2).mean())

    e100, e400 = run(100), run(400)
    assert e100 < 3e-3 and e400 < 3e-3
    assert run(400, bound=False) > 0.01
