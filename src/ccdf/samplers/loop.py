"""The one reverse loop of CCDF (Algorithm 1), shared by every task and sampler.

t0 = 1 runs the whole chain from (almost) pure noise: the full-run baselines of the paper --
ILVR (SR, low-pass projection), score-SDE (inpainting), score-MRI (k-space projection).
t0 < 1 jumps to x_{N'} = a_{N'} x0_hat + b_{N'} z and runs only N' = round(t0 N) steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.denoiser import evaluate
from ..noise import Generator, randn_like
from ..schedules import n_prime as _n_prime
from .steps import LangevinCorrector, make_sampler


@dataclass
class Result:
    x: Tensor       # (B, ...) the reconstruction x_0
    nfe: int        # network evaluations (one per batched model call)
    n_prime: int    # reverse steps run
    t0: float


def jump(grid, n_prime: int, x0_hat: Tensor, generator: Generator = None) -> Tensor:
    """The CCDF start x_{N'} = a_{N'} x0_hat + b_{N'} z, z ~ N(0, I) like x0_hat (B, ...)."""
    return float(grid.a[n_prime]) * x0_hat + float(grid.b[n_prime]) * randn_like(x0_hat, generator)


def _finite(x: Tensor) -> bool:
    return bool(torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all())


def solve(model, x0_hat: Tensor, *, steps: int = 1000, t0: float = 1.0, sampler="ddpm",
          consistency=None, generator: Generator = None, eta: float = 0.0,
          corrector: LangevinCorrector | None = None,
          callback: Callable[[dict], None] | None = None) -> Result:
    """Run CCDF from the initial estimate x0_hat (B, ...) in the model's data space.

    model: a denoiser (``models.denoiser`` contract); steps: N of the full grid; t0 in (0, 1];
    sampler: 'ddpm' | 'ddim' | 'smld' or a step object; consistency: a callable
    ``c(x, a, b, generator)`` applied to the iterate after each step (``consistency.Projection``
    ...), or one with ``tweedie = True`` applied to the denoised estimate x0_hat of x_i before
    the step, which then runs from x_i = a_i x0_hat' + b_i eps_hat: the corrected estimate
    re-noised with the network's eps (``ConjugateGradient``, DDS), or None (unconditional);
    generator: a ``torch.Generator``, None, or a ``noise.StackedGenerator`` (one per item);
    callback: called after every step with {'i', 'n_prime', 'x', 'x0', 'nfe'}.
    Raises FloatingPointError if the iterate stops being finite.
    """
    if not _finite(x0_hat):
        raise ValueError("the initial estimate x0_hat contains NaN or Inf")
    n_p = _n_prime(t0, steps)
    grid = model.schedule.grid(steps)
    step = make_sampler(sampler, eta, getattr(model, "variance", None)) \
        if isinstance(sampler, str) else sampler
    if callable(getattr(consistency, "bind", None)):
        consistency = consistency.bind(grid)   # a step that weighs data by the step size
    nfe = 0
    tweedie = bool(getattr(consistency, "tweedie", False))
    with torch.no_grad():
        x = jump(grid, n_p, x0_hat, generator)
        for i in range(n_p, 0, -1):                                   # line 3
            t = grid.t[i].expand(x.shape[0])
            if corrector is not None:
                for _ in range(corrector.steps):
                    x = corrector.step(evaluate(model, x, t), x, grid, i, generator)
                    nfe += 1
                    if consistency is not None and not tweedie:
                        x = consistency(x, float(grid.a[i]), float(grid.b[i]), generator)
            pred = evaluate(model, x, t)
            nfe += 1
            if tweedie:  # DDS: data consistency on x0_hat(x_i), re-noised with the same eps
                a_i, b_i = float(grid.a[i]), float(grid.b[i])
                pred = pred._replace(x0=consistency(pred.x0, a_i, b_i, generator))
                x = a_i * pred.x0 + b_i * pred.eps
            x = step.step(pred, x, grid, i, generator)                # lines 4-6
            if consistency is not None and not tweedie:               # lines 7-9
                x = consistency(x, float(grid.a[i - 1]), float(grid.b[i - 1]), generator)
            if not _finite(x):
                raise FloatingPointError(f"non-finite values at reverse step {i} of {n_p}")
            if callback is not None:
                callback({"i": i, "n_prime": n_p, "x": x, "x0": pred.x0, "nfe": nfe})
    return Result(x=x, nfe=nfe, n_prime=n_p, t0=float(t0))
