"""Stochastic contraction constants and the CCDF error bounds (Theorems 1 and 2 of Chung,
Sim & Ye, CVPR 2022, arXiv 2112.05146).

For a reverse chain x_{i-1} = f(x_i, i) + g_i z followed by a non-expansive consistency map
x <- A x + b, two runs from different starts satisfy (Theorem 1 + Corollary 1)

    eps_{0,r} <= 2 C tau / (1 - lambda^2) + lambda^{2 N'} eps_{N'}

with lambda = max_{i<=N'} sigma_max(df/dx) for the point-mass (data-conditional) score
    DDPM / ancestral: sqrt(alpha_i) b_{i-1}^2 / b_i^2      (SMLD: (s_{i-1}^2 - s_0^2)/(s_i^2 - s_0^2))
    DDIM:             b_{i-1} / b_i                        (the paper's sigma_{i-1} / sigma_i)
C = max_{i<=N'} g_i^2 (per pixel: the paper's C divided by n; 0 for deterministic DDIM),
tau = Tr(A^T A) / n of the consistency map's linear part I - P (the unmeasured fraction), and
eps_{N'} = a_{N'}^2 eps0: the start x_{N'} = a x0_hat + b z differs from the ideal a x0 + b z
by a_{N'} (x0_hat - x0).  All errors are per pixel (mean squared error).
Theorem 2: the smallest N' whose bound is <= mu eps0.
"""

from __future__ import annotations

import math

import torch

from .samplers.steps import DDIM, Ancestral
from .schedules import VESchedule, VPSchedule, n_prime

#: the three settings of the paper (Sec. 4): schedule and reverse step for each
SETTINGS = {
    "ddpm": (VPSchedule, lambda: Ancestral("large")),
    "smld": (VESchedule, lambda: Ancestral("large")),
    "ddim": (VPSchedule, lambda: DDIM(0.0)),
}


def tau(operator, image_shape, probes: int = 32, generator=None) -> float:
    """tau = Tr((I-P)^T (I-P)) / n = 1 - Tr(P)/n, estimated with Rademacher probes."""
    if operator is None:
        return 1.0
    g = generator or torch.Generator().manual_seed(0)
    z = torch.randint(0, 2, (probes, *image_shape), generator=g).double() * 2 - 1
    if getattr(operator, "complex_image", False):
        z = torch.complex(z, torch.zeros_like(z))
    pz = operator.project(z)
    tr_p = float((z.conj() * pz).real.sum()) / probes
    return max(0.0, 1.0 - tr_p / z[0].numel())


def per_step(schedule, steps: int, sampler) -> tuple[list[float], list[float]]:
    """lambda_i and noise variance g_i^2 for i = 1..N (index 0 unused)."""
    grid = schedule.grid(steps)
    lam = [0.0] + [sampler.jacobian(grid, i) for i in range(1, steps + 1)]
    var = [0.0] + [sampler.noise_var(grid, i) for i in range(1, steps + 1)]
    return lam, var


def theorem1(schedule, steps: int, t0: float, sampler, eps0: float = 1.0,
             tau_: float = 1.0) -> dict:
    """lambda, C, tau, eps_{N'} and the Theorem 1 bound for N' = round(t0 N) steps."""
    n_p = n_prime(t0, steps)
    lam, var = per_step(schedule, steps, sampler)
    return _bound(schedule, steps, n_p, lam, var, eps0, tau_)


def _bound(schedule, steps, n_p, lam, var, eps0, tau_) -> dict:
    lam_max = max(lam[1: n_p + 1])
    c = max(var[1: n_p + 1])
    a = float(schedule.a(n_p / steps))
    eps_np = a**2 * eps0
    noise = 2 * c * tau_ / (1 - lam_max**2) if lam_max < 1 else (math.inf if c > 0 else 0.0)
    bound = noise + lam_max ** (2 * n_p) * eps_np
    return {"lambda": lam_max, "C": c, "tau": tau_, "eps0": eps0, "eps_nprime": eps_np,
            "n_prime_run": n_p, "t0": n_p / steps, "noise_term": noise, "bound": bound}


def theorem2(schedule, steps: int, sampler, eps0: float, mu: float = 0.5,
             tau_: float = 1.0) -> int | None:
    """The smallest N' in 1..N whose Theorem 1 bound is <= mu eps0 (None if none is)."""
    if not 0 < mu <= 1:
        raise ValueError(f"mu must be in (0, 1], got {mu}")
    lam, var = per_step(schedule, steps, sampler)
    for n_p in range(1, steps + 1):
        if _bound(schedule, steps, n_p, lam, var, eps0, tau_)["bound"] <= mu * eps0:
            return n_p
    return None


def report(setting: str, steps: int, t0: float, eps0: float = 1.0, mu: float = 0.5,
           tau_: float = 1.0, schedule=None, variance: str | None = None) -> dict:
    """Everything ``ccdf theory`` prints, for setting 'ddpm' | 'smld' | 'ddim'.

    ``variance`` of the ancestral step (ddpm, smld): 'large' (beta_i, the paper's
    C = n (1 - alpha_N); the default) or 'small' (the posterior variance, what the sampler
    ``ddpm`` of ``ccdf solve`` runs: same lambda, smaller C, so the 'large' bound covers it)."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown schedule {setting!r}; choose one of {', '.join(SETTINGS)}")
    if not math.isfinite(eps0) or eps0 <= 0:
        raise ValueError(f"eps0 must be a positive number, got {eps0}")
    sched_cls, make = SETTINGS[setting]
    schedule = schedule or sched_cls()
    sampler = make()
    if variance is not None and isinstance(sampler, Ancestral):
        sampler = Ancestral(variance)
    out = {"schedule": setting, "steps": steps,
           "variance": sampler.variance if isinstance(sampler, Ancestral) else None}
    out.update(theorem1(schedule, steps, t0, sampler, eps0, tau_))
    out["mu"] = mu
    out["n_prime"] = theorem2(schedule, steps, sampler, eps0, mu, tau_)
    out["t0_min"] = None if out["n_prime"] is None else out["n_prime"] / steps
    return out
