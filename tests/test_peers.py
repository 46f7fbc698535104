"""The peer baselines (DDRM, DPS, DiffPIR) against closed forms on exact Gaussian priors.

What is exact and tested as such:

* ``spectral``: V is orthogonal/unitary and A^T A = V^H diag(s^2) V for every supported operator
  (dense 8x8 matrices); DDRM run through it equals a dense-SVD re-implementation with the same
  noise; the DiffPIR data step equals the dense normal-equation solution.
* Noiseless measurements: DDRM's last update sets every measured coefficient to ybar, and
  DiffPIR's data step with sigma_floor = 0 is a projection, so A x = y to rounding.
* DDRM is a posterior sampler *for the mean* when the prior makes measured and unmeasured
  coefficients independent (diagonal covariance for inpainting, a stationary field for MRI)
  and sigma_y = 0: every update is affine and mean-preserving, so E[x] is the posterior mean
  at any step count (up to the N(0, s_N^2) start, off by a^2 var / b^2 ~ 1e-5 here).  Its
  variance is not exact at finite N (DDIM-like shrinkage: ~0.55x at 20 steps) and, for
  priors correlated across the split or sigma_y > 0, neither is its mean (measured on 8x8
  inpainting of a smooth field: max mean error 0.43 at 20 steps, 0.07 at 1000 -- the bias of
  replacement methods, which the CCDF projection sampler shares).  Tolerance: 5 standard
  errors of a sample mean (sqrt(var / n)) plus 0.01.
* DPS: one step equals the closed form of the DDPM step minus zeta * grad ||y - A x0_hat||.
"""

import math

import pytest
import torch

from ccdf import peers
from ccdf.models.denoiser import GaussianDenoiser, evaluate
from ccdf.operators import (
    MRI,
    Inpainting,
    LinearOperator,
    SuperResolution,
    make_operator,
    random_mask,
    uniform1d,
)
from ccdf.operators.mri import fft2c, ifft2c
from ccdf.schedules import VESchedule, VPSchedule

SHAPE = (1, 8, 8)
D = 64
N_SAMPLES = 4000


def _ops():
    return {
        "sr-avg": SuperResolution(2, SHAPE),
        "sr-bicubic": SuperResolution(2, SHAPE, kernel="bicubic"),
        "inpaint": Inpainting(random_mask(8, 8, 0.5, torch.Generator().manual_seed(1)),
                              image_shape=SHAPE),
        "mri": MRI(uniform1d(8, 8, 2, acs=2), SHAPE),
        "mri-complex": MRI(uniform1d(8, 8, 2, acs=2), SHAPE, complex_image=True),
        "deblur-gaussian": make_operator("deblur", SHAPE, kernel_sigma=1.0),
        "deblur-motion": make_operator("deblur", SHAPE, kernel="motion", kernel_size=5, seed=3),
    }


REAL = ["sr-avg", "sr-bicubic", "inpaint", "mri", "deblur-gaussian", "deblur-motion"]


def _basis(op):
    eye = torch.eye(D, dtype=torch.float64).reshape(D, *SHAPE)
    return eye.to(torch.complex128) if op.complex_image else eye


def _dense(op):
    """A as a real matrix (complex measurements stacked as [Re; Im]) for real images."""
    cols = op.A(_basis(op)).reshape(D, -1)
    if cols.is_complex():
        cols = torch.cat([cols.real, cols.imag], 1)
    return cols.T


def _real_form(y):
    y = y.reshape(y.shape[0], -1)
    return torch.cat([y.real, y.imag], 1) if y.is_complex() else y


def _smooth_cov():
    idx = torch.arange(8, dtype=torch.float64)
    yy, xx = torch.meshgrid(idx, idx, indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], 1)
    eye = torch.eye(D, dtype=torch.float64)
    return 0.2 * torch.exp(-torch.cdist(pos, pos) ** 2 / 8) + 1e-2 * eye


def _model(schedule=None, cov=None, mean=None):
    mean = 0.1 * torch.ones(D, dtype=torch.float64) if mean is None else mean
    return GaussianDenoiser(mean, _smooth_cov() if cov is None else cov,
                            schedule or VPSchedule(), shape=SHAPE)


class Counting(torch.nn.Module):
    """Counts network calls (NFE) of a wrapped model."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0
        self.schedule, self.prediction = model.schedule, model.prediction

    def forward(self, x, t):
        self.calls += 1
        return self.model(x, t)


# ------------------------------------------------------------------------- the SVD view
@pytest.mark.parametrize("name", list(_ops()))
def test_spectral_view_is_the_svd(name):
    op = _ops()[name]
    sp = peers.spectral(op)
    basis = _basis(op)
    vd = sp.Vt(basis).reshape(D, D).T                          # column j = V^T e_j
    vd = vd.to(torch.complex128)
    assert torch.allclose(vd.conj().T @ vd, torch.eye(D, dtype=torch.complex128), atol=1e-12)
    s2 = sp.s.expand(SHAPE).reshape(D).to(torch.complex128) ** 2
    gram = vd.conj().T @ (s2[:, None] * vd)                    # V diag(s^2) V^H
    cols = op.A(basis).reshape(D, -1).T.to(torch.complex128)
    ata = cols.conj().T @ cols
    if not op.complex_image:   # real images: V diag(s^2) V^H must map real to real
        assert gram.imag.abs().max() < 1e-12
        gram, ata = gram.real, ata.real
    assert (gram - ata).abs().max() < 1e-12
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x.to(basis.dtype)
    assert (sp.V(sp.Vt(x)) - x).abs().max() < 1e-12


def test_spectral_refuses_multicoil_and_unknown_operators():
    coil = MRI(uniform1d(8, 8, 2, acs=2), SHAPE, complex_image=True,
               coils=torch.ones(2, 8, 8, dtype=torch.complex128))
    with pytest.raises(ValueError, match="coil"):
        peers.spectral(coil)

    class Scale(LinearOperator):
        image_shape = SHAPE

        def A(self, x):
            return 2 * x

        def A_adjoint(self, y):
            return 2 * y

    with pytest.raises(ValueError, match="no SVD"):
        peers.ddrm(_model(), Scale(), torch.zeros(1, *SHAPE, dtype=torch.float64), steps=2)


# ------------------------------------------------------------------------- DiffPIR data step
@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("rho", [0.0, 0.05, 2.0])
def test_data_prox_solves_the_normal_equations(name, rho):
    op = _ops()[name]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, *SHAPE, generator=g, dtype=torch.float64)
    x0 = torch.randn(2, *SHAPE, generator=g, dtype=torch.float64)
    y = op.A(x)
    got = peers.data_prox(op, y)(x0, rho).reshape(2, D)
    a = _dense(op)
    rhs = _real_form(y) @ a + rho * x0.reshape(2, D)
    if rho > 0:
        want = torch.linalg.solve(a.T @ a + rho * torch.eye(D, dtype=torch.float64), rhs.T).T
    else:  # the limit: x0 + A^+ (y - A x0)
        x0f = x0.reshape(2, D)
        want = x0f + (_real_form(y) - x0f @ a.T) @ torch.linalg.pinv(a).T
    assert (got - want).abs().max() < 1e-9


def test_data_prox_cg_fallback_matches_closed_form():
    op = _ops()["sr-bicubic"]

    class Plain(LinearOperator):  # same A, no known SVD: takes the CG path
        image_shape = SHAPE
        A, A_adjoint, A_pinv = op.A, op.A_adjoint, op.A_pinv

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, *SHAPE, generator=g, dtype=torch.float64)
    y = op.A(torch.rand(2, *SHAPE, generator=g, dtype=torch.float64))
    for rho in (0.0, 0.3):
        a = peers.data_prox(op, y)(x0, rho)
        b = peers.data_prox(Plain(), y)(x0, rho)
        assert (a - b).abs().max() < 1e-8


# ------------------------------------------------------------------------- DDRM
def _ddrm_dense(model, op, y, steps, seed, sigma_y, eta=0.85, eta_b=1.0):
    """DDRM with a dense SVD of the real-form A; noise drawn as ``peers.ddrm`` does."""
    a = _dense(op)
    u, sv, vh = torch.linalg.svd(a, full_matrices=True)
    s = torch.zeros(D, dtype=torch.float64)
    s[: sv.numel()] = sv
    meas = s > 1e-9
    ybar = torch.zeros(y.shape[0], D, dtype=torch.float64)
    ybar[:, meas] = (_real_form(y) @ u)[:, : int(meas.sum())] / s[meas]
    nsr = torch.where(meas, sigma_y / s.clamp_min(1e-30), torch.full_like(s, math.inf))
    grid = model.schedule.grid(steps)
    lev = (grid.b / grid.a).tolist()
    g = torch.Generator().manual_seed(seed)

    def noise():
        z = torch.randn(y.shape[0], *SHAPE, generator=g, dtype=torch.float64)
        return z.reshape(-1, D) @ vh.T

    z = noise()
    start_sd = (lev[-1] ** 2 - nsr**2).clamp_min(0).sqrt()
    xbar = torch.where(meas & (nsr < lev[-1]), ybar + start_sd * z, lev[-1] * z)
    c = math.sqrt(1 - eta**2)
    for i in range(steps, 0, -1):
        img = (float(grid.a[i]) * xbar @ vh).reshape(-1, *SHAPE)
        pred = evaluate(model, img, grid.t[i].expand(y.shape[0]))
        x0, eps = pred.x0.reshape(-1, D) @ vh.T, pred.eps.reshape(-1, D) @ vh.T
        lo, z = lev[i - 1], noise()
        new = x0 + c * lo * eps + eta * lo * z
        for k in range(D):
            if not meas[k]:
                continue
            if lo < nsr[k]:
                new[:, k] = (x0[:, k] + c * lo * (ybar[:, k] - x0[:, k]) / nsr[k]
                             + eta * lo * z[:, k])
            else:
                sd = math.sqrt(max(lo**2 - (eta_b * nsr[k]) ** 2, 0.0))
                new[:, k] = (1 - eta_b) * x0[:, k] + eta_b * ybar[:, k] + sd * z[:, k]
        xbar = new
    return (xbar @ vh).reshape(-1, *SHAPE)


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("sigma_y", [0.0, 0.3])
def test_ddrm_equals_dense_svd_reference(name, sigma_y):
    op = _ops()[name]
    model = _model()
    x = model.sample(2, torch.Generator().manual_seed(1))
    y = op.A(x)
    if sigma_y:
        g = torch.Generator().manual_seed(2)
        noise = torch.randn(y.shape, generator=g, dtype=torch.float64)
        y = y + sigma_y * (op.A(noise) if y.is_complex() else noise)
    got, nfe = peers.ddrm(model, op, y, steps=4, generator=torch.Generator().manual_seed(3),
                          sigma_y=sigma_y)
    want = _ddrm_dense(model, op, y, 4, 3, sigma_y)
    assert nfe == 4 and got.shape == x.shape and got.dtype == torch.float64
    assert (got - want).abs().max() < 1e-9


@pytest.mark.parametrize("schedule", [VPSchedule(), VESchedule(sigma_max=20.0)], ids=["vp", "ve"])
@pytest.mark.parametrize("name", list(_ops()))
def test_noiseless_ddrm_and_diffpir_are_consistent(name, schedule):
    op = _ops()[name]
    model = _model(schedule)
    x = model.sample(3, torch.Generator().manual_seed(1))
    if op.complex_image:
        x = torch.complex(x, 0.5 * x.flip(-1))
    y = op.A(x)
    counted = Counting(model)
    xd, nfe = peers.ddrm(counted, op, y, steps=10, generator=torch.Generator().manual_seed(2))
    assert nfe == counted.calls == 10 and xd.shape == x.shape and xd.dtype == x.dtype
    assert (op.A(xd) - y).abs().max() < 1e-9
    counted.calls = 0
    xp, nfe = peers.diffpir(counted, op, y, steps=12, generator=torch.Generator().manual_seed(2),
                            sigma_floor=0.0)
    assert nfe == counted.calls == 12 and xp.shape == x.shape and xp.dtype == x.dtype
    assert (op.A(xp) - y).abs().max() < 1e-9
    # with the reference code's floor sigma_n = 1e-3 the last data step leaves a residual of
    # rho_1 / (s^2 + rho_1) of the denoiser's: small, not zero
    xf, _ = peers.diffpir(model, op, y, steps=12, generator=torch.Generator().manual_seed(2))
    assert 0 < float((op.A(xf) - y).abs().max()) < 1e-2 * float(y.abs().max())


def _stationary_cov():
    """Real stationary field: covariance F^H diag(p) F with a symmetric spectrum p."""
    ky = torch.fft.fftfreq(8).reshape(-1, 1)
    kx = torch.fft.fftfreq(8).reshape(1, -1)
    p = (0.05 + 1.0 / (1 + 40 * (kx**2 + ky**2))).double()
    eye = torch.eye(D, dtype=torch.float64).reshape(D, 1, 8, 8)
    cov = ifft2c(p * fft2c(eye)).real.reshape(D, D)
    return (cov + cov.T) / 2


INDEPENDENT = {  # operator, prior covariance making measured/unmeasured coefficients independent
    "inpaint": lambda: torch.diag(0.05 + 0.3 * torch.rand(D, generator=torch.Generator()
                                                          .manual_seed(5), dtype=torch.float64)),
    "mri": _stationary_cov,
}


@pytest.mark.parametrize("peer,steps", [("ddrm", 20), ("diffpir", 50)])
@pytest.mark.parametrize("name", list(INDEPENDENT))
def test_posterior_mean_on_independent_gaussian_prior(name, peer, steps):
    op = _ops()[name]
    cov = INDEPENDENT[name]()
    mean = 0.3 * torch.randn(D, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    model = _model(cov=cov, mean=mean)
    x_true = model.sample(1, torch.Generator().manual_seed(7))
    y = op.A(x_true).expand(N_SAMPLES, *op.A(x_true).shape[1:])
    options = {"sigma_floor": 0.0} if peer == "diffpir" else {}
    xs, _ = peers.PEERS[peer].run(model, op, y, steps=steps,
                                  generator=torch.Generator().manual_seed(8), **options)
    a = _dense(op)
    gain = cov @ a.T @ torch.linalg.pinv(a @ cov @ a.T)
    post_mean = mean + gain @ (_real_form(y[:1])[0] - a @ mean)
    post_var = (cov - gain @ a @ cov).diagonal().clamp_min(0)
    err = (xs.reshape(N_SAMPLES, D).mean(0) - post_mean).abs()
    assert (err <= 5 * (post_var / N_SAMPLES).sqrt() + 0.01).all(), err.max()
    assert (op.A(xs) - y).abs().max() < 1e-9


# ------------------------------------------------------------------------- DPS
def test_dps_step_sizes_are_the_operators():
    """The reference configs' zeta, held by each operator (MRI takes inpainting's)."""
    want = {"sr-avg": 0.3, "sr-bicubic": 0.3, "inpaint": 0.5, "mri": 0.5, "mri-complex": 0.5,
            "deblur-gaussian": 0.3, "deblur-motion": 0.3}
    assert {k: op.peer_defaults["dps"]["zeta"] for k, op in _ops().items()} == want

    class Scale(LinearOperator):   # no peer_defaults: DPS asks for zeta
        image_shape = SHAPE

        def A(self, x):
            return 2 * x

        A_adjoint = A

    with pytest.raises(ValueError, match="no default DPS step size for Scale"):
        peers.dps(_model(), Scale(), torch.zeros(1, *SHAPE, dtype=torch.float64), steps=2)


def test_dps_single_step_is_ddpm_step_minus_norm_gradient():
    """steps = 1: x_1 = b_1 z, then x_0 = x0_hat(x_1) (the noiseless last DDPM step) minus
    zeta grad ||y - A x0_hat(x_1)||, with the Gaussian x0_hat(x) = mean + K (x - a mean),
    K = a cov (a^2 cov + b^2)^{-1}, so the gradient is K^T A^T r / ||r||."""
    op = _ops()["sr-avg"]
    cov = _smooth_cov()
    model = _model(cov=cov)
    y = op.A(model.sample(2, torch.Generator().manual_seed(1)))
    got, nfe = peers.dps(model, op, y, steps=1, generator=torch.Generator().manual_seed(2),
                         zeta=0.7)
    grid = model.schedule.grid(1)
    a, b = float(grid.a[1]), float(grid.b[1])
    x1 = b * torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    k = a * cov @ torch.linalg.inv(a**2 * cov + b**2 * torch.eye(D, dtype=torch.float64))
    x0 = model.mean + (x1.reshape(2, D) - a * model.mean) @ k.T
    am = _dense(op)
    r = y.reshape(2, -1) - x0 @ am.T
    grad = (r @ am @ k) / r.norm(dim=1, keepdim=True)
    want = x0 + 0.7 * grad                       # minus the gradient of ||y - A x0_hat||
    assert nfe == 1 and (got.reshape(2, D) - want).abs().max() < 1e-10


@pytest.mark.parametrize("name", ["inpaint", "mri", "mri-complex"])
def test_dps_reduces_the_measurement_residual(name):
    op = _ops()[name]
    model = Counting(_model())
    x = model.model.sample(1, torch.Generator().manual_seed(1))
    if op.complex_image:
        x = x.to(torch.complex128)
    y = op.A(x).expand(16, *op.A(x).shape[1:])
    xd, nfe = peers.dps(model, op, y, steps=100, generator=torch.Generator().manual_seed(2))
    assert nfe == model.calls == 100 and xd.shape == (16, *SHAPE) and xd.dtype == x.dtype
    xu, _ = peers.dps(model.model, op, y, steps=100, generator=torch.Generator().manual_seed(2),
                      zeta=0.0)                  # zeta = 0: the unconditional DDPM chain

    def res(v):
        return torch.linalg.vector_norm((op.A(v) - y).reshape(16, -1), dim=1).mean()

    assert res(xd) < 0.2 * res(xu)
    assert (xd - x).abs().pow(2).mean() < 0.5 * (xu - x).abs().pow(2).mean()


# ------------------------------------------------------------------------- entry point, errors
def test_run_peer_maps_images_in_unit_range_and_counts_nfe():
    op = _ops()["inpaint"]
    model = _model()
    x01 = (model.sample(2, torch.Generator().manual_seed(1)) + 1).clamp(0, 2) / 2
    y01 = op.A(x01)
    for name, steps in (("ddrm", 5), ("dps", 5), ("diffpir", 5)):
        out, nfe = peers.run_peer(name, model, op, y01, steps=steps,
                                  generator=torch.Generator().manual_seed(2))
        assert nfe == steps and out.shape == x01.shape and out.dtype == torch.float64
        assert out.min() >= 0 and out.max() <= 1
    out, _ = peers.run_peer("ddrm", model, op, y01, steps=5,
                            generator=torch.Generator().manual_seed(2))
    assert (op.A(out) - y01).abs().max() < 1e-9    # y_m = 2 y - A 1 is the right map
    assert {k: v.steps for k, v in peers.PEERS.items()} == {"ddrm": 20, "dps": 1000, "diffpir": 100}


def test_run_peer_on_a_unet_float32():
    from ccdf.models.unet import UNetDenoiser, build_unet

    torch.manual_seed(0)
    unet = build_unet(image_size=16, channels=1, block_out_channels=(8, 16), layers_per_block=1)
    model = UNetDenoiser(unet, VPSchedule(), "eps", "t1000").eval()
    op = SuperResolution(4, (1, 16, 16))
    y01 = op.A(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    for name in peers.PEERS:
        out, nfe = peers.run_peer(name, model, op, y01, steps=3, sigma_y=0.01,
                                  generator=torch.Generator().manual_seed(2))
        assert nfe == 3 and out.shape == (1, 1, 16, 16) and out.dtype == torch.float32
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        assert not out.requires_grad
    assert all(p.grad is None for p in model.parameters())   # DPS differentiates x only
    with pytest.raises(ValueError, match="16x16"):
        peers.run_peer("ddrm", model, SuperResolution(2, (1, 8, 8)), torch.zeros(1, 1, 4, 4))


def test_clear_errors():
    op = _ops()["inpaint"]
    model = _model()
    y = op.A(model.sample(1, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="unknown peer"):
        peers.run_peer("ilvr", model, op, y)
    with pytest.raises(ValueError, match="steps"):
        peers.ddrm(model, op, y, steps=0)
    with pytest.raises(ValueError, match="eta"):
        peers.ddrm(model, op, y, steps=2, eta=1.5)
    with pytest.raises(ValueError, match="zeta"):
        peers.diffpir(model, op, y, steps=2, zeta=2.0)
    with pytest.raises(ValueError, match="sigma_y"):
        peers.dps(model, op, y, steps=2, sigma_y=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        peers.ddrm(model, op, torch.full_like(y, math.nan), steps=2)

    class Floor(VPSchedule):                       # never reaches clean data: b(0) > 0
        def b(self, t):
            return super().b(t).clamp_min(0.1)

    with pytest.raises(ValueError, match="schedule"):
        peers.diffpir(_model(Floor()), op, y, steps=2)
    with pytest.raises(ValueError, match="schedule"):
        no_schedule = GaussianDenoiser(torch.zeros(D), torch.eye(D), None, shape=SHAPE)
        peers.ddrm(no_schedule, op, y, steps=2)


# ------------------------------------------------------------------------- deepinv cross-check
def _deepinv():
    try:
        import deepinv
    except Exception as e:  # not installed, or torchvision broken next to a CPU torch
        pytest.skip(f"deepinv not importable: {type(e).__name__}: {e}")
    return deepinv


@pytest.mark.parametrize("name", list(_ops()))
def test_data_prox_matches_deepinv(name):
    """Our closed-form data step against deepinv's generic solver of the same problem:
    LinearPhysics.prox_l2(z, y, gamma) = argmin gamma/2 ||Ax - y||^2 + 1/2 ||x - z||^2."""
    dinv = _deepinv()
    op = _ops()[name]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, *SHAPE, generator=g, dtype=torch.float64).to(_basis(op).dtype)
    z = torch.randn(2, *SHAPE, generator=g, dtype=torch.float64).to(_basis(op).dtype)
    y = op.A(x)
    physics = dinv.physics.LinearPhysics(A=op.A, A_adjoint=op.A_adjoint)
    for rho in (0.5, 3.0):
        want = physics.prox_l2(z, y, gamma=1 / rho, solver="CG", max_iter=2000, tol=1e-12)
        assert (peers.data_prox(op, y)(z, rho) - want).abs().max() < 1e-6


@pytest.mark.parametrize("sigma_y", [0.0, 0.1])
def test_ddrm_matches_deepinv_with_shared_noise(sigma_y, monkeypatch):
    """deepinv.sampling.DDRM on the same inpainting problem, the same denoiser (our Gaussian
    model at our grid's noise levels s_i = b_i / a_i) and the same noise: deepinv draws
    randn_like(.) / sqrt(2) in the V^T domain, so it is fed sqrt(2) times our draws.  It adds
    eps = 1e-6 to singular values, hence the 1e-5 tolerance."""
    dinv = _deepinv()
    op = _ops()["inpaint"]
    model = _model()
    steps = 10
    grid = model.schedule.grid(steps)
    lev = (grid.b / grid.a).tolist()
    y = op.A(model.sample(1, torch.Generator().manual_seed(5)))
    y = y + sigma_y * op.A(torch.randn(y.shape, generator=torch.Generator().manual_seed(6),
                                       dtype=torch.float64))
    mine, _ = peers.ddrm(model, op, y, steps=steps, generator=torch.Generator().manual_seed(7),
                         sigma_y=sigma_y)
    g = torch.Generator().manual_seed(7)
    draws = iter([math.sqrt(2) * torch.randn(y.shape, generator=g, dtype=torch.float64)
                  for _ in range(steps + 1)])

    def denoiser(x_ve, sigma):
        sigma = float(sigma)
        if sigma == 0:
            return x_ve
        i = min(range(steps + 1), key=lambda k: abs(lev[k] - sigma))
        return evaluate(model, float(grid.a[i]) * x_ve, grid.t[i].expand(x_ve.shape[0])).x0

    physics = dinv.physics.Inpainting(mask=op.mask[None].double(), img_size=SHAPE,
                                      noise_model=dinv.physics.GaussianNoise(sigma=sigma_y))
    monkeypatch.setattr(torch, "randn_like", lambda t, *a, **k: next(draws))
    ref = dinv.sampling.DDRM(denoiser=denoiser, sigmas=lev[::-1], eta=0.85, etab=1.0)(y, physics)
    monkeypatch.undo()
    assert (mine - ref).abs().max() < 1e-5
