"""The library call behind ``ccdf solve``: images in [0, 1] in, reconstructions out.

Models work in [-1, 1]; since x_m = 2 x - 1 is affine, the measurement maps as
y_m = A x_m = 2 y - A 1, and the noise level as sigma_y_m = 2 sigma_y.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .consistency import CONSISTENCY
from .samplers import solve


@dataclass
class Reconstruction:
    x: Tensor             # (B, C, H, W) posterior-sample mean in [0, 1]
    std: Tensor | None    # (B, C, H, W) pixel-wise std over the K samples (None when K = 1)
    samples: Tensor       # (B, K, C, H, W)
    nfe: int              # network evaluations per image: K N'
    n_prime: int
    t0: float


def check_model_input(model, x: Tensor) -> None:
    """Raise ValueError naming the sizes if images x (B, C, H, W) do not fit the model."""
    if (getattr(model, "meta", None) or {}).get("condition"):
        raise ValueError("this is a conditional (SR3-style) model, not an unconditional prior: "
                         "CCDF needs a prior; SR3 models are run by `ccdf bench --task sr`")
    size = getattr(model, "image_size", None)
    ch = getattr(model, "channels", None)
    if size is None:
        return
    if x.shape[-2:] != (size, size) or (ch is not None and x.shape[1] != ch):
        raise ValueError(f"the model takes {size}x{size} images with {ch} channel(s); got "
                         f"{x.shape[-2]}x{x.shape[-1]} with {x.shape[1]}")


def reconstruct(model, operator, y: Tensor, x0_hat: Tensor, *, t0: float = 0.2, steps: int = 100,
                sampler: str = "ddpm", samples: int = 1, sigma_y: float = 0.0,
                consistency: str | None = None, eta: float = 0.0, corrector=None,
                generator: torch.Generator | None = None, callback=None) -> Reconstruction:
    """CCDF for measurements y of images in [0, 1], starting from x0_hat (B, C, H, W).

    ``samples`` = K posterior samples per image, run together as one batch of B K.
    ``consistency``: a name of ``consistency.CONSISTENCY``; None: the operator's own default
    (``operator.consistency``: "projection", or "prox" for deblurring).
    """
    consistency = consistency or getattr(operator, "consistency", "projection")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if consistency not in CONSISTENCY:
        raise ValueError(f"consistency must be one of {', '.join(CONSISTENCY)}")
    operator.check(x0_hat)
    check_model_input(model, x0_hat)
    b = x0_hat.shape[0]
    y_m = 2 * y - operator.A(torch.ones_like(x0_hat))
    x_m = 2 * x0_hat - 1
    if samples > 1:
        y_m = y_m.repeat_interleave(samples, 0)
        x_m = x_m.repeat_interleave(samples, 0)
    cons = CONSISTENCY[consistency](operator, y_m, sigma_y=2 * sigma_y)
    res = solve(model, x_m, steps=steps, t0=t0, sampler=sampler, consistency=cons,
                generator=generator, eta=eta, corrector=corrector, callback=callback)
    xs = ((res.x + 1) / 2).reshape(b, samples, *x0_hat.shape[1:])
    if not xs.is_complex():
        xs = xs.clamp(0, 1)
    std = xs.abs().std(1) if samples > 1 else None
    return Reconstruction(x=xs.mean(1), std=std, samples=xs, nfe=res.nfe * samples, n_prime=res.n_prime,
                          t0=res.t0)
