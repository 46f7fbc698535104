"""DiffPIR (Zhu et al., CVPRW 2023): see ``ccdf.peers``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.denoiser import Prediction, data_scale
from ..noise import randn_like
from ..samplers import solve
from ._common import check_sigma, check_y, grid_of
from ._svd import data_prox


class DiffPIRStep:
    """DiffPIR's update as a step rule of ``samplers.solve`` (Algorithm 1, one reverse step).

    ``prox``: ``data_prox(operator, y)``; ``rho_i = lam sigma_n^2 / (b_i / a_i)^2``.
    """

    def __init__(self, prox, *, lam: float = 7.0, zeta: float = 0.3, sigma_n: float = 1e-3):
        if not 0 <= zeta <= 1:
            raise ValueError(f"DiffPIR zeta must be in [0, 1], got {zeta}")
        if not math.isfinite(lam) or lam < 0:
            raise ValueError(f"DiffPIR lam must be a finite number >= 0, got {lam}")
        self.prox, self.lam, self.zeta, self.sigma_n = prox, float(lam), float(zeta), float(sigma_n)

    def rho(self, grid, i: int) -> float:
        return self.lam * self.sigma_n**2 / float(grid.b[i] / grid.a[i]) ** 2

    def step(self, pred: Prediction, x: Tensor, grid, i: int, g) -> Tensor:
        x0 = self.prox(pred.x0, self.rho(grid, i))
        a_prev, b_prev = float(grid.a[i - 1]), float(grid.b[i - 1])
        if b_prev == 0:
            return a_prev * x0
        eps = (x - float(grid.a[i]) * x0) / float(grid.b[i])
        return a_prev * x0 + b_prev * (math.sqrt(1 - self.zeta) * eps
                                       + math.sqrt(self.zeta) * randn_like(x, g))


def diffpir(model, operator, y: Tensor, *, steps: int = 100,
            generator: torch.Generator | None = None, sigma_y: float = 0.0, lam: float = 7.0,
            zeta: float = 0.3, sigma_floor: float = 1e-3) -> tuple[Tensor, int]:
    """DiffPIR (Zhu et al. 2023), Algorithm 1, run by ``samplers.solve`` from x_N = b_N z.

    y and the result in the model's data space; ``sigma_n = max(sigma_y / 2, sigma_floor)`` on
    the [0, 1] image scale of a [-1, 1] model (see the module docstring); for a data range of
    width S, ``max(sigma_y, S sigma_floor) / 2``, which gives every model the same rho_i.
    ``sigma_floor = 0`` with sigma_y = 0 makes the data step an exact projection onto A x = y.
    """
    sigma_y = check_sigma(sigma_y)
    check_y(y)
    if not math.isfinite(sigma_floor) or sigma_floor < 0:
        raise ValueError(f"sigma_floor must be a finite number >= 0, got {sigma_floor}")
    grid_of(model, steps)
    step = DiffPIRStep(data_prox(operator, y), lam=lam, zeta=zeta,
                       sigma_n=max(sigma_y, data_scale(model) * sigma_floor) / 2)
    template = operator.A_pinv(y)
    res = solve(model, torch.zeros_like(template), steps=int(steps), t0=1.0, sampler=step,
                generator=generator)
    return res.x, res.nfe
