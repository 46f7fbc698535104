"""Automatic t0: the contraction factor it relies on, and the choice itself."""

import pytest
import torch

from ccdf import autot0
from ccdf.models.denoiser import GaussianDenoiser
from ccdf.samplers import solve
from ccdf.schedules import VESchedule, VPSchedule


@pytest.mark.parametrize("schedule", [VPSchedule(), VESchedule(sigma_max=20.0)], ids=["vp", "ve"])
@pytest.mark.parametrize("s2", [0.01, 0.3])
def test_contraction_factor_is_exact_for_gaussian_prior(schedule, s2):
    """Same-noise runs from two starts under N(0, s2 I): the end difference is exactly
    w (x0_hat_1 - x0_hat_2) with w = a^2 s2 / (a^2 s2 + b^2) -- the telescoped product of the
    per-step Jacobians sqrt(alpha_i) v_{i-1} / v_i, v_i = a_i^2 s2 + b_i^2."""
    d, steps, t0 = 16, 60, 0.4
    model = GaussianDenoiser(torch.zeros(d), s2 * torch.eye(d), schedule)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(3, d, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, d, generator=g, dtype=torch.float64)
    r1 = solve(model, x1, steps=steps, t0=t0, sampler="ddpm", generator=torch.Generator().manual_seed(9))
    r2 = solve(model, x2, steps=steps, t0=t0, sampler="ddpm", generator=torch.Generator().manual_seed(9))
    w = autot0.contraction_factor(schedule, t0, s2)
    assert 0 < w < 1
    assert torch.allclose(r1.x - r2.x, w * (x1 - x2), rtol=1e-6, atol=1e-9)


def test_t0_for_error_is_minimal_and_monotone():
    s = VPSchedule()
    prev = 0.0
    for eps0 in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        t0 = autot0.t0_for_error(s, 100, eps0, mu=0.25, t0_min=0.01)
        assert t0 >= prev
        prev = t0
        assert autot0.contraction_factor(s, t0, eps0) ** 2 <= 0.25
        if t0 > 0.01:
            assert autot0.contraction_factor(s, t0 - 0.01, eps0) ** 2 > 0.25
    assert autot0.t0_for_error(s, 100, 1e-6, t0_min=0.05) == 0.05  # the floor


def test_choose_t0_uses_saved_error_or_prior_samples():
    from ccdf.models.unet import UNetDenoiser, build_unet
    from ccdf.operators import make_operator

    torch.manual_seed(0)
    model = UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()).eval()
    op = make_operator("sr", (1, 16, 16), factor=4)
    x = torch.rand(2, 1, 16, 16)
    y = op.A(x)
    x0 = torch.nn.functional.interpolate(y, scale_factor=4)
    t_a, why_a = autot0.choose_t0(model, op, y, x0, 50, init_meta={"heldout": {"mse_net": 1e-3}})
    t_b, why_b = autot0.choose_t0(model, op, y, x0, 50, init_meta={"heldout": {"mse_net": 1e-1}})
    assert "held-out" in why_a and t_a < t_b
    cache = {}
    t_c, why_c = autot0.choose_t0(model, op, y, x0, 50, cache=cache)
    assert "prior samples" in why_c and 0 < t_c <= 1 and len(cache) == 1
