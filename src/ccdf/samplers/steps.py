"""Reverse-step update rules x_i -> x_{i-1} on a ``schedules.Grid``, for VP and VE alike.

With alpha_i = (a_i / a_{i-1})^2 and beta_i = b_i^2 - alpha_i b_{i-1}^2 (``Grid.alpha/beta``):

* ``Ancestral`` -- DDPM (Algorithm 1, lines 4-6) on a VP schedule, the SMLD reverse-SDE step
  x_i + (sigma_i^2 - sigma_{i-1}^2) s + sqrt(sigma_i^2 - sigma_{i-1}^2) z on a VE schedule:
  x_{i-1} = (x_i + beta_i s(x_i)) / sqrt(alpha_i) + sigma_i z,
  sigma_i^2 = beta_i ('large') or the posterior variance b_{i-1}^2 beta_i / b_i^2 ('small');
  the mean is formed as the posterior mean of q(x_{i-1} | x_i, x0_hat) (DDPM eq. 7),
  (a_{i-1} beta_i x0_hat + sqrt(alpha_i) b_{i-1}^2 x_i) / b_i^2, which is the same number
  for x0_hat = (x_i + b_i^2 s) / a_i and keeps a clamped x0_hat (``clip_x0``) in effect.
* ``DDIM`` -- x_{i-1} = a_{i-1} x0_hat + sqrt(b_{i-1}^2 - s_i^2) eps_hat + s_i z,
  s_i = eta sqrt(b_{i-1}^2 beta_i / b_i^2) (eta = 0: deterministic).
* ``LangevinCorrector`` -- score-SDE / score-MRI corrector at fixed noise level:
  x <- x + e s(x) + sqrt(2 e) z, e = 2 alpha_i (snr ||z|| / ||s||)^2.

The last step (i = 1, b_0 = 0) adds no noise: it returns the denoised mean.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.denoiser import Prediction
from ..noise import randn_like


class Ancestral:
    """DDPM ancestral sampling (VP) / SMLD reverse-diffusion predictor (VE)."""

    def __init__(self, variance: str = "small"):
        if variance not in ("small", "large"):
            raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")
        self.variance = variance

    def noise_var(self, grid, i: int) -> float:
        """Variance sigma_i^2 of the noise added by step i (0 on the last step)."""
        if i == 1:
            return 0.0
        beta = grid.beta(i)
        return beta if self.variance == "large" else beta * float(grid.b[i - 1] / grid.b[i]) ** 2

    def jacobian(self, grid, i: int) -> float:
        """d x_{i-1} / d x_i for a point-mass prior (score = -(x - a x0)/b^2): the paper's lambda_i."""
        return math.sqrt(grid.alpha(i)) * float(grid.b[i - 1] ** 2 / grid.b[i] ** 2)

    def step(self, pred: Prediction, x: Tensor, grid, i: int, g) -> Tensor:
        b2 = float(grid.b[i]) ** 2                                          # line 4
        mean = (float(grid.a[i - 1]) * grid.beta(i) / b2) * pred.x0 + \
            (math.sqrt(grid.alpha(i)) * float(grid.b[i - 1]) ** 2 / b2) * x
        var = self.noise_var(grid, i)
        return mean + math.sqrt(var) * randn_like(x, g) if var > 0 else mean  # lines 5-6


class DDIM:
    """DDIM (Song et al. 2021); eta = 0 is the deterministic probability-flow-like sampler."""

    def __init__(self, eta: float = 0.0):
        if not 0 <= eta <= 1:
            raise ValueError(f"DDIM eta must be in [0, 1], got {eta}")
        self.eta = float(eta)

    def noise_var(self, grid, i: int) -> float:
        if i == 1:
            return 0.0
        return self.eta**2 * grid.beta(i) * float(grid.b[i - 1] / grid.b[i]) ** 2

    def jacobian(self, grid, i: int) -> float:
        """Point-mass contraction b_{i-1}/b_i (the paper's sigma_{i-1}/sigma_i)."""
        return float(grid.b[i - 1] / grid.b[i])

    def step(self, pred: Prediction, x: Tensor, grid, i: int, g) -> Tensor:
        var = self.noise_var(grid, i)
        b_prev = float(grid.b[i - 1])
        out = float(grid.a[i - 1]) * pred.x0 + math.sqrt(max(b_prev**2 - var, 0.0)) * pred.eps
        return out + math.sqrt(var) * randn_like(x, g) if var > 0 else out


class LangevinCorrector:
    """Langevin MCMC at the current noise level (score-SDE's corrector, snr = 0.16 in score-MRI)."""

    def __init__(self, steps: int = 1, snr: float = 0.16):
        self.steps, self.snr = int(steps), float(snr)

    def step(self, pred: Prediction, x: Tensor, grid, i: int, g) -> Tensor:
        z = randn_like(x, g)
        dims = tuple(range(1, x.dim()))
        s_norm = torch.linalg.vector_norm(pred.score, dim=dims).mean()
        z_norm = torch.linalg.vector_norm(z, dim=dims).mean()
        e = float(2 * grid.alpha(i) * (self.snr * z_norm / s_norm.clamp_min(1e-12)) ** 2)
        return x + e * pred.score + math.sqrt(2 * e) * z


SAMPLERS = ("ddpm", "ddim", "smld")


def make_sampler(name: str, eta: float = 0.0, variance: str | None = None):
    """'ddpm': ancestral, posterior variance (or the model's ``variance``: diffusers'
    ``variance_type`` fixed_large gives 'large'); 'smld': ancestral, full variance."""
    if name == "ddpm":
        return Ancestral(variance or "small")
    if name == "smld":
        return Ancestral("large")
    if name == "ddim":
        return DDIM(eta)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
