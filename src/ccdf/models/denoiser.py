"""The denoiser contract and the eps / score / x0 conversions (the only place they live).

A model is an ``nn.Module`` called as ``model(x_t, t)``:

* ``x_t``: (B, C, H, W) real tensor at noise level t (any trailing shape for analytic models);
* ``t``: (B,) float64 times in [0, 1];
* returns a tensor shaped like ``x_t`` holding what ``model.prediction`` names:
  ``'eps'`` (the noise z), ``'score'`` (grad log p_t(x_t)), ``'x0'`` (E[x_0 | x_t]) or
  ``'v'`` (v = a z - b x_0, Salimans & Ho 2022);
* ``model.schedule`` gives ``a(t), b(t)`` with ``x_t = a x_0 + b z``;
* optional ``model.data_range`` = (lo, hi): the range of the data x_0 the model was trained on
  (default (-1, 1)); images in [0, 1] map to it affinely (``to_model`` / ``from_model``);
* optional ``model.clip_x0`` = (lo, hi): the model's sampler clamps its x_0 estimate to this
  range (diffusers' ``clip_sample``, guided-diffusion's ``clip_denoised``); eps and the score
  stay the network's, as in diffusers' DDIM step (its DDPM step uses the clamped x_0 alone,
  as the x_0-form of ``samplers.Ancestral`` does).

``evaluate(model, x, t)`` returns all three.  Complex inputs (B, 1, H, W) go to a complex
prior (``model.complex``: channels = real, imaginary) as (B, 2, H, W); to any other model as
the real and imaginary parts denoised as two real images (as score-MRI does).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

PREDICTIONS = ("eps", "score", "x0", "v")
DATA_RANGE = (-1.0, 1.0)


def data_range(model) -> tuple[float, float]:
    """(lo, hi): the range of the model's training data (default (-1, 1))."""
    lo, hi = getattr(model, "data_range", None) or DATA_RANGE
    return float(lo), float(hi)


def data_scale(model) -> float:
    """hi - lo: model-space units per unit of the [0, 1] image scale."""
    lo, hi = data_range(model)
    return hi - lo


def to_model(model, x01: Tensor) -> Tensor:
    """Images in [0, 1] -> the model's data space: lo + (hi - lo) x."""
    lo, hi = data_range(model)
    return lo + (hi - lo) * x01


def from_model(model, x: Tensor) -> Tensor:
    """The model's data space -> the [0, 1] image scale (not clamped)."""
    lo, hi = data_range(model)
    return (x - lo) / (hi - lo)


def measurement_to_model(model, operator, y01: Tensor, template: Tensor) -> Tensor:
    """y = A x01 -> y_m = A to_model(x01) = (hi - lo) y + lo A 1 (A linear); template: a
    tensor shaped like an image (for A 1)."""
    lo, hi = data_range(model)
    ones = torch.ones_like(template.real if template.is_complex() else template)
    return (hi - lo) * y01 + lo * operator.A(ones) if lo != 0 else (hi - lo) * y01


class Prediction(NamedTuple):
    eps: Tensor
    score: Tensor
    x0: Tensor


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.real.dtype if x.is_complex() else x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def convert(pred: Tensor, kind: str, x: Tensor, a: Tensor, b: Tensor) -> Prediction:
    """Turn a prediction of ``kind`` into (eps, score, x0) using x = a x0 + b eps, score = -eps/b.

    pred, x: (B, ...); a, b: (B,) float tensors (b > 0).
    """
    a, b = _bcast(a, x), _bcast(b, x)
    if kind == "eps":
        eps = pred
    elif kind == "score":
        eps = -b * pred
    elif kind == "x0":
        eps = (x - a * pred) / b
    elif kind == "v":  # a v + b x = (a^2 + b^2) eps
        eps = (a * pred + b * x) / (a**2 + b**2)
    else:
        raise ValueError(f"unknown prediction type {kind!r}; expected one of {PREDICTIONS}")
    x0 = pred if kind == "x0" else (x - b * eps) / a
    return Prediction(eps=eps, score=-eps / b, x0=x0)


def evaluate(model: nn.Module, x: Tensor, t: Tensor) -> Prediction:
    """One network evaluation: (eps, score, x0) at x (B, ...) and times t (B,)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    t_s = t.reshape(-1)[:1] if t.numel() == 1 or bool((t == t.reshape(-1)[0]).all()) else t
    t = t.expand(x.shape[0])
    if x.is_complex() and getattr(model, "complex", False):
        if x.shape[1] != 1:
            raise ValueError(f"a complex prior takes complex images (B, 1, H, W), got {tuple(x.shape)}")
        p = evaluate(model, torch.cat([x.real, x.imag], 1), t)
        return Prediction(*(torch.complex(v[:, :1], v[:, 1:]) for v in p))
    if x.is_complex():
        both = torch.cat([x.real, x.imag], 0)
        p = evaluate(model, both, torch.cat([t, t]))
        n = x.shape[0]
        return Prediction(*(torch.complex(v[:n], v[n:]) for v in p))
    pred = model(x, t)
    if pred.shape != x.shape:
        raise RuntimeError(f"model returned shape {tuple(pred.shape)} for input {tuple(x.shape)}")
    a, b = model.schedule.a(t_s), model.schedule.b(t_s)
    p = convert(pred, model.prediction, x, a, b)
    clip = getattr(model, "clip_x0", None)
    if clip:
        p = Prediction(eps=p.eps, score=p.score, x0=p.x0.clamp(float(clip[0]), float(clip[1])))
    return p


class WithClassLabel:
    """A class-conditional model seen as an unconditional one for class ``label``:
    ``m(x, t) = model(x, t, class_labels=[label] * B)``; other attributes are the model's."""

    def __init__(self, model, label: int):
        self._model, self._label = model, int(label)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        y = torch.full((x.shape[0],), self._label, dtype=torch.long, device=x.device)
        return self._model(x, t, class_labels=y)


def check_class_label(model, label, name: str = "the model"):
    """The label a model gets by default: None for an unconditional model (a label is then an
    error), an int in 0..num_classes-1 for a class-conditional one (required)."""
    n = getattr(model, "num_classes", None)
    if n is None:
        if label is not None:
            raise ValueError(f"{name} is not class-conditional: it takes no class label")
        return None
    if label is None:
        raise ValueError(f"{name} is class-conditional ({n} classes; guided-diffusion's have no "
                         "unconditional class): pass --class-label N")
    try:
        k = int(label)
    except (TypeError, ValueError):
        raise ValueError(f"class label must be an integer, got {label!r}") from None
    if not 0 <= k < n or k != float(label):
        raise ValueError(f"class label {label} is outside 0..{n - 1} of {name}")
    return k


class GaussianDenoiser(nn.Module):
    """Exact score of Gaussian data x_0 ~ N(mean, cov): the ground truth for tests.

    mean: (D,) and cov: (D, D) for data of any shape with D elements (``shape``).
    p_t = N(a mean, a^2 cov + b^2 I), so score(x_t) = -(a^2 cov + b^2 I)^{-1} (x_t - a mean).
    ``cov`` may be singular (a point mass when cov = 0), as long as b > 0 when called.
    """

    prediction = "score"

    def __init__(self, mean: Tensor, cov: Tensor, schedule, shape=None):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
        cov = torch.as_tensor(cov, dtype=torch.float64)
        d = mean.numel()
        if cov.shape != (d, d):
            raise ValueError(f"cov must be ({d}, {d}), got {tuple(cov.shape)}")
        evals, evecs = torch.linalg.eigh((cov + cov.T) / 2)
        self.register_buffer("mean", mean)
        self.register_buffer("evals", evals.clamp_min(0))
        self.register_buffer("evecs", evecs)
        self.schedule = schedule
        self.shape = tuple(shape) if shape is not None else (d,)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.numel() > 1 and bool((t == t[0]).all()):
            t = t[:1]
        a = self.schedule.a(t).reshape(-1, 1)
        b = self.schedule.b(t).reshape(-1, 1)
        r = x.reshape(x.shape[0], -1).double() - a * self.mean
        coef = r @ self.evecs / (a**2 * self.evals + b**2)
        return (-(coef @ self.evecs.T)).to(x.dtype).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact samples of the data, shaped (n, *shape), float64."""
        z = torch.randn(n, self.mean.numel(), dtype=torch.float64, generator=generator)
        x = self.mean + (z * self.evals.sqrt()) @ self.evecs.T
        return x.reshape(n, *self.shape)
