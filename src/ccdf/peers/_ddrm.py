"""DDRM (Kawar, Elad, Ermon & Song, NeurIPS 2022): see ``ccdf.peers``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.denoiser import evaluate
from ..noise import randn_like
from ._common import check_sigma, check_y, grid_of, real_dtype, times
from ._svd import spectral


def ddrm(model, operator, y: Tensor, *, steps: int = 20, generator: torch.Generator | None = None,
         sigma_y: float = 0.0, eta: float = 0.85, eta_b: float = 1.0) -> tuple[Tensor, int]:
    """DDRM (Kawar et al. 2022); y and the result in the model's data space.

    A separate loop rather than a step of ``samplers.solve``: its start is drawn per singular
    value (variance ``s_N^2 - sigma_y^2/s_k^2``), which ``solve``'s jump ``a x0 + b z`` cannot
    express, and each update mixes the denoiser, the previous iterate and ``ybar`` per singular
    value instead of a reverse step followed by a non-expansive consistency map.  (For
    sigma_y = 0 and eta_b = 1 it is exactly a DDIM-like step plus ``consistency.Projection``.)
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"DDRM eta must be in [0, 1], got {eta}")
    if not 0 <= eta_b <= 1:
        raise ValueError(f"DDRM eta_b must be in [0, 1], got {eta_b}")
    sigma_y = check_sigma(sigma_y)
    check_y(y)
    sp = spectral(operator)
    grid = grid_of(model, steps)
    n = int(steps)
    with torch.no_grad():
        return _ddrm_loop(model, operator, y, sp, grid, n, generator, sigma_y, eta, eta_b), n


def _ddrm_loop(model, operator, y, sp, grid, n, generator, sigma_y, eta, eta_b) -> Tensor:
    pinv = operator.A_pinv(y)                                    # image-shaped, A^+ y
    rdt = real_dtype(pinv)
    ybar = sp.Vt(pinv)
    s = sp.s.to(pinv.device, rdt)
    meas = s > 0
    nsr = torch.where(meas, sigma_y / s.clamp_min(1e-30), torch.full_like(s, math.inf))
    lev = (grid.b / grid.a).tolist()                             # s_i = b_i / a_i
    c = math.sqrt(1 - eta**2)

    def noise():
        return sp.Vt(randn_like(pinv, generator))

    top = lev[n]
    z = noise()
    start_sd = (top**2 - nsr**2).clamp_min(0).sqrt()
    xbar = torch.where(meas & (nsr < top), ybar + start_sd * z, top * z)
    for i in range(n, 0, -1):
        pred = evaluate(model, float(grid.a[i]) * sp.V(xbar), times(grid, i, y.shape[0]))
        x0, eps = sp.Vt(pred.x0), sp.Vt(pred.eps)
        lo = lev[i - 1]
        z = noise()
        free = x0 + c * lo * eps + eta * lo * z                                    # s_k = 0
        below = x0 + c * lo * (ybar - x0) / nsr.clamp_min(1e-30) + eta * lo * z    # lo < nsr
        above = ((1 - eta_b) * x0 + eta_b * ybar
                 + (lo**2 - (eta_b * nsr) ** 2).clamp_min(0).sqrt() * z)           # lo >= nsr
        xbar = torch.where(~meas, free, torch.where(lo < nsr, below, above))
    return float(grid.a[0]) * sp.V(xbar)
