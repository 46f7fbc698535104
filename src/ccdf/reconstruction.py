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
from typing import NamedTuple

import torch
from torch import Tensor

from .consistency import CONSISTENCY, Chain, PerItem, RealImage, Support
from .models.denoiser import WithClassLabel, data_scale, from_model, measurement_to_model, to_model
from .noise import StackedGenerator
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


PHASES = ("auto", "start", "none")


def resolve_phase(model, operator, phase: str = "auto") -> str:
    """What ``phase`` ("auto", "start" or "none") does for this prior and operator: "start"
    (the start's smooth phase absorbed in the operator, a real image; ``phase_operator``) or
    "none" (the complex image as it is).  "auto" is "start" wherever it applies: a complex prior
    and single-coil complex MRI with no phase of its own; "start" where it does not raises
    ValueError naming why.  Measured against "none" in the README ("Complex prior vs phase in
    the operator")."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    if phase == "none":
        return "none"
    from .operators.mri import MRI

    why = None
    if not getattr(model, "complex", False):
        why = "the prior is not a complex prior"
    elif not isinstance(operator, MRI) or not operator.complex_image:
        why = "the operator is not complex MRI"
    elif operator.coils is not None:
        why = "multi-coil k-space (the coil maps carry the phase)"
    elif operator.phase is not None:
        why = "the operator already has a phase"
    if why is not None and phase == "start":
        raise ValueError(f"--phase start: {why}")
    return "none" if why else "start"


def phase_operator(model, operator, x0_hat: Tensor, phase: str = "auto"):
    """The operator with the smooth phase phi of the start x0_hat (B, C, H, W) absorbed
    (``MRI.with_phase``, one map per image, ``operators.mri.smooth_phase``), so that the complex
    prior reconstructs a real image m of x = m e^{i phi}; None where ``resolve_phase`` says
    "none"."""
    if resolve_phase(model, operator, phase) == "none":
        return None
    from .operators.mri import smooth_phase

    z = x0_hat if x0_hat.is_complex() else x0_hat.to(torch.complex64)
    return operator.with_phase(smooth_phase(z))


class Problem(NamedTuple):
    """One item of a batch solved by ``reconstruct_batch``: its own operator, measurements y
    (B, ...), start x0_hat (B, C, H, W), generator and (class-conditional prior) class label."""

    operator: object
    y: Tensor
    x0_hat: Tensor
    generator: torch.Generator | None = None
    class_label: int | None = None


def reconstruct(model, operator, y: Tensor, x0_hat: Tensor, *, t0: float = 0.2, steps: int = 100,
                sampler: str = "ddpm", samples: int = 1, sigma_y: float = 0.0,
                consistency: str | None = None, eta: float = 0.0, corrector=None,
                generator: torch.Generator | None = None, callback=None,
                real_image: bool = False, phase: str = "auto") -> Reconstruction:
    """CCDF for measurements y, starting from x0_hat (B, C, H, W).

    ``samples`` = K posterior samples per image, run together as one batch of B K.
    ``real_image``: the image is known real (complex prior, phase in the operator): Im x is
    held at its diffused value 0 after every consistency step (``consistency.RealImage``).
    An operator with a ``support`` (multi-coil MRI with cropped ESPIRiT maps) gets the support
    constraint after every consistency step (``consistency.Support``).
    ``consistency``: a name of ``consistency.CONSISTENCY``; None: the operator's own default
    (``operator.consistency``: "projection", or "prox" for deblurring).
    ``phase`` (complex prior, single-coil MRI; ``phase_operator``): "start" absorbs the start's
    smooth phase e^{i phi} into the operator and reconstructs the real image m from
    Re(e^{-i phi} x0_hat) (``real_image``); the result is m e^{i phi}, whose magnitude |m| is
    the reconstruction (it fits y up to the error of the phase estimate).  "auto" (default)
    does so wherever it applies, "none" never (the complex image fits y exactly).
    """
    return reconstruct_batch(model, [Problem(operator, y, x0_hat, generator)], t0=t0,
                             steps=steps, sampler=sampler, samples=samples, sigma_y=sigma_y,
                             consistency=consistency, eta=eta, corrector=corrector,
                             callback=callback, real_image=real_image, phase=phase)[0]


def reconstruct_batch(model, problems: list, *, t0: float = 0.2, steps: int = 100,
                      sampler: str = "ddpm", samples: int = 1, sigma_y: float = 0.0,
                      consistency: str | None = None, eta: float = 0.0, corrector=None,
                      callback=None, real_image: bool = False,
                      phase: str = "auto") -> list[Reconstruction]:
    """CCDF for several ``Problem``s (same t0, same batch size B) in ONE run of the reverse
    loop: their starts are stacked into a batch of P B K rows, each item's consistency acts
    on its own rows (``consistency.PerItem``) and each draws its noise from its own generator
    (``noise.StackedGenerator``), so item p gets what ``reconstruct`` gives it alone up to the
    rounding of the batched network calls.  Returns one ``Reconstruction`` per problem.
    Settings as in ``reconstruct`` (a Langevin ``corrector`` sizes its step from norms over
    the whole batch: with one, the items are no longer independent)."""
    if not problems:
        return []
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    names = {consistency or getattr(p.operator, "consistency", "projection") for p in problems}
    if not names <= set(CONSISTENCY):
        raise ValueError(f"consistency must be one of {', '.join(CONSISTENCY)}")
    if len(names) > 1:
        raise ValueError("the items of a batch must all use the same consistency")
    if len({tuple(p.x0_hat.shape) for p in problems}) > 1:
        raise ValueError("the items of a batch must all have the same shape")
    name = names.pop()
    starts, steps_, backs, rotations = [], [], [], []
    for p in problems:
        p.operator.check(p.x0_hat)
        check_model_input(model, p.x0_hat)
        op, x0, real, rot = p.operator, p.x0_hat, real_image, None
        phased = phase_operator(model, op, x0, phase)
        if phased is not None:  # the real image m of x = m e^{i phi}: start Re(e^{-i phi} x0)
            op, real, rot = phased, True, phased.phase
            z = x0 if x0.is_complex() else x0.to(torch.complex64)
            m = (z * rot.conj().to(z.dtype)).real
            x0 = torch.complex(m, torch.zeros_like(m))
        y_m, x_m, sigma_m, back = model_space(model, op, p.y, x0, sigma_y)
        if samples > 1:
            y_m = y_m.repeat_interleave(samples, 0)
            x_m = x_m.repeat_interleave(samples, 0)
        cons = CONSISTENCY[name](op, y_m, sigma_y=sigma_m)
        starts.append(x_m)
        extra = [RealImage()] if real else []
        if op.support is not None:  # pixels no coil sees: measured zeros
            extra.append(Support(op.support))
        steps_.append(Chain(cons, *extra) if extra else cons)
        backs.append(back)
        rotations.append(rot)
    one = len(problems) == 1
    labels = [p.class_label for p in problems]
    if len({k is None for k in labels}) > 1:
        raise ValueError("either every item of a batch has a class label or none has")
    if labels[0] is not None:
        model = WithClassLabel(model, labels[0]) if len(set(labels)) == 1 else \
            _ClassLabels(model, labels, len(starts[0]))
    res = solve(model, starts[0] if one else torch.cat(starts), steps=steps, t0=t0,
                sampler=sampler, consistency=steps_[0] if one else PerItem(steps_),
                generator=problems[0].generator if one else
                StackedGenerator(p.generator for p in problems),
                eta=eta, corrector=corrector, callback=callback)
    out = []
    for p, back, rot, x in zip(problems, backs, rotations, res.x.split(len(starts[0]))):
        xs = back(x).reshape(p.x0_hat.shape[0], samples, *p.x0_hat.shape[1:])
        if rot is not None:  # m e^{i phi_hat}: back to the measured phase
            xs = xs * rot[:, None].to(device=xs.device, dtype=xs.dtype)
        if not getattr(model, "complex", False):
            xs = p.operator.clamp(xs)
        std = xs.abs().std(1) if samples > 1 else None
        out.append(Reconstruction(x=xs.mean(1), std=std, samples=xs, nfe=res.nfe * samples,
                                  n_prime=res.n_prime, t0=res.t0))
    return out


class _ClassLabels:
    """A class-conditional model for a batch of items of different classes: item k's rows
    (``rows`` each, stacked in item order) get ``labels[k]``."""

    def __init__(self, model, labels: list, rows: int):
        self._model = model
        self._labels = torch.tensor([int(k) for k in labels]).repeat_interleave(rows)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        # x may hold the batch more than once (a complex image: real parts, then imaginary)
        y = self._labels.to(x.device).repeat(x.shape[0] // len(self._labels))
        return self._model(x, t, class_labels=y)
