"""DDRM's view of an operator's SVD (``spectral``) and the DiffPIR data step built on it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..operators.base import Spectral
from ._common import real_dtype


def spectral(operator) -> Spectral:
    """The SVD ``A = U S V^T`` of ``operator``: its own ``operator.svd()`` (SR: the separable
    Kronecker SVD; inpainting: V = I; single-coil MRI and deblurring: V = the DFT).  Raises
    ValueError naming the operator where it knows none (e.g. multi-coil MRI)."""
    sp = operator.svd()
    if sp is None:
        raise ValueError(f"no SVD is known for {operator.name}: DDRM needs A = U S V^T "
                         "(the operator's svd()); sr (avg, bicubic), inpaint, deblur and "
                         "single-coil mri have one")
    return sp


def data_prox(operator, y: Tensor) -> Callable[[Tensor, float], Tensor]:
    """``prox(x0, rho) = argmin_x ||y - A x||^2 + rho ||x - x0||^2`` (rho >= 0; rho = 0 is the
    limit x0 + A^+(y - A x0)).  Closed form in the SVD basis where the operator has one (``svd()``):
    ``xbar = (s^2 ybar + rho x0bar) / (s^2 + rho)``; otherwise ``operator.prox_l2`` (conjugate
    gradients on ``(A^T A + rho) u = A^T (y - A x0)``, x = x0 + u)."""
    sp = operator.svd()
    if sp is None:
        return lambda x0, rho: operator.prox_l2(x0, y, rho)

    pinv = operator.A_pinv(y)
    ybar = sp.Vt(pinv)
    s2 = sp.s.to(pinv.device, real_dtype(pinv)) ** 2

    def prox(x0: Tensor, rho: float) -> Tensor:
        x0bar = sp.Vt(x0)
        if rho == 0:
            return sp.V(torch.where(s2 > 0, ybar, x0bar))
        return sp.V((s2 * ybar + rho * x0bar) / (s2 + rho))
    return prox
