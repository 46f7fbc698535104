"""Automatic t0: estimate the initial error eps0 of x0_hat, then take the shortest path that
the contraction argument says is enough.

Rule.  For data whose prior variance along the error direction is s^2, the reverse chain
shrinks a start error exactly by w = s^2 / (s^2 + sigma_bar^2), sigma_bar^2 = b(t0)^2/a(t0)^2
(the product of the per-step Jacobians of Theorem 1 telescopes for a Gaussian prior; see
``contraction_factor``).  Taking s^2 = eps0 (the error lives at its own scale) and asking
w^2 <= mu gives the smallest t0 with

    b(t0)^2 / a(t0)^2 >= eps0 (1 / sqrt(mu) - 1)

(mu = 0.25: the injected noise matches the initial error).  t0 is then clipped to
[t0_min, 1] and rounded up to the grid of N steps.

eps0 (per pixel, images in [0, 1]) comes from, in order:
  * the initializer's own held-out error saved with it (restoration nets: ``heldout.mse_net``);
  * otherwise the classic initializer's error on a few images drawn from the prior itself
    (``prior_init_error``: K unconditional DDIM samples, computed once per run);
plus the measurement residual ||y - A x0_hat||^2 / n and the noise level sigma_y^2.
"""

from __future__ import annotations

import math

import torch

from . import init as _init
from .samplers import solve
from .schedules import n_prime


def contraction_factor(schedule, t0: float, s2: float) -> float:
    """w = prod_i lambda_i(s) = a^2 s^2 / (a^2 s^2 + b^2) for a Gaussian prior of variance s^2."""
    a2 = float(schedule.a(t0)) ** 2
    b2 = float(schedule.b(t0)) ** 2
    return a2 * s2 / (a2 * s2 + b2)


def t0_for_error(schedule, steps: int, eps0_model: float, mu: float = 0.25,
                 t0_min: float = 0.02) -> float:
    """Smallest grid t0 in [t0_min, 1] with contraction_factor(t0, eps0)^2 <= mu."""
    if not 0 < mu < 1:
        raise ValueError(f"mu must be in (0, 1), got {mu}")
    lo = max(n_prime(max(t0_min, 1.0 / steps), steps), 1)
    for n in range(lo, steps + 1):
        if contraction_factor(schedule, n / steps, eps0_model) ** 2 <= mu:
            return n / steps
    return 1.0


def prior_init_error(model, operator, n: int = 8, steps: int = 20, seed: int = 0) -> float:
    """Per-pixel MSE of the classic initializer on n samples of the prior (images in [0, 1])."""
    s, c = model.image_size, model.channels
    g = torch.Generator().manual_seed(seed)
    res = solve(model, torch.zeros(n, c, s, s), steps=steps, t0=1.0, sampler="ddim", generator=g)
    x = ((res.x + 1) / 2).clamp(0, 1)
    x_init = _init.classic(operator, operator.A(x))
    return float((x_init - x).abs().pow(2).mean())


def choose_t0(model, operator, y, x0_hat, steps: int, sigma_y: float = 0.0,
              init_meta: dict | None = None, mu: float = 0.25, t0_min: float = 0.02,
              cache: dict | None = None) -> tuple[float, str]:
    """(t0, reason) for images x0_hat (B, C, H, W) in [0, 1] and their measurement y.

    ``cache`` (a dict) keeps the prior-based estimate across calls of one run.
    """
    held = (init_meta or {}).get("heldout") or {}
    if "mse_net" in held:
        base, src = float(held["mse_net"]), "restoration net's held-out MSE"
    else:
        key = ("prior_init_error", id(model), repr(getattr(operator, "__dict__", operator)))
        if cache is not None and key in cache:
            base = cache[key]
        else:
            base = prior_init_error(model, operator)
            if cache is not None:
                cache[key] = base
        src = "classic initializer's MSE on 8 prior samples"
    resid = float((y - operator.A(x0_hat)).abs().pow(2).mean())
    eps0 = base + resid + float(sigma_y) ** 2
    t0 = t0_for_error(model.schedule, steps, 4.0 * eps0, mu, t0_min)  # model space is [-1, 1]
    reason = (f"eps0 = {eps0:.3g} per pixel ({src} {base:.3g} + residual {resid:.3g} + "
              f"sigma_y^2 {float(sigma_y) ** 2:.3g}); smallest t0 whose contraction "
              f"w = a^2 eps0/(a^2 eps0 + b^2) has w^2 <= mu = {mu}: t0 = {t0:.3f} "
              f"(N' = {n_prime(t0, steps)} of N = {steps}, PSNR of x0_hat ~ "
              f"{-10 * math.log10(max(eps0, 1e-12)):.1f} dB)")
    return t0, reason
