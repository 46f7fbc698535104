"""The forward-operator contract: y = A x for a linear measurement.

* ``x``: (B, C, H, W) image, real (or complex where the operator says so);
* ``y``: the operator's measurement shape (complex for MRI k-space);
* ``A_adjoint`` is the adjoint for the real inner product Re<A x, y> = Re<x, A^T y>;
* ``A_pinv`` is the Moore-Penrose pseudo-inverse (minimum-norm least squares);
* ``project(x) = A_pinv(A(x))`` is the orthogonal projection P onto the measured subspace
  (the row space of A), so ``I - P`` is non-expansive -- the condition Theorem 1 needs;
* ``prox_l2(x0, y, rho) = argmin_x ||y - A x||^2 + rho ||x - x0||^2`` (conjugate gradients
  unless the operator has a closed form).

What the rest of the library asks of an operator, with defaults a new operator may keep:

* ``classic_start(y, sigma_y)``: the classic initial estimate x0_hat (``init.classic``, the
  "come closer" start); default clamp(A^+ y);
* ``svd()``: the SVD as a ``Spectral`` where the operator knows one in closed form: DDRM's
  basis and DiffPIR's data step (``peers.spectral``); default None (DDRM refuses the
  operator, DiffPIR takes conjugate gradients);
* ``peer_defaults``: the peers' published settings for this task, by peer name, under the
  caller's options (``peers.run_peer``; e.g. {"dps": {"zeta": 0.5}}, DPS's step size);
* ``name``: how messages name the operator; ``show(y)``: the measurement drawn as an image
  (``ccdf bench``'s grid);
* ``support``: None, or a bool (1 or B, 1, H, W) mask of the pixels that may be non-zero
  (multi-coil MRI with cropped coil maps: A is blind outside, so those pixels are measured
  zeros; ``reconstruct`` chains ``consistency.Support``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor


@dataclass(frozen=True)
class Spectral:
    """The SVD ``A = U S V^T`` of an operator, seen from the image side.

    ``Vt(x)``: image (B, C, H, W) -> coefficients ``V^T x`` (same shape; complex where V is
    the unitary DFT); ``V`` is its inverse; ``s``: float64 singular value of each
    coefficient, broadcastable to the coefficients (0 where A does not see it).  White noise
    in the image maps to white noise in the coefficients.  ``ybar = Vt(A_pinv(y))``.
    """

    Vt: Callable[[Tensor], Tensor]
    V: Callable[[Tensor], Tensor]
    s: Tensor


class LinearOperator:
    """Base class: subclasses implement ``A`` and ``A_adjoint`` and usually ``A_pinv``."""

    #: image shape (C, H, W) the operator accepts; None means any
    image_shape: tuple | None = None
    #: True when images are complex-valued
    complex_image: bool = False
    #: (lo, hi): the range of this task's images; reconstructions are clamped to it (None: no
    #: bound on that side)
    value_range: tuple = (0.0, 1.0)
    #: the consistency step ``reconstruct`` uses unless told otherwise (``consistency.CONSISTENCY``)
    consistency: str = "projection"
    #: the peers' settings for this operator's task, ``{peer: {option: value}}``, applied by
    #: ``peers.run_peer`` under the caller's options (and read by ``peers.dps`` for its
    #: default ``zeta``); a subclass sets its own dict (this one is read-only: none)
    peer_defaults: Mapping = MappingProxyType({})
    #: pixels known to be zero: None (none), or a bool mask (1 or B, 1, H, W), True where the
    #: image may be non-zero (see ``MRI.support``)
    support: Tensor | None = None

    @property
    def name(self) -> str:
        """A short name for messages (default: the class name)."""
        return type(self).__name__

    def classic_start(self, y: Tensor, sigma_y: float = 0.0) -> Tensor:
        """The classic initial estimate x0_hat (B, C, H, W) for the measurement y, in
        ``value_range`` (``init.classic``); ``sigma_y``: y's noise level on the images' scale,
        for starts that depend on it.  Default: clamp(A^+ y), the minimum-norm least-squares
        image."""
        return self.clamp(self.A_pinv(y))

    def show(self, y: Tensor) -> Tensor:
        """The measurement y drawn as an image (B, C, H, W), values meant for [0, 1].
        Default: y itself when it is a real image of the operator's shape, else |A^+ y|
        clipped to [0, 1]."""
        if not y.is_complex() and self.image_shape is not None and \
                tuple(y.shape[1:]) == tuple(self.image_shape):
            return y
        return self.A_pinv(y).abs().clamp(0, 1)

    def clamp(self, x: Tensor) -> Tensor:
        """x clamped to ``value_range``; complex images are returned as they are."""
        lo, hi = self.value_range
        if x.is_complex() or (lo is None and hi is None):
            return x
        return x.clamp(lo, hi)

    def A(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def A_adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def A_pinv(self, y: Tensor) -> Tensor:
        """Default: conjugate gradients on A A^T u = y, then x = A^T u."""
        return self.A_adjoint(cg(lambda u: self.A(self.A_adjoint(u)), y))

    def project(self, x: Tensor) -> Tensor:
        return self.A_pinv(self.A(x))

    def prox_l2(self, x0: Tensor, y: Tensor, rho: float) -> Tensor:
        """argmin_x ||y - A x||^2 + rho ||x - x0||^2 for rho >= 0 (rho = 0: the projection
        x0 + A^+ (y - A x0)); default: conjugate gradients on (A^T A + rho I) u = A^T (y - A x0),
        x = x0 + u."""
        if rho == 0:
            return x0 + self.A_pinv(y - self.A(x0))
        rhs = self.A_adjoint(y - self.A(x0))
        return x0 + cg(lambda u: self.A_adjoint(self.A(u)) + rho * u, rhs)

    def first(self, k: int) -> LinearOperator:
        """This operator for the first k images of the batch it was built for (an operator
        with per-image data, e.g. MRI with per-slice coil maps, keeps only theirs); default:
        itself (the same A for every image)."""
        return self

    def svd(self) -> Spectral | None:
        """The SVD of A, where the operator knows one in closed form; None otherwise."""
        return None

    def norm(self, n_iter: int = 30) -> float:
        """Spectral norm ||A|| by power iteration (for gradient step sizes)."""
        shape = (1, *self.image_shape) if self.image_shape else None
        if shape is None:
            raise ValueError("norm() needs image_shape")
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        if self.complex_image:
            x = torch.complex(x, torch.randn(shape, generator=g, dtype=torch.float64))
        s = 0.0
        for _ in range(n_iter):
            x = self.A_adjoint(self.A(x))
            s = float(torch.linalg.vector_norm(x))
            x = x / s
        return s**0.5

    def check(self, x: Tensor) -> None:
        """Raise ValueError naming the problem if ``x`` does not fit this operator."""
        if x.dim() != 4:
            raise ValueError(f"expected images shaped (B, C, H, W), got {tuple(x.shape)}")
        if self.image_shape is not None and tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"image shape {tuple(x.shape[1:])} does not match the operator's "
                             f"{tuple(self.image_shape)}")


def kron_svd(dh: Tensor, dw: Tensor) -> Spectral:
    """The SVD of the separable x -> dh x dw^T, dh (H', H) and dw (W', W) float64, from the
    1-D SVDs (Kronecker structure): V^T x = Vh_h x Vh_w^T on (B, C, H, W), s = s_h s_w^T
    (H, W), zero-padded where a factor has fewer rows than columns."""
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


def cg(op, b: Tensor, n_iter: int = 100, tol: float = 1e-10) -> Tensor:
    """Solve op(u) = b for a Hermitian positive (semi)definite ``op``, batched over dim 0."""
    dims = tuple(range(1, b.dim()))

    def dot(u, v):
        return (u.conj() * v).real.sum(dims, keepdim=True)

    def ratio(num, den):  # num / den, 0 where den = 0 (an item already solved, e.g. b = 0)
        return torch.where(den > 0, num / torch.where(den > 0, den, 1), 0)

    u = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = dot(r, r)
    b2 = dot(b, b)
    for _ in range(n_iter):
        if bool((rs <= tol**2 * b2).all()):
            break
        q = op(p)
        alpha = ratio(rs, dot(p, q))
        u = u + alpha * p
        r = r - alpha * q
        rs_new = dot(r, r)
        p = r + ratio(rs_new, rs) * p
        rs = rs_new
    return u
