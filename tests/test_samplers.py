"""The reverse loop against closed forms, with the exact score of Gaussian data.

Tolerances: a sample mean of n draws has standard error sqrt(var/n) and a sample covariance
entry sqrt((S_jj S_kk + S_jk^2)/n); we allow 5 standard errors (false-alarm rate < 1e-5 per
entry) plus a discretisation allowance DISC = 0.02 for the finite step count. The chains are
first-order accurate in 1/N; measured with 1e5 samples, the largest deviation of any mean or
covariance entry was 0.0023 at N = 1000 (DDPM linear; 0.0016 for cosine) against 0.0016 at
N = 4000, i.e. at the Monte Carlo level, so DISC leaves a wide margin.
"""

import math

import pytest
import torch

from ccdf.models.denoiser import GaussianDenoiser
from ccdf.noise import StackedGenerator, randn_like
from ccdf.operators import make_operator
from ccdf.reconstruction import Problem, reconstruct, reconstruct_batch
from ccdf.samplers import jump, solve
from ccdf.schedules import VESchedule, VPSchedule

DISC = 0.02
MEAN = torch.tensor([0.5, -0.3, 0.1], dtype=torch.float64)
COV = torch.tensor([[0.30, 0.10, 0.00], [0.10, 0.20, -0.05], [0.00, -0.05, 0.10]],
                   dtype=torch.float64)
N_SAMPLES = 8000

SETTINGS = [  # (id, schedule, sampler, steps)
    ("ddpm-linear", VPSchedule(), "ddpm", 1000),
    ("ddpm-cosine", VPSchedule(beta="cosine"), "ddpm", 1000),
    ("smld", VESchedule(sigma_max=20.0), "smld", 1000),
    ("ddim", VPSchedule(), "ddim", 500),
]


def _check_moments(x, mean, cov, n):
    emp_mean = x.mean(0)
    emp_cov = torch.cov(x.T)
    se_mean = (cov.diagonal() / n).sqrt()
    d = cov.diagonal()
    se_cov = ((d[:, None] * d[None, :] + cov**2) / n).sqrt()
    assert ((emp_mean - mean).abs() <= 5 * se_mean + DISC).all(), (emp_mean, mean)
    assert ((emp_cov - cov).abs() <= 5 * se_cov + DISC).all(), (emp_cov, cov)


@pytest.mark.parametrize("name,schedule,sampler,steps", SETTINGS, ids=[s[0] for s in SETTINGS])
def test_unconditional_reproduces_gaussian(name, schedule, sampler, steps):
    model = GaussianDenoiser(MEAN, COV, schedule)
    g = torch.Generator().manual_seed(1)
    x0_hat = torch.zeros(N_SAMPLES, 3, dtype=torch.float64)
    res = solve(model, x0_hat, steps=steps, t0=1.0, sampler=sampler, generator=g)
    assert res.nfe == steps and res.n_prime == steps
    _check_moments(res.x, MEAN, COV, N_SAMPLES)


@pytest.mark.parametrize("t0", [0.1, 0.3, 0.6])
@pytest.mark.parametrize("name,schedule,sampler,steps", SETTINGS[:1] + SETTINGS[2:],
                         ids=["ddpm", "smld", "ddim"])
def test_jump_from_exact_samples_reproduces_gaussian(name, schedule, sampler, steps, t0):
    """Forward-diffusing exact data to t0 gives exact p_t0, so the chain from there is exact."""
    model = GaussianDenoiser(MEAN, COV, schedule)
    g = torch.Generator().manual_seed(2)
    x0 = model.sample(N_SAMPLES, g)
    res = solve(model, x0, steps=steps, t0=t0, sampler=sampler, generator=g)
    assert res.n_prime == round(t0 * steps) == res.nfe
    _check_moments(res.x, MEAN, COV, N_SAMPLES)


def test_jump_does_not_return_the_start():
    """A sanity check that the t0 jump really diffuses: outputs are not the inputs."""
    model = GaussianDenoiser(MEAN, COV, VPSchedule())
    x0 = model.sample(1000, torch.Generator().manual_seed(3))
    res = solve(model, x0, steps=100, t0=0.5, generator=torch.Generator().manual_seed(4))
    assert (res.x - x0).pow(2).mean() > 0.05


def test_callback_and_nfe_with_corrector():
    from ccdf.samplers import LangevinCorrector

    model = GaussianDenoiser(MEAN, COV, VESchedule(sigma_max=20.0))
    seen = []
    res = solve(model, torch.zeros(4, 3, dtype=torch.float64), steps=10, t0=0.5, sampler="smld",
                corrector=LangevinCorrector(steps=1), callback=lambda d: seen.append(d["i"]),
                generator=torch.Generator().manual_seed(0))
    assert seen == [5, 4, 3, 2, 1]
    assert res.nfe == 10  # one predictor + one corrector evaluation per step


def test_bad_inputs():
    model = GaussianDenoiser(MEAN, COV, VPSchedule())
    x = torch.zeros(2, 3, dtype=torch.float64)
    for t0 in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="t0"):
            solve(model, x, steps=10, t0=t0)
    with pytest.raises(ValueError, match="NaN"):
        solve(model, torch.full((2, 3), math.nan, dtype=torch.float64), steps=10)
    with pytest.raises(ValueError, match="sampler"):
        solve(model, x, steps=10, sampler="euler")


def test_same_seed_same_result():
    model = GaussianDenoiser(MEAN, COV, VPSchedule())
    x = torch.zeros(8, 3, dtype=torch.float64)
    r1 = solve(model, x, steps=50, t0=0.4, generator=torch.Generator().manual_seed(7))
    r2 = solve(model, x, steps=50, t0=0.4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(r1.x, r2.x)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_cg_consistency_corrects_x0_hat_and_ends_on_the_measurement(sampler):
    """DDS (``ConjugateGradient``, tweedie = True): the loop applies it to x0_hat before the
    step, so every x0_hat it reports fits y, and the last step (b_0 = 0) returns that x0_hat."""
    from ccdf.consistency import ConjugateGradient
    from ccdf.operators import make_operator

    op = make_operator("inpaint", (1, 4, 4), mask="random:0.5", seed=1)
    model = GaussianDenoiser(torch.zeros(16, dtype=torch.float64),
                             torch.eye(16, dtype=torch.float64), VPSchedule(), shape=(1, 4, 4))
    g = torch.Generator().manual_seed(0)
    y = op.A(torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64))
    x0s = []
    res = solve(model, torch.zeros(3, 1, 4, 4, dtype=torch.float64), steps=20, t0=1.0,
                sampler=sampler, consistency=ConjugateGradient(op, y, iters=2), generator=g,
                callback=lambda d: x0s.append(d["x0"]))
    assert len(x0s) == 20
    assert all(torch.allclose(op.A(x0), y, atol=1e-12) for x0 in x0s)
    assert torch.allclose(res.x, x0s[-1]) and torch.allclose(op.A(res.x), y, atol=1e-12)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_jump_is_the_forward_marginal_at_n_prime():
    grid = VPSchedule().grid(10)
    x0 = torch.rand(2, 3, generator=_gen(0), dtype=torch.float64)
    z = randn_like(x0, _gen(5))
    assert torch.equal(jump(grid, 3, x0, _gen(5)), float(grid.a[3]) * x0 + float(grid.b[3]) * z)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_stacked_generator_draws_each_item_from_its_own_generator(dtype):
    x = torch.zeros(6, 2, 3, dtype=dtype)
    z = randn_like(x, StackedGenerator([1, 2, _gen(3)]))
    for k in range(3):  # item k's two rows: its own draw of shape (2, ...)
        assert torch.equal(z[2 * k: 2 * k + 2], randn_like(x[:2], _gen(k + 1)))
    with pytest.raises(ValueError, match="does not split"):
        randn_like(torch.zeros(5, 2), StackedGenerator([1, 2]))


class _RowByRow:
    """The model called one row at a time: a batch's network outputs are exactly the rows'."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, x, t):
        return torch.cat([self.model(x[i: i + 1], t[i: i + 1]) for i in range(len(x))])


@pytest.mark.parametrize("consistency", ["projection", "cg", "prox"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_a_batch_of_items_gives_each_item_what_it_gets_alone(consistency, sampler):
    """``reconstruct_batch``: ONE reverse loop over items with their own operators,
    measurements and generators gives every item bit for bit what ``reconstruct`` gives it
    alone (K = 2 samples each), the network's batch rounding aside (here: none)."""
    model = _RowByRow(GaussianDenoiser(torch.zeros(16, dtype=torch.float64),
                                       0.2 * torch.eye(16, dtype=torch.float64), VPSchedule(),
                                       shape=(1, 4, 4)))
    ops = [make_operator("inpaint", (1, 4, 4), mask="random:0.5", seed=k) for k in range(3)]
    xs = [torch.rand(1, 1, 4, 4, generator=_gen(k), dtype=torch.float64) for k in range(3)]
    probs = [Problem(op, op.A(x), op.A_pinv(op.A(x)), _gen(10 + k))
             for k, (op, x) in enumerate(zip(ops, xs))]
    kw = dict(t0=0.5, steps=10, sampler=sampler, samples=2, sigma_y=0.01, consistency=consistency)
    batch = reconstruct_batch(model, probs, **kw)
    for k, p in enumerate(probs):
        alone = reconstruct(model, p.operator, p.y, p.x0_hat, generator=_gen(10 + k), **kw)
        assert torch.equal(batch[k].samples, alone.samples) and batch[k].nfe == alone.nfe
    assert not torch.equal(batch[0].samples[:, 0], batch[0].samples[:, 1])  # K samples differ
