"""Data-consistency steps, applied after every reverse step (Algorithm 1, lines 7-9).

Each step is a callable ``step(x, a, b, generator) -> x`` on x (B, ...) at the noise level
``x = a x_0 + b z`` of the current reverse iterate.  The measurement y is forward-diffused to
that level, ``y_t = a y + b A z`` (line 8: x_hat_i = sqrt(alpha_bar_i) x_hat_0 + sqrt(1-alpha_bar_i) z
seen through A), so the iterate stays on the noisy manifold; at the last step (b = 0) it is y.

* ``Projection``: x <- x + gamma A^+ (y_t - A x) = (I - gamma P) x + gamma A^+ y_t  (POCS);
  gamma = 1 replaces the measured part (ILVR's low-pass replacement for average pooling,
  score-SDE's inpainting, score-MRI's k-space replacement).  With measurement noise
  sigma_y > 0 the replacement is softened to gamma = b^2 / (b^2 + a^2 sigma_y^2): the
  measurement is trusted as much as its noise allows against the current diffusion noise.
* ``GradientStep``: x <- x + lam A^T (y_t - A x), non-expansive for 0 <= lam <= 2 / ||A||^2.
* ``Prox``: x <- argmin_x ||y_t - A x||^2 / (2 s^2) + ||x - x'||^2 / 2 with s = a sigma_y / c,
  c the std of the noise the reverse step adds, for operators whose pseudo-inverse is
  ill-conditioned (deblurring).  In the SVD basis it keeps a fraction
  c^2 s_k^2 / (c^2 s_k^2 + a^2 sigma_y^2) of the measured coefficient k: a soft replacement
  with the noise of each coefficient, sigma_y / s_k, so noise is never amplified by 1 / s_k.
* ``ConjugateGradient`` (DDS: Chung, Lee & Ye, "Decomposed Diffusion Sampler for Accelerating
  Large-Scale Inverse Problems", ICLR 2024): acts on the denoised (Tweedie) estimate x0_hat of
  the iterate, not on the iterate: M conjugate-gradient iterations on the data term started
  from x0_hat, x0_hat <- argmin ||A x - y||^2 over x0_hat + K_M(A^H A, A^H (y - A x0_hat)),
  then re-noised with the network's eps: the loop (``samplers.solve``) steps from
  x_i = a_i x0_hat' + b_i eps_hat.  Works for every operator, also with no pseudo-inverse in
  closed form (multi-coil MRI), at M operator pairs per step.

Projection, GradientStep and Prox are affine with linear part of norm <= 1 (non-expansive),
the condition of Corollary 1; the prox is moreover firmly non-expansive (its linear part
(A^T A / s^2 + I)^{-1} is symmetric with eigenvalues in (0, 1]); ConjugateGradient never moves
x0_hat away from a solution of A x = y (see its docstring).  Measurement noise: ``Projection``
softens its replacement, ``Prox`` weighs each coefficient by its own noise,
``ConjugateGradient`` solves the noisy MAP system; ``GradientStep`` ignores sigma_y.
``PerItem`` runs the steps of a batch of items (each its own operator and y) on their rows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .noise import per_item, randn_like
from .operators.base import LinearOperator, cg


class _Consistency:
    def __init__(self, operator: LinearOperator, y: Tensor, sigma_y: float = 0.0,
                 noisy: bool = True):
        if not math.isfinite(sigma_y) or sigma_y < 0:
            raise ValueError(f"sigma_y must be a finite number >= 0, got {sigma_y}")
        if not torch.isfinite(torch.view_as_real(y) if y.is_complex() else y).all():
            raise ValueError("the measurement y contains NaN or Inf")
        self.operator, self.y, self.sigma_y, self.noisy = operator, y, float(sigma_y), noisy

    def y_t(self, x: Tensor, a: float, b: float, generator) -> Tensor:
        """The measurement diffused to level (a, b): a y + b A z."""
        if self.noisy and b > 0:
            return a * self.y + b * self.operator.A(randn_like(x, generator))
        return a * self.y


class Projection(_Consistency):
    """x <- x + gamma A^+ (y_t - A x); gamma = 1 when sigma_y = 0 (hard replacement)."""

    def gamma(self, a: float, b: float) -> float:
        if self.sigma_y == 0:
            return 1.0
        return b**2 / (b**2 + a**2 * self.sigma_y**2) if b > 0 else 0.0

    def __call__(self, x: Tensor, a: float, b: float, generator=None) -> Tensor:
        g = self.gamma(a, b)
        if g == 0:
            return x
        r = self.y_t(x, a, b, generator) - self.operator.A(x)
        return x + g * self.operator.A_pinv(r)


class GradientStep(_Consistency):
    """x <- x + lam A^T (y_t - A x); lam defaults to 1 / ||A||^2."""

    def __init__(self, operator, y, sigma_y: float = 0.0, noisy: bool = True,
                 lam: float | None = None):
        super().__init__(operator, y, sigma_y, noisy)
        self.lam = lam if lam is not None else 1.0 / operator.norm() ** 2
        if not 0 <= self.lam <= 2.0 / operator.norm() ** 2 + 1e-9:
            raise ValueError(f"step lam={self.lam} is not in [0, 2/||A||^2]: not non-expansive")

    def __call__(self, x: Tensor, a: float, b: float, generator=None) -> Tensor:
        r = self.y_t(x, a, b, generator) - self.operator.A(x)
        return x + self.lam * self.operator.A_adjoint(r)


class ConjugateGradient(_Consistency):
    """DDS data consistency on the Tweedie estimate: ``c(x0_hat, a_i, b_i) -> x0_hat'``.

    x0_hat' = x0_hat + d, d = M CG iterations from 0 on A^H A d = A^H (y - A x0_hat) (CG on the
    normal equations started from x0_hat); with measurement noise sigma_y > 0 on
    (I + gamma A^H A) d = gamma A^H (y - A x0_hat), the MAP step of
    ||A x - y||^2 / sigma_y^2 + ||x - x0_hat||^2 / s_i^2 with gamma = s_i^2 / sigma_y^2 and
    s_i = b_i / a_i, the noise level of x_i / a_i (the DDS code's ``(I + gamma A* A)`` system).
    ``a, b`` are the level of the iterate x0_hat was denoised from.  x0_hat: (B, ...) in the
    image space; y the clean measurement (no diffusion of y: x0_hat is at the clean level).

    Non-expansiveness (Corollary 1): once CG has converged -- after at most as many iterations
    as A^H A has distinct non-zero eigenvalues (1 for masks, inpainting and average pooling, 2
    for real-image MRI) -- the step is x0 + A^+ (y - A x0) = (I - P) x0 + A^+ y, the projection
    (with noise, (I + gamma A^H A)^{-1} (x0 + gamma A^H y), a linear map of norm <= 1 plus a
    constant): non-expansive.  With fewer iterations it is not linear in x0, but CG's error
    decreases monotonically in the 2-norm (Hestenes & Stiefel 1952, Theorem 6:3), so the step
    never moves x0 away from any solution x* of A x = y: ||c(x0) - x*|| <= ||x0 - x*||.
    """

    tweedie = True

    def __init__(self, operator, y, sigma_y: float = 0.0, noisy: bool = True, iters: int = 5,
                 tol: float = 1e-8):
        super().__init__(operator, y, sigma_y, noisy)
        if isinstance(iters, bool) or int(iters) != iters or iters < 1:
            raise ValueError(f"CG iterations must be a positive integer, got {iters!r}")
        self.iters, self.tol = int(iters), float(tol)

    def gamma(self, a: float, b: float) -> float:
        """s_i^2 / sigma_y^2 (inf without noise: the plain normal equations)."""
        if self.sigma_y == 0:
            return math.inf
        return (b / a) ** 2 / self.sigma_y**2 if a > 0 else math.inf

    def __call__(self, x0: Tensor, a: float = 1.0, b: float = 0.0, generator=None) -> Tensor:
        op = self.operator
        r = op.A_adjoint(self.y - op.A(x0))
        g = self.gamma(a, b)
        if math.isinf(g):
            d = cg(lambda v: op.A_adjoint(op.A(v)), r, n_iter=self.iters, tol=self.tol)
        else:
            d = cg(lambda v: v + g * op.A_adjoint(op.A(v)), g * r, n_iter=self.iters, tol=self.tol)
        return x0 + d


class RealImage:
    """The image is known to be real (a magnitude whose phase the operator carries):
    Im x <- b Im z, the replacement of the measurement Im x_0 = 0 diffused to level (a, b).
    An orthogonal projection onto an affine set, so non-expansive; chained after a data
    consistency it is one more POCS step."""

    def __call__(self, x: Tensor, a: float, b: float, generator=None) -> Tensor:
        if not x.is_complex():
            return x
        im = b * randn_like(x.real, generator) if b > 0 else torch.zeros_like(x.real)
        return torch.complex(x.real, im)


class Support:
    """Pixels known to be zero (outside the coil maps' support, ``MRI.support``):
    x <- b z there, the measurement x_0 = 0 diffused to level (a, b), and x elsewhere.  An
    orthogonal projection onto an affine set that commutes with the data projection (A does not
    see those pixels), so chained after it the pair is the projection onto the intersection.
    ``mask``: bool (1 or B, 1, H, W), True where the image may be non-zero; a batch of B K
    (K samples per image) uses image b's mask for its K consecutive items."""

    def __init__(self, mask: Tensor):
        self.mask = mask

    def __call__(self, x: Tensor, a: float, b: float, generator=None) -> Tensor:
        m = self.mask.to(x.device)
        if m.shape[0] not in (1, x.shape[0]):
            m = m.repeat_interleave(x.shape[0] // m.shape[0], 0)
        outside = b * randn_like(x, generator) if b > 0 else torch.zeros_like(x)
        return torch.where(m, x, outside)


class Chain:
    """Consistency steps applied in order (each non-expansive, so is their composition).
    A chain led by a step on the Tweedie estimate (``tweedie``, ``ConjugateGradient``) is one
    too: the steps after it act on x0_hat, at its clean level (a, b) = (1, 0)."""

    def __init__(self, *steps):
        self.steps = steps
        self.tweedie = bool(steps) and bool(getattr(steps[0], "tweedie", False))

    def bind(self, grid) -> Chain:
        """The chain on the sampling grid: each step that has a ``bind`` bound to it."""
        return Chain(*(s.bind(grid) if callable(getattr(s, "bind", None)) else s
                       for s in self.steps))

    def __call__(self, x: Tensor, a: float, b: float, generator=None) -> Tensor:
        for k, step in enumerate(self.steps):
            x = step(x, *((1.0, 0.0) if self.tweedie and k else (a, b)), generator)
        return x


class PerItem:
    """The consistency steps of a batch of items, each with its own operator and measurement:
    step k acts on the rows [k m, (k + 1) m) of x (B, ...), m = B / len(steps), with item k's
    generator (``noise.per_item``), exactly as it does on the item solved alone."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.tweedie = bool(getattr(self.steps[0], "tweedie", False))
        if any(bool(getattr(s, "tweedie", False)) != self.tweedie for s in self.steps):
            raise ValueError("the items of a batch must all use the same kind of consistency")

    def bind(self, grid) -> PerItem:
        """Each step that has a ``bind``, bound to the sampling grid."""
        return PerItem(s.bind(grid) if callable(getattr(s, "bind", None)) else s
                       for s in self.steps)

    def __call__(self, x: Tensor, a: float, b: float, generator=None) -> Tensor:
        m = x.shape[0] // len(self.steps)
        if m * len(self.steps) != x.shape[0]:
            raise ValueError(f"a batch of {x.shape[0]} rows does not split into "
                             f"{len(self.steps)} items")
        gens = per_item(generator, len(self.steps))
        return torch.cat([s(xk, a, b, g) for s, xk, g in zip(self.steps, x.split(m), gens)])


class Prox(_Consistency):
    """x <- argmin_x ||y_t - A x||^2 / (2 s^2) + ||x - x'||^2 / 2 = ``A.prox_l2(x', y_t, s^2)``.

    s = a sigma / c: the measurement noise a sigma of y_t against c, the std of the fresh noise
    the reverse step into this level adds (its DDPM posterior variance
    c^2 = b_{i-1}^2 beta_i / b_i^2, from the grid the loop binds, ``bind``; c = b when called
    outside a loop, a single jump).  Each step thus weighs the measurement by what that step
    is unsure of, so the data enter in proportion to the step size and N does not change the
    result (a continuous-measurement, Kalman-like update; weighing by b instead counts the same
    noisy y again at every step, and at N = 1000 the blur's amplified noise takes over).
    sigma = max(sigma_y, sigma_floor), the floor (default 2 / (255 sqrt(12)) in the model's
    [-1, 1] range: the rounding noise of 8-bit images) keeping noiseless data off an
    unregularised inverse.  At b = 0 (the last step) the data term has no weight: x = x'.
    Closed form for operators that have one (``Blur``: the Fourier domain), conjugate
    gradients otherwise (``LinearOperator.prox_l2``).
    """

    def __init__(self, operator, y, sigma_y: float = 0.0, noisy: bool = True,
                 sigma_floor: float = 2.0 / (255.0 * math.sqrt(12.0))):
        super().__init__(operator, y, sigma_y, noisy)
        if not math.isfinite(sigma_floor) or sigma_floor < 0:
            raise ValueError(f"sigma_floor must be a finite number >= 0, got {sigma_floor}")
        self.sigma = max(self.sigma_y, float(sigma_floor))
        self.step_var: dict[float, float] = {}   # b_{i-1} -> c_i^2 of the bound grid

    def bind(self, grid) -> Prox:
        """This step on the sampling grid (``schedules.Grid``): a copy that knows, for each
        level b_{i-1} the loop calls it at, the variance c_i^2 of the step into it."""
        bound = Prox.__new__(Prox)
        bound.__dict__.update(self.__dict__)
        bound.step_var = {float(grid.b[i - 1]): float(grid.b[i - 1] ** 2 * grid.beta(i)
                                                      / grid.b[i] ** 2)
                          for i in range(1, grid.steps + 1) if float(grid.b[i]) > 0}
        return bound

    def s2(self, a: float, b: float) -> float:
        """s^2 = (a sigma / c)^2; inf at b = 0 (no data step) unless sigma = 0."""
        if b <= 0:
            return 0.0 if self.sigma == 0 else math.inf
        c2 = self.step_var.get(float(b), b * b)
        return (a * self.sigma) ** 2 / c2 if c2 > 0 else (0.0 if self.sigma == 0 else math.inf)

    def __call__(self, x: Tensor, a: float, b: float, generator=None) -> Tensor:
        s2 = self.s2(a, b)
        if s2 == math.inf:
            return x
        return self.operator.prox_l2(x, self.y_t(x, a, b, generator), s2)


CONSISTENCY = {"projection": Projection, "gradient": GradientStep, "prox": Prox,
               "cg": ConjugateGradient}
