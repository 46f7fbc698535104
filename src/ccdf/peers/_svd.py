"""The SVD A = U S V^T of the supported operators, and the DiffPIR data step built on it."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..operators.base import Spectral
from ..operators.inpaint import Inpainting
from ..operators.mri import MRI, fft2c, ifft2c
from ..operators.sr import SuperResolution, bicubic_matrix
from ._common import real_dtype


def _separable(dh: Tensor, dw: Tensor) -> Spectral:
    """SVD of x -> dh x dw^T from the 1-D SVDs (Kronecker structure)."""
    def one(d):
        _, sv, vh = torch.linalg.svd(d, full_matrices=True)       # vh: (n, n)
        full = torch.zeros(d.shape[1], dtype=torch.float64)
        full[: sv.numel()] = sv
        return vh, full

    vh_h, s_h = one(dh)
    vh_w, s_w = one(dw)

    def mats(x):
        return vh_h.to(x.device, x.dtype), vh_w.to(x.device, x.dtype)

    def vt(x):
        h, w = mats(x)
        return torch.einsum("ij,bcjk,lk->bcil", h, x, w)

    def v(c):
        h, w = mats(c)
        return torch.einsum("ji,bcjk,kl->bcil", h, c, w)

    return Spectral(vt, v, s_h[:, None] * s_w[None, :])


def spectral(operator) -> Spectral:
    """The SVD of ``operator``: its own (``operator.svd()``, e.g. ``Blur``: V = the DFT) where it
    has one, else the formulas below for SR (average pooling, bicubic), inpainting and
    single-coil MRI.

    * inpainting: V = I, s = mask;
    * SR: A x = D_h x D_w^T (average pooling: D = I kron 1^T/f; bicubic: ``bicubic_matrix``), so
      V and s come from the 1-D SVDs (s = 1/f on every block mean for average pooling);
    * MRI, complex images: V^T = the unitary DFT F (times the operator's known phase), s = mask;
    * MRI, real images: V = F again (its coefficients of a real image are Hermitian symmetric,
      and a real orthonormal basis pairs k with -k), s = sqrt((M(k) + M(-k)) / 2): 1 where both
      of a conjugate pair are sampled, 1/sqrt(2) where one is (A^T A = F^H D F, see operators.mri).
    Raises ValueError for other operators (multi-coil MRI needs an SVD no cheap formula gives).
    """
    own = getattr(operator, "svd", None)
    sp = own() if callable(own) else None
    if sp is not None:
        return sp
    if isinstance(operator, Inpainting):
        return Spectral(lambda x: x, lambda c: c, operator.mask.to(torch.float64))
    if isinstance(operator, SuperResolution):
        _, h, w = operator.image_shape
        f = operator.factor
        if operator.kernel == "avg":
            def mat(n):
                return torch.kron(torch.eye(n // f, dtype=torch.float64),
                                  torch.full((1, f), 1.0 / f, dtype=torch.float64))
        else:
            def mat(n):
                return bicubic_matrix(n, f)
        return _separable(mat(h), mat(w))
    if isinstance(operator, MRI) and operator.coils is None:
        m = operator.mask.to(torch.float64)
        if operator.complex_image:  # a known phase e: A = M F diag(e), so V^T = F diag(e)
            return Spectral(lambda x: fft2c(operator._mod(x)),
                            lambda c: operator._mod(ifft2c(c), conj=True), m)
        s = ((m + operator.mask_flip.to(torch.float64)) / 2).sqrt()
        return Spectral(fft2c, lambda c: ifft2c(c).real.contiguous(), s)
    raise ValueError(f"no SVD is known for {type(operator).__name__}"
                     + (" with coil maps" if isinstance(operator, MRI) else "")
                     + ": DDRM needs A = U S V^T; it supports sr (avg, bicubic), inpaint, "
                       "deblur and single-coil mri")


def data_prox(operator, y: Tensor) -> Callable[[Tensor, float], Tensor]:
    """``prox(x0, rho) = argmin_x ||y - A x||^2 + rho ||x - x0||^2`` (rho >= 0; rho = 0 is the
    limit x0 + A^+(y - A x0)).  Closed form in the SVD basis where ``spectral`` knows one:
    ``xbar = (s^2 ybar + rho x0bar) / (s^2 + rho)``; otherwise ``operator.prox_l2`` (conjugate
    gradients on ``(A^T A + rho) u = A^T (y - A x0)``, x = x0 + u)."""
    try:
        sp = spectral(operator)
    except ValueError:
        sp = None
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
