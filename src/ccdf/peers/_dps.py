"""DPS (Chung, Kim, Mccann, Klasky & Ye, ICLR 2023): see ``ccdf.peers``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.denoiser import Prediction, evaluate
from ..noise import randn_like
from ..samplers import Ancestral
from ._common import check_sigma, check_y, grid_of, times


def dps(model, operator, y: Tensor, *, steps: int = 1000, generator: torch.Generator | None = None,
        sigma_y: float = 0.0, zeta: float | None = None) -> tuple[Tensor, int]:
    """DPS (Chung et al. 2023), Algorithm 1; y and the result in the model's data space.

    A separate loop rather than a step of ``samplers.solve``: the correction is a gradient with
    respect to x_i through the network (``solve`` runs without autograd and its consistency
    only sees x_{i-1}).  ``sigma_y`` is only checked: DPS's step size does not use it.
    ``zeta=None``: the operator's ``peer_defaults["dps"]["zeta"]`` (its task's reference value).
    """
    check_sigma(sigma_y)
    check_y(y)
    if zeta is None:
        zeta = operator.peer_defaults.get("dps", {}).get("zeta")
        if zeta is None:
            raise ValueError(f"no default DPS step size for {operator.name}; pass zeta")
    if not math.isfinite(zeta) or zeta < 0:
        raise ValueError(f"DPS zeta must be a finite number >= 0, got {zeta}")
    grid = grid_of(model, steps)
    n = int(steps)
    step = Ancestral("small" if getattr(model.schedule, "kind", "vp") == "vp" else "large")
    template = operator.A_pinv(y)
    x = float(grid.b[n]) * randn_like(template, generator)
    for i in range(n, 0, -1):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            pred = evaluate(model, x, times(grid, i, y.shape[0]))
            r = (y - operator.A(pred.x0)).reshape(y.shape[0], -1)
            grad, = torch.autograd.grad(torch.linalg.vector_norm(r, dim=1).sum(), x)
        with torch.no_grad():
            pred = Prediction(*(p.detach() for p in pred))
            x = step.step(pred, x.detach(), grid, i, generator) - zeta * grad
        if not bool(torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all()):
            raise FloatingPointError(f"DPS: non-finite values at step {i} of {n}; lower zeta")
    return x.detach(), n
