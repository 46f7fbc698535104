"""The library call behind ``ccdf solve``: images in, reconstructions out.

Image priors work in their data range [lo, hi] (``model.data_range``; [-1, 1] unless the
model says otherwise, e.g. [0, 1] for score_sde VE models) on images in [0, 1]; since
x_m = lo + (hi - lo) x is affine, the measurement maps as y_m = A x_m = (hi - lo) y + lo A 1
and the noise level as sigma_y_m = (hi - lo) sigma_y (``models.denoiser.to_model`` /
``measurement_to_model``).  A complex prior (``model.complex``, the MRI prior) works on
complex images whose magnitude is about [0, 1] with background 0: images in any units are
divided by one scale s (the 99.5th percentile of |x0_hat| over the batch), y_m = y / s,
sigma_y_m = sigma_y / s, and the reconstruction is multiplied back: outputs keep the input's
units, never clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .consistency import CONSISTENCY, Chain, RealImage, Support
from .models.denoiser import data_scale, from_model, measurement_to_model, to_model
from .samplers import solve


@dataclass
class Reconstruction:
    x: Tensor             # (B, C, H, W) posterior-sample mean ([0, 1]; complex prior: input units)
    std: Tensor | None    # (B, C, H, W) pixel-wise std over the K samples (None when K = 1)
    samples: Tensor       # (B, K, C, H, W)
    nfe: int              # network evaluations per image: K N'
    n_prime: int
    t0: float


def complex_scale(x0_hat: Tensor) -> float:
    """The scale s of a complex prior's model space: the 99.5th percentile of |x0_hat|."""
    s = float(torch.quantile(x0_hat.abs().flatten().float()[:2**24], 0.995))
    return s if s > 0 else 1.0


def error_to_model(model, x0_hat: Tensor) -> float:
    """The factor that turns a per-pixel squared error of images into model space:
    (hi - lo)^2 for image priors (x_m = lo + (hi - lo) x; 4 for [-1, 1]), 1 / s^2 for a
    complex prior (x_m = x / s)."""
    if getattr(model, "complex", False):
        return 1.0 / complex_scale(x0_hat) ** 2
    return data_scale(model) ** 2


def model_space(model, operator, y: Tensor, x0_hat: Tensor | None, sigma_y: float = 0.0):
    """(y_m, x_m, sigma_y_m, back): the measurement, the start and the noise level in the
    model's space, and back(x_m) -> images.  Image priors: x_m = lo + (hi - lo) x (the data
    range); a complex prior: x_m = x / s, s = ``complex_scale`` of x0_hat (or of A^+ y when
    there is no start), with a complex operator required.  x_m is None without x0_hat."""
    if getattr(model, "complex", False):
        if not getattr(operator, "complex_image", False):
            raise ValueError("the complex prior needs an operator on complex images "
                             "(e.g. make_operator('mri', ..., complex_image=True))")
        ref = operator.A_pinv(y) if x0_hat is None else x0_hat
        scale = complex_scale(ref)
        x_m = None if x0_hat is None else \
            (x0_hat if x0_hat.is_complex() else x0_hat.to(torch.complex64)) / scale
        return y / scale, x_m, sigma_y / scale, lambda v: v * scale
    template = operator.A_pinv(y) if x0_hat is None else x0_hat
    y_m = measurement_to_model(model, operator, y, template)
    x_m = None if x0_hat is None else to_model(model, x0_hat)
    return y_m, x_m, data_scale(model) * sigma_y, lambda v: from_model(model, v)


def check_model_input(model, x: Tensor) -> None:
    """Raise ValueError naming the sizes if images x (B, C, H, W) do not fit the model."""
    if (getattr(model, "meta", None) or {}).get("condition"):
        raise ValueError("this is a conditional (SR3-style) model, not an unconditional prior: "
                         "CCDF needs a prior; SR3 models are run by `ccdf bench --task sr`")
    size = getattr(model, "image_size", None)
    ch = getattr(model, "channels", None)
    if getattr(model, "complex", False):
        if x.shape[1] != 1:
            raise ValueError(f"the complex prior takes one (complex) image channel; got {x.shape[1]}")
        ch = 1
    if ch is not None and x.shape[1] != ch:
        raise ValueError(f"the model takes images with {ch} channel(s); got {x.shape[1]}")
    if size is None:
        return
    if x.shape[-2:] != (size, size):
        raise ValueError(f"the model takes {size}x{size} images with {ch} channel(s); got "
                         f"{x.shape[-2]}x{x.shape[-1]} with {x.shape[1]}")


def reconstruct(model, operator, y: Tensor, x0_hat: Tensor, *, t0: float = 0.2, steps: int = 100,
                sampler: str = "ddpm", samples: int = 1, sigma_y: float = 0.0,
                consistency: str | None = None, eta: float = 0.0, corrector=None,
                generator: torch.Generator | None = None, callback=None,
                real_image: bool = False) -> Reconstruction:
    """CCDF for measurements y, starting from x0_hat (B, C, H, W).

    ``samples`` = K posterior samples per image, run together as one batch of B K.
    ``real_image``: the image is known real (complex prior, phase in the operator): Im x is
    held at its diffused value 0 after every consistency step (``consistency.RealImage``).
    An operator with a ``support`` (multi-coil MRI with cropped ESPIRiT maps) gets the support
    constraint after every consistency step (``consistency.Support``).
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
    y_m, x_m, sigma_m, back = model_space(model, operator, y, x0_hat, sigma_y)
    if samples > 1:
        y_m = y_m.repeat_interleave(samples, 0)
        x_m = x_m.repeat_interleave(samples, 0)
    cons = CONSISTENCY[consistency](operator, y_m, sigma_y=sigma_m)
    if real_image:
        cons = Chain(cons, RealImage())
    support = getattr(operator, "support", None)
    if support is not None:  # pixels no coil sees are measured zeros, not the prior's
        cons = Chain(cons, Support(support))
    res = solve(model, x_m, steps=steps, t0=t0, sampler=sampler, consistency=cons,
                generator=generator, eta=eta, corrector=corrector, callback=callback)
    xs = back(res.x).reshape(b, samples, *x0_hat.shape[1:])
    if not getattr(model, "complex", False):
        xs = operator.clamp(xs)
    std = xs.abs().std(1) if samples > 1 else None
    return Reconstruction(x=xs.mean(1), std=std, samples=xs, nfe=res.nfe * samples, n_prime=res.n_prime,
                          t0=res.t0)
